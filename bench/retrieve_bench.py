"""Benchmark (not a test): "Retrieve predictions" with and without auto-predict, /predict against the embedder, memory.

Label Studio's "Retrieve predictions" with and without ``LABELHUB_AUTO_PREDICT``, ``/predict`` against the bare
embedder, the workers' memory.

Run: ``python bench/retrieve_bench.py [--tasks 200]`` (about 5 to 10 minutes). In one run, for the default ONNX
embedders and, as the baseline, the torch ones they replaced (``LABELHUB_IMAGE_EMBEDDER=efficientnet-lite0-torch``,
``LABELHUB_TEXT_EMBEDDER=all-MiniLM-L6-v2-torch``), it prints:

- the bare image embedder's throughput in this process (images/s at 128 px, 2 threads, batch 32, after
  a warm-up, on the decoded Fashion-MNIST PNGs of the tasks);
- ``/predict`` throughput of a gunicorn backend (2 workers x 8 threads, the default 2 ONNX Runtime threads
  per worker) with a trained Choices model, the same images as ``data:`` URIs, 25 tasks per request, the
  embedding cache and store off: every task is decoded, embedded and predicted; with 2 clients and its ratio to the bare
  embedder's (the target: at least 0.8), and with 1 client (requests one after the other, as Label Studio
  sends them). Like the bare embedder's, each is the best of three passes after a warm-up pass (one pass at
  the same concurrency, so that each worker has loaded the model before the clock starts);
- Label Studio's "Retrieve predictions" (the Data Manager action ``retrieve_tasks_predictions``) on
  ``--tasks`` uploaded images without auto-predict: Label Studio calls ``/predict`` (the backend fetching each
  image from ``/data/upload/...``) and saves the predictions one by one; timed from the action's call to its
  answer (Label Studio stores the predictions before it answers), then the predictions of the version per
  task counted (``1 x200``: exactly one on each);
- the resident memory (VmRSS and peak VmHWM) of each backend worker after that;
- Label Studio's own cost of that action: the same with a backend answering empty predictions at once.

Then the same ONNX backend with ``LABELHUB_AUTO_PREDICT=true`` (and ``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY``,
a personal access token): a project connected through Label Studio's API (Label Studio creates the webhook to
``/webhook``), the model trained on 100 *other* Fashion-MNIST images (annotation webhooks), the backend left to
settle, then the ``--tasks`` images uploaded as new tasks, 50 a request (``TASKS_CREATED`` webhooks). It prints:

- the import's time, and the time from its start until every new task holds a prediction of the current
  version (``GET /api/projects/<id>/`` polled every 0.25 s, then every task read): the backend's own jobs,
  written in bulk through ``POST /api/projects/<id>/import/predictions``; when the backend first counted a
  ``TASKS_CREATED`` and first wrote predictions (``/metrics``);
- "Retrieve predictions" on those tasks, timed as above: Label Studio finds the version's prediction on every
  task and answers without calling the backend (the ``/predict`` calls during the action are counted: 0), and
  the predictions of the version per task afterwards (``1 x200``: the action added none);
- its ratio to the Retrieve without auto-predict above.

A real Label Studio is started the way the tests start it (``python -m tests.testbed install`` first).
The machine's other load moves every figure; compare those of one run.
"""
from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
from collections import Counter
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


def predict_throughput(backend: BackendServer, key: str, pngs: list[bytes], clients: int = 2,
                       per_request: int = 25) -> float:
    """Tasks/s through ``/predict`` with ``clients`` clients: the best of three passes after a warm-up pass."""
    tasks = [{"id": i, "data": {"image": "data:image/png;base64," + base64.b64encode(p).decode()}}
             for i, p in enumerate(pngs)]
    bodies = [{"project": key, "label_config": CONFIG, "tasks": tasks[i:i + per_request]}
              for i in range(0, len(tasks), per_request)]
    session = requests.Session()

    def one_pass() -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            for answer in pool.map(lambda b: session.post(backend.url + "/predict", json=b, timeout=300), bodies):
                answer.raise_for_status()
        return len(tasks) / (time.perf_counter() - started)

    one_pass()  # warm: every worker the clients reach loads the model and the embedder
    return max(one_pass() for _ in range(3))


