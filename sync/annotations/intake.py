"""Label Studio → the annotation store: webhook events (hints) and reconciliation (the truth).

Label Studio sends webhooks inside the annotator's save, with a 1 s timeout and no retry
(https://labelstud.io/guide/webhooks), so an event may never arrive. Events are applied at once for
speed; :meth:`AnnotationIntake.reconcile` then finds every change through the API, incrementally:
the tasks whose ``updated_at`` is after the cursor (creating, updating and deleting an annotation
all move it), with an overlap of :data:`OVERLAP` read once (applying a task twice does no harm; the method says why
once is enough). :meth:`AnnotationIntake.sweep` finds tasks deleted in Label Studio, listing their ids only when
the project's task count says some may be gone.

Events are checked by :func:`labelhub.webhooks.parse_event` (the format is there), as events of this project: its id
and its ``created_at`` (:func:`project_created_at`), so that an event of another Label Studio, or of a project deleted
and made again under the same id, is refused. ``TASKS_DELETED`` is the one source for deleted tasks (reconciliation
cannot see them): their annotations leave the next version.

**Task data comes from Label Studio's API, not from events.** An event's ``task.data`` is stored only for a task the
state holds no data of; when it differs from the stored data, the event is left to the next reconciliation, which
reads the task's data and annotations together (:meth:`AnnotationIntake.apply_event`). The sync made its tasks and
changes their data itself (a file that changed in the repo: :meth:`LabelStudioProject.update_data`), and the data is
shared by every annotation of the task: an event, late or not Label Studio's, never rewrites it.
"""
from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timedelta, timezone

from labelhub import webhooks
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.state import SyncState
from labelhub.webhooks import Event

log = logging.getLogger(__name__)

#: The actions the sync's webhook asks Label Studio for.
ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_DELETED")
CURSOR = "tasks_updated_at"
#: Every save whose ``updated_at`` is up to this cursor's value was read (see :meth:`AnnotationIntake.reconcile`).
SETTLED = "tasks_settled_at"
#: When :data:`CURSOR` last moved (this host's clock, seconds since the epoch, at the end of that reading).
CURSOR_MOVED_AT = "tasks_cursor_moved_at"
#: The sweep's baseline, ``"max_id:count"``: the project had ``count`` tasks with an id up to ``max_id``.
SWEPT = "tasks_swept"
#: The annotations generation: an integer cursor that moves (by 1) in the same transaction as each write that
#: changed a stored annotation (events, reconciliation pages, the sweep); the exporter makes a version when it is not
#: the one it last exported.
GENERATION = "annotations_generation"
#: The longest a save's transaction is assumed to stay uncommitted after it took its ``updated_at``.
OVERLAP = timedelta(seconds=5)
#: A reconciliation that finds more tasks updated than this reads only those that can change the store
#: (:meth:`AnnotationIntake._read_annotated`); up to this many, it reads them all (one or two pages).
SPLIT_ABOVE = 1000
#: A progress line every this many tasks of a reading.
PROGRESS_EVERY = 10_000
LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def parse_event(body: object, project_id: int, created_at: datetime | None = None) -> Event:
    """Check a webhook body for this project (:func:`labelhub.webhooks.parse_event` with :data:`ACTIONS`).

    Args:
        body: The decoded JSON body.
        project_id: The project's id: ``project`` must be an object with this integer ``id``.
        created_at: When the project was created (:func:`project_created_at`); when given, the event must carry
            the same ``project.created_at`` (to the second), and a ``project``.

    Returns:
        ``(action, body)``.

    Raises:
        labelhub.errors.InvalidEventError: not a JSON object, no or unknown ``action``, another project (its id or its
            ``created_at``), a ``project`` that is not an object with an integer id, or missing fields.
    """
    return webhooks.parse_event(body, ACTIONS, project_id=project_id, created_at=created_at)


