"""A label-studio-ml 2.x style model served by the backend, and the shapes ``predict`` may return.

``tests/ls_ml_style_model.py`` is written like a label-studio-ml 2.x model (``ModelResponse`` of
label-studio-sdk ``PredictionValue``); it is served through the real app here. The other tests check
:func:`labelhub.backend.model.normalize_predictions` over every shape label-studio-ml's ``/predict``
accepts (``label_studio_ml/api.py``, ``label_studio_ml/response.py``), plus garbage.
"""
from __future__ import annotations

import json
import logging
import math
from types import SimpleNamespace
from typing import List, Optional, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from label_studio_sdk.label_interface.objects import PredictionValue
from pydantic import BaseModel

from labelhub.backend.app import create_app
from labelhub.backend.model import ModelResponse, normalize_predictions
from tests.backend_fixtures import annotation_event, choices_config, project_key, project_payload

KEY = project_key()
CONFIG = choices_config(["plot", "review"], object_tag="Text", value="text")
REGION = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["plot"]}}

TRAIN = [("A young farmer leaves his village to find his missing brother in the city", "plot"),
         ("Years later the brother returns to the village with a stranger", "plot"),
         ("A dull and tedious film, the acting is wooden and the script lazy", "review"),
         ("Brilliant acting, a script full of wit: the film of the year", "review")]
HELD_OUT = [{"id": 101, "data": {"text": "The farmer and his brother travel to the city"}},
            {"id": 102, "data": {"text": "The acting is brilliant but the script about a farmer is tedious"}},
            {"id": 103, "data": {"text": "Zzz"}}]


# the model through the real app ---------------------------------------------------------------------
@pytest.fixture
def app(tmp_path):
    return create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False,
                       "model_class": "tests.ls_ml_style_model:KeywordChoices"})


def test_a_label_studio_ml_2_model_is_served_by_changing_its_import(app, caplog):
    client = app.test_client()
    assert client.post("/setup", json={"project": KEY, "schema": CONFIG}).json == {"model_version": "keywords-0.0.1"}
    untrained = client.post("/predict", json={"tasks": HELD_OUT, "project": KEY, "label_config": CONFIG})
    assert untrained.status_code == 200
    assert untrained.json == {"results": [{"result": [], "score": 0.0, "model_version": "keywords-0.0.1"}] * 3}

    for i, (text, label) in enumerate(TRAIN):
        task = {"id": i + 1, "data": {"text": text}}
        event = annotation_event(500 + i, task, label, project=project_payload(label_config=CONFIG))
        assert client.post("/webhook", json=event).status_code == 200
    assert app.extensions["labelhub"].trainer.run_once() == len(TRAIN)  # fit(event, data) once per event

    version = client.post("/setup", json={"project": KEY, "schema": CONFIG}).json["model_version"]
    assert version == "keywords-4"
    with caplog.at_level(logging.INFO, logger="labelhub.backend.model"):
        results = client.post("/predict", json={"tasks": HELD_OUT, "project": KEY,
                                                "label_config": CONFIG}).json["results"]
    assert not caplog.records  # every prediction was usable
    # Label Studio's prediction format (https://labelstud.io/guide/predictions): what label-studio-ml answers
    assert [sorted(r) for r in results] == [["model_version", "result", "score"]] * 3
    assert results[0] == {"result": [{**REGION, "value": {"choices": ["plot"]}}], "score": 1.0,
                          "model_version": "keywords-4"}
    assert results[1]["result"][0]["value"] == {"choices": ["review"]} and 0.5 < results[1]["score"] < 1
    assert results[2] == {"result": [], "score": 0.0, "model_version": "keywords-4"}


# normalize_predictions over the shapes -------------------------------------------------------------------
class LabelStudioMLResponse(BaseModel):
    """The fields of label-studio-ml 2.x's ``ModelResponse`` (pydantic v2), as documented."""

    model_version: Optional[str] = None
    predictions: List[Union[List[PredictionValue], PredictionValue]]


def _pred(choice="plot", score=0.9, version=None):
    return {"result": [{**REGION, "value": {"choices": [choice]}}], "score": score, "model_version": version}


def test_list_of_dicts_passes_through_with_defaults():
    out = normalize_predictions([_pred(version="own"), {"result": [REGION]}, {"score": "high", "result": "x"}],
                                3, "model-v")
    assert out == [{**_pred(version="own"), "score": 0.9},
                   {"result": [REGION], "score": 0.0, "model_version": "model-v"},
                   {"result": [], "score": 0.0, "model_version": "model-v"}]


def test_a_media_error_of_a_task_is_kept():
    out = normalize_predictions([{"result": [], "score": 0.0, "error": "could not fetch x"}], 1, "v")
    assert out == [{"result": [], "score": 0.0, "model_version": "v", "error": "could not fetch x"}]


def test_list_of_prediction_values_is_dumped():
    values = [PredictionValue(result=[REGION], score=0.75, model_version="pv-1"), PredictionValue(result=[])]
    assert normalize_predictions(values, 2, "model-v") == [
        {"result": [REGION], "score": 0.75, "model_version": "pv-1"},
        {"result": [], "score": 0.0, "model_version": "model-v"}]


def test_per_task_lists_answer_their_first_prediction(caplog):
    with caplog.at_level(logging.INFO, logger="labelhub.backend.model"):
        out = normalize_predictions([[_pred("plot"), _pred("review")], [], [PredictionValue(result=[REGION])]],
                                    3, "v")
    assert [o["result"] for o in out] == [_pred("plot")["result"], [], [REGION]]
    assert [r.levelname for r in caplog.records] == ["INFO"] and "dropped 1" in caplog.text


