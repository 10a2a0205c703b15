"""Per-project model state on disk, shared by every gunicorn worker and kept across restarts.

Layout under ``MODEL_DIR``::

    projects/<project>/project.json      label config and project id (written by /setup, /predict); ``gone``
                                         when Label Studio no longer has the project (:meth:`Store.mark_gone`)
    projects/<project>/kv.json           the model's key-value state: model_version, its files, ...
    projects/<project>/annotations.json  the annotations applied from webhook events (training data)
    projects/<project>/files/            model artifacts (e.g. the fitted linear head)
    projects/<project>/.lock             flock(2) lock of the writers (:func:`labelhub.locks.file_lock`)
    events/pending/*.json                the durable event queue (:mod:`labelhub.backend.events`)

``<project>`` is Label Studio's project key ``"<id>.<created_at as unix seconds>"`` (see
``MLApi._create_project_uid`` in ``label_studio/ml/api_connector.py``), so a re-created project with a
reused id gets fresh state.

With ``LABELHUB_REDIS_URL`` the same interface is served from Redis by
:class:`labelhub.backend.redis_state.RedisStore` (several hosts), and ``MODEL_DIR`` is each host's cache.

Every file is replaced atomically (write to a temporary file, ``fsync``, ``os.replace``), so a reader
sees the old or the new version, never half of one. Readers notice a change by ``stat`` (inode and
mtime), which costs microseconds, so no worker answers with a stale ``model_version``.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from labelhub.backend.errors import InvalidPayloadError
from labelhub.errors import LabelHubError
from labelhub.locks import file_lock
from labelhub.redaction import one_line

__all__ = ["LISTED_VERSIONS", "atomic_write_bytes", "atomic_write_json", "DamagedStateFile", "ProjectState", "Store",
           "project_key", "project_key_from_webhook", "project_id_of"]

_PROJECT_KEY = re.compile(r"^[0-9]{1,18}(\.[0-9]{1,18})?$")


#: How many versions a project's state lists (``versions``, what ``/versions`` answers), the newest kept: each fit
#: adds its version (:meth:`labelhub.backend.models.project.ProjectModel.fit_batch`), and so does a change of Extra
#: params that moves the served one (:class:`labelhub.backend.events.Trainer` on ``PARAMS_CHANGED``).
LISTED_VERSIONS = 50


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Args:
        path: The destination; its directory is created if missing.
        data: The full new content.

    Raises:
        OSError: When the disk is full or not writable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as JSON, atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, json.dumps(obj, separators=(",", ":"), sort_keys=True).encode())


def project_id_of(key: str) -> int:
    """The Label Studio project id of a project key ``"<id>.<created_at>"`` (or a bare ``"<id>"``)."""
    return int(str(key).split(".")[0])


def project_key(value: Any) -> str:
    """Validate Label Studio's project key from ``/setup`` or ``/predict``.

    Args:
        value: ``"<id>.<created_at unix seconds>"`` (``MLApi._create_project_uid``), or a bare id.

    Returns:
        The key as a string, safe as a directory name.

    Raises:
        InvalidPayloadError: When it is missing or not of that shape.
    """
    key = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not _PROJECT_KEY.match(key):
        raise InvalidPayloadError(
            "'project' must be Label Studio's project key '<id>.<created_at>' (e.g. '3.1718000000')",
            field="project")
    return key


def project_key_from_webhook(project: Any) -> str | None:
    """The project key of a webhook payload's ``project`` object.

    Webhook payloads carry the serialized project (``ProjectWebhookSerializer`` in
    ``label_studio/webhooks/serializers_for_hooks.py``) with ``id`` and ``created_at`` (ISO 8601); the
    key is built the way ``MLApi._create_project_uid`` builds it.

    Args:
        project: The ``project`` field of the payload (a dict, or an id).

    Returns:
        ``"<id>.<seconds>"``, ``"<id>"`` when ``created_at`` is missing or unreadable, or ``None``
        when there is no usable id.
    """
    if isinstance(project, dict):
        pid, created = project.get("id"), project.get("created_at")
    else:
        pid, created = project, None
    if isinstance(pid, bool) or not isinstance(pid, (int, str)) or not str(pid).isdigit():
        return None
    if isinstance(created, str):
        try:
            return f"{pid}.{int(datetime.fromisoformat(created).timestamp())}"
        except ValueError:
            pass
    return str(pid)


class DamagedStateFile(LabelHubError, ValueError):
    """A project's state file that does not parse (:meth:`ProjectState.load_annotations`): the message names the
    file, why, and what to do.

    Decided: the file is not moved aside nor replaced by the backend: it may be the only copy of annotations that
    Label Studio no longer holds (Label Studio keeps its own, and "Start training" reads them back). Moved aside by
    hand, the project's queued events (a Start training pressed meanwhile too) apply at the trainer's next try, a
    few seconds at most (:class:`labelhub.backend.events.Trainer`).

    Args:
        path: The file.
        why: Why it does not parse, one line (the parser's message: a position, never the file's content).
    """

    def __init__(self, path: Path, why: str):
        self.path = Path(path)
        super().__init__(f"{self.path} does not parse ({one_line(why, 200)}): move it aside (rename it) and press "
                         "Start training (Settings > Model, the model's menu): the project's queued events then apply, "
                         "and with LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY set its annotations are read back from "
                         "Label Studio")


class _CachedJson:
    """A JSON file read again only when its inode, size or mtime changed."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple | None = None
        self._value: Any = None
        self._lock = threading.Lock()

    def read(self, default: Any) -> Any:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return default
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._value = json.loads(self.path.read_bytes())
                except (FileNotFoundError, ValueError):
                    return default
                self._stamp = stamp
            return self._value


