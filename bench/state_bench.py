"""Benchmark of the sync state's annotation store (not a test): ``python bench/state_bench.py [--annotations 100000]
[--small 1000] [--events 50] [--tasks 20000]``.

Prints, each against a baseline measured in the same run:

- a webhook event (``ANNOTATION_CREATED``: :meth:`labelhub.sync.state.SyncState.apply_annotations` of one new
  annotation, one transaction) in a state holding ``--annotations`` annotations, against the same in a state
  holding ``--small``: the ratio is about 1 when an event's cost does not grow with the project;
- the annotators question every export asks (:meth:`~labelhub.sync.state.SyncState.unknown_annotators`) in both;
- a reconciliation storing ``--tasks`` tasks read from Label Studio, one annotation each, into a new state
  (:meth:`~labelhub.sync.state.SyncState.store_task_lists`), against SQLite inserting the same rows with one
  ``executemany`` per table in one transaction (the floor: no reading of what is stored, no JSON encoding).

The states are seeded as ``bench/version_bench.py`` seeds its own (one annotator per task, three on every fifth).
"""
from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from labelhub.sync.state import SCHEMA, SyncState  # noqa: E402
from version_bench import annotation, seed, task_data  # noqa: E402


def per_event(state: SyncState, tasks: int, events: int, rnd: random.Random) -> tuple[float, float]:
    """Median seconds of one new annotation's event and of ``unknown_annotators``, over ``events`` each."""
    applied, asked = [], []
    for i in range(events):
        task = rnd.randrange(tasks)
        started = time.perf_counter()
        state.apply_annotations(task, [annotation(10 ** 7 + i, task, 4, rnd)], complete=False)
        applied.append(time.perf_counter() - started)
        started = time.perf_counter()
        state.unknown_annotators()
        asked.append(time.perf_counter() - started)
    return statistics.median(applied), statistics.median(asked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    rnd = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        timed = {}
        for n in (args.small, args.annotations):
            state = SyncState(Path(tmp) / f"{n}.sqlite3", 1, "bench/state")
            timed[n] = per_event(state, seed(state, n, rnd), args.events, rnd)
            state.close()
        (small_event, small_ask), (big_event, big_ask) = timed[args.small], timed[args.annotations]
        print(f"webhook event (one new annotation stored): {big_event * 1000:.2f} ms at {args.annotations} "
              f"annotations vs {small_event * 1000:.2f} ms at {args.small}: ratio {big_event / small_event:.2f}; "
              f"unknown_annotators {big_ask * 1000:.2f} ms vs {small_ask * 1000:.2f} ms")

        read = [(task, task_data(task), [annotation(task, task, 1 + task % 5, rnd)], "2026-01-01T00:00:00.000000Z",
                 "a" * 40) for task in range(args.tasks)]
        state = SyncState(Path(tmp) / "reconcile.sqlite3", 1, "bench/state")
        started = time.perf_counter()
        state.store_task_lists(read)
        ours = time.perf_counter() - started
        floor_db = sqlite3.connect(Path(tmp) / "floor.sqlite3", isolation_level=None)
        floor_db.execute("PRAGMA journal_mode=WAL")
        floor_db.execute("PRAGMA synchronous=FULL")
        floor_db.executescript(SCHEMA)
        tasks_rows = [(1, task, json.dumps(data)) for task, data, *_ in read]
        annotation_rows = [(1, a["id"], task, a["updated_at"], json.dumps(a), revision)
                           for task, _, annotations, _, revision in read for a in annotations]
        started = time.perf_counter()
        with floor_db:
            floor_db.execute("BEGIN IMMEDIATE")
            floor_db.executemany("INSERT INTO tasks_seen VALUES (?, ?, ?)", tasks_rows)
            floor_db.executemany("INSERT INTO annotations (project_id, annotation_id, task_id, updated_at, body, "
                                 "revision) VALUES (?, ?, ?, ?, ?, ?)", annotation_rows)
        floor = time.perf_counter() - started
        print(f"reconciliation of {args.tasks} tasks stored: {ours:.2f} s vs SQLite inserting the same rows in one "
              f"transaction {floor:.2f} s: ratio {ours / floor:.2f}")


if __name__ == "__main__":
    main()
