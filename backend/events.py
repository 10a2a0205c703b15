"""The durable event queue and the background trainer.

``/webhook`` writes each event to ``MODEL_DIR/events/pending/`` (atomically, ``fsync``-ed) *before* it
answers 2xx, so a crash loses none. One trainer at a time (elected with ``flock`` on
``MODEL_DIR/events/trainer.lock``; a thread in every worker tries, the lock passes on when its holder
dies) takes the pending events in order of arrival, applies them to each project's training data
(:meth:`labelhub.backend.state.ProjectState.load_annotations`), calls the model's
:meth:`~labelhub.backend.model.LabelStudioMLBase.fit_batch` once per project and batch, and only then deletes
the event files. Training therefore never runs inside the annotator's save, and many events in a burst
cost one fit.

Applying events is idempotent and order-tolerant: annotations are upserted by id and an older
``updated_at`` never overwrites a newer one; deleted annotations and tasks leave tombstones, so a late
``ANNOTATION_UPDATED`` of a deleted annotation is ignored; a cancelled (skipped) annotation leaves training and
its cancel's ``updated_at`` is kept (``cancelled`` in the training data), so an older event of it arriving late is
ignored too, while a newer one that is not cancelled brings it back; an event applied twice (crash between apply
and delete) changes nothing, and the default model does not refit on unchanged data.

A project whose state cannot be read or saved (a damaged ``annotations.json``, a full disk) keeps its events queued
while the other projects train, and the trainer tries it again every few seconds, saying the cause once
(:meth:`Trainer.run_batch`, :meth:`Trainer._lead`).

With ``LABELHUB_REDIS_URL`` the queue is a Redis list and the election a Redis lease
(:class:`labelhub.backend.redis_state.RedisEventQueue`, same interface: ``put``, ``take``, ``done``, ``fail``,
``count``, ``trainer_lease``), so one trainer serves every host. After a fit that moves a project's
``model_version``, and for ``TASKS_CREATED`` events, the trainer asks :mod:`labelhub.backend.auto_predict` for a
prediction job (when ``LABELHUB_AUTO_PREDICT`` is on).

Event bodies are Label Studio's, checked by :func:`labelhub.webhooks.parse_event` (the format is there).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Iterator, NamedTuple, Protocol

from labelhub.backend.errors import InvalidPayloadError, UnknownActionError
from labelhub.backend.log_once import first_time, log_once
from labelhub.backend.missed_events import requeue_missed
from labelhub.errors import InvalidEventError, LabelHubError, UnknownEventAction
from labelhub.redaction import one_line
from labelhub.webhooks import ACTIONS, check_training_tasks, event_action, parse_event
from labelhub.backend.state import LISTED_VERSIONS, Store, atomic_write_json
from labelhub.locks import file_lock

if TYPE_CHECKING:  # pragma: no cover
    from labelhub.backend.metrics import Metrics
    from labelhub.backend.model import LabelStudioMLBase
    from labelhub.backend.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["EventQueue", "Trainer", "Batch", "TrainerHost", "ModelSource", "apply_event", "validate_event",
           "remove_unlisted", "listed_annotation_ids",
           "HANDLED_ACTIONS", "IGNORED_ACTIONS", "PARAMS_CHANGED"]

#: Actions that change what the model learns from, queued durably.
HANDLED_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED",
                   "TASKS_DELETED", "START_TRAINING", "PROJECT_UPDATED", "TRAIN"}
#: The backend's own event (never a webhook's): ``/setup`` changed a project's Extra params, so the ``model_version``
#: it serves may have moved without a fit; the trainer then asks for the automatic job of the unlabeled tasks
#: (:mod:`labelhub.backend.auto_predict`), as after a retrain. Its payload is ``{}``.
PARAMS_CHANGED = "LABELHUB_PARAMS_CHANGED"
#: Label Studio actions accepted and ignored (the webhook Label Studio creates sends every action).
IGNORED_ACTIONS = set(ACTIONS) - HANDLED_ACTIONS
#: Keys of a project's ``kv.json`` that LabelHub's default model before ``ProjectModel`` wrote (``ChoicesModel``,
#: ``git show 3034381:backend/models/choices.py``); beside no ``heads`` they mark its fit (see
#: :meth:`Trainer.refit_changed`).
_OLDER_DEFAULT_KEYS = ("model_version", "head_file", "train_digest")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def validate_event(action: Any, payload: Any, also: Collection[str] = ()) -> str:
    """Check an event's shape before it is queued (:func:`labelhub.webhooks.parse_event`).

    Args:
        action: The ``action`` field.
        payload: The whole JSON body.
        also: Actions handled beyond :data:`HANDLED_ACTIONS` (``TASKS_CREATED`` with ``LABELHUB_AUTO_PREDICT``).

    Returns:
        ``"handled"`` or ``"ignored"``.

    Raises:
        InvalidPayloadError: When ``action`` is missing, or a handled event lacks the field it needs.
        UnknownActionError: When ``action`` is not a Label Studio webhook action.
    """
    try:
        if event_action(payload) in IGNORED_ACTIONS - set(also):
            return "ignored"
        parse_event(payload, need_project=True)
    except UnknownEventAction as exc:
        raise UnknownActionError(str(exc), action=str(action)[:60], handled=sorted(HANDLED_ACTIONS - {"TRAIN"})) \
            from None
    except InvalidEventError as exc:
        raise InvalidPayloadError(str(exc), **({"field": exc.field} if exc.field else {})) from None
    return "handled"


class EventQueue:
    """Events on disk, one file each, named so that sorting them gives the order of arrival.

    Args:
        root: ``MODEL_DIR/events``.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.pending_dir = self.root / "pending"
        self.failed_dir = self.root / "failed"
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.failed_dir.mkdir(parents=True, exist_ok=True)

    def put(self, action: str, payload: dict, project_key: str | None) -> str:
        """Persist an event durably (returns after ``fsync``).

        Args:
            action: The webhook action.
            payload: The event as received.
            project_key: The project it belongs to (``None`` when the payload names none).

        Returns:
            The event id (its file name without ``.json``).

        Raises:
            OSError: When the disk is full or not writable (the webhook then answers 500 and Label
                Studio's log shows the failure; nothing is acknowledged that is not stored).
        """
        event_id = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        atomic_write_json(self.pending_dir / f"{event_id}.json",
                          {"id": event_id, "action": action, "project_key": project_key,
                           "received_at": time.time(), "payload": payload})
        return event_id

    def pending(self, limit: int = 5000) -> list[Path]:
        """The pending event files, oldest first."""
        names = sorted(n for n in os.listdir(self.pending_dir) if n.endswith(".json"))
        return [self.pending_dir / n for n in names[:limit]]

    def take(self, limit: int = 5000) -> list[tuple[Path, dict | None]]:
        """The oldest ``limit`` events, left in the queue until :meth:`done`: ``[(handle, event or None)]``
        (``None``: the file does not parse)."""
        out = []
        for path in self.pending(limit):
            try:
                event = json.loads(path.read_bytes())
            except (OSError, ValueError):
                event = None
            out.append((path, event if isinstance(event, dict) else None))
        return out

    @contextmanager
    def trainer_lease(self) -> Iterator[bool]:
        """Try to become this host's trainer: ``flock`` on ``events/trainer.lock`` (yields whether it is)."""
        with file_lock(self.root / "trainer.lock", blocking=False) as held:
            yield held

    def count(self) -> int:
        """How many events wait."""
        return sum(1 for n in os.listdir(self.pending_dir) if n.endswith(".json"))

    def mark_trainer(self, held: bool = True) -> None:
        """Say (``held``) or unsay which process is the trainer, in ``events/trainer.json`` (``{"host", "pid"}``), for
        :meth:`trainer_holder`; called by the trainer after it took the lease (once per process: the ``flock``
        holds as long as the process lives) and when it gives it up."""
        path = self.root / "trainer.json"
        if held:
            if getattr(self, "_marked", False):
                return
            atomic_write_json(path, {"host": socket.gethostname(), "pid": os.getpid()})
            self._marked = True
        elif getattr(self, "_marked", False):
            self._marked = False
            if (self.trainer_holder() or {}).get("pid") == os.getpid():
                path.unlink(missing_ok=True)

    def trainer_holder(self) -> dict | None:
        """The process that is this host's trainer, the same from every worker: ``{"host", "pid"}`` from
        ``events/trainer.json`` when that process still lives, else ``None`` (none yet, or it died and no worker took
        the lease over yet)."""
        try:
            holder = json.loads((self.root / "trainer.json").read_bytes())
            pid = int(holder["pid"])
            os.kill(pid, 0)
        except PermissionError:  # alive, another user's
            pass
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return {"host": str(holder.get("host")), "pid": pid}

    def done(self, path: Path) -> None:
        """Forget an applied event."""
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    def fail(self, path: Path) -> None:
        """Move an unreadable event aside (kept for inspection)."""
        try:
            os.replace(path, self.failed_dir / path.name)
        except FileNotFoundError:
            pass


