"""A Hugging Face model's single choice on the task score's scale, and a Hub model whose load failed retried in the
background (:mod:`labelhub.backend.models.pipelines`, module docstring: **Task score of a single choice**, **Loading**).

The classifiers are tiny BERTs (:mod:`tests.tiny_models`) whose head is set to fixed logits, so every text gets the
same known probabilities; the learned Choices head of the mixed project fits through the real trainer; the Hub model
is read from the test Hub (:mod:`tests.hubserver`) through the real huggingface_hub client.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from labelhub.backend.app import create_app
from labelhub.backend.models import pipelines
from labelhub.backend.models.heads import TASK_SCALE, TYPICAL
from labelhub.backend.models.pipelines import CHOICE_MARGIN, PipelineHead
from labelhub.label_config import control_specs
from tests import tiny_models
from tests.backend_fixtures import annotation_event, plot_review_tasks, project_key, project_payload

TEXT = "<Text name='text' value='$text'/>"
SENTIMENT = "<Choices name='sentiment' toName='text'><Choice value='Negative'/><Choice value='Positive'/></Choices>"
KIND = "<Choices name='kind' toName='text'><Choice value='plot'/><Choice value='review'/></Choices>"


def odds_classifier(path: Path, logits: dict[str, float]) -> str:
    """A text classifier with ``logits`` (``{label: logit}``, in id order) for every text: its softmax is the same
    on every input (zero weights, the logits as bias)."""
    import torch
    from transformers import BertForSequenceClassification

    labels = tuple(logits)
    tiny_models.build_sequence_classifier(path, labels=labels, winner=labels[0])
    model = BertForSequenceClassification.from_pretrained(path)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(list(logits.values())))
    model.save_pretrained(path)
    return str(path)


def logits_of(*probabilities: float) -> list[float]:
    return [float(np.log(p)) for p in probabilities]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("odds")
    even, sure, sixty = (dict(zip(("NEGATIVE", "POSITIVE"), logits_of(*p))) for p in
                         ((0.5, 0.5), (0.001, 0.999), (0.4, 0.6)))
    return {"even": odds_classifier(root / "even", even), "sure": odds_classifier(root / "sure", sure),
            "sixty": odds_classifier(root / "sixty", sixty),
            # 0.5 / 0.3 / 0.2: margin 0.2, where p ** 2 / 4 said 0.0625 and 2p - 1 says 0
            "three": odds_classifier(root / "three", dict(zip(("Negative", "Neutral", "Positive"),
                                                              logits_of(0.3, 0.2, 0.5))))}


@pytest.fixture(autouse=True)
def _fresh_caches():
    pipelines.clear_caches()
    yield
    pipelines.clear_caches()


def _setup(tmp_path, config: str, extra: dict, key: str | None = None):
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    client = app.test_client()
    key = key or project_key()
    answer = client.post("/setup", json={"project": key, "schema": config, "extra_params": extra})
    assert answer.status_code == 200, answer.json
    return app, client, key


# --- 1. the task score of a single choice ---------------------------------------------------------------------
@pytest.mark.parametrize("model, labels, probability, margin", [
    ("even", ("Negative", "Positive"), 0.5, 0.0),
    ("sure", ("Negative", "Positive"), 0.999, 0.998),
    ("three", ("Negative", "Neutral", "Positive"), 0.5, 0.2),
])
def test_a_single_choice_of_a_hub_model_counts_its_margin_on_the_task_scale(tmp_path, models, model, labels,
                                                                            probability, margin):
    """Audit: a 2-class model at even odds (the least sure it can be) scored ``0.5 ** 2 / 4 = 0.0625``, the task
    score of a learned choice with a margin of 0.25; now its margin times TYPICAL: 0. The result keeps the
    probability as its ``score``."""
    choices = "".join(f"<Choice value='{v}'/>" for v in labels)
    config = f"<View>{TEXT}<Choices name='sentiment' toName='text'>{choices}</Choices></View>"
    _, client, key = _setup(tmp_path, config, {"model": models[model]})
    tasks = [{"id": i, "data": {"text": t}} for i, t in enumerate(("alice went to paris", "bob"))]
    for pred in client.post("/predict", json={"tasks": tasks, "project": key, "label_config": config}).json["results"]:
        (result,) = pred["result"]
        assert result["score"] == pytest.approx(probability, abs=1e-4)
        assert pred["score"] == pytest.approx(margin * TYPICAL, abs=1e-4)


def test_multiple_choice_and_the_identity(models):
    """A multiple choice keeps ``p ** 2 / 4`` of its mean; a single choice's identity names the new rule, so its
    ``model_version`` moves; a multiple choice's does not."""
    single, = control_specs(f"<View>{TEXT}{SENTIMENT}</View>")
    many_xml = SENTIMENT.replace("toName=", "choice='multiple' toName=")
    multiple, = control_specs(f"<View>{TEXT}{many_xml}</View>")
    one = PipelineHead(single, None, {"model": models["sixty"]}, [single])
    many = PipelineHead(multiple, None, {"model": models["sixty"]}, [multiple])
    assert CHOICE_MARGIN in one.identity() and TASK_SCALE in one.identity()
    assert CHOICE_MARGIN not in many.identity() and TASK_SCALE in many.identity()
    assert many.task_score(0.6) == pytest.approx(0.6 ** 2 * TYPICAL)
    # without the margin of a kept result (called alone): the margin of two labels, 2p - 1
    assert one.task_score(0.6) == pytest.approx(0.2 * TYPICAL) and one.task_score(0.5) == 0.0
    assert np.all(np.diff([one.task_score(p) for p in np.linspace(0.5, 1, 51)]) > 0)


