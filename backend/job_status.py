"""A project's last prediction job, as ``/health`` and ``labelhub predict --status`` show it: :class:`JobStatus`
(the sum of its batches' :class:`BatchResult`), kept in ``MODEL_DIR/jobs/<project key>.json`` (atomic JSON,
rewritten after every batch by :func:`labelhub.backend.jobs.run_job`), read back by :func:`read_statuses` and
:func:`latest_status`.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from labelhub.backend.state import atomic_write_json
from labelhub.locks import file_lock

__all__ = ["BatchResult", "JobStatus", "read_statuses", "latest_status", "latest_of", "KEEP_FAILURES",
           "save_auto_failure", "RETRY_SECONDS", "MAX_RETRY_SECONDS", "failure_summary", "written_summary", "iso_times",
           "for_health", "left_unwritten"]

#: Seconds before a failed automatic prediction request is tried again (:mod:`labelhub.backend.auto_predict` on one
#: host, :mod:`labelhub.backend.worker` with Redis); doubled after each failure of the project's requests in a row.
RETRY_SECONDS = 30.0
#: The longest wait between two tries of a failing automatic request.
MAX_RETRY_SECONDS = 900.0
#: Failed tasks a status keeps with their reason (the count keeps them all).
KEEP_FAILURES = 20


@dataclass
class BatchResult:
    """What one batch did.

    Attributes:
        model_version: The version written last (``None`` when nothing was predicted).
        versions: Every version the batch wrote, in the order written (a retrain between two of its
            ``predict`` calls makes two).
        written: Task ids whose prediction Label Studio now holds.
        skipped: Task ids left alone: deleted since the plan, or given a prediction of the version meanwhile.
        failed: ``{task id: reason}``: media that did not load, a prediction Label Studio rejected.
        empty: Task ids a model that has learned nothing answered with no region (``result: []``): not written
            (see :func:`labelhub.backend.jobs.run_batch`).
        by_version: ``{model version: predictions written}`` (a retrain between two ``predict`` calls makes two).
    """

    model_version: str | None = None
    versions: list[str] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    empty: list[int] = field(default_factory=list)
    by_version: dict[str, int] = field(default_factory=dict)


def batch_result(returned: dict) -> BatchResult:
    """A :class:`BatchResult` from the fields an RQ worker returned (``dataclasses.asdict``), leaving out fields this
    version does not know: during a rolling upgrade a newer ``labelhub worker`` may answer an older planner. A field
    the worker lacks takes its default."""
    known = {f.name for f in fields(BatchResult)}
    return BatchResult(**{key: value for key, value in returned.items() if key in known})



def failure_summary(failed: int, total: int, failures: dict, origin: str = "", project_id: int | None = None,
                    mode: str = "missing") -> str | None:
    """The ``error`` of a job that ran to its end (``done``) with failed tasks, the one place it is made: ``"22 of 22
    tasks failed (task 5: <reason>, and 21 more); run labelhub predict again to retry them"`` (``None`` when none
    failed). :func:`labelhub.backend.jobs.run_job` saves it in the status, so ``/health`` and ``labelhub predict
    --status`` say the same (before, only ``--status`` added it: an audit saw ``"error": null`` on ``/health``), and
    the automatic jobs log it as a warning.

    What it advises is what retries the tasks for the job's ``origin``: a ``labelhub predict`` run again (``missing``
    skips the tasks written; after ``--all``, the same command without ``--all``, which would delete and predict
    every task again); for an automatic job (``"auto-predict"``), nothing runs again by itself until the next retrain
    (or a change of Extra params), whose job predicts every unlabeled task without a prediction of the new version,
    the failed ones included (a done job is not retried; only a job that failed as a whole is:
    :mod:`labelhub.backend.auto_predict`), so it says that and how to retry them now (before, it said "run labelhub
    predict again", an audit found odd for a job no one ran).

    Args:
        failed, total: The status's task counts.
        failures: ``{task id: reason}`` (:attr:`JobStatus.failures`, the first ones kept); the first names the reason.
        origin: :attr:`JobStatus.origin`.
        project_id: The project's Label Studio id, named in the automatic jobs' advice (``None``: ``N``).
        mode: :attr:`JobStatus.mode`.
    """
    if not failed:
        return None
    first = next(iter((failures or {}).items()), None)
    reason = f" (task {first[0]}: {first[1]}{f', and {failed - 1} more' if failed > 1 else ''})" if first else ""
    if origin == "auto-predict":
        advice = (f"the automatic job after the next retrain tries them again (every unlabeled task without a "
                  f"prediction of its version), or run labelhub predict --project {project_id or 'N'} --unlabeled "
                  "to retry them now")
    elif mode == "all":
        advice = "run the same labelhub predict without --all to retry them (the tasks written are skipped)"
    else:
        advice = "run labelhub predict again to retry them"
    return f"{failed} of {total} tasks failed{reason}; {advice}"


def written_summary(status: "JobStatus") -> str:
    """What a finished job wrote, for ``labelhub predict``'s summary and the automatic jobs' log line: ``"430
    predictions of labelhub-30-… written"``, and when a retrain during the job made it write older versions too,
    ``" (and 12 of older version(s) labelhub-20-…, written before a retrain during the job moved the version: their
    tasks were predicted again)"`` (:attr:`JobStatus.by_version`, :attr:`JobStatus.behind`)."""
    final = status.model_version
    of_final = status.by_version.get(final, 0) if status.by_version else status.done
    older = {v: n for v, n in status.by_version.items() if v != final}
    again = (f"{status.behind} of their tasks hold no {final} yet: run again" if status.behind
             else "their tasks were predicted again")
    also = (f" (and {sum(older.values())} of older version(s) {', '.join(older)}, written before a retrain during the "
            f"job moved the version: {again})") if older else ""
    return f"{of_final} predictions of {final} written{also}"


