"""Benchmark (not a test): Label Studio's "Retrieve predictions", ``/predict`` against the bare embedder, memory.

Run: ``python bench/retrieve_bench.py [--tasks 200]``. In one run, for the default ONNX embedders and, as
the baseline, the torch ones they replaced (``LABELHUB_IMAGE_EMBEDDER=efficientnet-lite0-torch``,
``LABELHUB_TEXT_EMBEDDER=all-MiniLM-L6-v2-torch``), it prints:

- the bare image embedder's throughput in this process (images/s at 128 px, 2 threads, batch 32, after
  a warm-up, on the decoded Fashion-MNIST PNGs of the tasks);
- ``/predict`` throughput of a gunicorn backend (2 workers x 8 threads, ``LABELHUB_TORCH_THREADS=1``)
  with a trained Choices model, the same images as ``data:`` URIs, 25 tasks per request, 2 clients, the
  embedding cache off: every task is decoded, embedded and predicted; and its ratio to the bare
  embedder's (the target: at least 0.8);
- Label Studio's "Retrieve predictions" (the Data Manager action ``retrieve_tasks_predictions``) on
  ``--tasks`` uploaded images, the backend fetching each from Label Studio (``/data/upload/...``), timed
  from the action's call to its answer (Label Studio stores the predictions before it answers);
- the resident memory (VmRSS and peak VmHWM) of each backend worker after that.

A real Label Studio is started the way the tests start it (``python -m tests.testbed install`` first).
"""
from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist, png_bytes  # noqa: E402
from tests.backend_fixtures import BackendServer, choices_config, wait_for  # noqa: E402
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402

CLASSES = list(FASHION_MNIST_CLASSES)
CONFIG = choices_config(CLASSES)
EMBEDDERS = {"onnx (default)": {}, "torch (baseline)": {"LABELHUB_IMAGE_EMBEDDER": "efficientnet-lite0-torch",
                                                        "LABELHUB_TEXT_EMBEDDER": "all-MiniLM-L6-v2-torch"}}
#: A model answering an empty prediction at once: what "Retrieve predictions" costs in Label Studio itself.
NO_MODEL = {"LABELHUB_MODEL": "labelhub.backend.model:LabelStudioMLBase"}


def bare_embedder(spec: str, pngs: list[bytes]) -> float:
    """Images/s of the embedder ``spec`` alone (decode excluded), best of three passes."""
    from labelhub.backend.embedders import decode_image, get_embedder

    embedder = get_embedder("image", spec, image_size=128, threads=2)  # the two cores the two workers have
    images = [decode_image(p) for p in pngs]
    embedder.embed(images[:32])
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        embedder.embed(images)
        best = max(best, len(images) / (time.perf_counter() - started))
    return best


