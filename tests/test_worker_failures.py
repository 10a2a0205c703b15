"""Automatic prediction jobs that fail on a ``labelhub worker`` (``LABELHUB_REDIS_URL``) are kept, as on one host.

Before, with Redis the trainer only enqueued each job: a worker whose ``LABEL_STUDIO_API_KEY`` label-studio-sdk
refuses (an expired personal access token, :data:`tests.test_token_errors.EXPIRED`) logged a 20-line traceback,
``/health`` kept showing the project's previous job ``done``, and nothing tried the job again. Now the failure is the
project's job status on every replica's ``/health`` (one line, never the key), the worker logs one line, and the job
is tried again after ``RETRY_SECONDS`` by whichever worker takes it then (here one with a valid key). A job whose
project is gone is dropped, not tried again. ``labelhub worker`` says a refused key when it starts.

Real parts: Label Studio (``tests/labelstudio.py``), Debian's ``redis-server``, the backend under gunicorn and
``labelhub worker`` processes (:mod:`tests.backend_fixtures`).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import redis
import requests

from tests.backend_fixtures import BackendServer, RedisServer, start_worker, wait_for
from tests.test_auto_predict import _all_predicted, _state, annotated_text_project
from tests.test_token_errors import EXPIRED, SAID


@pytest.fixture(scope="module")
def deployment(label_studio, tmp_path_factory):
    """A backend (2 gunicorn workers) on Redis with ``LABELHUB_AUTO_PREDICT``, and no ``labelhub worker`` yet:
    ``(backend, its environment, folder)``."""
    folder = tmp_path_factory.mktemp("worker-failures")
    with RedisServer(folder / "redis") as redis_server:
        env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token
               or label_studio.api_key, "LABELHUB_AUTO_PREDICT": "true", "LABELHUB_AUTO_PREDICT_INTERVAL": "5",
               "LABELHUB_REDIS_URL": f"{redis_server.url}/0", "LABELHUB_TRAINER_LEASE": "2"}
        with BackendServer(folder / "backend", workers=2, threads=4, env=env) as backend:
            yield backend, env, folder


def _worker(env: dict, folder, name: str, **changes) -> tuple[subprocess.Popen, object]:
    log_path = folder / f"{name}.log"
    proc = start_worker({**os.environ, **env, "MODEL_DIR": str(folder / name), "TQDM_DISABLE": "1", **changes},
                        log_path)
    return proc, log_path


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _job_everywhere(backend, project_id: int, state: str) -> dict | None:
    """The project's job status when several ``/health`` answers (either gunicorn worker) all show it ``state``."""
    seen = []
    for _ in range(6):
        jobs = requests.get(backend.url + "/health", timeout=10).json()["jobs"].values()
        mine = [job for job in jobs if job["project_id"] == project_id]
        if not mine or mine[0]["state"] != state:
            return None
        seen.append(mine[0])
    return seen[-1]


def test_a_job_failing_on_a_worker_says_why_on_health_and_is_tried_again(label_studio, deployment):
    backend, env, folder = deployment
    bad, bad_log = _worker(env, folder, "expired-key-worker", LABEL_STUDIO_API_KEY=EXPIRED)
    try:
        # the worker says the refused key as it starts, not at its first job (it still starts: LS may be down)
        wait_for(lambda: SAID[EXPIRED] in bad_log.read_text(errors="replace"), timeout=60,
                 message="the worker's warning about its key")
        started = bad_log.read_text(errors="replace")
        assert "this worker's LABEL_STUDIO_API_KEY" in started and EXPIRED not in started, started

        project, _ = annotated_text_project(label_studio, backend, "auto-predict fails on a worker", 40, 10)
        failed = wait_for(lambda: _job_everywhere(backend, project.id, "failed"), timeout=240,
                          message="the failed job on every /health answer")
        assert SAID[EXPIRED] in failed["error"] and "tries again in 30 s" in failed["error"], failed
        assert EXPIRED not in json.dumps(failed) and EXPIRED.split(".")[1] not in json.dumps(failed)
        said = bad_log.read_text(errors="replace")
        lines = [line for line in said.splitlines() if "auto-predict failed on this worker" in line]
        assert len(lines) >= 1 and SAID[EXPIRED] in lines[0], said
        assert "Traceback" not in said and EXPIRED not in said, said
    finally:
        _stop(bad)

    # the failed job's next try (30 s after the failure) goes to a worker whose key works: nothing asks again
    good, good_log = _worker(env, folder, "good-worker")
    try:
        version = wait_for(lambda: _all_predicted(label_studio, project.id, backend, 40), timeout=240,
                           message="the retried job predicting every unlabeled task")
        assert all(v[version] <= 1 for _, v in _state(label_studio, project.id).values())
        log_text = good_log.read_text(errors="replace")
        assert f"project {project.id}." in log_text and ", try 2" in log_text, log_text
        done = wait_for(lambda: _job_everywhere(backend, project.id, "done"), timeout=60,
                        message="the retried job done on every /health answer")
        assert not done.get("error")

        # a job whose project is gone is dropped with a warning, not tried again
        from rq import Queue
        from rq.registry import ScheduledJobRegistry

        from labelhub.backend.worker import JOB_TIMEOUT, predict_project

        connection = redis.Redis.from_url(env["LABELHUB_REDIS_URL"])
        queue = Queue("labelhub", connection=connection)
        scheduled_before = set(ScheduledJobRegistry(queue=queue).get_job_ids())
        job = queue.enqueue(predict_project, 987_654, [1, 2], False, 0, key="987654.1700000000",
                            job_timeout=JOB_TIMEOUT)
        wait_for(lambda: job.get_status() == "finished", timeout=60, message="the job of a project that is gone")
        assert job.return_value()["state"] == "dropped", job.return_value()
        time.sleep(1)
        assert set(ScheduledJobRegistry(queue=queue).get_job_ids()) == scheduled_before
        assert "auto-predict dropped its request" in good_log.read_text(errors="replace")
    finally:
        _stop(good)


