"""Prediction jobs on RQ workers, for several hosts (``LABELHUB_REDIS_URL``; ``labelhub worker``).

With Redis, ``labelhub predict`` plans a job as always (:func:`labelhub.backend.jobs.run_job`), but its batches go
to an RQ queue
(https://python-rq.org/docs/, the job queue Label Studio itself runs on Redis), and every ``labelhub worker``
process, on any host, takes batches from it: :func:`predict_batch` loads the project's model from Redis
(:mod:`labelhub.backend.redis_state`) and runs :func:`labelhub.backend.jobs.run_batch`, which reads its tasks
again and writes their predictions to Label Studio in one call. RQ hands each queued batch to one worker;
the job's planner (:func:`on_workers`) waits for them and counts their results. The backend's automatic jobs
(:mod:`labelhub.backend.auto_predict`) are RQ jobs too, each planned and predicted whole by the worker that takes
it (:func:`predict_project`).

Each worker is an RQ ``SimpleWorker`` (no fork per job), so the embedders and models it loaded stay in
memory between batches. Its settings are the backend's environment variables (``LABELHUB_REDIS_URL``,
``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY``, ``MODEL_DIR`` as its cache, ...).

A batch whose worker dies is marked failed by RQ and not run again; its tasks are counted as failed, and a
re-run of the job predicts them (those written before the death are skipped). A planner that dies leaves
its queued batches to the workers; they still write each task at most once per version, since each batch
skips the tasks that have a prediction of the version when it starts.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any, Callable, Iterator

from labelhub.backend.job_status import BatchResult, batch_result
from labelhub.backend.jobs import Executor, JobAlreadyRunning, JobHost, run_batch, run_job
from labelhub.backend.labelstudio_api import LabelStudioClient, ProjectInfo

log = logging.getLogger(__name__)

__all__ = ["QUEUE", "JOB_TIMEOUT", "mark_queued", "unmark_queued", "predict_batch", "predict_project", "on_workers",
           "queue", "work"]

#: The RQ queue of LabelHub's batches (``--queue`` of ``labelhub worker``).
QUEUE = "labelhub"
#: Longest run of one batch on a worker, in seconds, before RQ stops it (500 tasks with OCR take minutes).
BATCH_TIMEOUT = 3600
#: Seconds between two looks of the planner at its batches.
POLL_SECONDS = 0.5
#: Seconds between two warnings of a planner whose batches no worker takes (none listens on the queue).
NO_WORKER_WARNING_SECONDS = 60.0
#: Seconds between two tries of an automatic job whose project has a job running.
LOCK_WAIT_SECONDS = 2.0
#: Longest run of one automatic job (:func:`predict_project`) on a worker, waits for a running job included.
JOB_TIMEOUT = BATCH_TIMEOUT * 4
#: Seconds the :func:`mark_queued` note of a job waiting on a worker for a running one lasts unless renewed.
WAITING_NOTE_SECONDS = 30

_HOST: tuple[Any, LabelStudioClient] | None = None


def _worker_host() -> tuple[Any, LabelStudioClient]:
    """This worker's backend (models, store in Redis) and Label Studio client, made once per process."""
    global _HOST
    if _HOST is None:
        from labelhub.backend.app import Backend
        from labelhub.backend.settings import Settings

        settings = Settings.from_env(start_trainer=False, warmup=False)
        if not settings.redis_url:
            raise RuntimeError("LABELHUB_REDIS_URL is not set in the worker's environment")
        _HOST = (Backend(settings), LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key))
    return _HOST


def predict_batch(project_id: int, task_ids: list[int]) -> dict:
    """The RQ job of one batch: :func:`labelhub.backend.jobs.run_batch` on this worker.

    Args:
        project_id: The Label Studio project id.
        task_ids: The batch.

    Returns:
        The :class:`~labelhub.backend.job_status.BatchResult` as a dict (RQ keeps it for the planner).

    Raises:
        Whatever ``run_batch`` raises (RQ marks the job failed; the planner counts its tasks as failed).
    """
    host, api = _worker_host()
    return asdict(run_batch(host, api, api.project(project_id), task_ids))


