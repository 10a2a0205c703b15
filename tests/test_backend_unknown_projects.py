"""Events of a project that does not exist in Label Studio are refused (404) and nothing of them is stored, while a
real project whose ``/setup`` the backend has not seen keeps its events. A real Label Studio 1.23.2; the backend
in-process (``create_app``), as in ``tests/test_backend_start_training.py``."""
from __future__ import annotations

import logging

from tests.backend_fixtures import PLOT_REVIEW_CONFIG, annotation_event


def _project(project_id: int) -> dict:
    return {"id": project_id, "created_at": "2024-06-10T08:00:00Z", "label_config": PLOT_REVIEW_CONFIG}


def test_events_of_a_project_label_studio_does_not_have_are_refused_and_not_stored(label_studio, make_project,
                                                                                   tmp_path, caplog):
    from labelhub.backend.app import create_app

    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False,
                      "label_studio_url": label_studio.url, "label_studio_api_key": label_studio.api_key})
    http = app.test_client()
    task = {"id": 1, "data": {"text": "a plot"}}
    with caplog.at_level(logging.WARNING, logger="labelhub.backend.routes"):
        for ann_id in (1, 2):
            answer = http.post("/webhook", json=annotation_event(ann_id, task, "plot", project=_project(987654)))
            assert answer.status_code == 404, answer.get_json()
            assert answer.get_json()["code"] == "unknown_project"
            assert "project 987654 does not exist in Label Studio" in answer.get_json()["error"]
        train = {"project": "987654.1718006400", "label_config": PLOT_REVIEW_CONFIG,
                 "annotations": [{"id": 1, "data": task["data"], "annotations": []}]}
        assert http.post("/train", json=train).status_code == 404
    assert [r.getMessage() for r in caplog.records].count(
        "events of project 987654.1718006400 refused: Label Studio has no project 987654 (it answered 404); nothing "
        "of them is stored") == 1
    assert not list((tmp_path / "projects").iterdir())
    assert not list((tmp_path / "events" / "pending").iterdir())

    # a real project the backend never saw a /setup of keeps its events
    real = make_project("no setup yet", PLOT_REVIEW_CONFIG)
    answer = http.post("/webhook", json=annotation_event(1, task, "plot", project=_project(real.id)))
    assert answer.status_code == 200 and answer.get_json()["status"] == "queued"
    assert len(list((tmp_path / "events" / "pending").iterdir())) == 1


def test_without_an_api_key_events_of_unknown_projects_are_kept(tmp_path):
    """Without ``LABEL_STUDIO_API_KEY`` the backend cannot ask: the event is kept (as before)."""
    from labelhub.backend.app import create_app

    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    answer = app.test_client().post("/webhook", json=annotation_event(1, {"id": 1, "data": {"text": "x"}}, "plot",
                                                                      project=_project(987654)))
    assert answer.status_code == 200
