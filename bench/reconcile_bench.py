"""Benchmark of the annotation step of a sync cycle at scale (not a test):
``python bench/reconcile_bench.py [--tasks 10000] [--annotated 50]``.

Starts a private Label Studio (from the migrated template of ``tests.labelstudio``), makes a Text project of
``--annotated`` annotated tasks, then bulk-imports ``--tasks`` tasks in one call (none annotated: what a first
``labelhub sync`` of a big repo does), and times the annotation step of a cycle (a reconciliation, then the sweep of
deleted tasks): the cycle after the bulk import, then two idle cycles after more than the 5 s overlap.

As this machine's baseline in the same run, over the same project: the code path before (every reading asked for
``updated_at > cursor - 5 s`` with ``fields=all`` and held the whole list in memory; every sweep listed every task
id), with its own state file. Each figure: seconds, and the Label Studio task-list calls made.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["TQDM_DISABLE"] = "1"
from labelhub.sync.annotations import intake as intake_module  # noqa: E402
from labelhub.sync.annotations.intake import AnnotationIntake  # noqa: E402
from labelhub.sync.labelstudio.project import LabelStudioProject  # noqa: E402
from labelhub.sync.state import SyncState  # noqa: E402
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402

CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
          '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>')
LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class Before:
    """The annotation step as it was (commit 49c9f84): the reading from ``cursor - 5 s``, whole, then every id."""

    def __init__(self, project: LabelStudioProject, state: SyncState):
        self.project, self.state = project, state

    def reconcile(self) -> int:
        cursor = self.state.cursor("tasks_updated_at")
        since = ((datetime.strptime(cursor, LS_TIME).replace(tzinfo=timezone.utc) - timedelta(seconds=5))
                 .strftime(LS_TIME) if cursor else "")
        items = [{"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": since}]
        where = {"conjunction": "and", "items": items if since else []}
        tasks, _, _ = self.project._listing(1, query=json.dumps({"filters": where, "ordering": ["tasks:updated_at"]}),
                                            fields="all")
        tasks = [task.dict() for task in tasks]
        read = [(t["id"], t.get("data") or {}, [intake_module._normalize(a if isinstance(a, dict) else a.dict())
                                                 for a in t.get("annotations") or []],
                 intake_module._ls_time(t.get("updated_at")) or None, intake_module._revision(t)) for t in tasks]
        self.state.store_task_lists(read)
        newest = max([cursor, *(as_of for *_, as_of, _ in read if as_of)])
        self.state.set_cursor("tasks_updated_at", newest)
        return len(read)

    def sweep(self) -> None:
        ids = self.project.task_ids()
        gone = self.state.annotated_task_ids() - set(ids or ())
        if ids is not None and gone:
            self.state.delete_task_annotations(sorted(gone))


def counting(project: LabelStudioProject) -> list:
    """Count the task-list calls of ``project``'s client (each page is one)."""
    raw = project.client.tasks._raw_client
    fetch, calls = raw.list, []

    def list_(*args, **kwargs):
        calls.append(1)
        return fetch(*args, **kwargs)

    raw.list = list_
    return calls


def cycle(step, calls: list) -> tuple[float, int]:
    """One annotation step (reconcile, sweep): seconds and task-list calls."""
    del calls[:]
    began = time.perf_counter()
    step.reconcile()
    step.sweep()
    return time.perf_counter() - began, len(calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--annotated", type=int, default=50)
    args = parser.parse_args()
    ensure_template()
    with tempfile.TemporaryDirectory() as tmp, LabelStudioServer(Path(tmp) / "ls") as ls:
        client = ls.client()
        made = client.projects.create(title="reconcile bench", label_config=CONFIG)
        client.projects.import_tasks(made.id, request=[{"text": f"annotated {i}"} for i in range(args.annotated)])
        for task in client.tasks.list(project=made.id, page_size=args.annotated + 1, fields="task_only"):
            client.annotations.create(task.id, result=[{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                        "value": {"choices": ["Positive"]}}])
        steps = {}
        for name in ("before", "after"):
            project = LabelStudioProject(ls.url, ls.api_key, made.id)
            state = SyncState(Path(tmp) / f"{name}.sqlite3", made.id, "bench/texts")
            steps[name] = ((Before if name == "before" else AnnotationIntake)(project, state), counting(project))
            cycle(*steps[name])  # the annotated tasks stored, the sweep's baseline made
        time.sleep(6)
        for name in ("before", "after"):
            cycle(*steps[name])  # the overlap window of the annotations read (again, before)
        began = time.perf_counter()
        client.projects.import_tasks(made.id, request=[{"text": f"imported {i}: some words"} for i in range(args.tasks)])
        print(f"bulk import of {args.tasks} tasks into a project of {args.annotated} annotated ones: "
              f"{time.perf_counter() - began:.1f} s (Label Studio's import call)")
        figures = {name: [cycle(*steps[name])] for name in ("before", "after")}
        time.sleep(6)
        for _ in range(2):
            for name in ("before", "after"):
                figures[name].append(cycle(*steps[name]))
        labels = ("the cycle after the bulk import", "the first idle cycle (overlap passed)", "a second idle cycle")
        for i, label in enumerate(labels):
            (b, bc), (a, ac) = figures["before"][i], figures["after"][i]
            print(f"{label}: before {b:.2f} s / {bc} task-list calls, after {a:.2f} s / {ac} calls, "
                  f"ratio {a / b:.3f}")


if __name__ == "__main__":
    main()
