"""Several hosts on one Redis (``LABELHUB_REDIS_URL``): three backend processes with their own ``MODEL_DIR`` (three
"hosts") behind a round-robin, the trainer's holder killed mid-training, and a prediction job's batches run by two
``labelhub worker`` processes against the real Label Studio.

Redis is Debian's ``redis-server``, started on 127.0.0.1 by the fixture (``python -m tests.testbed install``
installs it).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter

import pytest
import redis
import requests

from tests.backend_fixtures import TEXT_CONFIG, BackendServer, RedisServer, annotation_event, plot_review_tasks, \
    project_key, project_payload, running, start_worker, text_tasks, trainer_leader, wait_for
from tests.conftest import run_labelhub

N_TASKS = 400
PROJECT = project_payload(7, label_config=TEXT_CONFIG)
KEY = project_key(7)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A private ``redis-server`` on a free loopback port."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


def _version_number(version: str) -> int:
    """``labelhub-<annotated tasks>-<hash>`` → the number of annotated tasks it was trained on."""
    match = re.fullmatch(r"labelhub-(\d+)-[0-9a-f]+", version)
    assert match, version
    return int(match.group(1))


@pytest.fixture(scope="module")
def hosts(redis_url, tmp_path_factory):
    """Three backends (one gunicorn worker each, their own ``MODEL_DIR``) sharing one Redis database."""
    env = {"LABELHUB_REDIS_URL": f"{redis_url}/0", "LABELHUB_TRAINER_LEASE": "2", "LABELHUB_WARMUP": "false"}
    with running([BackendServer(tmp_path_factory.mktemp(f"host{i}"), workers=1, threads=4, env=env)
                  for i in range(3)]) as servers:
        yield servers


def test_three_backends_round_robin_share_one_model_and_never_go_back_a_version(hosts, redis_url):
    tasks, labels = text_tasks(N_TASKS)
    session = requests.Session()
    answer = session.post(hosts[0].url + "/setup", json={"project": KEY, "schema": TEXT_CONFIG}, timeout=60)
    assert answer.status_code == 200, answer.text
    errors, seen, highest, annotated = [], Counter(), 0, 0
    for i in range(1000):
        host = hosts[i % 3]
        kind = i % 4
        if kind == 0 and annotated < 250:  # an annotation saved
            body = annotation_event(10_000 + annotated, tasks[annotated], labels[annotated], project=PROJECT)
            answer = session.post(host.url + "/webhook", json=body, timeout=60)
            annotated += 1
        elif kind == 3:
            answer = session.get(host.url + "/health", timeout=60)
        else:  # a prediction of a task nobody annotates here
            task = tasks[300 + i % 100]
            answer = session.post(host.url + "/predict", json={"tasks": [task], "project": KEY,
                                                              "label_config": TEXT_CONFIG}, timeout=60)
        if answer.status_code != 200:
            errors.append((i, host.url, answer.status_code, answer.text[:200]))
            continue
        version = (answer.json().get("results") or [{}])[0].get("model_version") if kind in (1, 2) else None
        if version:
            number = _version_number(version)
            assert number >= highest, f"request {i} to {host.url} answered {version} after labelhub-{highest}-…"
            highest = number
            seen[version] += 1
    assert errors == []
    assert len(seen) > 2, seen  # the model moved on while the requests went round
    client = redis.Redis.from_url(f"{redis_url}/0")
    wait_for(lambda: client.llen("labelhub:events") == 0, timeout=120, message="the queue to drain")
    for host in hosts:  # every host answers with the version trained on every annotation
        wait_for(lambda: _predicted_version(host, tasks[399]).startswith("labelhub-250-"), timeout=120,
                 message=f"{host.url} to answer labelhub-250-…")


def _predicted_version(host, task) -> str:
    answer = requests.post(host.url + "/predict", json={"tasks": [task], "project": KEY, "label_config": TEXT_CONFIG},
                           timeout=60)
    answer.raise_for_status()
    return answer.json()["results"][0]["model_version"]


def test_the_trainer_killed_mid_training_passes_on_and_no_event_is_lost(hosts, redis_url):
    tasks, labels = text_tasks(N_TASKS)
    client = redis.Redis.from_url(f"{redis_url}/0")
    wait_for(lambda: client.llen("labelhub:events") == 0, timeout=120, message="an empty queue")
    leader, pid = wait_for(lambda: trainer_leader(hosts), timeout=30, message="a trainer")
    for n in range(250, 350):  # a burst of annotations: one batch, one fit of 100 new texts
        body = annotation_event(10_000 + n, tasks[n], labels[n], project=PROJECT)
        assert requests.post(hosts[n % 3].url + "/webhook", json=body, timeout=60).status_code == 200
    wait_for(lambda: client.exists("labelhub:project:" + KEY + ":lock") or client.llen("labelhub:events") < 100,
             timeout=30, interval=0.01, message="the trainer to take the batch")
    os.kill(pid, signal.SIGKILL)
    assert client.llen("labelhub:events") > 0  # killed before the batch was done: its events are still queued
    took_over = wait_for(lambda: (found := trainer_leader(hosts)) and found[1] != pid and found, timeout=60,
                         message="another trainer")
    assert took_over[1] != pid
    wait_for(lambda: client.llen("labelhub:events") == 0, timeout=120, message="the queue to drain")
    for host in hosts:
        wait_for(lambda: _predicted_version(host, tasks[399]).startswith("labelhub-350-"), timeout=120,
                 message=f"{host.url} to answer labelhub-350-… (every event applied)")


def test_a_trainer_stopped_gracefully_lets_go_of_its_lease_at_once(redis_url, tmp_path):
    """Noticed at stop 40: a backend stopped with SIGTERM (a deploy, a scale-down) kept the trainer's Redis lease
    until it ran out, so no host trained for ``LABELHUB_TRAINER_LEASE`` seconds. gunicorn's ``worker_exit`` hook now
    stops the trainer, which releases the lock: with a 30 s lease, the other host takes over within seconds."""
    env = {"LABELHUB_REDIS_URL": f"{redis_url}/3", "LABELHUB_TRAINER_LEASE": "30", "LABELHUB_WARMUP": "false"}
    with running([BackendServer(tmp_path / f"host{i}", workers=1, threads=2, env=env) for i in range(2)]) as servers:
        leader, _ = wait_for(lambda: trainer_leader(servers), timeout=30, message="a trainer")
        other = next(server for server in servers if server is not leader)
        leader.stop()  # SIGTERM: gunicorn stops its worker gracefully
        stopped = time.monotonic()
        wait_for(lambda: trainer_leader([other]), timeout=60, interval=0.1, max_interval=0.1,
                 message="the other host's trainer")
        assert time.monotonic() - stopped < 10, "the lease was not released: the other host waited for it to run out"


# prediction jobs on two `labelhub worker` processes --------------------------------------------------------------
N_JOB_TASKS = 5000


def test_two_workers_predict_5000_tasks_each_exactly_once(label_studio, redis_url, tmp_path):
    from click.testing import CliRunner

    from labelhub.backend.app import create_app
    from labelhub.cli import main
    from tests.test_predict_jobs import _keep_root_logging, _per_task

    db_url = f"{redis_url}/1"  # apart from the backends above
    ls = label_studio.client()
    project = ls.projects.create(title="labelhub worker", label_config=TEXT_CONFIG)
    reviews, labels = text_tasks(N_JOB_TASKS)  # 4,866 Rotten Tomatoes snippets, then film plots to make 5,000
    plots, _ = plot_review_tasks(N_JOB_TASKS - len(reviews))
    source = reviews + plots
    assert len(source) == N_JOB_TASKS
    ls.projects.import_tasks(id=project.id, request=[t["data"] for t in source])
    payload = {"id": project.id, "created_at": project.created_at.isoformat(), "title": "t", "label_config": TEXT_CONFIG}
    app = create_app({"model_dir": tmp_path / "trainer", "start_trainer": False, "warmup": False, "redis_url": db_url})
    backend = app.extensions["labelhub"]
    listed = requests.get(f"{label_studio.url}/api/tasks?project={project.id}&page_size=100&fields=all",
                          headers={"Authorization": f"Token {label_studio.api_key}"}, timeout=60).json()["tasks"]
    by_text = {s["data"]["text"]: i for i, s in enumerate(reviews)}
    for n, task in enumerate(listed[:40]):
        body = annotation_event(50_000 + n, {"id": task["id"], "data": task["data"]},
                                labels[by_text[task["data"]["text"]]], project=payload)
        assert app.test_client().post("/webhook", json=body).status_code == 200
    backend.trainer.run_once()
    key = backend.store.resolve_webhook_project(payload)
    version = backend.store.project(key).kv()["model_version"]
    assert version.startswith("labelhub-40-")

    token = label_studio.personal_token or label_studio.api_key
    env = {**os.environ, "LABELHUB_REDIS_URL": db_url, "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": token, "TQDM_DISABLE": "1"}
    workers = [start_worker({**env, "MODEL_DIR": str(tmp_path / f"worker{i}")}, tmp_path / f"worker{i}.log")
               for i in range(2)]
    try:
        with _keep_root_logging():
            answer = CliRunner().invoke(main, ["predict", "--project", str(project.id)],
                                        env={**env, "MODEL_DIR": str(tmp_path / "cli")}, catch_exceptions=False)
        assert answer.exit_code == 0, answer.output
        assert f"{N_JOB_TASKS} predictions of {version} written" in answer.output
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert _per_task(label_studio, project.id, version) == Counter({1: N_JOB_TASKS})
    logs = [(tmp_path / f"worker{i}.log").read_text(errors="replace") for i in range(2)]
    assert all("labelhub predict: project" in text for text in logs), [text[-1500:] for text in logs]  # both worked
    health = backend.store.job_statuses()[key]
    assert health["state"] == "done" and health["done"] == N_JOB_TASKS
    with _keep_root_logging():  # another database: the message names Redis, not MODEL_DIR (found by a walkthrough)
        answer = CliRunner().invoke(main, ["predict", "--project", str(project.id)],
                                    env={**env, "LABELHUB_REDIS_URL": f"{redis_url}/6", "MODEL_DIR": str(tmp_path)})
    assert answer.exit_code == 1 and "the Redis of LABELHUB_REDIS_URL has no model of project" in answer.output, \
        answer.output


def test_a_burst_worker_with_nothing_to_do_exits_at_once(redis_url, tmp_path):
    """RQ 3 with redis-py 8 held a worker's exit up to 60 s, one run in three (hence ``redis<8``)."""
    env = {"LABELHUB_REDIS_URL": f"{redis_url}/2", "MODEL_DIR": str(tmp_path)}
    for _ in range(6):
        proc = run_labelhub("worker", "--burst", env=env, timeout=30)  # a hang fails here: TimeoutExpired
        assert proc.returncode == 0, proc.stderr[-2000:]


