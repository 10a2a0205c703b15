"""Benchmark (not a test): what many prediction versions cost Label Studio, and what deleting one costs.

With ``LABELHUB_AUTO_PREDICT`` every retrain that moves ``model_version`` is followed by a whole-project job, so
a project collects one more prediction per task each time. This bench starts a real Label Studio (the tests'
way, SQLite, its memory-efficient prediction import on), creates a project of ``--tasks`` text tasks, and
writes ``--versions`` versions of one prediction per task through ``POST /api/projects/<id>/import/predictions``
(500 a call, as the jobs write). After the 1st, 2nd, 5th, 10th, 20th, ... version it prints:

- the import's seconds for that version;
- a Data Manager page (30 tasks, ``GET /api/tasks?view=...``) of a view ordered by prediction score, the
  median of 5 (the baseline: the same page with one version, measured first in the same run);
- a page of 500 tasks with their predictions as a prediction job lists them before it plans and again before
  each batch (:meth:`labelhub.backend.labelstudio_api.LabelStudioClient.tasks`), the median of 3, against one version;
- the size of Label Studio's SQLite database.

Then it deletes the older versions one by one (``DELETE /api/projects/<id>/model-versions/``, what
``LABELHUB_KEEP_VERSIONS`` does: :mod:`labelhub.backend.retire`) while a thread saves an annotation every
0.2 s, and prints each delete's seconds, the slowest annotation save meanwhile, and the Data Manager page
after. ``--deletes`` bounds how many it deletes (each takes about as long as 3.5 ms a prediction).

Run: ``python bench/prediction_versions_bench.py [--tasks 5000] [--versions 30] [--deletes 3]`` (about 4 minutes
with the defaults; ``python -m tests.testbed install`` first). The machine's other load moves every figure;
compare those of one run.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.backend_fixtures import TEXT_CLASSES, TEXT_CONFIG  # noqa: E402
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402

REPORTED = (1, 2, 5, 10, 20, 30, 50, 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--versions", type=int, default=30)
    parser.add_argument("--deletes", type=int, default=3, help="older versions to delete, oldest first")
    args = parser.parse_args()
    ensure_template()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="labelhub-versions-bench-") as tmp, \
            LabelStudioServer(Path(tmp) / "label-studio") as ls:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {ls.api_key}"

        def call(method: str, path: str, **kwargs):
            answer = session.request(method, ls.url + path, timeout=3600, **kwargs)
            answer.raise_for_status()
            return answer.json() if answer.content else None

        client = ls.client()
        project = client.projects.create(title="prediction versions bench", label_config=TEXT_CONFIG)
        for start in range(0, args.tasks, 5000):
            client.projects.import_tasks(id=project.id, request=[{"text": f"review {i}"} for i in
                                                                 range(start, min(args.tasks, start + 5000))])
        ids = [t.id for t in client.tasks.list(project=project.id, page_size=args.tasks, fields="task_only",
                                               include="id")]
        view = call("POST", "/api/dm/views", json={"project": project.id,
                                                  "data": {"ordering": ["tasks:predictions_score"]}})
        database = Path(tmp) / "label-studio" / "label_studio.sqlite3"

        def page_ms(params: dict | None = None, repeat: int = 5) -> float:
            times = []
            for _ in range(repeat):
                started = time.monotonic()
                call("GET", "/api/tasks", params=params or {"view": view["id"], "page": 1, "page_size": 30})
                times.append(time.monotonic() - started)
            return 1000 * statistics.median(times)

        job_page = {"project": project.id, "page_size": 500, "fields": "all",
                    "include": "id,data,is_labeled,predictions"}  # what LabelStudioClient.tasks asks

        print(f"Label Studio {ls.url}, {len(ids)} text tasks; one prediction per task and version", flush=True)
        baseline = job_baseline = None
        for k in range(1, args.versions + 1):
            version = f"labelhub-{k}-bench"
            started = time.monotonic()
            for s in range(0, len(ids), 500):
                call("POST", f"/api/projects/{project.id}/import/predictions", json=[
                    {"task": i, "model_version": version, "score": rng.random(), "result": [
                        {"from_name": "label", "to_name": "text", "type": "choices",
                         "value": {"choices": [rng.choice(TEXT_CLASSES)]}}]} for i in ids[s:s + 500]])
            seconds = time.monotonic() - started
            call("PATCH", f"/api/projects/{project.id}", json={"model_version": version})  # the selected set
            if k in REPORTED or k == args.versions:
                ms, job_ms = page_ms(), page_ms(job_page, repeat=3)
                baseline, job_baseline = baseline or ms, job_baseline or job_ms
                print(f"{k:>3} versions: import {seconds:.1f} s; Data Manager page ordered by prediction score "
                      f"{ms:.0f} ms ({ms / baseline:.2f} x one version); a job's page of 500 {job_ms:.0f} ms "
                      f"({job_ms / job_baseline:.2f} x); database {database.stat().st_size / 1e6:.0f} MB", flush=True)

        saves: list[float] = []
        stop = threading.Event()

        def annotate() -> None:
            i = 0
            while not stop.is_set():
                started = time.monotonic()
                call("POST", f"/api/tasks/{ids[i % len(ids)]}/annotations/", json={"result": [
                    {"from_name": "label", "to_name": "text", "type": "choices",
                     "value": {"choices": [TEXT_CLASSES[0]]}}]})
                saves.append(time.monotonic() - started)
                i += 1
                stop.wait(0.2)

        for k in range(1, min(args.deletes, args.versions - 1) + 1):
            saves.clear()
            stop.clear()
            thread = threading.Thread(target=annotate)
            thread.start()
            started = time.monotonic()
            answer = call("DELETE", f"/api/projects/{project.id}/model-versions/",
                          json={"model_version": f"labelhub-{k}-bench"})
            seconds = time.monotonic() - started
            stop.set()
            thread.join()
            print(f"delete of version {k} ({answer.get('deleted_predictions')} predictions): {seconds:.1f} s, "
                  f"{1000 * seconds / max(1, answer.get('deleted_predictions') or 1):.1f} ms a prediction; "
                  f"{len(saves)} annotation saves meanwhile, the slowest {max(saves):.1f} s; "
                  f"Data Manager page after: {page_ms():.0f} ms", flush=True)


if __name__ == "__main__":
    main()
