"""Whether the project of a webhook event is one Label Studio has: :func:`check_project_exists`.

``/webhook`` and ``/train`` call it before anything of an event is stored. It asks Label Studio
(``GET /api/projects/<id>/``, https://api.labelstud.io/api-reference/api-reference/projects/get) from a per-process
:class:`ProjectChecker`, within :data:`PROJECT_CHECK_TIMEOUT` (Label Studio waits 1 s for a webhook's answer), and
refuses with :class:`UnknownProjectError` (404 ``unknown_project``) the events of a project Label Studio does not
have: its id answers 404, or Label Studio's project of that id was created at another time (another instance, or a
project deleted whose id was given again). A project the backend holds state of that Label Studio no longer has is
marked gone (:meth:`labelhub.backend.state.Store.mark_gone`). Anything else (Label Studio slow, down, refusing the
key) keeps the event.

Decision: the mark refuses events and hides versions (``/versions``) only. The trainer stores the events it took
before the mark without fitting (:meth:`labelhub.backend.events.Trainer.run_once`), and ``/setup`` and ``/predict``
answer for a project marked gone as for any: Label Studio calls them only for a project it shows to someone, while
the mark may come from a key that cannot see it (see :func:`check_project_exists`).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timezone

from labelhub.backend.errors import BackendError
from labelhub.redaction import one_line

log = logging.getLogger(__name__)

__all__ = ["check_project_exists", "mark_if_gone", "ProjectChecker", "project_checker", "warm_project_checker",
           "UnknownProjectError",
           "PROJECT_CHECK_TIMEOUT", "PROJECT_RECHECK_SECONDS"]


class UnknownProjectError(BackendError):
    """An event (``/webhook``, ``/train``) of a project Label Studio does not have (HTTP 404): its id answered 404,
    Label Studio's project of that id was created at another time, or the project was marked gone
    (:meth:`~labelhub.backend.state.Store.mark_gone`). Nothing is stored (see :func:`check_project_exists`); the
    check logged the refusal itself (once per worker and project), so the error handler's line is at DEBUG."""

    status = 404
    code = "unknown_project"
    logged = True


#: Seconds the check of a project waits for Label Studio, in all (the SDK's import and a personal access token's
#: refresh included): it runs inside the webhook's answer, which Label Studio waits 1 s for (``WEBHOOK_TIMEOUT``);
#: when it is slower the event is kept.
PROJECT_CHECK_TIMEOUT = 0.5
#: Seconds a project Label Studio confirmed stays confirmed in a worker; after them its next event asks again, so a
#: project deleted in Label Studio is noticed (and marked gone) at its first event after them.
PROJECT_RECHECK_SECONDS = 300.0

_warned_projects: set[str] = set()  # keys already warned about (one warning per process and project)
_gone_checked: dict[str, float] = {}  # key marked gone -> when this worker last asked Label Studio again (monotonic)
_checked_lock = threading.Lock()
_key_refusal_said = threading.Event()  # a refused LABEL_STUDIO_API_KEY was warned about (once per process)