def _backend_with_one_event(url: str, tmp_path):
    """A backend on the Redis ``url`` (no trainer thread) whose queue holds one annotation's event."""
    from labelhub.backend.app import create_app

    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False, "redis_url": url})
    task = text_tasks(1)[0][0]
    answer = app.test_client().post("/webhook", json=annotation_event(1, task, "positive", project=PROJECT))
    assert answer.status_code == 200, answer.json
    return app.extensions["labelhub"]


def _another_takes_the_trainer(url: str) -> None:
    """The trainer's lease runs out and another process takes it."""
    other = redis.Redis.from_url(url)
    other.delete("labelhub:trainer")
    assert other.lock("labelhub:trainer", timeout=10).acquire(blocking=False)


def test_a_trainer_whose_lease_passed_on_saves_nothing_and_leaves_its_events(redis_url, tmp_path):
    """A trainer that paused longer than its lease (a stopped VM, a partition from Redis) while another process took
    the trainer over must not write its training data over the new trainer's: it asks Redis before it saves, and the
    events it took stay queued for the new trainer."""
    url = f"{redis_url}/3"
    backend = _backend_with_one_event(url, tmp_path)
    with backend.queue.trainer_lease() as held:
        assert held and held.still_held()
        backend.trainer._lease = held  # as the trainer's thread holds it
        _another_takes_the_trainer(url)  # the lease ran out while this process was paused, and another took it
        assert not held.still_held()
        assert backend.trainer.run_once() == 1
    assert backend.queue.count() == 1  # left for the new trainer
    assert backend.store.project(KEY).load_annotations()["annotations"] == {}


