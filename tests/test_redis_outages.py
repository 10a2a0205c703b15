"""The backend's Redis mode through Redis outages and losses (an audit's findings), each against a real
``redis-server``.

- A lease (a prediction job's lock, the trainer's) outlives a Redis restart shorter than it: before, its renewer
  stopped at the first ``ConnectionError`` and the lock lapsed under a job that still ran, so a second job of the
  project was granted it. It still stops, and says so, when the lease is really lost.
- An automatic prediction job whose ``labelhub worker`` is SIGKILLed mid-job is run again by RQ (its ``Retry``):
  before, it was lost until the next retrain and the project's status said ``running`` for good.
- A ``labelhub predict`` planner whose batch's RQ job Redis lost ends, counting its tasks as failed: before, it waited
  for it forever.

Real parts: Debian's ``redis-server`` (restarted on its port, with an append-only file where a restart must keep the
keys), RQ workers in subprocesses killed with SIGKILL; Label Studio is not needed: the workers' ``run_job`` is a
stand-in (:func:`_stand_in_worker`).
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import redis

from labelhub.processes import stop_process_group
from tests.backend_fixtures import RedisServer, wait_for
from tests.labelstudio import free_port

ROOT = Path(__file__).resolve().parent.parent
#: The Redis password of :class:`_Redis`: it must appear in no log line.
PASSWORD = "s3cret-redis-password-0123"
#: The project of the automatic-job tests.
KEY = "3.1700000000"
#: Set by the stand-in job of :func:`_stand_in_worker` when it starts (its value: the worker's pid).
STARTED = "test:stand-in-job-started"


class _Redis:
    """``redis-server`` on a free loopback port with a password, that can be stopped and started again on the same
    port; with ``persistent``, an append-only file fsynced at each write keeps its keys (and their expiries) across a
    restart, as the README's ``appendonly yes`` deployment.

    Attributes:
        url: ``redis://:<password>@127.0.0.1:<port>/0``.
    """

    def __init__(self, folder: Path, persistent: bool = True):
        self.folder = Path(folder)
        self.persistent = persistent
        self.port = free_port()
        self.url = f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it and wait until it answers (``PING``, after loading its append-only file)."""
        binary = shutil.which("redis-server") or "/usr/sbin/redis-server"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
                                      "--requirepass", PASSWORD, "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)

        def pings() -> bool:
            try:
                return client.ping()
            except redis.exceptions.ConnectionError:  # BusyLoadingError too
                return False

        wait_for(pings, timeout=20, interval=0.05, max_interval=0.05, message="redis-server")

    def stop(self) -> None:
        """Stop it (SIGTERM: it writes its append-only file and exits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def __enter__(self) -> "_Redis":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _lease_threads() -> list[str]:
    """The renewer threads of this module's locks (the job lock of :data:`KEY`, the trainer's) that still run."""
    return [t.name for t in threading.enumerate()
            if t.name.startswith("lease-") and (KEY in t.name or t.name.endswith(":trainer"))]


def _said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "labelhub.backend.redis_state"]


def test_a_lease_outlives_a_redis_restart_shorter_than_it(tmp_path, caplog):
    """The audit's sequence: a job holds its project's job lock (and a trainer its lease), Redis restarts for 2.5 s,
    longer than a renewal's period and shorter than the lease (its append-only file keeps the keys), and a lease later
    the locks are still theirs: no second job, no second trainer. The outage is said once per lock, by the error's
    type, never with the URL's password."""
    from labelhub.backend.redis_state import PREFIX, RedisEventQueue, RedisStore, connect

    lease = 7.0  # renewed every 2.3 s: the restart spans one
    with _Redis(tmp_path / "redis") as server, caplog.at_level(logging.INFO, logger="labelhub.backend.redis_state"):
        store_a, store_b = (RedisStore(connect(server.url), tmp_path / name, lease) for name in ("a", "b"))
        queue_a, queue_b = (RedisEventQueue(connect(server.url), lease) for _ in range(2))
        with store_a.job_lock(KEY) as job, queue_a.trainer_lease() as trainer:
            assert job and trainer
            server.stop()
            time.sleep(2.5)
            server.start()
            time.sleep(lease + 1.0)  # past the lease the keys had when Redis stopped
            assert job.still_held() and trainer.still_held()
            with store_b.job_lock(KEY) as second_job, queue_b.trainer_lease() as second_trainer:
                assert not second_job and not second_trainer
            assert len(_lease_threads()) == 2  # still renewing
        assert not connect(server.url).exists(f"{PREFIX}jobs:{KEY}:lock", f"{PREFIX}trainer")  # released at the end
    said = _said(caplog)
    outages = [line for line in said if line.startswith("cannot renew the lock")]
    assert len(outages) == 2 and all("(ConnectionError)" in line for line in outages), said
    assert len([line for line in said if line.startswith("renewed the lock")]) == 2, said
    assert not [line for line in said if "lost the lock" in line], said
    assert PASSWORD not in caplog.text


