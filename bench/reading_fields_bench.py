"""Benchmark (not a test): what the readings of annotated tasks cost Label Studio, ``fields=all`` against the fields
they name: the sync's (:data:`labelhub.sync.labelstudio.project.ANNOTATED_TASK_FIELDS`) and the backend's "Start
training" (:data:`labelhub.backend.labelstudio_api.TRAINING_TASK_FIELDS`).

Run: ``python bench/reading_fields_bench.py [--tasks 500] [--annotated 300] [--versions 3]`` (``python -m
tests.testbed install`` first).

Starts a private Label Studio (from the migrated template of ``tests.labelstudio``), makes a Text project of
``--tasks`` tasks with ``--versions`` prediction versions each (what a project pre-annotated and retrained a few
times holds) and ``--annotated`` annotated tasks, then times a page of 100 annotated tasks as a reconciliation reads
it (``GET /api/tasks`` ordered by ``updated_at``, the ``annotators`` filter): with ``fields=all`` alone, the
baseline measured first in the same run, and with ``include`` naming the fields the sync keeps. Then it times Start
training's whole reading (:meth:`labelhub.backend.labelstudio_api.LabelStudioClient.annotated_tasks`: every task's
annotation ids, then the annotated tasks by id) with its second reading taking ``fields=all`` alone, as it did before
2026-12-07 (the baseline, first), and naming its fields. Each figure is the median of 5 calls (3 for Start training),
in milliseconds; the machine's other load moves both, the ratio less. It also checks that both readings of each pair
give the same tasks and annotations (the fields the annotation store or training drops aside).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from labelhub.backend import labelstudio_api  # noqa: E402
from labelhub.sync.annotations.intake import _task_rows  # noqa: E402
from labelhub.sync.labelstudio.project import _ANNOTATED, ANNOTATED_TASK_INCLUDE, _filters  # noqa: E402
from tests.backend_fixtures import TEXT_CONFIG  # noqa: E402
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402

#: The reading's Data Manager query: annotated tasks, oldest ``updated_at`` first (``tasks_updated_since``'s own).
QUERY = _filters(_ANNOTATED, ordering=["tasks:updated_at"])


def main(argv: list[str] | None = None) -> int:
    """Print the two figures and their ratio (see the module docstring).

    Returns:
        0, or 1 when the two readings differ.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--annotated", type=int, default=300)
    parser.add_argument("--versions", type=int, default=3)
    args = parser.parse_args(argv)
    ensure_template()
    with tempfile.TemporaryDirectory(prefix="labelhub-reading-bench-") as tmp, \
            LabelStudioServer(Path(tmp) / "label-studio") as ls:
        headers = {"Authorization": f"Token {ls.api_key}"}
        client = ls.client()
        project = client.projects.create(title="reading fields bench", label_config=TEXT_CONFIG)
        client.projects.import_tasks(id=project.id, request=[{"text": f"review {i}"} for i in range(args.tasks)])
        ids = sorted(t.id for t in client.tasks.list(project=project.id, fields="task_only"))
        result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["fresh"]}}]
        for version in range(args.versions):
            requests.post(f"{ls.url}/api/projects/{project.id}/import/predictions", headers=headers, timeout=600,
                          json=[{"task": i, "model_version": f"v{version}", "score": 0.5, "result": result}
                                for i in ids]).raise_for_status()
        for task_id in ids[:args.annotated]:
            client.annotations.create(id=task_id, result=result, lead_time=2.0)

        def page(**params) -> tuple[float, list[dict]]:
            times, tasks = [], []
            for _ in range(5):
                started = time.perf_counter()
                answer = requests.get(f"{ls.url}/api/tasks/", headers=headers, timeout=600, params={
                    "project": project.id, "page": 1, "page_size": 100, "query": QUERY, "fields": "all", **params})
                answer.raise_for_status()
                times.append(time.perf_counter() - started)
                tasks = answer.json()["tasks"]
            return statistics.median(times) * 1000, tasks

        everything_ms, everything = page()
        named_ms, named = page(include=ANNOTATED_TASK_INCLUDE)
        print(f"{args.tasks} tasks, {args.versions} prediction versions each, {args.annotated} annotated; "
              f"a page of {len(named)} annotated tasks:")
        print(f"  fields=all (baseline):            {everything_ms:7.1f} ms")
        print(f"  include=ANNOTATED_TASK_FIELDS:    {named_ms:7.1f} ms  ({everything_ms / named_ms:.2f} times faster)")

        same = _task_rows(everything) == _task_rows(named)  # what the annotation store keeps of each
        print(f"  the same tasks and annotations: {'yes' if same else 'NO'}")
        return 0 if same and start_training(ls, project.id) else 1


def start_training(ls: LabelStudioServer, project_id: int) -> bool:
    """Time Start training's reading with ``fields=all`` alone (the baseline) and with its named fields; print both.

    Returns:
        Whether both gave the same tasks and the same training fields of each annotation.
    """
    client = labelstudio_api.LabelStudioClient(ls.url, ls.api_key)
    named_include = labelstudio_api.TRAINING_TASK_INCLUDE

    def reading(include: str | None) -> tuple[float, list[dict]]:
        labelstudio_api.TRAINING_TASK_INCLUDE = include  # None: the SDK sends no include, Label Studio gives all
        try:
            times, tasks = [], []
            for _ in range(3):
                started = time.perf_counter()
                tasks = client.annotated_tasks(project_id)
                times.append(time.perf_counter() - started)
            return statistics.median(times) * 1000, tasks
        finally:
            labelstudio_api.TRAINING_TASK_INCLUDE = named_include

    everything_ms, everything = reading(None)
    named_ms, named = reading(named_include)
    print(f"Start training's reading of the {len(named)} annotated tasks (every task's annotation ids, then these):")
    print(f"  second reading fields=all (baseline): {everything_ms:7.1f} ms")
    print(f"  include=TRAINING_TASK_FIELDS:         {named_ms:7.1f} ms  ({everything_ms / named_ms:.2f} times faster)")

    def kept(tasks: list[dict]) -> list:  # what training keeps or checks of each annotation
        fields = [f for f in labelstudio_api.TRAINING_TASK_FIELDS if f not in ("data", "annotations")]
        return [(t["id"], t["data"], [[a.get(f) for f in fields] for a in t["annotations"]]) for t in tasks]

    same = kept(everything) == kept(named)
    print(f"  the same tasks and annotations: {'yes' if same else 'NO'}")
    return same


if __name__ == "__main__":
    sys.exit(main())