def test_a_trainer_that_paused_past_its_lease_after_asking_it_saves_nothing(redis_url, tmp_path, monkeypatch):
    """The same pause, between the trainer's question (still the trainer?) and its write of the training data: the
    write is fenced by the lease on the Redis server, so it lands not, and the events stay queued (an audit)."""
    url = f"{redis_url}/8"
    backend = _backend_with_one_event(url, tmp_path)
    with backend.queue.trainer_lease() as held:
        backend.trainer._lease = held
        _another_takes_the_trainer(url)  # the lease ran out after the trainer asked, and another took it
        monkeypatch.setattr(backend.trainer, "still_trainer", lambda: True)  # what it heard before the pause
        assert backend.trainer.run_once() == 1
    assert backend.queue.count() == 1  # left for the new trainer
    assert backend.store.project(KEY).load_annotations()["annotations"] == {}


# automatic jobs on RQ -------------------------------------------------------------------------------------------------

def test_automatic_whole_project_jobs_on_rq_keep_the_interval_and_one_waiting_job_per_project(redis_url, tmp_path,
                                                                                              monkeypatch):
    """With Redis, every retrain enqueued one whole-project job: neither LABELHUB_AUTO_PREDICT_INTERVAL nor the
    merging of requests applied, and each job wrote one more prediction per unlabeled task. Now the trainer enqueues
    a project's whole-project jobs at most once per interval, not while one waits in the queue, and a job that finds
    a newer one queued while it waits for a running job leaves the work to it."""
    import time
    from types import SimpleNamespace

    from labelhub.backend import worker
    from labelhub.backend.auto_predict import AutoPredictor
    from labelhub.backend.jobs import JobAlreadyRunning
    from labelhub.backend.settings import Settings

    client = redis.Redis.from_url(f"{redis_url}/3")
    client.flushdb()
    settings = Settings(model_dir=tmp_path, auto_predict=True, label_studio_url="http://127.0.0.1:9",
                        label_studio_api_key="key", redis_url=f"{redis_url}/3", auto_predict_interval=1.5)
    host = SimpleNamespace(settings=settings, store=SimpleNamespace(client=client))
    auto, q = AutoPredictor(host), worker.queue(client)

    def enqueued() -> list[tuple[float, int, bool]]:
        return sorted((job.enqueued_at.timestamp(), job.args[0], job.args[2]) for job in q.jobs)

    def take(result=None):  # a worker takes a whole-project job of project 3
        monkeypatch.setattr(worker, "_worker_host", lambda: (host, None))
        monkeypatch.setattr(worker, "run_job", result or (lambda *a, **k: SimpleNamespace()))
        monkeypatch.setattr(worker, "asdict", lambda status: {"state": "done"})
        return worker.predict_project(3, None, True, 0)

    auto.request("3.100", unlabeled=True)
    assert auto.wait_idle(10) and len(enqueued()) == 1
    for _ in range(5):  # five retrains while the job waits in the queue: merged into it
        auto.request("3.100", unlabeled=True)
    assert auto.wait_idle(10) and len(enqueued()) == 1
    assert take() == {"state": "done"}
    for _ in range(5):  # five retrains after a worker took it: one more job, not before the interval
        auto.request("3.100", unlabeled=True)
    asked = time.time()
    auto.request("4.100", [1, 2])  # new tasks of another project do not wait
    assert auto.wait_idle(10)
    (first, _, _), *rest = enqueued()
    assert [(project, whole) for _, project, whole in rest] == [(4, False), (3, True)], rest
    assert rest[0][0] - asked < 1.0 and rest[1][0] - first >= 1.5, (asked, first, rest)

    def running(*args, **kwargs):  # `labelhub predict` runs; meanwhile a retrain enqueues a newer job
        newer = q.enqueue(print, 3)
        assert worker.mark_queued(client, 3, job_id=newer.id)
        raise JobAlreadyRunning("a prediction job of project 3 is running")

    started = time.monotonic()
    assert take(running) == {"project_id": 3, "state": "merged"} and time.monotonic() - started < 1.0
    waiting = q.enqueue(print, 99)
    assert not client.exists(worker._queued_key(99)) and worker.mark_queued(client, 99, job_id=waiting.id)
    assert not worker.mark_queued(client, 99, job_id="another")
    assert 0 < client.ttl(worker._queued_key(99)) <= worker.JOB_TIMEOUT
    # the job deleted from the queue by hand (rq empty): its note holds nothing back, the next one is noted
    waiting.delete()
    assert worker.mark_queued(client, 99, job_id="next") and client.get(worker._queued_key(99)) == b"next"
    auto.request("5.100", unlabeled=True)  # the trainer's jobs carry the id they are noted with
    assert auto.wait_idle(10)
    [job] = [job for job in q.jobs if job.args[0] == 5]
    assert client.get(worker._queued_key(5)) == job.id.encode()
    job.delete()
    time.sleep(1.6)  # the interval
    auto.request("5.100", unlabeled=True)  # a retrain after `rq empty`: enqueued, not merged into a job that is gone
    assert auto.wait_idle(10) and [j.args[0] for j in q.jobs].count(5) == 1