def test_a_lease_that_redis_lost_in_a_restart_stops_its_renewal_and_says_so(tmp_path, caplog):
    """A Redis restarted without persistence has forgotten the lock: its renewer hears from Redis that the key is
    no longer its holder's, says so once and stops; another holder may take the lock."""
    from labelhub.backend.redis_state import RedisStore, connect

    lease = 3.0
    with _Redis(tmp_path / "redis", persistent=False) as server, \
            caplog.at_level(logging.INFO, logger="labelhub.backend.redis_state"):
        store_a, store_b = (RedisStore(connect(server.url), tmp_path / name, lease) for name in ("a", "b"))
        with store_a.job_lock(KEY) as job:
            server.stop()
            server.start()
            wait_for(lambda: not _lease_threads(), timeout=lease * 2, message="the renewer to stop")
            assert not job.still_held()
            with store_b.job_lock(KEY) as second_job:
                assert second_job
    lost = [line for line in _said(caplog) if "lost the lock" in line]
    assert len(lost) == 1 and "no longer this holder's" in lost[0], _said(caplog)
    assert PASSWORD not in caplog.text


def test_a_lease_whose_redis_stays_away_longer_than_it_stops_renewing_and_says_so(tmp_path, caplog):
    """A Redis that cannot be reached for the whole lease: the key has expired there, so the renewer stops trying
    when the lease is over and says the lock is lost (once), instead of renewing for ever."""
    from labelhub.backend.redis_state import RedisStore, connect

    lease = 2.0
    with _Redis(tmp_path / "redis") as server, caplog.at_level(logging.INFO, logger="labelhub.backend.redis_state"):
        with RedisStore(connect(server.url), tmp_path / "a", lease).job_lock(KEY) as job:
            server.stop()
            wait_for(lambda: not _lease_threads(), timeout=lease * 3, message="the renewer to stop")
            assert not job.still_held()
    said = _said(caplog)
    assert len([line for line in said if line.startswith("cannot renew the lock")]) == 1, said
    lost = [line for line in said if "lost the lock" in line]
    assert len(lost) == 1 and "could not be reached for its whole lease of 2 s (ConnectionError)" in lost[0], said
    assert PASSWORD not in caplog.text


def _stand_in_worker(url: str, model_dir: str, mode: str) -> None:
    """Run in a subprocess: an RQ ``SimpleWorker`` on LabelHub's queue, whose :func:`predict_project` runs a stand-in
    of ``run_job`` (no Label Studio): ``"hang"`` publishes the project's status ``running`` (as ``run_job`` does),
    sets :data:`STARTED` and sleeps (to be killed; no scheduler, as a killed worker's would hold RQ's scheduler lock
    for minutes); ``"done"`` publishes ``done`` and returns it, in ``labelhub worker``'s own loop
    (:func:`labelhub.backend.worker.work`, with RQ's scheduler)."""
    from labelhub.backend import worker
    from labelhub.backend.job_status import JobStatus
    from labelhub.backend.redis_state import RedisStore, connect

    client = connect(url)
    store = RedisStore(client, Path(model_dir))
    host = SimpleNamespace(store=store, settings=SimpleNamespace(model_dir=Path(model_dir), redis_url=url,
                                                                label_studio_api_key="k"))

    def run_job(host, api, project_id, *, task_ids=None, unlabeled=False, **_):
        status = JobStatus(project=KEY, project_id=project_id, state="running", origin="auto-predict",
                           started_at=time.time())
        store.save_job_status(KEY, asdict(status))
        if mode == "hang":
            client.set(STARTED, os.getpid())
            time.sleep(600)
        status.state, status.finished_at = "done", time.time()
        store.save_job_status(KEY, asdict(status))
        return status

    worker._worker_host = lambda: (host, None)
    worker.run_job = run_job
    if mode == "hang":
        worker.HEARTBEAT_SECONDS, worker.HEARTBEAT_TTL = 0.5, 2  # 30 and 90 s in production
        worker.heartbeat_worker_class()([worker.queue(client)], connection=connect(url, timeout=None)).work()
    else:
        worker.work(url, [worker.QUEUE])


