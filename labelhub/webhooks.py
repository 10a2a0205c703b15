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

``project`` is the whole project (``ProjectWebhookSerializer``, ``fields = '__all__'``, in Label Studio's
``label_studio/webhooks/serializers_for_hooks.py``, added to every body of a webhook with ``send_payload``). Its ``id``
and ``created_at`` name the project the way Label Studio names it to ML backends (``<id>.<created_at in unix
seconds>``, ``MLApi._create_project_uid`` in ``label_studio/ml/api_connector.py``): a project of another Label Studio,
or one deleted and made again under the same id, has the id but not the ``created_at``. :func:`parse_event` compares
both when the caller gives them.

Ids are integers that fit in 64 bits, as Label Studio's serializers give them (its database's ids). The
annotations an event carries are checked for the shape LabelHub reads (``result`` a list of objects, each
``value`` an object whose label lists are lists of strings, a ``rectanglelabels`` box with numbers, times as
strings), so an accepted event never fails later in a trainer or an export.

Bodies are decoded by :func:`parse_json`: strict JSON (:mod:`labelhub.strict_json`: RFC 8259, no ``NaN`` or
``Infinity``, at most :data:`MAX_JSON_DEPTH` levels deep, Unicode text).
"""
from __future__ import annotations

import hmac
import math
from collections.abc import Collection, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from labelhub import strict_json
from labelhub.errors import InvalidEventError, InvalidJSONError, UnknownEventAction
from labelhub.strict_json import MAX_JSON_DEPTH

__all__ = ["SECRET_HEADER", "secret_matches", "secret_is_latin1", "ANNOTATION_ACTIONS", "ACTIONS", "MAX_JSON_DEPTH",
           "Event", "event_action", "check_annotation", "check_training_tasks", "result_problem",
           "parse_event", "parse_json", "parse_time", "utc_text"]

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
          "TASKS_CREATED": ("tasks", True), "TASKS_DELETED": ("tasks", True)}
_GUIDE = "https://labelstud.io/guide/webhook_reference"
_INT64 = range(-2 ** 63, 2 ** 63)
#: Keys of a result's ``value`` that list label names (``taxonomy``: paths, lists of names); a ``textarea``
#: result's ``text`` lists its texts (a ``labels`` span's ``text`` is the span's string).
_LABEL_KEYS = ("choices", "labels", "rectanglelabels", "polygonlabels", "keypointlabels", "ellipselabels",
               "brushlabels", "polylinelabels", "hypertextlabels", "paragraphlabels", "timeserieslabels", "taxonomy")
_LABEL_KEY_SET = frozenset(_LABEL_KEYS)
_TEXT_AND_LABEL_KEYS = _LABEL_KEY_SET | {"text"}


def secret_matches(headers: Mapping[str, str], secret: str) -> bool:
    """Whether a request's :data:`SECRET_HEADER` equals ``secret``, compared in constant time.

    Args:
        headers: The request's headers (werkzeug's, or any mapping).
        secret: ``LABELHUB_WEBHOOK_SECRET``; an empty secret matches nothing.

    Returns:
        ``True`` when the header carries exactly the secret. WSGI gives header values decoded as latin-1
        (PEP 3333), so they are encoded back to the bytes sent, and compared with the bytes a client sends for
        the secret:

        - its latin-1 bytes: what Label Studio sends (its webhooks post through ``requests`` and ``http.client``,
          which encode a header's text as latin-1);
        - its UTF-8 bytes: what a client that sends UTF-8 sends (``curl``, ``requests`` given bytes).

        Both are compared, each in constant time (:func:`hmac.compare_digest`), whichever matches. **A secret not
        representable in latin-1** (a character above U+00FF) matches its UTF-8 bytes only: Label Studio cannot
        send it at all (``http.client`` refuses to encode the header, so the webhook call fails in Label Studio), so
        such a secret is to be replaced by one of latin-1 (ASCII is safest);
        :func:`labelhub.sync.annotations.receiver.webhook_app` says so once in a warning, without the secret. A
        header value given as text outside latin-1 (a mapping that is not WSGI's) is compared by its UTF-8 bytes.
        The secret never appears in a log line or an error.
    """
    value = headers.get(SECRET_HEADER, "")
    try:
        given = value.encode("latin-1")
    except UnicodeEncodeError:  # not WSGI's latin-1 text: compared as the text it is
        given = _utf8(value)
    forms = [_utf8(secret)]
    if secret_is_latin1(secret):
        forms.append(secret.encode("latin-1"))
    matched = False
    for form in forms:  # every form compared: the time taken does not say which one matched
        matched |= hmac.compare_digest(given, form)
    return bool(secret) and matched


def secret_is_latin1(secret: str) -> bool:
    """Whether ``secret`` can travel in an HTTP header as Label Studio sends one (latin-1 text, see
    :func:`secret_matches`)."""
    try:
        secret.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; lone surrogates (an environment variable of bytes that are not UTF-8, decoded by Python with
    ``surrogateescape``) as the bytes they stand for, or, outside that range, encoded as they are."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


class Event(NamedTuple):
    """A checked webhook event: ``(action, body)``."""

    action: str
    body: dict


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in _INT64


def _has_id(item: Any) -> bool:
    return isinstance(item, dict) and _is_id(item.get("id"))


def parse_json(raw: bytes | str) -> Any:
    """Decode a request body as strict JSON (:func:`labelhub.strict_json.loads`).

    Args:
        raw: The body (UTF-8, or UTF-16/32 as :func:`json.loads` detects them).

    Returns:
        The decoded value.

    Raises:
        InvalidEventError: Not JSON, not decodable, ``NaN``/``Infinity`` (not JSON, and SQLite's JSON
            functions refuse them), an integer of more than 4300 digits, nesting deeper than
            :data:`MAX_JSON_DEPTH`, or a string with an unpaired surrogate (not Unicode text: it could not be
            hashed, stored or sent on). The message is one line.

    Example:
        >>> parse_json(b'{"action": "START_TRAINING"}')
        {'action': 'START_TRAINING'}
    """
    try:
        return strict_json.loads(raw)
    except InvalidJSONError as exc:
        raise InvalidEventError(str(exc)) from None


def check_annotation(ann: dict, field: str) -> None:
    """Refuse an annotation whose fields LabelHub reads have another type than Label Studio gives them.

    Args:
        ann: One annotation object (Label Studio's ``AnnotationSerializer``: ``id``, ``result``, ``updated_at``,
            ``completed_by``, ...).
        field: Where it is in the body, for the error (``"annotation"``, ``"annotations[2].annotations[0]"``).

    Raises:
        InvalidEventError: ``updated_at``/``created_at`` not strings, ``completed_by`` neither an id nor an
            object, ``result`` not a list of objects, a result's names not strings, its ``value`` not an object,
            its label lists not lists of strings, or a ``rectanglelabels`` box without finite numbers.
    """
    for key in ("updated_at", "created_at"):
        if ann.get(key) is not None and not isinstance(ann[key], str):
            raise InvalidEventError(f"{field}.{key} is not a string", field=field)
    who = ann.get("completed_by")
    if who is not None and not _is_id(who) and not isinstance(who, dict):
        raise InvalidEventError(f"{field}.completed_by is neither a user id nor a user", field=field)
    result = ann.get("result")
    if result is None:
        return
    if not isinstance(result, list):
        raise InvalidEventError(f"{field}.result is not a list", field=field)
    for i, item in enumerate(result):
        problem = result_problem(item)
        if problem:
            raise InvalidEventError(f"{field}.result[{i}]{problem}", field=field)


def result_problem(item: Any) -> str | None:
    """Why one result item does not have the types Label Studio gives its fields, or ``None`` when it does.

    Label Studio's API stores a result as given, so an annotation made by a script can hold what its editor never
    writes. The format: https://labelstud.io/guide/export#Label-Studio-JSON-format-of-annotated-tasks.

    Args:
        item: One item of an annotation's ``result``.

    Returns:
        The reason, worded to follow the item's place (``"annotation.result[0]" + reason``): ``" is not an
        object"``, ``".from_name is not a string"``, ``".value is not an object"``, ``".value.choices is not a list
        of strings"`` (``taxonomy``: of paths; ``text`` of a ``textarea``), ``" is a box without numbers x, y,
        width, height"`` (``rectanglelabels``: finite numbers, not booleans).

    Example:
        >>> result_problem({"type": "choices", "value": {"choices": ["cat"]}}) is None
        True
        >>> result_problem({"type": "rectanglelabels", "value": {"x": "10", "y": 0, "width": 5, "height": 5}})
        ' is a box without numbers x, y, width, height'
    """
    if not isinstance(item, dict):
        return " is not an object"
    for key in ("from_name", "to_name", "type"):
        if item.get(key) is not None and not isinstance(item[key], str):
            return f".{key} is not a string"
    value = item.get("value", {})
    if not isinstance(value, dict):
        return ".value is not an object"
    kind = item.get("type")
    for key in (_TEXT_AND_LABEL_KEYS if kind == "textarea" else _LABEL_KEY_SET).intersection(value):
        labels = value[key]
        if labels is None:
            continue
        if not isinstance(labels, list) or not all(
                isinstance(x, list) and all(isinstance(y, str) for y in x) if key == "taxonomy"
                else isinstance(x, str) for x in labels):
            return f".value.{key} is not a list of {'paths' if key == 'taxonomy' else 'strings'}"
    if kind == "rectanglelabels" and not all(
            type(value.get(k)) in (int, float) and math.isfinite(value[k]) for k in ("x", "y", "width", "height")):
        return " is a box without numbers x, y, width, height"
    return None


def check_training_tasks(items: Any, field: str = "annotations") -> None:
    """Check the body of the legacy ``POST /train``: a list of tasks, each with the annotations to learn from.

    Label Studio's ``MLApi.train`` sent ``{"annotations": [task, ...], "project", "label_config"}`` before its
    webhook training (``label_studio/ml/api_connector.py``), each task as ``TaskWithAnnotationsSerializer``
    gives it: ``{"id", "data", "annotations": [{"id", "result", ...}]}``.

    Args:
        items: The ``annotations`` field of the body.
        field: Its name, for the error.

    Raises:
        InvalidEventError: ``items`` is not a list, a task is not an object with an integer ``id`` (64 bits), its
            ``data`` is not an object, its ``annotations`` is not a list of objects with an integer ``id``, or an
            annotation fails :func:`check_annotation`. ``field`` names the first at fault
            (``annotations[3].annotations[0].id``): an annotation without an id could not be told from another.
    """
    if not isinstance(items, list):
        raise InvalidEventError(f"'{field}' must be a list of tasks with their annotations", field=field)
    for i, task in enumerate(items):
        where = f"{field}[{i}]"
        if not _has_id(task):
            raise InvalidEventError(f"{where} is not a task with an integer id", field=where)
        if task.get("data") is not None and not isinstance(task["data"], dict):
            raise InvalidEventError(f"{where}.data is not an object", field=where)
        annotations = task.get("annotations", [])
        if not isinstance(annotations, list):
            raise InvalidEventError(f"{where}.annotations is not a list", field=where)
        for j, ann in enumerate(annotations):
            if not _has_id(ann):
                raise InvalidEventError(f"{where}.annotations[{j}] is not an annotation with an integer id",
                                        field=where)
            check_annotation(ann, f"{where}.annotations[{j}]")


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


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as Label Studio writes it (Django REST framework: ``2024-06-10T08:00:00.123456Z``; also
    ``+00:00`` or another offset, with or without fractions of a second), as an aware datetime.

    Args:
        value: The field's value.

    Returns:
        The instant in UTC (a time without an offset is taken as UTC, Label Studio's ``TIME_ZONE``), or ``None``
        when ``value`` is not a string of that form or its UTC is outside years 1 to 9999.

    Example:
        >>> parse_time("2020-05-05T00:00:00Z") == parse_time("2020-05-05T00:00:00.000000+00:00")
        True
    """
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    except (ValueError, OverflowError):  # not ISO 8601; or its UTC falls outside years 1-9999
        return None


def utc_text(moment: datetime) -> str:
    """``moment`` in UTC, to the second, as Label Studio writes it without the fraction (``2020-05-05T00:00:00Z``)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_project(project: Any, project_id: int, created_at: datetime | None) -> None:
    """Refuse an event's ``project`` that is not project ``project_id`` created at ``created_at`` (see
    :func:`parse_event`)."""
    if project is None and created_at is None:
        return
    if not isinstance(project, dict):
        shown = "no 'project'" if project is None else f"a 'project' that is not an object ({project!r:.60})"
        raise InvalidEventError(f"event with {shown}: Label Studio sends the project, an object with its id and "
                                f"created_at (see {_GUIDE})", field="project")
    pid = project.get("id")
    if not _is_id(pid):
        raise InvalidEventError(f"event whose project.id is not an integer ({pid!r:.60})", field="project")
    if pid != project_id:
        raise InvalidEventError(f"event of project {pid}, not {project_id}", field="project")
    if created_at is None:
        return
    created = project.get("created_at")
    moment = parse_time(created)
    if moment is None:
        raise InvalidEventError(f"event of project {pid} without a readable project.created_at ({created!r:.60}): "
                                "which Label Studio's project it is cannot be told", field="project")
    if int(moment.timestamp()) != int(created_at.timestamp()):
        raise InvalidEventError(f"event of project {pid} created {utc_text(moment)}, not this project's (created "
                                f"{utc_text(created_at)}): another Label Studio's project, or one deleted and made "
                                "again under the same id", field="project")


def parse_event(body: Any, actions: Collection[str] = ACTIONS, project_id: int | None = None,
                need_project: bool = False, *, created_at: datetime | None = None) -> Event:
    """Check a webhook body: its action, the ids its action needs, and its project.

    Args:
        body: The decoded JSON body.
        actions: The actions the caller accepts (default: every Label Studio action).
        project_id: When given, an event whose ``project`` is not an object with an integer ``id`` of this
            project is refused (a body without ``project`` passes unless ``need_project`` or ``created_at``).
        need_project: Refuse an event that names no ``project``.
        created_at: With ``project_id``: when the project was created (an aware datetime, e.g. from Label Studio's
            ``GET /api/projects/{id}``). The event must then carry ``project.created_at``, and it must be the same
            instant to the second (as Label Studio's project key ``<id>.<created_at in unix seconds>``; ``Z`` or
            ``+00:00``, with or without microseconds, are alike): another Label Studio's project, or one deleted and
            made again under the same id, is refused.

    Returns:
        An :class:`Event` ``(action, body)``; ``body`` is not copied.

    Raises:
        InvalidEventError: Not a JSON object; no action; a missing or malformed ``annotation``,
            ``annotations``, ``tasks`` or ``task`` (each item needs an integer ``id`` of at most 64 bits; a
            task's ``data`` must be an object; an annotation's fields must have Label Studio's types, see the
            module docstring); another project (its id, or its ``created_at`` when ``created_at`` is given, in the
            message: ``event of project 1 created 2020-05-05T00:00:00Z, not this project's (created ...)``); no
            project when ``need_project`` or ``created_at``. ``field`` names the field at fault.
        UnknownEventAction: The action is not one of ``actions``.

    Example:
        >>> parse_event({"action": "TASKS_DELETED", "tasks": [{"id": 3}]}).action
        'TASKS_DELETED'
    """
    action = event_action(body, actions)
    project = body.get("project")
    if project_id is not None:
        _check_project(project, project_id, created_at)
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
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"):
            tasks = body.get("task")
            for task in tasks if isinstance(tasks, list) else [tasks]:
                if isinstance(task, dict) and task.get("data") is not None and not isinstance(task["data"], dict):
                    raise InvalidEventError(f"{action} with a task.data that is not an object", field="task")
            one_task = _has_id(tasks) or (isinstance(tasks, list) and len(tasks) == 1 and _has_id(tasks[0]))
            for i, ann in enumerate(items if many else [items]):
                check_annotation(ann, key)
                if many and not one_task and not (_is_id(ann.get("task")) or _has_id(ann.get("task"))):
                    raise InvalidEventError(f"{key}[{i}] names no task (its 'task' id) and the event does not "
                                            "give exactly one", field=key)
    if need_project and project in (None, "", {}):
        raise InvalidEventError(f"{action} names no 'project'", field="project")
    return Event(action, body)
