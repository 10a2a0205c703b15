"""Label Studio → the annotation store: webhook events (hints) and reconciliation (the truth).

Label Studio sends webhooks inside the annotator's save, with a 1 s timeout and no retry
(https://labelstud.io/guide/webhooks), so an event may never arrive. Events are applied at once for
speed; :meth:`AnnotationIntake.reconcile` then finds every change through the API, incrementally:
the tasks whose ``updated_at`` is after the cursor (creating, updating and deleting an annotation
all move it), with a few seconds of overlap (applying a task twice does no harm).

Events are checked by :func:`labelhub.webhooks.parse_event` (the format is there). ``TASKS_DELETED`` is the
one source for deleted tasks (reconciliation cannot see them): their annotations leave the next version.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from labelhub import webhooks
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.state import SyncState
from labelhub.webhooks import Event

log = logging.getLogger(__name__)

#: The actions the sync's webhook asks Label Studio for.
ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_DELETED")
CURSOR = "tasks_updated_at"
GENERATION = "annotations_generation"
OVERLAP = timedelta(seconds=5)
LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def parse_event(body: object, project_id: int) -> Event:
    """Check a webhook body for this project (:func:`labelhub.webhooks.parse_event` with :data:`ACTIONS`).

    Returns:
        ``(action, body)``.

    Raises:
        labelhub.errors.InvalidEventError: not a JSON object, no or unknown ``action``, another project, or
            missing fields.
    """
    return webhooks.parse_event(body, ACTIONS, project_id=project_id)


def learn_annotators(project: LabelStudioProject, state: SyncState) -> None:
    """Fetch the users' emails (one Label Studio call) when a stored annotation's ``completed_by``
    has none; webhook payloads carry only the user id."""
    if state.unknown_annotators():
        state.set_users(project.users())


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

    def apply_event(self, action: str, body: dict) -> int:
        """Apply a parsed event (see :func:`parse_event`); returns how many annotations changed."""
        if action == "ANNOTATIONS_DELETED":
            ids = [a["id"] for a in body["annotations"]]
            self.state.delete_annotations(ids)
            changed = len(ids)
        elif action == "TASKS_DELETED":
            changed = self.state.delete_task_annotations([t["id"] for t in body["tasks"]])
        else:
            task = body["task"]
            if "data" in task:
                self.state.upsert_task(task["id"], task["data"])
            changed = self.state.apply_annotations(task["id"], [_normalize(body["annotation"])], complete=False,
                                                   revision=_revision(task))
        self._bump(changed)
        return changed

    def reconcile(self) -> int:
        """Read every task updated since the cursor and store its whole annotation list.

        Returns:
            How many annotations changed (created, updated or deleted).

        Raises:
            labelhub.errors.LabelHubError: Label Studio refused or could not be reached (nothing is lost:
                the cursor only moves after the tasks are stored).
        """
        cursor = self.state.cursor(CURSOR)
        since = ""
        if cursor:
            since = (datetime.strptime(cursor, LS_TIME).replace(tzinfo=timezone.utc) - OVERLAP).strftime(LS_TIME)
        tasks, whole = self.project.tasks_updated_since(since)
        read = [(task["id"], task.get("data") or {},
                 [_normalize(a if isinstance(a, dict) else a.dict()) for a in task.get("annotations") or []],
                 _ls_time(task.get("updated_at")) or None, _revision(task)) for task in tasks]
        changed = self.state.store_task_lists(read)
        # the cursor moves past the ordered reading only (tasks read by id after it may be newer than a task saved
        # after the reading; see LabelStudioProject.tasks_updated_since)
        newest = max([cursor, *(as_of for *_, as_of, _ in read[:whole] if as_of)])
        self.learn_annotators()
        self._bump(changed)
        if newest != cursor:
            self.state.set_cursor(CURSOR, newest)
        if changed:
            log.info("reconciliation: %d annotations stored as created, updated or deleted, of %d tasks read (a version "
                     "follows when their labels or rows changed, not for a save with the same labels)", changed,
                     len(tasks))
        return changed

    def sweep(self) -> int:
        """Find the tasks deleted in Label Studio whose ``TASKS_DELETED`` webhook never arrived: one paged query
        of the project's task ids; the stored annotations of tasks that are gone leave the next version.

        Returns:
            How many annotations were marked deleted.

        Raises:
            labelhub.errors.LabelHubError: Label Studio refused or could not be reached (nothing changes).
        """
        ids = self.project.task_ids()
        if ids is None:  # the project changed under every reading: a task missing from it may exist
            log.info("sweep: the project's tasks changed while they were listed; the next sweep looks again")
            return 0
        gone = self.state.annotated_task_ids() - set(ids)
        changed = self.state.delete_task_annotations(sorted(gone)) if gone else 0
        if changed:
            log.info("sweep: %d tasks deleted in Label Studio took %d annotations with them", len(gone), changed)
        self._bump(changed)
        return changed

    def learn_annotators(self) -> None:
        """See :func:`learn_annotators`."""
        learn_annotators(self.project, self.state)

    def _bump(self, changed: int) -> None:
        if changed:
            self.state.bump_cursor(GENERATION)


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