def test_the_task_order_of_a_learned_and_a_hub_model_choice_follows_the_less_sure(tmp_path, models):
    """A learned Choices (plot / review, fit on 30 annotations) and a Hub model's Choices at 0.6 / 0.4 (margin
    0.2: task score 0.05) over one text: each task's score is the lower of the two, so the tasks the learned head is
    less sure of than 0.05 come first in its order and the Hub model's control sets the rest (it said 0.09 before,
    above about a third of the learned scores)."""
    config = f"<View>{TEXT}{KIND}{SENTIMENT}</View>"
    app, client, key = _setup(tmp_path, config, {"controls": {"sentiment": {"model": models["sixty"]}}})
    tasks, labels = plot_review_tasks(70)
    for i, (task, label) in enumerate(zip(tasks[:30], labels[:30])):
        body = annotation_event(5000 + i, task, label, project=project_payload(label_config=config))
        body["annotation"]["result"] = [{"id": f"c{i}", "from_name": "kind", "to_name": "text", "type": "choices",
                                         "value": {"choices": [label]}}]
        assert client.post("/webhook", json=body).status_code == 200
    app.extensions["labelhub"].trainer.run_once()
    preds = client.post("/predict", json={"tasks": tasks[30:], "project": key, "label_config": config}).json["results"]
    rows = []
    for pred in preds:
        scores = {r["from_name"]: r["score"] for r in pred["result"]}
        assert set(scores) == {"kind", "sentiment"} and scores["sentiment"] == pytest.approx(0.6, abs=1e-4)
        assert pred["score"] == pytest.approx(min(scores["kind"], 0.2 * TYPICAL), abs=1e-6)
        rows.append((pred["score"], scores["kind"]))
    by_choice = [r for r in rows if r[1] < 0.2 * TYPICAL]
    by_model = [r for r in rows if r[1] > 0.2 * TYPICAL]
    assert by_choice and by_model, rows  # each control sets the place of some tasks
    order = sorted(rows, key=lambda r: r[0])  # the Data Manager's "Prediction score", ascending
    assert order[:len(by_choice)] == sorted(by_choice)


# --- 2. a Hub model whose load failed is reloaded in the background -------------------------------------------
@pytest.mark.timeout(180)
def test_a_failed_hub_model_is_reloaded_in_the_background_and_no_request_waits_for_it(
        tmp_path, models, hub, monkeypatch, caplog):
    """Audit: after ``RETRY_SECONDS`` the first request loaded the failed model again and waited for it (about 23 s
    against an unreachable Hub), as did every request of the project queued behind it. Now that request starts one
    background reload and fails at once like the others; a reload that fails renews the failure time, one that
    succeeds serves the next requests. The model is on the test Hub, which answers 401 for it (a gated model without
    access) until the fault is cleared; the loads go through transformers' real ``pipeline``, held by the test while
    it checks that requests do not wait for them."""
    import transformers
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(pipelines, "RETRY_SECONDS", 1.0)
    caplog.set_level(logging.INFO, logger="labelhub.backend.models")
    repo = "acme/sentiment-gated"
    hub.create_repo(repo, repo_type="model")
    hub.commit_files(repo, {p.name: p.read_bytes() for p in Path(models["sure"]).iterdir()}, repo_type="model")
    hub.faults.add(path=repo, kind="401", count=10 ** 6)

    loads, reloading, release = [], threading.Event(), threading.Event()
    original = transformers.pipeline

    def held(*args, **kwargs):  # a reload that takes as long as the test says
        loads.append(threading.current_thread().name)
        if len(loads) > 1:
            reloading.set()
            assert release.wait(60)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers, "pipeline", held)
    config = f"<View>{TEXT}{SENTIMENT}</View>"
    _, client, key = _setup(tmp_path, config, {"model": repo, "task": "text-classification"})
    body = {"tasks": [{"id": 1, "data": {"text": "alice went to paris"}}], "project": key, "label_config": config}

    def predict() -> tuple[float, dict]:
        started = time.monotonic()
        (pred,) = client.post("/predict", json=body).json["results"]
        return time.monotonic() - started, pred

    _, first = predict()  # the first load: the request waits for it, it fails
    assert "result" not in first and repo in first["error"] and len(loads) == 1, first
    time.sleep(1.1)
    seconds, pred = predict()  # due: starts the reload, answers the previous error
    assert reloading.wait(10) and "result" not in pred and pred["error"] == first["error"], pred
    for _ in range(5):  # while it runs, every request answers at once, and no other reload starts
        seconds, pred = predict()
        assert seconds < 1 and pred["error"] == first["error"] and len(loads) == 2, (seconds, pred)
    release.set()  # the reload fails again (still 401): the failure time is renewed
    deadline = time.monotonic() + 30
    while any(t.name.startswith("labelhub-reload") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    seconds, pred = predict()
    assert seconds < 1 and "result" not in pred and len(loads) == 2, (seconds, pred)  # not due yet: no reload

    hub.faults.clear()  # access granted
    time.sleep(1.1)
    seconds, pred = predict()  # starts the reload that succeeds
    assert seconds < 1 and "result" not in pred, (seconds, pred)
    while "result" not in pred and time.monotonic() < deadline:
        time.sleep(0.1)
        seconds, pred = predict()
    assert [r["value"] for r in pred["result"]] == [{"choices": ["Positive"]}], pred
    assert len(loads) == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and len(errors) == len(set(errors)) and all(repo in m and "\n" not in m for m in errors), errors
    assert any("still cannot be loaded" in r.getMessage() for r in caplog.records)
