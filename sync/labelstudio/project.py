"""A Label Studio project, through label-studio-sdk 2.x (https://api.labelstud.io/api-reference).

The API key may be a legacy token (``Authorization: Token ...``, off by default from Label Studio
1.23 unless ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``) or a personal access token (a JWT refresh
token that the SDK exchanges for short-lived access tokens by itself). Errors are turned into
:class:`labelhub.errors.LabelHubError` subclasses whose messages carry the status and the reason, never the key.

Import calls send JSON encoded here (:func:`encode_tasks`, :class:`EncodedTasks`) through the SDK's HTTP client:
the SDK's own method copies every payload through its encoder first, about 0.26 s for 10,000 file tasks.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

import httpx
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.jsonable_encoder import jsonable_encoder

from labelhub.labelstudio_client import (KEY_ADVICE, LISTING_ATTEMPTS, TASK_PAGE_SIZE, Listing, api_error_text,
                                         label_studio_client, list_tasks, selected_items_queries)
from labelhub.errors import LabelStudioError, NotFoundError, ProjectNotFound
from labelhub.redaction import one_line, without_userinfo
from labelhub.retry import NO_SDK_RETRY


def encode_tasks(tasks: Sequence[dict]) -> bytes:
    """The body of an import call: ``tasks`` as UTF-8 JSON, exactly as httpx encodes ``json=`` (compact, non-ASCII
    kept, NaN refused); a value JSON has no type for (a date, a pydantic model) is encoded by the SDK's
    ``jsonable_encoder``, as the SDK's own methods do.

    Args:
        tasks: Label Studio task payloads (https://labelstud.io/guide/task_format).

    Returns:
        The request body.

    Raises:
        ValueError: a float is NaN or infinite, or a value neither JSON nor the SDK's encoder can encode (a numpy
            integer: the SDK refuses it too).
    """
    return json.dumps(list(tasks), ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                      default=jsonable_encoder).encode("utf-8")


class EncodedTasks(list):
    """Task payloads with their import call's body already encoded (:meth:`LabelStudioProject.prepare_import`): a
    list of the payloads, as :meth:`LabelStudioProject.import_tasks` takes, whose :attr:`body` the call sends as it
    is.

    Args:
        tasks: The payloads.

    Attributes:
        body: :func:`encode_tasks` of ``tasks``.

    Raises:
        ValueError: as :func:`encode_tasks`.
    """

    def __init__(self, tasks: Sequence[dict]):
        super().__init__(tasks)
        self.body = encode_tasks(self)


class TaskNotFound(NotFoundError):
    """A task is not in Label Studio (404 on ``/api/tasks/{id}``): deleted there. Only a 404 of the project itself
    is :class:`labelhub.errors.ProjectNotFound`.

    Attributes:
        task_id: The task's id.
    """

    def __init__(self, task_id: int, message: str):
        super().__init__(message)
        self.task_id = task_id


def _filters(*items: dict, ordering: Sequence[str] = ()) -> str:
    """A Data Manager ``query`` with the ``filters`` ``items`` joined by ``and`` (and its ``ordering``, when given)."""
    return json.dumps({"filters": {"conjunction": "and", "items": list(items)},
                       **({"ordering": list(ordering)} if ordering else {})})


#: The Data Manager filter of the tasks that have an annotation: ``annotations__completed_by__isnull=False`` in
#: ``apply_filters`` (``label_studio/data_manager/managers.py``), a join on the annotations (each task once).
_ANNOTATED = {"filter": "filter:tasks:annotators", "operator": "empty", "type": "List", "value": False}


#: The ``include`` of the readings of tasks with their annotations (:meth:`LabelStudioProject.tasks_updated_since`,
#: :meth:`LabelStudioProject.tasks_by_id`): the task's ``id``, ``data``, ``meta`` (a restored task's
#: ``restored_annotations``: the revision each restored annotation was made on,
#: :func:`labelhub.sync.annotations.intake.restored_revisions`), ``annotations`` and ``updated_at``, and every
#: field Label Studio 1.23 gives an annotation in ``fields=all`` but the display-only ``created_ago`` and
#: ``created_username`` and ``task`` (which the annotation store drops). Label Studio applies ``include`` to the
#: annotations inside a task too, so each of their fields is named. ``fields=all`` alone also serializes every
#: task's predictions, drafts and counters: a page of 100 annotated tasks took Label Studio 2.0 to 2.5 times as long
#: with 3 prediction versions a task, 1.7 times with none, the same tasks and annotations read
#: (``python bench/reading_fields_bench.py [--versions 0]``, 2026-12-07). ``tests/test_sync_reading_fields.py`` fails
#: when a Label Studio gives an annotation a field this list lacks.
ANNOTATED_TASK_FIELDS = ("id", "data", "meta", "annotations", "updated_at", "result", "completed_by", "was_cancelled",
                         "ground_truth", "lead_time", "created_at", "updated_by", "draft_created_at", "import_id",
                         "last_action", "last_created_by", "bulk_created", "parent_prediction", "parent_annotation",
                         "project")
#: :data:`ANNOTATED_TASK_FIELDS` as the readings' ``include`` parameter.
ANNOTATED_TASK_INCLUDE = ",".join(ANNOTATED_TASK_FIELDS)


def _updated_after(cursor: str) -> list[dict]:
    """The Data Manager filter items of the tasks updated after ``cursor`` (none for ``""``)."""
    return [{"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": cursor}
            ] if cursor else []


def _raise(exc: Exception):
    """Raise ``exc`` (so that :meth:`LabelStudioProject.call` turns an error caught elsewhere)."""
    raise exc


class LabelStudioProject:
    """One project of a Label Studio server.

    Args:
        url: Label Studio's URL (``LABEL_STUDIO_URL``), e.g. ``http://localhost:8080``.
        api_key: a legacy token or a personal access token (``LABEL_STUDIO_API_KEY``).
        project_id: the project's id.
        timeout: seconds per HTTP call.

    Raises:
        ProjectNotFound: the project does not exist or the key cannot see it.
        LabelStudioError: Label Studio cannot be reached or refused the key.
    """

    def __init__(self, url: str, api_key: str, project_id: int, timeout: float = 120):
        self._full_url = url.rstrip("/")
        #: Label Studio's URL without a ``user:password@`` (it goes into messages, the state and the manifests).
        self.url = without_userinfo(self._full_url)
        self.project_id = project_id
        self.client = label_studio_client(self._full_url, api_key, timeout)
        project = self.call(self.client.projects.get, project_id)
        self.title = project.title
        self.label_config = project.label_config
        created = project.created_at
        if isinstance(created, str):
            created = datetime.fromisoformat(created.replace("Z", "+00:00"))
        #: Label Studio's identity of the project, ``<id>.<created_at in unix seconds>`` (as it names it to ML
        #: backends: ``MLApi._create_project_uid`` in ``label_studio/ml/api_connector.py``).
        self.key = f"{project_id}.{int(created.timestamp())}" if created else str(project_id)

    def __repr__(self) -> str:
        return f"LabelStudioProject({self.url!r}, {self.project_id})"

    def call(self, fn, *args, **kwargs):
        """Call an SDK method, turning its errors into :class:`LabelHubError` (no key in messages): a request httpx
        refuses to send (``LocalProtocolError``, an illegal header value) is said as such, not as Label Studio being
        unreachable (its message, which holds the header, is not shown); a URL httpx cannot read (``InvalidURL``,
        not an ``httpx.HTTPError``: a port that is no number) as the other connection errors, without httpx's
        reason when the URL has a ``user:password@`` (it quotes the "port" it read: the password, when the password
        holds a ``/``, ``?`` or ``#``).

        Raises:
            ProjectNotFound: Label Studio answered 404.
            LabelStudioError: Any other answer that is an error, a request not sent, no answer.
        """
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            if exc.status_code == 404:
                raise ProjectNotFound(f"Label Studio project {self.project_id} not found at {self.url}") from None
            if exc.status_code in (401, 403):
                detail = exc.body.get("detail") if isinstance(exc.body, dict) else None
                reason = one_line(detail or exc.body or "", 200).rstrip(".")
                raise LabelStudioError(f"Label Studio at {self.url} refused LABEL_STUDIO_API_KEY ({exc.status_code} "
                                       f"{reason}): {KEY_ADVICE}") from None
            raise LabelStudioError(f"Label Studio at {self.url} answered {exc.status_code}: "
                                   f"{api_error_text(exc.body, 500)}") from None
        except httpx.LocalProtocolError as exc:  # refused by httpx before sending: Label Studio was not asked
            raise LabelStudioError(f"cannot send a request to Label Studio at {self.url}: a header or the URL is not "
                                   f"valid HTTP ({type(exc).__name__}; check LABEL_STUDIO_API_KEY and "
                                   "--label-studio-url for a space or a line break)") from None
        except httpx.InvalidURL as exc:
            why = (str(exc) if self.url == self._full_url else
                   "its port is no number, or its user:password holds a /, ? or # (write them %2F, %3F and %23)")
            raise LabelStudioError(f"cannot reach Label Studio at {self.url} (--label-studio-url, LABEL_STUDIO_URL): "
                                   f"{type(exc).__name__}: {why}") from None
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"cannot reach Label Studio at {self.url} (--label-studio-url, LABEL_STUDIO_URL): "
                                   f"{type(exc).__name__}: {str(exc).replace(self._full_url, self.url)}") from None

    def prepare_import(self, tasks: Sequence[dict]) -> EncodedTasks:
        """``tasks`` with their import call's body encoded now (:class:`EncodedTasks`), so that
        :meth:`import_tasks` only sends it: the import ledger encodes the next batch while a call is in flight
        (JSON of 10,000 file tasks: about 50 ms that Label Studio would otherwise wait for between two calls).

        Raises:
            ValueError: as :func:`encode_tasks`.
        """
        return EncodedTasks(tasks)

    def import_tasks(self, tasks: Sequence[dict]) -> list[int]:
        """Import ``tasks`` (``[{"data": {...}}, ...]``) in one call; return their ids in order.

        Label Studio's import is one database transaction: all tasks are created or none.
        https://api.labelstud.io/api-reference/api-reference/projects/import-tasks

        The request body is :func:`encode_tasks`' (the JSON httpx would send), through the SDK's own HTTP client (its
        base URL, auth headers and timeout; no retry, see :meth:`_request_json`): the SDK's ``projects.import_tasks``
        first copies every payload through its ``jsonable_encoder``, 26 µs a task (0.26 s for 10,000, Label Studio
        idle meanwhile).

        Args:
            tasks: The payloads (JSON types; anything else is encoded as the SDK would), or the
                :class:`EncodedTasks` of :meth:`prepare_import` (its body is sent as it is).

        Returns:
            The created tasks' ids, in the order of ``tasks``.

        Raises:
            ProjectNotFound: the project is gone.
            LabelStudioError: Label Studio refused the call (the status and its answer in the message), cannot be
                reached, or created another number of tasks than sent.
        """
        body = tasks.body if isinstance(tasks, EncodedTasks) else encode_tasks(tasks)
        answer = self.call(self._request_json, "POST", f"api/projects/{self.project_id}/import", body,
                           params={"return_task_ids": True})
        ids = list(answer.get("task_ids") or [])
        if len(ids) != len(tasks):
            raise LabelStudioError(f"Label Studio created {len(ids)} tasks for {len(tasks)} sent")
        return ids

    def _request_json(self, method: str, path: str, body: bytes | None = None, params: dict | None = None) -> dict:
        """Send ``method`` to ``path`` (under the base URL) with the SDK's HTTP client, ``body`` as JSON; its answer's
        JSON object (``{}`` when it is not one). For the routes the SDK has no method for, or whose SDK method costs
        more than the call (:meth:`import_tasks`).

        Raises:
            label_studio_sdk.core.api_error.ApiError: a status outside 2xx (as the SDK's methods raise it).
            httpx.HTTPError: the call failed.
        """
        # The SDK's client wrapper (a private attribute of label-studio-sdk 2.1, which pyproject.toml pins) adds the
        # base URL, the auth header (exchanging a personal access token) and the timeout; never its retries
        # (NO_SDK_RETRY): the import ledger recovers a lost answer instead (labelhub.sync.ledger).
        response = self.client._client_wrapper.httpx_client.request(
            path, method=method, params=params, content=body,
            headers={"content-type": "application/json"} if body is not None else None,
            request_options=NO_SDK_RETRY)
        try:
            answer = response.json()
        except ValueError:
            answer = response.text
        if not 200 <= response.status_code < 300:
            raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=answer)
        return answer if isinstance(answer, dict) else {}

    def task_data(self, after_task_id: int = 0, before_task_id: int | None = None,
                  **where: str | None) -> list[tuple[int, dict]]:
        """``[(task_id, data)]`` of this project's tasks with an id above ``after_task_id`` whose data
        matches ``where`` (one paged Data Manager query, ``fields=task_only``).

        Args:
            after_task_id: Only tasks with a larger id (0: all).
            before_task_id: Only tasks with a smaller id (``None``: no bound): a caller skips ids it knows (its own
                tasks) with a query per gap between them, since listing a task costs Label Studio about 0.9 ms and a
                query that answers none about 30 ms (1.23, a project of 100,000 tasks).
            **where: ``key="value"``: ``data.key`` equals the value; ``key=None``: ``data.key`` is not empty.

        Returns:
            The tasks' ids and data, in Label Studio's order.

        Raises:
            LabelStudioError: Label Studio refused or cannot be reached, or the list moved under every reading
                (:meth:`_listing`: most likely another process creating tasks in the project, which the message
                says): the caller tries again later.
        """
        items = [{"filter": f"filter:tasks:data.{key}", "type": "String",
                  **({"operator": "empty", "value": False} if value is None else {"operator": "equal", "value": value})}
                 for key, value in where.items()]
        if after_task_id:
            items.append({"filter": "filter:tasks:id", "operator": "greater", "type": "Number",
                          "value": after_task_id})
        if before_task_id is not None:
            items.append({"filter": "filter:tasks:id", "operator": "less", "type": "Number",
                          "value": before_task_id})
        tasks, held_still, _ = self._listing(query=_filters(*items), fields="task_only", include="id,data")
        if not held_still:  # a task missing from the list would have its file imported again
            raise LabelStudioError(f"the tasks of project {self.project_id} kept changing while they were listed "
                                   f"({LISTING_ATTEMPTS} readings): another labelhub import-labels, sync or restore "
                                   "(or a user) may be creating or deleting tasks in it; nothing was lost, run this "
                                   "again once that is done (it continues where it stopped)")
        return [(task.id, task.data or {}) for task in tasks]

    def repo_file_tasks(self, repo_id: str, after_task_id: int = 0) -> list[tuple[int, str, str]]:
        """``[(task_id, hf_path, hf_revision)]`` of this project's tasks of ``repo_id``'s files (``data.hf_repo``,
        ``data.hf_path``: the sync's, and those of imports and restores) with an id above ``after_task_id``, for an
        import ledger's recovery and adoption (:meth:`labelhub.sync.ledger.ImportLedger.recover`).

        One Data Manager query, always (28 ms when no task answers it, with 100,000 tasks in the project).
        Decided: not skipped when Label Studio's project summary counts no task with ``hf_path``
        (``all_data_columns``): Label Studio updates that count by reading, adding and writing it back without a lock
        (``ProjectSummary.update_data_columns`` in ``label_studio/projects/models.py``), so an import into the
        project at the same time (a user's, another host's) can lose the sync's increment, and deletions can then
        bring it to 0 while the sync's tasks are there: a lost state would then adopt none of them and import their
        files again (found by an audit; the skip saved about 20 ms, at a new project's first cycle only).
        ``hf_revision`` is ``""`` when a task lacks it.

        Raises:
            LabelStudioError: as :meth:`task_data`.
        """
        return [(task_id, data["hf_path"], data.get("hf_revision", ""))
                for task_id, data in self.task_data(after_task_id, hf_repo=repo_id)
                if isinstance(data.get("hf_path"), str)]

    def other_repo_file_tasks(self, repo_id: str, limit: int = 5) -> list[tuple[str, int, str]]:
        """``[(hf_repo, task_id, hf_revision)]``: one file task (the lowest id) of each of up to ``limit`` sources
        other than ``repo_id`` that the project's tasks name in ``data.hf_repo`` (with an ``hf_path``), for telling
        whether another path of a local repository made tasks of its files (a move, a mount, a lost state:
        :func:`labelhub.sync.versions.restore_identity.other_paths`).

        One page-of-one query per source found, plus one (never skipped on the project summary's counts: see
        :meth:`repo_file_tasks`). Decided: ``limit`` sources at most, so that a project of many repos costs a few
        calls; a source past them is not seen.

        Raises:
            ProjectNotFound, LabelStudioError: As :meth:`call` turns a failed call.
        """
        found: list[tuple[str, int, str]] = []
        seen = [repo_id]
        while len(found) < limit:
            items = [{"filter": "filter:tasks:data.hf_path", "type": "String", "operator": "empty", "value": False},
                     {"filter": "filter:tasks:data.hf_repo", "type": "String", "operator": "empty", "value": False},
                     *({"filter": "filter:tasks:data.hf_repo", "type": "String", "operator": "not_equal",
                        "value": other} for other in seen)]
            _, first = self._total_and_first(_filters(*items, ordering=["tasks:id"]), "id,data")
            data = getattr(first, "data", None) or {}
            if not isinstance(data.get("hf_repo"), str) or data["hf_repo"] in seen:
                break
            found.append((data["hf_repo"], first.id, str(data.get("hf_revision") or "")))
            seen.append(data["hf_repo"])
        return found

    def _listing(self, attempts: int = LISTING_ATTEMPTS, convert: Callable | None = None, **params) -> Listing:
        """Every task of a paged ``GET /api/tasks`` query of this project, and whether the listing held still while it
        was read (:func:`labelhub.labelstudio_client.list_tasks`, which says how a list moves; ``attempts``
        readings at most).

        Returns:
            The :class:`~labelhub.labelstudio_client.Listing` ``(tasks, held_still, first_page)``: when it did not
            hold still, callers must not take a task's absence for a fact.

        Raises:
            ProjectNotFound, LabelStudioError: As :meth:`call` turns a failed call.
        """
        return list_tasks(self.client, self.call, attempts, convert, project=self.project_id,
                          page_size=TASK_PAGE_SIZE, **params)

    def task_ids(self) -> list[int] | None:
        """The ids of every task of the project (one paged query, ids only), or ``None`` when the project changed
        under every reading (:meth:`_listing`): a task missing from such a list may exist."""
        tasks, held_still, _ = self._listing(fields="task_only", include="id")
        return [task.id for task in tasks] if held_still else None

    def _task_call(self, task_id: int, fn, *args, **kwargs):
        """:meth:`call` for a call on task ``task_id`` (``/api/tasks/{id}``): its 404 is the task's, not the project's.

        Raises:
            TaskNotFound: the task is not in Label Studio (deleted).
            LabelStudioError, ProjectNotFound: as :meth:`call` turns other failures.
        """
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            if exc.status_code == 404:
                raise TaskNotFound(task_id, f"task {task_id} of Label Studio project {self.project_id} not found at "
                                            f"{self.url} (deleted)") from None
            return self.call(_raise, exc)

    def tasks_fields(self, task_ids: Sequence[int]) -> dict[int, tuple[dict, dict]]:
        """``{task_id: (data, meta)}`` of those of ``task_ids`` that the project has, read with a few paged Data
        Manager queries (:func:`labelhub.labelstudio_client.selected_items_queries`), not one ``GET`` a task: what
        :meth:`update_data` and :meth:`update_meta` merge their changes into. A task missing from the answer may be
        deleted, or the listing moved: ask it alone (``current=None``).

        Raises:
            ProjectNotFound, LabelStudioError: As :meth:`call` turns a failed call.
        """
        out: dict[int, tuple[dict, dict]] = {}
        for query in selected_items_queries(task_ids):
            tasks, _, _ = self._listing(1, query=query, fields="task_only")
            out.update({task.id: (task.data or {}, task.meta or {}) for task in tasks})
        return out

    def update_data(self, task_id: int, changes: dict, current: dict | None = None, drop: Collection[str] = ()
                    ) -> None:
        """Merge ``changes`` into the task's ``data``; its annotations and predictions stay
        (https://api.labelstud.io/api-reference/api-reference/tasks/update: ``data`` is replaced whole, hence the
        merge).

        Args:
            task_id: The task.
            changes: Keys of ``data`` to set.
            current: The task's ``data`` as just read (:meth:`tasks_fields`): one call, the update. ``None``: two
                calls, a read then the update.
            drop: Keys of ``data`` to remove, unless ``changes`` sets them (a metadata column the CSV no longer
                has for the task's file).

        Raises:
            TaskNotFound: the task was deleted in Label Studio.
            ProjectNotFound, LabelStudioError: as :meth:`call`.
        """
        if current is None:
            current = self._task_call(task_id, self.client.tasks.get, str(task_id)).data or {}
        data = {k: v for k, v in current.items() if k not in drop}
        self._task_call(task_id, self.client.tasks.update, str(task_id), data={**data, **changes})

    def update_meta(self, task_id: int, changes: dict, current: dict | None = None) -> None:
        """Merge ``changes`` into the task's ``meta`` (as :meth:`update_data` does ``data``; same arguments and
        errors)."""
        if current is None:
            current = self._task_call(task_id, self.client.tasks.get, str(task_id)).meta or {}
        self._task_call(task_id, self.client.tasks.update, str(task_id), meta={**current, **changes})

    def tasks_updated_since(self, cursor: str, on_page: Callable[[list[dict], bool], None],
                            annotated_only: bool = False) -> bool:
        """Pass every task of the project whose ``updated_at`` is after ``cursor`` (``YYYY-MM-DDTHH:MM:SS.ffffffZ``,
        ``""`` for all), with its annotations, as plain dicts, oldest first, to ``on_page`` a page at a time
        (:data:`~labelhub.labelstudio_client.TASK_PAGE_SIZE` tasks): a reading of 100,000 tasks holds one page of them,
        not the 898 MB the whole list took. Creating, updating and deleting an annotation all move its task's
        ``updated_at`` (Label Studio 1.23, verified).

        One reading ordered by ``updated_at``. When it moved (:meth:`_listing`: a task saved meanwhile went to its
        end and shifted a task past a page boundary, or a deletion did), the ids of the same selection are listed in
        id order, which a save cannot shift (a task only enters the selection), and the tasks the reading missed are
        read by id. A big first pass beside busy annotators thus costs one reading, an id listing and the few
        tasks missed.

        Args:
            cursor: The lower bound (exclusive), or ``""``.
            on_page: Called with ``(tasks, ordered)`` for each page as it comes in: ``ordered`` is ``True`` for the
                pages of the ordered reading, ``False`` for the tasks read by id after it.
            annotated_only: Only the tasks that have an annotation (with an annotator), as the Data Manager's
                ``annotators`` filter finds them: a join on the annotations themselves, not Label Studio's
                ``total_annotations`` counter, which concurrent saves can leave at 0 beside a live annotation.

        Returns:
            ``whole``: ``True`` when every task up to the newest ``updated_at`` of the ordered pages was passed, so a
            reader moves its cursor that far (the tasks read by id after them may be newer than tasks saved after the
            reading); ``False`` when even the id listing kept moving (deletions throughout): only the first ordered
            page is whole then.

        Raises:
            ProjectNotFound, LabelStudioError: As :meth:`call` turns a failed call (pages passed before stay passed).
        """
        items = _updated_after(cursor) + ([_ANNOTATED] if annotated_only else [])
        pages = _Pages(lambda tasks: on_page(tasks, True))
        _, held_still, _ = self._listing(1, convert=pages.add, query=_filters(*items, ordering=["tasks:updated_at"]),
                                         fields="all", include=ANNOTATED_TASK_INCLUDE)
        pages.flush()
        if held_still:
            return True
        ids, ids_held_still, _ = self._listing(query=_filters(*items, ordering=["tasks:id"]), fields="task_only",
                                               include="id")
        if not ids_held_still:
            return False
        missed = sorted({task.id for task in ids} - pages.ids)
        if missed:
            on_page(self._tasks_by_id(missed), False)
        return True

    def tasks_updated_count(self, cursor: str) -> tuple[int, str]:
        """``(how many tasks have an updated_at after cursor, the newest updated_at among them)`` (``(0, "")`` for
        none), one call: a page of one task in descending ``updated_at`` order, whose answer carries the count.
        ``cursor`` and the time are in Label Studio's filter format (``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``""``: all).

        Raises:
            ProjectNotFound, LabelStudioError: As :meth:`call` turns a failed call.
        """
        total, first = self._total_and_first(_filters(*_updated_after(cursor), ordering=["-tasks:updated_at"]), None)
        newest = first.updated_at if first is not None else None
        if isinstance(newest, datetime):
            newest = newest.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return total, (newest or "")

    def unannotated_task_ids_updated_since(self, cursor: str, max_id: int) -> list[int] | None:
        """The ids of the tasks with an id up to ``max_id`` and an ``updated_at`` after ``cursor`` that have no
        annotation (the ``annotators`` filter of :meth:`tasks_updated_since`), in id order (a paged query, ids only),
        or ``None`` when the listing moved under every reading: a task missing from it may be one.

        Raises:
            ProjectNotFound, LabelStudioError: As :meth:`call` turns a failed call.
        """
        items = [*_updated_after(cursor), {**_ANNOTATED, "value": True},
                 {"filter": "filter:tasks:id", "operator": "less", "type": "Number", "value": max_id + 1}]
        tasks, held_still, _ = self._listing(query=_filters(*items, ordering=["tasks:id"]), fields="task_only",
                                             include="id")
        return [task.id for task in tasks] if held_still else None

    def task_count_and_max_id(self) -> tuple[int, int]:
        """``(how many tasks the project has, the largest task id)`` (``(0, 0)`` for none): one call, a page of one
        task in descending id order, whose answer carries the count (``total``).

        Raises:
            ProjectNotFound, LabelStudioError: As :meth:`call` turns a failed call.
        """
        total, first = self._total_and_first(_filters(ordering=["-tasks:id"]), "id")
        return total, (first.id if first is not None else 0)

    def task_count_through(self, max_id: int) -> int:
        """How many tasks of the project have an id up to ``max_id`` (one call, as :meth:`task_count_and_max_id`).

        Raises:
            ProjectNotFound, LabelStudioError: As :meth:`call` turns a failed call.
        """
        return self._total_and_first(_filters({"filter": "filter:tasks:id", "operator": "less", "type": "Number",
                                               "value": max_id + 1}), "id")[0]

    def _total_and_first(self, query: str, include: str | None) -> tuple[int, Any]:
        """``(how many tasks the Data Manager ``query`` selects, its first task or None)``: one call, a page of one
        task (``fields="task_only"``, only the ``include`` fields when given), whose answer carries the count."""
        page = self.call(self.client.tasks.list, project=self.project_id, page_size=1, fields="task_only",
                         **({"include": include} if include else {}), query=query)
        items = page.items or []
        return int(getattr(page.response, "total", 0) or 0), (items[0] if items else None)

    def existing_task_ids(self, task_ids: Sequence[int]) -> set[int] | None:
        """Those of ``task_ids`` that the project has (ids only, a few paged queries:
        :func:`labelhub.labelstudio_client.selected_items_queries`), or ``None`` when a listing moved under its
        reading: a task missing from it may exist.

        Raises:
            ProjectNotFound, LabelStudioError: As :meth:`call` turns a failed call.
        """
        out: set[int] = set()
        for query in selected_items_queries(task_ids):
            tasks, held_still, _ = self._listing(query=query, fields="task_only", include="id")
            if not held_still:
                return None
            out.update(task.id for task in tasks)
        return out

    def tasks_by_id(self, ids: Sequence[int]) -> list[dict]:
        """The tasks of ``ids`` that exist, with their annotations, as plain dicts (a few paged queries).

        Raises:
            ProjectNotFound, LabelStudioError: As :meth:`call` turns a failed call.
        """
        return self._tasks_by_id(ids)

    def _tasks_by_id(self, ids: Sequence[int]) -> list[dict]:
        """The tasks of ``ids`` that exist, with their annotations, as plain dicts
        (:func:`labelhub.labelstudio_client.selected_items_queries`)."""
        out = []
        for query in selected_items_queries(ids):
            tasks, _, _ = self._listing(1, query=query, fields="all", include=ANNOTATED_TASK_INCLUDE)
            out += [task.dict() for task in tasks]
        return out

    def users(self) -> dict[int, str]:
        """``{user id: email}`` of the organization's users (annotators)."""
        return {user.id: user.email for user in self.call(self.client.users.list)}

    def ensure_webhook(self, url: str, headers: dict[str, str], actions: Sequence[str]) -> int:
        """Create (or update) the project's webhook to ``url`` with ``send_payload=True``.

        https://labelstud.io/guide/webhooks; returns the webhook id.
        """
        for hook in self.call(self.client.webhooks.list, project=str(self.project_id)):
            if hook.url == url and hook.project == self.project_id:
                self.call(self.client.webhooks.update, hook.id, url=url, headers=headers, actions=list(actions),
                          send_payload=True, send_for_all_actions=False, is_active=True)
                return hook.id
        hook = self.call(self.client.webhooks.create, url=url, project=self.project_id, headers=headers,
                         actions=list(actions), send_payload=True, send_for_all_actions=False, is_active=True)
        return hook.id


class _Pages:
    """A :func:`labelhub.labelstudio_client.list_tasks` ``convert`` that hands the tasks on as plain dicts a page
    (:data:`~labelhub.labelstudio_client.TASK_PAGE_SIZE`) at a time and keeps only their ids (``ids``): what the
    listing keeps of each task is a :class:`_Seen`, whose ``id`` tells whether the listing held still."""

    def __init__(self, on_page: Callable[[list[dict]], None]):
        self.on_page, self.ids, self._page = on_page, set(), []

    def add(self, task) -> "_Seen":
        self._page.append(task.dict())
        self.ids.add(task.id)
        if len(self._page) >= TASK_PAGE_SIZE:
            self.flush()
        return _Seen(task.id)

    def flush(self) -> None:
        """Hand on the tasks not handed on yet."""
        if self._page:
            page, self._page = self._page, []
            self.on_page(page)


class _Seen(NamedTuple):
    id: int
