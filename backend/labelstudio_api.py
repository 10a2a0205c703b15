"""Label Studio as the backend's prediction jobs and trainer see it: the few API calls they make
(:class:`LabelStudioClient`, through label-studio-sdk: https://api.labelstud.io) and the rows they read
(:class:`ProjectInfo`, :class:`TaskRow`, :class:`PredictionRow`, :class:`VersionRow`).

Every error comes out as :class:`labelhub.errors.LabelStudioError` (with ``status``) or
:class:`labelhub.errors.ProjectNotFound`, naming the call and never the key. Writes are never retried by the SDK:
:func:`labelhub.backend.jobs.run_batch` reads what landed before writing again.
"""
from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Sequence

from labelhub import strict_json
from labelhub.errors import ConfigurationError, InvalidJSONError, LabelStudioError, ProjectNotFound
from labelhub.labelstudio_client import (KEY_ADVICE, LISTING_ATTEMPTS, TASK_PAGE_SIZE, Listing, api_error_text,
                                         label_studio_client, list_tasks, selected_items_queries)
from labelhub.redaction import one_line, without_userinfo
from labelhub.retry import NO_SDK_RETRY

log = logging.getLogger(__name__)

__all__ = ["ProjectInfo", "PredictionRow", "VersionRow", "TaskRow", "LabelStudioClient", "PREDICTION_PAGE_SIZE",
           "DELETE_VERSION_TIMEOUT", "TRAINING_TASK_FIELDS", "data_manager_filters"]

#: Seconds to wait for Label Studio to delete a whole version (3.5 ms a prediction: 100,000 take about 6 minutes).
DELETE_VERSION_TIMEOUT = 3600.0


@dataclass(frozen=True)
class ProjectInfo:
    """A Label Studio project as a job needs it.

    Attributes:
        id: The project id.
        key: ``<id>.<created_at in unix seconds>``, how Label Studio names the project to ML backends
            (``MLApi._create_project_uid`` in ``label_studio/ml/api_connector.py``): the folder of its
            state in ``MODEL_DIR/projects/``.
        label_config: The label config XML.
        model_version: The project's selected prediction set (Settings → Annotation → Prelabeling), ``""``
            when none; the Data Manager's "Prediction score" column averages that version's scores.
        annotations: Label Studio's ``total_annotations_number``: the project's annotations that were not cancelled
            (``annotate_total_annotations_number`` in ``label_studio/projects/functions/__init__.py``), the ones the
            backend trains on; ``None`` when not read.
        tasks: Label Studio's ``task_number``: the project's tasks; ``None`` when not read.
    """

    id: int
    key: str
    label_config: str
    model_version: str = ""
    annotations: int | None = None
    tasks: int | None = None


@dataclass(frozen=True)
class PredictionRow:
    """One prediction of a task, as listed: ``id``, ``model_version``, ``score`` (``None`` when unset)."""

    id: int
    model_version: str
    score: float | None


@dataclass(frozen=True)
class VersionRow:
    """One prediction set of a project, as Label Studio lists it (:meth:`LabelStudioClient.model_versions`).

    Attributes:
        model_version: The version.
        count: Its predictions in the project.
        latest: When its latest prediction was created (aware datetime).
    """

    model_version: str
    count: int
    latest: datetime


@dataclass(frozen=True)
class TaskRow:
    """One task, as listed: ``id``, ``data``, ``is_labeled`` (Label Studio's: annotations reach the
    overlap) and its ``predictions``."""

    id: int
    data: dict
    is_labeled: bool = False
    predictions: tuple[PredictionRow, ...] = ()

    def predictions_of(self, model_version: str) -> list[PredictionRow]:
        """The task's predictions of ``model_version``.

        Args:
            model_version: A model version.

        Returns:
            Those predictions, in listing order.
        """
        return [p for p in self.predictions if p.model_version == model_version]

    @property
    def last_score(self) -> float | None:
        """The score of the task's newest prediction (highest id) that has one, of any version; else ``None``."""
        scored = [p for p in self.predictions if p.score is not None]
        return max(scored, key=lambda p: p.id).score if scored else None