def _start_stand_in(url: str, folder: Path, mode: str) -> subprocess.Popen:
    code = (f"from tests.test_redis_outages import _stand_in_worker; "
            f"_stand_in_worker({url!r}, {str(folder)!r}, {mode!r})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=open(folder / "worker.log", "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _auto_predictor(url: str, folder: Path):
    """The trainer's :class:`~labelhub.backend.auto_predict.AutoPredictor` of a backend on Redis (its ``_enqueue``
    is what the trainer runs for a request)."""
    from labelhub.backend.auto_predict import AutoPredictor
    from labelhub.backend.redis_state import RedisStore, connect
    from labelhub.backend.settings import Settings

    settings = Settings(model_dir=folder, auto_predict=True, label_studio_url="http://127.0.0.1:9",
                        label_studio_api_key="k", redis_url=url)
    return AutoPredictor(SimpleNamespace(settings=settings, store=RedisStore(connect(url), folder)))


def test_an_automatic_job_whose_worker_is_killed_mid_job_is_run_again_by_rq(tmp_path, monkeypatch):
    """The audit's sequence: the trainer enqueues a whole-project job, a worker takes it (the project's status says
    ``running``) and is SIGKILLed. When RQ's registry cleanup finds the job abandoned (a worker's maintenance, once the
    job's entry in the started registry expires: its worker's last heartbeat plus HEARTBEAT_TTL, 2 s in the worker
    here; before stop 56, JOB_TIMEOUT + 60 s: 4 hours), the job's ``Retry`` schedules it again instead of leaving it
    failed; RQ's scheduler in the next worker enqueues it and the new try runs: the status is no longer ``running``.
    While the worker lives, its heartbeats keep the job from being found abandoned past that TTL."""
    from rq.job import Job
    from rq.registry import StartedJobRegistry

    from labelhub.backend import worker
    from labelhub.backend.redis_state import connect, job_statuses

    monkeypatch.setattr(worker, "KILLED_RETRY_SECONDS", 1)  # 30 s in production
    with RedisServer(tmp_path / "redis") as server:
        url = f"{server.url}/0"
        client = connect(url)
        _auto_predictor(url, tmp_path / "trainer")._enqueue(KEY, None, True)
        job = Job.fetch(client.get(worker._queued_key(3)).decode(), connection=client)
        assert job.retries_left == worker.KILLED_RETRIES, job.retries_left

        (tmp_path / "killed").mkdir()
        killed = _start_stand_in(url, tmp_path / "killed", "hang")
        try:
            wait_for(lambda: client.get(STARTED), timeout=60, message="the job to start on the worker")
            assert job_statuses(client)[KEY]["state"] == "running"
            time.sleep(4)  # twice the worker's heartbeat TTL
            queue = worker.queue(client)
            StartedJobRegistry(queue=queue).cleanup()
            assert job.get_status() == "started"  # alive: its heartbeats renewed it
        finally:
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait(10)
        assert job.get_status() == "started"

        StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + 5)  # the TTL past its last heartbeat
        job.refresh()
        assert job.get_status() == "scheduled" and job.retries_left == worker.KILLED_RETRIES - 1

        (tmp_path / "next").mkdir()
        following = _start_stand_in(url, tmp_path / "next", "done")
        try:
            wait_for(lambda: job.get_status() == "finished", timeout=60,
                     message=f"the job run again; the worker said:\n{(tmp_path / 'next' / 'worker.log').read_text()}")
        finally:
            stop_process_group(following, 30)  # a warm stop, its scheduler's process with it
        assert job.return_value()["state"] == "done"
        assert job_statuses(client)[KEY]["state"] == "done"


def test_an_automatic_job_that_raises_is_tried_again_by_itself_not_also_by_rqs_retry(tmp_path, monkeypatch):
    """The job's own failures keep their backoff (one next try, scheduled by the job): the ``Retry`` it is enqueued
    with, for a worker that dies, is taken off before the exception reaches RQ, so RQ does not add a second try. The
    scheduled try carries the ``Retry`` too (its worker may die)."""
    from rq import SimpleWorker
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry

    from labelhub.backend import worker
    from labelhub.backend.redis_state import RedisStore, connect, job_statuses

    with RedisServer(tmp_path / "redis") as server:
        url = f"{server.url}/0"
        client = connect(url)
        host = SimpleNamespace(store=RedisStore(client, tmp_path / "worker"),
                               settings=SimpleNamespace(model_dir=tmp_path / "worker", redis_url=url,
                                                        label_studio_api_key="k"))

        def run_job(*args, **kwargs):
            raise RuntimeError("a bug in the job")

        monkeypatch.setattr(worker, "_worker_host", lambda: (host, None))
        monkeypatch.setattr(worker, "run_job", run_job)
        _auto_predictor(url, tmp_path / "trainer")._enqueue(KEY, [7, 8], False)
        queue = worker.queue(client)
        [job_id] = queue.job_ids
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            SimpleWorker([queue], connection=client).work(burst=True)
        finally:  # the worker installs its own
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

        job = Job.fetch(job_id, connection=client)
        assert job.get_status() == "failed"  # not scheduled again by RQ
        [next_try] = ScheduledJobRegistry(queue=queue).get_job_ids()
        assert next_try != job_id and queue.count == 0
        follow = Job.fetch(next_try, connection=client)
        assert follow.kwargs["attempt"] == 1 and follow.retries_left == worker.KILLED_RETRIES
        assert "a bug in the job" in job_statuses(client)[KEY]["error"]


