"""Prediction jobs on RQ workers, for several hosts (``LABELHUB_REDIS_URL``; ``labelhub worker``).

With Redis, ``labelhub predict`` plans a job as always (:func:`labelhub.backend.jobs.run_job`), but its batches go
to an RQ queue
(https://python-rq.org/docs/, the job queue Label Studio itself runs on Redis), and every ``labelhub worker``
process, on any host, takes batches from it: :func:`predict_batch` loads the project's model from Redis
(:mod:`labelhub.backend.redis_state`) and runs :func:`labelhub.backend.jobs.run_batch`, which reads its tasks
again and writes their predictions to Label Studio in one call. RQ hands each queued batch to one worker;
the job's planner (:func:`on_workers`) waits for them and counts their results; a planner stopped (Ctrl-C,
SIGTERM) cancels its batches no worker took yet (those a worker runs finish). The backend's automatic jobs
(:mod:`labelhub.backend.auto_predict`) are RQ jobs too, each planned and predicted whole by the worker that takes
it (:func:`predict_project`).

Each worker is an RQ ``SimpleWorker`` (no fork per job), so the embedders and models it loaded stay in
memory between batches. Its settings are the backend's environment variables (``LABELHUB_REDIS_URL``,
``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY``, ``MODEL_DIR`` as its cache, ...), its media ones included: it reads
the tasks' media itself, so tasks of a local repo or a private dataset (signed ``/files/...`` URLs) need the backend's
``LABELHUB_FILE_REPOS`` and ``LABELHUB_SECRET`` (and ``HF_TOKEN`` for a private Hub repo), else each fails (the
README's "Scaling out").

A batch whose worker dies is marked failed by RQ and not run again; its tasks are counted as failed, and a
re-run of the job predicts them (those written before the death are skipped). So are the tasks of a batch whose RQ
job Redis lost (a restart without persistence, an eviction): before, the planner waited for it forever
(:func:`_results`). A planner killed (``SIGKILL``) leaves its queued batches to the workers (one stopped by Ctrl-C
or SIGTERM cancels them: :func:`on_workers`); they still write each task at most once per version, since each batch
skips the tasks that have a prediction of the version when it starts.

An automatic job that fails on a worker (Label Studio down, a ``LABEL_STUDIO_API_KEY`` label-studio-sdk or Label
Studio refuses, any other error, the making of the worker's Label Studio client included) is kept as on one host
(:mod:`labelhub.backend.auto_predict`): its project's job status in the shared store (``labelhub:jobs``, every
replica's ``/health``) says ``failed`` with the reason (one line, no secret) and when it is tried again, and the job
enqueues its own next try with RQ's scheduler (``Queue.enqueue_in``) after the same backoff as the one-host loop
(:data:`~labelhub.backend.job_status.RETRY_SECONDS`, doubling with each failure in a row up to
:data:`~labelhub.backend.job_status.MAX_RETRY_SECONDS`; the try number is the job's ``attempt`` argument).
Decision: the job schedules its next try itself rather than through RQ's ``Retry``, which retries a bounded number
of times, retries every exception (a project that is gone too) and logs each failure with a traceback, nor
through the trainer's pending requests (:data:`~labelhub.backend.auto_predict.PENDING_KEY`), which only the
trainer's lease holder writes. Scheduled jobs are moved to the queue by RQ's scheduler, which ``labelhub worker``
runs (:func:`work` ``with_scheduler=True``: one across the workers of a Redis database, the others stand by). A
whole-project try holds the project's :func:`mark_queued` note while it is scheduled, so the retrains meanwhile merge
into it; when another whole-project job was enqueued during the failed one, that one does the work and no try is
scheduled. A job whose project or model is gone (``NotFoundError``) or whose label config the model refuses
(``LabelConfigError``) is dropped with a warning, not tried again. The worker logs one line for a failure that is
LabelHub's own (:class:`labelhub.errors.LabelHubError`); another exception is logged with its traceback and raised
to RQ after its next try is scheduled (RQ then marks the job failed; a LabelHub failure's RQ job ends ``finished``
with ``{"state": "failed", "error", "retry_in"}`` as its result).

An automatic job whose worker dies while it runs (``SIGKILL``, the OOM killer, a ``docker stop`` past its grace, a
lost host) raises nothing the job could catch, so it schedules no next try itself; before, nothing ran it again
until the next retrain, and ``/health`` said ``running`` for good (an audit). Each automatic job is therefore
enqueued with RQ's own ``Retry`` (:func:`retry_if_killed`; https://python-rq.org/docs/exceptions/): the registry
cleanup any worker runs every 10 minutes moves a job it finds abandoned back to the queue, :data:`KILLED_RETRY_SECONDS`
later (RQ's scheduler), instead of to the failed registry, at most :data:`KILLED_RETRIES` times; the new try
publishes its own job status. Decision: RQ's ``Retry`` rather than keeping the :func:`mark_queued` note until the job
ends (a dead worker's note only makes the next retrains merge into a job that never ends) or a failure callback
(more code for the same cleanup). The job's own failures keep the backoff above: a job that raises takes its
``Retry`` off first (:func:`_failed`), so it is not tried twice. RQ finds a job abandoned once its entry in the
started registry expires: ``labelhub worker`` (:func:`heartbeat_worker_class`) renews it every
:data:`HEARTBEAT_SECONDS` while the job runs, for :data:`HEARTBEAT_TTL`, as RQ's forking worker does, so a dead
worker's job is found at the first cleanup past that (within about 12 minutes), not at the job's timeout (RQ's
``SimpleWorker`` sets the entry once, for :data:`JOB_TIMEOUT` plus 60 s: 4 hours, found by an audit at stop 55). A
job whose worker dies at each try (one that runs it out of memory) stays failed in RQ after its last one. A batch of
``labelhub predict`` whose worker dies is likewise found abandoned then (it is not tried again: the planner counts
its tasks as failed, and ``labelhub predict --missing`` predicts them).
"""
from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import asdict
from datetime import timedelta
from typing import Any, Callable, Iterator

