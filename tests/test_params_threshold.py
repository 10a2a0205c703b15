"""The ``threshold`` Extra param on every head, and what it does to the task score (``backend/models/heads.py``)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import requests
import pytest

from labelhub.backend.models.boxes import BoxesHead
from labelhub.backend.models.choices import ChoicesHead
from labelhub.backend.models.heads import ControlHead, TaskInput, Withheld
from labelhub.label_config import control_specs
from tests.backend_fixtures import IMAGE_CLASSES, choices_config, plot_review_tasks, project_key
from tests.test_boxes_head import StubHost, example
from tests.test_boxes_head import CONFIG as BOXES_CONFIG
from tests.test_choices_head import _head_and_examples
from tests.test_project_model import TWO_CONTROLS, _annotate, make_app

KEY = project_key()
#: Two Choices over one Text (test_project_model's, without the control nothing answers: its log line is said once
#: per process, and that module's test looks for it).
CONFIG = TWO_CONTROLS.replace("<Rating name='stars' toName='text'/>", "")


def test_kept_drops_regions_below_the_threshold_with_the_results_sharing_their_id():
    control = control_specs(BOXES_CONFIG)[0]
    regions = [{"id": "a", "score": 0.95}, {"id": "a", "score": 0.5}, {"id": "b", "score": 0.99}, {"score": 0.2}]
    assert ControlHead(control, None, {}).kept(regions) is regions  # unset: nothing dropped
    assert ControlHead(control, None, {"threshold": 0.9}).kept(regions) == [{"id": "b", "score": 0.99}]


def test_the_choices_head_withholds_a_choice_whose_probability_is_below_the_threshold():
    head, inputs, examples = _head_and_examples(choices_config(IMAGE_CLASSES))
    fitted = head.fit(examples)
    unset = head.predict(inputs, fitted)
    assert all(len(p) == 1 for p in unset)
    proba = fitted["model"].predict_proba(head.host.X).max(axis=1)
    threshold = float(np.median(proba))
    sure = ChoicesHead(head.control, head.host, {"threshold": threshold}).predict(inputs, fitted)
    assert any(proba < threshold) and any(proba >= threshold)
    for p, before, top in zip(sure, unset, proba):
        if top < threshold:  # no result, the score it would have had
            assert isinstance(p, Withheld) and p == [] and p.score == pytest.approx(before[0]["score"])
        else:
            assert p == before
    # multiple choice: the threshold takes the place of 0.5
    head, inputs, examples = _head_and_examples(choices_config(IMAGE_CLASSES, multiple=True))
    fitted = head.fit(examples)
    assert not any(isinstance(p, Withheld) for p in head.predict(inputs, fitted))  # unset: as before
    low = ChoicesHead(head.control, head.host, {"threshold": 0.0}).predict(inputs, fitted)
    assert all(len(p[0]["value"]["choices"]) == len(IMAGE_CLASSES) for p in low)
    high = ChoicesHead(head.control, head.host, {"threshold": 1.0}).predict(inputs, fitted)
    assert all(isinstance(p, Withheld) and 0 <= p.score <= 1 for p in high if not p)
    assert sum(isinstance(p, Withheld) for p in high) > len(high) / 2


def test_the_boxes_head_keeps_no_box_below_the_threshold():
    from labelhub.sync.demo.sample_data import fashion_mnist_canvases

    control = next(c for c in control_specs(BOXES_CONFIG) if c.from_name == "box")
    canvases = fashion_mnist_canvases("train", 14, seed=5, pool=2000)
    head = BoxesHead(control, StubHost())
    fitted = head.fit([example(k, img, boxes) for k, (img, boxes) in enumerate(canvases[:12])])
    inputs = [TaskInput(task={"id": 100 + k}, value=f"test://{k}", media=img) for k, (img, _) in
              enumerate(canvases[12:])]
    before = [r for regions in head.predict(inputs, fitted) for r in regions]
    scores = sorted(r["score"] for r in before)
    assert len(scores) >= 2
    threshold = float(np.median(scores))
    strict = BoxesHead(control, StubHost(), {"threshold": threshold})
    after = [r for regions in strict.predict(inputs, fitted) for r in strict.kept(regions)]
    assert after and all(r["score"] >= threshold for r in after)
    assert len(after) < len(before)


def _trained_app(tmp_path, n: int, trained: int):
    """A backend app (a test client) whose project learned ``trained`` of ``n`` plot-review tasks, and the /predict
    body of the others."""
    app = make_app(tmp_path)
    client = app.test_client()
    assert client.post("/setup", json={"project": KEY, "schema": CONFIG}).status_code == 200
    tasks, labels = plot_review_tasks(n)
    _annotate(client, tasks[:trained], labels[:trained], CONFIG)
    app.extensions["labelhub"].trainer.run_once()
    return client, {"tasks": tasks[trained:], "project": KEY, "label_config": CONFIG}


def test_a_threshold_in_the_extra_params_reaches_the_learned_heads_and_the_task_score_counts_withheld_choices(
        tmp_path):
    """End to end through the backend's routes: ``{"threshold": 0.999}`` was accepted and ignored by the learned
    heads; now no choice under it is given, and the task score still counts the withheld choice's score."""
    client, body = _trained_app(tmp_path, 50, 40)
    before = client.post("/predict", json=body).json["results"]
    assert all(len(p["result"]) == 2 for p in before)
    assert client.post("/setup", json={"project": KEY, "schema": CONFIG,
                                       "extra_params": {"threshold": 0.999}}).status_code == 200
    after = client.post("/predict", json=body).json["results"]
    assert sum(len(p["result"]) for p in after) < sum(len(p["result"]) for p in before)
    for old, new in zip(before, after):
        same = {r["from_name"]: (r["value"], r["score"]) for r in old["result"]}
        assert all(same[r["from_name"]] == (r["value"], r["score"]) for r in new["result"])  # kept as they were
        # the task score is the same lowest control score: a withheld choice still counts
        assert new["score"] == pytest.approx(old["score"])