def test_a_predict_run_ends_when_redis_loses_its_batches_jobs(tmp_path, caplog):
    """``labelhub predict`` on RQ (:func:`labelhub.backend.worker.on_workers`): one batch's RQ job is canceled, the
    other's is gone from Redis (evicted, or a Redis restarted without persistence): the planner ends, counting the
    lost batch's tasks as failed with the reason, instead of waiting for it forever."""
    from labelhub.backend import worker
    from labelhub.backend.redis_state import connect

    with RedisServer(tmp_path / "redis") as server:
        client = connect(f"{server.url}/0")
        queue = worker.queue(client)
        results, done = [], []

        def plan() -> None:
            execute = worker.on_workers(client, poll=0.05)
            results.extend(execute(None, None, SimpleNamespace(id=1), [[1, 2], [3, 4]], done.append))

        planner = threading.Thread(target=plan, daemon=True)
        with caplog.at_level(logging.WARNING, logger="labelhub.backend.worker"):
            planner.start()
            wait_for(lambda: queue.count == 2, timeout=10, message="the batches in the queue")
            first, second = queue.jobs
            first.cancel()
            client.delete(second.key)  # what an eviction, or a restart without persistence, leaves
            planner.join(10)
        assert not planner.is_alive(), "the planner still waits for a batch Redis lost"
    failed = {tid: reason for result in results for tid, reason in result.failed.items()}
    lost = second.args[1]
    assert sorted(failed) == [1, 2, 3, 4] and sum(done) == 4
    assert all(failed[tid] == worker.GONE_REASON for tid in lost), failed
    assert "gone from Redis" in worker.GONE_REASON
    gone = [r.getMessage() for r in caplog.records if "gone from Redis" in r.getMessage()]
    assert len(gone) == 1 and "1 of the job's batches (2 tasks)" in gone[0], gone


def test_the_trainer_thread_outlives_a_redis_restart_and_trains_after_it(tmp_path, caplog):
    """A Redis that cannot be reached while the trainer asks its lease (a restart) raised out of the trainer's loop
    and ended its thread: that process trained no more until restarted. Now it says so once, tries again, and trains
    the events that arrive after Redis is back."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import TEXT_CONFIG, annotation_event, project_payload, text_tasks

    payload = project_payload(5, label_config=TEXT_CONFIG)
    tasks, labels = text_tasks(40)
    with _Redis(tmp_path / "redis") as server, caplog.at_level(logging.INFO, logger="labelhub.backend.events"):
        app = create_app({"model_dir": tmp_path / "models", "warmup": False, "redis_url": server.url,
                          "trainer_lease": 2.0, "trainer_poll_interval": 0.05})
        trainer = app.extensions["labelhub"].trainer
        try:
            wait_for(lambda: trainer.is_leader, timeout=20, message="the trainer's lease")
            server.stop()
            time.sleep(3.0)  # the trainer asks its lease every batch: it cannot reach Redis meanwhile
            server.start()
            first = {label: task for task, label in zip(tasks, labels)}  # one task of each class
            for n, (label, task) in enumerate(first.items()):
                body = annotation_event(100 + n, task, label, project=payload)
                assert app.test_client().post("/webhook", json=body).status_code == 200

            def trained() -> bool:
                store = app.extensions["labelhub"].store
                keys = [k for k in store.known_projects() if k.startswith("5.")]
                return bool(keys) and str(store.project(keys[0]).kv().get("model_version", "")).startswith(
                    f"labelhub-{len(first)}-")

            wait_for(trained, timeout=60, message="a fit after Redis came back")
            assert trainer._thread.is_alive()
        finally:
            trainer.stop()
    said = [r.getMessage() for r in caplog.records if r.name == "labelhub.backend.events"]
    assert len([line for line in said if line.startswith("the trainer cannot take or keep its lease")]) == 1, said
    assert PASSWORD not in caplog.text