from labelhub.backend.job_status import BatchResult, batch_result, log_job_done
from labelhub.backend.jobs import Executor, JobAlreadyRunning, JobHost, run_batch, run_job
from labelhub.backend.labelstudio_api import LabelStudioClient, ProjectInfo

log = logging.getLogger(__name__)

__all__ = ["QUEUE", "JOB_TIMEOUT", "KILLED_RETRIES", "KILLED_RETRY_SECONDS", "mark_queued", "unmark_queued",
           "retry_if_killed", "predict_batch", "predict_project", "on_workers", "queue", "work",
           "heartbeat_worker_class", "HEARTBEAT_SECONDS", "HEARTBEAT_TTL"]

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
#: Tries RQ gives an automatic job again when the worker running it dies (:func:`retry_if_killed`).
KILLED_RETRIES = 3
#: Seconds between RQ finding an automatic job abandoned by its dead worker and its next try (RQ's scheduler, which
#: ``labelhub worker`` runs, enqueues it then).
KILLED_RETRY_SECONDS = 30

#: Seconds between two renewals of a running job's entry in RQ's started registry (RQ's ``job_monitoring_interval``).
HEARTBEAT_SECONDS = 30
#: Seconds a running job's entry in RQ's started registry lasts unless renewed (as RQ's forking worker sets it).
HEARTBEAT_TTL = HEARTBEAT_SECONDS + 60

_BACKEND: Any = None
_API: LabelStudioClient | None = None


def _worker_backend() -> Any:
    """This worker's backend (settings, models, store in Redis), made once per process.

    Raises:
        RuntimeError: ``LABELHUB_REDIS_URL`` is not set.
    """
    global _BACKEND
    if _BACKEND is None:
        from labelhub.backend.app import Backend
        from labelhub.backend.settings import Settings

        settings = Settings.from_env(start_trainer=False, warmup=False)
        if not settings.redis_url:
            raise RuntimeError("LABELHUB_REDIS_URL is not set in the worker's environment")
        _BACKEND = Backend(settings)
    return _BACKEND


def _worker_api(host: Any) -> LabelStudioClient:
    """This worker's Label Studio client, made once per process (made again at each job while it cannot be made).

    Raises:
        labelhub.errors.LabelStudioError: label-studio-sdk refuses the key (an expired personal access token).
    """
    global _API
    if _API is None:
        _API = LabelStudioClient(host.settings.label_studio_url, host.settings.label_studio_api_key)
    return _API


