"""The Connect Model dialog's "Extra params" are checked the same way whichever head reads them: an audit against
Label Studio 1.23.2 found ``{"treshold": 0.9}``, ``{"threshold": "high"}``, ``{"threshold": 1.5}`` and a ``controls``
entry for a control the config lacks accepted and ignored by the learned heads, while the same values with
``"model"`` set were refused. Now ``/setup`` answers 422 with the reason (and keeps nothing), and
``LABELHUB_MODEL_PARAMS`` ends ``labelhub backend`` in one line.

Through the real Flask app (:func:`labelhub.backend.app.create_app`) as ``tests/test_backend_protocol.py`` does,
and the real CLI for the variable.
"""
from __future__ import annotations

import json
import logging

import pytest

from labelhub.backend.app import create_app
from tests.backend_fixtures import IMAGE_CONFIG, choices_config, project_key
from tests.conftest import run_labelhub
from tests.labelstudio import free_port

KEY = project_key()
TEXT_CONFIG = choices_config(["pos", "neg"], object_tag="Text", value="text").replace('name="label"',
                                                                                    'name="sentiment"')


@pytest.fixture
def app(tmp_path):
    return create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})


@pytest.mark.parametrize(("params", "reason"), [
    ({"treshold": 0.9}, "extra_params: unknown key 'treshold' (did you mean 'threshold'?); the keys read are "),
    ('{"threshold": "high"}', "extra_params: 'threshold' must be a number between 0 and 1 (got \"high\")"),
    ({"threshold": 1.5}, "extra_params: 'threshold' must be a number between 0 and 1 (got 1.5)"),
    ({"learned": "no"}, "extra_params: 'learned' must be true or false (got \"no\")"),
    ({"controls": {"sentiment": {"treshold": 0.2}}},
     "extra_params: unknown key 'controls.sentiment.treshold' (did you mean 'threshold'?)"),
    ({"controls": {"sentimnet": {"threshold": 0.2}}},
     "extra_params: 'controls' names 'sentimnet', no control tag of the label config (did you mean 'sentiment'?; "
     "it has 'sentiment')"),
])
def test_setup_refuses_extra_params_a_learned_head_would_ignore_with_the_reason(app, params, reason):
    client = app.test_client()
    assert client.post("/setup", json={"project": KEY, "schema": TEXT_CONFIG,
                                       "extra_params": {"threshold": 0.4}}).status_code == 200
    refused = client.post("/setup", json={"project": KEY, "schema": TEXT_CONFIG, "extra_params": params})
    assert refused.status_code == 422, refused.json
    assert refused.json["code"] in ("invalid_payload", "invalid_model_params"), refused.json
    assert refused.json["error"].startswith(reason) and refused.json["field"] == "extra_params", refused.json
    assert app.extensions["labelhub"].store.project(KEY).project()["extra_params"] == {"threshold": 0.4}


def test_the_keys_each_head_reads_are_accepted_in_controls_too(app):
    params = {"threshold": 0.3, "learned": True, "controls": {"sentiment": {"min_score": 0.5, "flip": False}},
              "nms": False, "labels": {"POSITIVE": "pos", "NEGATIVE": None}, "ocr_engine": "auto", "use_cls": None}
    answer = app.test_client().post("/setup", json={"project": KEY, "schema": TEXT_CONFIG, "extra_params": params})
    assert answer.status_code == 200, answer.json
    assert app.extensions["labelhub"].store.project(KEY).project()["extra_params"] == params


def test_stored_params_naming_a_control_the_edited_config_lacks_are_logged_not_refused(app, caplog):
    """A control renamed in Label Studio after the params were kept: the project still predicts."""
    client = app.test_client()
    params = {"controls": {"sentiment": {"threshold": 0.2}}}
    assert client.post("/setup", json={"project": KEY, "schema": TEXT_CONFIG, "extra_params": params}).status_code \
        == 200
    renamed = TEXT_CONFIG.replace('name="sentiment"', 'name="mood"')
    with caplog.at_level(logging.WARNING):
        answer = client.post("/predict", json={"project": KEY, "label_config": renamed,
                                               "tasks": [{"id": 1, "data": {"text": "fine"}}]})
    assert answer.status_code == 200, answer.json
    assert "'controls' names 'sentiment', no control tag of the label config" in caplog.text


def test_backend_refuses_model_params_with_an_unknown_key_in_one_line(tmp_path):
    answer = run_labelhub("backend", "--port", str(free_port()), timeout=60,
                          env={"MODEL_DIR": str(tmp_path), "LABELHUB_MODEL_PARAMS": json.dumps({"min_scor": 0.4})})
    assert answer.returncode == 1, answer.stderr
    assert answer.stderr.startswith("Error: LABELHUB_MODEL_PARAMS: unknown key 'min_scor' (did you mean "
                                    "'min_score'?); the keys read are ") and answer.stderr.count("\n") == 1


def test_extra_params_an_older_labelhub_stored_keep_serving_with_a_warning(app, caplog):
    """An upgrade must not stop a project's predictions: params stored before these checks (a typo'd key) are used
    as before, with one warning, until someone saves the Extra params again (then they are checked)."""
    client = app.test_client()
    assert client.post("/setup", json={"project": KEY, "schema": TEXT_CONFIG}).status_code == 200
    app.extensions["labelhub"].store.project(KEY).update_project(extra_params={"treshold": 0.9})
    with caplog.at_level(logging.WARNING):
        answer = client.post("/predict", json={"project": KEY, "label_config": TEXT_CONFIG,
                                               "tasks": [{"id": 1, "data": {"text": "a plot"}}]})
    assert answer.status_code == 200, answer.json
    assert "stored Extra params do not pass this version's checks" in caplog.text and "treshold" in caplog.text
    refused = client.post("/setup", json={"project": KEY, "schema": TEXT_CONFIG, "extra_params": {"treshhold": 1}})
    assert refused.status_code == 422


def test_a_stored_model_path_this_version_refuses_falls_back_to_the_learned_head_with_a_warning(app, caplog):
    """The same for the Hugging Face model's parameters, which the pipeline head checks when it is made: a relative
    ``model`` path (refused since 2026-12-06) stored before answers with the learned head and one warning, not 422 for
    every ``/setup`` and ``/predict`` of the project."""
    client = app.test_client()
    assert client.post("/setup", json={"project": KEY, "schema": TEXT_CONFIG}).status_code == 200
    app.extensions["labelhub"].store.project(KEY).update_project(
        extra_params={"model": "./models/sentiment", "task": "text-classification"})
    with caplog.at_level(logging.WARNING):
        answer = client.post("/predict", json={"project": KEY, "label_config": TEXT_CONFIG,
                                               "tasks": [{"id": 1, "data": {"text": "a plot"}}]})
    assert answer.status_code == 200, answer.json
    assert "its stored Extra params for <Choices name='sentiment'> do not pass this version's checks" in caplog.text
    refused = client.post("/setup", json={"project": KEY, "schema": TEXT_CONFIG,
                                          "extra_params": {"model": "../models/sentiment", "task": "text-classification"}})
    assert refused.status_code == 422  # saved anew (other params than the stored ones): checked