def left_unwritten(status: "JobStatus") -> str | None:
    """What an ``--all`` job that stopped after its delete (Ctrl-C, SIGTERM, a failure, a kill) left, for the line
    ``labelhub predict`` ends with and the ``error`` of ``--status`` and ``/health``: ``"220 tasks have no prediction
    of labelhub-40-… now (--all deleted the old ones first, which unselected the version as the project's prediction
    set); run the same command to write them"``; ``None`` for any other job (``missing`` deletes nothing), one not
    stopped (``state`` neither ``failed`` nor, as :meth:`JobStatus.view` shows a killed one, ``interrupted``), or one
    with nothing left.

    A walkthrough: Ctrl-C before the first batch said only ``interrupted ... after 0 of 220 tasks: run the same
    command again``, while Label Studio held none of the 220 predictions any more and no prediction set was selected
    (a blank Data Manager for who does not run it again). The count is the job's tasks not written nor skipped
    (``total - done - skipped``: queued, in flight and not landed, failed, empty); the prediction set is said to be
    unselected when the delete unselected it (:attr:`JobStatus.unselected`) and no batch landed yet (the first that
    lands selects it again: :func:`labelhub.backend.jobs.run_job`).

    Decision: ``--all`` deletes the version's predictions of the selection once, before its first batch, not batch by
    batch (which would leave the tasks not reached with their old prediction): Label Studio 1.23 has no call that
    deletes one version's predictions of some tasks at once (``DELETE /api/projects/<id>/model-versions/`` takes the
    whole project's, the Data Manager's ``delete_tasks_predictions`` action every version's of the tasks), so per
    batch is one ``DELETE /api/predictions/<id>`` a task (85 ms each, against 7 ms each in the one call, measured on
    1.23.2 with SQLite, 40 predictions each way, 2026-12-06: about 17 s more for 220 tasks, 13 min for 10,000); and a
    batch that skips a task holding a prediction of the version (what makes a re-run and a retried write safe) would
    skip every task still holding its old one.
    """
    if status.mode != "all" or not status.cleared or status.state not in ("failed", "interrupted"):
        return None
    left = status.total - status.done - status.skipped
    if left <= 0 or not status.model_version:
        return None
    unselected = (" (--all deleted the old ones first, which unselected the version as the project's prediction set)"
                  if status.unselected and not status.done else " (--all deleted the old ones first)")
    return (f"{left} task{'s' if left != 1 else ''} {'have' if left != 1 else 'has'} no prediction of "
            f"{status.model_version} now{unselected}; run the same command to write them")


