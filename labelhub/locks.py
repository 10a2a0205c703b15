"""One inter-process lock, :func:`file_lock`, on ``filelock`` (``flock(2)`` on Unix): the backend's trainer
election and state writers, one ``labelhub sync`` per project and state, and the one-time installs of a local
Label Studio; and :func:`project_lock`, one writer of a Label Studio project per host whatever its ``--state``.
"""
from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["file_lock", "project_lock", "ProjectLocked", "LOCK_POLL_INTERVAL"]


# Recent filelock versions fall back to a lock *file* (which outlives a crashed holder) on filesystems
# without flock(2); the trainer election needs the lock to die with its holder, so fail there instead.
_NO_SOFT_FALLBACK = ({"fallback_to_soft": False}
                     if "fallback_to_soft" in inspect.signature(FileLock.__init__).parameters else {})
#: Seconds between two attempts of a blocking :func:`file_lock` (filelock polls a non-blocking flock).
LOCK_POLL_INTERVAL = 0.01


@contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing): ``filelock.FileLock``, ``flock(2)`` on Unix.

    The lock is released when the block ends or the process dies (the kernel drops a dead process's
    ``flock``), so a crashed worker never leaves it held and the trainer election
    (:class:`labelhub.backend.events.Trainer`) passes to another worker. Two threads of one process
    exclude each other too: each call makes its own ``FileLock``, which opens its own file description.
    See https://py-filelock.readthedocs.io/.

    Args:
        path: The lock file (left in place after release).
        blocking: Wait for the lock (default); with ``False``, yield ``False`` at once if it is held.

    Yields:
        ``True`` when the lock is held, ``False`` (non-blocking only) when another holder has it.

    Raises:
        OSError: When the lock file cannot be created (never reported as held) or the filesystem has no ``flock(2)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, **_NO_SOFT_FALLBACK)
    try:
        lock.acquire(blocking=blocking, poll_interval=LOCK_POLL_INTERVAL)
    except Timeout:  # blocking=False and another holder has it, or the file cannot be made
        if not path.exists():  # filelock takes a failed create in an existing folder for contention (/proc/x)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))  # raises the OSError that says why
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


class ProjectLocked(Exception):
    """Another process of this host holds :func:`project_lock` of the project; ``holder`` is what it wrote
    (its ``--state``), ``""`` when it wrote nothing yet."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def project_lock_path(label_studio_url: str, project_key: str | int) -> Path:
    """The host-wide lock file of a Label Studio project: ``<cache>/locks/project-<sha256[:16]>.lock`` under
    :func:`labelhub.cache.cache_root` (``$LABELHUB_CACHE``, default ``~/.cache/labelhub``).

    Args:
        label_studio_url: Label Studio's URL; used only when ``project_key`` is a bare id.
        project_key: Label Studio's identity of the project, ``<id>.<created_at in unix seconds>`` (as it names it to
            ML backends, :attr:`labelhub.sync.labelstudio.project.LabelStudioProject.key`), or the bare id when
            Label Studio gives no creation time.

    Decided: the hash is of the key alone, not of the URL, so the same Label Studio reached as ``localhost`` and as
    ``127.0.0.1`` (or through a proxy) is one project (a walkthrough ran a second writer that way). Projects of two
    Label Studio servers share a lock only when they have the same id and were created in the same second: the
    second is refused for no reason, never let in beside the first. A bare id falls back to the URL (a trailing
    ``/`` and a ``user:password@`` dropped) and the id.
    """
    from labelhub.cache import cache_root
    from labelhub.redaction import without_userinfo

    key = str(project_key)
    if "." not in key:
        key = f"{without_userinfo(label_studio_url.rstrip('/'))}#{int(key)}"
    return cache_root() / "locks" / f"project-{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock"


@contextmanager
def project_lock(label_studio_url: str, project_key: str | int, holder: str) -> Iterator[None]:
    """Hold the host-wide lock of Label Studio project ``project_key`` (``<id>.<created_at>``, or a bare id) of
    ``label_studio_url`` (:func:`file_lock`, non-blocking, on :func:`project_lock_path`), writing ``holder`` (the caller's ``--state``) beside it
    (``<lock>.holder``) for a refused process to name.

    Decided: the per-state lock (``<state>.<project>.lock``) cannot see a second ``--state`` of the same project (a
    cron ``labelhub sync --once`` started in another folder): two writers of one project then each import what their
    own ledger lacks (a task deleted in Label Studio made again) and export the same annotations. One host, one
    writer per project; two hosts (or two cache folders) are not seen (the README: "A second state").

    Raises:
        ProjectLocked: another process of this host holds it (``holder``: what it wrote).
        OSError: the lock file cannot be created.
    """
    path = project_lock_path(label_studio_url, project_key)
    note = path.with_name(path.name + ".holder")
    with file_lock(path, blocking=False) as held:
        if not held:
            try:
                other = note.read_text().strip()
            except OSError:
                other = ""
            raise ProjectLocked(other)
        note.write_text(holder + "\n")
        yield
