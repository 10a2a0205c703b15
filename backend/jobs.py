"""Prediction jobs: a whole project pre-annotated through Label Studio's API, in batches (``labelhub predict``).

Label Studio asks an ML backend for predictions one ``/predict`` request at a time, within 100 s
(``ML_TIMEOUT_PREDICT``), so "Retrieve predictions" on a large selection times out. A job runs beside the
backend instead: it loads the project's model in-process from ``MODEL_DIR`` (the state the backend's
workers share: :class:`labelhub.backend.app.Backend`), and writes the predictions itself:

1. :func:`plan`: the project's tasks as Label Studio lists them *now* (``GET /api/tasks``) → the tasks
   to predict, split into batches, the most uncertain first (see :func:`uncertainty_order`).
2. :func:`run_batch`: one batch: its tasks read again, predicted, and written in **one** call to
   ``POST /api/projects/<id>/import/predictions`` (``ImportPredictionsAPI`` in Label Studio's
   ``data_import/api.py``) with the model's current ``model_version``. It is a plain function of a batch
   of task ids, so a queue worker can run it.
3. :func:`run_job`: plan, then every batch, with a tqdm progress bar (``TQDM_DISABLE=1`` silences it; it is
   off when stderr is not a terminal, and a progress line is logged at INFO every :data:`PROGRESS_LOG_SECONDS`
   instead), a :class:`~labelhub.backend.job_status.JobStatus` in ``MODEL_DIR/jobs/<project>.json`` (read by
   ``/health`` and ``labelhub predict --status``) and counters on ``/metrics``.

**Modes.** ``missing`` (the default) predicts the tasks that have no prediction of the current model
version. ``all`` predicts every (selected) task again: the current version's predictions of the tasks are
deleted first (one call for a whole project: ``DELETE /api/projects/<id>/model-versions/``; one
``DELETE /api/predictions/<id>`` each for a selection), then the job goes on as ``missing``, planned from its
one listing made before the delete (a task annotated meanwhile is predicted again, not left without; and a whole
project is not listed twice). Predictions of other versions are never touched. With ``task_ids`` only those tasks
are listed (one task id of a 1,000-task project with four versions: 3.3 to 5.6 s before, 0.3 s).

**One prediction per task and model version.** The truth is what Label Studio holds, not a local
record: each run lists the tasks again, and each batch reads its tasks once more right before predicting
and keeps only those still without a prediction of the version. The batch is written in one call,
which Label Studio commits in one transaction (Django's ``bulk_create``). So a run stopped at any point,
``SIGKILL`` included, leaves every batch either written whole or not at all, and the next run goes on
with the tasks still missing. Jobs of one project on one host exclude each other (a ``flock`` on
``MODEL_DIR/jobs/<project>.lock``; with ``LABELHUB_REDIS_URL``, a Redis lease, on every host). A write that fails or gets no answer is followed by a read of its
tasks: what landed counts as written, a task deleted meanwhile (Label Studio then refuses the whole write) as
skipped, and only the rest is sent again.

What remains (the window, honestly):

- another writer of the same version between a batch's read and its write (the time to predict one
  batch: seconds for 500 texts): Label Studio's own "Retrieve predictions" or its automatic
  evaluation calling the backend's ``/predict`` for the same tasks, or a job on another host with another
  ``MODEL_DIR`` (no shared lock). While a job runs, the backend's ``/predict`` answers a request of several tasks
  with no ``result`` for those the job writes (:func:`left_to_job`: Label Studio then stores nothing), and at its
  end the job deletes a second prediction of its version on a task it wrote, keeping the oldest
  (:func:`_drop_duplicates`, one listing of the tasks it wrote): what remains is a writer that saves after the
  job's end a request it began before the job started;
- a write whose answer was lost while Label Studio was still committing it when the job read the tasks
  again (the client waits 120 s, so this needs a Label Studio slower than that): the retry writes those
  tasks a second time;
- ``all`` only: from the delete until its batch is written, a task has no prediction of the version
  (never two); a re-run of the same ``all`` job does not delete again once the delete finished
  (:attr:`~labelhub.backend.job_status.JobStatus.cleared`), it goes on.

**One version per job.** The plan is made, and its line logged, with the version read after the task listing (and
``all``'s delete), not the one read before it; a line says when a batch writes a newer one. A retrain during a job
moves the model's version, and each batch writes the version of its time; so once the plan is done, if it wrote two
versions or more, the tasks the job wrote with an older version are planned again against the newest (up to
:data:`CATCH_UP_PASSES` passes), and the job ends with one version (a retrain after its last batch leaves it with
the one it wrote: the next job's), which its status and summary name
(:attr:`~labelhub.backend.job_status.JobStatus.by_version` counts what each version got). The newest is the version a
batch writes now (:func:`_served_model`): a change of Extra params or of the label config during the job moves it as
a retrain does (before, the catch-up and the end asked the model the job built at its start: an audit's job ended
"done" with 60 of 200 tasks on the version served, and said done=-130, skipped=330 of 200). Its task counts
(``total``, ``done``, ``behind``) count each task once, however many passes predicted it: the tasks a pass predicts
again leave ``done`` for ``queued``, and each pass lists the tasks the job wrote whose last outcome is ``done``, each
id once (before, each pass added its ids again: a 279-task job under six annotators said 957 tasks, predicted tasks
twice in one pass, and counted 427 predictions of a version of which Label Studio held 238, an audit found).

**The prediction set.** A job selects its version as the project's prediction set (what the Data Manager's
"Prediction score" sorts by) under the rules of :func:`_select_version`; a job of part of the project only when
every unlabeled task holds the version. ``all`` of the whole project deletes the version, which makes Label Studio
unselect it: the job selects it again as soon as a batch of it landed, so a job killed before that leaves no set
until a re-run of the same job, which remembers it (:attr:`~labelhub.backend.job_status.JobStatus.unselected`).

**A model that has learned nothing writes nothing.** Before its first fit the default model answers every task with
no region (``result: []``), which shows nothing and whose score 0.0 puts the task first in that sort. While
:func:`learned_nothing` says so, such answers are counted (``empty``), not written; a later run predicts the tasks.

Label Studio 1.23 silently drops a prediction that does not fit the label config (``created`` is then
smaller than what was sent): the job reads those tasks again and counts the missing ones as failed, and
a task whose media could not be loaded is not written (failed too); the next run tries them again.

Files under ``MODEL_DIR``::

    jobs/<project>.json   the last job's JobStatus (atomic JSON, rewritten after every batch)
    jobs/<project>.lock   held by the running job (flock: released when its process dies)
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, Sequence

from redis.exceptions import RedisError

from labelhub.backend.job_status import BatchResult, JobStatus, failure_summary
from labelhub.backend.labelstudio_api import LabelStudioClient, ProjectInfo, TaskRow
from labelhub.backend.labelstudio_api import PredictionRow  # noqa: F401 (in the examples)
from labelhub.backend.model import normalize_predictions
from labelhub.cli_options import progress_bar
from labelhub.label_config import prediction_errors
from labelhub.redaction import one_line, redact
from labelhub.errors import LabelHubError, LabelStudioError, NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from labelhub.backend.metrics import Metrics
    from labelhub.backend.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["learned_nothing", "interrupt_reason", "MODES", "DEFAULT_BATCH_SIZE", "MAX_BATCH_SIZE", "PREDICT_CHUNK",
           "PREDICT_PIXELS", "FIRST_CHUNK", "chunk_size",
           "JobHost", "JobAlreadyRunning", "plan", "selected", "needs_prediction", "uncertainty_order", "run_batch",
           "run_job", "run_here", "Executor", "last_status"]

#: What a job predicts: ``missing`` (no prediction of the current version) or ``all`` (every task again).
MODES = ("missing", "all")
#: Tasks per batch: one write to Label Studio each. Label Studio 1.23 (by default) recounts every task of the
#: project on each prediction import, so a call costs more the larger the project (about 10 s at 10,000
#: tasks with predictions, SQLite): fewer, larger batches are much faster.
DEFAULT_BATCH_SIZE = 500
#: Tasks per ``predict`` call inside a batch, at most (bounds the media a worker holds at once; :func:`chunk_size`).
PREDICT_CHUNK = 64
#: Decoded image pixels one ``predict`` call of a batch holds, about (:func:`chunk_size`): 128 megapixels are about
#: 0.4 GB as RGB. Found by an audit: 64 phone photos (12 megapixels each) in one call took a job process from 110 MiB
#: to 3.1 GiB.
PREDICT_PIXELS = 128_000_000
#: Tasks of a batch's first ``predict`` call, before the pixels of its images are known.
FIRST_CHUNK = 8
#: The largest batch: Label Studio's memory-efficient prediction import (feature flag
#: ``fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short``) commits each 500
#: (``PREDICTION_IMPORT_BATCH_SIZE``) apart, so a larger batch would no longer land whole or not at all.
MAX_BATCH_SIZE = 500
#: Attempts of one batch's write (each after a read of what landed).
WRITE_ATTEMPTS = 3
#: Seconds between two progress lines (INFO) of a job that shows no progress bar: stderr is not a terminal (a log
#: file, a container's log) or ``TQDM_DISABLE`` is set. A line in a log, unlike tqdm's bar, which redraws itself
#: with carriage returns and reads as one endless line in a file.
PROGRESS_LOG_SECONDS = 10.0
#: Passes a job makes, after its plan, over the tasks it wrote with a version a retrain replaced meanwhile (each
#: predicts them again with the newest); beyond them (a model retraining all along) the job ends and says so.
CATCH_UP_PASSES = 2
#: Task ids a job names of those it was given that the project lacks (the count names them all).
NAMED_MISSING_IDS = 5


class JobAlreadyRunning(LabelHubError, RuntimeError):
    """Another job of the project runs on this host (it holds ``MODEL_DIR/jobs/<project>.lock``)."""


# planning -----------------------------------------------------------------------------------------------
def needs_prediction(task: TaskRow, model_version: str) -> bool:
    """Whether a job still has to predict ``task`` with ``model_version``.

    Args:
        task: The task as listed.
        model_version: The version the job writes.

    Returns:
        ``True`` when the task has no prediction of that version.
    """
    return not task.predictions_of(model_version)


def uncertainty_order(task: TaskRow) -> tuple:
    """Sort key of :func:`plan`: tasks with a known score first, lowest (most uncertain) first, then the
    never-scored ones by id.

    The score is the task's newest scored prediction's (:attr:`TaskRow.last_score`), of any version: after
    a retrain the old version's uncertainty says which tasks the new one should answer first, so that the
    top of the Data Manager sorted by "Prediction score" ascending is refreshed first.

    Args:
        task: A task as listed.

    Returns:
        ``(0, score, id)`` or ``(1, 0.0, id)``.
    """
    score = task.last_score
    return (0, score, task.id) if score is not None else (1, 0.0, task.id)


def selected(tasks: Iterable[TaskRow], task_ids: Iterable[int] | None = None, unlabeled: bool = False) -> list[TaskRow]:
    """The tasks a job's selection keeps.

    Args:
        tasks: Tasks as listed.
        task_ids: Only these ids (``None``: every task).
        unlabeled: Only tasks Label Studio does not count as labeled (``is_labeled`` false).

    Returns:
        The kept tasks, in the given order.
    """
    wanted = {int(i) for i in task_ids} if task_ids is not None else None
    return [t for t in tasks if (wanted is None or t.id in wanted) and not (unlabeled and t.is_labeled)]


def plan(tasks: Iterable[TaskRow], model_version: str, task_ids: Iterable[int] | None = None, unlabeled: bool = False,
         batch_size: int = DEFAULT_BATCH_SIZE) -> list[list[int]]:
    """Split the tasks still without a prediction of ``model_version`` into batches, most uncertain first.

    Args:
        tasks: The project's tasks as Label Studio lists them now
            (:meth:`~labelhub.backend.labelstudio_api.LabelStudioClient.tasks`).
        model_version: The model's current version.
        task_ids: Only these tasks (``None``: every task).
        unlabeled: Only tasks Label Studio does not count as labeled (``is_labeled`` false).
        batch_size: Tasks per batch, 1 to :data:`MAX_BATCH_SIZE`.

    Returns:
        Batches of task ids, in the order to run them (:func:`uncertainty_order` across batches), each task once (a
        task listed twice, by a listing that moved, is planned once, as its last copy says).

    Raises:
        ValueError: For a ``batch_size`` out of that range.

    Example:
        >>> t = [TaskRow(1, {}), TaskRow(2, {}, predictions=(PredictionRow(5, "v1", 0.3),)),
        ...      TaskRow(3, {}, predictions=(PredictionRow(6, "v1", 0.9),))]
        >>> plan(t, "v2", batch_size=2)
        [[2, 3], [1]]
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}")
    once = {t.id: t for t in tasks}.values()
    picked = [t for t in selected(once, task_ids, unlabeled) if needs_prediction(t, model_version)]
    ids = [t.id for t in sorted(picked, key=uncertainty_order)]
    return [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]