def iso_times(view: dict) -> dict:
    """``view`` (a status dict) with its Unix times (``started_at``, ``updated_at``, ``finished_at``) in ISO 8601, UTC
    (``2026-12-06T11:48:40+00:00``), as ``/health`` and ``labelhub predict --status`` show them; ``None`` stays."""
    from datetime import datetime, timezone

    return {key: datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds")
            if key.endswith("_at") and isinstance(value, (int, float)) and not isinstance(value, bool) else value
            for key, value in view.items()}


def for_health(view: dict) -> dict:
    """A status dict as ``/health``'s ``jobs`` shows it: times in ISO 8601, UTC (:func:`iso_times`), and the job's
    ``selection`` as ``{"task_ids": <how many> or null, "unlabeled": bool, "filters": bool}`` instead of the JSON of
    every task id (an automatic job of an import of thousands of tasks made ``/health``, which Label Studio gives 1 s,
    that much longer; ``labelhub predict --status`` shows them all). A ``done`` job with failed tasks has its
    :func:`failure_summary` as ``error`` (a status saved before ``run_job`` kept it)."""
    out = iso_times(view)
    try:
        selection = json.loads(view.get("selection") or "{}")
    except (TypeError, ValueError):
        selection = {}
    if isinstance(selection, dict):
        ids = selection.get("task_ids")
        out["selection"] = {"task_ids": len(ids) if isinstance(ids, list) else None,
                            "unlabeled": bool(selection.get("unlabeled")), "filters": bool(selection.get("filters"))}
    if out.get("state") == "done" and not out.get("error"):
        out["error"] = failure_summary(out.get("failed") or 0, out.get("total") or 0, out.get("failures") or {},
                                       out.get("origin") or "", out.get("project_id"), out.get("mode") or "missing")
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_held(lock: Path) -> bool | None:
    """Whether a process holds the job lock ``lock`` (``MODEL_DIR/jobs/<key>.lock``,
    :meth:`labelhub.backend.state.Store.job_lock`: a ``flock`` the kernel drops when its holder dies, whichever host
    name or container it ran under), found by taking it non-blocking and releasing it at once. ``None`` when there is
    no such file (no job of this ``MODEL_DIR`` took it: with ``LABELHUB_REDIS_URL`` a job holds a Redis lease instead)
    or it cannot be opened.

    Decision (an audit: a job killed in a ``docker compose run`` container, or in the backend's container recreated,
    showed "running" for ever, so ``/predict`` kept leaving its tasks to it and nothing resumed it): the lock, not
    the status's host and pid, says whether the job runs; a pid reused by another process fooled that check too. The
    probe holds the lock for the time of two system calls, during which a job starting would find it taken
    (:class:`labelhub.backend.jobs.JobAlreadyRunning`); it is made only for a status that says a job runs.
    """
    if not lock.is_file():  # file_lock would create it
        return None
    try:
        with file_lock(lock, blocking=False) as taken:
            return not taken
    except OSError:
        return None