def _field(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def _task_row(task: Any) -> TaskRow:
    preds = []
    for p in _field(task, "predictions") or []:
        score = _field(p, "score")
        preds.append(PredictionRow(id=int(_field(p, "id")), model_version=str(_field(p, "model_version") or ""),
                                   score=float(score) if isinstance(score, (int, float)) else None))
    data = _field(task, "data")
    return TaskRow(id=int(_field(task, "id")), data=data if isinstance(data, dict) else {},
                   is_labeled=bool(_field(task, "is_labeled")), predictions=tuple(preds))


#: Tasks per page of the listings with every prediction (:meth:`LabelStudioClient.tasks`), each page made into
#: TaskRows and dropped before the next. The SDK's models of a page take about 9 times its JSON, and a process's RSS
#: keeps its highest peak: on 2,000 tasks with 30 predictions each, the listing peaked at 32.7 MiB of Python objects
#: against 160.4 MiB for pages of 500 held to the end, in 1.15 times the time (``bench/listing_memory_bench.py``).
#: Each automatic whole-project job adds a prediction per unlabeled task (unless ``LABELHUB_KEEP_VERSIONS``), so the
#: peak rose with every job: the trainer's worker grew 417 to 516 MB in a 25-minute soak, about 0.4 MB a job.
PREDICTION_PAGE_SIZE = 100


#: The single values a Data Manager filter takes: a number, a flag or a text; its value is one of them, a list, or a
#: ``{"min", "max"}`` range of them (``Filter.value`` in ``label_studio/data_manager/prepare_params.py``).
_FILTER_SCALARS = (int, float, bool, str)


#: What "Start training" reads of an annotated task (:meth:`LabelStudioClient.annotated_tasks`): the task's ``id`` and
#: ``data``, and of each annotation the fields the backend keeps or checks (``_upsert`` in
#: :mod:`labelhub.backend.events`, :func:`labelhub.webhooks.check_annotation`). Label Studio's ``include``
#: (drf-flex-fields' sparse fields: ``REST_FLEX_FIELDS`` in ``label_studio/core/settings/base.py``) applies to the
#: annotations inside a task too, so their fields are named beside the task's. ``fields=all`` alone also serialized
#: every task's predictions, drafts and counters: ``python bench/reading_fields_bench.py`` measures both.
TRAINING_TASK_FIELDS = ("id", "data", "annotations", "result", "updated_at", "created_at", "completed_by",
                        "was_cancelled", "ground_truth")
TRAINING_TASK_INCLUDE = ",".join(TRAINING_TASK_FIELDS)


def data_manager_filters(value: Any, where: str = "--filter") -> dict:
    """Data Manager filters, as a tab saves them and ``GET /api/tasks`` takes them in its ``query``, checked.

    Label Studio's shape (``Filters`` and ``Filter`` in ``label_studio/data_manager/prepare_params.py``;
    https://labelstud.io/guide/manage_data#Filter-tasks)::

        {"conjunction": "and", "items": [{"filter": "filter:tasks:data.split", "operator": "equal",
                                          "type": "String", "value": "test"}]}

    Label Studio ignores, without a word, an item whose ``filter`` does not start with ``filter:tasks:``: a job would
    then predict every task, so such an item is refused here, and so is an item with a value Label Studio answers 500
    for (:func:`_filter_item`). The operators and types are Label Studio's to check (it answers 400 for one it does
    not know); an item's ``child_filter`` is checked as an item.

    Args:
        value: The filters: JSON text or its value; a list of items (joined by ``and``) or one item stand for
            ``{"conjunction": "and", "items": ...}``.
        where: What to name in an error (``--filter``, a tab).

    Returns:
        ``{"conjunction": "and" | "or", "items": [{"filter", "operator", "type", "value"}, ...]}``, at least one item.

    Raises:
        ValueError: ``value`` is not such filters: the message says where and why (the item's number from 1); JSON
            text that :func:`labelhub.strict_json.loads` refuses (``NaN``, nesting deeper than 100 levels) is not
            JSON.

    Example:
        >>> data_manager_filters('{"filter": "filter:tasks:id", "operator": "less", "type": "Number", "value": 9}')
        ... # doctest: +NORMALIZE_WHITESPACE
        {'conjunction': 'and',
         'items': [{'filter': 'filter:tasks:id', 'operator': 'less', 'type': 'Number', 'value': 9}]}
    """
    if isinstance(value, (str, bytes)):
        try:  # strict: nesting too deep for json's recursion is refused here, not a RecursionError
            value = strict_json.loads(value)
        except InvalidJSONError as exc:
            raise ValueError(f"{where} is not JSON ({str(exc).removeprefix('not JSON: ')})") from None
    if isinstance(value, dict) and "filter" in value:
        value = [value]
    if isinstance(value, list):
        value = {"conjunction": "and", "items": value}
    if not isinstance(value, dict) or not isinstance(value.get("items"), list):
        raise ValueError(f'{where} must be {{"conjunction": "and", "items": [...]}}, a list of filter items or one '
                         'item')
    conjunction = value.get("conjunction", "and")
    if conjunction not in ("and", "or"):
        raise ValueError(f'{where}: conjunction must be "and" or "or", not {one_line(json.dumps(conjunction), 40)}')
    if not value["items"]:
        raise ValueError(f"{where} has no filter item (leave it out to predict every task)")
    items = [_filter_item(item, f"{where}, item {n}") for n, item in enumerate(value["items"], 1)]
    return {"conjunction": conjunction, "items": items}


def _filter_item(item: Any, where: str, child: bool = False) -> dict:
    """One Data Manager filter item checked (:func:`data_manager_filters`), its ``child_filter`` too.

    Besides the shape, what Label Studio 1.23 answers 500 for, or ignores without a word (an audit), is refused:
    ``in``/``not_in`` without a ``{"min": ..., "max": ...}`` value, a ``Number`` value that is no number, a
    ``Datetime`` value that is no ISO 8601 date, a ``child_filter`` whose ``filter`` does not start with
    ``filter:tasks:``.

    Args:
        item: The item.
        where: What to name in an error.
        child: ``True`` for a ``child_filter``, whose ``type`` may be left out (passed on as given).

    Raises:
        ValueError: The item is not one: the message starts with ``where``.
    """
    if not isinstance(item, dict):
        raise ValueError(f"{where}: not an object with filter, operator, type and value")
    for key in ("filter", "operator", "type"):
        if child and key == "type" and "type" not in item:
            continue
        if not isinstance(item.get(key), str) or not item[key]:
            raise ValueError(f"{where}: {key} must be a text")
    if not item["filter"].startswith("filter:tasks:"):
        raise ValueError(f"{where}: the filter must start with filter:tasks: (e.g. "
                         f"filter:tasks:data.split); Label Studio ignores {one_line(item['filter'], 60)!r}")
    found = item.get("value")
    ranged = isinstance(found, dict) and set(found) == {"min", "max"} and all(
        isinstance(v, _FILTER_SCALARS) for v in found.values())
    if not (isinstance(found, (*_FILTER_SCALARS, list)) or ranged):
        raise ValueError(f"{where}: value must be a number, true or false, a text, a list or "
                         '{"min": ..., "max": ...}')
    if item["operator"] in ("in", "not_in") and not ranged:
        raise ValueError(f'{where}: the operator {item["operator"]} takes a value {{"min": ..., "max": ...}}')
    values = list(found.values()) if ranged else found if isinstance(found, list) else [found]
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise ValueError(f"{where}: value must be a finite number")
    kind = item.get("type")
    bad = next((v for v in values if not _filter_value_fits(kind, v)), None) \
        if kind in ("Number", "Datetime") and item["operator"] != "empty" else None  # empty: true or false
    if bad is not None:
        raise ValueError(f"{where}: {one_line(json.dumps(bad), 40)} is not a "
                         + ("number" if kind == "Number" else "date and time in ISO 8601 (2026-12-08T10:00:00Z)")
                         + f" (type {kind})")
    checked = {key: item[key] for key in ("filter", "operator", "type", "value") if key in item}
    if item.get("child_filter") is not None:
        checked["child_filter"] = _filter_item(item["child_filter"], f"{where}, its child_filter", child=True)
    return checked


def _filter_value_fits(kind: str, value: Any) -> bool:
    """Whether Label Studio reads ``value`` as a ``Number`` (a number, or a text ``float()`` reads) or a
    ``Datetime`` (an ISO 8601 text) filter's value."""
    if kind == "Number":
        if isinstance(value, bool):
            return False
        try:
            return math.isfinite(float(value))
        except (TypeError, ValueError):
            return False
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class LabelStudioClient:
    """The few Label Studio API calls a job makes, through label-studio-sdk (https://api.labelstud.io).

    A personal access token is refreshed by the SDK; a legacy token is sent as ``Token ...``. Writes are
    never retried by the SDK (``max_retries=0``): a write retried blindly could land twice, so
    :func:`labelhub.backend.jobs.run_batch` reads what landed first.

    Args:
        url: Label Studio's URL (``LABEL_STUDIO_URL``).
        api_key: A personal access token or legacy token (``LABEL_STUDIO_API_KEY``).
        timeout: Seconds per HTTP call.

    Raises:
        ConfigurationError: When ``url`` or ``api_key`` is empty.
    """

    def __init__(self, url: str, api_key: str, timeout: float = 120.0):
        if not url:
            raise ConfigurationError("LABEL_STUDIO_URL (--label-studio-url) is required")
        if not api_key:
            raise ConfigurationError("LABEL_STUDIO_API_KEY (--api-key) is required")
        self.url = url.rstrip("/")
        self._client = label_studio_client(self.url, api_key, timeout)
        self._shown = without_userinfo(self.url)  # in messages: never a user:password@ of the URL

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, with the SDK's errors turned into :class:`LabelStudioError` (``status`` set) or
        :class:`ProjectNotFound` (404); messages name the call, never the key."""
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        try:
            return fn()
        except ApiError as exc:
            if exc.status_code == 404:
                raise ProjectNotFound(f"{what}: not found at {self._shown} (404)") from None
            if exc.status_code in (401, 403):
                error = LabelStudioError(f"Label Studio at {self._shown} refused LABEL_STUDIO_API_KEY "
                                         f"({exc.status_code}): {KEY_ADVICE}")
            else:
                body = api_error_text(exc.body)
                error = LabelStudioError(f"{what}: Label Studio at {self._shown} answered {exc.status_code}: {body}")
            error.status = exc.status_code
            raise error from None
        except httpx.HTTPError as exc:
            error = LabelStudioError(f"{what}: no answer from Label Studio at {self._shown} ({type(exc).__name__}: "
                                     f"{one_line(exc, 200)}): check that it runs and that "
                                     "LABEL_STUDIO_URL (--label-studio-url) is its URL")
            error.status = None
            raise error from None

    def project(self, project_id: int) -> ProjectInfo:
        """The project's key, label config and selected prediction set.

        Args:
            project_id: The project id.

        Returns:
            Its :class:`ProjectInfo`.

        Raises:
            ProjectNotFound: No such project, or the key cannot see it.
            LabelStudioError: Label Studio refused the key or cannot be reached.
        """
        project = self._call(f"project {project_id}", lambda: self._client.projects.get(id=project_id))
        created = project.created_at
        if isinstance(created, str):
            created = datetime.fromisoformat(created.replace("Z", "+00:00"))
        key = f"{project_id}.{int(created.timestamp())}" if created else str(project_id)
        counted, tasks = getattr(project, "total_annotations_number", None), getattr(project, "task_number", None)
        return ProjectInfo(id=project_id, key=key, label_config=project.label_config or "",
                           model_version=project.model_version or "",
                           annotations=counted if isinstance(counted, int) else None,
                           tasks=tasks if isinstance(tasks, int) else None)

    def _read(self, what: str, project_id: int, query: str, attempts: int = 1,
              convert: Callable[[Any], Any] | None = None, page_size: int | None = None, **params: Any) -> Listing:
        """One paged Data Manager ``query`` of the project (:func:`labelhub.labelstudio_client.list_tasks`), pages of
        :data:`~labelhub.labelstudio_client.TASK_PAGE_SIZE` (500: see there why not more) unless ``page_size`` says
        otherwise, each task ``convert``-ed as its page comes in."""
        return list_tasks(self._client, functools.partial(self._call, what), attempts, convert, project=project_id,
                          page_size=page_size or TASK_PAGE_SIZE, query=query, **params)

    def tasks_up_to(self, project_id: int, last_id: int) -> int:
        """How many of the project's tasks have an id of at most ``last_id``: one ``GET /api/tasks`` of one task with
        a Data Manager filter on ``tasks:id`` (its answer's ``total``;
        https://api.labelstud.io/api-reference/api-reference/tasks/list). Label Studio gives ids in increasing order,
        so a task created after a listing whose largest id was ``last_id`` is not counted, and the count is smaller
        than the listing's exactly when a task it listed was deleted.

        Raises:
            ProjectNotFound, LabelStudioError: As for :meth:`project`.
            ValueError: Label Studio's answer has no ``total``.
        """
        query = json.dumps({"filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:id", "operator": "less", "type": "Number", "value": int(last_id) + 1}]}})
        page = self._call(f"tasks of project {project_id}", lambda: self._client.tasks.list(
            project=project_id, page_size=1, query=query, fields="task_only", include="id"))
        total = getattr(page.response, "total", None)
        if not isinstance(total, int):
            raise ValueError(f"Label Studio's task listing of project {project_id} has no total")
        return total

    def _every_task(self, what: str, project_id: int, filters: list[dict], conjunction: str = "and",
                    **params: Any) -> list:
        """Every task of the project that matches the Data Manager filter ``filters`` (``[]``: all), none missed
        when the list moves while it is read.

        Label Studio pages ``GET /api/tasks`` by page number (:func:`labelhub.labelstudio_client.list_tasks`). The
        tasks are read once in id order (Label Studio's default, ``apply_ordering`` in
        ``label_studio/data_manager/managers.py``; asked for explicitly), which a save does not change; but a task
        deleted meanwhile, or one that leaves or enters the filter, shifts the later ones by a place, so one is never
        read (or one is read twice). When the reading shows that it moved, the ids alone are listed again (up to
        :data:`~labelhub.labelstudio_client.LISTING_ATTEMPTS` readings: cheap, rather than every task with its
        predictions or annotations again) and the tasks the reading missed are read by id
        (:func:`~labelhub.labelstudio_client.selected_items_queries`). The answer is then the tasks of that id listing
        (one deleted after the reading read it is left out). When the id listing keeps moving too (deletions all
        along), the answer is every task either read, with a warning: one may still be missing (a later run lists
        it).

        Args:
            what: The call's name in error messages.
            project_id: The project id.
            filters: Data Manager filter items (``{"filter": "filter:tasks:...", "operator", "type", "value"}``:
                ``Filter`` in ``label_studio/data_manager/prepare_params.py``), joined by ``conjunction``.
            conjunction: ``"and"`` or ``"or"``.
            **params: ``fields`` and ``include`` of each task read.

        Returns:
            The SDK's task models, in id order, each task once.

        Raises:
            ProjectNotFound, LabelStudioError: As for :meth:`project`.
        """
        query = json.dumps({"filters": {"conjunction": conjunction, "items": filters}, "ordering": ["tasks:id"]})
        read = self._read(what, project_id, query, **params)
        if read.held_still:
            return read.tasks
        ids = self._read(what, project_id, query, LISTING_ATTEMPTS, fields="task_only", include="id")
        tasks = {task.id: task for task in read.tasks}
        if ids.held_still:
            tasks = {task.id: tasks[task.id] for task in ids.tasks if task.id in tasks}
        else:
            log.warning("%s kept changing while they were listed (%d readings): a task may be missing",
                        what, LISTING_ATTEMPTS)
        for by_id in selected_items_queries(sorted({task.id for task in ids.tasks} - tasks.keys())):
            tasks.update((task.id, task) for task in self._read(what, project_id, by_id, **params).tasks)
        return [tasks[task_id] for task_id in sorted(tasks)]

    def tasks(self, project_id: int, task_ids: Sequence[int] | None = None,
              filters: dict | None = None) -> list[TaskRow]:
        """The project's tasks (or those of ``task_ids`` that exist, or those ``filters`` keeps) with their
        predictions, paged.

        ``GET /api/tasks?fields=all&include=id,data,is_labeled,predictions``
        (https://api.labelstud.io/api-reference/api-reference/tasks/list): every task, none missed when a task is
        deleted meanwhile (:meth:`_every_task`); with ``task_ids``, a Data Manager ``selectedItems`` query per
        :data:`~labelhub.labelstudio_client.IDS_PER_QUERY` ids. If the project has "retrieve predictions
        automatically" on, Label Studio asks the connected backend for the listed tasks that have no prediction first
        (and lists them with it).

        Args:
            project_id: The project id.
            task_ids: Only these tasks; ``None`` for all.
            filters: Only the tasks these Data Manager filters keep (:func:`data_manager_filters`); not with
                ``task_ids``.

        Returns:
            The tasks, each with its data and predictions (id, version, score).

        Raises:
            ProjectNotFound, LabelStudioError: As for :meth:`project`.
        """
        # each page becomes TaskRows as it comes in: the SDK's models of every prediction are never all held at once
        what = f"tasks of project {project_id}"
        params = {"fields": "all", "include": "id,data,is_labeled,predictions", "convert": _task_row,
                  "page_size": PREDICTION_PAGE_SIZE}
        if task_ids is None:
            return self._every_task(what, project_id, (filters or {}).get("items") or [],
                                    (filters or {}).get("conjunction") or "and", **params)
        return [t for query in selected_items_queries(task_ids)
                for t in self._read(what, project_id, query, **params).tasks]

    def view_filters(self, project_id: int, view_id: int) -> dict | None:
        """The filters of a Data Manager tab of the project (its id is the ``tab`` of the Data Manager's URL):
        ``GET /api/dm/views/<id>/`` (https://api.labelstud.io/api-reference/api-reference/views/get).

        Args:
            project_id: The project id.
            view_id: The tab's id.

        Returns:
            Its filters (:func:`data_manager_filters`), ``None`` when it has none (every task).

        Raises:
            ProjectNotFound: No such tab, or it is another project's.
            LabelStudioError: Label Studio refused the key or cannot be reached.
            ValueError: The tab's filters are not Data Manager filters LabelHub can send back.
        """
        view = self._call(f"Data Manager tab {view_id}", lambda: self._client.views.get(id=str(view_id)))
        if getattr(view, "project", project_id) != project_id:
            raise ProjectNotFound(f"Data Manager tab {view_id} is not a tab of project {project_id} (it is project "
                                  f"{view.project}'s)")
        filters = (getattr(view, "data", None) or {}).get("filters")
        if not filters or not filters.get("items"):
            return None
        return data_manager_filters(filters, f"tab {view_id}'s filters")

    def annotated_tasks(self, project_id: int) -> list[dict]:
        """The project's tasks that have annotations, as Label Studio's task JSON with its ``annotations``, in two
        readings: every task's id with the ids of its annotations (``fields=all&include=id,annotations``: no data, no
        predictions; paged, none missed when the list moves, :meth:`_every_task`), then the tasks that have any, with
        the fields training reads (:data:`TRAINING_TASK_FIELDS`), by id
        (:func:`~labelhub.labelstudio_client.selected_items_queries`).

        Not Label Studio's ``total_annotations > 0`` Data Manager filter: that counter is stored on the task and
        written after each save from a count made in that save, so two saves of one task at once can leave it at 0
        beside a live annotation (seen with 20 annotators), and such a task was never read; the first reading here
        lists the annotations themselves. Cost on Label Studio 1.23.2 (SQLite), 3,000 tasks of which 300 annotated:
        see the README's "Start training".

        Args:
            project_id: The project id.

        Returns:
            ``[{"id", "data", "annotations": [{"id", "result", "updated_at", "was_cancelled", "ground_truth",
            "created_at", "completed_by"}]}, ...]``, the shape of the legacy ``/train`` body
            (:func:`labelhub.webhooks.check_training_tasks`), in id order; a task's cancelled annotations are listed
            too (``was_cancelled``). A task deleted between the two readings is left out.

        Raises:
            ProjectNotFound, LabelStudioError: As for :meth:`project`.
        """
        what = f"annotated tasks of project {project_id}"
        listed = self._every_task(what, project_id, [], fields="all", include="id,annotations")
        ids = [t.id for t in listed if t.annotations]
        tasks = [t for query in selected_items_queries(ids)
                 for t in self._read(what, project_id, query, fields="all", include=TRAINING_TASK_INCLUDE).tasks]
        return [{"id": t.id, "data": t.data or {}, "annotations": list(t.annotations or [])}
                for t in sorted(tasks, key=lambda t: t.id) if t.annotations]

    def annotation(self, annotation_id: int) -> dict | None:
        """One annotation as Label Studio holds it now: ``GET /api/annotations/<id>/``
        (https://api.labelstud.io/api-reference/api-reference/annotations/get).

        Args:
            annotation_id: The annotation id.

        Returns:
            ``{"id", "task", "result", "updated_at", "was_cancelled", ...}``, or ``None`` when Label Studio answers
            404 (deleted, or never was).

        Raises:
            LabelStudioError: Label Studio refused the key or cannot be reached.
        """
        try:
            found = self._call(f"annotation {annotation_id}", lambda: self._client.annotations.get(id=annotation_id))
        except ProjectNotFound:
            return None
        return json.loads(found.json()) if hasattr(found, "json") else dict(found)  # times as ISO 8601 text

    def import_predictions(self, project_id: int, predictions: Sequence[dict]) -> int:
        """Write predictions in one call: ``POST /api/projects/<id>/import/predictions``.

        Args:
            project_id: The project id.
            predictions: ``[{"task": id, "result": [...], "score": s, "model_version": v}, ...]``
                (https://labelstud.io/guide/predictions).

        Returns:
            How many Label Studio created (1.22 and later drop those that do not fit the label config;
            earlier versions store them).

        Raises:
            LabelStudioError: Label Studio answered an error or nothing (the call may have landed).
            ProjectNotFound: The project is gone.
        """
        answer = self._call(f"import of {len(predictions)} predictions into project {project_id}",
                            lambda: self._client.projects.import_predictions(
                                id=project_id, request=list(predictions), request_options=NO_SDK_RETRY))
        return int(getattr(answer, "created", 0) or 0)

    def delete_predictions(self, project_id: int, model_version: str, prediction_ids: Sequence[int] | None = None
                           ) -> int:
        """Delete predictions of ``model_version``: all of the project's, or those of ``prediction_ids``.

        The whole project's go in one call, ``DELETE /api/projects/<id>/model-versions/`` (Label Studio's
        ``ProjectModelVersions``; it also unselects the version as the project's prediction set). Label Studio
        recounts the task of each deleted prediction, about 3.5 ms apiece on 1.23 with SQLite
        (``bench/prediction_versions_bench.py``), so the call may take minutes: it waits up to
        :data:`DELETE_VERSION_TIMEOUT`. Listed ones go one ``DELETE /api/predictions/<id>`` each (85 ms
        apiece on 1.23.2 with SQLite, against 7 ms apiece in the whole version's call:
        :func:`labelhub.backend.job_status.left_unwritten`); one already gone is fine.

        Args:
            project_id: The project id.
            model_version: The version.
            prediction_ids: Only these predictions (``None``: every prediction of the version).

        Returns:
            The predictions deleted: Label Studio's count for a whole version, ``len(prediction_ids)`` otherwise.

        Raises:
            LabelStudioError: Label Studio refused or did not answer (the delete may still finish there).
            ProjectNotFound: The project is gone.
        """
        if prediction_ids is None:
            answer = self._call(f"predictions of {model_version} in project {project_id}",
                                lambda: self._model_versions_call(
                                    project_id, "DELETE", json={"model_version": model_version},
                                    timeout=DELETE_VERSION_TIMEOUT))
            return int(answer.get("deleted_predictions") or 0) if isinstance(answer, dict) else 0
        for prediction_id in prediction_ids:
            try:
                self._call(f"prediction {prediction_id}", lambda: self._client.predictions.delete(
                    id=prediction_id, request_options=NO_SDK_RETRY))
            except ProjectNotFound:
                pass
        return len(prediction_ids)

    def model_versions(self, project_id: int) -> list[VersionRow]:
        """The project's prediction sets: ``GET /api/projects/<id>/model-versions/?extended=true``.

        Label Studio's ``ProjectModelVersions`` (``projects/api.py``) groups the project's predictions by
        ``model_version``: how many each has, and when the latest was created (the answer's ``static`` list).

        Args:
            project_id: The project id.

        Returns:
            One :class:`VersionRow` per version, the most recently written first.

        Raises:
            ProjectNotFound, LabelStudioError: As for :meth:`project`.
        """
        answer = self._call(f"model versions of project {project_id}", lambda: self._model_versions_call(
            project_id, "GET", params={"extended": "true"}))
        rows = answer.get("static") or [] if isinstance(answer, dict) else []  # {"static": [...], "live": ...}
        out = [VersionRow(model_version=str(r.get("model_version") or ""), count=int(r.get("count") or 0),
                          latest=datetime.fromisoformat(str(r["latest"]).replace("Z", "+00:00")))
               for r in rows if isinstance(r, dict) and r.get("latest")]
        return sorted(out, key=lambda r: r.latest, reverse=True)

    def _model_versions_call(self, project_id: int, method: str, timeout: float | None = None, **kwargs: Any) -> Any:
        """``/api/projects/<id>/model-versions/`` (not in label-studio-sdk 2.1: through its HTTP client, which
        carries the key, never retried; ``timeout`` in seconds, else the client's); the answer's JSON, or
        ``ApiError`` for a status of 300 or more."""
        from label_studio_sdk.core.api_error import ApiError

        options = {**NO_SDK_RETRY, **({"timeout": timeout} if timeout else {})}
        answer = self._client._client_wrapper.httpx_client.request(
            f"api/projects/{int(project_id)}/model-versions/", method=method, request_options=options, **kwargs)
        if answer.status_code >= 300:
            raise ApiError(status_code=answer.status_code, headers=dict(answer.headers), body=answer.text)
        return answer.json() if answer.content else None

    def ml_backend_titles(self, project_id: int) -> set[str]:
        """The titles of the ML backends connected to the project (Settings → Model; ``GET /api/ml?project=N``,
        https://api.labelstud.io/api-reference/api-reference/ml/list).

        Connecting a backend makes its title the project's prediction set (``model_version``), although no stored
        prediction carries it: predictions carry the version the backend answers.

        Raises:
            LabelStudioError: Label Studio refused the listing or cannot be reached.
        """
        backends = self._call(f"ML backends of project {project_id}", lambda: self._client.ml.list(project=project_id))
        return {str(b.title) for b in backends or () if getattr(b, "title", None)}

    def select_model_version(self, project_id: int, model_version: str) -> None:
        """Make ``model_version`` the project's prediction set (Settings → Annotation → Prelabeling).

        Args:
            project_id: The project id.
            model_version: A version the project has predictions of (Label Studio refuses others).

        Raises:
            LabelStudioError: Label Studio refused it or cannot be reached.
        """
        self._call(f"project {project_id}", lambda: self._client.projects.update(id=project_id,
                                                                                 model_version=model_version))
