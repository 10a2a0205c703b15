"""A MODEL_DIR written by an older LabelHub, served after the upgrade: the trainer refits it as it starts.

The layouts below are those LabelHub wrote at commit 3034381, when the default model was ``ChoicesModel``
(``git show 3034381:backend/models/choices.py``, ``fit_batch``; ``backend/state.py``): ``kv.json`` names one
``head_file`` and a ``choices-v<N>-<digest>`` ``model_version`` and has no ``heads``; ``annotations.json`` holds
the webhooks' annotations and their tasks' data; ``project.json`` the key and label config. They were copied
from a MODEL_DIR that commit's backend wrote after 12 annotations (only the tasks' data URIs are made here).
"""
from __future__ import annotations

import json
import logging

from labelhub.backend.app import create_app
from tests.backend_fixtures import IMAGE_CONFIG, TEXT_CONFIG, image_tasks, project_key, text_tasks

KEY = project_key()

#: kv.json as the old ChoicesModel wrote it after its first fit.
OLD_KV = {"embedder": "pixels@32", "head_file": "head-1.joblib", "media_failed": 0,
          "model_version": "choices-v1-1486c8",
          "train_digest": "1486c8aa0b6716b9b39abe2fd132e21c771bc6d724a6c44110974f6b49607426",
          "trained_at": 1796445777.3632638, "trained_on": 12, "version_number": 1, "versions": ["choices-v1-1486c8"]}


def old_annotations(tasks: list[dict], labels: list[str], from_name: str = "label", to_name: str = "image") -> dict:
    """annotations.json as the old backend wrote it: annotations by id, task ids as strings, each task's data."""
    return {
        "annotations": {str(100 + i): {"ground_truth": False, "task": str(task["id"]),
                                       "updated_at": "2024-06-10T09:00:00Z",
                                       "result": [{"from_name": from_name, "id": f"r{100 + i}", "to_name": to_name,
                                                   "type": "choices", "value": {"choices": [label]}}]}
                        for i, (task, label) in enumerate(zip(tasks, labels))},
        "tasks": {str(task["id"]): {"data": task["data"]} for task in tasks},
        "tombstones": {},
    }


def write_old_project(model_dir, label_config: str, annotations: dict, kv: dict = OLD_KV) -> None:
    """Write project ``KEY``'s state in the old layout (the same JSON the old ``atomic_write_json`` wrote)."""
    root = model_dir / "projects" / KEY
    (root / "files").mkdir(parents=True)
    for name, obj in (("project.json", {"key": KEY, "label_config": label_config}), ("kv.json", kv),
                      ("annotations.json", annotations)):
        (root / name).write_text(json.dumps(obj, separators=(",", ":"), sort_keys=True))
    (root / "files" / kv.get("head_file", "head-1.joblib")).write_bytes(b"the old ChoicesModel's joblib head")


def test_the_trainer_refits_on_start_a_project_an_older_default_model_fitted(tmp_path, caplog):
    tasks, labels = image_tasks(16)
    assert len(set(labels[:12])) >= 2
    write_old_project(tmp_path, IMAGE_CONFIG, old_annotations(tasks[:12], labels[:12]))
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    client = app.test_client()
    backend = app.extensions["labelhub"]

    def predict():
        return client.post("/predict", json={"tasks": tasks[12:], "project": KEY, "label_config": IMAGE_CONFIG}
                           ).json["results"]

    # before the trainer starts: nothing the new model can use, the old version
    assert predict() == [{"result": [], "score": 0.0, "model_version": "choices-v1-1486c8"}] * 4

    caplog.set_level(logging.INFO, logger="labelhub.backend.events")
    backend.trainer.refit_changed()  # what the trainer does as it starts, before any event

    kv = backend.store.project(KEY).kv()
    assert kv["model_version"].startswith("labelhub-12-") and kv["heads"]["label"]["file"]
    assert client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).json["model_version"] == \
        kv["model_version"]
    predicted = predict()
    assert {p["model_version"] for p in predicted} == {kv["model_version"]}
    for pred in predicted:
        (region,) = pred["result"]
        assert region["from_name"] == "label" and region["value"]["choices"][0] in set(labels[:12])
        assert 0 < pred["score"] <= 1
    said = [r.getMessage() for r in caplog.records if "older LabelHub" in r.getMessage()]
    assert len(said) == 1 and KEY in said[0] and "choices-v1-1486c8" in said[0]

    caplog.clear()
    backend.trainer.refit_changed()  # the next start: the project is the default model's own now
    assert backend.store.project(KEY).kv()["model_version"] == kv["model_version"]
    assert not [r for r in caplog.records if "older LabelHub" in r.getMessage()]


def test_a_custom_model_keeps_its_state_without_heads_when_the_trainer_starts(tmp_path):
    tasks, labels = text_tasks(6)
    kv = {"model_version": "keywords-0.0.1", "keywords": {"fresh": ["great"], "rotten": ["dull"]}}
    write_old_project(tmp_path, TEXT_CONFIG, old_annotations(tasks, labels, to_name="text"), kv=kv)
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False,
                      "model_class": "tests.ls_ml_style_model:KeywordChoices"})
    backend = app.extensions["labelhub"]
    built, get = [], backend.models.get
    backend.models.get = lambda key, *a, **kw: (built.append(key), get(key, *a, **kw))[1]
    before = (tmp_path / "projects" / KEY / "kv.json").read_bytes()
    backend.trainer.refit_changed()
    assert built == [] and (tmp_path / "projects" / KEY / "kv.json").read_bytes() == before


def test_a_project_whose_state_cannot_be_read_does_not_stop_the_others_refit(tmp_path, caplog):
    tasks, labels = image_tasks(12)
    write_old_project(tmp_path, IMAGE_CONFIG, old_annotations(tasks, labels))
    broken = tmp_path / "projects" / "1.1000"  # sorts before KEY's project
    broken.mkdir(parents=True)
    (broken / "project.json").write_text(json.dumps({"key": "1.1000", "label_config": IMAGE_CONFIG}))
    (broken / "kv.json").write_text(json.dumps({"heads": {"label": {"file": "x"}}, "model_version": "v"}))
    (broken / "annotations.json").write_text("{cut short by a full disk")
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    backend = app.extensions["labelhub"]
    assert backend.store.known_projects()[0] == "1.1000"
    caplog.set_level(logging.INFO, logger="labelhub.backend.events")
    backend.trainer.refit_changed()
    assert backend.store.project(KEY).kv()["model_version"].startswith("labelhub-12-")
    assert any("1.1000" in r.getMessage() and "not refit" in r.getMessage() for r in caplog.records)