def _newer(a: Any, b: Any) -> bool:
    """Whether time ``a`` is strictly newer than ``b`` (ISO 8601 strings; unknown compares as old)."""
    def parse(v):
        if isinstance(v, str):
            try:
                return datetime.fromisoformat(v).timestamp()
            except ValueError:
                return None
        return None

    pa, pb = parse(a), parse(b)
    if pa is None or pb is None:
        return False
    return pa > pb


def _upsert(data: dict, ann: dict, task: dict | None) -> bool:
    """Add or update one annotation (Label Studio's JSON) in ``data``, in the order of its ``updated_at``.

    A cancelled (skipped) one leaves training, and its ``updated_at`` is kept in ``data["cancelled"]``
    (``{annotation id: {"task", "updated_at"}}``, created when first needed), so that an older event of it applied
    later is ignored, as one older than the stored version is; a newer event that is not cancelled brings it back.
    Ids and tasks with a tombstone are ignored. Returns whether ``data`` changed; raises nothing.
    """
    aid = str(ann.get("id"))
    tid = ann.get("task")
    if isinstance(tid, dict):
        tid = tid.get("id")
    if tid is None and isinstance(task, dict):
        tid = task.get("id")
    if tid is None or aid in data["tombstones"] or f"task:{tid}" in data["tombstones"]:
        return False
    tid = str(tid)
    changed = False
    if isinstance(task, dict) and isinstance(task.get("data"), dict):
        if data["tasks"].get(tid, {}).get("data") != task["data"]:
            data["tasks"][tid] = {"data": task["data"]}
            changed = True
    old = data["annotations"].get(aid)
    if old is not None and _newer(old.get("updated_at"), ann.get("updated_at")):
        return changed  # an older version arrived late
    cancel = (data.get("cancelled") or {}).get(aid)
    if isinstance(cancel, dict) and _newer(cancel.get("updated_at"), ann.get("updated_at")):
        return changed  # older than the annotation's cancel: it stays out of training
    if ann.get("was_cancelled"):
        changed |= data["annotations"].pop(aid, None) is not None
        mark = {"task": tid, "updated_at": ann.get("updated_at")}
        if cancel != mark:  # remembered, so that an older event of it arriving late does not bring it back
            data.setdefault("cancelled", {})[aid] = mark
            changed = True
        return changed
    if cancel is not None:  # un-cancelled by a newer event: its own updated_at orders what comes next
        del data["cancelled"][aid]
        changed = True
    new = {"task": tid, "result": ann.get("result") or [], "updated_at": ann.get("updated_at"),
           "ground_truth": bool(ann.get("ground_truth"))}
    if old != new:
        data["annotations"][aid] = new
        changed = True
    return changed