def _worker_host() -> tuple[Any, LabelStudioClient]:
    """This worker's backend and Label Studio client (:func:`_worker_backend`, :func:`_worker_api`)."""
    host = _worker_backend()
    return host, _worker_api(host)


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


def retry_if_killed():
    """RQ's ``Retry`` of every automatic job (:func:`predict_project`) for the case its worker dies while it runs
    (see the module docstring): :data:`KILLED_RETRIES` tries, each :data:`KILLED_RETRY_SECONDS` after RQ finds the
    job abandoned. A job that fails with an exception schedules its own next try instead (:func:`_failed`).

    Returns:
        An :class:`rq.Retry`, for ``Queue.enqueue``'s and ``Queue.enqueue_in``'s ``retry``.
    """
    from rq import Retry

    return Retry(max=KILLED_RETRIES, interval=KILLED_RETRY_SECONDS)


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
                    keep_versions: int = 0, key: str = "", attempt: int = 0) -> dict:
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

    A failure is kept and tried again later (see the module docstring: :func:`_failed`).

    Args:
        project_id: The Label Studio project id.
        task_ids: The new tasks to predict (``None`` with ``unlabeled``).
        unlabeled: Every unlabeled task of the project.
        keep_versions: ``LABELHUB_KEEP_VERSIONS`` of the enqueuing backend.
        key: The project key (``"<id>.<created_at>"``) its job status is saved under when the job fails before it
            reads the project from Label Studio (``""``, as jobs enqueued before it was passed: the one key in Redis
            with that id).
        attempt: Failures in a row before this try (0: the first try).

    Returns:
        The final :class:`~labelhub.backend.job_status.JobStatus` as a dict; ``{"project_id", "state": "merged"}`` when
        it left its work to a later job; ``{"project_id", "state": "dropped", "error"}`` when its project or model is
        gone; ``{"project_id", "state": "failed", "error", "retry_in"}`` when it failed (``retry_in``: seconds until
        its next try, ``None`` when another queued job does the work).

    Raises:
        Whatever is not a :class:`labelhub.errors.LabelHubError` (a bug), after its failure was saved and its next
        try scheduled; whatever the worker's backend raises when it cannot be made (no store to save a status in).
    """
    from labelhub.errors import LabelConfigError, NotFoundError

    host, started = None, time.time()
    try:
        host, api = _worker_host()
        client = host.store.client if unlabeled else None
        while True:
            if client is not None:
                unmark_queued(client, project_id)
            try:
                status = run_job(host, api, project_id, task_ids=task_ids, unlabeled=unlabeled, progress=False,
                                 keep_versions=keep_versions, origin="auto-predict")
                log_job_done(getattr(status, "project", key or project_id), status, log)
                return asdict(status)
            except JobAlreadyRunning:
                if client is not None and not mark_queued(client, project_id, WAITING_NOTE_SECONDS,
                                                          _current_job_id()):
                    log.info("project %d: a newer whole-project job is queued; this one leaves its work to it",
                             project_id)
                    return {"project_id": project_id, "state": "merged"}
                time.sleep(LOCK_WAIT_SECONDS)
    except (NotFoundError, LabelConfigError) as exc:  # the project, or its model, is gone: no retry helps
        reason = _reason(host or _worker_backend(), exc)
        log.warning("project %s: auto-predict dropped its request: %s", key or project_id, reason)
        if key and host is not None and isinstance(exc, NotFoundError):  # deleted in Label Studio? (marked gone)
            from labelhub.backend.project_check import mark_if_gone

            mark_if_gone(host.store, api, key)
        if key:  # its "queued" status (auto_predict._note_queued) must not stay
            from redis.exceptions import RedisError

            from labelhub.backend.job_status import save_auto_failure

            try:
                save_auto_failure((host or _worker_backend()).settings.model_dir, (host or _worker_backend()).store,
                                  key, project_id, started, reason, "dropped, not tried again", task_ids, unlabeled)
            except (OSError, RedisError) as exc2:
                log.info("project %s: cannot save the dropped job's status: %s", key, _reason(host or _worker_backend(),
                                                                                               exc2))
        return {"project_id": project_id, "state": "dropped", "error": reason}
    except Exception as exc:
        return _failed(host or _worker_backend(), exc, started, project_id, task_ids, unlabeled, keep_versions, key,
                       attempt)


def _reason(host: Any, exc: BaseException) -> str:
    """``exc`` as one line of at most 300 characters, without the worker's secrets."""
    from labelhub.redaction import one_line, redact

    settings = host.settings
    return redact(one_line(exc, 300), [settings.label_studio_api_key, settings.redis_url])


