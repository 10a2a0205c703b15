""""Start training" against a real Label Studio 1.23.2: the project's stored annotations become exactly Label
Studio's (added, updated and removed), on one host (files) and on Redis, and a task whose ``total_annotations``
counter is stale is read all the same.

The backend is made in-process (``create_app``) and its trainer run by hand (``run_once``), as in
``tests/test_backend_labelstudio.py``; Label Studio is the session's real one.
"""
from __future__ import annotations

import sqlite3

import pytest

from tests.backend_fixtures import PLOT_REVIEW_CONFIG, RedisServer, plot_review_tasks


def _result(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def _annotated_project(label_studio, make_project, title: str, n: int, annotated: int):
    """A project with ``n`` tasks, the first ``annotated`` annotated: ``(project, task ids, annotation ids)``."""
    client = label_studio.client()
    project = make_project(title, PLOT_REVIEW_CONFIG)
    tasks, labels = plot_review_tasks(n)
    client.projects.import_tasks(project.id, request=[task["data"] for task in tasks])
    ids = sorted(t.id for t in client.tasks.list(project=project.id))
    anns = [client.annotations.create(task_id, result=_result(label)).id
            for task_id, label in zip(ids[:annotated], labels[:annotated])]
    return project, ids, anns


def _start_training(app, project) -> tuple[dict, str]:
    """Send ``START_TRAINING`` and run the trainer: ``(stored training data, model_version)``."""
    body = {"action": "START_TRAINING", "project": {"id": project.id, "created_at": project.created_at.isoformat(),
                                                    "label_config": PLOT_REVIEW_CONFIG}}
    assert app.test_client().post("/webhook", json=body).status_code == 200
    backend = app.extensions["labelhub"]
    backend.trainer.run_once()
    state = backend.store.project(backend.store.resolve_webhook_project(body["project"]))
    return state.load_annotations(), state.kv().get("model_version", "")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield f"{server.url}/0"


@pytest.mark.parametrize("mode", ["files", "redis"])
def test_start_training_removes_annotations_deleted_while_the_backend_was_down(label_studio, make_project, tmp_path,
                                                                              mode, request):
    from labelhub.backend.app import create_app

    client = label_studio.client()
    project, ids, anns = _annotated_project(label_studio, make_project, f"deleted while down ({mode})", 12, 10)
    config = {"model_dir": tmp_path, "start_trainer": False, "warmup": False,
              "label_studio_url": label_studio.url, "label_studio_api_key": label_studio.api_key}
    if mode == "redis":
        config["redis_url"] = request.getfixturevalue("redis_url")
    app = create_app(config)
    data, first = _start_training(app, project)
    assert sorted(data["annotations"]) == sorted(str(a) for a in anns)
    assert first.startswith("labelhub-10-")

    # the backend is down: two annotations deleted, one updated, one added; no webhook reaches it
    for aid in anns[:2]:
        client.annotations.delete(aid)
    client.annotations.update(anns[2], result=_result("review"))
    added = client.annotations.create(ids[10], result=_result("plot")).id
    # an annotation another project holds: missing from this project's listing, yet Label Studio still has it, so
    # it stays (as one created while the listing ran would)
    other, other_ids, other_anns = _annotated_project(label_studio, make_project, f"other ({mode})", 2, 1)
    backend = app.extensions["labelhub"]
    key = backend.store.resolve_webhook_project({"id": project.id, "created_at": project.created_at.isoformat()})
    state = backend.store.project(key)
    stored = state.load_annotations()
    stored["annotations"][str(other_anns[0])] = {"task": "999999", "result": _result("plot"),
                                                 "updated_at": None, "ground_truth": False}
    state.save_annotations(stored)

    data, version = _start_training(app, project)
    expected = {str(a) for a in anns[2:]} | {str(added), str(other_anns[0])}
    assert set(data["annotations"]) == expected
    assert data["annotations"][str(anns[2])]["result"][0]["value"]["choices"] == ["review"]
    assert data["annotations"][str(other_anns[0])]["task"] == str(other_ids[0])  # read by id, brought up to date
    assert {str(a) for a in anns[:2]} <= set(data["tombstones"])
    assert str(ids[0]) not in data["tasks"] and str(ids[1]) not in data["tasks"]
    assert version != first and version.startswith("labelhub-9-"), version
    # another Start training with nothing changed in Label Studio changes nothing
    again, same = _start_training(app, project)
    assert set(again["annotations"]) == expected and same == version


def test_start_training_reads_a_task_whose_annotation_counter_is_stale(label_studio, make_project, tmp_path):
    """Two saves of one task at once can leave Label Studio's ``total_annotations`` at 0 beside a live annotation
    (its ``post_save`` counts in each save): the listing must not rely on it."""
    from labelhub.backend.app import create_app

    project, ids, anns = _annotated_project(label_studio, make_project, "stale counter", 6, 4)
    with sqlite3.connect(label_studio.data_dir / "label_studio.sqlite3", timeout=30) as db:
        db.execute("UPDATE task SET total_annotations = 0, is_labeled = 0 WHERE id IN (?, ?)", (ids[0], ids[1]))
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False,
                      "label_studio_url": label_studio.url, "label_studio_api_key": label_studio.api_key})
    data, version = _start_training(app, project)
    assert sorted(data["annotations"]) == sorted(str(a) for a in anns)
    assert version.startswith("labelhub-4-")


