"""Benchmark (not a test): how many automatic prediction jobs a burst of annotations makes on Redis.

With ``LABELHUB_AUTO_PREDICT`` every retrain that moves ``model_version`` asks for a whole-project job, and each job
writes one more prediction per unlabeled task, which Label Studio keeps (README, "Old versions"). This bench starts
a real Label Studio, a ``redis-server`` and one ``labelhub worker`` (the tests' way), then for each
``LABELHUB_AUTO_PREDICT_INTERVAL`` of ``--intervals`` (the baseline first: 0, no interval) a backend on that Redis
with auto-predict, a project of ``--tasks`` text tasks connected to it, and ``--annotations`` annotations saved
one every ``--every`` seconds. After ``--drain`` seconds more it prints the jobs the worker ran for the project and
the predictions per unlabeled task, and their ratio to the baseline's.

Run: ``python bench/auto_predict_bench.py [--annotations 60] [--every 1] [--intervals 0,30]`` (about 6 minutes;
``python -m tests.testbed install`` first). Before 2026-12-05 the interval did not apply on Redis: the same burst
made 44 jobs and 18 predictions per task (a scratch run of this loop against the code of then).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.backend_fixtures import TEXT_CONFIG, RedisServer, auto_predict_on_redis, text_tasks  # noqa: E402
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402
from tests.test_backend_labelstudio import _connect  # noqa: E402


def burst(ls, redis_url: str, folder: Path, interval: str, args) -> tuple[int, Counter]:
    """One backend with ``LABELHUB_AUTO_PREDICT_INTERVAL=interval``: ``(jobs the worker ran, Counter of predictions
    per unlabeled task)`` after the burst."""
    with auto_predict_on_redis(ls, redis_url, folder, interval) as backend:
        client = ls.client()
        project = client.projects.create(title=f"auto-predict bench {interval}", label_config=TEXT_CONFIG)
        tasks, labels = text_tasks(args.tasks)
        client.projects.import_tasks(id=project.id, request=[t["data"] for t in tasks])
        _connect(ls, backend, project.id)
        ids = sorted(t.id for t in client.tasks.list(project=project.id, page_size=args.tasks, fields="task_only",
                                                      include="id"))
        for task_id, label in zip(ids[:args.annotations], labels):
            client.annotations.create(id=task_id, result=[{"from_name": "label", "to_name": "text",
                                                           "type": "choices", "value": {"choices": [label]}}])
            time.sleep(args.every)
        time.sleep(args.drain)
        jobs = backend.worker_log.read_text(errors="replace").count(
            f"Successfully completed labelhub auto-predict: project {project.id}.")
        per_task = Counter(len(t.predictions or []) for t in client.tasks.list(
            project=project.id, page_size=args.tasks, fields="all") if not t.is_labeled)
        return jobs, per_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--annotations", type=int, default=60)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between two annotations")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait after the last annotation")
    parser.add_argument("--intervals", default="0,30", help="LABELHUB_AUTO_PREDICT_INTERVAL values, baseline first")
    args = parser.parse_args()
    ensure_template()
    with tempfile.TemporaryDirectory(prefix="labelhub-auto-predict-bench-") as tmp, \
            LabelStudioServer(Path(tmp) / "label-studio") as ls, RedisServer(Path(tmp) / "redis") as redis_server:
        base = None
        for n, interval in enumerate(args.intervals.split(",")):
            jobs, per_task = burst(ls, f"{redis_server.url}/{n}", Path(tmp) / f"run{n}", interval.strip(), args)
            mean = sum(k * v for k, v in per_task.items()) / max(1, sum(per_task.values()))
            base = base or (max(1, jobs), mean or 1.0)
            print(f"LABELHUB_AUTO_PREDICT_INTERVAL={interval}: {args.annotations} annotations one every {args.every} s "
                  f"made {jobs} automatic jobs ({jobs / base[0]:.2f} x the baseline) and {mean:.1f} predictions per "
                  f"unlabeled task ({mean / base[1]:.2f} x): {dict(sorted(per_task.items()))}", flush=True)


if __name__ == "__main__":
    main()
