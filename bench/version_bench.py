"""Benchmark of a version's build (not a test): ``python bench/version_bench.py [--annotations 100000] [--repeats 5]``.

A sync state holds ``--annotations`` annotations of a Choices and a RectangleLabels control over images (one
annotator per task, three on every fifth task, 2% skipped, one or two boxes each). A first export is built (every
row made; not timed), then each repeat changes a few annotations as a tick of the daemon would (adds ``--added``, edits
``--edited``, deletes ``--deleted``, and saves ``--resaved`` again with the same labels, a newer ``updated_at`` and
``lead_time``: rows made again, not counted as changed) and builds the next version in the same process, as the
exporter does before its commit: whether an annotator's email is to be learnt, the CSV rows (``build_rows``), the
changes against the last version (``+added ~changed -removed`` counted on the rows' content hashes, and the diff
label by label), the version's record in the state, and the files
of every config (the CSV, the manifest with the agreement figures, the training rows, the rows JSON, the consensus
rows, the dataset card). No Hub: the repo is a stand-in that has no files.

Against it, in the same run: pandas writing the same ready rows, ``pd.DataFrame(rows).to_csv()`` of the CSV's row
dicts (the floor of ``bench/sync_bench.py``), and pandas writing every file's ready rows (the CSV's, and the
training, rows JSON and consensus records with ``to_json``). Prints each repeat and the medians, and their ratios,
then the build of the first export after a restart (the rows stored in the state, nothing kept in memory).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from labelhub.label_config import control_tags, data_field  # noqa: E402
from labelhub.sync.state import SyncState  # noqa: E402
from labelhub.sync.versions.agreement import consensus_rows  # noqa: E402
from labelhub.sync.versions.exporter import (  # noqa: E402
    CARD, Exporter, build_csv, diff_counts, differing_ids, exported_contents, files_text, label_columns)
from labelhub.sync.versions.diff import changes_text  # noqa: E402
from labelhub.sync.versions.incremental import build_rows, forget  # noqa: E402
from labelhub.sync.versions.rows import annotation_row  # noqa: E402
from labelhub.sync.versions.training import consensus_records, training_records  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/>'
          '<Choices name="kind" toName="image"><Choice value="a"/><Choice value="b"/><Choice value="c"/></Choices>'
          '<RectangleLabels name="box" toName="image"><Label value="x"/><Label value="y"/></RectangleLabels></View>')
REPO_ID = "bench/versions"
SHA = "a" * 40


class StandInRepo:
    """The repo as the exporter's file building sees it: a Hub repo (its layout) that has no files yet."""

    local = False
    repo_id = REPO_ID

    def read_file(self, revision: str, path: str) -> bytes:
        raise FileNotFoundError(path)

    def head_and_tags(self, revision: str) -> tuple[str, dict[str, str]]:
        """The branch head and no tags: no version yet (what the exporter's series check reads at start)."""
        return SHA, {}


def annotation(annotation_id: int, task: int, who: int, rnd: random.Random) -> dict:
    """One annotation: a choice (annotators mostly agree) and one or two jittered boxes."""
    boxes = [{"from_name": "box", "to_name": "image", "type": "rectanglelabels", "value": {
        "x": 10 + rnd.random() * 3, "y": 20 + rnd.random() * 3, "width": 30, "height": 40,
        "rectanglelabels": [rnd.choice("xy")]}} for _ in range(rnd.choice((1, 1, 2)))]
    return {"id": annotation_id, "completed_by": who, "lead_time": round(rnd.random() * 10, 3),
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "was_cancelled": rnd.random() < 0.02,
            "result": [{"from_name": "kind", "to_name": "image", "type": "choices",
                        "value": {"choices": [rnd.choice("aab" if task % 2 else "bbc")]}}, *boxes]}


