"""Prediction jobs the backend starts by itself (``LABELHUB_AUTO_PREDICT=true``).

Three moments start one, all seen by the trainer (:class:`labelhub.backend.events.Trainer`, one across every
worker and host):

- a ``TASKS_CREATED`` webhook (an import, the sync's new files): a job of those tasks, ``missing`` mode;
- a retrain that moved the project's ``model_version``: a job of the project's unlabeled tasks, the most
  uncertain first (:func:`labelhub.backend.jobs.plan`), so that sorting the Data Manager by prediction score
  stays current for active learning;
- a ``/setup`` whose Extra params differ from the stored ones, for a project with a fit (the version served may
  have moved without a fit: :data:`labelhub.backend.events.PARAMS_CHANGED`): the same job of the unlabeled tasks.

The job is :func:`labelhub.backend.jobs.run_job`, as ``labelhub predict`` runs it: through Label Studio's API
(``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY``), one write per batch, status on ``/health``, at most one
prediction per task and version. On one host it runs in a background thread of the trainer's worker; requests
that arrive while a job of the project runs are merged into the next one (one whole-project request covers
any task ids), and a project's whole-project jobs start at most once per ``LABELHUB_AUTO_PREDICT_INTERVAL`` seconds
(default 30): each writes a prediction per unlabeled task, and with a retrain every few labels they wrote 27,638
predictions for 428 tasks in 25 minutes (a soak of four annotators), which Label Studio keeps, lists and slows on.
The requests not yet done are kept in ``MODEL_DIR/auto-predict.json`` (:data:`PENDING_FILE`), so a restart asks
for them again when the trainer starts (:meth:`AutoPredictor.resume_interrupted`): new tasks would otherwise wait
for the next retrain, and the Data Manager's order for the next version. A request whose job fails (Label Studio
down, a wrong ``LABEL_STUDIO_API_KEY``) stays: it is tried again after :data:`RETRY_SECONDS` (doubling with each
failure up to :data:`MAX_RETRY_SECONDS`) and after a restart, and the project's job status on ``/health`` says
``failed`` with the reason (no secret) meanwhile; one whose project or model is gone (``NotFoundError``: deleted
in Label Studio, or not in ``MODEL_DIR``) or whose label config the model refuses is dropped, with a warning; a
project Label Studio then says it does not have is marked gone (:func:`labelhub.backend.project_check.mark_if_gone`). When the trainer starts, the key is checked once
(:func:`check_key`): a refused key is a warning in the log at once, not at the first retrain.

With ``LABELHUB_REDIS_URL`` the same loop, on the trainer's host, enqueues each request on RQ instead of running
it (:func:`labelhub.backend.worker.predict_project`), after the same interval, and ``labelhub worker``
processes on any host plan and predict it. A project's whole-project job is not enqueued while another waits in
the queue (:func:`labelhub.backend.worker.mark_queued`): that one plans with the newest version. Before both,
every retrain enqueued one job. An enqueued job's status is published as ``queued`` (``/health``, ``labelhub
predict --status``) and a warning says when no ``labelhub worker`` listens on the queue
(:meth:`AutoPredictor._note_queued`, :meth:`AutoPredictor._warn_if_no_worker`). The requests not enqueued yet
are kept in Redis (:data:`PENDING_KEY`) instead of
the file, so the trainer's next holder finds them on whichever host it runs. A job that fails on a worker is kept
there, with the same backoff and ``/health`` status (:mod:`labelhub.backend.worker`: the job schedules its own next
try on RQ), and one whose worker dies while it runs is run again by RQ (its ``Retry``); this loop's retry then covers
a failure to enqueue. The workers run the jobs with their own
``LABEL_STUDIO_API_KEY``: the trainer's key check says what its replica's refused key stops (``who="replica"``).
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

from redis.exceptions import RedisError

from labelhub.backend.job_status import MAX_RETRY_SECONDS, RETRY_SECONDS, log_job_done  # retries: as the workers'
from labelhub.backend.redis_state import PREFIX
from labelhub.backend.state import project_id_of  # noqa: F401 (re-exported: callers import it from here)
from labelhub.errors import LabelConfigError, NotFoundError
from labelhub.redaction import one_line

log = logging.getLogger(__name__)

__all__ = ["AutoPredictor", "project_id_of", "check_key", "PENDING_FILE", "PENDING_KEY",
           "RETRY_SECONDS",
           "MAX_RETRY_SECONDS"]

#: The one-host requests not done yet, under ``MODEL_DIR``: ``{project key: {"unlabeled": bool, "task_ids": [id]}}``
#: (the one running included until it ends), rewritten atomically on each change.
PENDING_FILE = "auto-predict.json"
#: The same with ``LABELHUB_REDIS_URL``, in Redis (JSON), so that the trainer's next holder, on any host, finds them.
PENDING_KEY = PREFIX + "auto-predict:pending"
#: Seconds the key check at start waits for Label Studio.
KEY_CHECK_TIMEOUT = 10.0


#: What a refused key stops, by whose key it is (:func:`check_key`'s ``who``).
KEY_REFUSED_EFFECTS = {
    "auto-predict": "no automatic prediction job can run until it is fixed",
    "replica": ("on this replica, Start training cannot read the projects' annotations and the webhook cannot check "
                "whether an unknown project exists until it is fixed (the automatic prediction jobs run on the "
                "`labelhub worker` processes, with their own LABEL_STUDIO_API_KEY)"),
    "worker": ("every prediction job this worker takes fails until it is fixed (the automatic ones are tried again "
               "later, on any worker)"),
}


def check_key(url: str, api_key: str, who: str = "auto-predict") -> str | None:
    """Check ``LABEL_STUDIO_API_KEY`` once against Label Studio (``GET /api/current-user/whoami``, through
    label-studio-sdk's ``users.whoami``: https://api.labelstud.io/api-reference/api-reference/users/whoami).

    Args:
        url: ``LABEL_STUDIO_URL``.
        api_key: ``LABEL_STUDIO_API_KEY``.
        who: Whose key it is, which says what a refusal stops (:data:`KEY_REFUSED_EFFECTS`): ``"auto-predict"``,
            the trainer of one host (it runs the automatic jobs); ``"replica"``, the trainer's replica with
            ``LABELHUB_REDIS_URL`` (the workers run the jobs, with their own keys); ``"worker"``, a
            ``labelhub worker``.

    Returns:
        ``None`` when Label Studio accepts the key, else a warning (one line, no secret): the key refused (by Label
        Studio, or by label-studio-sdk before any call: an expired personal access token, see
        :func:`labelhub.labelstudio_client.label_studio_client`), or Label Studio not reachable (then the key is not
        known to be wrong: the jobs try it when they run).

    Raises:
        ValueError: An unknown ``who``.
    """
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    from labelhub.errors import LabelStudioError
    from labelhub.labelstudio_client import KEY_ADVICE, label_studio_client
    from labelhub.redaction import without_userinfo

    if who not in KEY_REFUSED_EFFECTS:
        raise ValueError(f"who must be one of {', '.join(KEY_REFUSED_EFFECTS)}, not {who!r}")
    effect = KEY_REFUSED_EFFECTS[who]
    lead, whose = {"auto-predict": ("LABELHUB_AUTO_PREDICT is on but ", ""), "replica": ("", "this replica's "),
                   "worker": ("", "this worker's ")}[who]
    shown = without_userinfo(url)
    try:
        label_studio_client(url, api_key, KEY_CHECK_TIMEOUT).users.whoami()
    except LabelStudioError as exc:  # a key label-studio-sdk refuses before any call (an expired token)
        return f"{lead}{whose}{exc}; {effect}"
    except ApiError as exc:
        if exc.status_code in (401, 403):
            return (f"{lead}Label Studio at {shown} refused {whose}LABEL_STUDIO_API_KEY ({exc.status_code}): "
                    f"{effect}; {KEY_ADVICE}")
        return f"cannot check {whose}LABEL_STUDIO_API_KEY: Label Studio at {shown} answered {exc.status_code}"
    except (httpx.HTTPError, OSError) as exc:
        return (f"cannot check {whose}LABEL_STUDIO_API_KEY: no answer from Label Studio at {shown} "
                f"({type(exc).__name__}); the prediction jobs try it when they run")
    return None


class AutoPredictor:
    """Queues and runs the automatic prediction jobs of a backend (see the module docstring).

    Args:
        backend: The running backend (:class:`labelhub.backend.app.Backend`): settings, store, models, metrics.
    """

    def __init__(self, backend: Any):
        self.backend = backend
        self.settings = backend.settings
        self._pending: dict[str, tuple[bool, set[int]]] = {}  # key -> (whole project unlabeled, task ids)
        self._retry: dict[str, tuple[float, int]] = {}  # key -> (not before (monotonic), failures in a row)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._warned = False
        self._running = False
        self._current: tuple[str, bool, set[int]] | None = None  # the request being run
        self._last_whole: dict[str, float] = {}  # key -> when its last whole-project job started (monotonic)
        self._told_no_worker = -float("inf")  # when the last "no labelhub worker" warning was logged (monotonic)

    @property
    def enabled(self) -> bool:
        """Whether jobs start by themselves (the setting is on and Label Studio's URL and key are known)."""
        if not self.settings.auto_predict:
            return False
        if not (self.settings.label_studio_url and self.settings.label_studio_api_key):
            if not self._warned:
                self._warned = True
                log.warning("LABELHUB_AUTO_PREDICT is on but LABEL_STUDIO_URL or LABEL_STUDIO_API_KEY is not set: "
                            "no automatic prediction jobs")
            return False
        return True

    def request(self, key: str, task_ids: list[int] | None = None, unlabeled: bool = False) -> None:
        """Ask for a job of project ``key``: ``task_ids`` (new tasks) or, with ``unlabeled``, every unlabeled task.

        Returns at once; the job runs in the background (one host) or on RQ workers (Redis).
        """
        if not self.enabled or (not unlabeled and not task_ids):
            return
        with self._cond:
            whole, ids = self._pending.get(key, (False, set()))
            self._pending[key] = (whole or unlabeled, set() if (whole or unlabeled) else ids | set(task_ids or ()))
            self._save()
            self._cond.notify()
            # an ending loop clears _thread under this lock: is_alive() alone answered True while a loop was
            # between its decision to end and its end, and the request waited for the next one
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="labelhub-auto-predict", daemon=True)
                self._thread.start()

    def resume_interrupted(self) -> None:
        """Ask again for every automatic job whose process died before it ended (one host: ``MODEL_DIR/jobs``), so
        that a job cut short by a restart goes on where it stopped, and every request the trainer had not started or
        enqueued yet (:data:`PENDING_FILE`). Decision: only a status of origin ``"auto-predict"`` is resumed; a
        ``labelhub predict`` interrupted is left to whoever ran it (its status says ``interrupted``; a line at INFO
        says to run the same command again, which goes on where it stopped): this loop runs every unlabeled task or
        some task ids, and resumed a ``--filter`` or ``--view`` job as a job of every unlabeled task (an audit:
        predictions on a held-out split the user had left out). Called by the trainer when it takes over. With
        Redis, RQ keeps the enqueued jobs across restarts and runs again one whose worker died while it ran (RQ's
        ``Retry``: :func:`labelhub.backend.worker.retry_if_killed`), and only the requests not enqueued yet are asked
        again (:data:`PENDING_KEY`: those of the trainer's last holder, on any host)."""
        if not self.enabled:
            return
        from labelhub.backend.job_status import read_statuses

        problem = check_key(self.settings.label_studio_url, self.settings.label_studio_api_key,
                            "replica" if self.settings.redis_url else "auto-predict")
        if problem:
            log.warning("%s", problem)

        for key, request in self._saved().items():
            log.info("project %s: asking again for the prediction job requested before the restart", key)
            self.request(key, task_ids=request["task_ids"], unlabeled=request["unlabeled"])
        if self.settings.redis_url:
            return
        for key, status in read_statuses(self.settings.model_dir).items():
            if status.get("state") != "interrupted":
                continue
            if status.get("origin") != "auto-predict":
                log.info("project %s: the %s job interrupted at %d of %d tasks is not resumed (the backend resumes "
                         "only its automatic jobs; its selection is its caller's): run the same command again", key,
                         status.get("origin") or "prediction", status.get("done", 0), status.get("total", 0))
                continue
            try:
                selection = json.loads(status.get("selection") or "{}")
            except ValueError:
                selection = {}
            log.info("project %s: resuming the prediction job interrupted at %d of %d tasks", key,
                     status.get("done", 0), status.get("total", 0))
            self.request(key, task_ids=selection.get("task_ids"), unlabeled=bool(selection.get("unlabeled")) or
                         not selection.get("task_ids"))

    def _enqueue(self, key: str, task_ids: list[int] | None, unlabeled: bool) -> None:
        """Enqueue the job on RQ (Redis). A whole-project job is not enqueued while another of the project waits
        in the queue (:func:`labelhub.backend.worker.mark_queued`): that one plans with the newest version when a
        worker takes it. The job gets the project key, under which the worker saves its status when it fails before
        reading the project (its Label Studio client refused), and tries itself again after a failure
        (:func:`labelhub.backend.worker.predict_project`): this loop's retry covers only a failure to enqueue. RQ runs
        it again when its worker dies while it runs (:func:`labelhub.backend.worker.retry_if_killed`)."""
        from labelhub.backend.worker import JOB_TIMEOUT, mark_queued, predict_project, queue, retry_if_killed, \
            unmark_queued

        client, project_id, job_id = self.backend.store.client, project_id_of(key), uuid.uuid4().hex
        if unlabeled and not mark_queued(client, project_id, job_id=job_id):
            log.debug("project %s: a whole-project job is already queued; it will predict the newest version", key)
            self._note_queued(key, None, True)  # the waiting job's status names the version it will predict
            self._warn_if_no_worker(key)
            return
        try:
            queue(client).enqueue(
                predict_project, project_id, None if unlabeled else sorted(task_ids or ()), unlabeled,
                self.settings.keep_versions, key=key, job_id=job_id,
                job_timeout=JOB_TIMEOUT, result_ttl=86400, failure_ttl=86400, retry=retry_if_killed(),
                description=f"labelhub auto-predict: project {key}")
        except Exception:
            if unlabeled:  # no job waits: the next retrain's request must not merge into none
                unmark_queued(client, project_id)
            raise
        self._note_queued(key, task_ids, unlabeled)
        self._warn_if_no_worker(key)

    def _note_queued(self, key: str, task_ids: list[int] | None, unlabeled: bool) -> None:
        """Publish a ``queued`` status of the job just enqueued (Redis: ``/health``'s ``jobs`` on every replica,
        ``labelhub predict --status``), unless the project's last status is ``running`` (a running job's own status
        is not hidden; the worker's job replaces this one when it starts). Before, a job
        waiting in RQ showed nowhere (an audit: no worker running, ``"jobs": {}``, ``--status`` said no job).

        Decision: the status names no process (``pid`` 0, ``host`` ""): none holds it until a worker takes it;
        ``model_version`` is the project's version now: a retrain that merges into a whole-project job already
        waiting publishes it again, so the status names the version the worker will predict (it plans with the
        newest; before, the status kept the version of the retrain that enqueued it). The selection gives the
        number of new tasks, not their ids. An error is logged, not raised (the job is enqueued)."""
        from dataclasses import asdict

        from labelhub.backend.job_status import JobStatus
        from labelhub.backend.jobs import last_status

        try:
            previous = last_status(self.backend, key)
            if previous is not None and previous.state == "running":
                return
            version = self.backend.store.project(key).kv().get("model_version")
            ids = None if unlabeled else sorted(task_ids or ())
            status = JobStatus(project=key, project_id=project_id_of(key), state="queued", pid=0, host="",
                               origin="auto-predict",
                               model_version=version, total=len(ids or ()), queued=len(ids or ()),
                               selection=json.dumps({"task_ids": ids, "unlabeled": bool(unlabeled)}, sort_keys=True),
                               started_at=None, updated_at=time.time())
            self.backend.store.save_job_status(key, asdict(status))
        except Exception as exc:  # noqa: BLE001 (best effort: the job is enqueued, only its status is not shown)
            log.info("project %s: cannot publish the queued job's status (%s)", key, one_line(exc, 200))

    def _warn_if_no_worker(self, key: str) -> None:
        """Warn, at most once per :data:`labelhub.backend.worker.NO_WORKER_WARNING_SECONDS`, when no ``labelhub
        worker`` listens on the RQ queue the automatic jobs wait in (as the planner of ``labelhub predict`` does)."""
        from rq import Worker

        from labelhub.backend.worker import NO_WORKER_WARNING_SECONDS, QUEUE, queue

        now = time.monotonic()
        if now - self._told_no_worker < NO_WORKER_WARNING_SECONDS:
            return
        client = self.backend.store.client
        try:
            if Worker.count(connection=client, queue=queue(client)):
                return
        except Exception:  # noqa: BLE001 (a hint only: Redis unreachable says so elsewhere)
            return
        self._told_no_worker = now
        log.warning("project %s: its automatic prediction job waits in the RQ queue %r of this Redis database, and no "
                    "`labelhub worker` takes jobs from it: start one with the same LABELHUB_REDIS_URL (database "
                    "number included); `labelhub predict --project %d --status` shows the job queued", key, QUEUE,
                    project_id_of(key))

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no request is pending or running (tests). Returns whether it got there in time."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._running, timeout)

    def _loop(self) -> None:
        from labelhub.backend.jobs import JobAlreadyRunning, run_job
        from labelhub.backend.labelstudio_api import LabelStudioClient

        api = None
        if not self.settings.redis_url:
            try:
                api = LabelStudioClient(self.settings.label_studio_url, self.settings.label_studio_api_key)
            except Exception:  # a key label-studio-sdk refuses (expired): made again by each job, which fails saying why
                api = None
        while True:
            with self._cond:
                if not self._pending:
                    self._cond.wait(timeout=30)
                    if not self._pending:  # said under the lock: a request() after it starts another loop
                        self._thread = None
                        return
                ready, wait = self._next_ready()
                if ready is None:
                    self._cond.wait(timeout=wait)
                    continue
                key, (whole, ids) = ready, self._pending.pop(ready)
                if whole:
                    self._last_whole[key] = time.monotonic()
                self._running = True
                self._current = (key, whole, ids)
            started = time.time()
            try:
                if self.settings.redis_url:
                    self._enqueue(key, None if whole else sorted(ids), whole)
                else:
                    api = api or LabelStudioClient(self.settings.label_studio_url, self.settings.label_studio_api_key)
                    status = run_job(self.backend, api, project_id_of(key), task_ids=None if whole else sorted(ids),
                                     unlabeled=whole, progress=False, keep_versions=self.settings.keep_versions,
                                     origin="auto-predict")
                    log_job_done(key, status, log)
            except JobAlreadyRunning:  # `labelhub predict` runs: ask again after it
                self.request(key, sorted(ids), whole)
                threading.Event().wait(5.0)
            except (NotFoundError, LabelConfigError) as exc:  # the project, or its model, is gone: no retry helps
                self._retry.pop(key, None)
                log.warning("project %s: auto-predict dropped its request: %s", key, one_line(exc, 300))
                if isinstance(exc, NotFoundError) and api is not None:
                    from labelhub.backend.project_check import mark_if_gone

                    mark_if_gone(self.backend.store, api, key)
            except Exception as exc:  # a job failure must not end the loop, nor lose the request: tried again later
                self._failed(key, whole, ids, exc, started)
            else:
                self._retry.pop(key, None)
            finally:
                with self._cond:
                    self._running = False
                    self._current = None
                    self._save()
                    self._cond.notify_all()

    def _failed(self, key: str, whole: bool, ids: set[int], exc: Exception, started: float) -> None:
        """Keep a failed request (merged with any asked meanwhile), to try again after a backoff, and show the failure
        as the project's job status (``/health``, ``labelhub predict --status``) unless the job saved its own."""
        from labelhub.backend.job_status import save_auto_failure

        failures = self._retry.get(key, (0.0, 0))[1] + 1
        wait = min(RETRY_SECONDS * 2 ** (failures - 1), MAX_RETRY_SECONDS)
        reason = one_line(exc, 300)
        log.warning("project %s: auto-predict failed: %s; tried again in %.0f s", key, reason, wait)
        with self._cond:
            self._retry[key] = (time.monotonic() + wait, failures)
            before_whole, before_ids = self._pending.get(key, (False, set()))
            merged = whole or before_whole
            self._pending[key] = (merged, set() if merged else ids | before_ids)
        try:
            save_auto_failure(self.settings.model_dir, getattr(self.backend, "store", None), key, project_id_of(key),
                              started, reason, f"tried again in {wait:.0f} s", None if merged else sorted(ids),
                              merged)
        except (OSError, RedisError) as exc2:
            log.warning("project %s: cannot save the failed auto-predict status: %s", key, one_line(exc2))

    def _next_ready(self) -> tuple[str | None, float]:
        """``(the first pending request that may start, None)``, or ``(None, seconds until one may)``: a
        whole-project request waits until ``auto_predict_interval`` seconds after its project's last one started, a
        request that failed until its backoff is over."""
        now, soonest = time.monotonic(), float("inf")
        for key, (whole, _) in self._pending.items():
            due = self._last_whole.get(key, -float("inf")) + self.settings.auto_predict_interval if whole else now
            due = max(due, self._retry.get(key, (now, 0))[0])  # a request that failed waits its backoff
            if due <= now:
                return key, 0.0
            soonest = min(soonest, due - now)
        return None, soonest

    def _save(self) -> None:
        """Write the requests not done yet to :data:`PENDING_FILE`, or with Redis :data:`PENDING_KEY` (called with
        ``_cond`` held). A disk or Redis error is logged: the requests still run, only a restart would forget them.

        With Redis the write is fenced by the trainer's lease (:meth:`labelhub.backend.redis_state.Lease.set_if_held`):
        a trainer that paused past its lease (a stopped VM, a partition) and woke up after another host took over
        writes nothing over the new trainer's requests. Its own requests are not lost: it still enqueues them, and
        those it had saved before are the new trainer's to ask for again (a job asked twice is merged or skips the
        tasks already predicted)."""
        from labelhub.backend.state import atomic_write_json

        requests = {key: (whole, ids) for key, (whole, ids) in self._pending.items()}
        if self._current is not None:
            key, whole, ids = self._current
            before = requests.get(key, (False, set()))
            requests[key] = (whole or before[0], set() if (whole or before[0]) else ids | before[1])
        kept = {key: {"unlabeled": whole, "task_ids": sorted(ids)} for key, (whole, ids) in requests.items()}
        try:
            if self.settings.redis_url:
                lease = getattr(getattr(self.backend, "trainer", None), "lease", None)
                if not (lease and lease.set_if_held(PENDING_KEY, json.dumps(kept))):
                    log.info("not the trainer any more: %s is the new trainer's (this process still enqueues the "
                             "requests it holds)", PENDING_KEY)
            else:
                atomic_write_json(self.settings.model_dir / PENDING_FILE, kept)
        except (OSError, RedisError) as exc:
            log.warning("cannot keep the automatic prediction requests (%s): %s", self._pending_place, one_line(exc))

    @property
    def _pending_place(self) -> str:
        return PENDING_KEY if self.settings.redis_url else PENDING_FILE

    def _saved(self) -> dict[str, dict]:
        """The requests :meth:`_save` kept (``{}`` when none, or when they cannot be read: said in the log)."""
        try:
            if self.settings.redis_url:
                raw = self.backend.store.client.get(PENDING_KEY)
                if raw is None:
                    return {}
            else:
                raw = (self.settings.model_dir / PENDING_FILE).read_bytes()
            saved = json.loads(raw)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RedisError) as exc:
            log.warning("cannot read %s (%s): requests made before the restart wait for the next retrain",
                        self._pending_place, one_line(exc))
            return {}
        from labelhub.backend.errors import InvalidPayloadError
        from labelhub.backend.state import project_key

        out = {}
        for key, request in (saved.items() if isinstance(saved, dict) else ()):
            try:
                key = project_key(key)
            except InvalidPayloadError:
                continue
            if isinstance(request, dict) and isinstance(request.get("task_ids"), list):
                ids = [i for i in request["task_ids"] if isinstance(i, int) and not isinstance(i, bool)]
                out[key] = {"unlabeled": bool(request.get("unlabeled")), "task_ids": ids}
        return out