def test_changing_the_extra_params_moves_the_model_version_and_predict_missing_predicts_again(label_studio, tmp_path):
    """Audit: after a new ``threshold`` in the Extra params, ``labelhub predict --missing`` planned nothing (the
    version was the fit's) and every task kept its prediction made under the old parameters. Through a real Label
    Studio 1.23.2."""
    from tests.test_predict_jobs import _cli, _per_task, _Project

    project = _Project(label_studio, tmp_path / "models", n_tasks=24)
    fitted = project.train(0, 16)
    models = project.app.extensions["labelhub"].models
    answer = _cli("predict", "--project", str(project.id), env=project.env)
    assert answer.exit_code == 0 and f"24 predictions of {fitted} written" in answer.output, answer.output
    # the Connect Model dialog's Extra params (what /setup does with them)
    model = models.get(project.key, project.payload["label_config"], extra_params={"threshold": 0.4})
    moved = model.model_version
    assert moved != fitted and moved.startswith("labelhub-16-")
    assert project.app.extensions["labelhub"].store.project(project.key).kv()["model_version"] == fitted  # no refit
    answer = _cli("predict", "--project", str(project.id), "--missing", env=project.env)
    assert answer.exit_code == 0 and f"24 predictions of {moved} written" in answer.output, answer.output
    assert _per_task(label_studio, project.id, moved) == Counter({1: 24})
    restarted = make_app(project.model_dir)  # another worker, or after a restart: the same version
    assert restarted.extensions["labelhub"].models.get(project.key).model_version == moved
    # the same parameters written otherwise (key order, a null): the same version; back to none: the fit's again
    assert models.get(project.key, project.payload["label_config"],
                      extra_params={"learned": None, "threshold": 0.4}).model_version == moved
    assert models.get(project.key, project.payload["label_config"], extra_params={}).model_version == fitted
    answer = _cli("predict", "--project", str(project.id), "--missing", env=project.env)
    assert answer.exit_code == 0, answer.output  # every task holds the fit's version already: nothing written
    assert _per_task(label_studio, project.id, fitted) == _per_task(label_studio, project.id, moved) == Counter({1: 24})


def test_every_result_of_a_prediction_has_an_id(tmp_path):
    """Audit: in a project with Choices and RectangleLabels the boxes had an ``id`` and the ``choices`` result none."""
    client, body = _trained_app(tmp_path, 30, 24)
    results = client.post("/predict", json=body).json["results"]
    for pred in results:
        ids = [r.get("id") for r in pred["result"]]
        assert len(ids) == 2 and all(isinstance(i, str) and len(i) == 10 for i in ids) and len(set(ids)) == 2
    # derived from the control, not drawn: the same prediction from another call (or worker)
    assert client.post("/predict", json=body).json["results"] == results