def _failed(host: Any, exc: Exception, started: float, project_id: int, task_ids: list[int] | None,
            unlabeled: bool, keep_versions: int, key: str, attempt: int) -> dict:
    """Keep a failed automatic job: schedule its next try after the backoff, save the project's ``failed`` status
    (the one :func:`labelhub.backend.jobs.run_job` saved, when it got that far, else a new one) in the shared store
    and this worker's ``MODEL_DIR``, and log one line (a traceback for an exception that is not LabelHub's, which is
    raised again).

    Returns:
        ``{"project_id", "state": "failed", "error", "retry_in"}`` (``retry_in``: ``None`` when no try was scheduled).
    """
    from redis.exceptions import RedisError

    from labelhub.backend.job_status import MAX_RETRY_SECONDS, RETRY_SECONDS, save_auto_failure
    from labelhub.errors import LabelHubError

    reason = _reason(host, exc)
    wait = min(RETRY_SECONDS * 2 ** attempt, MAX_RETRY_SECONDS)
    key = key or _project_key(host, project_id)
    retry_in: float | None = None
    try:
        retry_in = _schedule_retry(host.store.client, wait, project_id, task_ids, unlabeled, keep_versions, key,
                                   attempt + 1)
    except RedisError as exc2:
        log.warning("project %s: cannot schedule the next try of the failed auto-predict job: %s", key or project_id,
                    _reason(host, exc2))
    later = f"tries again in {retry_in:.0f} s" if retry_in is not None else "a queued job of the project tries again"
    if key:
        try:
            save_auto_failure(host.settings.model_dir, host.store, key, project_id, started, reason, later, task_ids,
                              unlabeled)
        except (OSError, RedisError) as exc2:
            log.warning("project %s: cannot save the failed auto-predict status: %s", key, _reason(host, exc2))
    if isinstance(exc, LabelHubError):
        log.warning("project %s: auto-predict failed on this worker: %s; %s", key or project_id, reason, later)
    else:
        log.error("project %s: auto-predict failed on this worker: %s; %s", key or project_id, reason, later,
                  exc_info=exc)
        _no_rq_retry()
        raise exc
    return {"project_id": project_id, "state": "failed", "error": reason, "retry_in": retry_in}