def task_data(task: int) -> dict:
    return {"image": f"http://hub/datasets/{REPO_ID}/resolve/{SHA}/img/{task}.png", "hf_path": f"img/{task}.png",
            "hf_repo": REPO_ID, "hf_revision": SHA, "volume": str(task // 100)}


def seed(state: SyncState, n: int, rnd: random.Random) -> int:
    """Store ``n`` annotations (and their tasks) in the state as the intake does; returns the number of tasks."""
    annotations, tasks, task = [], [], 0
    while len(annotations) < n:
        tasks.append((task, json.dumps(task_data(task), sort_keys=True)))
        for who in (range(1, 4) if task % 5 == 0 else (1 + task % 5,)):
            annotations.append((len(annotations), task, json.dumps(annotation(len(annotations), task, who, rnd),
                                                                    sort_keys=True)))
        task += 1
    with state.db:
        state.db.execute("BEGIN")
        state.db.executemany("INSERT INTO tasks_seen VALUES (1, ?, ?)", tasks)
        state.db.executemany("INSERT INTO annotations (project_id, annotation_id, task_id, updated_at, body, deleted) "
                             "VALUES (1, ?, ?, '2026-01-01T00:00:00Z', ?, 0)", annotations[:n])
    state.set_users({k: f"annotator{k}@example.com" for k in range(1, 6)})
    return task


def change(state: SyncState, tasks: int, n: int, next_id: int, args, rnd: random.Random) -> int:
    """One tick's changes: ``args.added`` new annotations, ``args.edited`` edited, ``args.deleted`` deleted,
    ``args.resaved`` saved again with the same labels (a newer ``updated_at`` and ``lead_time``)."""
    for i in range(args.added):
        task = rnd.randrange(tasks)
        state.apply_annotations(task, [{**annotation(next_id + i, task, 4, rnd), "updated_at": "2027"}], complete=False)
    for _ in range(args.edited):
        aid = rnd.randrange(n)
        task = state.db.execute("SELECT task_id FROM annotations WHERE annotation_id=?", (aid,)).fetchone()[0]
        state.apply_annotations(task, [{**annotation(aid, task, 1 + task % 5, rnd), "updated_at": "2028"}],
                                complete=False)
    for _ in range(args.resaved):
        task, body = state.db.execute("SELECT task_id, body FROM annotations WHERE annotation_id=?",
                                      (rnd.randrange(n),)).fetchone()
        body = json.loads(body)
        state.apply_annotations(task, [{**body, "updated_at": "2029", "lead_time": body["lead_time"] + 1}],
                                complete=False)
    state.delete_annotations([rnd.randrange(n) for _ in range(args.deleted)])
    return next_id + args.added


class Clock:
    """Wall-clock and CPU seconds of the steps timed with :meth:`step` (the CPU time of this process says the same
    when other processes share the cores)."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def step(self, name: str, fn, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn(*args)
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
        return result

    def total(self, cpu: bool = False) -> float:
        return sum((self.cpu if cpu else self.wall).values())


def build_version(exporter: Exporter, number: int, parent: str) -> tuple[Clock, float, str]:
    """What :meth:`Exporter.export` makes before its commit, timed by step; returns the clock, the files' MB and the
    version's ``+added ~changed -removed``."""
    clock = Clock()
    state = exporter.state
    clock.step("annotators", state.unknown_annotators)  # learn_annotators' question (all known: no call)
    built = clock.step("rows + CSV", build_rows, state, exporter.controls, exporter.value_key)
    frame, csv, hashes = built.frame, built.csv, built.contents

    def changes():
        exported = exported_contents(state, built)
        differing = differing_ids(exported, hashes)
        labels = label_columns(frame, exporter.controls)
        return (diff_counts(exported, hashes, differing), labels,
                exporter._changes(labels, exporter.series.tag(number), differing))

    (added, changed, removed), labels, change = clock.step("changes", changes)
    export_id = uuid.uuid4().hex
    summary = {"added": added, "changed": changed, "removed": removed}
    clock.step("state record", lambda: state.begin_version(number, export_id, hashes, summary,
                                                           labels.to_json(orient="records")))
    told = changes_text(change, changed) + files_text(state.file_changes(), change.old)
    files = clock.step("files of every config", exporter._files, number, export_id, frame, csv, summary, change,
                       told, parent)
    # as the exporter does once the commit landed and is tagged (not timed)
    state.set_version_status(number, "committed", f"{number:040x}", parent)
    state.set_version_status(number, "tagged")
    state.set_cursor(CARD, files["README.md"].decode())
    return clock, sum(len(v) for v in files.values()) / 1e6, f"+{added} ~{changed} -{removed}"


def pandas_floor(state: SyncState, exporter: Exporter) -> Clock:
    """pandas writing the same ready rows: step ``CSV``, the CSV's row dicts with ``to_csv``; step ``other files``,
    the rows JSON, training and consensus records with ``to_json`` (records made beforehand, not timed)."""
    users = state.users()
    rows = [annotation_row(t, a, exporter.controls, exporter.value_key, users) for t, a in state.live_annotations()]
    frame, _, _ = build_csv(state, exporter.controls, exporter.value_key)
    training = training_records(frame, CONFIG, exporter.controls, exporter.field, REPO_ID, False)
    consensus = consensus_records(consensus_rows(frame, exporter.controls, exporter.value_key), CONFIG,
                                  exporter.controls, exporter.field, REPO_ID, False, SHA)
    clock = Clock()
    ready = clock.step("CSV", lambda: pd.DataFrame(rows))
    clock.step("CSV", lambda: ready.to_csv(index=False).encode())
    clock.step("other files", lambda: [ready.to_json(orient="records", lines=True).encode(),
                                       pd.DataFrame(training).to_json(orient="records", lines=True).encode(),
                                       pd.DataFrame(consensus).to_json(orient="records", lines=True).encode()])
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--added", type=int, default=10)
    parser.add_argument("--edited", type=int, default=5)
    parser.add_argument("--deleted", type=int, default=2)
    parser.add_argument("--resaved", type=int, default=0, help="annotations saved again with the same labels a tick")
    args = parser.parse_args()
    rnd = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        state = SyncState(Path(tmp) / "state.sqlite3", 1, REPO_ID)
        tasks = seed(state, args.annotations, rnd)
        project = SimpleNamespace(label_config=CONFIG, project_id=1, url="http://label-studio", title="bench")
        exporter = Exporter(StandInRepo(), project, state)
        assert data_field(CONFIG).value_key == exporter.value_key and control_tags(CONFIG) == exporter.controls
        t0 = time.perf_counter()
        _, size, _ = build_version(exporter, 1, SHA)
        print(f"{args.annotations} annotations of {tasks} tasks; the first export (every row made): "
              f"{time.perf_counter() - t0:.2f} s, {size:.1f} MB of files")
        next_id, runs = 10 ** 7, []
        for number in range(2, args.repeats + 2):
            next_id = change(state, tasks, args.annotations, next_id, args, rnd)
            ours, _, counts = build_version(exporter, number, f"{number - 1:040x}")
            floor = pandas_floor(state, exporter)
            runs.append((ours.total(), floor.wall["CSV"], floor.total(), ours.total(True), floor.cpu["CSV"],
                         floor.total(True)))
            steps = ", ".join(f"{k} {v:.2f}" for k, v in ours.wall.items())
            print(f"v{number} ({counts}): ours {ours.total():.2f} s ({steps}); "
                  f"pandas writing the ready CSV rows {floor.wall['CSV']:.2f} s: ratio "
                  f"{ours.total() / floor.wall['CSV']:.2f}; every file's ready rows {floor.total():.2f} s: ratio "
                  f"{ours.total() / floor.total():.2f}; CPU time: ours {ours.total(True):.2f} s vs "
                  f"{floor.cpu['CSV']:.2f} s (ratio {ours.total(True) / floor.cpu['CSV']:.2f})")
        m = [statistics.median(column) for column in zip(*runs)]
        print(f"median over {args.repeats}: a version of {args.annotations} annotations with all configs (CSV, "
              f"training rows, rows JSON, consensus, agreement, card) at an export after the first {m[0]:.2f} s vs "
              f"pandas writing the ready CSV rows {m[1]:.2f} s: ratio {m[0] / m[1]:.2f} (target <= 2); vs every "
              f"file's ready rows {m[2]:.2f} s: ratio {m[0] / m[2]:.2f}; CPU time {m[3]:.2f} s vs {m[4]:.2f} s: "
              f"ratio {m[3] / m[4]:.2f}")
        forget(state)  # as after a restart: the rows are stored in the state, nothing is kept in memory
        change(state, tasks, args.annotations, next_id, args, rnd)
        restarted, _, _ = build_version(exporter, args.repeats + 2, f"{args.repeats + 1:040x}")
        print(f"the first export after a restart (rows stored, nothing in memory): {restarted.total():.2f} s "
              f"({', '.join(f'{k} {v:.2f}' for k, v in restarted.wall.items())})")


if __name__ == "__main__":
    main()