@dataclass
class JobStatus:
    """The state of a project's last job, kept in ``MODEL_DIR/jobs/<project>.json``.

    Task counts: ``total`` = ``queued`` + ``running`` + ``done`` + ``skipped`` + ``failed`` + ``empty``, each task
    of the job once (a task predicted again after a retrain during the job is counted by its last pass).

    Attributes:
        project: The project key.
        project_id: The project id.
        job_id: A random id of the run.
        mode: ``"missing"`` or ``"all"``.
        state: ``queued``, ``running``, ``done`` (every batch ran; some tasks may have failed) or ``failed``
            (the job stopped on an error, see ``error``). :meth:`view` shows ``interrupted`` for a job whose
            process is gone (killed): :meth:`interrupted`.
        model_version: The model's version when the job started, then the newest version its batches wrote (by
            the model's order: a retrain during the job makes its later batches write a newer one, which ``/health``
            shows while the job runs).
        total, queued, running, done, skipped, failed, empty: Task counts: planned, waiting (in a ``failed`` job:
            left undone, for the same command run again; its queued batches were canceled), in the batch being
            predicted, written, left alone (see :class:`BatchResult`), not written, answered with no region by a
            model that has learned nothing yet (not written: :func:`labelhub.backend.jobs.learned_nothing`).
        by_version: ``{model version: predictions written}``; more than one when a retrain moved the version during
            the job (the job then predicts the tasks of the older ones again with the newest: each version counts its
            prediction, while the task counts count the task once, in ``done`` when its last write landed).
        missing_elsewhere: For a job of part of the project (``--task-ids``, ``--filter``, ``--view``, new tasks): the
            unlabeled tasks outside it that have no prediction of ``model_version`` (``None``: not checked), which is
            why the version was not made the prediction set (the Data Manager's sort would leave them blank).
        behind: Tasks the job wrote with an older version and could not predict again with ``model_version`` (the
            model kept retraining through :data:`labelhub.backend.jobs.CATCH_UP_PASSES` passes): a re-run does.
        selection: The job's ``--task-ids``/``--unlabeled``/``--filter`` (JSON), to recognize a re-run of the same
            job.
        cleared: For ``mode="all"``: the version's old predictions of the selection are deleted (a re-run
            of the same job does not delete again).
        started_at, updated_at, finished_at: Unix times.
        pid, host: The process running it.
        error: Why the job failed (one line, no secret); for a ``done`` job with failed tasks, how many failed and
            the first reason (:func:`failure_summary`).
        failures: ``{task id: reason}`` of the first :data:`KEEP_FAILURES` failed tasks.
        retired: ``{model version: predictions deleted}`` of the older versions deleted after the job
            (``keep_versions``: :mod:`labelhub.backend.retire`).
        prediction_set: The project's selected prediction set after the job (Settings → Annotation →
            Prelabeling; the Data Manager's "Prediction score" averages its scores); ``""`` when none.
        versions: Every version the job's batches wrote, in the order their results came in; none of them is
            retired after the job.
        origin: Who started the job: ``"auto-predict"`` (the backend's automatic jobs), ``"labelhub predict"``, or
            ``""`` (a caller of :func:`labelhub.backend.jobs.run_job` that did not say, or a status of an older
            version); a ``labelhub predict`` refused because a job runs names it.
        unselected: For ``mode="all"``: the version its delete unselected as the project's prediction set (``""``:
            none), which the job selects again once a batch of it lands; a re-run of the same job, interrupted after
            the delete, takes it over (before, a second ``--all`` found no set selected and never selected one).
    """

    project: str
    project_id: int
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    mode: str = "missing"
    state: str = "queued"
    model_version: str | None = None
    total: int = 0
    queued: int = 0
    running: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    empty: int = 0
    by_version: dict[str, int] = field(default_factory=dict)
    missing_elsewhere: int | None = None
    behind: int = 0
    selection: str = ""
    cleared: bool = False
    started_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    error: str | None = None
    failures: dict[str, str] = field(default_factory=dict)
    retired: dict[str, int] = field(default_factory=dict)
    prediction_set: str = ""
    versions: list[str] = field(default_factory=list)
    unselected: str = ""
    origin: str = ""
    #: The job's lock file beside the status file it was read from (not a field: neither saved nor published).
    _lock = None

    @staticmethod
    def path(model_dir: Path, key: str) -> Path:
        """``MODEL_DIR/jobs/<key>.json``."""
        return Path(model_dir) / "jobs" / f"{key}.json"

    def save(self, model_dir: Path) -> None:
        """Write the status atomically (:func:`labelhub.backend.state.atomic_write_json`).

        Raises:
            OSError: When ``MODEL_DIR`` is not writable.
        """
        self.updated_at = time.time()
        atomic_write_json(self.path(model_dir, self.project), asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "JobStatus":
        """A status from its JSON (unknown keys ignored).

        Raises:
            TypeError: When required keys are missing.
        """
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, model_dir: Path, key: str) -> "JobStatus | None":
        """The project's last status, or ``None`` when there is none (or it does not parse)."""
        try:
            return cls.from_dict(json.loads(cls.path(model_dir, key).read_bytes()))._beside(cls.path(model_dir, key))
        except (OSError, ValueError, TypeError):
            return None

    def _beside(self, path: Path) -> "JobStatus":
        """This status, told that it was read from ``path`` (``<key>.json``): its job's lock is ``<key>.lock``
        beside it (:meth:`interrupted`)."""
        self._lock = path.with_name(f"{path.stem}.lock")
        return self

    def add(self, batch: BatchResult) -> None:
        """Count a finished batch (its tasks leave ``running``)."""
        self.running = 0
        self.done += len(batch.written)
        self.skipped += len(batch.skipped)
        self.failed += len(batch.failed)
        self.empty += len(batch.empty)
        for version, count in batch.by_version.items():
            self.by_version[version] = self.by_version.get(version, 0) + count
        for tid, reason in batch.failed.items():
            if len(self.failures) < KEEP_FAILURES:
                self.failures[str(tid)] = reason
        # a result from a worker of an older version has no versions list, only its last version
        for version in batch.versions or ([batch.model_version] if batch.model_version else []):
            if version not in self.versions:
                self.versions.append(version)

    def view(self) -> dict:
        """The status as ``/health`` and ``labelhub predict --status`` show it (``state`` is ``interrupted`` for a
        queued or running job whose process is gone: :meth:`interrupted`; a ``done`` job with failed tasks has the
        :func:`failure_summary` as its ``error``)."""
        out = asdict(self)
        if self.state == "done" and not self.error:  # a status saved before run_job kept the summary
            out["error"] = failure_summary(self.failed, self.total, self.failures, self.origin, self.project_id,
                                           self.mode)
        if self.interrupted():
            out["state"] = "interrupted"
        if out["state"] in ("failed", "interrupted"):  # an --all job stopped after its delete: what it left
            left = left_unwritten(replace(self, state=out["state"]))
            if left and left not in (out["error"] or ""):
                out["error"] = f"{out['error']}; {left}" if out["error"] else left
        return out

    def interrupted(self) -> bool:
        """Whether the status says ``queued`` or ``running`` while no process runs the job. A status read from
        ``MODEL_DIR/jobs`` (:meth:`load`, :func:`read_statuses`) whose job took the lock beside it
        (``<key>.lock``) and named its process: when nobody holds the lock (:func:`_lock_held`), on any host or
        container sharing the folder. Else (no lock file: a status published through Redis, whose jobs hold a Redis
        lease instead, or one of a version without it): when it names this host and its pid is dead."""
        if self.state not in ("queued", "running"):
            return False
        held = _lock_held(self._lock) if self._lock is not None and self.pid else None
        if held is not None:
            return not held
        return self.host == socket.gethostname() and not _alive(self.pid)