def upload(label_studio: LabelStudioServer, project_id: int, pngs: list[bytes]) -> None:
    """Upload ``pngs`` as image files to a project, 50 a request (Django takes at most 100 files a request)."""
    headers = {"Authorization": f"Token {label_studio.api_key}"}
    for start in range(0, len(pngs), 50):
        files = [(f"file{i}", (f"img{i:05d}.png", pngs[i], "image/png")) for i in range(start, min(start + 50, len(pngs)))]
        requests.post(f"{label_studio.url}/api/projects/{project_id}/import", files=files, headers=headers,
                      timeout=300).raise_for_status()


def project_tasks(label_studio: LabelStudioServer, project_id: int) -> list[dict]:
    """A project's tasks with their predictions (``fields=all``)."""
    answer = requests.get(f"{label_studio.url}/api/tasks?project={project_id}&page_size=1000&fields=all",
                          headers={"Authorization": f"Token {label_studio.api_key}"}, timeout=120).json()
    return answer["tasks"] if isinstance(answer, dict) else answer


def per_task(label_studio: LabelStudioServer, project_id: int, version: str) -> Counter:
    """``{number of predictions of version: number of tasks}`` over the project's tasks."""
    return Counter(sum(p.get("model_version") == version for p in t.get("predictions") or [])
                   for t in project_tasks(label_studio, project_id))


def backend_version(backend: BackendServer, key: str) -> str:
    """The project's current ``model_version`` as the backend answers Label Studio's ``/setup``."""
    return requests.post(backend.url + "/setup", json={"project": key, "schema": CONFIG}, timeout=30).json()["model_version"]


def counter(backend: BackendServer, name: str, **labels: str) -> float:
    """The sum of a Prometheus counter of the backend's ``/metrics`` over the series matching ``labels``."""
    total = 0.0
    for line in requests.get(backend.url + "/metrics", timeout=30).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
    return total


def time_retrieve(label_studio: LabelStudioServer, project_id: int, ids: list[int]) -> float:
    """Seconds of the Data Manager action "Retrieve predictions" on ``ids``, from its call to its answer."""
    started = time.perf_counter()
    label_studio.client().actions.create(id="retrieve_tasks_predictions", project=project_id,
                                         selected_items={"all": False, "included": ids},
                                         request_options={"timeout_in_seconds": 300})
    return time.perf_counter() - started


def retrieve(label_studio: LabelStudioServer, backend: BackendServer, pngs: list[bytes], labels: list[int],
             trained: bool = True) -> tuple[float, Counter]:
    """Label Studio's "Retrieve predictions" on a project of ``pngs`` (the model trained first), no auto-predict.

    Returns:
        ``(seconds, {predictions of the backend's version per task: tasks})`` after the action.
    """
    client = label_studio.client()
    project = client.projects.create(title="bench retrieve", label_config=CONFIG)
    upload(label_studio, project.id, pngs)
    ml = client.ml.create(project=project.id, url=backend.url, title="labelhub")
    if trained:
        train(backend, f"{project.id}.{int(project.created_at.timestamp())}", pngs[:100], labels[:100])
    ids = [t["id"] for t in project_tasks(label_studio, project.id)]
    seconds = time_retrieve(label_studio, project.id, ids)
    version = client.ml.get(id=ml.id).model_version
    counts = per_task(label_studio, project.id, version)
    if counts.get(1, 0) != len(ids):
        print(f"warning: predictions of {version} per task: {dict(counts)} (expected 1 on each of {len(ids)})",
              flush=True)
    return seconds, counts


def settle(backend: BackendServer, key: str, quiet: float = 3.0, timeout: float = 300) -> str:
    """Wait until the backend is idle for ``key`` (no pending event, no running job, the version unchanged for
    ``quiet`` seconds); returns the version."""
    pending = backend.model_dir / "events" / "pending"
    last, since = None, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = backend_version(backend, key)
        jobs = requests.get(backend.url + "/health", timeout=30).json().get("jobs") or {}
        busy = any(j.get("state") == "running" for j in jobs.values()) or any(pending.glob("*.json"))
        if version != last or busy:
            last, since = version, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return version
        time.sleep(0.25)
    raise TimeoutError(f"backend not idle for project {key} after {timeout} s")