def apply_event(data: dict, action: str, payload: dict) -> bool:
    """Apply one event to a project's training data, idempotently.

    Args:
        data: The training data (``{"annotations", "tombstones", "tasks"}``), changed in place.
        action: The webhook action.
        payload: The event as received.

    Returns:
        Whether ``data`` changed. Items that are not objects are skipped (legacy ``/train`` bodies are
        checked only for a list).
    """
    changed = False
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"):
        tasks = {str(t.get("id")): t for t in _as_list(payload.get("task")) if isinstance(t, dict)}
        for ann in _as_list(payload.get("annotation")):
            if isinstance(ann, dict):
                tid = ann.get("task")
                changed |= _upsert(data, ann, tasks.get(str(tid)) if tid is not None else
                                   (next(iter(tasks.values())) if len(tasks) == 1 else None))
    elif action == "ANNOTATIONS_DELETED":
        for ann in _as_list(payload.get("annotations")):
            if not isinstance(ann, dict):
                continue
            aid = str(ann.get("id"))
            changed |= data["annotations"].pop(aid, None) is not None
            changed |= (data.get("cancelled") or {}).pop(aid, None) is not None  # the tombstone outranks it
            if aid not in data["tombstones"]:
                data["tombstones"][aid] = time.time()
                changed = True
    elif action == "TASKS_DELETED":
        for task in _as_list(payload.get("tasks")):
            if not isinstance(task, dict):
                continue
            tid = str(task.get("id"))
            for aid in [a for a, ann in data["annotations"].items() if ann.get("task") == tid]:
                del data["annotations"][aid]
                changed = True
            changed |= data["tasks"].pop(tid, None) is not None
            cancels = data.get("cancelled") or {}
            for aid in [a for a, mark in cancels.items() if isinstance(mark, dict) and mark.get("task") == tid]:
                del cancels[aid]  # the task's tombstone outranks them
                changed = True
            if f"task:{tid}" not in data["tombstones"]:
                data["tombstones"][f"task:{tid}"] = time.time()
                changed = True
    elif action == "TRAIN":  # legacy /train: tasks with their annotations
        tasks = [t for t in _as_list(payload.get("annotations")) if isinstance(t, dict)]  # an item no task: skipped
        for task in tasks:
            for ann in _as_list(task.get("annotations")):
                if isinstance(ann, dict):
                    changed |= _upsert(data, {**ann, "task": task.get("id")}, task)
        listed = listed_annotation_ids(tasks)
        below = max((int(a) for a in listed if a.isdigit()), default=0)
        changed |= bool(remove_unlisted(data, listed, lambda aid: int(aid) <= below))
    return changed


def listed_annotation_ids(tasks: list[dict]) -> set[str]:
    """The ids (as text) of every annotation of ``tasks`` (Label Studio's task JSON with ``annotations``), cancelled
    ones included."""
    return {str(a.get("id")) for t in tasks if isinstance(t, dict) for a in _as_list(t.get("annotations"))
            if isinstance(a, dict) and a.get("id") is not None}


def remove_unlisted(data: dict, listed: Collection[str], gone: Any) -> list[str]:
    """Remove from a project's training data the annotations a complete listing of Label Studio's did not hold.

    How Label Studio's annotations and the stored ones are brought to the same set on "Start training" and the legacy
    ``/train`` (whose body is every annotated task of the project, ``MLApi.train`` in
    ``label_studio/ml/api_connector.py``): what the listing holds is added or updated (:func:`apply_event`), and a
    stored annotation it does not hold is removed, with a tombstone (a late webhook of it then changes nothing) and
    its task's data when no other annotation of the task is left, only when ``gone(annotation id)`` says it is gone.
    That check is there because a listing is not an instant: an annotation created while it was read may be missing
    from it although its webhook was applied already.

    Args:
        data: The project's training data (``{"annotations", "tombstones", "tasks"}``), changed in place.
        listed: The annotation ids (text) the listing held.
        gone: ``gone(annotation id) -> bool``: whether an annotation missing from the listing is really gone. For the
            legacy ``/train``, whether its id is at or below the highest id listed (Label Studio numbers annotations
            in order, so one created after the body was built has a higher id); for "Start training", whether Label
            Studio answers 404 for it (:meth:`Trainer._read_annotations`).

    Returns:
        The ids removed, in id order.
    """
    removed = []
    for aid in sorted((a for a in data["annotations"] if a not in listed), key=lambda a: (len(a), a)):
        if not aid.isdigit() or not gone(aid):
            continue
        tid = data["annotations"].pop(aid).get("task")
        data["tombstones"].setdefault(aid, time.time())
        if not any(ann.get("task") == tid for ann in data["annotations"].values()):
            data["tasks"].pop(str(tid), None)
        removed.append(aid)
    return removed


def _list_served_version(state: Any, served: str, without_fit: bool = False) -> None:
    """Add ``served`` (the version the project's model serves now) to the state's ``versions`` (what ``/versions``
    lists) when the project has a fit, or ``without_fit`` (its model answers before any fit: ``serves_without_fit``
    of :class:`labelhub.backend.models.project.ProjectModel`, a Hub model in the Extra params), and the list lacks
    it: changed Extra params fold into the served version without a fit
    (:meth:`labelhub.backend.models.project.ProjectModel.model_version`), and Label Studio's model version picker
    should offer the version its predictions carry."""
    kv = state.kv()
    versions = list(kv.get("versions") or [])
    if (kv.get("model_version") or without_fit) and served and served not in versions:
        state.update_kv(versions=(versions + [served])[-LISTED_VERSIONS:])