def learned_nothing(model: Any) -> bool:
    """Whether the model can only answer empty predictions yet: the default model
    (:class:`labelhub.backend.models.project.ProjectModel`) whose every head learns from annotations and none is
    fitted (its state's ``heads`` names no fit file: no annotation yet, or, for a Choices head, one choice only).

    Args:
        model: A project's model. One without learning ``heads`` (a custom ``LABELHUB_MODEL``, or with a head that
            answers without a fit: a Hub pipeline, OCR) counts as having learned: its empty answers are written.

    Returns:
        ``True`` when its empty answers say nothing.
    """
    heads = getattr(model, "heads", None)
    if not isinstance(heads, list) or not heads or not all(getattr(h, "learns", False) for h in heads):
        return False
    fits = model.get("heads") or {}
    return not any(isinstance(fit, dict) and fit.get("file") for fit in fits.values())


# one batch ----------------------------------------------------------------------------------------------
class JobHost(Protocol):
    """What a job uses of the backend (:class:`labelhub.backend.app.Backend` is one).

    Attributes:
        settings: The backend's settings (``model_dir``).
        store: The projects' state (:class:`labelhub.backend.state.Store`, or the Redis one): ``has_project``,
            ``job_lock``, ``save_job_status``.
        models: The project models (:class:`labelhub.backend.app.ModelRegistry`).
        metrics: The Prometheus metrics (``predictions_written``, ``job_tasks``, ``job_batch_seconds``).
    """

    settings: "Settings"
    store: Any
    models: Any
    metrics: "Metrics"