def _no_rq_retry() -> None:
    """Take RQ's ``Retry`` (:func:`retry_if_killed`) off the job this worker runs, before an exception is raised to
    RQ: its next try is already scheduled (:func:`_failed`), and RQ would add one of its own. RQ reads the tries left
    from the job it runs, which :func:`rq.get_current_job` returns."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        job.retries_left = 0


def _project_key(host: Any, project_id: int) -> str:
    """The key in Redis of project ``project_id`` (``""`` when none, or more than one, has that id)."""
    keys = [k for k in host.store.known_projects() if k.split(".")[0] == str(int(project_id))]
    return keys[0] if len(keys) == 1 else ""


def _schedule_retry(client, wait: float, project_id: int, task_ids: list[int] | None, unlabeled: bool,
                    keep_versions: int, key: str, attempt: int) -> float | None:
    """Enqueue the next try of an automatic job in ``wait`` seconds (RQ's scheduler moves it to the queue then).

    A whole-project try takes the project's :func:`mark_queued` note (so the requests meanwhile merge into it);
    when another whole-project job holds it, that one does the work and nothing is scheduled.

    Returns:
        ``wait``, or ``None`` when nothing was scheduled.

    Raises:
        redis.exceptions.RedisError: Redis failed (the note is removed again).
    """
    current, job_id = _current_job_id(), uuid.uuid4().hex
    if unlabeled:
        held = client.get(_queued_key(project_id))
        if held is not None and current and held.decode(errors="replace") == current:
            unmark_queued(client, project_id)  # this failed job's own note
        if not mark_queued(client, project_id, JOB_TIMEOUT + wait, job_id):
            log.info("project %d: a whole-project job is queued; it does the failed job's work", project_id)
            return None
    try:
        from rq import get_current_job

        job = get_current_job()
        queue(client, job.origin if job is not None else QUEUE).enqueue_in(
            timedelta(seconds=wait), predict_project, project_id, task_ids, unlabeled, keep_versions, key=key,
            attempt=attempt, job_id=job_id, job_timeout=JOB_TIMEOUT, result_ttl=86400, failure_ttl=86400,
            retry=retry_if_killed(),
            description=f"labelhub auto-predict: project {key or project_id}, try {attempt + 1}")
    except Exception:
        if unlabeled:
            unmark_queued(client, project_id)
        raise
    return wait


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
        q = queue(client, name)
        waiting: dict[str, list[int]] = {}
        try:
            for batch in batches:
                job = q.enqueue(predict_batch, project.id, batch, job_timeout=BATCH_TIMEOUT, result_ttl=86400,
                                failure_ttl=86400,
                                description=f"labelhub predict: project {project.id}, {len(batch)} tasks")
                waiting[job.id] = batch
            yield from _results(client, q, project, waiting, progress, poll)
        finally:  # Ctrl-C, SIGTERM, an error of the planner (run_job closes this generator): no batch runs later
            if waiting:
                _cancel_queued(client, project.id, waiting)

    return execute


def _cancel_queued(client, project_id: int, waiting: dict[str, list[int]]) -> None:
    """Cancel the RQ jobs of ``waiting`` (a planner's batches not finished) that no worker took yet, and log what was
    done: before, a ``labelhub predict`` stopped by Ctrl-C left its batches queued, and workers ran them later (an
    audit). The batches a worker already runs finish (RQ cannot take a batch back from a ``SimpleWorker`` without
    stopping it); each still writes at most one prediction per task and version. A Redis error is logged."""
    from redis.exceptions import RedisError
    from rq.job import Job

    canceled = started = 0
    try:
        for job in Job.fetch_many(list(waiting), connection=client):
            if job is None:
                continue
            status = job.get_status(refresh=False)
            if status in ("queued", "deferred", "scheduled"):
                job.cancel()
                canceled += 1
            elif status == "started":
                started += 1
    except RedisError as exc:
        log.warning("project %s: cannot cancel the stopped job's queued batches (%s): workers may still run them",
                    project_id, exc)
        return
    log.warning("project %s: the job stopped: %d of its queued batches canceled, %d already on a worker finish there",
                project_id, canceled, started)


#: Why the tasks of a batch whose RQ job Redis no longer holds are counted as failed (:func:`_results`).
GONE_REASON = ("worker: its RQ job is gone from Redis (a Redis restart without persistence, an eviction, or a "
               "deletion): not predicted; run the job again to predict it")


def _results(client, q, project: ProjectInfo, waiting: dict[str, list[int]], progress: Callable[[int], Any],
             poll: float) -> Iterator[BatchResult]:
    """Yield each batch's :class:`BatchResult` as a worker finishes it, removing it from ``waiting``; warn every
    :data:`NO_WORKER_WARNING_SECONDS` while no worker listens on the queue.

    A batch whose RQ job Redis no longer holds (a Redis restarted without persistence, or that lost its last second
    of writes, an eviction, ``rq empty``) yields its tasks as failed (:data:`GONE_REASON`, with one warning): before,
    the planner waited for it forever, holding the project's job lock. Decision: counted as failed, not enqueued
    again, because a worker may still be predicting the batch whose job vanished, and a copy started meanwhile would
    write the same tasks again (a batch skips only the tasks that have the version when it starts); the job's
    status says how many failed and why, and a re-run predicts them, skipping those written (as for a batch whose
    worker died).

    Raises:
        redis.exceptions.RedisError: When Redis cannot be read (the job stops; :func:`on_workers` tries to cancel its
            queued batches).
    """
    from rq import Worker
    from rq.job import Job

    name, told = q.name, 0.0
    while waiting:
        if time.monotonic() - told >= NO_WORKER_WARNING_SECONDS:
            told = time.monotonic()
            if not Worker.count(connection=client, queue=q):  # found by a walkthrough: it waited without a word
                log.warning("project %s: no `labelhub worker` takes batches from the RQ queue %r of this Redis "
                            "database: %d batches wait until one starts (with the same LABELHUB_REDIS_URL, "
                            "database number included)", project.id, name, len(waiting))
        ids, gone = list(waiting), []
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=client)):
            if job is None:  # Redis no longer holds it
                gone.append(job_id)
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
        if gone:
            lost = [tid for job_id in gone for tid in waiting.pop(job_id)]
            log.warning("project %s: %d of the job's batches (%d tasks) are gone from Redis's RQ queue %r (a Redis "
                        "restart without persistence, an eviction, or a deletion): their tasks count as failed; run "
                        "the job again to predict them", project.id, len(gone), len(lost), name)
            progress(len(lost))
            yield BatchResult(failed={tid: GONE_REASON for tid in lost})
        if waiting:
            time.sleep(poll)


def work(redis_url: str, queues: list[str], burst: bool = False, log_level: str = "INFO") -> None:
    """Run an RQ ``SimpleWorker`` that renews its job's heartbeat (:func:`heartbeat_worker_class`) on ``queues`` until
    SIGTERM or SIGINT (a warm stop: the batch in hand finishes),
    with RQ's scheduler (``with_scheduler=True``), which enqueues the failed automatic jobs' next tries when they
    are due (one worker of the Redis database runs it, in a process of its own; the others take over when it stops).

    Args:
        redis_url: ``LABELHUB_REDIS_URL``.
        queues: RQ queue names.
        burst: Stop once the queues are empty.
        log_level: RQ's own log level (it logs each batch at INFO).

    Raises:
        redis.exceptions.ConnectionError: When Redis cannot be reached.
    """
    from labelhub.backend.redis_state import connect

    client = connect(redis_url, timeout=None)
    client.ping()
    worker = heartbeat_worker_class()([queue(client, q) for q in queues], connection=client)
    worker.work(burst=burst, with_scheduler=True, logging_level=log_level)


@functools.cache
def heartbeat_worker_class() -> type:
    """RQ's ``SimpleWorker`` (each job in the worker's own process, which keeps its loaded models between jobs) that
    renews the running job's entry in the started registry, and its own registration, every
    :data:`HEARTBEAT_SECONDS` from a thread while the job runs, for :data:`HEARTBEAT_TTL` seconds.

    ``SimpleWorker`` runs the job in the thread that would send RQ's heartbeats, so it sets the entry once, for the
    job's whole timeout plus 60 s (:data:`JOB_TIMEOUT`: 4 hours for an automatic job): a worker killed mid-job
    left its job ``started``, and its status ``running``, that long. RQ's registry cleanup
    (https://python-rq.org/docs/jobs/#abandoned-jobs) now finds such a job at the first cleanup past
    :data:`HEARTBEAT_TTL`. A job that runs past its timeout is still stopped by RQ's own death penalty.

    Returns:
        The class (made on first call: ``rq`` is imported only where Redis is used).
    """
    import threading

    from rq import SimpleWorker

    class HeartbeatWorker(SimpleWorker):
        __doc__ = heartbeat_worker_class.__doc__

        def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
            return HEARTBEAT_TTL

        def execute_job(self, job, queue) -> None:
            done = threading.Event()
            beat = threading.Thread(target=self._renew, args=(job, done), name="rq-heartbeat", daemon=True)
            beat.start()
            try:
                super().execute_job(job, queue)
            finally:
                done.set()
                beat.join()

        def _renew(self, job, done: threading.Event) -> None:
            while not done.wait(HEARTBEAT_SECONDS):
                try:
                    execution = self.execution
                    if execution is None:
                        continue
                    with self.connection.pipeline() as pipeline:
                        self.heartbeat(max(HEARTBEAT_TTL, self.worker_ttl + 60), pipeline=pipeline)
                        execution.heartbeat(job.started_job_registry, HEARTBEAT_TTL, pipeline=pipeline)
                        pipeline.execute()
                except Exception as exc:  # noqa: BLE001 (Redis away a moment: the next beat tries again)
                    log.warning("job %s: its heartbeat to Redis failed (%s); trying again in %d s", job.id,
                                type(exc).__name__, HEARTBEAT_SECONDS)

    return HeartbeatWorker