def _queued_key(project_id: int) -> str:
    from labelhub.backend.redis_state import PREFIX

    return f"{PREFIX}auto-predict:{int(project_id)}:queued"


def mark_queued(client, project_id: int, ttl: float = JOB_TIMEOUT, job_id: str = "") -> bool:
    """Note that a whole-project automatic job of ``project_id`` waits, unless one already does.

    The note (Redis key ``labelhub:auto-predict:<project id>:queued``, holding the RQ job's id) lasts until a
    worker takes the job (:func:`predict_project` removes it before planning), or ``ttl`` seconds at most:
    :data:`JOB_TIMEOUT` for a job in the queue (one no worker ever took does not hold back the next ones forever),
    :data:`WAITING_NOTE_SECONDS` for a job a worker holds while it waits for a running one (renewed at each try; a
    worker killed meanwhile holds back the next ones that long only). A note whose job RQ no longer has waiting or
    running (deleted from the queue by hand, ``rq empty``) holds nothing back: it is replaced.

    Args:
        client: The Redis client.
        project_id: The Label Studio project id.
        ttl: The note's life, in seconds.
        job_id: The id of the RQ job the caller enqueues (or, on a worker, runs).

    Returns:
        ``True`` when the caller should enqueue the job (none was waiting), ``False`` when one waits already: it
        plans when a worker takes it, so it predicts with the version the caller wanted, and the caller's
        request merges into it.
    """
    key, seconds = _queued_key(project_id), max(1, int(ttl))
    if client.set(key, job_id, nx=True, ex=seconds):
        return True
    held = client.get(key)
    if held is not None and _waiting_or_running(client, held.decode(errors="replace")):
        return False
    log.info("project %d: the whole-project job noted as queued (%s) is no longer in RQ: noting %s", project_id,
             held.decode(errors="replace") if held else "gone meanwhile", job_id or "a new one")
    client.set(key, job_id, ex=seconds)
    return True


