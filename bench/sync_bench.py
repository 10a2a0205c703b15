"""Benchmark of the sync daemon (not a test): ``python bench/sync_bench.py [--files 10000] [--rounds 15]
[--only-files | --only-latency] [--latency-runs 15] [--latency-annotations 0]`` (``--rounds`` 15 by default: one
round's ratio moves by ±30% on these shared machines).

Starts a private Label Studio (from the migrated template of ``tests.labelstudio``) and the Hub test
server with ``--files`` real Fashion-MNIST images, then prints:

- files → tasks: one ``FileImporter.run()`` over the repo into a new project with a new state, against the
  baseline of one raw Label Studio import call of the same task payloads into a new project (the mean of one
  before and one after ours), and their ratio; ``--rounds`` times, interleaved (raw, ours, raw, ours, ..., raw),
  since the machine's load moves Label Studio's time by tens of percent: every round's ratio and their median
  (both sides send the same payloads; the raw call is one ``requests.post`` of the payloads as JSON to
  ``/api/projects/<id>/import``, what glue code would send, timed with its encoding; ours lists the repo, builds
  the payloads, keeps the ledger and encodes the JSON itself, the next batch's while a call runs:
  :meth:`labelhub.sync.labelstudio.project.LabelStudioProject.prepare_import`);
- a no-op poll (the head did not move): how many Hub and Label Studio calls it costs;
- one export of ``--annotations`` annotations, the first of its state (after an import cycle, as in the
  daemon) and the next one: their Hub and Label Studio calls (and those of the reconciliation that read them);
- the latency from an annotation's save to its tagged commit, through the webhook, with
  ``--export-interval 0`` (the daemon in a subprocess, a local git repo, median of ``--latency-runs``, 15: of 5 the
  median moved from 157 to 250 ms between two runs a minute apart). It is timed from Label Studio's save, the
  annotation's ``created_at`` (set by Label Studio, on this machine's clock, as it inserts the annotation: the
  view then records the user's activity, releases the task's lock and writes the history before it delivers the
  webhook and answers), to the tag; and from the client's create call to the tag. As this machine's baseline in
  the same run: the create call's own time (Label Studio saves the annotation and delivers the webhook before it
  answers; the export starts as the webhook arrives), the time after it, and the same create call in a project
  without any webhook (Label Studio's own save, one half a second before each measured annotation). With
  ``--latency-annotations N`` the project already holds N annotated tasks (imported with their annotations, in the
  first version) before the measured saves: an export writes every annotation's row, so its time grows with N;
- the time to build the CSV of ``--csv-rows`` annotations at an export after the first (the rows of
  earlier annotations are stored), against pandas writing the same rows from plain dicts (the floor),
  and the first export's time, which makes every row.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.labelstudio import LabelStudioServer, ensure_template, free_port  # noqa: E402

HUB_PORT = free_port()
os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{HUB_PORT}", HF_HUB_DISABLE_XET="1",
                  HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TQDM_DISABLE="1")

import pandas as pd  # noqa: E402
import requests  # noqa: E402

from labelhub.sync.versions.exporter import Exporter, build_csv  # noqa: E402
from labelhub.repos.hub import HubRepo  # noqa: E402
from labelhub.sync.files.importer import FileImporter  # noqa: E402
from labelhub.sync.annotations.intake import AnnotationIntake  # noqa: E402
from labelhub.label_config import control_tags, data_field  # noqa: E402
from labelhub.sync.versions.rows import annotation_row  # noqa: E402
from labelhub.sync.labelstudio.project import LabelStudioProject  # noqa: E402
from labelhub.sync.state import SyncState  # noqa: E402
from labelhub.sync.files.payloads import build_file_task  # noqa: E402
from tests import sample_repos as datasets  # noqa: E402
from tests.hubserver import HubServer  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
          '<Choice value="a"/><Choice value="b"/></Choices></View>')


class CountingProject(LabelStudioProject):
    """A project that counts its Label Studio API calls."""

    calls = 0
    imports = 0

    def call(self, fn, *args, **kwargs):
        CountingProject.calls += 1
        return super().call(fn, *args, **kwargs)

    def import_tasks(self, tasks):
        CountingProject.imports += 1
        return super().import_tasks(tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--annotations", type=int, default=1_000)
    parser.add_argument("--csv-rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15, help="files → tasks rounds (ours and raw interleaved)")
    parser.add_argument("--only-files", action="store_true", help="only the files → tasks rounds and the no-op poll")
    parser.add_argument("--only-latency", action="store_true", help="only the annotation → tagged commit latency")
    parser.add_argument("--latency-runs", type=int, default=15, help="annotations saved one after another")
    parser.add_argument("--latency-annotations", type=int, default=0,
                        help="annotations the latency project holds before the measured saves")
    args = parser.parse_args()
    if args.only_latency:
        ensure_template()
        with tempfile.TemporaryDirectory() as tmp, LabelStudioServer(Path(tmp) / "ls") as ls:
            return bench_latency(ls, Path(tmp), args.latency_runs, args.latency_annotations)
    if not args.only_files:
        bench_csv(args.csv_rows)
    ensure_template()
    with tempfile.TemporaryDirectory() as tmp, \
            LabelStudioServer(Path(tmp) / "ls") as ls, \
            HubServer(Path(tmp) / "hub", port=HUB_PORT) as hub:
        repo_id = "bench/fmnist"
        hub.create_repo(repo_id)
        t0 = time.perf_counter()
        hub.commit_files(repo_id, datasets.image_files(0, args.files), message="images")
        print(f"seeded {args.files} real images in {time.perf_counter() - t0:.1f} s")
        client = ls.client()
        repo = HubRepo(repo_id)
        sha = repo.resolve("main")
        field = data_field(CONFIG)
        payloads = [build_file_task(field, repo.file_url(sha, f.path), repo_id, f.path, sha)
                    for f in repo.list_files(sha) if f.path.endswith(".png")]

        def raw_import() -> float:
            """One raw import call of the same payloads into a new project (Label Studio slows as its
            database grows, so each round's baseline is the mean of one call before and one after ours)."""
            raw = client.projects.create(title="raw", label_config=CONFIG)
            t0 = time.perf_counter()
            answer = requests.post(f"{ls.url}/api/projects/{raw.id}/import", params={"return_task_ids": "true"},
                                   json=payloads, headers={"Authorization": f"Token {ls.api_key}"}, timeout=600)
            answer.raise_for_status()
            return time.perf_counter() - t0

        raws, ours_times = [raw_import()], []
        for n in range(args.rounds):
            ours = client.projects.create(title="labelhub", label_config=CONFIG)
            project = CountingProject(ls.url, ls.api_key, ours.id)
            importer = FileImporter(repo, project, SyncState(Path(tmp) / f"state-{n}.sqlite3", ours.id, repo_id))
            CountingProject.imports = 0
            t0 = time.perf_counter()
            report = importer.run()
            ours_times.append(time.perf_counter() - t0)
            assert report.created == args.files, report
            raws.append(raw_import())
        ratios = [o / ((before + after) / 2) for o, before, after in zip(ours_times, raws, raws[1:])]

        hub.reset_calls()
        CountingProject.calls = 0
        t0 = time.perf_counter()
        assert importer.run().unchanged
        poll_ms = (time.perf_counter() - t0) * 1000
        print(f"files → tasks, {args.files} files: labelhub sync (listing, state, {CountingProject.imports} import "
              f"calls) {' '.join(f'{o:.2f}' for o in ours_times)} s vs one raw Label Studio import call "
              f"{' '.join(f'{r:.2f}' for r in raws)} s (before, between and after ours): ratios "
              f"{' '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f}")
        print(f"no-op poll: {len(hub.calls)} Hub call(s) {[c[0] + ' ' + c[1] for c in hub.calls]}, "
              f"{CountingProject.calls} Label Studio call(s), {poll_ms:.0f} ms")
        if args.only_files:
            return
        bench_export(ls, hub, Path(tmp), args.annotations)
        bench_latency(ls, Path(tmp), args.latency_runs)


def call_names(calls) -> list[str]:
    """``METHOD what`` of recorded Hub calls: the route under ``/api/datasets/owner/name/`` (``GET refs``,
    ``POST preupload``, ``POST commit``, ``POST tag``), else the path's last segment (``POST validate-yaml``,
    ``HEAD README.md``)."""
    names = []
    for method, path, *_ in calls:
        parts = path.strip("/").split("/")
        names.append(f"{method} {parts[4] if parts[:2] == ['api', 'datasets'] and len(parts) > 4 else parts[-1]}")
    return names


def bench_export(ls, hub, tmp: Path, n: int) -> None:
    """Hub and Label Studio calls of one export of ``n`` annotations (tasks imported with them), the first of its
    state after one import cycle (the daemon always polls before it exports), then the next one."""
    repo_id = "bench/export"
    hub.create_repo(repo_id)
    hub.commit_files(repo_id, datasets.image_files(0, 10), message="images")
    client = ls.client()
    created = client.projects.create(title="export", label_config=CONFIG)
    repo = HubRepo(repo_id)
    project = CountingProject(ls.url, ls.api_key, created.id)
    state = SyncState(tmp / "export.sqlite3", created.id, repo_id)
    FileImporter(repo, project, state).run()
    sha = repo.resolve("main")
    result = [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": ["a"]}}]
    tasks = [{"data": {"image": repo.file_url(sha, f"x/{i}.png"), "hf_repo": repo_id, "hf_path": f"x/{i}.png",
                       "hf_revision": sha}, "annotations": [{"result": result, "lead_time": 2.0}]} for i in range(n)]
    client.projects.import_tasks(created.id, request=tasks)
    CountingProject.calls = 0
    t0 = time.perf_counter()
    AnnotationIntake(project, state).reconcile()
    reconcile_s, reconcile_calls = time.perf_counter() - t0, CountingProject.calls
    exporter = Exporter(repo, project, state)
    hub.reset_calls()
    CountingProject.calls = 0
    t0 = time.perf_counter()
    version = exporter.export()
    export_s = time.perf_counter() - t0
    print(f"export of {n} annotations ({version.tag}, the first of its state): {len(hub.calls)} Hub calls "
          f"{call_names(hub.calls)}, "
          f"{CountingProject.calls} Label Studio calls, {export_s:.2f} s; the reconciliation that read them: "
          f"{reconcile_calls} Label Studio calls, {reconcile_s:.2f} s")
    task = next(iter(client.tasks.list(project=created.id, page_size=1)))
    client.annotations.create(task.id, result=result)
    AnnotationIntake(project, state).reconcile()
    hub.reset_calls()
    CountingProject.calls = 0
    t0 = time.perf_counter()
    version = exporter.export()
    print(f"next export ({version.tag}, {n + 1} annotations, +{version.added}): {len(hub.calls)} Hub calls "
          f"{call_names(hub.calls)}, {CountingProject.calls} Label Studio calls, "
          f"{time.perf_counter() - t0:.2f} s")


def bench_latency(ls, tmp: Path, runs: int = 15, existing: int = 0) -> None:
    """Annotation saved → tagged commit through the webhook, the daemon with --export-interval 0; the project holds
    ``existing`` annotated tasks before (exported as the first version)."""
    repo = tmp / "latency-repo"
    datasets.init_local_repo(repo)
    datasets.commit_local(repo, datasets.image_files(0, runs))
    client = ls.client()
    baseline = client.projects.create(title="latency baseline", label_config=CONFIG)  # no webhook
    client.projects.import_tasks(baseline.id, request=[{"image": f"https://example.com/{i}.png"} for i in range(runs)])
    unhooked = iter(client.tasks.list(project=baseline.id, page_size=runs))
    created = client.projects.create(title="latency", label_config=CONFIG)
    done_url = "https://example.com/done/"  # the existing tasks: outside the repo's files
    if existing:  # each with one annotation, in one import call
        done = [{"data": {"image": f"{done_url}{i}.png"},
                 "annotations": [{"result": [{"from_name": "kind", "to_name": "image", "type": "choices",
                                              "value": {"choices": ["ab"[i % 2]]}}]}]} for i in range(existing)]
        client.projects.import_tasks(created.id, request=done)
    first = 2 if existing else 1  # the number of the first measured version
    port = free_port()
    env = {**os.environ, "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.api_key,
           "LABELHUB_SECRET": "labelhub-bench-file-secret-0123"}  # a local repo needs one
    daemon = subprocess.Popen(
        [sys.executable, "-m", "labelhub.cli", "sync", "--repo", str(repo), "--project", str(created.id), "--state",
         str(tmp / "latency.sqlite3"), "--export-interval", "0", "--interval", "3600", "--reconcile-interval", "3600",
         "--webhook-url", f"http://127.0.0.1:{port}/webhook", "--webhook-port", str(port)],
        env=env, stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    try:
        while client.projects.get(created.id).task_number < runs + existing or \
                not client.webhooks.list(project=str(created.id)):
            time.sleep(0.1)
        while existing and not tagged(repo, "annotations-v1"):  # the existing annotations, reconciled at start
            time.sleep(0.1)
        latencies, creates, alone, from_save = [], [], [], []
        measured = [t for t in client.tasks.list(project=created.id, page_size=runs + existing)
                    if not t.data["image"].startswith(done_url)]
        for i, task in enumerate(measured):
            alone.append(save(client, next(unhooked).id)[0])  # the baseline, interleaved: the same moment's machine
            time.sleep(0.5)  # Label Studio works on after it answers: a save right after took half again as long
            started = time.perf_counter()
            seconds, created_at = save(client, task.id)
            while not tagged(repo, f"annotations-v{i + first}"):
                time.sleep(0.005)
            latencies.append(time.perf_counter() - started)
            from_save.append(time.time() - created_at)
            creates.append(seconds)
        print(f"annotation saved → tagged commit (webhook, --export-interval 0, local repo), from Label Studio's "
              f"save (the annotation's created_at) to the tag: median {statistics.median(from_save) * 1000:.0f} ms, "
              f"max {max(from_save) * 1000:.0f} ms over {runs}, the project holding {existing} annotations before")
        print(f"from the client's create call to the tag: median {statistics.median(latencies) * 1000:.0f} ms, max "
              f"{max(latencies) * 1000:.0f} ms; of it, Label Studio's create call (its save and its webhook "
              f"delivery, before it answers): median {statistics.median(creates) * 1000:.0f} ms; after it: median "
              f"{statistics.median([a - b for a, b in zip(latencies, creates)]) * 1000:.0f} ms")
        print(f"baseline: Label Studio's create call in a project without any webhook (no LabelHub in the loop): "
              f"median {statistics.median(alone) * 1000:.0f} ms over {runs}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)


def save(client, task_id: int) -> tuple[float, float]:
    """One annotation create call (a choice) on ``task_id``: its seconds, and the annotation's ``created_at``
    (Label Studio's clock, the same machine's) in Unix seconds: when Label Studio saved it."""
    started = time.perf_counter()
    annotation = client.annotations.create(task_id, result=[{"from_name": "kind", "to_name": "image",
                                                             "type": "choices", "value": {"choices": ["a"]}}])
    return time.perf_counter() - started, annotation.created_at.timestamp()


def tagged(repo: Path, tag: str) -> bool:
    """Whether the local repo has ``tag``, read from its ref files: polling with ``git tag --list`` every few ms
    spawned a git process each time, on the two cores the daemon was exporting on."""
    packed = repo / ".git" / "packed-refs"
    return (repo / ".git" / "refs" / "tags" / tag).exists() or (
        packed.exists() and f" refs/tags/{tag}\n" in packed.read_text())


def bench_csv(n: int) -> None:
    """Build the CSV of ``n`` annotations from a state, against pandas writing the same rows."""
    with tempfile.TemporaryDirectory() as tmp:
        state = SyncState(Path(tmp) / "csv.sqlite3", 1, "bench/csv")
        config = CONFIG.replace("</View>", '<RectangleLabels name="box" toName="image"><Label value="x"/>'
                                           '</RectangleLabels></View>')
        controls = control_tags(config)
        for start in range(0, n, 10_000):
            with state.db:
                state.db.execute("BEGIN")
                state.db.executemany("INSERT INTO tasks_seen VALUES (1, ?, ?)", [
                    (i, json.dumps({"image": f"http://hub/{i}.png", "hf_path": f"{i}.png", "volume": str(i // 100)}))
                    for i in range(start, min(start + 10_000, n))])
                state.db.executemany("INSERT INTO annotations (project_id, annotation_id, task_id, updated_at, body, "
                                     "deleted) VALUES (1, ?, ?, '2026-01-01T00:00:00Z', ?, 0)", [
                    (i, i, json.dumps({"id": i, "completed_by": 1, "lead_time": 1.0, "created_at": "2026",
                                       "updated_at": "2026", "result": [
                                           {"from_name": "kind", "type": "choices", "value": {"choices": ["a"]}},
                                           {"from_name": "box", "type": "rectanglelabels", "value": {
                                               "x": 10, "y": 20, "width": 30, "height": 40,
                                               "rectanglelabels": ["x"]}}]}))
                    for i in range(start, min(start + 10_000, n))])
        state.set_users({1: "a@b.c"})
        t0 = time.perf_counter()
        build_csv(state, controls, "image")
        cold = time.perf_counter() - t0
        state.apply_annotations(n, [{"id": n, "completed_by": 1, "updated_at": "2026", "result": []}], complete=False)
        t0 = time.perf_counter()
        _, csv, _ = build_csv(state, controls, "image")
        ours = time.perf_counter() - t0
        pairs = state.live_annotations()
        rows = [annotation_row(t, a, controls, "image", {1: "a@b.c"}) for t, a in pairs]
        t0 = time.perf_counter()
        floor_csv = pd.DataFrame(rows).to_csv(index=False).encode()
        floor = time.perf_counter() - t0
        # a whole version with all configs, built incrementally as the exporter does: bench/version_bench.py
        print(f"CSV of {n} annotations, the next export (one annotation more; rows of the others stored): "
              f"{ours:.2f} s ({len(csv) / 1e6:.1f} MB) vs pandas writing the ready rows {floor:.2f} s "
              f"({len(floor_csv) / 1e6:.1f} MB): ratio {ours / floor:.2f}; the first export, making every row: "
              f"{cold:.2f} s")


if __name__ == "__main__":
    main()
