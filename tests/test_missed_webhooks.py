"""Webhooks the event queue could not store (backend/missed_events.py): answered 500, noted on the host, and caught
up once the queue works again, by reading the project's annotations from Label Studio as Start training does.

Real Label Studio 1.23.2, the backend made in-process (``create_app``, its trainer run by hand as in
``tests/test_backend_start_training.py``); the queue fails for real: on one host its ``events/pending`` folder is
replaced by a file, on Redis the ``redis-server`` is stopped and started again on the same port.
"""
from __future__ import annotations

import logging
import shutil

import pytest

from tests.backend_fixtures import PLOT_REVIEW_CONFIG, RedisServer
from tests.test_backend_start_training import _annotated_project, _result


def _webhook(app, project, annotation_id: int, task_id: int):
    body = {"action": "ANNOTATION_CREATED", "annotation": {"id": annotation_id, "result": _result("plot"),
                                                           "updated_at": "2026-12-06T10:00:00Z", "task": task_id},
            "task": {"id": task_id, "data": {"text": "t"}},
            "project": {"id": project.id, "created_at": project.created_at.isoformat(),
                        "label_config": PLOT_REVIEW_CONFIG}}
    return app.test_client().post("/webhook", json=body)


class _Redis(RedisServer):
    """A redis-server that can be stopped and started again on the same port (no persistence: started empty)."""

    def restart(self):
        self.__exit__()
        return self.__enter__()


@pytest.mark.parametrize("mode", ["files", "redis"])
def test_a_webhook_the_queue_cannot_store_is_caught_up_from_label_studio_once_it_can(label_studio, make_project,
                                                                                    tmp_path, mode, caplog):
    from labelhub.backend.app import create_app

    caplog.set_level(logging.INFO, logger="labelhub.backend.missed_events")
    client = label_studio.client()
    project, ids, anns = _annotated_project(label_studio, make_project, f"missed webhooks ({mode})", 6, 2)
    config = {"model_dir": tmp_path / "models", "start_trainer": False, "warmup": False,
              "label_studio_url": label_studio.url, "label_studio_api_key": label_studio.api_key}
    redis = None
    if mode == "redis":
        redis = _Redis(tmp_path / "redis").__enter__()
        config["redis_url"] = f"{redis.url}/0"
    try:
        app = create_app(config)
        backend = app.extensions["labelhub"]
        for aid, tid in zip(anns, ids):
            assert _webhook(app, project, aid, tid).status_code == 200
        backend.trainer.run_once()

        # the queue cannot store: two annotations saved in Label Studio meanwhile get a 500 each
        missed = [client.annotations.create(tid, result=_result("review")).id for tid in ids[2:4]]
        pending = tmp_path / "models" / "events" / "pending"
        if mode == "files":
            shutil.rmtree(pending)
            pending.write_text("not a folder")
        else:
            redis.__exit__()
        for aid, tid in zip(missed, ids[2:4]):
            assert _webhook(app, project, aid, tid).status_code == 500
        notes = list((tmp_path / "models" / "events" / "missed").glob("*.json"))
        assert len(notes) == 1, notes
        said = [r.getMessage() for r in caplog.records if "event queue cannot store it" in r.getMessage()]
        assert len(said) == 2 and "once the queue takes events" in said[0], said

        # the queue works again: the trainer's next turn queues one Start training, which reads Label Studio
        if mode == "files":
            pending.unlink()
            pending.mkdir()
        else:
            redis.restart()  # started empty: the earlier annotations come back from Label Studio too
        backend.trainer._catch_up_missed()
        assert not list((tmp_path / "models" / "events" / "missed").iterdir())
        backend.trainer.run_once()
        key = backend.store.resolve_webhook_project({"id": project.id, "created_at": project.created_at.isoformat()})
        stored = backend.store.project(key).load_annotations()["annotations"]
        assert set(stored) == {str(a) for a in anns + missed}
        assert any("2 webhook(s) refused since" in r.getMessage() for r in caplog.records)
    finally:
        if redis is not None:
            redis.__exit__()


def test_annotations_saved_while_no_backend_ran_are_read_when_the_trainer_starts(label_studio, make_project, tmp_path,
                                                                                 caplog):
    from labelhub.backend.app import create_app

    caplog.set_level(logging.INFO, logger="labelhub.backend.events")
    client = label_studio.client()
    project, ids, anns = _annotated_project(label_studio, make_project, "saved while down", 6, 2)
    config = {"model_dir": tmp_path / "models", "start_trainer": False, "warmup": False,
              "label_studio_url": label_studio.url, "label_studio_api_key": label_studio.api_key}
    app = create_app(config)
    backend = app.extensions["labelhub"]
    for aid, tid in zip(anns, ids):
        assert _webhook(app, project, aid, tid).status_code == 200
    backend.trainer.run_once()
    assert backend.trainer.catch_up_missed_while_down() == []  # the same count: no call but the project's

    # no backend runs: two annotations saved and one deleted, their webhooks lost
    made = [client.annotations.create(tid, result=_result("review")).id for tid in ids[2:4]]
    client.annotations.delete(anns[0])
    started = create_app(config).extensions["labelhub"]  # the next start
    key = started.store.resolve_webhook_project({"id": project.id, "created_at": project.created_at.isoformat()})
    assert started.trainer.catch_up_missed_while_down() == [key]
    assert any("Label Studio holds 3 annotations, the backend 2" in r.getMessage() for r in caplog.records)
    started.trainer.run_once()
    assert set(started.store.project(key).load_annotations()["annotations"]) == {str(a) for a in [anns[1], *made]}
    assert started.trainer.catch_up_missed_while_down() == []
    client.annotations.delete(made[0])  # only deleted: Label Studio holds fewer, left to Start training
    assert started.trainer.catch_up_missed_while_down() == []
    without = create_app({**config, "label_studio_api_key": ""}).extensions["labelhub"]
    assert without.trainer.catch_up_missed_while_down() == []