class ModelSource(Protocol):
    """Where the trainer gets a project's model (:class:`labelhub.backend.app.ModelRegistry` is one).

    Attributes:
        model_class: The configured model class (``LABELHUB_MODEL``); a source without it counts as serving a
            custom model (see :meth:`Trainer.refit_changed`).
    """

    model_class: type

    def get(self, key: str, label_config: str | None = None, **kwargs: Any) -> "LabelStudioMLBase":
        """The model of project ``key`` for ``label_config`` (see ``ModelRegistry.get``)."""


class TrainerHost(Protocol):
    """What the :class:`Trainer` uses of the running backend (:class:`labelhub.backend.app.Backend` is one).

    Described here rather than imported so that this module does not import the app (which imports it).

    Attributes:
        settings: The backend's settings (``trainer_poll_interval``).
        store: The projects' state on disk.
        queue: The durable event queue.
        models: The models, one per project.
        metrics: The Prometheus metrics (``events_pending``, ``trainings``, ``training_seconds``).
    """

    settings: "Settings"
    store: Store
    queue: EventQueue
    models: ModelSource
    metrics: "Metrics"
    auto: Any  # optional: an AutoPredictor (labelhub.backend.auto_predict); absent in tests that make their own host


class Batch(NamedTuple):
    """What one :meth:`Trainer.run_batch` did.

    Attributes:
        taken: The events it took from the queue.
        progressed: Whether any of them left the queue (applied, dropped or moved aside).
    """

    taken: int
    progressed: bool


class _Backoff:
    """The trainer's wait after a batch that made no progress (:meth:`Trainer._lead`): ``poll`` seconds at first, twice
    as long each time after, at most :data:`CAP`; :meth:`reset` after progress."""

    #: The longest wait, in seconds: a fixed state is noticed within it.
    CAP = 5.0

    def __init__(self, poll: float):
        self.poll = poll
        self.delay = poll

    def next(self) -> float:
        """The wait now; the next one is twice as long (up to :data:`CAP`)."""
        delay = min(self.delay, max(self.CAP, self.poll))
        self.delay = min(delay * 2, max(self.CAP, self.poll))
        return delay

    def reset(self) -> None:
        """Back to ``poll``."""
        self.delay = self.poll


