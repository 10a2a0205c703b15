"""Benchmark (not a test): several hosts on one Redis, against one host, in the same run.

1. **Round-robin.** ``--requests`` mixed requests (a quarter annotations to ``/webhook``, half ``/predict`` of
   one text task, a quarter ``/health``) sent one after the other, round-robin, to three ``labelhub backend``
   processes (one gunicorn worker each, their own ``MODEL_DIR``: three "hosts") sharing one Redis; the
   baseline is the same requests to one backend without Redis (its files in ``MODEL_DIR``). Printed: errors,
   p50/p95 latency per kind, and whether any answer was older than a ``model_version`` already seen.
2. **Failover.** A burst of 100 annotations, then the process holding the trainer is SIGKILLed while it
   trains: the seconds until another process holds the trainer and until every event is applied.
3. **Prediction jobs.** ``--tasks`` text tasks in a private Label Studio (three projects with the same tasks),
   predicted by ``labelhub predict``: in its own process without Redis (the baseline), then with Redis on one
   and on two ``labelhub worker`` processes. Printed: seconds, tasks/s, and predictions per task.

This machine has 2 cores, shared by every process here (Label Studio included): two workers cannot be
twice as fast as one; the figures say what the queue costs and what a second worker adds on the same cores.

Run: ``python bench/hosts_bench.py [--requests 1000] [--tasks 5000]``.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.backend_fixtures import (TEXT_CONFIG, BackendServer, RedisServer, annotation_event,  # noqa: E402
                                    project_key, project_payload, rotten_tomatoes, text_tasks, trainer_leader,
                                    wait_for)
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402

KEY = project_key(7)
PROJECT = project_payload(7, label_config=TEXT_CONFIG)


def _number(version: str) -> int:
    return int(re.fullmatch(r"labelhub-(\d+)-[0-9a-f]+", version).group(1))


def round_robin(servers: list, n: int) -> dict:
    """Send ``n`` mixed requests round-robin; return errors, latencies per kind, and version regressions."""
    tasks, labels = text_tasks(800)
    session = requests.Session()
    session.post(servers[0].url + "/setup", json={"project": KEY, "schema": TEXT_CONFIG}, timeout=60).raise_for_status()
    for server in servers:  # load the embedder everywhere first: the figures are of warm processes
        session.post(server.url + "/predict", json={"tasks": [tasks[-1]], "project": KEY,
                                                    "label_config": TEXT_CONFIG}, timeout=120).raise_for_status()
    latency, errors, regressions, highest, annotated = defaultdict(list), 0, 0, 0, 0
    started = time.perf_counter()
    for i in range(n):
        server, kind = servers[i % len(servers)], ("webhook", "predict", "predict", "health")[i % 4]
        t0 = time.perf_counter()
        if kind == "webhook":
            body = annotation_event(10_000 + annotated, tasks[annotated % 400], labels[annotated % 400], project=PROJECT)
            answer = session.post(server.url + "/webhook", json=body, timeout=60)
            annotated += 1
        elif kind == "predict":
            answer = session.post(server.url + "/predict", json={"tasks": [tasks[400 + i % 400]], "project": KEY,
                                                                 "label_config": TEXT_CONFIG}, timeout=60)
        else:
            answer = session.get(server.url + "/health", timeout=60)
        latency[kind].append(time.perf_counter() - t0)
        if answer.status_code != 200:
            errors += 1
            continue
        if kind == "predict":
            number = _number(answer.json()["results"][0]["model_version"])
            regressions += number < highest
            highest = max(highest, number)
    return {"seconds": time.perf_counter() - started, "errors": errors, "regressions": regressions,
            "latency": {k: (statistics.median(v) * 1000, statistics.quantiles(v, n=20)[-1] * 1000)
                        for k, v in latency.items()}, "highest": highest}


def _show(name: str, result: dict) -> None:
    lat = ", ".join(f"{k} p50 {p50:.1f} ms p95 {p95:.1f} ms" for k, (p50, p95) in sorted(result["latency"].items()))
    print(f"  {name}: {result['seconds']:.1f} s, {result['errors']} errors, {result['regressions']} answers older than "
          f"a version already seen, last version trained on {result['highest']} tasks; {lat}", flush=True)


def failover(servers: list, redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    tasks, labels = text_tasks(800)
    wait_for(lambda: client.llen("labelhub:events") == 0, timeout=300, message="an empty queue")
    _, pid = wait_for(lambda: trainer_leader(servers), timeout=60, message="a trainer")
    for n in range(100):
        body = annotation_event(90_000 + n, tasks[200 + n], labels[200 + n], project=PROJECT)
        requests.post(servers[n % 3].url + "/webhook", json=body, timeout=60).raise_for_status()
    wait_for(lambda: client.exists(f"labelhub:project:{KEY}:lock") or client.llen("labelhub:events") < 100,
             timeout=60, interval=0.01, message="the trainer to take the burst")
    os.kill(pid, signal.SIGKILL)
    killed, queued = time.monotonic(), client.llen("labelhub:events")
    wait_for(lambda: (found := trainer_leader(servers)) and found[1] != pid, timeout=120, interval=0.05,
             message="a new trainer")
    took_over = time.monotonic() - killed
    wait_for(lambda: client.llen("labelhub:events") == 0, timeout=300, interval=0.05, message="the queue to drain")
    print(f"  trainer SIGKILLed with {queued} events still queued: another process held the trainer after "
          f"{took_over:.1f} s (lease 2 s), every event applied after {time.monotonic() - killed:.1f} s", flush=True)


def prediction_jobs(tmp: Path, redis_url: str, n_tasks: int) -> None:
    from labelhub.backend.app import create_app

    ensure_template()
    snippets = rotten_tomatoes()
    rows = [(f"{snippets[i % len(snippets)][0]} (review {i})", snippets[i % len(snippets)][1]) for i in range(n_tasks)]
    runs = (("one process, no Redis (baseline)", None, 0), ("Redis, 1 labelhub worker", f"{redis_url}/1", 1),
            ("Redis, 2 labelhub workers", f"{redis_url}/2", 2))
    for name, url, n_workers in runs:  # each on a fresh Label Studio: its prediction import slows as its database grows
        with LabelStudioServer(tmp / f"label-studio-{n_workers}") as ls:
            token = ls.personal_token or ls.api_key
            env = {**os.environ, "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": token, "TQDM_DISABLE": "1",
                   "MODEL_DIR": str(tmp / f"models-{n_workers}")}
            project = ls.client().projects.create(title=name, label_config=TEXT_CONFIG)
            for start in range(0, n_tasks, 5000):
                ls.client().projects.import_tasks(id=project.id, request=[{"text": t} for t, _ in rows[start:start + 5000]])
            ids = {t.data["text"]: t.id for t in ls.client().tasks.list(project=project.id, page_size=5000,
                                                                        fields="task_only", include="id,data")}
            settings = {"model_dir": env["MODEL_DIR"], "start_trainer": False, "warmup": False}
            app = create_app({**settings, "redis_url": url} if url else settings)
            payload = {"id": project.id, "created_at": project.created_at.isoformat(), "label_config": TEXT_CONFIG}
            web = app.test_client()
            for i, (text, label) in enumerate(rows[:100]):
                event = annotation_event(100_000 + i, {"id": ids[text], "data": {"text": text}}, label, project=payload)
                assert web.post("/webhook", json=event).status_code == 200
            app.extensions["labelhub"].trainer.run_once()
            if url:
                env["LABELHUB_REDIS_URL"] = url
            workers = [subprocess.Popen([sys.executable, "-m", "labelhub.cli", "worker", "--log-level", "WARNING"],
                                        cwd=ROOT, env={**env, "MODEL_DIR": str(tmp / f"worker-{n_workers}-{w}")},
                                        start_new_session=True) for w in range(n_workers)]
            try:
                time.sleep(3 if workers else 0)  # the workers connect (their model loads with the first batch)
                started = time.monotonic()
                proc = subprocess.run([sys.executable, "-m", "labelhub.cli", "predict", "--project", str(project.id)],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
                seconds = time.monotonic() - started
            finally:
                for worker in workers:
                    worker.send_signal(signal.SIGTERM)
                for worker in workers:
                    worker.wait(60)
            if proc.returncode != 0:
                raise SystemExit(f"labelhub predict exited {proc.returncode}: {proc.stdout}")
            tasks = ls.client().tasks.list(project=project.id, page_size=5000, fields="all", include="id,predictions")
            per_task = Counter(len(t.predictions or []) for t in tasks)
            print(f"  {name}: {n_tasks} tasks in {seconds:.1f} s ({n_tasks / seconds:.0f} tasks/s); predictions per "
                  f"task → tasks: {dict(per_task)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--skip-jobs", action="store_true", help="only the round-robin and the failover")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labelhub-hosts-bench-") as name, RedisServer(Path(name) / "redis") as rs:
        tmp = Path(name)
        print(f"1. {args.requests} mixed requests, one after the other", flush=True)
        with BackendServer(tmp / "alone", workers=1, threads=4, env={"LABELHUB_WARMUP": "false"}) as alone:
            _show("one backend, no Redis (baseline)", round_robin([alone], args.requests))
        env = {"LABELHUB_REDIS_URL": f"{rs.url}/0", "LABELHUB_TRAINER_LEASE": "2", "LABELHUB_WARMUP": "false"}
        servers = [BackendServer(tmp / f"host{i}", workers=1, threads=4, env=env) for i in range(3)]
        try:
            for server in servers:
                server.start(timeout=120)
            _show("three backends, one Redis, round-robin", round_robin(servers, args.requests))
            print("2. failover", flush=True)
            failover(servers, f"{rs.url}/0")
        finally:
            for server in servers:
                server.stop()
        if not args.skip_jobs:
            print(f"3. prediction jobs of {args.tasks} tasks", flush=True)
            prediction_jobs(tmp, rs.url, args.tasks)


if __name__ == "__main__":
    main()
