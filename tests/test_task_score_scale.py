"""The task score puts every control on one scale (:mod:`labelhub.backend.models.heads`, **Task score**): in a
project of Choices and Labels over one Text a task whose spans the model is unsure of comes before the tasks it is
sure of in both, and a project of one control keeps its task order."""
from __future__ import annotations

import re

import numpy as np
import pytest

from labelhub.backend.app import create_app
from labelhub.backend.models.choices import ChoicesHead
from labelhub.backend.models.heads import TYPICAL, ControlHead
from labelhub.label_config import control_specs
from tests.backend_fixtures import annotation_event, plot_review_tasks, project_key, project_payload

KEY = project_key()
CHOICES = "<Choices name='kind' toName='text'><Choice value='plot'/><Choice value='review'/></Choices>"
LABELS = "<Labels name='ner' toName='text'><Label value='Name'/></Labels>"
MIXED = f"<View><Text name='text' value='$text'/>{CHOICES}{LABELS}</View>"
ONLY_CHOICES = f"<View><Text name='text' value='$text'/>{CHOICES}</View>"
ONLY_LABELS = f"<View><Text name='text' value='$text'/>{LABELS}</View>"
#: A capitalised word that does not start a sentence: what the annotators label ``Name``.
NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+\b")


def _results(i: int, task: dict, label: str, config: str) -> list[dict]:
    text = task["data"]["text"]
    out = []
    if "kind" in config:
        out.append({"id": f"c{i}", "from_name": "kind", "to_name": "text", "type": "choices",
                    "value": {"choices": [label]}})
    if "ner" in config:
        out += [{"id": f"n{i}_{k}", "from_name": "ner", "to_name": "text", "type": "labels",
                 "value": {"start": m.start(), "end": m.end(), "text": m.group(), "labels": ["Name"]}}
                for k, m in enumerate(NAME.finditer(text))]
    return out


def _predict(tmp_path, config: str, n_train: int = 30, n_test: int = 40) -> list[dict]:
    """Annotate ``n_train`` plot/review texts under ``config`` (a choice and the capitalised words as spans), fit
    through the real trainer, predict the next ``n_test``."""
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    client = app.test_client()
    assert client.post("/setup", json={"project": KEY, "schema": config}).status_code == 200
    tasks, labels = plot_review_tasks(n_train + n_test)
    for i, (task, label) in enumerate(zip(tasks[:n_train], labels[:n_train])):
        body = annotation_event(4000 + i, task, label, project=project_payload(label_config=config))
        body["annotation"]["result"] = _results(i, task, label, config)
        assert client.post("/webhook", json=body).status_code == 200
    app.extensions["labelhub"].trainer.run_once()
    return client.post("/predict", json={"tasks": tasks[n_train:], "project": KEY, "label_config": config}
                       ).json["results"]


def _control_score(pred: dict, name: str) -> float | None:
    scores = [r["score"] for r in pred["result"] if r["from_name"] == name]
    return float(np.mean(scores)) if scores else None


def test_the_maps_onto_the_task_scale_rise_strictly_and_keep_a_single_choice_as_it_is():
    (single,) = control_specs(ONLY_CHOICES)
    (multiple,) = control_specs(ONLY_CHOICES.replace("toName='text'", "toName='text' choice='multiple'"))
    (spans,) = control_specs(ONLY_LABELS)
    grid = np.linspace(0, 1, 101)
    choice, many = ChoicesHead(single, None), ChoicesHead(multiple, None)
    region = ControlHead(spans, None)
    assert [choice.task_score(s) for s in grid] == list(grid)  # to the bit: the single-choice order is untouched
    assert np.all(np.diff([region.task_score(p) for p in grid]) > 0)
    assert np.all(np.diff([many.task_score(c) for c in grid[50:]]) > 0)
    assert region.task_score(1.0) == many.task_score(1.0) == TYPICAL  # a sure control, as a sure typical choice
    assert many.task_score(0.5) == 0.0 == choice.task_score(0.0)  # a tie
    # a span the model gives even odds counts as a choice with a margin of 1/4 at the median distance
    assert region.task_score(0.5) == pytest.approx(0.25 * TYPICAL)


def test_a_task_with_an_unsure_span_comes_before_the_tasks_sure_of_both_controls(tmp_path):
    preds = _predict(tmp_path, MIXED)
    rows = []
    for pred in preds:
        choice, span = _control_score(pred, "kind"), _control_score(pred, "ner")
        assert choice is not None
        expected = min(choice, span ** 2 * TYPICAL) if span is not None else choice
        assert pred["score"] == pytest.approx(expected)
        rows.append((pred["score"], choice, span))
    # before, the task score was the choice's on every task (the audit: 0 of 135); now the spans set some
    by_span = [r for r in rows if r[2] is not None and r[0] < r[1]]
    assert by_span, rows
    choice_median = float(np.median([c for _, c, _ in rows]))
    unsure = [r for r in rows if r[1] >= choice_median and r[2] is not None and r[2] <= 0.7]
    sure = [r for r in rows if r[1] >= choice_median and r[2] is not None and r[2] >= 0.9]
    assert unsure and sure, rows
    order = sorted(rows, key=lambda r: r[0])  # the Data Manager's "Prediction score", ascending
    assert max(order.index(r) for r in unsure) < min(order.index(r) for r in sure), rows


@pytest.mark.parametrize("config, name", [(ONLY_CHOICES, "kind"), (ONLY_LABELS, "ner")])
def test_a_project_of_one_control_keeps_its_task_order(tmp_path, config, name):
    preds = _predict(tmp_path, config)
    # the task score before: the control's own score, 0.0 for a task where it found nothing (as now)
    own = [_control_score(p, name) for p in preds]
    assert sum(s is not None for s in own) >= len(own) // 2
    own = [0.0 if s is None else s for s in own]
    new = [p["score"] for p in preds]
    if name == "kind":  # a single choice: the very same numbers
        assert new == own
    else:
        assert new == pytest.approx([s ** 2 * TYPICAL for s in own])
        assert len(set(own)) == len(set(new))  # no two tasks tied that were not tied before
    assert sorted(range(len(own)), key=lambda i: (own[i], i)) == sorted(range(len(new)), key=lambda i: (new[i], i))


def test_the_heads_whose_task_score_changed_have_a_new_identity_and_a_single_choice_keeps_its_own():
    """A new identity moves the version (and the trainer refits on takeover), so predictions on the two scales never
    share one version in Label Studio's sort; a single choice's scores did not change, nor does its version."""
    from labelhub.backend.models.heads import TASK_SCALE
    from labelhub.backend.models.spans import SpansHead
    from tests.backend_fixtures import PrecomputedHost

    host = PrecomputedHost(np.zeros((1, 4), dtype=np.float32))
    (single,) = control_specs(ONLY_CHOICES)
    (multiple,) = control_specs(ONLY_CHOICES.replace("toName='text'", "toName='text' choice='multiple'"))
    (spans,) = control_specs(ONLY_LABELS)
    assert TASK_SCALE not in ChoicesHead(single, host).identity()
    assert TASK_SCALE in ChoicesHead(multiple, host).identity() and TASK_SCALE in SpansHead(spans, host).identity()