def test_automatic_requests_on_rq_survive_a_trainer_moving_and_leave_no_stale_note(redis_url, tmp_path, monkeypatch):
    """Found by review: a request waiting out its interval was kept in the trainer host's MODEL_DIR only, so a trainer
    taking over on another host never saw it; a failed enqueue left its note for 4 hours (every later retrain merged
    into no job); a worker killed while it waited for a running job did the same; a trainer that paused past its
    lease wrote its requests over the new trainer's when it woke up."""
    import contextlib
    from types import SimpleNamespace

    from labelhub.backend import worker
    from labelhub.backend.auto_predict import PENDING_KEY, AutoPredictor
    from labelhub.backend.jobs import JobAlreadyRunning
    from labelhub.backend.redis_state import PREFIX, lease
    from labelhub.backend.settings import Settings

    client = redis.Redis.from_url(f"{redis_url}/4")
    client.flushdb()
    leases = contextlib.ExitStack()

    def host(name: str, interval: float = 60.0, trainer: bool = True):  # a trainer holds the trainer's lease
        settings = Settings(model_dir=tmp_path / name, auto_predict=True, label_studio_url="http://127.0.0.1:9",
                            label_studio_api_key="key", redis_url=f"{redis_url}/4", auto_predict_interval=interval)
        held = leases.enter_context(lease(client, f"{PREFIX}trainer", 60, blocking=False)) if trainer else None
        assert held or not trainer, "another trainer holds the lease"
        store = SimpleNamespace(client=client, save_job_status=lambda key, status: None)
        return SimpleNamespace(settings=settings, store=store, trainer=SimpleNamespace(lease=held))

    first = AutoPredictor(host("first"))
    first.request("3.100", unlabeled=True)  # enqueued at once
    wait_for(lambda: worker.queue(client).count == 1, timeout=10)
    worker.unmark_queued(client, 3)  # a worker took it
    first.request("3.100", unlabeled=True)  # a retrain: waits out the interval on the first host
    wait_for(lambda: first._saved(), timeout=10)
    client.delete(f"{PREFIX}trainer")  # the first host stopped past its lease: it ran out
    second = AutoPredictor(host("second", interval=0))  # the trainer moved to another host (another MODEL_DIR)
    second.resume_interrupted()
    assert second.wait_idle(10) and worker.queue(client).count == 2
    saved = client.get(PENDING_KEY)
    first.request("4.100", [1, 2])  # the first host wakes up: its save lands nowhere, its request is still enqueued
    wait_for(lambda: worker.queue(client).count == 3, timeout=10)
    assert client.get(PENDING_KEY) == saved
    with first._cond:  # the first host is gone
        first._pending.clear()

    class Down:
        def enqueue(self, *args, **kwargs):
            raise redis.exceptions.ConnectionError("Redis went away")

    worker.unmark_queued(client, 3)
    monkeypatch.setattr(worker, "queue", lambda c: Down())
    second.request("3.100", unlabeled=True)
    wait_for(lambda: "3.100" in second._retry and not second._running, timeout=10)
    assert not client.exists(worker._queued_key(3))  # no stale note: the retry (or the next retrain) enqueues again
    with second._cond:  # the failed request is kept for its retry after the backoff (not waited for here)
        assert "3.100" in second._pending
        second._pending.clear()
        second._retry.clear()

    ttls = []
    monkeypatch.setattr(worker, "_worker_host", lambda: (host("w", trainer=False), None))
    monkeypatch.setattr(worker, "asdict", lambda status: {"state": "done"})
    calls = iter([JobAlreadyRunning("running"), None])

    def run_job(*args, **kwargs):
        outcome = next(calls)
        if outcome is not None:
            raise outcome
        return SimpleNamespace()

    monkeypatch.setattr(worker, "run_job", run_job)
    monkeypatch.setattr(worker, "LOCK_WAIT_SECONDS", 0.01)
    monkeypatch.setattr(worker.time, "sleep", lambda seconds: ttls.append(client.ttl(worker._queued_key(3))))
    assert worker.predict_project(3, None, True, 0) == {"state": "done"}
    assert ttls and all(0 < ttl <= worker.WAITING_NOTE_SECONDS for ttl in ttls), ttls  # a killed waiter: 30 s
    leases.close()


