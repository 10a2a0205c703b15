"""Benchmark (not a test): the memory a prediction job's task listing takes, as predictions pile up.

Every prediction job lists the project's tasks with all their predictions
(:meth:`labelhub.backend.labelstudio_api.LabelStudioClient.tasks`) before it plans, and each batch reads its tasks again.
With ``LABELHUB_AUTO_PREDICT`` and ``LABELHUB_KEEP_VERSIONS=0`` each job adds a prediction per unlabeled task, so
the listing grows with every job, and the process's resident memory keeps the highest peak (a soak of four
annotators: the trainer's worker grew from 417 to 516 MB in 25 minutes).

This bench starts a real Label Studio (the tests' way), creates a project of ``--tasks`` text tasks with
``--versions`` predictions each (``POST /api/projects/<id>/import/predictions``), and lists it three ways in this
process, printing the peak of Python's allocations during the listing (``tracemalloc``), what the listed rows
keep afterwards, and the seconds:

- the baseline, as jobs listed before 2026-12-05: pages of 500, every page's label-studio-sdk models held until the
  last page is read, then made into :class:`~labelhub.backend.labelstudio_api.TaskRow`;
- pages of 500, each made into rows as it comes in and dropped before the next;
- pages of :data:`~labelhub.backend.labelstudio_api.PREDICTION_PAGE_SIZE` (what jobs do now), the same way.

Run: ``python bench/listing_memory_bench.py [--tasks 2000] [--versions 30]`` (about 2 to 4 minutes;
``python -m tests.testbed install`` first). Compare the figures of one run: the machine's load moves the seconds.
"""
from __future__ import annotations

import argparse
import functools
import gc
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelhub.backend import labelstudio_api  # noqa: E402
from labelhub.labelstudio_client import list_tasks  # noqa: E402
from tests.backend_fixtures import TEXT_CLASSES, TEXT_CONFIG  # noqa: E402
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402


def held_pages(api: labelstudio_api.LabelStudioClient, project_id: int) -> list:
    """The baseline: every page of SDK models kept until the listing ends, then made into rows."""
    listing = list_tasks(api._client, functools.partial(api._call, "bench"), 1, project=project_id, page_size=500,
                         fields="all", include="id,data,is_labeled,predictions")
    return [labelstudio_api._task_row(task) for task in listing.tasks]


def measure(listing) -> dict:
    """Run ``listing()`` under tracemalloc: ``{"peak", "kept"}`` in MiB, ``seconds``, ``predictions`` listed."""
    gc.collect()
    tracemalloc.start()
    started = time.monotonic()
    rows = listing()
    seconds = time.monotonic() - started
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"peak": peak / 2 ** 20, "kept": kept / 2 ** 20, "seconds": seconds,
            "predictions": sum(len(row.predictions) for row in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--versions", type=int, default=30)
    args = parser.parse_args()
    ensure_template()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="labelhub-listing-bench-") as tmp, \
            LabelStudioServer(Path(tmp) / "label-studio") as ls:
        client = ls.client()
        project = client.projects.create(title="listing memory bench", label_config=TEXT_CONFIG)
        client.projects.import_tasks(id=project.id, request=[{"text": f"review {i}"} for i in range(args.tasks)])
        api = labelstudio_api.LabelStudioClient(ls.url, ls.api_key)
        ids = [row.id for row in api.tasks(project.id)]
        for k in range(args.versions):
            for start in range(0, len(ids), 500):
                api.import_predictions(project.id, [
                    {"task": i, "model_version": f"labelhub-{k}-bench", "score": rng.random(), "result": [
                        {"from_name": "label", "to_name": "text", "type": "choices",
                         "value": {"choices": [rng.choice(TEXT_CLASSES)]}}]} for i in ids[start:start + 500]])
        print(f"Label Studio {ls.url}: {len(ids)} tasks, {args.versions} predictions each", flush=True)
        page_size = labelstudio_api.PREDICTION_PAGE_SIZE
        runs = [("pages of 500 held to the end (baseline)", lambda: held_pages(api, project.id)),
                ("pages of 500 made into rows as they come", None), (f"pages of {page_size} (jobs now)", None)]
        base = None
        for (label, listing), size in zip(runs, (500, 500, page_size)):
            labelstudio_api.PREDICTION_PAGE_SIZE = size
            figures = measure(listing or (lambda: api.tasks(project.id)))
            base = base or figures
            print(f"{label}: peak {figures['peak']:.1f} MiB ({figures['peak'] / base['peak']:.2f} x the baseline), "
                  f"rows keep {figures['kept']:.1f} MiB, {figures['seconds']:.1f} s "
                  f"({figures['seconds'] / base['seconds']:.2f} x), {figures['predictions']} predictions", flush=True)


if __name__ == "__main__":
    main()