@pytest.mark.parametrize("make", [
    lambda preds, v: ModelResponse(predictions=preds, model_version=v),
    lambda preds, v: LabelStudioMLResponse(predictions=[PredictionValue(**p) for p in preds], model_version=v),
    lambda preds, v: SimpleNamespace(predictions=preds, model_version=v),
    lambda preds, v: {"predictions": preds, "model_version": v},
    lambda preds, v: {"results": preds, "model_version": v},
    lambda preds, v: SimpleNamespace(model_dump=lambda: {"predictions": preds, "model_version": v}),
], ids=["ours", "label-studio-ml", "attributes", "dict", "dict-results", "model_dump"])
def test_responses_give_their_version_to_predictions_without_one(make):
    preds = [_pred(version=None), _pred(version="own")]
    out = normalize_predictions(make(preds, "response-v"), 2, "model-v")
    assert [o["model_version"] for o in out] == ["response-v", "own"]
    assert out[0]["result"] == _pred()["result"] and out[0]["score"] == 0.9
    without = normalize_predictions(make(preds, None), 2, "model-v")
    assert [o["model_version"] for o in without] == ["model-v", "own"]


def test_none_means_no_predictions():
    assert normalize_predictions(None, 2, "v") == [{"result": [], "score": 0.0, "model_version": "v"}] * 2
    assert normalize_predictions(ModelResponse(), 0, "v") == []
    assert normalize_predictions([None, _pred()], 2, "v")[0] == {"result": [], "score": 0.0, "model_version": "v"}


def test_unusable_items_are_logged_once_with_their_type_and_answered_empty(caplog):
    class Broken:
        def model_dump(self):
            raise RuntimeError("no")

    with caplog.at_level(logging.WARNING, logger="labelhub.backend.model"):
        out = normalize_predictions([_pred(), 42, "text", Broken(), [[_pred()]]], 5, "v")
    assert out[0]["result"] and all(o == {"result": [], "score": 0.0, "model_version": "v"} for o in out[1:])
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert all(s in message for s in ("#1: int", "#2: str", "#3: Broken", "#4: list"))


@pytest.mark.parametrize("response, got", [([_pred()], "1"), ("oops", "a str, not a list of"),
                                           ({"no": "predictions"}, "a dict, not a list of")])
def test_a_response_that_cannot_be_matched_to_the_tasks_is_an_error_for_each(response, got, caplog):
    with caplog.at_level(logging.ERROR, logger="labelhub.backend.model"):
        out = normalize_predictions(response, 2, "v")
    assert out == [{"result": [], "score": 0.0, "model_version": "v",
                    "error": f"the model answered {got} predictions for 2 tasks"}] * 2
    assert len(caplog.records) == 1


def test_the_models_objects_are_not_changed():
    pred, value = _pred(version=None), PredictionValue(result=[])
    normalize_predictions(ModelResponse([pred, value], model_version="r"), 2, "v")
    assert pred["model_version"] is None and value.model_version is None


def test_model_response_has_label_studio_ml_methods():
    pred, value, nested = _pred(version=None), PredictionValue(result=[]), PredictionValue(result=[], model_version="x")
    response = ModelResponse(predictions=[pred, value, [nested]])
    assert not response.has_model_version()
    response.update_predictions_version()  # no version yet: nothing to give
    assert pred["model_version"] is None
    response.set_version("r1")
    assert response.has_model_version() and response.model_version == "r1"
    assert (pred["model_version"], value.model_version, nested.model_version) == ("r1", "r1", "x")


# property: any mixture never raises and answers one prediction per task ----------------------------------
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                 max_size=3), max_leaves=6)
_dicts = st.dictionaries(st.sampled_from(["result", "score", "model_version", "error", "other"]),
                         _json | st.floats() | st.lists(st.just(REGION), max_size=2), max_size=5)
_values = st.builds(PredictionValue, result=st.lists(st.just(REGION), max_size=2),
                    score=st.none() | st.floats(), model_version=st.none() | st.text(max_size=5))
_garbage = (st.integers() | st.floats() | st.text(max_size=5) | st.binary(max_size=5) | st.builds(object)
            | st.sets(st.integers(), max_size=2) | st.builds(SimpleNamespace, model_dump=st.just(lambda: 3)))
_item = _dicts | _values | st.none() | _garbage
_items = st.lists(_item | st.lists(_item, max_size=3), max_size=8)


def _check(out, n):
    assert isinstance(out, list) and len(out) == n
    for pred in out:
        assert isinstance(pred["result"], list) and isinstance(pred["model_version"], str) and pred["model_version"]
        assert isinstance(pred["score"], float) and math.isfinite(pred["score"])
        assert set(pred) <= {"result", "score", "model_version", "error"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=_items)
def test_any_list_of_mixed_items_yields_one_prediction_per_task(items):
    _check(normalize_predictions(items, len(items), "model-v"), len(items))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=_items, n_tasks=st.integers(0, 6), version=st.none() | st.text(max_size=5),
       wrap=st.sampled_from(["list", "ours", "dict", "attributes", "garbage"]))
def test_any_response_yields_exactly_n_tasks_predictions(items, n_tasks, version, wrap):
    response = {"list": items, "ours": ModelResponse(items, model_version=version),
                "dict": {"predictions": items, "model_version": version},
                "attributes": SimpleNamespace(predictions=items, model_version=version),
                "garbage": json.dumps(items, default=repr)}[wrap]
    _check(normalize_predictions(response, n_tasks, "model-v"), n_tasks)