def test_on_redis_the_trainers_refused_key_says_what_it_stops_not_that_no_job_can_run(tmp_path, caplog):
    """With Redis the workers run the automatic jobs with their own keys: the trainer's replica with a refused key
    warned that no automatic prediction job could run. It now says what this replica's key stops."""
    import logging
    from types import SimpleNamespace

    from labelhub.backend.auto_predict import AutoPredictor
    from labelhub.backend.redis_state import RedisStore, connect
    from labelhub.backend.settings import Settings

    with RedisServer(tmp_path / "redis") as redis_server:
        url = f"{redis_server.url}/0"
        settings = Settings(model_dir=tmp_path / "models", auto_predict=True, label_studio_url="http://127.0.0.1:9",
                            label_studio_api_key=EXPIRED, redis_url=url)
        store = RedisStore(connect(url), tmp_path / "models")
        with caplog.at_level(logging.WARNING, logger="labelhub.backend.auto_predict"):
            AutoPredictor(SimpleNamespace(settings=settings, store=store)).resume_interrupted()
    said = [r.getMessage() for r in caplog.records if r.name == "labelhub.backend.auto_predict"]
    assert len(said) == 1, said
    assert said[0].startswith("this replica's LABEL_STUDIO_API_KEY (for Label Studio at http://127.0.0.1:9) "
                              f"{SAID[EXPIRED]}"), said
    assert "Start training cannot read" in said[0] and "webhook cannot check" in said[0], said
    assert "no automatic prediction job can run" not in said[0] and EXPIRED not in said[0]


def test_a_failing_jobs_tries_back_off_like_one_hosts_and_a_queued_whole_project_job_takes_its_place(tmp_path,
                                                                                                    monkeypatch):
    """The job itself (:func:`labelhub.backend.worker.predict_project`, run here in-process, as a worker runs it)
    against a real Redis: each failure schedules the next try after RETRY_SECONDS doubled per failure, up to
    MAX_RETRY_SECONDS, holding the project's waiting-job note; a failed whole-project job leaves the work to a
    whole-project job enqueued meanwhile instead of scheduling one more."""
    from rq import Queue
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry

    from labelhub.backend import worker
    from labelhub.backend.auto_predict import MAX_RETRY_SECONDS, RETRY_SECONDS
    from labelhub.backend.redis_state import connect, job_statuses

    with RedisServer(tmp_path / "redis") as redis_server:
        url = f"{redis_server.url}/0"
        for name, value in {"LABELHUB_REDIS_URL": url, "MODEL_DIR": str(tmp_path / "models"),
                            "LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_API_KEY": EXPIRED}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(worker, "_BACKEND", None)
        monkeypatch.setattr(worker, "_API", None)
        client = connect(url)
        scheduled = ScheduledJobRegistry(queue=Queue(worker.QUEUE, connection=client))

        for attempt, wait in ((0, RETRY_SECONDS), (1, 2 * RETRY_SECONDS), (12, MAX_RETRY_SECONDS)):
            answer = worker.predict_project(5, None, True, 0, key="5.100", attempt=attempt)
            assert answer["state"] == "failed" and answer["retry_in"] == wait, answer
            assert SAID[EXPIRED] in answer["error"] and EXPIRED not in answer["error"]
            status = job_statuses(client)["5.100"]
            assert status["state"] == "failed" and f"tries again in {wait:.0f} s" in status["error"], status
            noted = client.get(worker._queued_key(5)).decode()
            assert noted in scheduled.get_job_ids()  # the retrains meanwhile merge into the scheduled try
            job = Job.fetch(noted, connection=client)
            assert job.kwargs == {"key": "5.100", "attempt": attempt + 1} and job.args == (5, None, True, 0)
            assert 0 < scheduled.get_scheduled_time(job).timestamp() - time.time() <= wait
            job.delete()  # as if it ran: the next try of the loop is a new failure

        # a whole-project job enqueued while this one ran does its work: no try is scheduled
        other = Queue(worker.QUEUE, connection=client).enqueue(worker.predict_project, 5, None, True, 0,
                                                               key="5.100")
        client.set(worker._queued_key(5), other.id)
        before = set(scheduled.get_job_ids())
        answer = worker.predict_project(5, None, True, 0, key="5.100")
        assert answer["retry_in"] is None and set(scheduled.get_job_ids()) == before, answer
        assert "a queued job of the project tries again" in job_statuses(client)["5.100"]["error"]
        # new tasks' jobs are not merged: each schedules its own try
        answer = worker.predict_project(5, [1, 2], False, 0, key="5.100")
        assert answer["retry_in"] == RETRY_SECONDS and len(scheduled.get_job_ids()) == len(before) + 1
