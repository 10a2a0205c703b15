"""Benchmark (not a test): the whole-project re-prediction after a retrain, with and without the embedding store.

With ``LABELHUB_AUTO_PREDICT`` each retrain re-predicts every unlabeled task. For a project larger than a worker's
in-memory caches (``LABELHUB_EMBEDDING_CACHE_SIZE`` embeddings, ``LABELHUB_MEDIA_CACHE_BYTES`` of media) each
re-prediction used to download and embed every image again; the on-disk store (``MODEL_DIR/embeddings``,
:mod:`labelhub.backend.embedding_cache`) keeps the embeddings, so a Choices project's re-prediction loads no image.

The run: a real Label Studio (SQLite, its memory-efficient prediction import on) with ``--tasks`` uploaded
Fashion-MNIST images; a backend in this process (``MODEL_DIR`` in a temporary folder) whose caches are smaller
than the project (``--lru`` embeddings, 1 MB of media, as for a project of 50,000 photos); the model trained on
30 annotation webhooks, then three rounds of "10 more annotations, retrain, ``run_job(unlabeled=True)``" (what
auto-predict runs). The same three rounds run twice, on two projects: with the store off
(``LABELHUB_EMBEDDING_STORE_BYTES=0``, the baseline) and on. Printed per round: the annotations' webhooks and the
refit (seconds, images fetched), the re-prediction (seconds, tasks written, images fetched); then the store's
ratio to the baseline over the re-predictions of rounds 2 and 3 (round 1 fills the store).

Run: ``python bench/repredict_bench.py [--tasks 3000] [--lru 1000]`` (about 3 minutes; ``python -m tests.testbed
install`` first). The machine's other load moves every figure; compare those of one run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist, png_bytes  # noqa: E402
from tests.backend_fixtures import IMAGE_CONFIG, annotation_event  # noqa: E402
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402


def upload(ls: LabelStudioServer, project_id: int, pngs: list[bytes]) -> None:
    """Upload ``pngs`` as image files, 100 a request (Django takes at most 100 files a request)."""
    import requests

    for start in range(0, len(pngs), 100):
        files = [(f"file{i}", (f"img{i:05d}.png", pngs[i], "image/png"))
                 for i in range(start, min(start + 100, len(pngs)))]
        requests.post(f"{ls.url}/api/projects/{project_id}/import", files=files, timeout=300,
                      headers={"Authorization": f"Token {ls.api_key}"}).raise_for_status()


def rounds(ls: LabelStudioServer, model_dir: Path, pngs: list[bytes], store_bytes: int, lru: int) -> list[tuple]:
    """One project, three retrain-then-re-predict rounds; ``[(refit seconds, refit fetches, job seconds, written,
    job fetches), ...]``."""
    from labelhub.backend.app import create_app
    from labelhub.backend.jobs import run_job
    from labelhub.backend.labelstudio_api import LabelStudioClient

    client = ls.client()
    project = client.projects.create(title=f"repredict store {store_bytes}", label_config=IMAGE_CONFIG)
    upload(ls, project.id, pngs)
    api = LabelStudioClient(ls.url, ls.api_key)
    tasks = [{"id": t.id, "data": t.data} for t in api.tasks(project.id)]
    app = create_app({"model_dir": model_dir, "start_trainer": False, "warmup": False, "label_studio_url": ls.url,
                      "label_studio_api_key": ls.api_key, "embedding_cache_size": lru,
                      "media_cache_bytes": 1_000_000, "embedding_store_bytes": store_bytes})
    backend, web = app.extensions["labelhub"], app.test_client()
    payload = {"id": project.id, "created_at": project.created_at.isoformat(), "title": "t",
               "label_config": IMAGE_CONFIG}
    fetched: list[str] = []
    fetch = backend.fetcher.fetch
    backend.fetcher.fetch = lambda value, *a, **kw: (fetched.append(value), fetch(value, *a, **kw))[1]

    def annotate(start: int, stop: int) -> None:
        for i in range(start, stop):
            event = annotation_event(10**6 + i, tasks[i], FASHION_MNIST_CLASSES[i % 10], project=payload)
            assert web.post("/webhook", json=event).status_code == 200
        backend.trainer.run_once()

    annotate(0, 30)
    out = []
    for start in (30, 40, 50):
        fetched.clear()
        started = time.monotonic()
        annotate(start, start + 10)
        refit, refit_fetches = time.monotonic() - started, len(fetched)
        fetched.clear()
        started = time.monotonic()
        status = run_job(backend, api, project.id, unlabeled=True, progress=False)
        out.append((refit, refit_fetches, time.monotonic() - started, status.done, len(fetched)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--lru", type=int, default=1000, help="LABELHUB_EMBEDDING_CACHE_SIZE of the worker")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    ensure_template()
    images, _ = fashion_mnist("train", args.tasks)
    pngs = [png_bytes(image) for image in images]
    with tempfile.TemporaryDirectory(prefix="labelhub-repredict-bench-") as tmp, \
            LabelStudioServer(Path(tmp) / "label-studio") as ls:
        print(f"Label Studio {ls.url}; {args.tasks} uploaded images a project; worker LRU {args.lru} embeddings, "
              f"1 MB of media", flush=True)
        results = {}
        for name, store in (("store off (baseline)", 0), ("store on", 2 * 1024 ** 3)):
            results[name] = rounds(ls, Path(tmp) / name.split()[1], pngs, store, args.lru)
            for i, (refit, refit_fetches, seconds, written, fetched) in enumerate(results[name], 1):
                print(f"{name:>20}, round {i}: 10 annotations and the refit {refit:.1f} s ({refit_fetches} images "
                      f"fetched); re-prediction {seconds:.1f} s, {written} predictions written, {fetched} images "
                      f"fetched", flush=True)
        base = sum(r[2] for r in results["store off (baseline)"][1:])
        store = sum(r[2] for r in results["store on"][1:])
        print(f"\nre-predictions of rounds 2 and 3: {store:.1f} s with the store against {base:.1f} s without "
              f"({store / base:.2f} x)")


if __name__ == "__main__":
    main()