def project_created_at(project: LabelStudioProject | None) -> datetime | None:
    """When ``project`` was created, to the second, from its key ``<id>.<created_at in unix seconds>``
    (:attr:`LabelStudioProject.key`, read from Label Studio when the sync starts; the identity
    :func:`labelhub.sync.state.bind_project` checks too).

    Returns:
        The instant (UTC), or ``None`` when Label Studio gave the project no ``created_at`` (its key is the bare id:
        events are then checked by the project's id alone) or ``project`` is ``None``.
    """
    _, _, seconds = str(getattr(project, "key", "")).partition(".")
    return datetime.fromtimestamp(int(seconds), timezone.utc) if seconds.lstrip("-").isdigit() else None


def learn_annotators(project: LabelStudioProject, state: SyncState) -> None:
    """Fetch the users' emails (one Label Studio call) when a stored annotation's ``completed_by``
    has none (webhook payloads carry only the user id), or when the stored ones may be an earlier instance's (the
    state was rebound: :meth:`SyncState.users_stale`; a reset Label Studio gives user ids again).

    Raises:
        labelhub.errors.LabelHubError: Label Studio refused or could not be reached (the users stay as they were).
    """
    if state.unknown_annotators() or state.users_stale():
        state.set_users(project.users())


def store_before_change(project: LabelStudioProject, state: SyncState, revisions: dict[int, str | None]) -> int:
    """Store the annotations the tasks of ``revisions`` have now, just before the import changes their ``data`` (a
    file that changed, moved, or was re-pinned: :meth:`labelhub.sync.files.importer.FileImporter._update`): what a
    reconciliation would store of them (the whole annotation list of each, read with the Data Manager query of
    :meth:`LabelStudioProject.tasks_by_id`, a query per 200 tasks, stored by
    :meth:`labelhub.sync.state.SyncState.store_task_lists`, which moves :data:`GENERATION`), each annotation written
    now with the revision given for its task, ``None``: the one the task shows (``data.hf_revision``).

    Without a webhook, an annotation saved after the last reconciliation was stored by the next one, which read the
    task's revision after the import's update had moved it: the annotation said it was made on the new content.
    Decided: read just before the update, the revision the annotation was saved on is the task's; an annotation saved
    between this reading and the update (a few seconds: a chunk of the import's updates) still gets the new one. An
    annotation stored already and unchanged keeps its revision (:meth:`SyncState.apply_annotations`).

    Returns:
        How many annotations changed.

    Raises:
        labelhub.errors.LabelHubError: Label Studio refused or could not be reached (nothing is stored).
    """
    rows = _rows_to_store(project.tasks_by_id(sorted(revisions)))
    return state.store_task_lists([(task_id, data, annotations, as_of, revisions.get(task_id) or revision, own)
                                   for task_id, data, annotations, as_of, revision, own in rows], bump=GENERATION)


#: Fields of Label Studio's annotation JSON written for display, which change while the annotation does not
#: (``created_ago`` is "0 minutes", then "1 minute", ...): stored, they made every re-reading a change.
DISPLAY_ONLY = ("created_ago", "created_username")


def _normalize(annotation: dict) -> dict:
    """Annotation fields as the task list returns them (``completed_by`` as the user id), without
    :data:`DISPLAY_ONLY`."""
    annotation = {k: v for k, v in annotation.items() if k not in DISPLAY_ONLY and k != "task"}
    if isinstance(annotation.get("completed_by"), dict):
        annotation["completed_by"] = annotation["completed_by"].get("id")
    return annotation