#: Runs a job's batches and yields each one's :class:`BatchResult` as it finishes (in any order):
#: ``execute(host, api, project, batches, progress)``. :func:`run_here` is the default;
#: :func:`labelhub.backend.worker.on_workers` runs them on RQ workers.
Executor = Callable[["JobHost", "LabelStudioClient", "ProjectInfo", list, Callable[[int], Any]], Iterator["BatchResult"]]


def run_here(host: "JobHost", api: "LabelStudioClient", project: "ProjectInfo", batches: list[list[int]],
             progress: Callable[[int], Any]) -> Iterator["BatchResult"]:
    """The default :data:`Executor`: every batch in this process, one after the other (:func:`run_batch`)."""
    for batch in batches:
        yield run_batch(host, api, project, batch, progress=progress)


def chunk_size(pixels_per_task: float | None) -> int:
    """Tasks in a batch's next ``predict`` call: :data:`FIRST_CHUNK` before any (``None``), else as many as hold
    :data:`PREDICT_PIXELS` decoded pixels at the last call's pixels per task, from 1 to :data:`PREDICT_CHUNK`
    (:data:`PREDICT_CHUNK` for tasks without images, ``0.0``, or a model that does not say).

    Example:
        >>> chunk_size(None), chunk_size(0.0), chunk_size(65_536), chunk_size(12_000_000), chunk_size(400_000_000)
        (8, 64, 64, 10, 1)
    """
    if pixels_per_task is None:
        return FIRST_CHUNK
    if pixels_per_task <= 0:
        return PREDICT_CHUNK
    return max(1, min(PREDICT_CHUNK, int(PREDICT_PIXELS // pixels_per_task)))


def _landed(api: LabelStudioClient, project_id: int, items: dict[int, dict]) -> tuple[set[int], set[int]]:
    """``(landed, gone)``: the tasks of ``items`` that now hold a prediction of the version sent for them, and those
    the project no longer has (deleted since the batch read them: Label Studio lists only the ids that exist)."""
    fresh = {t.id: t for t in api.tasks(project_id, list(items))}
    landed = {tid for tid, item in items.items() if tid in fresh and fresh[tid].predictions_of(item["model_version"])}
    return landed, set(items) - set(fresh)


def _write(api: LabelStudioClient, project_id: int, items: list[dict], result: BatchResult,
           sleep: Callable[[float], None] = time.sleep) -> None:
    """Write ``items`` in one call; after a failure or a short count, read what landed, retry only the rest.

    A task deleted since the batch read it makes Label Studio refuse the whole write (400, ``task ID ... not found in
    project``): the read after the failure finds the tasks gone, which count as skipped (as a task deleted before
    the batch's read is), and the rest is written again at once, once; a second refusal of a 4xx (but 408 and 429) is
    final, as any other: the tasks not landed count as failed, with Label Studio's reason. (Before, one task deleted
    while its batch was predicted failed the batch's every task: 49 live tasks got nothing, an audit found.)

    Raises:
        LabelStudioError: The write failed :data:`WRITE_ATTEMPTS` times on a server error or without an answer, or
            the read after a failure failed.
    """
    pending = {item["task"]: item for item in items}
    attempt, rewritten = 0, False
    while True:
        attempt += 1
        try:
            created = api.import_predictions(project_id, list(pending.values()))
            if created == len(pending):
                result.written += list(pending)
                return
            error = None
        except LabelStudioError as exc:
            created, error = None, exc
        landed, gone = _landed(api, project_id, pending)
        result.written += sorted(landed)
        result.skipped += sorted(gone)
        for tid in landed | gone:
            del pending[tid]
        if not pending:
            return
        status = getattr(error, "status", None)
        refused = status is not None and 400 <= status < 500 and status not in (408, 429)
        if refused and gone and not rewritten:  # refused for the tasks deleted meanwhile: the rest, again
            rewritten = True
            log.warning("writing %d predictions was refused (%s): %d of their tasks were deleted meanwhile (skipped); "
                        "writing the other %d again", len(items), one_line(error, 300), len(gone), len(pending))
            continue
        if error is None or refused:
            reason = ("Label Studio dropped the prediction (it does not fit the label config; see Label Studio's "
                      "log)") if error is None else one_line(error, 300)
            result.failed.update({tid: reason for tid in pending})
            return
        if attempt >= WRITE_ATTEMPTS:
            raise error
        log.warning("writing %d predictions failed (%s); %d landed, retrying the rest", len(items), error, len(landed))
        sleep(2.0 ** attempt)


def _served_model(host: JobHost, project: ProjectInfo) -> tuple[Any, str]:
    """``(model, label_config)``: the project's model as a batch predicts with it now (``host.models.get`` with the
    label config the backend stored last, so a ``PROJECT_UPDATED`` the trainer applied during a job counts, and with
    the stored Extra params), refreshed from ``MODEL_DIR``. Decision: :func:`run_batch` and :func:`run_job`'s
    catch-up and end take the version from this one, not from the model the job built when it started (an audit:
    Extra params changed mid-job, the catch-up compared against the stale model's version and the job ended with 60
    of 200 tasks on the version served).

    Raises:
        labelhub.errors.LabelConfigError: The model refuses the project's label config.
    """
    label_config = host.store.project(project.key).project().get("label_config") or project.label_config
    model = host.models.get(project.key, label_config)  # the job's copy may be older than the one stored
    model.refresh()
    return model, label_config


def _version_order(model: Any) -> list[str]:
    """The versions of ``model``, oldest first, as :func:`_newest` ranks them: its state's ``versions``, then the
    version it serves now, which is the newest whether or not that list names it (one that Extra params or a label
    change moved to is in no list until the next fit)."""
    served = model.model_version
    return [v for v in (model.get("versions") or []) if v != served] + [served]


def run_batch(host: JobHost, api: LabelStudioClient, project: ProjectInfo, task_ids: Sequence[int],
              progress: Callable[[int], Any] | None = None) -> BatchResult:
    """Predict one batch of tasks and write the predictions to Label Studio in one call.

    The tasks are read again first; those that meanwhile got a prediction of the version or were deleted
    are skipped. The rest go to the project's model (``host.models.get``, with the label config the backend
    stored last, so a ``PROJECT_UPDATED`` the trainer applied during a job is followed by its next batch; refreshed
    from ``MODEL_DIR``) as Label Studio's tasks (``{"id", "data"}``, :data:`PREDICT_CHUNK` per call); what it
    answers is normalized (:func:`labelhub.backend.model.normalize_predictions`), and a task with an ``error``
    (its media did not load) is not written, nor one that does not fit the label config
    (:func:`labelhub.label_config.prediction_errors`, Label Studio's own check: it counts as failed, with the
    check's reason, whichever way Label Studio imports predictions), nor, while the model has learned nothing
    (:func:`learned_nothing`), is an empty prediction (``result: []``, counted in :attr:`BatchResult.empty`): it
    shows nothing, and its score 0.0 would put the task first when the Data Manager sorts by "Prediction score"; a
    later run, after a fit, predicts those tasks. (A fitted model's empty answer, no span in a text, is written.) A
    write that fails or gets no answer is followed by a read of its tasks; only those without the prediction are sent
    again (at most :data:`WRITE_ATTEMPTS` times).

    Args:
        host: The backend (models, metrics).
        api: Label Studio.
        project: The project.
        task_ids: The batch (from :func:`plan`); an id given twice is predicted and counted once.
        progress: Called with a number of tasks each time some are handled (``tqdm.update``); the numbers
            add up to the number of distinct ids of ``task_ids``.

    Returns:
        A :class:`BatchResult`.

    Raises:
        LabelStudioError, ProjectNotFound: Label Studio failed on a read, or on the write after
            :data:`WRITE_ATTEMPTS` attempts (what landed is known to Label Studio; a re-run goes on).
        labelhub.errors.LabelConfigError: The model refuses the project's label config.
        Exception: Whatever the model's ``predict`` raises (it should answer per-task errors instead).
    """
    started = time.monotonic()
    result = BatchResult()
    task_ids = list(dict.fromkeys(int(tid) for tid in task_ids))  # a task predicted twice would count twice
    fresh = {t.id: t for t in api.tasks(project.id, task_ids)}
    model, label_config = _served_model(host, project)
    version = model.model_version
    unlearned = learned_nothing(model)
    todo = []
    for tid in task_ids:
        task = fresh.get(int(tid))
        if task is not None and needs_prediction(task, version):
            todo.append(task)
        else:
            result.skipped.append(int(tid))
    if progress is not None and len(task_ids) > len(todo):
        progress(len(task_ids) - len(todo))
    preds: list[dict] = []
    start, per_task = 0, None
    while start < len(todo):
        chunk = todo[start:start + chunk_size(per_task)]
        raw = model.predict([{"id": t.id, "data": t.data} for t in chunk])
        pixels = getattr(model, "decoded_pixels", None)  # the default model's (ProjectModel), in this thread
        per_task = pixels / len(chunk) if isinstance(pixels, (int, float)) else 0.0
        preds += normalize_predictions(raw, len(chunk), version)
        start += len(chunk)
        if progress is not None:
            progress(len(chunk))
    if todo:
        items = []
        for task, pred in zip(todo, preds):
            if pred.get("error"):
                result.failed[task.id] = one_line(pred["error"], 300)
                continue
            if not pred["result"] and unlearned:  # shows nothing; its 0.0 would sort it first by "Prediction score"
                result.empty.append(task.id)
                continue
            written_version = pred["model_version"]
            if written_version != version and not needs_prediction(task, written_version):
                result.skipped.append(task.id)  # the model answered another version, which the task has
                continue
            item = {"task": task.id, "result": pred["result"], "score": pred["score"], "model_version": written_version}
            unfit = prediction_errors(label_config, item)
            if unfit:  # Label Studio would drop it, or store it unchecked (see prediction_errors)
                result.failed[task.id] = one_line(f"the prediction does not fit the label config: {'; '.join(unfit)}",
                                                  300)
                continue
            items.append(item)
            result.model_version = written_version
            if written_version not in result.versions:
                result.versions.append(written_version)
        if items:
            _write(api, project.id, items, result)
            landed = set(result.written)
            for item in items:
                if item["task"] in landed:
                    result.by_version[item["model_version"]] = result.by_version.get(item["model_version"], 0) + 1
    metrics = host.metrics
    metrics.predictions_written.inc(len(result.written))
    for outcome, count in (("written", len(result.written)), ("skipped", len(result.skipped)),
                           ("failed", len(result.failed)), ("empty", len(result.empty))):
        if count:
            metrics.job_tasks.labels(outcome=outcome).inc(count)
    metrics.job_batch_seconds.observe(time.monotonic() - started)
    return result



# a whole job --------------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}", 500)


def _warn_missing(project_id: int, task_ids: Sequence[int], tasks: Iterable[TaskRow]) -> None:
    """Log a warning naming the first :data:`NAMED_MISSING_IDS` of ``task_ids`` the project's ``tasks`` lack."""
    have = {t.id for t in tasks}
    missing = [tid for tid in task_ids if tid not in have]
    if missing:
        named = ", ".join(map(str, missing[:NAMED_MISSING_IDS])) + (", ..." if len(missing) > NAMED_MISSING_IDS else "")
        log.warning("project %s has no task %s (%d of the %d task ids given): nothing to predict for %s", project_id,
                    named, len(missing), len(task_ids), "it" if len(missing) == 1 else "them")


def _progress_lines(project_id: int, status: JobStatus, batch_size: int,
                    planned: Callable[[], int | None] | None = None) -> Callable[[int], None]:
    """The progress callback of a job without a bar: counts the tasks handled and logs a line at INFO when
    :data:`PROGRESS_LOG_SECONDS` passed since the last one (or since the start). The tasks predicted are counted as
    they are, the written ones when their batch (``batch_size`` tasks) is written: the line says so, since "448
    predicted, 0 written" looks like a stall. ``planned()`` is the number of predictions to make (the bar's total:
    a task a retrain made the job predict again counts twice there, once in ``status.total``); ``None``: the
    status's ``total``."""
    started = time.monotonic()
    last, handled = started, 0

    def update(n: int) -> None:
        nonlocal last, handled
        handled += n
        now = time.monotonic()
        if now - last >= PROGRESS_LOG_SECONDS:
            last = now
            log.info("project %s: %d of %d tasks predicted, %d written so far (each batch of %d is written when it "
                     "ends), %d failed (%.1f tasks/s)", project_id, handled, (planned and planned()) or status.total,
                     status.done, batch_size, status.failed, handled / (now - started or 1e-9))

    return update


def last_status(host: JobHost, key: str) -> JobStatus | None:
    """Project ``key``'s last job status: with ``LABELHUB_REDIS_URL`` the shared one (``labelhub:jobs``, published by
    whichever worker or process ran the job: each worker's ``MODEL_DIR`` holds only its own jobs', so a job on
    another worker than the last one read no previous status and kept the project's prediction set on an older
    version, an audit found), else ``MODEL_DIR/jobs``; ``None`` when there is none or it cannot be read."""
    if not host.settings.redis_url:
        return JobStatus.load(host.settings.model_dir, key)
    try:
        found = host.store.job_statuses().get(key)
        return JobStatus.from_dict(found) if found else None
    except (RedisError, ValueError, TypeError) as exc:
        log.info("project %s: its last job status cannot be read from Redis (%s)", key, one_line(exc, 200))
        return None


def running_job(host: JobHost, key: str) -> JobStatus | None:
    """The status of project ``key``'s prediction job when one runs now, else ``None``.

    One host: the last status in ``MODEL_DIR/jobs`` (:func:`labelhub.backend.job_status.read_statuses`, parsed again
    only when it changed) says ``running`` and its process is alive. With ``LABELHUB_REDIS_URL``: the shared status
    says ``running`` and the job's Redis lease (``labelhub:jobs:<key>:lock``) is held (a worker that died leaves a
    ``running`` status, but its lease expires). A store that cannot be read counts as no job (logged at INFO)."""
    from labelhub.backend.job_status import read_statuses

    try:
        if host.settings.redis_url:
            status = last_status(host, key)
            if status is None or status.state != "running":
                return None
            from labelhub.backend.redis_state import PREFIX

            return status if host.store.client.exists(f"{PREFIX}jobs:{key}:lock") else None
        view = read_statuses(host.settings.model_dir).get(key)
        return JobStatus.from_dict(view) if view and view.get("state") == "running" else None
    except (OSError, RedisError, ValueError, TypeError) as exc:
        log.info("project %s: cannot tell whether a prediction job runs (%s)", key, one_line(exc, 200))
        return None


def left_to_job(status: JobStatus, tasks: Sequence[dict], model_version: str) -> list[int]:
    """The ids of ``tasks`` (Label Studio's ``/predict`` tasks: ``{"id", "is_labeled", ...}``) that the running job
    ``status`` will write a prediction of ``model_version`` for, so that ``/predict`` answers none for them.

    Decision (an audit: "Retrieve predictions" pressed during an automatic job gave each task two predictions of one
    version): Label Studio's ``predict_tasks`` (``ml/models.py``, what the Data Manager's ``retrieve_tasks_predictions``
    action runs) picks the tasks lacking the version, calls ``/predict`` with them all in one request (32 s for 200
    tasks), then saves what it got, while the job writes the same tasks. An answer without ``result`` is stored by
    Label Studio as nothing (it logs it), so the job alone writes them. A task counts when the job is of
    ``model_version`` (its starting version or one its batches wrote) and its selection holds the task: every task, the
    listed ``task_ids``, or, with ``unlabeled``, a task whose ``is_labeled`` is false. A job with Data Manager
    ``filters`` covers none (this cannot tell which tasks they keep).

    Returns:
        The task ids, in the order given (``[]`` when the job is of another version).
    """
    if model_version != status.model_version and model_version not in status.versions:
        return []
    try:
        selection = json.loads(status.selection or "{}")
    except ValueError:
        return []
    if not isinstance(selection, dict) or selection.get("filters"):
        return []
    wanted = selection.get("task_ids")
    wanted = None if wanted is None else {i for i in wanted if isinstance(i, int)}
    out = []
    for task in tasks:
        tid = task.get("id") if isinstance(task, dict) else None
        if not isinstance(tid, int) or (wanted is not None and tid not in wanted):
            continue
        if selection.get("unlabeled") and task.get("is_labeled"):
            continue
        out.append(tid)
    return out


def interrupt_reason(exc: BaseException) -> str:
    """What interrupted a job, from its ``KeyboardInterrupt``: ``"SIGTERM"`` (``labelhub predict``'s handler raises
    ``KeyboardInterrupt("SIGTERM")``), else ``"Ctrl-C"``. A signal that lands inside a codec (httpx encoding a host
    name with ``idna``) comes out as a new ``KeyboardInterrupt`` of the codec's words, ``encoding with 'idna' codec
    failed (KeyboardInterrupt: SIGTERM)``, the original as its ``__cause__`` (CPython's codec registry wraps what a
    codec raises): the original is named."""
    while isinstance(exc.__cause__, KeyboardInterrupt):
        exc = exc.__cause__
    return str(exc) or "Ctrl-C"


def _only_ours(api: LabelStudioClient, project_id: int, versions: set[str], before: Counter | None,
               listed: Sequence[TaskRow], wrote: dict[str, int]) -> bool:
    """Whether Label Studio's count of each of ``versions`` in the project is exactly what the job's listing held
    (``before``: ``{version: predictions}`` of the whole project when the job planned, ``None`` when it listed a part
    of it) plus what the job wrote (``wrote``, :attr:`JobStatus.by_version`), and every task of the listing
    (``listed``) still exists: then no other writer saved a prediction of them during the job, and
    :func:`_drop_duplicates` need not list the job's tasks again. A task deleted meanwhile takes its predictions along
    and could hide another writer's second one in the count; it is found by counting the tasks up to the listing's
    largest id (:meth:`~labelhub.backend.labelstudio_api.LabelStudioClient.tasks_up_to`), so that a task created
    during the job does not cover it (a plain task count did: one deleted and one created were even). Two calls
    (``GET /api/projects/<id>/model-versions/`` and a one-task ``GET /api/tasks``) instead of a listing of every task
    written with its predictions (a third of a re-prediction job's time, ``bench/repredict_bench.py``). ``False``
    (list them) when Label Studio counts otherwise or cannot be asked."""
    if before is None:
        return False
    try:
        counted = {row.model_version: row.count for row in api.model_versions(project_id)}
        same = all(counted.get(v, 0) == before.get(v, 0) + wrote.get(v, 0) for v in versions)
        return same and (not listed or api.tasks_up_to(project_id, max(t.id for t in listed)) == len(listed))
    except (LabelStudioError, NotFoundError, ValueError):  # a project deleted meanwhile: the listing says so
        return False


def _drop_duplicates(api: LabelStudioClient, project_id: int, task_ids: Sequence[int], versions: set[str]) -> int:
    """Delete the second and later predictions of one version of a task (keeping the oldest, the lowest id) among
    ``task_ids`` (the tasks the job wrote) for the ``versions`` the job wrote: another writer of the version during
    the job (Label Studio's "Retrieve predictions" or the editor's ``/predict`` of one task, whose request started
    before the job; see :func:`left_to_job`). Returns how many were deleted (logged at WARNING); a failure to list or
    delete is logged, not raised (the job's predictions are written)."""
    if not task_ids or not versions:
        return 0
    try:
        listed = api.tasks(project_id, list(task_ids))
        extra = {v: [p.id for t in listed for p in sorted(t.predictions_of(v), key=lambda p: p.id)[1:]]
                 for v in versions}
        for version, ids in extra.items():
            if ids:
                api.delete_predictions(project_id, version, ids)
    except LabelStudioError as exc:
        log.warning("project %s: cannot remove the second predictions of one version some tasks got during the job "
                    "(%s)", project_id, one_line(exc, 300))
        return 0
    count = sum(map(len, extra.values()))
    if not count:
        return 0
    log.warning("project %s: removed %d second prediction(s) of %s another writer (Label Studio's Retrieve "
                "predictions, or the editor) saved during the job; each task keeps its oldest", project_id, count,
                ", ".join(sorted(v for v, ids in extra.items() if ids)))
    return count


def _save(host: JobHost, status: JobStatus) -> None:
    """Write the status to ``MODEL_DIR/jobs`` and publish it to the store (Redis: every replica's ``/health``)."""
    status.save(host.settings.model_dir)
    host.store.save_job_status(status.project, asdict(status))


def run_job(host: JobHost, api: LabelStudioClient, project_id: int, *, mode: str = "missing",
            task_ids: Iterable[int] | None = None, unlabeled: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
            select_version: bool | None = None, progress: bool | None = None,
            execute: Executor | None = None, keep_versions: int = 0, filters: dict | None = None,
            origin: str = "") -> JobStatus:
    """Pre-annotate a project: list its tasks, :func:`plan`, :func:`run_batch` each batch (see the module docstring).

    Args:
        host: The backend whose ``MODEL_DIR`` holds the project's model (``Backend(settings)``).
        api: Label Studio.
        project_id: The project id.
        mode: ``"missing"`` (default) or ``"all"``.
        task_ids: Only these tasks.
        unlabeled: Only tasks Label Studio does not count as labeled.
        filters: Only the tasks these Data Manager filters keep
            (:func:`labelhub.backend.labelstudio_api.data_manager_filters`; ``labelhub predict --filter`` or
            ``--view``), as Label Studio lists them when the job plans; not with ``task_ids``.
        batch_size: Tasks per batch (one write to Label Studio each; see :data:`DEFAULT_BATCH_SIZE`).
        select_version: Afterwards, make the written version the project's prediction set (Settings →
            Annotation → Prelabeling), which the Data Manager's "Prediction score" column averages. ``None``
            (default): only when the project has none selected or one this model wrote before, and, for a job of
            part of the project (``task_ids``, ``filters``), when every unlabeled task holds the version
            (:func:`_select_version`).
        progress: Show a tqdm bar on stderr: ``None`` (default) when stderr is a terminal and
            ``TQDM_DISABLE`` is unset; meanwhile the root logger's console handler writes above the bar
            (``tqdm.contrib.logging``). Without a bar, a progress line is logged at INFO every
            :data:`PROGRESS_LOG_SECONDS`.
        execute: Where the batches run (an :data:`Executor`): :func:`run_here` (default), or RQ workers
            (:func:`labelhub.backend.worker.on_workers`, what ``labelhub predict`` uses with ``LABELHUB_REDIS_URL``).
        origin: Who starts the job (:attr:`~labelhub.backend.job_status.JobStatus.origin`): ``"auto-predict"``,
            ``"labelhub predict"``, or ``""``.
        keep_versions: Afterwards, when the job covered the whole project (no ``task_ids``, no ``filters``), delete
            the predictions of the model's older versions but the newest ``keep_versions``
            (:mod:`labelhub.backend.retire`); 0 (default): delete none.

    Returns:
        The final :class:`~labelhub.backend.job_status.JobStatus` (``state`` ``"done"``; ``failed`` counts the tasks
        not written, ``empty`` those answered with no region; ``by_version`` the predictions of each version written;
        ``retired`` the versions deleted; ``missing_elsewhere`` the unlabeled tasks without the version after a job of
        part of the project).

    Raises:
        ProjectNotFound: No such project in Label Studio.
        NotFoundError: ``MODEL_DIR`` has no state of the project (not the backend's ``MODEL_DIR``, or the
            project was never connected to it).
        JobAlreadyRunning: Another job of the project runs on this host (with Redis: on any host).
        LabelStudioError: Label Studio failed (the status says ``failed``; a re-run goes on).
        ValueError: A bad ``mode``, ``batch_size`` or ``keep_versions``, or ``task_ids`` with ``filters``.
        KeyboardInterrupt: Ctrl-C, or a SIGTERM the caller turned into one (the status says ``failed``, its
            ``error`` ``interrupted (...)``; a re-run goes on).
    """
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if keep_versions < 0:
        raise ValueError(f"keep_versions must be 0 (keep all) or more, not {keep_versions}")
    if task_ids is not None and filters is not None:
        raise ValueError("give task ids or Data Manager filters, not both")
    model_dir = Path(host.settings.model_dir)
    project = api.project(project_id)
    if not host.store.has_project(project.key):
        if host.settings.redis_url:  # the model is in Redis: MODEL_DIR is a cache there
            raise NotFoundError(f"the Redis of LABELHUB_REDIS_URL has no model of project {project_id} (key "
                                f"{project.key}): give the backends' LABELHUB_REDIS_URL, database number included, "
                                "and connect the project to a backend")
        raise NotFoundError(f"MODEL_DIR={str(model_dir)!r} has no model of project {project_id} (key {project.key}): "
                            "point --model-dir at the backend's MODEL_DIR, and connect the project to the backend")
    with host.store.job_lock(project.key) as held:
        if not held:
            running = last_status(host, project.key)
            by = f" (pid {running.pid} on {running.host})" if running and running.pid else ""
            which = ("the backend's automatic prediction job (LABELHUB_AUTO_PREDICT)"
                     if running and running.origin == "auto-predict" else "a prediction job")
            raise JobAlreadyRunning(f"{which} of project {project_id} is running{by}: wait for it to end (`labelhub "
                                    f"predict --project {project_id} --status` shows its progress), then run again: "
                                    "the tasks it wrote are skipped")
        model = host.models.get(project.key, project.label_config)
        model.refresh()
        version = model.model_version
        previous = last_status(host, project.key)
        if previous is not None and previous.state == "queued" and previous.origin == "auto-predict" \
                and origin != "auto-predict":  # its status is replaced by this job's: say it still waits
            log.warning("project %s: the backend's automatic prediction job of it waits in the queue (is a `labelhub "
                        "worker` running?); it runs after this job and skips the tasks this one writes", project.id)
        ids = sorted({int(i) for i in task_ids}) if task_ids is not None else None
        selection = json.dumps({"task_ids": ids, "unlabeled": bool(unlabeled),
                                **({"filters": filters} if filters else {})}, sort_keys=True)
        status = JobStatus(project=project.key, project_id=project.id, mode=mode, state="running",
                           model_version=version, selection=selection, started_at=time.time(), origin=origin)
        bar = results = None
        in_flight: list[int] = []  # the batch being predicted and written
        deleting = False  # --all's delete was sent
        written: set[int] = set()  # every task written (once), to find those a retrain left with an older version
        counted: set[int] = set()  # the tasks counted in ``done`` now: those a catch-up pass may predict again
        was_selected = project.model_version == version  # --all's delete unselects it: selected again after a batch
        # the same --all job again, interrupted after its delete: taken over before the listing, so that a re-run
        # failing there saves it too (before, it saved cleared=false and the next re-run deleted again, an audit found)
        status.cleared = bool(mode == "all" and previous and previous.mode == "all" and previous.cleared
                              and previous.model_version == version and previous.selection == selection
                              and previous.state != "done")
        if status.cleared:  # the version its delete unselected is still to select
            status.unselected = previous.unselected if previous else ""
            was_selected = was_selected or status.unselected == version
        try:
            # with task ids, only those are listed (a selectedItems query), not the whole project
            tasks = api.tasks(project.id, task_ids=ids, filters=filters)
            if ids is not None:
                _warn_missing(project_id, ids, tasks)
            if filters and not tasks:  # Label Studio answers an unknown field or operator with no task, not an error
                log.warning("project %s: the Data Manager filters keep no task: nothing to predict (check each item's "
                            "field, operator and value against a Data Manager tab's)", project_id)
            if mode == "all" and not status.cleared:
                status.unselected = version if was_selected else ""
                _save(host, status)
                whole = ids is None and not unlabeled and not filters
                deleting = True  # stopped now, Label Studio may still finish the delete: the status says so
                api.delete_predictions(project.id, version, None if whole else [
                    p.id for t in selected(tasks, ids, unlabeled) for p in t.predictions_of(version)])
                status.cleared = True
                project = api.project(project_id)  # the delete may have unselected the version
                # what the delete removed, taken off the listing: no second listing of the whole project
                tasks = _without(tasks, version, None if whole else {t.id for t in selected(tasks, ids, unlabeled)})
            # the version when the plan is made and logged, not the one read before the listing (and --all's delete,
            # which can take minutes): a retrain meanwhile makes the batches write the newer one (a walkthrough: the
            # plan line named labelhub-40, the job wrote labelhub-38, and no line said so)
            model.refresh()
            planned = model.model_version
            if planned != version:
                log.info("project %s: the model's version moved from %s to %s while the job listed its tasks: it "
                         "predicts with %s", project_id, version, planned, planned)
                status.model_version = planned
            batches = plan(tasks, planned, task_ids=ids, unlabeled=unlabeled, batch_size=batch_size)
            status.total = status.queued = sum(len(b) for b in batches)
            # the project's predictions of each version as planned, when the listing is the whole project
            before = Counter(p.model_version for t in tasks for p in t.predictions) \
                if ids is None and not filters else None

            def start(i: int) -> None:  # batch i leaves the queue
                in_flight[:] = batches[i] if i < len(batches) else []
                if i < len(batches):
                    status.queued -= len(batches[i])
                    status.running = len(batches[i])

            start(0)
            _save(host, status)
            log.info("project %s: %d of %d tasks to predict with %s in %d batches", project_id, status.total,
                     len(tasks), planned, len(batches))
            announced = {planned}  # the versions a line named: one more line when a batch writes another
            shown = {} if progress is None else {"disable": not progress}  # None: a terminal's, as TQDM_DISABLE says
            bar = progress_bar(total=status.total, unit="task", desc=f"project {project_id}", dynamic_ncols=True,
                               **shown)
            update = _progress_lines(project_id, status, batch_size, lambda: bar.total) if bar.disable else bar.update
            with contextlib.nullcontext() if bar.disable else logging_redirect_tqdm(tqdm_class=tqdm):
                for catch_up in range(CATCH_UP_PASSES + 1):
                    pass_versions: set[str] = set()
                    results = (execute or run_here)(host, api, project, batches, update)
                    for i, result in enumerate(results):
                        status.add(result)
                        for moved in (v for v in result.versions if v not in announced):
                            announced.add(moved)
                            log.info("project %s: the model's version moved during the job (a retrain): its batches "
                                     "now write %s (planned with %s)", project_id, moved, planned)
                        if status.versions and status.versions != [status.model_version]:  # a retrain moved it
                            status.model_version = _newest(status.versions,
                                                           _version_order(_served_model(host, project)[0])) or version
                        written.update(result.written)
                        counted.update(result.written)  # its last outcome: done, or left it (skipped, failed, empty)
                        counted.difference_update(result.skipped, result.failed, result.empty)
                        pass_versions.update(result.by_version)
                        start(i + 1)
                        _save(host, status)
                        bar.set_postfix(written=status.done, failed=status.failed, refresh=False)
                        if was_selected and mode == "all" and result.written and project.model_version != version:
                            project = _reselect(api, project, version)
                    # a retrain during the job: its batches wrote two versions or more, so the tasks written with an
                    # older one are predicted again with the newest, and the job ends with one version (its summary,
                    # the Data Manager's order). A retrain after its last batch leaves it whole: the next job's.
                    # the version a batch writes now (the job's own model is stale after a change of Extra params
                    # or of the label config); only tasks counted in ``done`` leave it, so the counts add up
                    newest = _served_model(host, project)[0].model_version
                    mixed = len(pass_versions) > 1 if catch_up == 0 else bool(pass_versions - {newest})
                    stale = plan(api.tasks(project.id, task_ids=sorted(counted)), newest, unlabeled=unlabeled,
                                 batch_size=batch_size) if mixed else []
                    if not stale:
                        break
                    if catch_up == CATCH_UP_PASSES:
                        status.behind = sum(len(b) for b in stale)
                        log.warning("project %s: the model kept retraining during the job: %d tasks hold an older "
                                    "version than %s (run the job again to predict them with it)", project_id,
                                    sum(len(b) for b in stale), newest)
                        break
                    batches = stale
                    added = sum(len(b) for b in batches)
                    # the versions written, not the model's newest: the next batches may write yet another one
                    log.info("project %s: a retrain moved the version during the job (its batches wrote %s): "
                             "predicting the %d tasks written with an older one again with the newest", project_id,
                             ", ".join(sorted(pass_versions)), added)
                    # tasks, each once: those predicted again leave ``done`` for the queue (``by_version`` keeps
                    # what each version got); the bar and the progress lines count the predictions to make
                    status.done -= added
                    status.queued += added
                    bar.total = (bar.total or 0) + added
                    start(0)
                    _save(host, status)
        except BaseException as exc:
            close = getattr(results, "close", None)
            if close is not None:  # now, not when garbage-collected: RQ's executor cancels its queued batches
                with contextlib.suppress(Exception):
                    close()
            status.state, status.finished_at = "failed", time.time()
            interrupted = isinstance(exc, KeyboardInterrupt)
            status.error = f"interrupted ({interrupt_reason(exc)})" if interrupted else _one_line(exc)
            if deleting and not status.cleared:  # stopped while --all's delete ran (minutes for a large project)
                status.error += (f"; stopped during --all's delete of the predictions of {version}, which Label Studio "
                                 "may have finished (the selected tasks then have none, and the version is no longer "
                                 "the project's prediction set): run the same command to write them")
            if interrupted and in_flight:
                _count_in_flight(api, project, status, in_flight)
            _save(host, status)
            raise
        finally:
            if bar is not None:
                bar.close()
        # still under the job's lock, so that no later job's status is overwritten by this one's
        if not _only_ours(api, project.id, {version, *status.versions}, before, tasks, status.by_version):
            _drop_duplicates(api, project.id, sorted(written), {version, *status.versions})
        served = _served_model(host, project)[0]
        ours = _versions_of(served, previous)
        status.model_version = _newest(status.versions, _version_order(served)) or version
        status.state, status.finished_at = "done", time.time()
        summary = failure_summary(status.failed, status.total, status.failures, origin, project.id, mode)
        status.error = redact(summary, getattr(host.settings, "secrets", ())) if summary else None
        partial = ids is not None or bool(filters)
        if partial and select_version is not False and project.model_version != status.model_version:
            # do the other tasks hold the version? (a listing of those that lack it: only when it could be selected)
            status.missing_elsewhere = _missing_elsewhere(api, project.id, status.model_version)
        status.prediction_set = _select_version(api, project, status, ours, select_version, partial)
        _save(host, status)
        if keep_versions and ids is None and not filters:
            from labelhub.backend.retire import retire_versions

            try:
                versions = {version, *status.versions}  # a batch writes the version of its time
                status.retired = retire_versions(api, project.id, ours | versions, keep_versions,
                                                 protected=versions | {status.prediction_set})
            except (LabelStudioError, ValueError) as exc:  # the predictions are written: the job stays done
                log.warning("project %s: could not list its model versions to retire the older ones: %s",
                            project_id, _one_line(exc))
            if status.retired:
                _save(host, status)
    return status


def _without(tasks: list[TaskRow], version: str, ids: set[int] | None) -> list[TaskRow]:
    """``tasks`` as they are after the predictions of ``version`` of the tasks ``ids`` (``None``: all) were deleted."""
    return [replace(t, predictions=tuple(p for p in t.predictions if p.model_version != version))
            if ids is None or t.id in ids else t for t in tasks]


def _reselect(api: LabelStudioClient, project: ProjectInfo, version: str) -> ProjectInfo:
    """Select ``version`` again as the project's prediction set, which ``--all``'s delete unselected, as soon as a
    batch of it landed: a job killed afterwards leaves the set selected (partly filled), not none. A refusal is
    logged: the end of the job selects it again."""
    try:
        api.select_model_version(project.id, version)
    except LabelStudioError as exc:
        log.info("project %s: could not select %s again yet (%s)", project.id, version, _one_line(exc))
        return project
    return replace(project, model_version=version)


def _count_in_flight(api: LabelStudioClient, project: ProjectInfo, status: JobStatus, batch: Sequence[int]) -> None:
    """After Ctrl-C: count the tasks of the batch in flight whose write landed (Label Studio commits a write the job
    stopped waiting for), so that the status and the last line say what Label Studio holds. Best effort: a failed
    read (or a second Ctrl-C) leaves the counts as they were."""
    try:
        versions = {status.model_version, *status.versions} - {None}
        landed = [t for t in api.tasks(project.id, list(batch)) if any(t.predictions_of(v) for v in versions)]
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 (the job is ending on its own error: keep that one)
        log.info("project %s: cannot read what the interrupted batch wrote (%s)", project.id, _one_line(exc))
        return
    status.done += len(landed)
    status.running = 0
    status.queued += len(batch) - len(landed)


#: The Data Manager filter of the tasks without a prediction of a version (``predictions_model_versions`` with
#: ``not_contains``: ``apply_filters`` in Label Studio's ``data_manager/managers.py``, a substring match; versions
#: ``labelhub-<n>-<hash>`` are not parts of each other).
def _lacking(version: str) -> dict:
    return {"conjunction": "and", "items": [{"filter": "filter:tasks:predictions_model_versions",
                                              "operator": "not_contains", "type": "List", "value": [version]}]}


def _missing_elsewhere(api: LabelStudioClient, project_id: int, version: str | None) -> int | None:
    """How many unlabeled tasks of the project have no prediction of ``version`` (``None`` when it cannot be read:
    logged). A job of part of the project selects its version only when this is 0 (:func:`_select_version`)."""
    if not version:
        return None
    try:
        return sum(1 for t in api.tasks(project_id, filters=_lacking(version)) if not t.is_labeled)
    except LabelStudioError as exc:
        log.info("project %s: cannot count the tasks without a prediction of %s (%s)", project_id, version,
                 _one_line(exc))
        return None


def _newest(written: Sequence[str], order: Sequence[str]) -> str | None:
    """The newest of the versions ``written`` by the model's own order (its state's ``versions``, oldest first):
    batches finish in any order on workers, so the last to finish may carry an older version. A version the
    order does not name counts as the oldest: the jobs give :func:`_version_order`, which names the version served
    now last (before, the one Extra params moved to counted as the oldest, and a job's summary called it older)."""
    rank = {v: i for i, v in enumerate(order)}
    return max(written, key=lambda v: rank.get(v, -1), default=None)


#: A version LabelHub's default model serves (:mod:`labelhub.backend.models.project`): ``labelhub-<n>-<8 hex>``, a fit's
#: or one folded with the project's parameters (which the state's ``versions`` never lists).
_OWN_VERSION = re.compile(r"labelhub-\d+-[0-9a-f]{8}")


def _versions_of(model: Any, previous: JobStatus | None) -> set[str]:
    """The versions this model wrote: its state's ``versions`` (the last 50) and the previous job's. A version of
    :data:`_OWN_VERSION`'s form counts too (:func:`_select_version`): after a change of Extra params the served
    version is none of them."""
    ours = set(model.get("versions") or [])
    if previous and previous.model_version:
        ours.add(previous.model_version)
    return ours


def _is_backend_title(api: LabelStudioClient, project_id: int, current: str) -> bool:
    """Whether ``current`` is the title of one of the project's ML backends (``False`` when that cannot be read)."""
    try:
        return current in api.ml_backend_titles(project_id)
    except LabelStudioError as exc:
        log.info("project %s: cannot list its ML backends (%s)", project_id, exc)
        return False


def _select_version(api: LabelStudioClient, project: ProjectInfo, status: JobStatus, ours: set[str],
                    select: bool | None, partial: bool = False) -> str:
    """Make the job's version the project's prediction set when asked, or (``select=None``) when the project
    has none, one of ``ours`` (versions this model wrote), or the title of one of its ML backends (what connecting
    a backend selects: no stored prediction carries it, so the "Prediction score" column stayed blank); a refusal
    is logged, not raised; a version of which the project holds no prediction (every task failed) is not asked for.

    A ``partial`` job (``--task-ids``, ``--filter``, ``--view``, new tasks) selects its version only when every
    unlabeled task of the project holds a prediction of it (:attr:`JobStatus.missing_elsewhere` is 0): the Data
    Manager's sort by "Prediction score" would otherwise leave the others blank (100 tasks of a split predicted, 203
    blank). ``select=True`` (``--select-version``) selects it anyway, with a warning. Returns the project's
    prediction set afterwards."""
    version, current = status.model_version, project.model_version or ""
    if not version or current == version or select is False:
        return current
    if not status.done and status.empty and select is None:  # advice to run a job would write nothing either
        log.info("project %s: its prediction set stays %r: the model has learned nothing yet (all %d answers were "
                 "empty, none written); the job after its first fit predicts the tasks", project.id, current,
                 status.empty)
        return current
    if partial and status.missing_elsewhere is None and select is None:
        log.info("project %s: its prediction set stays %r: the job covered part of the project and the others' "
                 "predictions could not be counted", project.id, current)
        return current
    if status.missing_elsewhere:
        advice = (f"{status.missing_elsewhere} unlabeled task(s) of the project have no prediction of {version}: "
                  "sorted by 'Prediction score' they would show blank")
        if not select:
            log.info("project %s: its prediction set stays %r: %s; run `labelhub predict --project %s` to predict "
                     "them (it then selects %s)", project.id, current, advice, project.id, version)
            return current
        log.warning("project %s: selecting %s as asked, though %s", project.id, version, advice)
    if select is None and current and current not in ours and not _OWN_VERSION.fullmatch(current) \
            and not _is_backend_title(api, project.id, current):
        log.info("project %s: its prediction set stays %r (select %s in Settings > Annotation to sort the Data "
                 "Manager by its scores)", project.id, current, version)
        return current
    if not status.done and version not in {row.model_version for row in api.model_versions(project.id)}:
        # Label Studio refuses a version without predictions (400, "doesn't exist ... as static predictions")
        log.info("project %s: no prediction of %s was written, so its prediction set stays %r", project.id, version,
                 current)
        return current
    try:
        api.select_model_version(project.id, version)
        log.info("project %s: prediction set is now %s", project.id, version)
        return version
    except LabelStudioError as exc:
        log.warning("project %s: could not select %s as its prediction set: %s", project.id, version, exc)
        return current
