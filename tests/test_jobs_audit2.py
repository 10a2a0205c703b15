"""What a second audit of the prediction jobs found, against the real Label Studio 1.23.2, a real gunicorn backend
(:class:`~tests.backend_fixtures.BackendServer`) and a real Redis: "Retrieve predictions" during a job, automatic
jobs queued on Redis with no worker, the failure summary, Ctrl-C of a job on RQ workers, ``--all`` resumed, the log
lines and ``/health``.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter

import pytest
import requests

from labelhub.backend.jobs import run_here, run_job  # noqa
from labelhub.backend.labelstudio_api import LabelStudioClient
from tests.backend_fixtures import BackendServer, wait_for
from tests.test_predict_jobs import _api, _cli, _per_task, _predictions, _Project


def _key(label_studio) -> str:
    return label_studio.personal_token or label_studio.api_key


@pytest.fixture(scope="module")
def served(label_studio, tmp_path_factory):
    """A project of 40 text tasks trained on 10 (no annotation in Label Studio: every task is unlabeled), and a
    gunicorn backend on the same ``MODEL_DIR`` connected to it (Label Studio calls its ``/setup`` and ``/predict``)."""
    model_dir = tmp_path_factory.mktemp("audit2-models")
    project = _Project(label_studio, model_dir, n_tasks=40)
    project.version = project.train(0, 10)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": _key(label_studio)}
    with BackendServer(model_dir, workers=2, threads=4, env=env) as backend:
        for _ in range(4):  # each gunicorn worker loads the project's model once (longer than Label Studio's 3 s)
            requests.post(backend.url + "/setup", timeout=120, json={
                "project": project.key, "schema": project.payload["label_config"]}).raise_for_status()
        client = label_studio.client()
        ml = client.ml.create(project=project.id, url=backend.url, title="labelhub", is_interactive=True)
        assert client.ml.get(id=ml.id).model_version == project.version
        project.backend = backend
        yield project


def _held_executor(gate: threading.Event, entered: threading.Event, after_first=None):
    """An :data:`~labelhub.backend.jobs.Executor` that waits for ``gate`` before running the batches here
    (:func:`~labelhub.backend.jobs.run_here`), and calls ``after_first(result)`` once the first batch is written:
    a real job held in the middle, so that another writer can act meanwhile."""
    def execute(host, api, project, batches, progress):
        entered.set()
        assert gate.wait(120)
        for n, result in enumerate(run_here(host, api, project, batches, progress)):
            if n == 0 and after_first is not None:
                after_first(result)
            yield result

    return execute


def test_retrieve_predictions_during_a_job_leaves_each_task_one_prediction_of_the_version(label_studio, served):
    """Label Studio's "Retrieve predictions" during a job of the same version stored a second prediction of it on
    each task (the audit: 200 tasks, two each). Now ``/predict`` answers no ``result`` for the tasks the running job
    writes (Label Studio stores nothing), the editor's one-task ``/predict`` is answered as always, and a second
    prediction of the version another writer saves during the job is removed at its end (the oldest kept)."""
    project, version = served, served.version
    host = project.app.extensions["labelhub"]
    api = LabelStudioClient(label_studio.url, _key(label_studio))
    task_ids = sorted(_predictions(label_studio, project.id))
    gate, entered, outcome = threading.Event(), threading.Event(), {}

    def second_writer(result):  # another writer of the version saves a task the job has just written
        tid = result.written[0]
        outcome["duplicated"] = tid
        _api(label_studio, "POST", "/api/predictions/", json={
            "task": tid, "model_version": version, "score": 0.5,
            "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["fresh"]}}]})

    def job():
        outcome["status"] = run_job(host, api, project.id, batch_size=20, progress=False,
                                    execute=_held_executor(gate, entered, second_writer))

    thread = threading.Thread(target=job)
    thread.start()
    try:
        assert entered.wait(60)
        # the Data Manager's "Retrieve predictions" of every task, while the job (same version) runs
        label_studio.client().actions.create(id="retrieve_tasks_predictions", project=project.id,
                                             selected_items={"all": False, "included": task_ids})
        assert _per_task(label_studio, project.id, version) == Counter({0: 40})  # left to the job
        # the editor opening one task: answered as always
        one = requests.post(project.backend.url + "/predict", timeout=60, json={
            "project": project.key, "label_config": project.payload["label_config"],
            "tasks": [{"id": task_ids[0], "data": project.tasks[0]["data"], "is_labeled": False}]}).json()
        assert one["results"][0]["result"] and one["results"][0]["model_version"] == version
    finally:
        gate.set()
        thread.join(180)
    status = outcome["status"]
    assert status.state == "done" and status.done == 40 and status.skipped == 0, status
    assert _per_task(label_studio, project.id, version) == Counter({1: 40})  # the second one removed
    kept = [p for p in _predictions(label_studio, project.id)[outcome["duplicated"]] if p["model_version"] == version]
    assert kept[0]["score"] != 0.5  # the job's, the oldest
    assert "get no prediction from this request: the running prediction job" in project.backend.log_tail(200)



def test_a_job_started_while_a_retrieve_request_predicts_gets_its_tasks_and_the_request_none(label_studio, served):
    """A "Retrieve predictions" request that started before a job and ended after it left a second prediction of the
    version on the job's tasks: the job had removed the duplicates it found at its end, before Label Studio saved the
    request's answer. Now the request answers no ``result`` for the tasks of a job that started while it predicted
    (here a job of two tasks whose predictions were deleted, run to its end while the request's model is held)."""
    project, version = served, served.version
    host = project.app.extensions["labelhub"]
    api = LabelStudioClient(label_studio.url, _key(label_studio))
    by_task = _predictions(label_studio, project.id)
    two = sorted(by_task)[-2:]
    for tid in two:
        for prediction in by_task[tid]:
            _api(label_studio, "DELETE", f"/api/predictions/{prediction['id']}/")
    model = host.models.get(project.key, project.payload["label_config"])
    predict, entered, gate, answer = model.predict, threading.Event(), threading.Event(), {}

    def held(tasks, **kwargs):  # the request's model, held until the job has run
        entered.set()
        assert gate.wait(120)
        return predict(tasks, **kwargs)

    def retrieve():
        with project.app.test_client() as http:
            answer["body"] = http.post("/predict", json={
                "project": project.key, "label_config": project.payload["label_config"],
                "tasks": [{"id": tid, "data": project.tasks[0]["data"], "is_labeled": False} for tid in two]}).json

    model.predict = held
    thread = threading.Thread(target=retrieve)
    thread.start()
    try:
        assert entered.wait(60)
        model.predict = predict
        status = run_job(host, api, project.id, task_ids=two, progress=False)
        assert status.state == "done" and status.done == 2, status
    finally:
        gate.set()
        thread.join(120)
    assert [set(r) for r in answer["body"]["results"]] == [{"model_version"}] * 2, answer
    assert {tid: sum(p["model_version"] == version for p in preds)
            for tid, preds in _predictions(label_studio, project.id).items() if tid in two} == dict.fromkeys(two, 1)

@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A private ``redis-server`` (database 0 is this module's)."""
    from tests.backend_fixtures import RedisServer

    with RedisServer(tmp_path_factory.mktemp("audit2-redis")) as server:
        yield f"{server.url}/0"


def _redis_backend(tmp_path, redis_url, label_studio=None, **settings):
    from labelhub.backend.app import Backend
    from labelhub.backend.settings import Settings

    return Backend(Settings(model_dir=tmp_path, redis_url=redis_url, auto_predict=True, start_trainer=False,
                            warmup=False, label_studio_url=label_studio.url if label_studio else "http://127.0.0.1:9",
                            label_studio_api_key=_key(label_studio) if label_studio else "key", **settings))


def test_on_redis_an_automatic_job_no_worker_takes_shows_queued_and_is_warned_about(tmp_path, redis_url, caplog):
    """On Redis with no ``labelhub worker``, an automatic job waited in RQ unseen: ``/health`` showed ``"jobs": {}``,
    ``--status`` said there was no job, the log said nothing. Now its status says ``queued`` and the trainer warns
    (once a minute at most) that no worker takes it."""
    caplog.set_level(logging.INFO)
    backend = _redis_backend(tmp_path, redis_url)
    backend.auto.request("5.1700000000", unlabeled=True)
    assert backend.auto.wait_idle(30)
    backend.auto.request("5.1700000000", [41, 42])  # a second job of new tasks: one warning only
    assert backend.auto.wait_idle(30)
    shown = backend.store.job_statuses()["5.1700000000"]
    assert shown["state"] == "queued" and shown["pid"] == 0, shown
    warned = [r.getMessage() for r in caplog.records if "no `labelhub worker` takes jobs" in r.getMessage()]
    assert len(warned) == 1 and "labelhub predict --project 5 --status" in warned[0], warned
    answer = _cli("predict", "--project", "5", "--status", env={"LABELHUB_REDIS_URL": redis_url})
    assert answer.exit_code == 0 and json.loads(answer.output)["state"] == "queued", answer.output



def test_a_retrain_merged_into_a_waiting_job_updates_the_version_its_queued_status_names(tmp_path, redis_url):
    """A whole-project job waiting in RQ takes the retrains that come meanwhile (the worker plans with the newest
    version), but its ``queued`` status kept the version of the retrain that enqueued it. A merged request
    publishes the status again with the project's version now."""
    from rq import Queue

    backend = _redis_backend(tmp_path, redis_url, auto_predict_interval=0)
    waiting = Queue("labelhub", connection=backend.store.client)
    key, before = "6.1700000000", waiting.count
    backend.store.project(key).update_kv(model_version="6-first")
    backend.auto.request(key, unlabeled=True)
    assert backend.auto.wait_idle(30)
    assert backend.store.job_statuses()[key]["model_version"] == "6-first"
    backend.store.project(key).update_kv(model_version="6-second")
    backend.auto.request(key, unlabeled=True)  # merged: one job waits
    assert backend.auto.wait_idle(30)
    shown = backend.store.job_statuses()[key]
    assert shown["state"] == "queued" and shown["model_version"] == "6-second", shown
    assert waiting.count == before + 1

def test_failed_tasks_give_the_same_error_on_health_and_status_and_a_warning_of_the_automatic_job(
        label_studio, tmp_path, caplog):
    """A job with failed tasks showed ``"state": "done", "error": null`` on ``/health`` while ``--status`` said
    ``"3 of 3 tasks failed (task 381: ...)"``, and the automatic job logged an INFO line without a reason. Here three
    tasks' texts (``valueType="url"``) are gone from their server: one summary for both, and a warning with the first
    reason."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import TEXT_CONFIG, MediaServer, annotation_event, text_tasks

    caplog.set_level(logging.INFO)
    config = TEXT_CONFIG.replace('value="$text"', 'value="$text" valueType="url"')
    rows, labels = text_tasks(12)
    with MediaServer({f"/t{i}.txt": row["data"]["text"].encode() for i, row in enumerate(rows)}) as media:
        client = label_studio.client()
        project = client.projects.create(title="failed tasks", label_config=config)
        data = [{"text": f"{media.url}/t{i}.txt"} for i in range(12)] + \
            [{"text": f"{media.url}/gone{i}.txt"} for i in range(3)]
        client.projects.import_tasks(id=project.id, request=data)
        ids = {t["data"]["text"]: t["id"] for t in _api(label_studio, "GET",
                                                        f"/api/tasks?project={project.id}&page_size=100")["tasks"]}
        app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False, "auto_predict": True,
                          "auto_predict_interval": 0, "label_studio_url": label_studio.url,
                          "label_studio_api_key": _key(label_studio), "allowed_hosts": ("127.0.0.1",)})
        backend = app.extensions["labelhub"]
        payload = {"id": project.id, "created_at": project.created_at.isoformat(), "title": "t", "label_config": config}
        key = backend.store.resolve_webhook_project(payload)

        def annotate_and_predict(first: int, last: int) -> dict:
            """Annotate tasks ``first..last-1`` through ``/webhook``, fit, run the automatic job: its status."""
            for i in range(first, last):
                body = annotation_event(10_000 + i, {"id": ids[data[i]["text"]], "data": data[i]}, labels[i],
                                        project=payload)
                assert app.test_client().post("/webhook", json=body).status_code == 200
            backend.trainer.run_once()  # the retrain asks for the automatic job itself: asking again here raced
            assert backend.auto.wait_idle(120)  # with it (a second job, retrying only the failed tasks, once it ran)
            return app.test_client().get("/health").json["jobs"][key]

        health = annotate_and_predict(0, 6)
        assert health["state"] == "done" and health["failed"] == 3 and health["done"] == 12, health
        # an automatic job's advice: what retries them (before: "run labelhub predict again", for a job no one ran)
        assert health["error"].startswith("3 of 15 tasks failed (task ") and (
            ", and 2 more); the automatic job after the next retrain tries them again (every unlabeled task without a "
            f"prediction of its version), or run labelhub predict --project {project.id} --unlabeled to retry them now"
        ) in health["error"], health["error"]
        env = {"MODEL_DIR": str(tmp_path), "LABELHUB_REDIS_URL": ""}
        status = json.loads(_cli("predict", "--project", str(project.id), "--status", env=env).output)
        assert status["error"] == health["error"]
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "auto-predict:" in
                  r.getMessage()]
        assert warned == [f"project {key}: auto-predict: {health['error']}"], warned
        # and it is true: the next retrain's job predicts the failed tasks again (still failing: their texts are gone)
        failed_before = set(health["failures"])
        again = annotate_and_predict(6, 8)
        assert again["model_version"] != health["model_version"] and set(again["failures"]) == failed_before, again


def test_the_failure_advice_names_what_retries_the_tasks_for_each_origin():
    """``labelhub predict`` is run again (after ``--all``, without it: it would delete and predict every task again);
    an automatic job's failed tasks wait for the next retrain's job, or a ``labelhub predict --unlabeled`` now."""
    from labelhub.backend.job_status import JobStatus, failure_summary

    failures = {"5": "gone"}
    assert failure_summary(1, 4, failures).endswith("; run labelhub predict again to retry them")
    assert failure_summary(1, 4, failures, "labelhub predict", 7, "all").endswith(
        "; run the same labelhub predict without --all to retry them (the tasks written are skipped)")
    auto = JobStatus(project="7.1700000000", project_id=7, state="done", total=4, done=3, failed=1, failures=failures,
                     origin="auto-predict")
    assert auto.view()["error"] == (
        "1 of 4 tasks failed (task 5: gone); the automatic job after the next retrain tries them again (every "
        "unlabeled task without a prediction of its version), or run labelhub predict --project 7 --unlabeled to retry "
        "them now")
    from labelhub.backend.cli import _with_failures  # --status of a status saved without its error: the same advice
    older = {**auto.view(), "error": None}
    assert _with_failures(older, ())["error"] == auto.view()["error"]


def _redis_project(label_studio, redis_url, model_dir, n_tasks=30, annotated=6):
    """A Label Studio project of text tasks whose model (trained on ``annotated`` through ``/webhook``) is in Redis.
    Returns ``(project id, key)``."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import TEXT_CONFIG, annotation_event, text_tasks

    rows, labels = text_tasks(n_tasks)
    client = label_studio.client()
    project = client.projects.create(title="on redis", label_config=TEXT_CONFIG)
    client.projects.import_tasks(id=project.id, request=[r["data"] for r in rows])
    ids = {t["data"]["text"]: t["id"] for t in _api(label_studio, "GET",
                                                    f"/api/tasks?project={project.id}&page_size=100")["tasks"]}
    app = create_app({"model_dir": model_dir, "redis_url": redis_url, "start_trainer": False, "warmup": False})
    backend = app.extensions["labelhub"]
    payload = {"id": project.id, "created_at": project.created_at.isoformat(), "title": "t",
               "label_config": TEXT_CONFIG}
    key = backend.store.resolve_webhook_project(payload)
    for i in range(annotated):
        body = annotation_event(10_000 + i, {"id": ids[rows[i]["data"]["text"]], "data": rows[i]["data"]}, labels[i],
                                project=payload)
        assert app.test_client().post("/webhook", json=body).status_code == 200
    backend.trainer.run_once()
    return project.id, key


def test_a_stopped_predict_on_redis_cancels_its_queued_batches(label_studio, redis_url, tmp_path):
    """``labelhub predict`` on Redis stopped by SIGTERM (as Ctrl-C) left its batches in RQ, and workers ran them
    later. Now the batches no worker took are canceled, and the log says so."""
    import os
    import signal
    import subprocess
    import sys

    import redis as redis_py
    from rq import Queue

    from tests.backend_fixtures import ROOT

    url = redis_url[:-2] + "/1"  # a database of its own: no worker, no other test's jobs
    project_id, _ = _redis_project(label_studio, url, tmp_path / "app")
    env = {**os.environ, "MODEL_DIR": str(tmp_path / "cli"), "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": _key(label_studio), "LABELHUB_REDIS_URL": url, "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.guarded", "predict", "--project", str(project_id),
                             "--batch-size", "10"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    queued = Queue("labelhub", connection=redis_py.Redis.from_url(url))
    try:
        wait_for(lambda: queued.count == 3, timeout=120, message="the job's three batches queued")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert queued.count == 0 and len(queued.canceled_job_registry) == 3
    assert "3 of its queued batches canceled, 0 already on a worker finish there" in err, err


def _interrupting(after: int):
    """An :data:`~labelhub.backend.jobs.Executor` that runs the batches here and raises ``KeyboardInterrupt`` (Ctrl-C)
    once ``after`` of them are written (0: before the first)."""
    def execute(host, api, project, batches, progress):
        for n, result in enumerate(run_here(host, api, project, batches[:after], progress)):
            yield result
        raise KeyboardInterrupt

    return execute


def test_a_second_all_after_one_interrupted_before_any_batch_selects_the_version_again(label_studio, tmp_path):
    """``--all`` of the whole project deletes the version, which unselects it; a first run interrupted before any
    batch, then a second one, never selected it again (the second found none selected): the project was left without
    a prediction set, and Label Studio's sort averaged every version's scores."""
    project = _Project(label_studio, tmp_path, n_tasks=30)
    version = project.train(0, 6)
    host = project.app.extensions["labelhub"]
    api = LabelStudioClient(label_studio.url, _key(label_studio))
    run_job(host, api, project.id, progress=False)
    assert _api(label_studio, "GET", f"/api/projects/{project.id}")["model_version"] == version
    for after in (0, 1):  # Ctrl-C before the first batch, then after the first batch of the re-run
        with pytest.raises(KeyboardInterrupt):
            run_job(host, api, project.id, mode="all", batch_size=10, progress=False, execute=_interrupting(after))
    assert _per_task(label_studio, project.id, version)[1] == 10
    assert _api(label_studio, "GET", f"/api/projects/{project.id}")["model_version"] == version


def test_no_advice_that_writes_nothing_when_nothing_was_written(label_studio, tmp_path, caplog):
    """A job of a model that has learned nothing (every answer empty) advised ``run labelhub predict --project N``,
    which writes nothing either; a run of a project without tasks ended with a hint to select ``labelhub-0-…``, of
    which no prediction exists."""
    caplog.set_level(logging.INFO)
    project = _Project(label_studio, tmp_path, n_tasks=8)  # connected (/setup), never trained
    assert project.app.test_client().post("/setup", json={"project": project.key, "schema": project.payload[
        "label_config"]}).status_code == 200
    api = LabelStudioClient(label_studio.url, _key(label_studio))
    status = run_job(project.app.extensions["labelhub"], api, project.id, task_ids=[project.tasks[0]["id"]],
                     progress=False)
    assert status.empty == 1 and status.done == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "learned nothing yet" in said and "run `labelhub predict --project" not in said, said

    empty = label_studio.client().projects.create(title="no tasks", label_config=project.payload["label_config"])
    key = f"{empty.id}.{int(empty.created_at.timestamp())}"
    assert project.app.test_client().post("/setup", json={"project": key, "schema": project.payload[
        "label_config"]}).status_code == 200
    answer = _cli("predict", "--project", str(empty.id), env=project.env)
    assert answer.exit_code == 0 and "(0 tasks planned" in answer.output, answer.output
    assert "Prelabeling" not in answer.output, answer.output


def test_health_shows_iso_times_and_counts_and_a_refused_predict_says_what_runs(label_studio, served):
    """``/health`` gave job times as Unix floats (the README says ISO 8601, UTC) and embedded every task id of an
    import job's selection; ``labelhub predict`` refused because the backend's automatic job ran said only "a
    prediction job ... is running"."""
    project = served
    host = project.app.extensions["labelhub"]
    api = LabelStudioClient(label_studio.url, _key(label_studio))
    picked = [t["id"] for t in project.tasks[:5]]
    gate, entered, outcome = threading.Event(), threading.Event(), {}

    def job():
        outcome["status"] = run_job(host, api, project.id, mode="all", task_ids=picked, progress=False,
                                    origin="auto-predict", execute=_held_executor(gate, entered))

    thread = threading.Thread(target=job)
    thread.start()
    try:
        assert entered.wait(60)
        shown = requests.get(project.backend.url + "/health", timeout=10).json()["jobs"][project.key]
        assert shown["state"] == "running" and shown["started_at"].endswith("+00:00"), shown
        assert shown["selection"] == {"task_ids": 5, "unlabeled": False, "filters": False}, shown
        refused = _cli("predict", "--project", str(project.id), env=project.env)
        assert refused.exit_code == 1
        assert "the backend's automatic prediction job (LABELHUB_AUTO_PREDICT) of project" in refused.output
        assert f"labelhub predict --project {project.id} --status` shows its progress" in refused.output
    finally:
        gate.set()
        thread.join(180)
    assert outcome["status"].state == "done" and outcome["status"].done == 5
    shown = requests.get(project.backend.url + "/health", timeout=10).json()["jobs"][project.key]
    assert shown["finished_at"].endswith("+00:00") and shown["error"] is None, shown


def test_on_redis_predict_sees_a_running_job_by_its_lease(label_studio, redis_url, tmp_path):
    """With Redis, ``/predict`` tells a running job (its tasks left to it) by the shared status *and* the job's lease:
    a worker that died leaves a ``running`` status, but its lease expires, and then ``/predict`` answers as always."""
    from dataclasses import asdict

    from labelhub.backend.app import create_app
    from labelhub.backend.job_status import JobStatus
    from labelhub.backend.jobs import left_to_job, running_job

    url = redis_url[:-2] + "/2"
    project_id, key = _redis_project(label_studio, url, tmp_path / "app", n_tasks=10, annotated=4)
    app = create_app({"model_dir": tmp_path / "replica", "redis_url": url, "start_trainer": False, "warmup": False})
    host = app.extensions["labelhub"]
    version = host.store.project(key).kv()["model_version"]
    status = JobStatus(project=key, project_id=project_id, state="running", model_version=version,
                       selection=json.dumps({"task_ids": [1, 2], "unlabeled": True}))
    host.store.save_job_status(key, asdict(status))
    tasks = [{"id": 1, "is_labeled": False}, {"id": 2, "is_labeled": True}, {"id": 3, "is_labeled": False}]
    assert running_job(host, key) is None  # no lease: a dead worker's status
    with host.store.job_lock(key) as held:
        assert held
        found = running_job(host, key)
        assert found is not None and left_to_job(found, tasks, version) == [1]
        assert left_to_job(found, tasks, "labelhub-99-00000000") == []  # another version: answered as always


def test_a_predict_run_says_the_automatic_job_still_waits_and_statuses_say_who_and_what(label_studio, served, caplog,
                                                                                        tmp_path):
    """A second audit: ``labelhub predict`` run while the backend's automatic job waited in the queue replaced its
    status without a word; an automatic job's ``failed`` status had no ``origin``; ``--status`` printed the selection
    as the JSON text of an object."""
    from labelhub.backend.job_status import JobStatus, save_auto_failure

    project = served
    host = project.app.extensions["labelhub"]
    api = LabelStudioClient(label_studio.url, _key(label_studio))
    JobStatus(project=project.key, project_id=project.id, state="queued", origin="auto-predict").save(
        host.settings.model_dir)
    caplog.set_level(logging.INFO)
    run_job(host, api, project.id, mode="all", task_ids=[project.tasks[0]["id"]], progress=False,
            origin="labelhub predict")
    assert any("the backend's automatic prediction job of it waits in the queue" in r.getMessage()
               for r in caplog.records), caplog.text
    shown = json.loads(_cli("predict", "--project", str(project.id), "--status", env=project.env).output)
    assert shown["selection"] == {"task_ids": [project.tasks[0]["id"]], "unlabeled": False}, shown
    failed = save_auto_failure(tmp_path, None, "9.1700000000", 9, 0.0, "a reason", "tried again in 30 s", None, True)
    assert failed.origin == "auto-predict" and failed.state == "failed"
