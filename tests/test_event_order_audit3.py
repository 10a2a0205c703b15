"""Audit 3 of the backend's event handling and project state (``/tmp/audit-backend``):

1. A cancelled (skipped) annotation came back into training when an older event of it was applied after the cancel
   (two gunicorn workers: the older event's file lands later): ``_upsert`` removed it without keeping the cancel's
   ``updated_at``. Now a cancel is ordered like any other event of the annotation.
2. A model built from the stored Extra params (a cache miss of ``/predict``, a job's batch, the trainer) wrote them
   back when done (``ModelRegistry.get``), over the newer ones a concurrent ``/setup`` had stored meanwhile; the
   served ``model_version`` went back with them. Now only a caller that gives ``extra_params`` stores them.

Units on :func:`labelhub.backend.events.apply_event`, and the real Flask app (two apps on one ``MODEL_DIR`` are two
workers) with a small model class, as ``tests/test_backend_protocol.py`` does.
"""
from __future__ import annotations

import json
import threading

from hypothesis import given, settings, strategies as st

from labelhub.backend.app import ModelRegistry, create_app
from labelhub.backend.events import apply_event
from labelhub.backend.model import LabelStudioMLBase
from tests.backend_fixtures import IMAGE_CONFIG, annotation_event, project_key, project_payload

KEY = project_key()
TASK = {"id": 5, "data": {"image": "data:,x"}}
T1, T2, T3, T4 = (f"2024-06-10T09:00:0{s}Z" for s in (1, 2, 3, 4))


def _data():
    return {"annotations": {}, "tombstones": {}, "tasks": {}}


def _event(label: str, updated_at: str, cancelled: bool = False, action: str = "ANNOTATION_UPDATED",
           ann_id: int = 9) -> dict:
    event = annotation_event(ann_id, TASK, label, action=action, updated_at=updated_at)
    if cancelled:
        event["annotation"].update(was_cancelled=True, result=[])
    return event


def _apply(data: dict, event: dict) -> bool:
    return apply_event(data, event["action"], event)


def _label(data: dict, ann_id: str = "9"):
    ann = data["annotations"].get(ann_id)
    return ann and ann["result"][0]["value"]["choices"][0]


# 1. a cancel is ordered by its updated_at ----------------------------------------------------------------------
def test_an_older_update_applied_after_the_cancel_does_not_bring_the_annotation_back():
    data = _data()
    _apply(data, _event("Bag", T1, action="ANNOTATION_CREATED"))
    assert _apply(data, _event("", T3, cancelled=True))
    assert data["annotations"] == {}
    assert not _apply(data, _event("Coat", T2))  # the t=2 version's event, written late by another worker
    assert data["annotations"] == {}
    assert not _apply(data, _event("Coat", T1, action="ANNOTATION_CREATED"))  # even its creation, replayed
    assert data["annotations"] == {}


def test_a_newer_update_after_the_cancel_brings_the_annotation_back_and_orders_what_follows():
    data = _data()
    _apply(data, _event("Bag", T1, action="ANNOTATION_CREATED"))
    _apply(data, _event("", T2, cancelled=True))
    assert _apply(data, _event("Coat", T3))  # un-cancelled in Label Studio
    assert _label(data) == "Coat" and "9" not in data["cancelled"]
    assert not _apply(data, _event("", T2, cancelled=True))  # the older cancel again, late: ignored
    assert not _apply(data, _event("Bag", T1))
    assert _label(data) == "Coat"
    assert _apply(data, _event("", T4, cancelled=True))  # and a newer cancel still removes it
    assert data["annotations"] == {}


def test_a_cancel_older_than_the_stored_version_is_ignored_and_a_cancel_applied_twice_changes_nothing():
    data = _data()
    _apply(data, _event("Bag", T3))
    assert not _apply(data, _event("", T2, cancelled=True))
    assert _label(data) == "Bag" and not data.get("cancelled")
    cancel = _event("", T4, cancelled=True)
    assert _apply(data, cancel)
    snapshot = json.dumps(data, sort_keys=True)
    assert not _apply(data, cancel)
    assert json.dumps(data, sort_keys=True) == snapshot


def test_a_skipped_annotation_never_held_is_remembered_and_a_delete_replaces_its_cancel_with_a_tombstone():
    data = _data()
    assert _apply(data, _event("", T3, cancelled=True, action="ANNOTATION_CREATED"))  # created skipped
    assert data["annotations"] == {} and data["cancelled"]["9"] == {"task": "5", "updated_at": T3}
    assert not _apply(data, _event("Bag", T2))
    assert data["annotations"] == {}
    _apply(data, {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 9}]})
    assert "9" in data["tombstones"] and "9" not in data["cancelled"]
    _apply(data, _event("", T3, cancelled=True, ann_id=10))
    _apply(data, {"action": "TASKS_DELETED", "tasks": [{"id": 5}]})
    assert data["cancelled"] == {} and "task:5" in data["tombstones"]


def test_events_without_a_readable_updated_at_keep_the_order_of_arrival():
    data = _data()
    _apply(data, _event("Bag", "not a time"))
    _apply(data, _event("", "not a time", cancelled=True))
    assert data["annotations"] == {}
    _apply(data, _event("Coat", "not a time"))  # nothing orders them: the one applied last counts, as before
    assert _label(data) == "Coat"