_STATUS_CACHE: dict[Path, tuple[tuple, dict]] = {}
_STATUS_LOCK = threading.Lock()


def read_statuses(model_dir: Path) -> dict[str, dict]:
    """Every project's last job status (:meth:`JobStatus.view`), for ``/health``.

    A file is parsed again only when its inode, size or mtime changed, so a call costs a ``stat`` per
    project with a job.

    Args:
        model_dir: ``MODEL_DIR``.

    Returns:
        ``{project key: status dict}`` (``{}`` when no job ever ran).
    """
    out = {}
    try:
        paths = sorted((Path(model_dir) / "jobs").glob("*.json"))
    except OSError:
        return out
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with _STATUS_LOCK:
            cached = _STATUS_CACHE.get(path)
        if cached is None or cached[0] != stamp:
            try:
                status = JobStatus.from_dict(json.loads(path.read_bytes()))._beside(path)
            except (OSError, ValueError, TypeError):
                continue
            cached = (stamp, status)
            with _STATUS_LOCK:
                _STATUS_CACHE[path] = cached
        out[path.stem] = cached[1].view()
    return out


def latest_status(model_dir: Path, project_id: int) -> JobStatus | None:
    """The status of the project id's last job (the newest of its keys, when it was re-created).

    Args:
        model_dir: ``MODEL_DIR``.
        project_id: The Label Studio project id.

    Returns:
        The status, or ``None`` when no job of the project ran with this ``MODEL_DIR``.
    """
    paths = (Path(model_dir) / "jobs").glob(f"{int(project_id)}*.json")
    found = [JobStatus.load(model_dir, path.stem) for path in paths if _of_project(path.stem, project_id)]
    return _newest([status for status in found if status is not None])


