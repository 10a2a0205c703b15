"""Benchmark (not a test): ``labelhub predict`` pre-annotates 10,000 text tasks in a real Label Studio.

A private Label Studio 1.23.2 is started the way the tests start one (:mod:`tests.labelstudio`); a project of
``--tasks`` Rotten Tomatoes snippets (a Choices ``fresh``/``rotten`` config, each text made unique so that no
embedding is reused) is imported, and a backend ``MODEL_DIR`` is trained on ``--train`` of them (annotation
events posted to the backend's ``/webhook``, the trainer run once, as the backend does). Then:

1. ``labelhub predict --project N`` (a subprocess, the real CLI: its tqdm bar shows when stderr is a
   terminal) predicts every task: time and tasks/s; then every task is checked to hold exactly one
   prediction of the version.
   With ``--efficient-import`` Label Studio runs with its memory-efficient prediction import (a feature
   flag, off by default in 1.23, on in the Label Studio that ``labelhub demo``, the compose file and the tests
   start: :data:`labelhub.sync.labelstudio.server.EFFICIENT_IMPORT_FLAG`), which recounts only the tasks imported
   instead of the whole project; without it, Label Studio's default.
2. The model is trained on more annotations (a new version), ``labelhub predict`` is started again and
   SIGKILLed once about half of the tasks are written (``--kill-at``); the re-run goes on, and every task
   is checked to hold exactly one prediction of the new version (and still one of the old).

Figures (2 cores; absolute times move with what else runs, so compare runs made side by side): 10,000 tasks in
95 s on 2026-12-05 (41 s with ``--efficient-import``); on 2026-12-06 with two other jobs on the machine (load about
4), 265.6 s for the first job (37.6 tasks/s) and 229.6 s for the re-run of the 5,000 left after the SIGKILL, one
prediction per task and version both times. Where a job's time goes (``python -m cProfile`` on ``labelhub predict``,
3,000 tasks, that machine): 45 of 105 s embedding the texts (ONNX Runtime), 21 s in Label Studio's prediction imports
(six calls, each longer as the project holds more predictions: it recounts every task), 19 s in the task listings
(the plan's and each batch's re-reading, 60 pages of 100), the rest the model and the client. Writing each batch in
a thread behind the next batch's prediction was tried (2026-12-06, two jobs of each kind interleaved on one project):
1.09 times the time without the embedding cache, 0.95 with it, so not kept: on 2 cores Label Studio and the embedder
share the same CPU, and only a Label Studio on another host would gain.

Run: ``python bench/predict_bench.py [--tasks 10000] [--batch-size 500] [--efficient-import]``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelhub.sync.labelstudio.server import EFFICIENT_IMPORT_FLAG  # noqa: E402
from tests.backend_fixtures import TEXT_CONFIG, annotation_event, rotten_tomatoes  # noqa: E402
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402


def per_task(url: str, token: str, project_id: int) -> dict[str, Counter]:
    """``{version: Counter(predictions of it per task → number of tasks)}`` over every task of the project."""
    tasks, page = [], 1
    while True:
        answer = requests.get(f"{url}/api/tasks", params={"project": project_id, "page": page, "page_size": 5000,
                                                          "fields": "all", "include": "id,predictions"},
                              headers={"Authorization": f"Token {token}"}, timeout=300)
        if answer.status_code == 404:  # past the last page
            break
        answer.raise_for_status()
        batch = answer.json()["tasks"]
        tasks += batch
        if len(batch) < 5000:
            break
        page += 1
    versions = {p["model_version"] for t in tasks for p in t["predictions"]}
    return {v: Counter(sum(p["model_version"] == v for p in t["predictions"]) for t in tasks) for v in versions}


def run_cli(env: dict, project_id: int, batch_size: int) -> tuple[float, str]:
    """Run ``labelhub predict`` to its end; ``(seconds, its summary line)``."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "labelhub.cli", "predict", "--project", str(project_id),
                           "--batch-size", str(batch_size)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"labelhub predict exited {proc.returncode}: {proc.stdout}")
    return seconds, proc.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--train", type=int, default=100, help="annotated tasks of the first version")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--efficient-import", action="store_true",
                        help="start Label Studio with its memory-efficient prediction import (feature flag "
                             f"{EFFICIENT_IMPORT_FLAG}=true), which recounts only the imported tasks")
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of the tasks written before the SIGKILL")
    args = parser.parse_args()

    from labelhub.backend.app import create_app

    ensure_template()
    snippets = rotten_tomatoes()
    rows = [(f"{text} (review {i})", label)
            for i, (text, label) in ((i, snippets[i % len(snippets)]) for i in range(args.tasks))]
    with tempfile.TemporaryDirectory(prefix="labelhub-predict-bench-") as tmp, \
            LabelStudioServer(Path(tmp) / "label-studio",
                              settings={EFFICIENT_IMPORT_FLAG: "true" if args.efficient_import else "false"}) as ls:
        client = ls.client()
        project = client.projects.create(title="predict bench", label_config=TEXT_CONFIG)
        started = time.monotonic()
        for start in range(0, len(rows), 5000):
            client.projects.import_tasks(id=project.id, request=[{"text": t} for t, _ in rows[start:start + 5000]])
        ids = {t.data["text"]: t.id for t in client.tasks.list(project=project.id, page_size=5000,
                                                               fields="task_only", include="id,data")}
        mode = "memory-efficient (flag on)" if args.efficient_import else "default (recounts the whole project)"
        print(f"{len(ids)} text tasks imported into Label Studio {ls.url} in {time.monotonic() - started:.0f} s; "
              f"its prediction import: {mode}", flush=True)

        model_dir = Path(tmp) / "models"
        app = create_app({"model_dir": model_dir, "start_trainer": False, "warmup": False})
        backend = app.extensions["labelhub"]
        payload = {"id": project.id, "created_at": project.created_at.isoformat(), "label_config": TEXT_CONFIG,
                   "title": "bench"}
        key = backend.store.resolve_webhook_project(payload)

        def train(start: int, stop: int) -> str:
            web = app.test_client()
            for i in range(start, stop):
                text, label = rows[i]
                task = {"id": ids[text], "data": {"text": text}}
                event = annotation_event(100_000 + i, task, label, project=payload)
                assert web.post("/webhook", json=event).status_code == 200
            backend.trainer.run_once()
            return backend.store.project(key).kv()["model_version"]

        env = {**os.environ, "MODEL_DIR": str(model_dir), "LABEL_STUDIO_URL": ls.url,
               "LABEL_STUDIO_API_KEY": ls.personal_token or ls.api_key}
        v1 = train(0, args.train)
        seconds, summary = run_cli(env, project.id, args.batch_size)
        print(f"labelhub predict, {args.tasks} tasks, batch {args.batch_size}: {seconds:.1f} s wall (process start "
              f"included), {args.tasks / seconds:.1f} tasks/s", flush=True)
        print(f"  {summary}", flush=True)
        counts = per_task(ls.url, ls.api_key, project.id)
        print(f"  predictions of {v1} per task: {dict(counts[v1])} "
              f"(one per task: {counts[v1] == Counter({1: args.tasks})})", flush=True)

        v2 = train(args.train, args.train + 50)
        status_path = model_dir / "jobs" / f"{key}.json"
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "labelhub.cli", "predict", "--project", str(project.id),
                                 "--batch-size", str(args.batch_size)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while proc.poll() is None:
                try:
                    status = json.loads(status_path.read_bytes())
                except (OSError, ValueError):
                    status = {}
                if status.get("model_version") == v2 and status.get("done", 0) >= args.kill_at * args.tasks:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.02)
        finally:
            proc.wait()
        killed = per_task(ls.url, ls.api_key, project.id).get(v2, Counter())
        print(f"second version {v2}: SIGKILL after {time.monotonic() - started:.1f} s, the status said "
              f"{status.get('done')} written; Label Studio holds {dict(killed)} (predictions of it per task → tasks)",
              flush=True)
        seconds, summary = run_cli(env, project.id, args.batch_size)
        print(f"  re-run: {seconds:.1f} s: {summary}", flush=True)
        counts = per_task(ls.url, ls.api_key, project.id)
        print(f"  predictions of {v2} per task: {dict(counts[v2])} (one per task: "
              f"{counts[v2] == Counter({1: args.tasks})}); of {v1}: {dict(counts[v1])}", flush=True)
        health = app.test_client().get("/health").json["jobs"][key]
        print(f"  /health jobs[{key}]: state {health['state']}, total {health['total']}, done {health['done']}, "
              f"skipped {health['skipped']}, failed {health['failed']}", flush=True)


if __name__ == "__main__":
    main()