class ProjectState:
    """The on-disk state of one project (see the module docstring for the layout).

    Args:
        root: ``MODEL_DIR/projects/<project key>``.
        key: The project key.
    """

    def __init__(self, root: Path, key: str):
        self.root = Path(root)
        self.key = key
        self.files = self.root / "files"
        self._project = _CachedJson(self.root / "project.json")
        self._kv = _CachedJson(self.root / "kv.json")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the project's writer lock (inter-process, see :func:`file_lock`)."""
        with file_lock(self.root / ".lock"):
            yield

    # project.json -------------------------------------------------------------------------------
    def project(self) -> dict:
        """The stored project info: ``{"key", "label_config", ...}`` or ``{}``."""
        return self._project.read({})

    def update_project(self, **fields: Any) -> dict:
        """Merge ``fields`` into ``project.json`` (under the lock; written only if changed).

        Returns:
            The new project info.
        """
        current = self.project()
        if all(current.get(k) == v for k, v in fields.items()):
            return current
        with self.lock():
            current = dict(self.project())
            current.update(fields, key=self.key)
            self._write_project(current)
        return current

    def _write_project(self, info: dict) -> None:
        """Store the whole project info (callers hold :meth:`lock`)."""
        atomic_write_json(self.root / "project.json", info)

    # kv.json --------------------------------------------------------------------------------------
    def kv(self) -> dict:
        """The model's key-value state (read again only when the file changed)."""
        return self._kv.read({})

    def kv_stamp(self) -> tuple | None:
        """A value that changes whenever ``kv.json`` is replaced (``None`` before the first write)."""
        try:
            st = os.stat(self.root / "kv.json")
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def update_kv(self, **fields: Any) -> dict:
        """Merge ``fields`` into ``kv.json`` under the project lock; a ``None`` value deletes a key.

        Returns:
            The new state.
        """
        with self.lock():
            current = dict(self.kv())
            for k, v in fields.items():
                if v is None:
                    current.pop(k, None)
                else:
                    current[k] = v
            self._write_kv(current)
        return current

    def _write_kv(self, kv: dict) -> None:
        """Store the whole key-value state (callers hold :meth:`lock`)."""
        atomic_write_json(self.root / "kv.json", kv)

    # annotations.json -----------------------------------------------------------------------------
    def load_annotations(self) -> dict:
        """The training data: ``{"annotations": {id: {...}}, "tombstones": {id: time}, "tasks": {id: data}}``, and
        ``"cancelled": {id: {"task", "updated_at"}}`` once an annotation was cancelled (its cancel's time, which orders
        the events of it that arrive late: :mod:`labelhub.backend.events`). A missing file is no training data yet.

        Raises:
            DamagedStateFile: ``annotations.json`` does not parse, or is not a JSON object (cut short by a copy, a
                restore or a disk fault: the backend itself writes it atomically); the message names the file and
                what to do. The trainer keeps the project's events queued meanwhile.
            OSError: It cannot be read.
        """
        path = self.root / "annotations.json"
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            data = {}
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise DamagedStateFile(path, f"{type(exc).__name__}: {exc}") from None
        if not isinstance(data, dict):
            raise DamagedStateFile(path, f"a JSON {type(data).__name__}, not an object")
        data.setdefault("annotations", {})
        data.setdefault("tombstones", {})
        data.setdefault("tasks", {})
        return data

    def save_annotations(self, data: dict, fence: Any = None) -> bool:
        """Replace the training data atomically (callers hold :meth:`lock`); returns ``True``.

        Args:
            data: The training data (:meth:`load_annotations`).
            fence: The trainer's lease; on one host its file lock holds for the process's life, so it is not asked
                (:class:`~labelhub.backend.redis_state.RedisProjectState` writes only while it is held).
        """
        atomic_write_json(self.root / "annotations.json", data)
        return True

    # files/ ---------------------------------------------------------------------------------------------
    def write_file(self, name: str, data: bytes) -> None:
        """Store a model file (e.g. a fitted head) as ``files/<name>``, atomically.

        Raises:
            OSError: When the disk is full or not writable.
        """
        atomic_write_bytes(self.files / name, data)

    def read_file(self, name: str) -> bytes:
        """A model file's bytes.

        Raises:
            FileNotFoundError: When there is none of that name.
        """
        return (self.files / name).read_bytes()

    def file_names(self, prefix: str = "") -> list[str]:
        """The names (relative to ``files/``) of the model files starting with ``prefix``."""
        directory = (self.files / prefix).parent
        try:
            names = [str(p.relative_to(self.files)) for p in directory.iterdir() if p.is_file()]
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.startswith(prefix))

    def delete_files(self, names: list[str]) -> None:
        """Forget model files (a missing one is no error)."""
        for name in names:
            (self.files / name).unlink(missing_ok=True)