def latest_of(statuses: dict[str, dict], project_id: int) -> JobStatus | None:
    """The status of the project id's last job among ``statuses`` (``{project key: status dict}``: what the jobs
    publish in Redis, :func:`labelhub.backend.redis_state.job_statuses`); one that does not parse is left out.

    Returns:
        The status, or ``None`` when ``statuses`` has none of the project.
    """
    found = []
    for key, data in statuses.items():
        if _of_project(key, project_id) and isinstance(data, dict):
            try:
                found.append(JobStatus.from_dict(data))
            except TypeError:
                continue
    return _newest(found)


def _of_project(key: str, project_id: int) -> bool:
    """Whether a project key (``<id>.<created_at>``, or a bare id) is of project ``project_id``."""
    return key == str(project_id) or key.startswith(f"{int(project_id)}.")


def _newest(statuses: list[JobStatus]) -> JobStatus | None:
    return max(statuses, key=lambda s: s.updated_at or 0.0) if statuses else None


def save_auto_failure(model_dir: Path, store, key: str, project_id: int, started: float, reason: str, later: str,
                      task_ids: list[int] | None, unlabeled: bool) -> JobStatus:
    """Save the ``failed`` status of an automatic prediction job (:mod:`labelhub.backend.auto_predict`, one host, or
    :func:`labelhub.backend.worker.predict_project`, a worker) that failed: the status the job saved itself in this
    process since ``started`` (``failed``, which says why) with ``(auto-predict: <later>)`` added, else a new one,
    ``auto-predict: <reason> (<later>)``; written to ``model_dir``'s ``jobs`` and published to ``store`` (every
    replica's ``/health`` with Redis; ``None``: not published).

    Args:
        model_dir: ``MODEL_DIR``.
        store: The backend's store (``save_job_status``), or ``None``.
        key: The project key; ``project_id`` its Label Studio id.
        started: When the failed job started (``time.time()``).
        reason: Why, one line without secrets.
        later: When it is tried again (``tried again in 30 s``).
        task_ids: The job's new tasks (``None``: every unlabeled task, ``unlabeled``).

    Returns:
        The status saved.

    Raises:
        OSError, redis.exceptions.RedisError: The status cannot be written or published.
    """
    saved = JobStatus.load(model_dir, key)
    if saved is not None and saved.state == "failed" and (saved.started_at or 0) >= started \
            and saved.pid == os.getpid():
        saved.error = f"{saved.error} (auto-predict: {later})"
        status = saved  # the job got as far as its own status, which says why
    else:
        status = JobStatus(project=key, project_id=project_id, state="failed", started_at=started,
                           origin="auto-predict", finished_at=time.time(), error=f"auto-predict: {reason} ({later})",
                           selection=json.dumps({"task_ids": None if unlabeled else task_ids,
                                                 "unlabeled": bool(unlabeled)}, sort_keys=True))
    status.save(model_dir)
    if store is not None:
        store.save_job_status(key, asdict(status))
    return status


def log_job_done(key: str, status: Any, log: logging.Logger) -> None:
    """Log what a finished automatic job did: at INFO every version it wrote
    (:func:`labelhub.backend.job_status.written_summary`, as ``labelhub predict``'s summary says it), and, when tasks
    failed, a WARNING with how many and the first reason (:func:`labelhub.backend.job_status.failure_summary`, the
    ``error`` of its status on ``/health``), on ``log`` (the one-host loop's or the RQ worker's logger)."""
    if not isinstance(status, JobStatus):  # a stand-in of the tests
        log.info("project %s: auto-predict wrote %s predictions", key, getattr(status, "done", "?"))
        return
    empty = f", {status.empty} empty (the model has learned nothing yet)" if status.empty else ""
    log.info("project %s: auto-predict %s, %d skipped, %d failed%s", key, written_summary(status), status.skipped,
             status.failed, empty)
    if status.failed and status.error:
        log.warning("project %s: auto-predict: %s", key, status.error)