def memory(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            fields[line.split(":")[0]] = int(line.split()[1]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def train(backend: BackendServer, key: str, pngs: list[bytes], labels: list[int]) -> None:
    """Post annotation webhooks for ``pngs`` and wait for the fitted version."""
    requests.post(backend.url + "/setup", json={"project": key, "schema": CONFIG}, timeout=30).raise_for_status()
    for i, (png, y) in enumerate(zip(pngs, labels)):
        task = {"id": 100000 + i, "data": {"image": "data:image/png;base64," + base64.b64encode(png).decode()}}
        body = {"action": "ANNOTATION_CREATED", "project": {"id": int(key.split(".")[0]), "label_config": CONFIG,
                                                             "created_at": int(key.split(".")[1])},
                "task": task, "annotation": {"id": 100000 + i, "task": task["id"], "updated_at": "2024-01-01T00:00:00Z",
                                             "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                                         "value": {"choices": [CLASSES[y]]}}]}}
        requests.post(backend.url + "/webhook", json=body, timeout=30).raise_for_status()
    wait_for(lambda: not requests.post(backend.url + "/setup", json={"project": key, "schema": CONFIG}, timeout=30)
             .json()["model_version"].startswith("labelhub-0-"), timeout=300, message="a trained model")


def predict_throughput(backend: BackendServer, key: str, pngs: list[bytes], per_request: int = 25) -> float:
    """Tasks/s through ``/predict`` with two clients."""
    tasks = [{"id": i, "data": {"image": "data:image/png;base64," + base64.b64encode(p).decode()}}
             for i, p in enumerate(pngs)]
    bodies = [{"project": key, "label_config": CONFIG, "tasks": tasks[i:i + per_request]}
              for i in range(0, len(tasks), per_request)]
    session = requests.Session()
    session.post(backend.url + "/predict", json=bodies[0], timeout=120).raise_for_status()  # warm
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for answer in pool.map(lambda b: session.post(backend.url + "/predict", json=b, timeout=300), bodies):
            answer.raise_for_status()
    return len(tasks) / (time.perf_counter() - started)


def retrieve(label_studio: LabelStudioServer, backend: BackendServer, pngs: list[bytes], labels: list[int],
             trained: bool = True) -> float:
    """Seconds of Label Studio's "Retrieve predictions" on a project of ``pngs`` (the model trained first)."""
    client = label_studio.client()
    project = client.projects.create(title="bench retrieve", label_config=CONFIG)
    headers = {"Authorization": f"Token {label_studio.api_key}"}
    for start in range(0, len(pngs), 50):  # Django takes at most 100 files per request
        files = [(f"file{i}", (f"img{i:05d}.png", pngs[i], "image/png")) for i in range(start, min(start + 50, len(pngs)))]
        requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files, headers=headers,
                      timeout=300).raise_for_status()
    ml = client.ml.create(project=project.id, url=backend.url, title="labelhub")
    if trained:
        train(backend, f"{project.id}.{int(project.created_at.timestamp())}", pngs[:100], labels[:100])
    def tasks():
        answer = requests.get(f"{label_studio.url}/api/tasks?project={project.id}&page_size=1000&fields=all",
                              headers=headers, timeout=120).json()
        return answer["tasks"] if isinstance(answer, dict) else answer

    ids = [t["id"] for t in tasks()]
    started = time.perf_counter()
    client.actions.create(id="retrieve_tasks_predictions", project=project.id,
                          selected_items={"all": False, "included": ids}, request_options={"timeout_in_seconds": 300})
    seconds = time.perf_counter() - started
    version = client.ml.get(id=ml.id).model_version
    predicted = sum(version in (t.get("predictions_model_versions") or []) for t in tasks())
    if predicted != len(ids):
        print(f"warning: {predicted} of {len(ids)} tasks have a prediction of {version}", flush=True)
    return seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args(argv)
    images, labels = fashion_mnist("test", args.tasks)
    pngs = [png_bytes(img) for img in images]
    labels = [int(y) for y in labels]
    rows = []
    ensure_template()
    with tempfile.TemporaryDirectory() as tmp, LabelStudioServer(Path(tmp) / "ls") as label_studio:
        for name, extra in EMBEDDERS.items():
            spec = extra.get("LABELHUB_IMAGE_EMBEDDER", "efficientnet-lite0")
            bare = bare_embedder(spec, pngs)
            env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
                   "LABELHUB_EMBEDDING_CACHE_SIZE": "0", "LABELHUB_TORCH_THREADS": "1", **extra}
            with BackendServer(Path(tmp) / f"backend-{len(rows)}", workers=2, threads=8, env=env) as backend:
                key = f"{900 + len(rows)}.1700000000"
                train(backend, key, pngs[:100], labels[:100])
                throughput = predict_throughput(backend, key, pngs)
                seconds = retrieve(label_studio, backend, pngs, labels)
                mem = [memory(pid) for pid in backend.worker_pids()]
            rows.append((name, bare, throughput, seconds, mem))
        with BackendServer(Path(tmp) / "backend-none", workers=2, threads=8, env={**env, **NO_MODEL}) as backend:
            floor = retrieve(label_studio, backend, pngs, labels, trained=False)
    print(f"{args.tasks} Fashion-MNIST tasks, image embedder at 128 px; bare: 2 threads, backend: 2 workers x 1 thread")
    print(f"{'embedders':<18} {'bare img/s':>10} {'/predict img/s':>14} {'ratio':>6} {'Retrieve s':>10} "
          f"{'worker RSS MB':>14} {'peak MB':>8}")
    for name, bare, throughput, seconds, mem in rows:
        rss = statistics.mean(m[0] for m in mem)
        peak = max(m[1] for m in mem)
        print(f"{name:<18} {bare:>10.0f} {throughput:>14.0f} {throughput / bare:>6.2f} {seconds:>10.2f} "
              f"{rss:>14.0f} {peak:>8.0f}")
    print(f"Label Studio's own cost (the backend answering empty predictions at once): {floor:.2f} s; "
          f"the backend's share with ONNX: {rows[0][3] - floor:.2f} s, with torch: {rows[1][3] - floor:.2f} s")
    print(f"ONNX / torch: bare {rows[0][1] / rows[1][1]:.2f}x, Retrieve predictions {rows[1][3] / rows[0][3]:.2f}x "
          f"faster")


if __name__ == "__main__":
    main()