class Store:
    """All projects' state under ``MODEL_DIR``.

    Args:
        model_dir: The ``MODEL_DIR`` directory (created if missing).
    """

    def __init__(self, model_dir: Path):
        self.root = Path(model_dir)
        (self.root / "projects").mkdir(parents=True, exist_ok=True)
        self._projects: dict[str, ProjectState] = {}
        self._lock = threading.Lock()

    def project(self, key: str) -> ProjectState:
        """The :class:`ProjectState` of ``key`` (one object per key and process).

        Raises:
            InvalidPayloadError: When ``key`` is not a valid project key.
        """
        key = project_key(key)
        with self._lock:
            state = self._projects.get(key)
            if state is None:
                state = self._projects[key] = self._new_state(key)
            return state

    def _new_state(self, key: str) -> ProjectState:
        """A new state object of project ``key`` (the Redis store makes its own kind)."""
        return ProjectState(self.root / "projects" / key, key)

    def resolve_webhook_project(self, project: Any) -> str | None:
        """The key of a webhook payload's project, matching a known project when ``created_at`` is absent.

        Args:
            project: The payload's ``project`` field.

        Returns:
            The project key, or ``None`` when the payload names no project.
        """
        key = project_key_from_webhook(project)
        if key is None or "." in key:
            return key
        known = sorted((k for k in self.known_projects() if k.startswith(f"{key}.")), reverse=True)
        return known[0] if known else key

    def known_projects(self) -> list[str]:
        """The keys of every project with state on disk."""
        return sorted(p.name for p in (self.root / "projects").iterdir() if _PROJECT_KEY.match(p.name))

    def has_project(self, key: str) -> bool:
        """Whether there is state of project ``key`` (it was connected, or trained)."""
        return (self.root / "projects" / key).is_dir()

    def gone(self, key: str) -> dict | None:
        """The mark :meth:`mark_gone` left on project ``key``: ``{"at": ISO 8601 UTC, "why": one line}``, or
        ``None`` (not marked, or no state of it)."""
        if not self.has_project(key):
            return None
        mark = self.project(key).project().get("gone")
        return mark if isinstance(mark, dict) else None

    def mark_gone(self, key: str, why: str) -> None:
        """Mark project ``key`` as gone from Label Studio (``gone`` in its project info, beside its label config),
        keeping every other part of its state: its events are refused and ``/versions`` lists none of its versions
        (:func:`labelhub.backend.project_check.check_project_exists`). Nothing is written for a project without state.

        Decision: the mark is taken back (:meth:`unmark_gone`) only when Label Studio shows the project again with
        the same key: a deleted project never comes back, but Label Studio also answers 404 for a project the backend's
        ``LABEL_STUDIO_API_KEY`` cannot see (another organization's), which a new key mends. Deleting the state
        (:meth:`where`) removes the mark too.

        Args:
            key: The project key.
            why: Why, one line without secrets (e.g. "Label Studio answered 404 for project 2").

        Raises:
            OSError: When the disk is full or not writable (``RedisError`` with Redis).
        """
        if self.has_project(key) and not self.gone(key):
            at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.project(key).update_project(gone={"at": at, "why": why})

    def unmark_gone(self, key: str) -> None:
        """Take back :meth:`mark_gone`'s mark of project ``key`` (Label Studio has the project again: see there).

        Raises:
            OSError: When the disk is full or not writable (``RedisError`` with Redis).
        """
        if self.gone(key):
            self.project(key).update_project(gone=None)

    def where(self, key: str) -> str:
        """Where project ``key``'s state lives, for a log line that says what to delete to remove it."""
        return str(self.root / "projects" / key)

    @contextmanager
    def job_lock(self, key: str) -> Iterator[bool]:
        """Held while a prediction job of project ``key`` runs on this host: ``MODEL_DIR/jobs/<key>.lock``
        (:func:`labelhub.locks.file_lock`, non-blocking: yields ``False`` when another job holds it)."""
        with file_lock(self.root / "jobs" / f"{key}.lock", blocking=False) as held:
            yield held

    def save_job_status(self, key: str, status: dict) -> None:
        """Publish a job's status beyond ``MODEL_DIR/jobs`` (nothing to do on one host: ``/health`` reads the files)."""
