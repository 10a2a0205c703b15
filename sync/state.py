"""The sync state: one SQLite file (``--state``, default ``.labelhub/sync.sqlite3``).

Tables:

- ``tasks``: which Label Studio task each repo file became (``project_id, repo_id, hf_path`` →
  ``task_id``), and ``removed_in``, the commit sha where the file left the repo (``NULL`` while it
  is there).
- ``pending_imports``: the files of an import call under way. Rows are written *before* the call
  and moved to ``tasks`` after it; rows left by a crash are reconciled with Label Studio before
  anything is imported again (:mod:`sync.importer`), so a file never becomes two tasks.
- ``heads``: the commit sha last synced per ``(project_id, repo_id, revision)``; a poll that finds
  the same sha does nothing else.

Every write is one transaction (WAL mode), so a SIGKILL leaves the state as it was before the write
or after it.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    project_id INTEGER NOT NULL, repo_id TEXT NOT NULL, hf_path TEXT NOT NULL,
    task_id INTEGER NOT NULL, hf_revision TEXT NOT NULL, removed_in TEXT,
    PRIMARY KEY (project_id, repo_id, hf_path));
CREATE TABLE IF NOT EXISTS pending_imports (
    project_id INTEGER NOT NULL, repo_id TEXT NOT NULL, hf_path TEXT NOT NULL,
    after_task_id INTEGER NOT NULL,
    PRIMARY KEY (project_id, repo_id, hf_path));
CREATE TABLE IF NOT EXISTS heads (
    project_id INTEGER NOT NULL, repo_id TEXT NOT NULL, revision TEXT NOT NULL, sha TEXT NOT NULL,
    PRIMARY KEY (project_id, repo_id, revision));
"""


class SyncState:
    """The state of one sync (one Label Studio project, one repo).

    Args:
        path: the SQLite file (created with its parent folder when missing).
        project_id: the Label Studio project id.
        repo_id: the repo's ``repo_id`` (or a local repo's path).
    """

    def __init__(self, path: str | Path, project_id: int, repo_id: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.key = (project_id, repo_id)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def _write(self, sql: str, rows: Iterable[tuple]) -> None:
        with self.db:  # one transaction
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(sql, rows)

    # heads
    def head(self, revision: str) -> str | None:
        """The commit sha last synced for ``revision`` (``None`` before the first sync)."""
        row = self.db.execute("SELECT sha FROM heads WHERE project_id=? AND repo_id=? AND revision=?",
                              (*self.key, revision)).fetchone()
        return row[0] if row else None

    def set_head(self, revision: str, sha: str) -> None:
        """Record that ``revision`` was synced at commit ``sha``."""
        self._write("INSERT OR REPLACE INTO heads VALUES (?, ?, ?, ?)", [(*self.key, revision, sha)])

    # tasks
    def task_count(self) -> int:
        """How many files have a task (removed ones included)."""
        return self.db.execute("SELECT count(*) FROM tasks WHERE project_id=? AND repo_id=?",
                               self.key).fetchone()[0]

    def known_paths(self) -> dict[str, str | None]:
        """``{hf_path: removed_in}`` of every file that has a task."""
        return dict(self.db.execute("SELECT hf_path, removed_in FROM tasks WHERE project_id=? AND repo_id=?",
                                    self.key))

    def task_ids(self, paths: Iterable[str]) -> dict[str, int]:
        """``{hf_path: task_id}`` for those of ``paths`` that have a task."""
        wanted = set(paths)
        rows = self.db.execute("SELECT hf_path, task_id FROM tasks WHERE project_id=? AND repo_id=?", self.key)
        return {path: task_id for path, task_id in rows if path in wanted}

    def max_task_id(self) -> int:
        """The largest Label Studio task id recorded for this project (0 when none)."""
        row = self.db.execute("SELECT max(task_id) FROM tasks WHERE project_id=?", self.key[:1]).fetchone()
        return row[0] or 0

    def add_tasks(self, rows: Iterable[tuple[str, int, str]]) -> None:
        """Record ``(hf_path, task_id, hf_revision)`` rows and clear their pending imports."""
        rows = list(rows)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, NULL)",
                                [(*self.key, path, task_id, rev) for path, task_id, rev in rows])
            self.db.executemany("DELETE FROM pending_imports WHERE project_id=? AND repo_id=? AND hf_path=?",
                                [(*self.key, path) for path, _, _ in rows])

    def set_removed(self, paths: Iterable[str], removed_in: str | None) -> None:
        """Mark files as removed at commit ``removed_in`` (``None``: back in the repo)."""
        self._write("UPDATE tasks SET removed_in=? WHERE project_id=? AND repo_id=? AND hf_path=?",
                    [(removed_in, *self.key, path) for path in paths])

    # pending imports
    def begin_import(self, paths: Iterable[str], after_task_id: int) -> None:
        """Record that ``paths`` are about to be imported; every task made for them will have an
        id greater than ``after_task_id``."""
        self._write("INSERT OR REPLACE INTO pending_imports VALUES (?, ?, ?, ?)",
                    [(*self.key, path, after_task_id) for path in paths])

    def pending(self) -> tuple[list[str], int]:
        """``(paths, after_task_id)`` of imports a crash left unfinished (``([], 0)`` when none)."""
        rows = self.db.execute("SELECT hf_path, after_task_id FROM pending_imports WHERE project_id=? AND repo_id=?",
                               self.key).fetchall()
        return [r[0] for r in rows], min((r[1] for r in rows), default=0)

    def clear_pending(self) -> None:
        """Forget every pending import (after reconciliation)."""
        self._write("DELETE FROM pending_imports WHERE project_id=? AND repo_id=?", [self.key])