class ProjectChecker:
    """Asks Label Studio for projects (``GET /api/projects/<id>/``, :meth:`LabelStudioClient.project`) from a thread
    pool, so that a caller waits at most what it chooses (:meth:`ask` returns a future), whatever the call costs.

    One per process and Label Studio (:func:`project_checker`): one client, made once, so label-studio-sdk's import
    (1.15 s measured on a fresh gunicorn worker) and a personal access token's refresh (the SDK keeps the access
    token until it expires) are paid once, in the background, from :meth:`warm` when the app is made; each call
    waits :data:`PROJECT_CHECK_TIMEOUT` at most (the client's timeout), so a thread is never held long. Projects
    Label Studio confirmed are remembered with the time (:meth:`confirmed`), also when the caller stopped waiting.

    Args:
        url: ``LABEL_STUDIO_URL``.
        api_key: ``LABEL_STUDIO_API_KEY`` (kept in memory, never shown).
    """

    def __init__(self, url: str, api_key: str):
        self._url, self._api_key = url, api_key
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="labelhub-project-check")
        self._client = None
        self._lock = threading.Lock()  # guards the two dicts (never held during a call)
        self._client_lock = threading.Lock()  # held while the client is made (label-studio-sdk's import)
        self._asking: dict[int, Future] = {}  # project id -> the call under way
        self._confirmed: dict[str, float] = {}  # key -> when Label Studio confirmed it (monotonic)

    def warm(self) -> None:
        """Make the client in the background (imports label-studio-sdk); a failure is left to the first call."""
        self._pool.submit(self._api)

    def _api(self):
        from labelhub.backend.labelstudio_api import LabelStudioClient

        with self._client_lock:
            if self._client is None:  # an expired token raises here each time (no call made): said by the caller
                self._client = LabelStudioClient(self._url, self._api_key, timeout=PROJECT_CHECK_TIMEOUT)
            return self._client

    def _project(self, project_id: int):
        info = self._api().project(project_id)
        now = time.monotonic()
        with self._lock:
            self._confirmed[info.key] = self._confirmed[str(project_id)] = now
        return info

    def ask(self, project_id: int) -> Future:
        """The project's :class:`~labelhub.backend.labelstudio_api.ProjectInfo`, as a future: it raises
        :class:`~labelhub.errors.ProjectNotFound` for Label Studio's 404, and
        :class:`~labelhub.errors.LabelStudioError` (``status``: 401/403 for a refused key, ``None`` for no answer)
        or :class:`~labelhub.errors.ConfigurationError` otherwise. A call under way for the id is shared."""
        with self._lock:
            future = self._asking.get(project_id)
            if future is None or future.done():
                future = self._asking[project_id] = self._pool.submit(self._project, project_id)
            return future

    def confirmed_at(self, key: str) -> float | None:
        """When Label Studio last confirmed project ``key`` (``time.monotonic()``), or ``None``."""
        with self._lock:
            return self._confirmed.get(key)

    def confirmed(self, key: str, within: float) -> bool:
        """Whether Label Studio confirmed project ``key`` (``<id>.<created_at>``, or a bare id) less than ``within``
        seconds ago."""
        with self._lock:
            at = self._confirmed.get(key)
        return at is not None and time.monotonic() - at < within


_checkers: dict[tuple[str, str], ProjectChecker] = {}
_checkers_pid: int | None = None


def project_checker(settings) -> ProjectChecker | None:
    """This process's :class:`ProjectChecker` of the backend's Label Studio, or ``None`` without ``LABEL_STUDIO_URL``
    and ``LABEL_STUDIO_API_KEY``. Made again in a forked process (its threads are not the parent's)."""
    global _checkers_pid
    if not (settings.label_studio_url and settings.label_studio_api_key):
        return None
    which = (settings.label_studio_url, settings.label_studio_api_key)
    with _checked_lock:
        if _checkers_pid != os.getpid():
            _checkers.clear()
            _checkers_pid = os.getpid()
        checker = _checkers.get(which)
        if checker is None:
            checker = _checkers[which] = ProjectChecker(*which)
        return checker


def warm_project_checker(state) -> None:
    """Start the project checker's client as the app is made (each gunicorn worker makes its own app), so that the
    first webhook does not wait for label-studio-sdk's import."""
    checker = project_checker(state.app.extensions["labelhub"].settings)
    if checker is not None:
        checker.warm()


def _created(key: str) -> str:
    """The creation time a key ``<id>.<seconds>`` names, ISO 8601 UTC (``2026-12-06T15:00:00+00:00``)."""
    return datetime.fromtimestamp(int(key.partition(".")[2]), timezone.utc).isoformat()


def _another_project(key: str, found: str) -> str | None:
    """Why Label Studio's project of ``key``'s id (its key ``found``) is not project ``key``: another creation time
    (another instance's project, or one deleted whose id was given again); ``None`` when it is (a bare id is)."""
    if "." not in key or found == key:
        return None
    return (f"Label Studio's project {found.partition('.')[0]} was created at {_created(found)}, this one at "
            f"{_created(key)}: another Label Studio's project, or one deleted since")