class AnnotationIntake:
    """Keeps the state's annotation store equal to the project's annotations.

    Args:
        project: the Label Studio project.
        state: the sync state (its own connection; safe to use from the webhook thread with another one).
    """

    def __init__(self, project: LabelStudioProject, state: SyncState):
        self.project, self.state = project, state
        #: When the project was created (:func:`project_created_at`): events must name the same instant.
        self.created_at = project_created_at(project)

    def parse_event(self, body: object) -> Event:
        """:func:`parse_event` for this intake's project (its id and :attr:`created_at`)."""
        return parse_event(body, self.project.project_id, self.created_at)

    def apply_event(self, action: str, body: dict) -> int | None:
        """Apply a parsed event (see :func:`parse_event`).

        An ``ANNOTATION_CREATED``/``ANNOTATION_UPDATED`` event stores its annotation, and its ``task.data`` only when
        the state holds no data of the task (:meth:`labelhub.sync.state.SyncState.apply_event_annotation`). When the
        event's ``task.data`` differs from the stored data, nothing is stored: Label Studio's API is the one source of
        a task's data, and the next reconciliation reads the task (the annotation's save moved its ``updated_at``) with
        its data and its annotations as they are now. So a late event of a task whose file changed since, or a body
        that is not Label Studio's, never rewrites the data of the task's other annotations, while a save made after
        the task's data changed legitimately is stored within ``--reconcile-interval``.

        Whatever an event stores moves :data:`GENERATION` in the same transaction. An ``ANNOTATIONS_DELETED`` of an
        annotation not stored yet leaves a tombstone that a late ``ANNOTATION_CREATED`` naming any task does not undo;
        ``TASKS_DELETED`` records its tasks as deleted, so a late event of one of them stores nothing.

        Returns:
            How many annotations changed, or ``None`` when the event was left to reconciliation (said at DEBUG).
        """
        if action == "ANNOTATIONS_DELETED":
            ids = [a["id"] for a in body["annotations"]]
            self.state.delete_annotations(ids, bump=GENERATION)
            changed = len(ids)
        elif action == "TASKS_DELETED":
            changed = self.state.delete_task_annotations([t["id"] for t in body["tasks"]], bump=GENERATION)
        else:
            task = body["task"]
            changed = self.state.apply_event_annotation(task["id"], task.get("data"), _normalize(body["annotation"]),
                                                        _revision(task), bump=GENERATION)
            if changed is None:
                log.debug("webhook %s of task %d: its task.data is not the data the state holds; left to the next "
                          "reconciliation", action, task["id"])
                return None
        return changed

    def reconcile(self) -> int:
        """Read every task updated since the cursor and store its whole annotation list, a page at a time.

        **The overlap, read once.** A save takes its ``updated_at`` when it starts and is seen when it commits, so a
        reading may see a task of ``updated_at`` T while a save of an earlier ``updated_at`` is still uncommitted: a
        reading from T alone would never see it. Such a save commits within :data:`OVERLAP` (the assumption the
        earlier code made too, reading from ``T - OVERLAP`` every time). Every save that took its ``updated_at`` up to
        T did so before the reading that saw T ended, so it has committed by :data:`OVERLAP` after that end: one reading
        that *starts* later than that and covers ``(T - OVERLAP, T]`` sees all of them, and the state then records T
        as *settled* (:data:`SETTLED`: every save up to it was read). Each reading starts from the settled point,
        which is at least the newest ``updated_at`` read minus :data:`OVERLAP`. So after tasks moved (a bulk import
        of 7,000 tasks/s puts 36,000 in the last 5 s) the window is read once more, at the next reconciliation that
        starts :data:`OVERLAP` after the cursor moved, and from then on an idle project costs one query that answers
        no task (it re-read those 36,000, 75 to 90 s, at every reconciliation before). Only this host's clock is
        compared with itself (:data:`CURSOR_MOVED_AT`); a clock set back re-reads the window once more, a clock
        set forward by more than :data:`OVERLAP` between two readings could settle a window early.

        A state without :data:`SETTLED` (an older LabelHub's) starts from ``cursor - OVERLAP``, as before.

        **What a reconciliation reads.** First one call counts the tasks updated since the settled point
        (:meth:`LabelStudioProject.tasks_updated_count`): none (an idle project), nothing more is asked; up to
        :data:`SPLIT_ABOVE`, they are all read; more (a bulk import, or its overlap window), only those that can change
        the store are (:meth:`_read_annotated`). Pages are stored as they come in (one held at a time), with a progress
        line every :data:`PROGRESS_EVERY` tasks.

        Returns:
            How many annotations changed (created, updated or deleted). :attr:`last_read` is how many tasks the
            reading passed.

        Raises:
            labelhub.errors.LabelHubError: Label Studio refused or could not be reached (nothing is lost: the
                pages read are stored, each with its move of :data:`GENERATION`, so they are exported; the cursor
                only moves after a whole reading).
        """
        cursor = self.state.cursor(CURSOR)
        settled = self.state.cursor(SETTLED) or (_shift(cursor, -OVERLAP) if cursor else "")
        moved_at = float(self.state.cursor(CURSOR_MOVED_AT, "0") or 0)
        began = time.time()
        reading = _Reading(self.state)
        count, latest = self.project.tasks_updated_count(settled)
        if not count:
            whole, reached = True, ""
        elif count <= SPLIT_ABOVE:
            whole = self.project.tasks_updated_since(settled, reading.store)
            # the cursor moves past the ordered reading only (tasks read by id after it may be newer than a task
            # saved after the reading; see LabelStudioProject.tasks_updated_since)
            reached = reading.newest if whole else reading.first_page_newest
        else:
            whole, reached = self._read_annotated(settled, count, latest, reading)
        self.last_read = reading.read
        newest = max(cursor, reached)
        now_settled = max(settled, _shift(newest, -OVERLAP) if newest else "")
        if whole and cursor and began - moved_at >= OVERLAP.total_seconds():
            now_settled = max(now_settled, cursor)  # this reading covered (settled, cursor] after every save up to it
        now_settled = min(now_settled, newest)
        self.learn_annotators()  # after the pages: they moved GENERATION as they were stored
        if newest != cursor:
            self.state.set_cursor(CURSOR, newest)
            self.state.set_cursor(CURSOR_MOVED_AT, repr(time.time()))
        if now_settled != self.state.cursor(SETTLED):
            self.state.set_cursor(SETTLED, now_settled)
        if reading.changed or reading.read >= PROGRESS_EVERY:
            log.info("reconciliation: %d annotations stored as created, updated or deleted, of %d tasks read (a version "
                     "follows when their labels or rows changed, not for a save with the same labels)",
                     reading.changed, reading.read)
        return reading.changed

    #: How many tasks the last :meth:`reconcile` read.
    last_read: int = 0

    def _read_annotated(self, since: str, count: int, latest: str, reading: "_Reading") -> tuple[bool, str]:
        """The reading of :meth:`reconcile` when more than :data:`SPLIT_ABOVE` tasks were updated since ``since``
        (``count`` of them, the newest at ``latest``, as counted just before): only the tasks that can change the
        store are read with their annotations: those that have an annotation
        (:meth:`LabelStudioProject.tasks_updated_since` with ``annotated_only``, a join on the annotations, not Label
        Studio's ``total_annotations`` counter, which concurrent saves can leave at 0 beside a live annotation), and
        those without one that the store holds live annotations of (their annotations were deleted), found among the
        ids of the unannotated tasks up to the largest id the store holds annotations of. The 100,000 tasks a first
        sync just made, none annotated, thus cost two queries that answer none of them, not 4 min 50 s of reading.

        Every task updated up to ``latest`` is then accounted for: an annotated one was in the first reading (an
        annotation saved after the count moves its task past ``latest``; one committed late is the overlap's,
        :meth:`reconcile`), an unannotated one has nothing to store unless the store holds annotations of it. Not
        read: a task whose only annotations have no annotator (``completed_by`` emptied by a deleted user) and which
        the store never held.

        Returns:
            ``(whole, reached)`` as :meth:`reconcile` takes them: the cursor may move to ``reached``.
        """
        log.info("reconciliation: %d tasks updated since %s; reading those with annotations and those the store "
                 "holds annotations of", count, since or "the start")
        if not self.project.tasks_updated_since(since, reading.store, annotated_only=True):
            return False, reading.first_page_newest
        annotated = self.state.annotated_task_ids()
        if annotated:
            empty = self.project.unannotated_task_ids_updated_since(since, max(annotated))
            if empty is None:  # moved under every reading: a task that lost its annotations may be missing
                return False, ""
            emptied = sorted(set(empty) & annotated)
            if emptied:
                reading.store(self.project.tasks_by_id(emptied), False)
        return True, max(latest, reading.newest)

    def sweep(self) -> int:
        """Find the tasks deleted in Label Studio whose ``TASKS_DELETED`` webhook never arrived; the stored
        annotations of tasks that are gone leave the next version.

        Tasks are looked for only where the counts say one may be gone (listing every task id took 200 pages, about
        2.8 min, at 100,000 tasks, at every ``--once`` run). Label Studio's task ids only grow (its SQL sequences and
        SQLite's ``AUTOINCREMENT`` never give an id twice), so no task with an id up to the largest id of an earlier
        look, ``max_id``, can appear later: while the project has as many tasks up to ``max_id`` as then (the
        baseline, :data:`SWEPT`), none of them was deleted. So a sweep costs:

        - one call (the project's task count and largest id) when they are the baseline's, or no annotation is
          stored;
        - when they moved, a second call (the count up to the baseline's ``max_id``): if it is the baseline's, only
          the stored annotated tasks above ``max_id`` (created since) are looked for;
        - else (the count went down, or no baseline yet) every stored annotated task is looked for.

        Tasks are looked for by id (:meth:`LabelStudioProject.existing_task_ids`) when they are fewer than the
        project's tasks, else by listing every task id (:meth:`LabelStudioProject.task_ids`). The one case the counts
        miss: as many tasks deleted as tasks of an import transaction that committed late with ids below
        ``max_id`` (two imports at once), between two sweeps; a ``TASKS_DELETED`` webhook covers it as any other.

        Returns:
            How many annotations were marked deleted.

        Raises:
            labelhub.errors.LabelHubError: Label Studio refused or could not be reached (nothing changes).
        """
        total, top = self.project.task_count_and_max_id()  # before the look: a deletion after it shows next time
        baseline = _baseline(self.state.cursor(SWEPT))
        annotated = self.state.annotated_task_ids()
        if baseline == (top, total) or not annotated:
            self._set_baseline(top, total)
            return 0
        if baseline and self.project.task_count_through(baseline[0]) == baseline[1]:
            candidates = {i for i in annotated if i > baseline[0]}
        else:
            candidates = annotated
        if len(candidates) < total:
            present = self.project.existing_task_ids(sorted(candidates)) if candidates else set()
        else:
            ids = self.project.task_ids()
            present = None if ids is None else set(ids)
        if present is None:  # the project changed under every reading: a task missing from it may exist
            log.info("sweep: the project's tasks changed while they were listed; the next sweep looks again")
            return 0
        gone = candidates - present
        self._set_baseline(top, total)
        changed = self.state.delete_task_annotations(sorted(gone), bump=GENERATION) if gone else 0
        if changed:
            log.info("sweep: %d tasks deleted in Label Studio took %d annotations with them", len(gone), changed)
        return changed

    def _set_baseline(self, max_id: int, count: int) -> None:
        value = f"{max_id}:{count}"
        if self.state.cursor(SWEPT) != value:
            self.state.set_cursor(SWEPT, value)

    def learn_annotators(self) -> None:
        """See :func:`learn_annotators`."""
        learn_annotators(self.project, self.state)