def auto_predict(label_studio: LabelStudioServer, backend: BackendServer, pngs: list[bytes],
                 train_pngs: list[bytes], train_labels: list[int]) -> dict:
    """The backend with ``LABELHUB_AUTO_PREDICT=true``: a project connected (Label Studio creates the webhook to
    ``/webhook``), the model trained on ``train_pngs``, then ``pngs`` imported as new tasks (``TASKS_CREATED``).

    Times the import, the moment every new task holds a prediction of the current version (the backend's own
    job, written in bulk through ``/api/projects/<id>/import/predictions``), then "Retrieve predictions" on those
    tasks; counts the ``/predict`` calls Label Studio made during the action (0 when it found every
    prediction present) and the predictions of the version per task afterwards.
    """
    client = label_studio.client()
    headers = {"Authorization": f"Token {label_studio.api_key}"}
    project = client.projects.create(title="bench auto-predict", label_config=CONFIG)
    ml = client.ml.create(project=project.id, url=backend.url, title="labelhub")
    hooks = requests.get(f"{label_studio.url}/api/webhooks/?project={project.id}", headers=headers, timeout=30).json()
    assert [h["url"] for h in hooks] == [backend.url + "/webhook"], hooks
    key = f"{project.id}.{int(project.created_at.timestamp())}"
    train(backend, key, train_pngs, train_labels)
    version = settle(backend, key)
    written_before = counter(backend, "labelhub_predictions_written_total")
    created_before = counter(backend, "labelhub_webhook_events_total", action="TASKS_CREATED")
    first: dict[str, float] = {}  # when the backend first got a TASKS_CREATED, first wrote predictions

    def all_predicted() -> bool:
        now = time.perf_counter()
        if "webhook" not in first and counter(backend, "labelhub_webhook_events_total",
                                              action="TASKS_CREATED") > created_before:
            first["webhook"] = now
        if "written" not in first and counter(backend, "labelhub_predictions_written_total") > written_before:
            first["written"] = now
        info = requests.get(f"{label_studio.url}/api/projects/{project.id}/", headers=headers, timeout=60).json()
        if info.get("task_number") != len(pngs) or (info.get("total_predictions_number") or 0) < len(pngs):
            return False  # the cheap poll; then every task checked
        return per_task(label_studio, project.id, version).get(1, 0) == len(pngs)

    with ThreadPoolExecutor(1) as pool:  # the import in a thread, the backend watched from its start
        started = time.perf_counter()
        importing = pool.submit(lambda: (upload(label_studio, project.id, pngs), time.perf_counter())[1])
        def done() -> bool:
            if importing.done() and importing.exception():
                raise importing.exception()
            return all_predicted()

        wait_for(done, timeout=600, interval=0.25, message="every imported task predicted by the backend")
        predicted = time.perf_counter()
        imported = importing.result()
    ids = [t["id"] for t in project_tasks(label_studio, project.id)]
    predict_calls = counter(backend, "labelhub_requests_total", endpoint="predict")
    seconds = time_retrieve(label_studio, project.id, ids)
    predict_calls = counter(backend, "labelhub_requests_total", endpoint="predict") - predict_calls
    ls_version = client.ml.get(id=ml.id).model_version
    counts = per_task(label_studio, project.id, version)
    if ls_version != version:
        print(f"warning: Label Studio's model version {ls_version} is not the backend's {version}", flush=True)
    if counts.get(1, 0) != len(ids):
        print(f"warning: predictions of {version} per task: {dict(counts)} (expected 1 on each of {len(ids)})",
              flush=True)
    return {"import": imported - started, "first_webhook": first.get("webhook", predicted) - started,
            "first_written": first.get("written", predicted) - started, "predicted_after_import_start": predicted - started,
            "predicted_after_import_end": predicted - imported, "retrieve": seconds, "predict_calls": predict_calls,
            "written": counter(backend, "labelhub_predictions_written_total") - written_before, "counts": counts,
            "version": version, "tasks": len(ids)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args(argv)
    images, labels = fashion_mnist("test", args.tasks)
    pngs = [png_bytes(img) for img in images]
    labels = [int(y) for y in labels]
    train_images, train_labels = fashion_mnist("train", 100)  # the auto-predict run's model: other images
    train_pngs, train_labels = [png_bytes(img) for img in train_images], [int(y) for y in train_labels]
    rows = []
    ensure_template()
    with tempfile.TemporaryDirectory() as tmp, LabelStudioServer(Path(tmp) / "ls") as label_studio:
        base = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
                "LABELHUB_EMBEDDING_CACHE_SIZE": "0", "LABELHUB_EMBEDDING_STORE_BYTES": "0"}
        for name, extra in EMBEDDERS.items():
            spec = extra.get("LABELHUB_IMAGE_EMBEDDER", "efficientnet-lite0")
            bare = bare_embedder(spec, pngs)
            env = {**base, **extra}
            with BackendServer(Path(tmp) / f"backend-{len(rows)}", workers=2, threads=8, env=env) as backend:
                key = f"{900 + len(rows)}.1700000000"
                train(backend, key, pngs[:100], labels[:100])
                throughput = predict_throughput(backend, key, pngs)
                sequential = predict_throughput(backend, key, pngs, clients=1)
                seconds, counts = retrieve(label_studio, backend, pngs, labels)
                mem = [memory(pid) for pid in backend.worker_pids()]
            rows.append((name, bare, throughput, seconds, counts, mem, sequential))
        with BackendServer(Path(tmp) / "backend-none", workers=2, threads=8, env={**base, **NO_MODEL}) as backend:
            floor, _ = retrieve(label_studio, backend, pngs, labels, trained=False)
        auto_env = {**base, "LABEL_STUDIO_API_KEY": label_studio.personal_token or label_studio.api_key,
                    "LABELHUB_AUTO_PREDICT": "true"}
        with BackendServer(Path(tmp) / "backend-auto", workers=2, threads=8, env=auto_env) as backend:
            auto = auto_predict(label_studio, backend, pngs, train_pngs, train_labels)
    print(f"{args.tasks} Fashion-MNIST tasks, image embedder at 128 px; bare: 2 threads, backend: 2 workers x 2 "
          f"threads; /predict with 2 clients (ratio: to bare) and with 1 client")
    print(f"{'embedders':<18} {'bare img/s':>10} {'/predict img/s':>14} {'ratio':>6} {'1 client':>9} {'ratio':>6} "
          f"{'Retrieve s':>10} {'preds/task':>10} {'worker RSS MB':>14} {'peak MB':>8}")
    for name, bare, throughput, seconds, counts, mem, sequential in rows:
        rss = statistics.mean(m[0] for m in mem)
        peak = max(m[1] for m in mem)
        print(f"{name:<18} {bare:>10.0f} {throughput:>14.0f} {throughput / bare:>6.2f} {sequential:>9.0f} "
              f"{sequential / bare:>6.2f} {seconds:>10.2f} {spread(counts):>10} {rss:>14.0f} {peak:>8.0f}")
    print(f"Label Studio's own cost (the backend answering empty predictions at once): {floor:.2f} s; "
          f"the backend's share with ONNX: {rows[0][3] - floor:.2f} s, with torch: {rows[1][3] - floor:.2f} s")
    print(f"ONNX / torch: bare {rows[0][1] / rows[1][1]:.2f}x, Retrieve predictions {rows[1][3] / rows[0][3]:.2f}x "
          f"faster")
    print()
    print(f"LABELHUB_AUTO_PREDICT=true (ONNX; model trained on 100 other images, version {auto['version']}); "
          f"{auto['tasks']} new images imported, 50 a request:")
    print(f"  import: {auto['import']:.2f} s; every new task holds a prediction of the version "
          f"{auto['predicted_after_import_start']:.2f} s after the import started "
          f"({auto['predicted_after_import_end']:.2f} s after it returned); "
          f"{auto['written']:.0f} predictions written by the backend's jobs")
    print(f"  timeline from the import's start (polled every 0.25 s): first TASKS_CREATED at the backend by "
          f"{auto['first_webhook']:.2f} s, first predictions in Label Studio by {auto['first_written']:.2f} s")
    print(f"  Retrieve predictions on those {auto['tasks']}: {auto['retrieve']:.2f} s; /predict calls during it: "
          f"{auto['predict_calls']:.0f}; predictions of the version per task afterwards: {spread(auto['counts'])}")
    print(f"Retrieve predictions on {args.tasks} tasks: {rows[0][3]:.2f} s without auto-predict (ONNX row above, "
          f"preds/task {spread(rows[0][4])}), {auto['retrieve']:.2f} s with it: "
          f"{rows[0][3] / auto['retrieve']:.1f}x faster")


def spread(counts: Counter) -> str:
    """``{predictions per task: tasks}`` as ``"1 x200"`` (``"0 x3, 1 x197"`` when some differ)."""
    return ", ".join(f"{n} x{tasks}" for n, tasks in sorted(counts.items())) or "-"


if __name__ == "__main__":
    main()