def check_project_exists(backend, key: str) -> None:
    """Refuse an event of a project that Label Studio does not have, before anything of it is stored.

    Label Studio is asked for the project (``GET /api/projects/<id>/``, :meth:`ProjectChecker.ask`) when the backend
    has ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` and the worker has no confirmation of the key younger than
    :data:`PROJECT_RECHECK_SECONDS`; the request waits :data:`PROJECT_CHECK_TIMEOUT` at most, in all. The project is
    missing when Label Studio answers 404 for its id, or (for a key ``<id>.<created_at>``) when its project of that id
    has another creation time: another instance's project, or one deleted whose id was given again. Both keys are
    made alike (``<id>.<whole Unix seconds>``, :func:`labelhub.backend.state.project_key_from_webhook` and
    :meth:`LabelStudioClient.project`, as ``MLApi._create_project_uid`` makes it), so ``Z`` or ``+00:00`` and
    fractions of a second do not matter. A bare id (a payload without ``created_at``) is checked by id only.

    A missing project the backend holds state of (connected with ``/setup``, or trained) is marked gone
    (:meth:`~labelhub.backend.state.Store.mark_gone`): its state is kept, and its later events are refused at once,
    without asking. A missing project without state gets nothing stored; a 404 of a key with ``created_at`` is final
    in the worker, a bare id is asked again. Each refused project is one warning per worker.

    Any other outcome keeps the event, so no event of a real project is lost: Label Studio slower than the timeout
    (the answer still lands: a confirmation serves the next event), down, or refusing the key (by Label Studio, or
    label-studio-sdk before any call: an expired personal access token; warned about once per process, never
    shown). Without the key every event is kept, as before. Label Studio sends each webhook once and only logs the
    answer, so a 404 there costs nothing; a direct caller learns why.

    Args:
        backend: The running backend (``settings``, ``store``).
        key: The event's project key (``<id>.<created_at>`` or ``<id>``).

    Raises:
        UnknownProjectError: Label Studio does not have the project, or it was marked gone.
    """
    from labelhub.backend.state import project_id_of
    from labelhub.errors import LabelHubError, ProjectNotFound

    store, project_id = backend.store, project_id_of(key)
    gone = store.gone(key)
    checker = project_checker(backend.settings)
    if gone and checker is not None and _confirmed_since_recheck(checker, key):  # a recheck's late answer landed
        _unmark(store, key)
        return
    if gone and (checker is None or not _gone_recheck_due(key)):
        _refuse_gone(store, key, gone)
    if checker is None or (not gone and checker.confirmed(key, PROJECT_RECHECK_SECONDS)):
        return
    known = store.has_project(key)
    if not known and "." in key and key in _warned_projects:
        # a 404 of a key with its creation time is final (that project never comes to exist): not asked again
        _refuse(key, project_id, f"Label Studio answered 404 for project {project_id} before")
    try:
        info = checker.ask(project_id).result(timeout=PROJECT_CHECK_TIMEOUT)
    except FutureTimeout:
        if gone:  # still gone until Label Studio says otherwise
            _refuse_gone(store, key, gone)
        log.debug("project %s: Label Studio did not answer within %.1f s; the event is kept", key,
                  PROJECT_CHECK_TIMEOUT)
        return
    except ProjectNotFound:
        why = f"Label Studio answered 404 for project {project_id}"
    except (LabelHubError, ValueError) as exc:  # Label Studio down, or refusing the key: keep the event
        if getattr(exc, "status", None) in (401, 403):
            with _checked_lock:
                first = not _key_refusal_said.is_set()
                _key_refusal_said.set()
            if first:
                log.warning("cannot check whether the projects of webhook events exist (%s); their events are "
                            "kept", one_line(exc, 400))
        if gone:
            _refuse_gone(store, key, gone)
        return
    else:
        why = _another_project(key, info.key)
        if why is None:
            if gone:  # Label Studio shows it again (a key that could not see it was replaced): events are taken again
                _unmark(store, key)
            return
    if gone:
        _refuse(key, project_id, f"{why} (marked gone since {gone.get('at')}); its state stays in {store.where(key)}",
                gone=True)
    if known:
        store.mark_gone(key, why)
        with _checked_lock:
            _gone_checked[key] = time.monotonic()  # just asked: the next event of it is refused without asking
        _refuse(key, project_id, f"{why}; marked gone: its later events are refused and /versions lists none of its "
                f"versions; its state stays in {store.where(key)} (delete it to remove it)", gone=True)
    _refuse(key, project_id, why)