def _waiting_or_running(client, job_id: str) -> bool:
    """Whether RQ holds job ``job_id`` queued, started, deferred or scheduled (not finished, failed, stopped,
    canceled or gone)."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    try:
        status = Job.fetch(job_id, connection=client).get_status()
    except (NoSuchJobError, ValueError):
        return False
    return status in ("queued", "started", "deferred", "scheduled")


def unmark_queued(client, project_id: int) -> None:
    """Remove the :func:`mark_queued` note of ``project_id`` (its job was taken, or could not be enqueued)."""
    client.delete(_queued_key(project_id))


def predict_project(project_id: int, task_ids: list[int] | None = None, unlabeled: bool = False,
                    keep_versions: int = 0) -> dict:
    """The RQ job of a whole automatic job (:mod:`labelhub.backend.auto_predict`): planned and predicted on this
    worker, batch after batch (:func:`labelhub.backend.jobs.run_here`); ``keep_versions`` is the enqueuing
    backend's ``LABELHUB_KEEP_VERSIONS`` (:func:`labelhub.backend.jobs.run_job`).

    Its batches are not queued for the other workers: a worker waiting for batches that only it could take
    (a single ``labelhub worker``, or every worker planning a job) would wait until RQ's timeout. While another
    job of the project runs (``labelhub predict``, or an earlier automatic job on another worker), it waits for
    it and then runs, so a request is never dropped; RQ's ``job_timeout`` bounds the wait.

    A whole-project job (``unlabeled``) removes its :func:`mark_queued` note before each try to plan, so that a
    retrain from then on enqueues a job of its own; while it waits for a running job it takes the note again,
    and when another whole-project job was enqueued meanwhile it leaves the work to that one (which will plan
    later, with a version at least as new) and returns at once: one waiting job per project, not one per retrain.

    Returns:
        The final :class:`~labelhub.backend.job_status.JobStatus` as a dict; ``{"project_id", "state": "merged"}`` when
        it left its work to a later job.
    """
    host, api = _worker_host()
    client = host.store.client if unlabeled else None
    while True:
        if client is not None:
            unmark_queued(client, project_id)
        try:
            status = run_job(host, api, project_id, task_ids=task_ids, unlabeled=unlabeled, progress=False,
                             keep_versions=keep_versions)
            return asdict(status)
        except JobAlreadyRunning:
            if client is not None and not mark_queued(client, project_id, WAITING_NOTE_SECONDS, _current_job_id()):
                log.info("project %d: a newer whole-project job is queued; this one leaves its work to it", project_id)
                return {"project_id": project_id, "state": "merged"}
            time.sleep(LOCK_WAIT_SECONDS)


def _current_job_id() -> str:
    """The id of the RQ job this worker runs (``""`` outside one)."""
    from rq import get_current_job

    job = get_current_job()
    return job.id if job is not None else ""


def queue(client, name: str = QUEUE):
    """The RQ queue ``name`` on ``client``."""
    from rq import Queue

    return Queue(name, connection=client)


def on_workers(client, name: str = QUEUE, poll: float = POLL_SECONDS) -> Executor:
    """An :data:`~labelhub.backend.jobs.Executor` that enqueues every batch on RQ and yields each result as a
    worker finishes it.

    Args:
        client: The Redis client.
        name: The RQ queue.
        poll: Seconds between two looks at the batches.

    Returns:
        The executor for :func:`labelhub.backend.jobs.run_job`'s ``execute``.
    """
    def execute(host: JobHost, api: LabelStudioClient, project: ProjectInfo, batches: list[list[int]],
                progress: Callable[[int], Any]) -> Iterator[BatchResult]:
        from rq import Worker
        from rq.job import Job

        q = queue(client, name)
        waiting = {}
        for batch in batches:
            job = q.enqueue(predict_batch, project.id, batch, job_timeout=BATCH_TIMEOUT, result_ttl=86400,
                            failure_ttl=86400, description=f"labelhub predict: project {project.id}, {len(batch)} tasks")
            waiting[job.id] = batch
        told = 0.0
        while waiting:
            if time.monotonic() - told >= NO_WORKER_WARNING_SECONDS:
                told = time.monotonic()
                if not Worker.count(connection=client, queue=q):  # found by a walkthrough: it waited without a word
                    log.warning("project %s: no `labelhub worker` takes batches from the RQ queue %r of this Redis "
                                "database: %d batches wait until one starts (with the same LABELHUB_REDIS_URL, "
                                "database number included)", project.id, name, len(waiting))
            for job in Job.fetch_many(list(waiting), connection=client):
                if job is None:
                    continue
                status = job.get_status(refresh=False)
                if status == "finished":
                    batch = waiting.pop(job.id)
                    progress(len(batch))
                    yield batch_result(job.return_value())
                elif status in ("failed", "stopped", "canceled"):
                    batch = waiting.pop(job.id)
                    reason = ((job.latest_result().exc_string or "").strip().splitlines() or [status])[-1] \
                        if job.latest_result() else status
                    progress(len(batch))
                    yield BatchResult(failed={tid: f"worker: {reason[:300]}" for tid in batch})
            if waiting:
                time.sleep(poll)

    return execute


def work(redis_url: str, queues: list[str], burst: bool = False, log_level: str = "INFO") -> None:
    """Run an RQ ``SimpleWorker`` on ``queues`` until SIGTERM or SIGINT (a warm stop: the batch in hand finishes).

    Args:
        redis_url: ``LABELHUB_REDIS_URL``.
        queues: RQ queue names.
        burst: Stop once the queues are empty.
        log_level: RQ's own log level (it logs each batch at INFO).

    Raises:
        redis.exceptions.ConnectionError: When Redis cannot be reached.
    """
    from rq import SimpleWorker

    from labelhub.backend.redis_state import connect

    client = connect(redis_url, timeout=None)
    client.ping()
    worker = SimpleWorker([queue(client, q) for q in queues], connection=client)
    worker.work(burst=burst, with_scheduler=False, logging_level=log_level)