def test_legacy_train_removes_what_its_body_no_longer_lists():
    """The legacy ``/train`` body is every annotated task (``MLApi.train``): an annotation it lacks is removed when
    its id is at or below the highest listed (Label Studio numbers annotations in order), kept above it (created
    after the body was built, its webhook applied first)."""
    from labelhub.backend.events import apply_event

    def task(tid, *aids):
        return {"id": tid, "data": {"text": "t"}, "annotations": [{"id": a, "result": _result("plot"),
                                                                     "updated_at": "2024-06-10T09:00:00Z"}
                                                                    for a in aids]}

    data = {"annotations": {}, "tombstones": {}, "tasks": {}}
    assert apply_event(data, "TRAIN", {"annotations": [task(1, 1, 2), task(2, 3), task(3, 4)]})
    apply_event(data, "ANNOTATION_CREATED", {"annotation": {"id": 9, "task": 4, "result": _result("plot")},
                                             "task": {"id": 4, "data": {"text": "u"}}})
    assert apply_event(data, "TRAIN", {"annotations": [task(1, 1), task(3, 4)]})
    assert sorted(data["annotations"]) == ["1", "4", "9"]
    assert {"2", "3"} <= set(data["tombstones"]) and "2" not in data["tasks"]
    assert not apply_event(data, "TRAIN", {"annotations": [task(1, 1), task(3, 4)]})


def test_start_training_reads_what_fields_all_gives_of_every_field_training_keeps(label_studio, make_project, tmp_path,
                                                                                  monkeypatch):
    """Start training's second reading names its fields (``TRAINING_TASK_FIELDS``) instead of ``fields=all``, which
    also serialized every task's predictions: the training data it builds must be the same."""
    from labelhub.backend import labelstudio_api
    from labelhub.backend.app import create_app

    client = label_studio.client()
    project, ids, anns = _annotated_project(label_studio, make_project, "training fields", 6, 3)
    for task_id in ids:
        for version in ("v1", "v2"):
            client.predictions.create(task=task_id, result=_result("plot"), score=0.5, model_version=version)
    client.annotations.create(ids[3], result=_result("review"), ground_truth=True, lead_time=2.5)
    client.annotations.create(ids[4], result=[], was_cancelled=True)

    def trained(model_dir):  # a backend that has seen no webhook: what Start training read is all it holds
        app = create_app({"model_dir": model_dir, "start_trainer": False, "warmup": False,
                          "label_studio_url": label_studio.url, "label_studio_api_key": label_studio.api_key})
        return _start_training(app, project)[0]

    named = trained(tmp_path / "named")
    listed = labelstudio_api.LabelStudioClient(label_studio.url, label_studio.api_key).annotated_tasks(project.id)
    monkeypatch.setattr(labelstudio_api, "TRAINING_TASK_INCLUDE", None)  # the reading as it was: fields=all alone
    assert trained(tmp_path / "everything") == named
    assert len(named["annotations"]) == 4  # the cancelled one does not train
    assert [a["ground_truth"] for _, a in sorted(named["annotations"].items(), key=lambda kv: int(kv[0]))] == \
        [False, False, False, True]
    assert [t["id"] for t in listed] == ids[:5] and not any("predictions" in t for t in listed)