def _task_rows(tasks: list[dict]) -> list[tuple]:
    """What the annotation store keeps of each task read from Label Studio (``AnnotationState.store_task_lists``):
    ``(id, data, normalized annotations, updated_at in Label Studio's filter format or None, hf_revision or None)``."""
    return [(task["id"], task.get("data") or {},
             [_normalize(a if isinstance(a, dict) else a.dict()) for a in task.get("annotations") or []],
             _ls_time(task.get("updated_at")) or None, _revision(task)) for task in tasks]


def _rows_to_store(tasks: list[dict]) -> list[tuple]:
    """:func:`_task_rows` with a sixth item each: ``{annotation id: the revision it was made on}`` of the task's
    restored annotations (:func:`restored_revisions`), as :meth:`SyncState.store_task_lists` takes it."""
    return [(*row, restored_revisions(task.get("meta"), row[2])) for task, row in zip(tasks, _task_rows(tasks))]


_FULL_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def restored_revisions(meta: object, annotations: list[dict]) -> dict[int, str]:
    """``{annotation id: revision}`` of the annotations of a task that ``labelhub restore`` made and nobody saved
    since: the revision each was made on, from the task's ``meta.restored_annotations``
    (:mod:`labelhub.sync.versions.restore`: one entry per annotation, its ``annotation_id`` the annotation's
    ``import_id``, its ``annotated_revision`` the version's).

    A restored task shows one revision of its file (``data.hf_revision``), while its annotations may have been made on
    several (the file changed between two of them): stored with the task's, an annotation made on another revision
    was exported with content it was not made on (an image's label on the new image, a span's offsets on another
    text). Decided: an annotation gets its entry's revision when it has an ``import_id`` that an entry names with a
    full commit sha (40 or 64 lowercase hex; another value is left to the task's revision) and no ``updated_by`` (Label
    Studio's import leaves it empty; a save in the editor or the API sets it: the annotation is then made on the
    content the task shows). The readings that give these fields are the Data Manager queries of reconciliation and
    :func:`store_before_change` (:data:`labelhub.sync.labelstudio.project.ANNOTATED_TASK_FIELDS`); a webhook's
    annotation is one saved in Label Studio, never the import's, and gets the task's revision. Never raises: a
    ``meta`` of another shape gives ``{}``.
    """
    entries = meta.get("restored_annotations") if isinstance(meta, dict) else None
    if not isinstance(entries, list):
        return {}
    kept = {}
    for entry in entries:
        revision = entry.get("annotated_revision") if isinstance(entry, dict) else None
        if isinstance(revision, str) and _FULL_SHA.fullmatch(revision):
            kept[str(entry.get("annotation_id"))] = revision
    return {a["id"]: kept[str(a["import_id"])] for a in annotations
            if a.get("import_id") is not None and not a.get("updated_by") and str(a["import_id"]) in kept}