def test_the_ocr_templates_labels_over_the_image_are_not_answered_and_the_log_says_why(tmp_path, caplog):
    """Label Studio's OCR template: its ``<Labels>`` (Text/Handwriting) over the image gets no head; the log says the
    regions come without a label, not only "no head for it"."""
    import logging

    from tests.test_restore_ocr_labels import OCR

    caplog.set_level(logging.INFO, logger="labelhub.backend.models.project")
    client = make_app(tmp_path).test_client()
    assert client.post("/setup", json={"project": project_key(7), "schema": OCR}).status_code == 200
    said = [r.getMessage() for r in caplog.records if "<Labels name='label'>" in r.getMessage()]
    assert len(said) == 1 and "without a label: the annotator picks it" in said[0], said


def test_the_ocr_head_keeps_no_line_below_the_threshold_and_drops_its_rectangle_with_it():
    from tests.test_transcription_head import REGION_CONFIG, head_for, render, task

    image, _ = render()
    head = head_for(REGION_CONFIG)
    before = head.predict([task(image)])[0]
    scores = sorted({r["score"] for r in before})
    assert len(scores) >= 2
    strict = head_for(REGION_CONFIG, {"threshold": scores[-1]})
    after = strict.kept(strict.predict([task(image)])[0])
    assert after and all(r["score"] >= scores[-1] for r in after) and len(after) < len(before)
    types = {}
    for r in after:
        types.setdefault(r["id"], set()).add(r["type"])
    assert all(kinds == {"rectangle", "textarea"} for kinds in types.values())  # a line whole or not at all


def test_the_spans_head_keeps_no_span_below_the_threshold():
    from labelhub.backend.models.spans import SpansHead
    from tests.test_spans_head import CONFIG as SPANS_CONFIG
    from tests.test_spans_head import SENTENCES, StubHost as SpansHost, example as span_example, inputs_of, spans_of

    (control,) = control_specs(SPANS_CONFIG)
    head = SpansHead(control, SpansHost(), {}, [control])
    fitted = head.fit([span_example(i, text, spans_of(text, entities)) for i, (text, entities) in enumerate(SENTENCES)])
    inputs = inputs_of([text for text, _ in SENTENCES[:8]])
    before = [r for regions in head.predict(inputs, fitted) for r in regions]
    threshold = float(np.median([r["score"] for r in before]))
    strict = SpansHead(control, SpansHost(), {"threshold": threshold}, [control])
    after = [r for regions in strict.predict(inputs, fitted) for r in strict.kept(regions)]
    assert after and all(r["score"] >= threshold for r in after) and len(after) < len(before)


def test_two_backends_on_one_redis_serve_the_same_version_for_the_same_extra_params(tmp_path):
    """Two hosts (gunicorn, two workers each, their own ``MODEL_DIR``) on one Redis: the Extra params sent to one
    move the version both serve, to the same value, and back."""
    from tests.backend_fixtures import TEXT_CONFIG, BackendServer, RedisServer, annotation_event, project_payload, \
        running, text_tasks, wait_for

    key, payload = project_key(8), project_payload(8, label_config=TEXT_CONFIG)
    tasks, labels = text_tasks(24)
    with RedisServer(tmp_path / "redis") as redis_server:
        env = {"LABELHUB_REDIS_URL": f"{redis_server.url}/0", "LABELHUB_WARMUP": "false"}
        servers = [BackendServer(tmp_path / f"host{i}", workers=2, threads=4, env=env) for i in range(2)]
        with running(servers) as hosts:

            def setup(host, params=None) -> str:
                body = {"project": key, "schema": TEXT_CONFIG, **({"extra_params": params} if params is not None
                                                                 else {})}
                answer = requests.post(host.url + "/setup", json=body, timeout=60)
                assert answer.status_code == 200, answer.text
                return answer.json()["model_version"]

            def predicted(host) -> set[str]:  # several requests: both gunicorn workers answer
                return {requests.post(host.url + "/predict", json={"tasks": [tasks[-1]], "project": key,
                                                                   "label_config": TEXT_CONFIG}, timeout=60
                                      ).json()["results"][0]["model_version"] for _ in range(6)}

            setup(hosts[0])
            for i in range(20):
                body = annotation_event(20_000 + i, tasks[i], labels[i], project=payload)
                assert requests.post(hosts[i % 2].url + "/webhook", json=body, timeout=60).status_code == 200
            wait_for(lambda: setup(hosts[1]).startswith("labelhub-20-"), timeout=180, message="the fit of 20 tasks")
            fitted = setup(hosts[1])
            moved = setup(hosts[0], {"threshold": 0.3})
            assert moved != fitted and moved.startswith("labelhub-20-")
            assert predicted(hosts[0]) == predicted(hosts[1]) == {moved}
            assert setup(hosts[1]) == moved  # the stored params, read back by the other host
            assert setup(hosts[1], {}) == fitted
            assert predicted(hosts[0]) == {fitted}