class GatedModel(LabelStudioMLBase):
    """The base model whose ``model_version`` folds in the ``threshold`` Extra param (as the default model folds in
    its params), and whose ``setup`` can be held on a gate while it builds, to force an interleaving."""

    gate_params: dict | None = None  # params whose build waits on the gate (None: none waits)
    inside = threading.Event()
    gate = threading.Event()

    def setup(self):
        if GatedModel.gate_params is not None and self.extra_params == GatedModel.gate_params:
            GatedModel.inside.set()
            assert GatedModel.gate.wait(10), "the test never opened the gate"

    @property
    def model_version(self) -> str:
        return f"gated-{(self.extra_params or {}).get('threshold')}"


def _app(tmp_path):
    return create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False,
                       "model_class": "tests.test_event_order_audit3:GatedModel"})


def test_the_trainer_keeps_a_cancel_when_an_older_event_of_it_is_queued_after_it(tmp_path):
    app = _app(tmp_path)
    client, backend = app.test_client(), app.extensions["labelhub"]
    project = project_payload(label_config=IMAGE_CONFIG)
    for event in (_event("Bag", T1, action="ANNOTATION_CREATED"), _event("", T3, cancelled=True)):
        assert client.post("/webhook", json={**event, "project": project}).status_code == 200
    backend.trainer.run_once()
    assert backend.store.project(KEY).load_annotations()["annotations"] == {}
    # the t=2 update reaches the queue after the cancel was applied and saved (another worker wrote it late)
    assert client.post("/webhook", json={**_event("Coat", T2), "project": project}).status_code == 200
    backend.trainer.run_once()
    assert backend.store.project(KEY).load_annotations()["annotations"] == {}
    assert client.post("/webhook", json={**_event("Dress", T4), "project": project}).status_code == 200
    backend.trainer.run_once()
    assert _label(backend.store.project(KEY).load_annotations()) == "Dress"


# 2. a model build never writes back params older than what /setup stored meanwhile -------------------------------
def test_a_predict_building_the_model_while_setup_stores_new_params_leaves_the_new_ones(tmp_path):
    setup_worker, predict_worker = _app(tmp_path), _app(tmp_path)  # two gunicorn workers, one MODEL_DIR
    setup_client = setup_worker.test_client()
    answer = setup_client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG,
                                               "extra_params": {"threshold": 0.1}})
    assert answer.json == {"model_version": "gated-0.1"}
    GatedModel.inside.clear(), GatedModel.gate.clear()
    GatedModel.gate_params = {"threshold": 0.1}
    answers = {}

    def predict():  # the other worker's first /predict of the project: a cache miss, the model built from 0.1
        answers["first"] = predict_worker.test_client().post(
            "/predict", json={"tasks": [TASK], "project": KEY, "label_config": IMAGE_CONFIG}).json

    thread = threading.Thread(target=predict, daemon=True)
    try:
        thread.start()
        assert GatedModel.inside.wait(10)
        answer = setup_client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG,
                                                   "extra_params": {"threshold": 0.9}})
        assert answer.json == {"model_version": "gated-0.9"}
    finally:
        GatedModel.gate_params = None
        GatedModel.gate.set()
        thread.join(10)
    assert not thread.is_alive() and answers["first"]["results"][0]["model_version"] == "gated-0.1"
    assert setup_worker.extensions["labelhub"].store.project(KEY).project()["extra_params"] == {"threshold": 0.9}
    again = predict_worker.test_client().post("/predict", json={"tasks": [TASK], "project": KEY,
                                                                "label_config": IMAGE_CONFIG}).json
    assert again["results"][0]["model_version"] == "gated-0.9"


def test_only_a_caller_giving_extra_params_stores_them(tmp_path):
    app = _app(tmp_path)
    backend = app.extensions["labelhub"]
    state = backend.store.project(KEY)
    registry = ModelRegistry(backend, GatedModel)
    assert registry.get(KEY, IMAGE_CONFIG, extra_params={"threshold": 0.2}).extra_params == {"threshold": 0.2}
    assert state.project()["extra_params"] == {"threshold": 0.2} and state.project()["label_config"] == IMAGE_CONFIG
    state.update_project(extra_params={"threshold": 0.7})  # /setup in another worker
    model = registry.get(KEY)  # the label config stored, the params read
    assert model.extra_params == {"threshold": 0.7} and model.model_version == "gated-0.7"
    assert state.project()["extra_params"] == {"threshold": 0.7}
    assert registry.get(KEY, IMAGE_CONFIG, extra_params={}).extra_params == {}  # empty params are params too
    assert state.project()["extra_params"] == {}


# any order of one annotation's events ends as its newest says ------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 59), st.sampled_from(["Bag", "Coat", None])), min_size=1, max_size=8,
                unique_by=lambda e: e[0]),
       st.randoms(use_true_random=False))
def test_any_order_of_an_annotations_updates_and_cancels_ends_as_the_newest_says(events, rng):
    """Two gunicorn workers write one annotation's webhooks in any order: whatever order they are applied in (each
    maybe twice: a crash between apply and delete), the training data ends as the newest event says: its label, or
    out of training when the newest is a cancel (``None`` here)."""
    bodies = [_event(label or "", f"2024-06-10T09:00:{second:02d}Z", cancelled=label is None)
              for second, label in events]
    order = bodies + rng.sample(bodies, k=len(bodies) // 2)  # some applied again
    rng.shuffle(order)
    data = _data()
    for body in order:
        _apply(data, body)
    newest = max(events)[1]
    assert _label(data) == newest, (events, [b["annotation"]["updated_at"] for b in order])