def test_predict_on_redis_says_when_no_worker_listens_and_reads_its_status_from_redis(redis_url, tmp_path,
                                                                                    monkeypatch, caplog):
    """Found by a walkthrough: with no `labelhub worker` on the queue's Redis database the planner waited without a
    word; `labelhub predict --status` read only ./labelhub-models, not the status the job published in Redis; an
    unreachable Redis gave redis-py's traceback."""
    import threading
    from types import SimpleNamespace

    from click.testing import CliRunner
    from rq.job import JobStatus as RQStatus

    from labelhub.backend import worker
    from labelhub.backend.redis_state import RedisStore
    from labelhub.cli import main

    client = redis.Redis.from_url(f"{redis_url}/5")
    client.flushdb()
    monkeypatch.setattr(worker, "NO_WORKER_WARNING_SECONDS", 0.2)
    batches = worker.on_workers(client, poll=0.05)(None, None, SimpleNamespace(id=7), [[1, 2], [3]], lambda n: None)
    results = []
    planner = threading.Thread(target=lambda: results.extend(batches), daemon=True)
    planner.start()
    wait_for(lambda: any("no `labelhub worker` takes batches" in r.getMessage() for r in caplog.records), timeout=10)
    for job in worker.queue(client).jobs:  # a worker would take them; here they fail, and the planner ends
        job.set_status(RQStatus.FAILED)
    planner.join(10)
    assert not planner.is_alive() and sorted(t for r in results for t in r.failed) == [1, 2, 3]

    RedisStore(client, tmp_path / "cache").save_job_status("7.1700000000", {
        "project": "7.1700000000", "project_id": 7, "state": "done", "done": 3, "total": 3, "updated_at": 1.0})
    env = {"LABELHUB_REDIS_URL": f"{redis_url}/5", "MODEL_DIR": str(tmp_path / "elsewhere"),
           "LABEL_STUDIO_API_KEY": "unused"}
    answer = CliRunner().invoke(main, ["predict", "--project", "7", "--status"], env=env)
    assert answer.exit_code == 0 and json.loads(answer.output)["done"] == 3, answer.output
    answer = CliRunner().invoke(main, ["predict", "--project", "7", "--status"],
                                env={**env, "LABELHUB_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"})
    assert answer.exit_code == 1 and answer.output.count("\n") == 1, answer.output
    assert "LABELHUB_REDIS_URL: Redis at 127.0.0.1:1 does not answer" in answer.output and "hunter2" not in answer.output