def _unmark(store, key: str) -> None:
    """Take back the gone mark of project ``key``, which Label Studio shows again with the same key (a key that could
    not see it was replaced; the confirmation may be the late answer of a check that timed out), saying so."""
    store.unmark_gone(key)
    log.warning("project %s: Label Studio has it again; it is no longer marked gone (the events refused meanwhile are "
                "not stored: Start training in its Settings → Model reads them)", key)


def _confirmed_since_recheck(checker: ProjectChecker, key: str) -> bool:
    """Whether Label Studio confirmed project ``key`` (marked gone) after this worker last asked about it: the answer
    of a recheck that came after the event stopped waiting (:data:`PROJECT_CHECK_TIMEOUT`). A confirmation from before
    the mark does not count (the project may have been deleted since)."""
    with _checked_lock:
        asked = _gone_checked.get(key)
    at = checker.confirmed_at(key)
    return asked is not None and at is not None and at > asked


def _gone_recheck_due(key: str) -> bool:
    """Whether a project marked gone is asked again now: once per worker every :data:`PROJECT_RECHECK_SECONDS` (a
    mark left by a key that could not see the project is taken back when Label Studio shows it again)."""
    now = time.monotonic()
    with _checked_lock:
        if now - _gone_checked.get(key, -float("inf")) < PROJECT_RECHECK_SECONDS:
            return False
        _gone_checked[key] = now
        return True


def _refuse_gone(store, key: str, gone: dict) -> None:
    """Refuse an event of project ``key``, which carries the mark ``gone`` (:meth:`labelhub.backend.state.Store.gone`) still."""
    from labelhub.backend.state import project_id_of

    _refuse(key, project_id_of(key), f"it is gone from Label Studio since {gone.get('at')} ({gone.get('why')}); its "
            f"state stays in {store.where(key)}", gone=True)


def _refuse(key: str, project_id: int, why: str, gone: bool = False) -> None:
    """Raise the refusal of an event of project ``key``, after one warning per worker and key (later ones at DEBUG).

    Raises:
        UnknownProjectError: Always.
    """
    with _checked_lock:
        first = key not in _warned_projects
        _warned_projects.add(key)
    log.log(logging.WARNING if first else logging.DEBUG, "events of project %s refused: %s; nothing of them is stored",
            key, why)
    what = "is gone from Label Studio" if gone else "does not exist in Label Studio"
    raise UnknownProjectError(f"project {project_id} {what} (key {key}): the event is not stored", project=project_id)


def mark_if_gone(store, api, key: str) -> None:
    """After a prediction job's 404 (an automatic job on the trainer's host or on a ``labelhub worker``): mark project
    ``key`` gone (:meth:`labelhub.backend.state.Store.mark_gone`) when Label Studio has no project of its id, or one
    made at another time (the 404 may have been a task's, or the model's in ``MODEL_DIR``: so it is asked,
    ``GET /api/projects/<id>/``). Its later events are then refused and ``/versions`` lists none of its versions (and
    taken back when Label Studio shows it again: :func:`check_project_exists`). Any other failure marks nothing; a
    store that cannot be written is logged, not raised.

    Args:
        store: The backend's store (``MODEL_DIR`` or Redis).
        api: A :class:`~labelhub.backend.labelstudio_api.LabelStudioClient`.
        key: The project key ``<id>.<created_at>``.
    """
    from redis.exceptions import RedisError

    from labelhub.backend.state import project_id_of
    from labelhub.errors import ProjectNotFound

    project_id = project_id_of(key)
    try:
        info = api.project(project_id)
    except ProjectNotFound:
        why = f"Label Studio answered 404 for project {project_id}"
    except Exception as exc:  # noqa: BLE001 (Label Studio down: the next check of the webhook says)
        log.debug("project %s: cannot ask Label Studio whether it still has it: %s", key, one_line(exc, 200))
        return
    else:
        why = _another_project(key, info.key)
        if why is None:
            return
    try:
        store.mark_gone(key, why)
    except (OSError, RedisError) as exc:
        log.warning("project %s: cannot mark it gone: %s", key, one_line(exc, 200))
        return
    log.warning("project %s is gone from Label Studio (%s): marked gone, its later events are refused and /versions "
                "lists none of its versions; its state stays in %s (delete it to remove it)", key, why,
                store.where(key))
