"""Label Studio's webhooks: the actions it sends, the header LabelHub's secret travels in, and the one
parser of event bodies, used by the backend's ``/webhook`` and the sync's receiver.

Format: https://labelstud.io/guide/webhook_reference (serializers in Label Studio's
``label_studio/webhooks/models.py``, ``WebhookAction.ACTIONS``). The bodies LabelHub reads:

- ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED``: ``{"action", "annotation": {"id", ...}, "task": {"id", "data"},
  "project": {"id", "created_at", "label_config", ...}}``
- ``ANNOTATIONS_CREATED``: ``{"action", "annotation": [{"id", ...}], "task": [{"id", ...}], "project"}``
- ``ANNOTATIONS_DELETED``: ``{"action", "annotations": [{"id"}], "project"}``
- ``TASKS_DELETED``: ``{"action", "tasks": [{"id"}], "project"}``
- ``START_TRAINING`` (sent by Label Studio's ``MLApi.train``, ``label_studio/ml/api_connector.py``) and
  ``PROJECT_UPDATED``: ``{"action", "project"}``

Ids are integers, as Label Studio's serializers give them.
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any, NamedTuple

from labelhub.errors import InvalidEventError, UnknownEventAction

__all__ = ["SECRET_HEADER", "ANNOTATION_ACTIONS", "ACTIONS", "Event", "event_action", "parse_event"]

#: The header that carries ``LABELHUB_WEBHOOK_SECRET`` (set on the webhook Label Studio calls).
SECRET_HEADER = "X-LabelHub-Secret"
#: The actions that change a project's annotations.
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED",
                      "TASKS_DELETED")
#: Every action Label Studio sends to a webhook or an ML backend.
ACTIONS = ANNOTATION_ACTIONS + (
    "START_TRAINING", "TASKS_CREATED", "PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED",
    "LABEL_LINK_CREATED", "LABEL_LINK_UPDATED", "LABEL_LINK_DELETED", "REVIEW_CREATED", "REVIEW_UPDATED",
    "REVIEWS_DELETED")
#: The field of each action that lists ``{"id": ...}`` items, and whether it is a list.
_ITEMS = {"ANNOTATION_CREATED": ("annotation", False), "ANNOTATION_UPDATED": ("annotation", False),
          "ANNOTATIONS_CREATED": ("annotation", True), "ANNOTATIONS_DELETED": ("annotations", True),
          "TASKS_DELETED": ("tasks", True)}
_GUIDE = "https://labelstud.io/guide/webhook_reference"


class Event(NamedTuple):
    """A checked webhook event: ``(action, body)``."""

    action: str
    body: dict


def _has_id(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("id"), int) and not isinstance(item.get("id"), bool)


def event_action(body: Any, actions: Collection[str] = ACTIONS) -> str:
    """The ``action`` of a webhook body, checked.

    Args:
        body: The decoded JSON body.
        actions: The actions the caller accepts.

    Returns:
        The action.

    Raises:
        InvalidEventError: ``body`` is not a JSON object, or has no ``action`` string.
        UnknownEventAction: The action is not one of ``actions``.
    """
    if not isinstance(body, dict):
        raise InvalidEventError("body is not a JSON object")
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise InvalidEventError(f"the event has no 'action' (see {_GUIDE})", field="action")
    if action not in actions:
        raise UnknownEventAction(f"unknown action {action[:60]!r} (expected one of {', '.join(actions)})",
                                 field="action")
    return action


def parse_event(body: Any, actions: Collection[str] = ACTIONS, project_id: int | None = None,
                need_project: bool = False) -> Event:
    """Check a webhook body: its action, the ids its action needs, and its project.

    Args:
        body: The decoded JSON body.
        actions: The actions the caller accepts (default: every Label Studio action).
        project_id: When given, an event whose ``project.id`` is another project is refused.
        need_project: Refuse an event that names no ``project``.

    Returns:
        An :class:`Event` ``(action, body)``; ``body`` is not copied.

    Raises:
        InvalidEventError: Not a JSON object; no action; a missing or malformed ``annotation``,
            ``annotations``, ``tasks`` or ``task`` (each item needs an integer ``id``); another project; no
            project when ``need_project``. ``field`` names the field at fault.
        UnknownEventAction: The action is not one of ``actions``.

    Example:
        >>> parse_event({"action": "TASKS_DELETED", "tasks": [{"id": 3}]}).action
        'TASKS_DELETED'
    """
    action = event_action(body, actions)
    project = body.get("project")
    if project_id is not None and isinstance(project, dict) and project.get("id") not in (None, project_id):
        raise InvalidEventError(f"event of project {project.get('id')}, not {project_id}", field="project")
    if action in _ITEMS:
        key, many = _ITEMS[action]
        items = body.get(key)
        if many:
            if not isinstance(items, list) or not items or not all(_has_id(i) for i in items):
                raise InvalidEventError(f"{action} without a list of {key} {{id}}", field=key)
        elif not _has_id(items):
            raise InvalidEventError(f"{action} without {key}.id", field=key)
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED") and not _has_id(body.get("task")):
            raise InvalidEventError(f"{action} without task.id", field="task")
    if need_project and project in (None, "", {}):
        raise InvalidEventError(f"{action} names no 'project'", field="project")
    return Event(action, body)
