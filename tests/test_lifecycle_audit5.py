"""The backend's lifecycle audit (its scripts under ``/tmp/audit-lifecycle/``): a trainer that spun while one project's
state could not be read or saved, a bad ``PROMETHEUS_MULTIPROC_DIR`` that ended ``labelhub backend`` with a traceback,
a fit file that failed to load and was served as an empty prediction of the new version, an empty ``MODEL_DIR=`` that
meant the current folder, and a ``docker stop`` that killed the graceful stop.

Each test runs in-process (``create_app``, the trainer's own thread, click's runner): none is about gunicorn itself.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from labelhub.backend.app import create_app
from tests.backend_fixtures import IMAGE_CONFIG, annotation_event, image_tasks, project_key, project_payload
from tests.in_process import invoke_labelhub
from tests.labelstudio import free_port

ROOT = Path(__file__).resolve().parent.parent
KEY, OTHER = project_key(), project_key(pid=2)
PROJECT, OTHER_PROJECT = project_payload(label_config=IMAGE_CONFIG), project_payload(pid=2, label_config=IMAGE_CONFIG)


def _app(model_dir: Path, **overrides):
    return create_app({"model_dir": model_dir, "start_trainer": False, "warmup": False, "image_embedder": "pixels",
                       **overrides})


def _post(client, ann_id: int, task: dict, label: str, project: dict = PROJECT) -> None:
    assert client.post("/webhook", json=annotation_event(ann_id, task, label, project=project)).status_code == 200


def _damaged_project(tmp_path: Path):
    """An app whose project 1 holds a cut ``annotations.json`` and one queued event: ``(app, backend, path)``."""
    app = _app(tmp_path)
    backend = app.extensions["labelhub"]
    path = tmp_path / "projects" / KEY / "annotations.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"annotations": {"1": {"task": "1", "res')  # what a copy cut short leaves
    tasks, labels = image_tasks(4)
    _post(app.test_client(), 7001, tasks[0], labels[0])
    return app, backend, path


# 1. the trainer and a project whose state cannot be read or saved ------------------------------------------------


def test_the_trainer_waits_longer_and_longer_while_no_event_can_be_applied_and_says_the_cause_once(tmp_path, caplog):
    """The audit: run_once returned the events taken, so the trainer tried again at once: 27,000 log lines (with
    tracebacks) a second and half a core. Now it waits (the poll interval, then twice as long each time): over 2 s,
    a handful of tries, one ERROR line with the traceback."""
    _, backend, _ = _damaged_project(tmp_path)
    trainer, tries = backend.trainer, []
    train = trainer._train_project

    def counted(key, events):
        tries.append(time.monotonic())
        return train(key, events)

    trainer._train_project = counted
    with caplog.at_level(logging.DEBUG, logger="labelhub.backend.events"):
        trainer.start()
        time.sleep(2.0)
        trainer.stop()
    assert 2 <= len(tries) <= 6, len(tries)  # 0.25 + 0.5 + 1 s of waits: 4 tries
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    assert all(later > earlier for earlier, later in zip(gaps, gaps[1:])), gaps  # growing
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and KEY in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info, [r.getMessage() for r in errors]
    assert backend.queue.count() == 1  # kept


def test_a_damaged_annotations_file_is_named_with_what_to_do_and_start_training_mends_it_once_moved_aside(tmp_path,
                                                                                                         caplog):
    """The message names the file and says to move it aside and press Start training; meanwhile another project
    trains; once the file is moved aside, the queued events (the Start training pressed meanwhile too) apply."""
    app, backend, path = _damaged_project(tmp_path)
    client = app.test_client()
    tasks, labels = image_tasks(4)
    for i in range(3):
        _post(client, 8001 + i, tasks[i], labels[i], project=OTHER_PROJECT)
    with caplog.at_level(logging.INFO, logger="labelhub.backend.events"):
        batch = backend.trainer.run_batch()
        assert batch.taken == 4 and batch.progressed  # the other project's events applied
        assert len(backend.store.project(OTHER).load_annotations()["annotations"]) == 3
        assert client.post("/webhook", json={"action": "START_TRAINING", "project": PROJECT}).status_code == 200
        assert backend.trainer.run_batch() == (2, False)  # nothing applied: the trainer waits longer (see above)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, errors  # the same cause again: DEBUG
        assert str(path) in errors[0] and "move it aside" in errors[0] and "press Start training" in errors[0]
        path.rename(path.with_name("annotations.json.damaged"))
        assert backend.trainer.run_batch() == (2, True)
    assert backend.queue.count() == 0
    assert list(backend.store.project(KEY).load_annotations()["annotations"]) == ["7001"]
    assert any(r.getMessage() == f"project {KEY}: its events apply again" for r in caplog.records)


def test_a_stuck_projects_events_at_the_head_of_the_queue_cannot_keep_the_others_out(tmp_path):
    """take() reads the oldest events: once more than its limit of one stuck project's events piled up ahead, the
    others were never taken. The next batch now takes as many more as the last one kept."""
    app, backend, _ = _damaged_project(tmp_path)
    client = app.test_client()
    tasks, labels = image_tasks(4)
    for i in range(1, 3):
        _post(client, 7001 + i, tasks[i], labels[i])  # project 1: 3 events, stuck
    _post(client, 8001, tasks[3], labels[3], project=OTHER_PROJECT)
    backend.trainer.run_once(limit=3)  # only project 1's
    backend.trainer.run_once(limit=3)
    assert list(backend.store.project(OTHER).load_annotations()["annotations"]) == ["8001"]
    assert backend.queue.count() == 3


# 2. PROMETHEUS_MULTIPROC_DIR ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["a file", "under a file", "stale files it cannot remove"])
def test_a_metrics_folder_that_cannot_be_used_ends_the_backend_with_one_line_naming_it(tmp_path, monkeypatch, case):
    """Before: a traceback from os.makedirs, os.listdir or os.unlink after the settings were checked."""
    afile = tmp_path / "afile"
    afile.write_text("")
    folder = {"a file": afile, "under a file": afile / "prom"}.get(case, tmp_path / "prom")
    if case == "stale files it cannot remove":  # a read-only folder (the tests run as root: its unlink is refused)
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"")
        unlink = os.unlink

        def refused(path, *args, **kwargs):
            if str(path).startswith(str(folder)):
                raise PermissionError(13, "Permission denied", str(path))
            return unlink(path, *args, **kwargs)

        monkeypatch.setattr(os, "unlink", refused)
    answer = invoke_labelhub("backend", "--port", str(free_port()),
                             env={"MODEL_DIR": str(tmp_path / "md"), "PROMETHEUS_MULTIPROC_DIR": str(folder),
                                  "LABELHUB_LOG_LEVEL": "INFO"})
    reason = {"a file": "File exists", "under a file": "Not a directory"}.get(case, "Permission denied")
    assert answer.returncode == 1
    assert answer.stderr == (f"Error: PROMETHEUS_MULTIPROC_DIR={str(folder)!r}: cannot use it for the metrics "
                             f"({reason}): name a folder the backend can create and write, or unset it for a "
                             "temporary one\n")


# 3. a fit file that does not load -----------------------------------------------------------------------------------


def test_a_fit_that_does_not_load_fails_its_tasks_and_is_read_again_after_a_while(tmp_path, monkeypatch):
    """Before: the version was served without that head ("result": [] under the new model_version, which Label
    Studio stores and ``labelhub predict --missing`` then skips), and the load was never tried again. Now each task
    gets an error naming the file; the file is read again after FIT_RETRY_SECONDS, not at every request."""
    from labelhub.backend.models import project as project_module

    trainer = _app(tmp_path)
    client = trainer.test_client()
    tasks, labels = image_tasks(12)
    for i in range(10):
        _post(client, 9001 + i, tasks[i], labels[i])
    trainer.extensions["labelhub"].trainer.run_once()
    state = trainer.extensions["labelhub"].store.project(KEY)
    head = tmp_path / "projects" / KEY / "files" / "heads" / state.kv()["heads"]["label"]["file"]
    good = head.read_bytes()
    head.write_bytes(good[: len(good) // 2])  # damaged (or, for a lagging worker, deleted by later fits)

    worker = _app(tmp_path)  # another worker, loading the fit for the first time
    reads = []
    read_file = worker.extensions["labelhub"].store.project(KEY).read_file

    def counted(name):
        reads.append(name)
        return read_file(name)

    monkeypatch.setattr(worker.extensions["labelhub"].store.project(KEY), "read_file", counted)
    body = {"project": KEY, "label_config": IMAGE_CONFIG, "tasks": tasks[10:]}
    for _ in range(3):
        answer = worker.test_client().post("/predict", json=body)
        assert answer.status_code == 200
        for prediction in answer.json["results"]:
            assert prediction.get("result", []) == [] and f"files/heads/{head.name}" in prediction["error"], prediction
    assert len([r for r in reads if r.startswith("heads/")]) == 1  # not read again within FIT_RETRY_SECONDS
    head.write_bytes(good)
    monkeypatch.setattr(project_module, "FIT_RETRY_SECONDS", 0.0)
    answer = worker.test_client().post("/predict", json=body).json["results"]
    assert all(p["result"] and "error" not in p for p in answer), answer
    assert {p["model_version"] for p in answer} == {state.kv()["model_version"]}


# 4. MODEL_DIR= ------------------------------------------------------------------------------------------------------


def test_an_empty_model_dir_is_the_default_not_the_current_folder():
    from labelhub.backend.settings import Settings

    assert Settings.from_env({"MODEL_DIR": ""}).model_dir == Path("labelhub-models")
    assert Settings.from_env({"MODEL_DIR": "/data/models"}).model_dir == Path("/data/models")


# 5. docker stop ------------------------------------------------------------------------------------------------------


def test_docker_stop_waits_for_the_backends_graceful_stop():
    """gunicorn gives its workers 30 s (graceful_timeout) and each trainer 10 s; Docker's SIGKILL came after 10 s."""
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("backend", "worker"):
        grace = services[name].get("stop_grace_period", "10s")
        assert grace.endswith("s") and int(grace[:-1]) >= 40, (name, grace)


def test_the_trainers_wait_doubles_up_to_a_few_seconds_and_starts_over_after_progress():
    from labelhub.backend.events import _Backoff

    backoff = _Backoff(0.25)
    assert [backoff.next() for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 0.25