def _revision(task: dict) -> str | None:
    """The commit sha a task shows (``data.hf_revision``), or ``None``."""
    data = task.get("data")
    revision = data.get("hf_revision") if isinstance(data, dict) else None
    return revision if isinstance(revision, str) and revision else None


def _ls_time(value) -> str:
    """A task's ``updated_at`` (``datetime`` or ISO string) in Label Studio's filter format."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(timezone.utc).strftime(LS_TIME)


def _shift(value: str, delta: timedelta) -> str:
    """A time in Label Studio's filter format (:data:`LS_TIME`) moved by ``delta``."""
    return (datetime.strptime(value, LS_TIME).replace(tzinfo=timezone.utc) + delta).strftime(LS_TIME)


def _baseline(value: str) -> tuple[int, int] | None:
    """The sweep's baseline ``(max_id, count)`` from its :data:`SWEPT` cursor, or ``None``."""
    try:
        max_id, count = value.split(":")
        return int(max_id), int(count)
    except ValueError:
        return None


class _Reading:
    """What :meth:`AnnotationIntake.reconcile` keeps of a reading while its pages come in: each page is stored at once
    (:meth:`labelhub.sync.state.SyncState.store_task_lists`, which moves :data:`GENERATION` in the same transactions)
    and dropped; the counts and the newest ``updated_at`` of the ordered pages (and of the first of them) stay. A
    progress line every :data:`PROGRESS_EVERY` tasks."""

    def __init__(self, state: SyncState):
        self.state = state
        self.read = self.changed = 0
        self.newest = self.first_page_newest = ""
        self._first = True

    def store(self, tasks: list[dict], ordered: bool) -> None:
        read = _rows_to_store(tasks)
        self.changed += self.state.store_task_lists(read, bump=GENERATION)
        if ordered:
            newest = max((row[3] for row in read if row[3]), default="")
            self.newest = max(self.newest, newest)
            if self._first:
                self.first_page_newest, self._first = newest, False
        before, self.read = self.read, self.read + len(read)
        if self.read // PROGRESS_EVERY > before // PROGRESS_EVERY:
            log.info("reconciliation: %d tasks read", self.read)