def _failure_cause(exc: BaseException) -> str:
    """``exc`` as one line that stays the same while its cause does: an ``OSError``'s file name (a temporary file's,
    new at each try) is left out."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: [Errno {exc.errno}] {exc.strerror}"
    return f"{type(exc).__name__}: {one_line(exc, 500)}"


class LeaseLost(RuntimeError):
    """The trainer's Redis lease passed to another process before this one saved (see
    :meth:`Trainer.still_trainer`): the events are left in the queue for the new trainer."""


class Trainer:
    """Applies queued events and fits models in a background thread (one trainer across all workers).

    Args:
        backend: The running backend (store, queue, model registry, metrics): any :class:`TrainerHost`.
    """

    def __init__(self, backend: TrainerHost):
        self.backend = backend
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.is_leader = False
        self._lease: Any = None  # the trainer lease held by the thread (see still_trainer)
        self._stuck: dict[str, str] = {}  # {project: the cause said} of the projects whose events cannot be applied
        self._held_back = 0  # events of those projects the last batch kept: the next take reads that many more

    def start(self) -> None:
        """Start the daemon thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="labelhub-trainer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to stop after the current batch and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        """The trainer thread: :meth:`_lead` again and again until :meth:`stop`. An error out of it (with Redis, a
        Redis that cannot be reached while the lease is taken or asked: a restart, a failover) is said once, and the
        thread tries again every few seconds: before, it ended the thread, and that process trained no more until it
        was restarted (found by an audit)."""
        poll = self.backend.settings.trainer_poll_interval
        failing = False
        while not self._stop.is_set():
            try:
                self._lead(poll)
            except Exception as exc:  # the thread never ends on an error: it tries again
                if not failing:
                    log.warning("the trainer cannot take or keep its lease (%s: %s); trying again every %g s",
                                type(exc).__name__, one_line(exc), max(poll * 4, 2.0))
                failing = True
                self._stop.wait(max(poll * 4, 2.0))
                continue
            if failing:
                log.info("the trainer's lease answers again")
                failing = False

    def _lead(self, poll: float) -> None:
        """Take the trainer's lease (:meth:`EventQueue.trainer_lease`, or Redis's) and train while it is held; wait a
        little and return when another process holds it, or when the lease is lost or the trainer stops.

        After a batch that took events and removed none from the queue (every project it held cannot be read or saved:
        a damaged ``annotations.json``, a full disk: :meth:`run_batch`), the trainer waits before it tries again, the
        poll interval at first and twice as long each time, at most :data:`_Backoff.CAP` seconds, back to the poll
        interval after a batch that removed some. Before, it tried again at once: 27,000 log lines a second and half a
        core for as long as the state stayed broken (an audit).

        Raises:
            Exception: what taking or asking the lease raises (``redis.exceptions.ConnectionError``); the batches'
                own errors are logged, never raised.
        """
        self._catch_up_missed()
        with self.backend.queue.trainer_lease() as held:
            if not held:
                self._stop.wait(max(poll * 4, 0.5))
                return
            self.is_leader, self._lease = True, held
            self._mark(True)
            auto = getattr(self.backend, "auto", None)
            try:
                if auto is not None:
                    auto.resume_interrupted()
            except Exception:  # never stops the trainer
                log.exception("resuming interrupted prediction jobs failed")
            try:
                self.catch_up_missed_while_down()
            except Exception:  # never stops the trainer
                log.exception("looking for annotations made while no trainer ran failed")
            try:
                self.refit_changed()
            except Exception:  # never stops the trainer
                log.exception("refitting the heads an upgrade changed failed")
            try:
                backoff = _Backoff(poll)
                while not self._stop.is_set() and self.still_trainer():
                    try:
                        batch = self.run_batch()
                    except Exception:  # keep the trainer alive; the events stay queued
                        log.exception("trainer batch failed")
                        batch = Batch(0, False)
                        self._stop.wait(2.0)
                    if batch.progressed:
                        backoff.reset()
                    else:  # nothing queued, or only events of projects whose state cannot be read or saved
                        self._catch_up_missed()
                        self._stop.wait(backoff.next() if batch.taken else poll)
                    self._mark(True)
            finally:
                self.is_leader, self._lease = False, None
                self._mark(False)

    def _catch_up_missed(self) -> None:
        """Queue a Start training for each project whose webhook this host refused because the queue could not store
        it (:mod:`labelhub.backend.missed_events`; a directory listing when there is none), in every worker, trainer
        or not: the notes are this host's."""
        try:
            requeue_missed(self.backend.settings.model_dir, self.backend.queue)
        except Exception:  # never stops the trainer
            log.exception("queueing the missed events failed")

    def _mark(self, held: bool) -> None:
        """Tell the queue this process holds (or gave up) the trainer's lease, for ``/health``'s ``trainer``
        (:meth:`EventQueue.trainer_holder`); a failure is logged and changes nothing else."""
        mark = getattr(self.backend.queue, "mark_trainer", None)
        try:
            if mark is not None:
                mark(held)
        except Exception as exc:  # e.g. Redis gone for a moment: /health names no trainer meanwhile
            log.debug("could not record the trainer: %s", exc)

    @property
    def lease(self) -> Any:
        """The trainer's lease while this process's trainer thread holds it: ``True`` for the host's ``flock``, a
        :class:`labelhub.backend.redis_state.Lease` with Redis (its
        :meth:`~labelhub.backend.redis_state.Lease.set_if_held` fences the trainer's own writes to Redis); ``None``
        when this process is not the trainer."""
        return self._lease

    def still_trainer(self) -> bool:
        """Whether this process is still the trainer. A file lock (one host) holds as long as the process lives; a
        Redis lease (:class:`labelhub.backend.redis_state.Lease`) passes to another host's trainer when this one
        paused longer than it (``LABELHUB_TRAINER_LEASE``), and is asked again (one Redis ``GET``) before each batch
        and before the training data is saved, so a trainer that woke up late writes nothing over the new one's.
        True outside the trainer's thread (tests call :meth:`run_once` directly)."""
        still = getattr(self._lease, "still_held", None)
        return still() if still is not None else True

    def catch_up_missed_while_down(self) -> list[str]:
        """When this process takes the trainer over, queue a Start training for each project of which Label Studio
        holds more annotations than the backend: annotations saved while no backend ran (Label Studio sends each
        webhook once and never again) then reach the training data without anyone pressing the button (the Start
        training also removes those deleted meanwhile).

        One ``GET /api/projects/<id>/`` per known project not marked gone (Label Studio's ``total_annotations_number``,
        the annotations that were not cancelled, against those the backend holds), and nothing without
        ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``. Decided: a count, not a whole reading at every start (5 to
        7 s per 3,000 tasks, minutes at 100,000); and only a larger count in Label Studio: a smaller one would also be
        a backend given annotations Label Studio never held (by a script, or a test), which a Start training would
        remove, so that is left to the button. An annotation only edited, or only deleted, while the backend was down
        keeps its former state in training until its next save or a Start training. A project Label Studio does not
        answer for is left to its events (the project check marks it gone if it is), and so is one whose annotations
        cannot be read (a damaged ``annotations.json``: one WARNING line; before, it ended the count of the projects
        after it).

        Returns:
            The keys of the projects queued.
        """
        from labelhub.backend.labelstudio_api import LabelStudioClient
        from labelhub.backend.state import project_id_of

        settings = self.backend.settings
        if not (settings.label_studio_url and settings.label_studio_api_key):
            return []
        client, queued = None, []
        for key in self.backend.store.known_projects():
            if self._stop.is_set() or self.backend.store.gone(key):
                continue
            try:
                client = client or LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key)
                info = client.project(project_id_of(key))
            except LabelHubError as exc:
                log.debug("project %s: its annotations in Label Studio not counted (%s)", key, one_line(exc, 200))
                continue
            try:
                held = len(self.backend.store.project(key).load_annotations().get("annotations") or {})
            except Exception as exc:  # e.g. a damaged annotations.json: its events say so; the other projects go on
                log.warning("project %s: its annotations not counted (%s)", key, one_line(_failure_cause(exc), 300))
                continue
            if info.key != key or info.annotations is None or info.annotations <= held:
                continue
            log.info("project %s: Label Studio holds %d annotations, the backend %d (saved while no backend ran?): "
                     "reading them from Label Studio, as Start training does", key, info.annotations, held)
            self.backend.queue.put("START_TRAINING", {"action": "START_TRAINING", "project": {"id": info.id}}, key)
            queued.append(key)
        return queued

    def refit_changed(self) -> None:
        """Refit what an upgrade changed in every trained project; called when this process takes the trainer over.

        A model's fit of a project is only redone when an event arrives, so after an upgrade that changed what a
        head fits (its ``identity()``: features, classifier, fitted format; see
        :mod:`labelhub.backend.models.project`) the fit stored by the earlier version would serve predictions
        until the next annotation. Here each project the default model fitted before (its state names ``heads``;
        a custom ``LABELHUB_MODEL`` keeps its own state and is left to its events) gets an empty batch:
        :meth:`~labelhub.backend.models.project.ProjectModel.fit_batch` refits only the heads whose identity or
        examples changed, and a moved ``model_version`` re-predicts the unlabeled tasks as after any retrain. A
        project with nothing to refit costs reading its annotations and a digest of them: 1.4 s at 100,000
        annotations (0.8 s of it reading them), about 0.01 s at 1,000. Errors are handled per project as for
        events (logged, ``last_error`` set), and the other projects go on.

        A project whose state an older LabelHub's default model wrote (``ChoicesModel``, before the default became
        :class:`~labelhub.backend.models.project.ProjectModel`: its ``kv.json`` names a ``model_version``,
        ``head_file`` or ``train_digest`` and no ``heads``) is refit the same way, with one log line saying why,
        when its ``annotations.json`` holds annotations and the configured model is the default one: that model
        cannot load the old fit, and would answer empty results under the old ``model_version`` until the next
        annotation. Once refit the state names ``heads``, so later starts treat it as above. Under a custom
        ``LABELHUB_MODEL`` such a state is the custom model's own (it may write ``model_version`` alone) and is
        left to its events.

        A project that holds annotations and has no fit yet is fitted the same way, with one log line (naming its
        ``last_error`` when a fit failed): its first fits stored nothing because the media of all its examples could not
        be loaded (a ``LABELHUB_SECRET`` other than the sync's, Label Studio or the Hub down; nothing is then recorded,
        so that the next fit tries again: ``_fit_head`` of :class:`~labelhub.backend.models.project.ProjectModel`), or
        because a head's fit raised; fixed and restarted, the backend would otherwise wait for the next annotation. Only
        under a model that records ``heads`` (``ProjectModel`` or a subclass of it: another custom model's state never
        names ``heads``, and would be refit at every start), for a project not marked gone, whose ``kv.json`` names none
        of the older default model's keys (that case is above), and whose model has a head that learns (a project whose
        only heads are Hugging Face models never names ``heads``). This is once per takeover: a fit that stores
        something names ``heads``, so later starts treat the project as above; one that still loads no media stores
        nothing and is tried again at the next start (or event), at the cost of fetching its examples' media again.
        Deciding costs, for each project without ``heads``, reading its annotations (a missing or empty
        ``annotations.json``, or Redis key, for a project never annotated) and, when it holds some, building its model
        (``setup`` reads the label config; nothing is loaded); the fit then reads them once more. A label config the
        model refuses (its events said why, and ``last_error`` holds it) is skipped quietly (DEBUG).
        """
        default = self._serves_default_model()
        from labelhub.backend.models.project import ProjectModel

        configured = getattr(self.backend.models, "model_class", None)
        records_heads = isinstance(configured, type) and issubclass(configured, ProjectModel)
        for key in self.backend.store.known_projects():
            if self._stop.is_set():
                return
            try:
                state = self.backend.store.project(key)
                kv = state.kv()
                if kv.get("heads"):
                    self._train_project(key, [])
                elif (default and any(k in kv for k in _OLDER_DEFAULT_KEYS)
                      and state.load_annotations().get("annotations")):
                    log.info("project %s: refitting with the default model: the stored fit (model_version %s) was "
                             "made by an older LabelHub", key, one_line(kv.get("model_version") or "none", 80))
                    self._train_project(key, [])
                elif records_heads and not any(k in kv for k in _OLDER_DEFAULT_KEYS) \
                        and not self.backend.store.gone(key):
                    held = len(state.load_annotations().get("annotations") or {})
                    label_config = state.project().get("label_config") if held else None
                    try:
                        heads = getattr(self.backend.models.get(key, label_config), "heads", None) if label_config \
                            else ()
                    except LabelHubError as exc:  # e.g. a label config no head supports: its events said so
                        log.debug("project %s: not fitted at trainer start: %s", key, one_line(exc, 200))
                        heads = ()
                    if heads is None or any(getattr(head, "learns", True) for head in heads):
                        last = kv.get("last_error")
                        log.info("project %s: fitting at trainer start: it holds %d annotations and no fit yet (%s)",
                                 key, held, f"the last fit failed: {one_line(last, 200)}" if last else
                                 "none was stored: its examples' media did not load, or it was never fitted")
                        self._train_project(key, [])
            except LeaseLost:
                raise
            except Exception as exc:  # e.g. a state that cannot be read: said, and the other projects go on
                log.warning("project %s: not refit at start: %s", key, one_line(f"{type(exc).__name__}: {exc}", 300))

    def _serves_default_model(self) -> bool:
        """Whether the configured model class is the default one: ``ProjectModel`` itself, not a subclass
        (:mod:`labelhub.backend.models.project`)."""
        configured = getattr(self.backend.models, "model_class", None)
        if configured is None:
            return False
        from labelhub.backend.models.project import ProjectModel

        return configured is ProjectModel

    def run_once(self, limit: int = 5000) -> int:
        """Apply up to ``limit`` pending events and fit the models they concern (:meth:`run_batch`).

        Returns:
            The number of events taken from the queue (applied or not: see :meth:`run_batch`).
        """
        return self.run_batch(limit).taken

    def run_batch(self, limit: int = 5000) -> "Batch":
        """Apply up to ``limit`` pending events (of the projects whose state can be read and saved) and fit the models
        they concern.

        Callers must be the only trainer (the thread holds the queue's :meth:`~EventQueue.trainer_lease`;
        tests call it directly).

        A project whose state cannot be read or saved (``annotations.json`` damaged:
        :class:`~labelhub.backend.state.DamagedStateFile`; the disk full; Redis refusing the write) keeps its events
        queued, and the other projects' events go on. Its cause is said once at ERROR with the traceback, the same cause
        again at DEBUG in one line, and an INFO line when its events apply again. The next batch takes as many more
        events as this one kept, so that a stuck project's events at the head of the queue, however many, cannot keep
        the others' out of the batch (``take`` reads the oldest first).

        Returns:
            A :class:`Batch`: how many events were taken, and whether any left the queue (applied, dropped, or moved
            aside): the trainer waits longer while none does (:meth:`_lead`).
        """
        backend = self.backend
        taken = backend.queue.take(limit + self._held_back)
        if not taken:
            self._held_back = 0
            return Batch(0, False)
        groups: dict[str, list[tuple[Any, dict]]] = {}
        for handle, event in taken:
            try:
                key = event.get("project_key") or backend.store.resolve_webhook_project(
                    event.get("payload", {}).get("project"))
            except AttributeError:  # not an object, or a payload that is not one
                log.warning("unreadable event %s moved aside (events/failed)", getattr(handle, "name", "")[:60])
                backend.queue.fail(handle)
                continue
            if not key:
                log.warning("event %s names no project: dropped", event.get("id"))
                backend.queue.done(handle)
                continue
            groups.setdefault(key, []).append((handle, event))
        kept = 0
        for key, events in groups.items():
            try:
                applied = self._train_project(key, events)
            except LeaseLost as exc:  # another trainer took over: every event taken stays queued for it
                log.warning("%s", exc)
                return Batch(len(taken), False)
            except Exception as exc:  # e.g. the project's state unreadable: its events stay queued, the others go on
                kept += len(events)
                self._say_stuck(key, len(events), exc)
                continue
            if self._stuck.pop(key, None) is not None:
                log.info("project %s: its events apply again", key)
            for handle, _ in applied:
                backend.queue.done(handle)
        self._held_back = kept
        backend.metrics.events_pending.set(backend.queue.count())
        return Batch(len(taken), kept < len(taken))

    def _say_stuck(self, key: str, count: int, exc: BaseException) -> None:
        """Log that project ``key``'s ``count`` events were kept in the queue because of ``exc``: at ERROR with the
        traceback the first time this trainer meets that cause for the project, else one line at DEBUG (the trainer
        tries again every few seconds)."""
        cause = _failure_cause(exc)
        if self._stuck.get(key) != cause:
            self._stuck[key] = cause
            log.error("project %s: %d events not applied, kept in the queue and tried again every few seconds (said "
                      "once per cause; again at DEBUG): %s", key, count, cause, exc_info=exc)
        else:
            log.debug("project %s: %d events still not applied: %s", key, count, cause)

    def _read_annotations(self, key: str, data: dict) -> bool:
        """On "Start training" (``START_TRAINING``), bring the project's stored annotations to exactly those Label
        Studio holds, not only those its webhooks brought: annotations made before the backend was connected, or
        whose webhook was refused (basic auth without ``LABELHUB_WEBHOOK_SECRET``) or lost, are added or updated; a
        stored one the listing (:meth:`~labelhub.backend.labelstudio_api.LabelStudioClient.annotated_tasks`) does not
        hold is asked for by id (``GET /api/annotations/<id>/``, one call each) and removed when Label Studio answers
        404 (:func:`remove_unlisted`): deleted while the backend was down, or its webhook lost; one Label Studio
        still holds is brought up to date (a cancelled one leaves training, as a cancelled listed one does).
        Asking rather than trusting the listing alone keeps an annotation created while the listing ran (its webhook
        applied before, or a page that moved) in training; only this project's annotations are touched. When one
        such call fails, the annotations not yet asked about stay, and the next Start training asks again. Needs
        ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``; without them, or when Label Studio fails, it logs why and the training goes on
        with what the webhooks brought.

        Returns:
            Whether ``data`` changed.
        """
        from labelhub.backend.state import project_id_of
        from labelhub.backend.labelstudio_api import LabelStudioClient

        settings = self.backend.settings
        if not (settings.label_studio_url and settings.label_studio_api_key):
            log.info("project %s: Start training learns from the annotations webhooks brought; set LABEL_STUDIO_URL "
                     "and LABEL_STUDIO_API_KEY to read the project's others too", key)
            return False
        changed = False
        try:
            client = LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key)
            tasks = client.annotated_tasks(project_id_of(key))
            check_training_tasks(tasks)
        except LabelHubError as exc:  # Label Studio failed, or answered what /train would refuse
            log.warning("project %s: could not read its annotations from Label Studio (%s); training on what the "
                        "webhooks brought", key, one_line(exc, 300))
            return False
        listed = listed_annotation_ids(tasks)
        for task in tasks:  # upserted only: the removals below ask Label Studio first
            for ann in _as_list(task.get("annotations")):
                if isinstance(ann, dict):
                    changed |= _upsert(data, {**ann, "task": task.get("id")}, task)
        unsure: list[str] = []
        kept: list[bool] = []  # whether each live annotation asked for changed the data

        def gone(aid: str) -> bool:
            if unsure:  # Label Studio failed once: the others are kept too, until the next Start training
                unsure.append(aid)
                return False
            try:
                found = client.annotation(int(aid))
            except LabelHubError as exc:
                log.warning("project %s: could not ask Label Studio whether annotation %s is gone (%s); it and the "
                            "others missing from the listing stay in training", key, aid, one_line(exc, 300))
                unsure.append(aid)
                return False
            if found is None:
                return True
            # live (created while the listing ran): brought up to date; a cancelled one leaves training without a
            # tombstone (its cancel's updated_at is kept), so un-cancelling it brings it back
            kept.append(_upsert(data, found, None))
            return False

        removed = remove_unlisted(data, listed, gone)
        changed |= bool(removed) or any(kept)
        log.info("project %s: Start training read %d annotated tasks from Label Studio (%d annotations); %d "
                 "annotations Label Studio no longer holds removed%s", key, len(tasks), len(listed), len(removed),
                 f" ({', '.join(removed[:10])}{', ...' if len(removed) > 10 else ''})" if removed else "")
        return changed

    def _train_project(self, key: str, events: list[tuple[Any, dict]]) -> list[tuple[Any, dict]]:
        """Apply ``events`` to project ``key``'s training data and fit its model once.

        Returns:
            The events applied (the caller deletes them). An event that cannot be applied (a body the checks
            of :func:`validate_event` let through, or one queued by an older version) is moved to the queue's
            failed events and logged, and the project's other events go on. Errors of the fit itself are
            logged and kept in the state's ``last_error``; they never keep events in the queue. A
            :class:`~labelhub.errors.LabelHubError` (a label config no head answers) is one WARNING line per worker,
            project and cause (:func:`~labelhub.backend.log_once.first_time`), the same cause again at DEBUG: it
            comes back after every annotation.

        Raises:
            Exception: Reading or saving the project's state failed: nothing of ``events`` was saved, and
                they stay queued.
        """
        backend = self.backend
        try:
            state = backend.store.project(key)
        except InvalidPayloadError:
            log.warning("events for an invalid project key %r dropped", key)
            return events
        data = state.load_annotations()
        changed = False
        label_config = None
        applied = []
        for handle, event in events:
            payload = event.get("payload") or {}
            try:
                changed |= apply_event(data, event.get("action"), payload)
            except Exception as exc:
                log.warning("project %s: event %s (%s) cannot be applied, moved aside (events/failed): %s: %s",
                            key, str(event.get("id"))[:60], str(event.get("action"))[:40], type(exc).__name__,
                            one_line(exc, 200))
                backend.queue.fail(handle)
                continue
            applied.append((handle, event))
            project = payload.get("project")
            if isinstance(project, dict) and isinstance(project.get("label_config"), str):
                label_config = project["label_config"]
            if event.get("action") == "TRAIN" and isinstance(payload.get("label_config"), str):
                label_config = payload["label_config"]
        if any(e.get("action") == "START_TRAINING" for _, e in applied):
            changed |= self._read_annotations(key, data)
        if changed:
            # asked, then fenced: a pause between the two (past the lease) must not write over the next trainer's
            if not self.still_trainer() or not state.save_annotations(data, fence=self._lease):
                raise LeaseLost(f"project {key}: the trainer's lease passed to another process before the training "
                                f"data was saved; its {len(applied)} events stay queued for that trainer")
        gone = backend.store.gone(key)
        if gone:  # events taken before the mark: in the training data, no fit nor job (Label Studio lacks the project)
            log_once(log, ("trainer: gone", key), "project %s is marked gone from Label Studio (%s): the events queued "
                     "before the mark are stored in its training data, not fitted (the first event after the mark is "
                     "taken back fits them)", key, gone.get("why"))
            return applied
        created = [t.get("id") for _, e in applied if e.get("action") == "TASKS_CREATED"
                   for t in _as_list((e.get("payload") or {}).get("tasks")) if isinstance(t, dict)]
        created = [t for t in created if isinstance(t, int) and not isinstance(t, bool) and t > 0]
        auto = getattr(backend, "auto", None)
        if auto is not None and created:
            auto.request(key, task_ids=created)
        if label_config and label_config != state.project().get("label_config"):
            state.update_project(label_config=label_config)
        label_config = state.project().get("label_config")
        if not label_config:
            log.warning("project %s: no label config known yet (no /setup, no project in the events)", key)
            return applied
        started = time.monotonic()
        outcome = "ok"
        try:
            model = backend.models.get(key, label_config)
            before = state.kv().get("model_version")
            model.fit_batch([(e.get("action"), e.get("payload") or {}) for _, e in events
                             if e.get("action") != PARAMS_CHANGED], annotations=data)
            params_changed = any(e.get("action") == PARAMS_CHANGED for _, e in applied)
            if params_changed:
                _list_served_version(state, model.model_version, getattr(model, "serves_without_fit", False))
            if auto is not None and (state.kv().get("model_version") not in (None, before) or params_changed):
                auto.request(key, unlabeled=True)  # retrained (or new params): the unlabeled tasks, least sure first
        except LabelHubError as exc:  # e.g. a label config the model does not support: one line, no traceback
            outcome = "error"
            state.update_kv(last_error=f"{type(exc).__name__}: {exc}"[:500])
            reason = one_line(exc, 1000)  # LabelHub's own message (the config's tags): no secret in it
            # the same cause comes back after every annotation of the project: said once per worker and cause
            if first_time(("trainer: not trained", key, reason)):
                log.warning("project %s: not trained: %s (said once per worker and cause; again at DEBUG)", key,
                            reason)
            else:
                log.debug("project %s: not trained: %s", key, reason)
        except Exception as exc:
            outcome = "error"
            state.update_kv(last_error=f"{type(exc).__name__}: {exc}"[:500])
            log.exception("project %s: fit failed", key)
        backend.metrics.trainings.labels(outcome=outcome).inc()
        backend.metrics.training_seconds.observe(time.monotonic() - started)
        return applied
