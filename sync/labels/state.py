"""The label import's state, in the sync's SQLite file (``--state``, default ``.labelhub/sync.sqlite3``).

Tables (beside those of :mod:`labelhub.sync.state`):

- ``label_import_tasks``: which task each url of a labels file became (``project_id, source_url``
  → ``task_id``). A url found here is never imported again into that project.
- ``label_import_pending``: the urls of an import call under way, written *before* the call and
  moved to ``label_import_tasks`` after it. Urls left by a crash are looked up in Label Studio
  (tasks with an id above ``after_task_id`` and that ``data.source_url``) before anything is
  imported again (:mod:`labelhub.sync.labels.importer`), so a url never becomes two tasks.

A url that is a path of the dataset repo is also recorded in the sync's ``tasks`` table in the same
transaction, so that ``labelhub sync`` on that repo and project does not import the file again.

Every write is one transaction (WAL mode): a SIGKILL leaves the state before or after the write.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from labelhub.sync.state import SCHEMA as SYNC_SCHEMA

SCHEMA = """
CREATE TABLE IF NOT EXISTS label_import_tasks (
    project_id INTEGER NOT NULL, source_url TEXT NOT NULL, task_id INTEGER NOT NULL,
    PRIMARY KEY (project_id, source_url));
CREATE TABLE IF NOT EXISTS label_import_pending (
    project_id INTEGER NOT NULL, source_url TEXT NOT NULL, after_task_id INTEGER NOT NULL,
    PRIMARY KEY (project_id, source_url));
"""


class ImportState:
    """The label import state of one Label Studio project.

    Args:
        path: the SQLite file (created with its parent folder when missing); the sync's file.
        project_id: the Label Studio project id.

    Raises:
        sqlite3.Error: the file is not an SQLite database or cannot be written.
    """

    def __init__(self, path: str | Path, project_id: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SYNC_SCHEMA + SCHEMA)
        self.project_id = project_id

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def count(self) -> int:
        """How many urls of this project have a task."""
        return self.db.execute("SELECT count(*) FROM label_import_tasks WHERE project_id=?",
                               (self.project_id,)).fetchone()[0]

    def known_urls(self) -> dict[str, int]:
        """``{source_url: task_id}`` of every url of this project that has a task."""
        return dict(self.db.execute("SELECT source_url, task_id FROM label_import_tasks WHERE project_id=?",
                                    (self.project_id,)))

    def max_task_id(self) -> int:
        """The largest task id recorded for this project by the import or the sync (0 when none)."""
        row = self.db.execute("SELECT max(m) FROM (SELECT max(task_id) AS m FROM label_import_tasks "
                              "WHERE project_id=? UNION ALL SELECT max(task_id) FROM tasks WHERE project_id=?)",
                              (self.project_id, self.project_id)).fetchone()
        return row[0] or 0

    def sync_task_ids(self, repo_id: str, paths: Iterable[str]) -> dict[str, int]:
        """``{hf_path: task_id}`` for those ``paths`` of ``repo_id`` that the sync made a task of."""
        wanted = set(paths)
        rows = self.db.execute("SELECT hf_path, task_id FROM tasks WHERE project_id=? AND repo_id=?",
                               (self.project_id, repo_id))
        return {path: task_id for path, task_id in rows if path in wanted}

    def begin_import(self, urls: Iterable[str], after_task_id: int) -> None:
        """Record that ``urls`` are about to be imported; their tasks will have ids above ``after_task_id``."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO label_import_pending VALUES (?, ?, ?)",
                                [(self.project_id, url, after_task_id) for url in urls])

    def add_tasks(self, rows: Iterable[tuple[str, int, tuple[str, str, str] | None]]) -> None:
        """Record ``(source_url, task_id, hf)`` rows and clear their pending imports, in one transaction.

        Args:
            rows: ``hf`` is ``(repo_id, path_in_repo, sha)`` for a url that is a repo path (recorded
                in the sync's ``tasks`` table too, unless the sync has that path already), else ``None``.
        """
        rows = list(rows)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO label_import_tasks VALUES (?, ?, ?)",
                                [(self.project_id, url, task_id) for url, task_id, _ in rows])
            self.db.executemany("INSERT OR IGNORE INTO tasks VALUES (?, ?, ?, ?, ?, NULL)",
                                [(self.project_id, hf[0], hf[1], task_id, hf[2])
                                 for _, task_id, hf in rows if hf])
            self.db.executemany("DELETE FROM label_import_pending WHERE project_id=? AND source_url=?",
                                [(self.project_id, url) for url, _, _ in rows])

    def pending(self) -> tuple[list[str], int]:
        """``(urls, after_task_id)`` of imports a crash left unfinished (``([], 0)`` when none)."""
        rows = self.db.execute("SELECT source_url, after_task_id FROM label_import_pending WHERE project_id=?",
                               (self.project_id,)).fetchall()
        return [r[0] for r in rows], min((r[1] for r in rows), default=0)

    def clear_pending(self) -> None:
        """Forget every pending import of this project (after reconciliation)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM label_import_pending WHERE project_id=?", (self.project_id,))
