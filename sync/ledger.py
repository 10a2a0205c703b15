"""The crash-safe import ledger: which Label Studio task each imported item became, never two.

Label Studio's import (``POST /api/projects/{id}/import``, https://api.labelstud.io/api-reference/api-reference/projects/import-tasks)
does not deduplicate, and its answer can be lost to a crash. Every pipeline that creates tasks (repo files
→ tasks, labels made elsewhere → tasks) goes through one protocol, kept in the sync's SQLite file:

1. **pending**: the keys of a batch are recorded, with the largest task id known so far, *before* the import
   call (:meth:`ImportLedger.begin`);
2. **import call**: one Label Studio call creates the batch's tasks;
3. **record**: the keys are recorded with their task ids and the pending rows deleted, in one transaction
   (:meth:`ImportLedger.record`);
4. **recover**: at the next start, keys still pending are looked up among the project's tasks created after
   the recorded id (:meth:`ImportLedger.recover`) before anything is imported again, so a SIGKILL between
   Label Studio's answer and step 3 creates no duplicate. Every task of the source that the ledger lacks is
   adopted the same way, whoever made it: all of them for a ledger that never looked (a lost state file), those
   made since the last look and the ledger's own last task otherwise (another state file's import of the same
   files; the *adoption cursor*).

Keys live in a *source*: the repo_id for repo files (key: ``path_in_repo``), :data:`LABELS_SOURCE` for
labels files (key: the url as written in the file). A task may answer for keys of several sources (a labels
file's url that is a repo path is also that file's task): :attr:`Entry.aliases`.

Tables: ``imported (project_id, source, key → task_id, revision, removed_in, blob_id, task_deleted)`` and ``import_pending
(project_id, source, key → after_task_id)``, and one row per source in the state's ``cursors`` table (the adoption
cursor, :data:`ADOPTED`); :func:`migrate` moves the rows of the tables older versions
kept (``tasks``, ``pending_imports``, ``label_import_tasks``, ``label_import_pending``). ``imported`` is also
indexed by ``(project_id, task_id)`` (``imported_by_task``, in :data:`SCHEMA`, so made at the first connect of a
state file that lacks it): :meth:`ImportLedger.set_deleted` and :meth:`ImportLedger.max_task_id` find a task's row
without scanning the project's ledger. A ledger of 100,000 rows on 2 busy cores: ``set_deleted`` of 1,000 tasks
11.9 s before (12 to 27 ms a task), 0.03 s after; ``max_task_id`` 13.4 ms, 0.01 ms after; recording the 100,000
rows (10 batches of 10,000) 0.62 s without the index, 0.81 s with it; the index made at the first connect of an
older state file of 100,000 rows: 47 ms (measured 2026-12-08).

A task deleted in Label Studio keeps its row, marked ``task_deleted`` (:meth:`ImportLedger.set_deleted`): its key
is never imported again (the README: a deleted task's file is not imported again), and no call goes to it; the
row still follows its file (a move or a change updates its key and blob id) so that the file stays known.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from labelhub.cli_options import progress_bar

__all__ = ["SCHEMA", "LABELS_SOURCE", "ADOPTED", "MAX_BATCH_BYTES", "Entry", "Known", "Item", "ImportLedger", "TaskImporter", "migrate"]

#: The most payload bytes (:attr:`Item.size`) one import call carries, whatever the batch size: a batch of long
#: texts stays well under Label Studio's request limit (``DATA_UPLOAD_MAX_MEMORY_SIZE``). A single item larger than
#: this still goes alone: its caller keeps items under Label Studio's limit (the file importer leaves out a text
#: over :data:`labelhub.sync.files.importer.MAX_TEXT_BYTES`, which is this), since Label Studio's refusal of a call
#: too large (a 500 naming no task) would stop every later item's import, at every run.
MAX_BATCH_BYTES = 16 * 1024 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS imported (
    project_id INTEGER NOT NULL, source TEXT NOT NULL, key TEXT NOT NULL,
    task_id INTEGER NOT NULL, revision TEXT NOT NULL DEFAULT '', removed_in TEXT, blob_id TEXT,
    task_deleted INTEGER, PRIMARY KEY (project_id, source, key));
CREATE INDEX IF NOT EXISTS imported_by_task ON imported (project_id, task_id);
CREATE TABLE IF NOT EXISTS import_pending (
    project_id INTEGER NOT NULL, source TEXT NOT NULL, key TEXT NOT NULL, after_task_id INTEGER NOT NULL,
    PRIMARY KEY (project_id, source, key));
"""
#: The columns the ledger's inserts fill (``task_deleted`` stays NULL: a task recorded is one Label Studio has).
_COLUMNS = "(project_id, source, key, task_id, revision, removed_in, blob_id)"
#: The source of the urls of labels files (``labelhub import-labels``).
LABELS_SOURCE = "labels:source_url"
#: The prefix of the adoption cursor's name (:meth:`ImportLedger.adopted_through`), one per source, kept in the
#: state's ``cursors`` table (dropped with the project's other rows when the state is bound to another project).
ADOPTED = "ledger_adopted_through:"


@dataclass(frozen=True)
class Entry:
    """One recorded task.

    Attributes:
        key: The item's key in the ledger's source (a ``path_in_repo``, a url).
        task_id: The Label Studio task id.
        revision: The commit sha the task was made from (``""`` when it does not apply).
        aliases: ``(source, key, revision)`` of other sources this task also answers for; recorded unless
            that key has a task already.
        blob_id: The git blob id of the file the task shows (``""``: unknown or not a file).
    """

    key: str
    task_id: int
    revision: str = ""
    aliases: tuple[tuple[str, str, str], ...] = ()
    blob_id: str = ""


@dataclass(frozen=True)
class Known:
    """What the ledger knows of one key.

    Attributes:
        task_id: Its task.
        revision: The commit sha the task shows.
        removed_in: The commit sha where the key left its source (``None`` while present).
        blob_id: The git blob id the task shows (``""``: unknown: recorded by ``labelhub restore``, ``labelhub
            import-labels`` or an older LabelHub; the sync learns it at ``revision``,
            :meth:`labelhub.sync.files.importer.FileImporter._learn_blob_ids`).
        deleted: The task was deleted in Label Studio (:meth:`ImportLedger.set_deleted`): no call goes to it.
    """

    task_id: int
    revision: str
    removed_in: str | None
    blob_id: str
    deleted: bool = False


@dataclass(frozen=True)
class Item:
    """One task to import.

    Attributes:
        key: Its key in the ledger's source.
        payload: The Label Studio import payload (https://labelstud.io/guide/task_format): ``{"data": ...}``
            with optional ``predictions``/``annotations``.
        revision, aliases, blob_id: As for :class:`Entry`.
        size: About how many bytes the payload takes in the import request (its text or URL); batches stop
            growing at ``max_batch_bytes`` of them.
    """

    key: str
    payload: dict
    revision: str = ""
    aliases: tuple[tuple[str, str, str], ...] = ()
    blob_id: str = ""
    size: int = 0


class TaskImporter(Protocol):
    """What the ledger needs from Label Studio (:class:`labelhub.sync.labelstudio.project.LabelStudioProject`)."""

    def prepare_import(self, tasks: list[dict]) -> Sequence[dict]:
        """Ready ``tasks`` for :meth:`import_tasks` (e.g. encode the request body) in the ledger's thread, while the
        previous call is in flight; return what :meth:`import_tasks` takes (the same tasks, in order)."""

    def import_tasks(self, tasks: Sequence[dict]) -> list[int]:
        """Create ``tasks`` (as :meth:`prepare_import` returned them) with one call; return their ids in order."""


def migrate(db: sqlite3.Connection) -> None:
    """Move the rows of older state files' tables into the ledger's tables, then drop those tables.

    Args:
        db: An open state database on which :data:`SCHEMA` was run.
    """
    columns = {row[1] for row in db.execute("PRAGMA table_info(imported)")}
    if "blob_id" not in columns:
        db.execute("ALTER TABLE imported ADD COLUMN blob_id TEXT")
    if "task_deleted" not in columns:
        db.execute("ALTER TABLE imported ADD COLUMN task_deleted INTEGER")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    moves = {
        "tasks": "INSERT OR IGNORE INTO imported (project_id, source, key, task_id, revision, removed_in, blob_id) SELECT project_id, repo_id, hf_path, task_id, hf_revision, "
                 "removed_in, NULL FROM tasks",
        "pending_imports": "INSERT OR IGNORE INTO import_pending SELECT project_id, repo_id, hf_path, after_task_id "
                           "FROM pending_imports",
        "label_import_tasks": f"INSERT OR IGNORE INTO imported (project_id, source, key, task_id, revision, removed_in, blob_id) SELECT project_id, '{LABELS_SOURCE}', source_url, "
                              "task_id, '', NULL, NULL FROM label_import_tasks",
        "label_import_pending": f"INSERT OR IGNORE INTO import_pending SELECT project_id, '{LABELS_SOURCE}', "
                                "source_url, after_task_id FROM label_import_pending",
    }
    if not tables & set(moves):
        return
    with db:
        db.execute("BEGIN IMMEDIATE")
        for table, sql in moves.items():
            if table in tables:
                db.execute(sql)
                db.execute(f"DROP TABLE {table}")


def _batches(items: Iterable[Item], batch_size: int, max_bytes: int,
             first_batch_size: int | None = None) -> Iterator[list[Item]]:
    """``items`` in batches of at most ``batch_size`` items (the first: ``first_batch_size``, when smaller) and (but
    for a single big item, which goes alone: see :data:`MAX_BATCH_BYTES`) ``max_bytes``."""
    batch: list[Item] = []
    size = 0
    limit = min(batch_size, first_batch_size or batch_size)
    for item in items:
        if batch and size + item.size > max_bytes:
            yield batch
            batch, size, limit = [], 0, batch_size
        batch.append(item)
        size += item.size
        if len(batch) >= limit:
            yield batch
            batch, size, limit = [], 0, batch_size
    if batch:
        yield batch


class ImportLedger:
    """The ledger of one Label Studio project and one source.

    Args:
        db: The sync state's SQLite connection (autocommit mode; every write here is one transaction).
        project_id: The Label Studio project id.
        source: The key space: a repo_id, or :data:`LABELS_SOURCE`.
    """

    def __init__(self, db: sqlite3.Connection, project_id: int, source: str):
        self.db, self.project_id, self.source = db, project_id, source
        self.scope = (project_id, source)

    def _write(self, statements: Iterable[tuple[str, list[tuple]]]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for sql, rows in statements:
                self.db.executemany(sql, rows)

    # reading
    def count(self) -> int:
        """How many keys of this source have a task (removed ones included)."""
        return self.db.execute("SELECT count(*) FROM imported WHERE project_id=? AND source=?", self.scope).fetchone()[0]

    def known(self) -> dict[str, str | None]:
        """``{key: removed_in}`` of every key that has a task (``removed_in``: ``None`` while present)."""
        return dict(self.db.execute("SELECT key, removed_in FROM imported WHERE project_id=? AND source=?", self.scope))

    def entries(self) -> dict[str, Known]:
        """``{key: Known}`` of every key that has a task."""
        rows = self.db.execute("SELECT key, task_id, revision, removed_in, coalesce(blob_id, ''), "
                               "coalesce(task_deleted, 0) FROM imported WHERE project_id=? AND source=?", self.scope)
        return {key: Known(task_id, revision, removed_in, blob_id, bool(deleted))
                for key, task_id, revision, removed_in, blob_id, deleted in rows}

    def task_ids(self, keys: Iterable[str]) -> dict[str, int]:
        """``{key: task_id}`` for those of ``keys`` that have a task."""
        wanted = set(keys)
        rows = self.db.execute("SELECT key, task_id FROM imported WHERE project_id=? AND source=?", self.scope)
        return {key: task_id for key, task_id in rows if key in wanted}

    def max_task_id(self) -> int:
        """The largest task id recorded for the project, in any source (0 when none)."""
        row = self.db.execute("SELECT max(task_id) FROM imported WHERE project_id=?", (self.project_id,)).fetchone()
        return row[0] or 0

    def pending(self) -> tuple[list[str], int]:
        """``(keys, after_task_id)`` of imports a crash left unfinished (``([], 0)`` when none)."""
        rows = self.db.execute("SELECT key, after_task_id FROM import_pending WHERE project_id=? AND source=?",
                               self.scope).fetchall()
        return [r[0] for r in rows], min((r[1] for r in rows), default=0)

    # writing
    def begin(self, keys: Iterable[str], after_task_id: int) -> None:
        """Record ``keys`` as about to be imported; their tasks will have ids above ``after_task_id``."""
        self._write([("INSERT OR REPLACE INTO import_pending VALUES (?, ?, ?, ?)",
                      [(*self.scope, key, after_task_id) for key in keys])])

    def record(self, entries: Iterable[Entry | Item], task_ids: Iterable[int] | None = None) -> None:
        """Record tasks (and their aliases) and clear their pending rows, in one transaction.

        Args:
            entries: The :class:`Entry` of each task; or, with ``task_ids``, the :class:`Item` each was imported from
                (the rows are then made from the items and the ids as they are: no :class:`Entry` per task, which
                is a third of the time of recording a batch of 10,000).
            task_ids: The task id of each item of ``entries``, in order (``None``: ``entries`` are entries).
        """
        if task_ids is None:
            rows = [(e.key, e.task_id, e.revision, e.aliases, e.blob_id) for e in entries]
        else:
            rows = [(i.key, task_id, i.revision, i.aliases, i.blob_id) for i, task_id in zip(entries, task_ids)]
        project_id, source = self.scope
        self._write([
            (f"INSERT OR REPLACE INTO imported {_COLUMNS} VALUES (?, ?, ?, ?, ?, NULL, ?)",
             [(project_id, source, key, task_id, revision, blob_id or None)
              for key, task_id, revision, _, blob_id in rows]),
            (f"INSERT OR IGNORE INTO imported {_COLUMNS} VALUES (?, ?, ?, ?, ?, NULL, NULL)",
             [(project_id, other, alias, task_id, alias_revision) for _, task_id, _, aliases, _ in rows if aliases
              for other, alias, alias_revision in aliases]),
            ("DELETE FROM import_pending WHERE project_id=? AND source=? AND key=?",
             [(project_id, source, row[0]) for row in rows]),
        ])

    def clear_pending(self) -> None:
        """Forget every pending import of this source (after :meth:`recover`)."""
        self._write([("DELETE FROM import_pending WHERE project_id=? AND source=?", [self.scope])])

    def follow(self, moves: Iterable[tuple[str, str, str, str]]) -> None:
        """Record that tasks follow their files: ``(old key, new key, revision, blob_id)`` rows, one transaction.

        A row with ``old key == new key`` is a content change (the task now shows ``revision`` and
        ``blob_id``); otherwise a rename or move (the task's key becomes ``new key``).
        """
        self._write([("UPDATE imported SET key=?, revision=?, blob_id=?, removed_in=NULL "
                      "WHERE project_id=? AND source=? AND key=?",
                      [(new, revision, blob_id or None, *self.scope, old) for old, new, revision, blob_id in moves])])

    def set_blob_ids(self, blob_ids: Iterable[tuple[str, str]]) -> None:
        """Remember ``(key, blob_id)`` of tasks recorded before blob ids were kept (no task changes)."""
        self._write([("UPDATE imported SET blob_id=? WHERE project_id=? AND source=? AND key=?",
                      [(blob_id, *self.scope, key) for key, blob_id in blob_ids])])

    def set_deleted(self, task_ids: Iterable[int]) -> None:
        """Mark the rows of ``task_ids`` (any source of the project) as tasks deleted in Label Studio: they stay
        known (never imported again) and no call goes to them."""
        self._write([("UPDATE imported SET task_deleted=1 WHERE project_id=? AND task_id=?",
                      [(self.project_id, task_id) for task_id in task_ids])])

    def set_removed(self, keys: Iterable[str], removed_in: str | None) -> None:
        """Mark keys as gone from the source at commit ``removed_in`` (``None``: back again)."""
        self._write([("UPDATE imported SET removed_in=? WHERE project_id=? AND source=? AND key=?",
                      [(removed_in, *self.scope, key) for key in keys])])

    # the protocol
    def adopted_through(self) -> int | None:
        """The task id up to which every task of this source that Label Studio holds is recorded (the adoption
        cursor, :meth:`recover`), ``None`` when no lookup was made yet (a new or lost state, or one of a LabelHub
        older than the cursor)."""
        row = self.db.execute("SELECT value FROM cursors WHERE project_id=? AND name=?",
                              (self.project_id, ADOPTED + self.source)).fetchone()
        return int(row[0]) if row else None

    def recover(self, lookup: Callable[[int], Iterable[Entry]]) -> int:
        """Finish what a crash left and adopt the tasks of this source the ledger lacks (step 4 of the module
        docstring).

        Every task of this source that Label Studio holds and the ledger lacks is recorded: those a crash left
        (keys pending), every existing one when nothing was looked up yet (a lost or new state file, or one of an
        older LabelHub: one whole lookup, once), and those another process made since the last lookup
        (``labelhub import-labels`` or ``labelhub restore`` with another state file making tasks of the repo's
        files). The lookup starts above both the adoption cursor (:meth:`adopted_through`: the largest id the last
        lookup saw, or the ledger recorded of this source then) and the largest id the ledger records of this
        source now (its own tasks since, which are not listed again). ``lookup`` is called at every call; it answers only the tasks
        made since, so it costs little: measured on Label Studio 1.23 with 100,000 tasks in the project, a lookup
        with no task to answer takes 28 ms, while listing tasks costs 0.9 ms a task (1,000: 0.88 s; 10,000: 9.4
        s; all 100,000: 168 s, the once of a state without a cursor), more than importing them (0.52 ms a task).
        Not seen: a task another process made *while* this ledger imported (its id is below this ledger's own
        largest), the race of two imports at once (README, "Two imports at once").

        A task whose key is already recorded (a second task of a key: the ledger's one stays) or whose id is
        already recorded under another key (a move whose record a crash lost: the task's data name the new key)
        is left as it is.

        Args:
            lookup: ``after_task_id → entries``: the project's tasks of this source with an id above
                ``after_task_id``, as Label Studio has them (one paged query). When a key has several tasks, the
                lowest id wins.

        Returns:
            How many tasks were recorded.

        Raises:
            Whatever ``lookup`` raises (:class:`labelhub.errors.LabelStudioError`); nothing is changed then.
        """
        pending, pending_after = self.pending()
        through = self.adopted_through()
        # this source's newest recorded task (not the project's: a labels import into the same state must not hide
        # a repo task another state made before it)
        floor = self.db.execute("SELECT coalesce(max(task_id), 0) FROM imported WHERE project_id=? AND source=?",
                                self.scope).fetchone()[0]
        start = 0 if through is None else max(through, floor)  # never looked: every task; else past our own
        after = min(pending_after, start) if pending else start
        found: dict[str, Entry] = {}
        seen = after  # the largest id the lookup answered (a key's second task too)
        for entry in lookup(after):
            seen = max(seen, entry.task_id)
            if entry.key not in found or entry.task_id < found[entry.key].task_id:
                found[entry.key] = entry
        entries: list[Entry] = []
        if found:
            known = self.known()
            recorded = {row[0] for row in self.db.execute(
                "SELECT task_id FROM imported WHERE project_id=? AND source=?", self.scope)}
            entries = [entry for key, entry in found.items() if key not in known and entry.task_id not in recorded]
        if entries:  # no empty transactions: each commit is an fsync (synchronous=FULL)
            self.record(entries)
        if pending:
            self.clear_pending()
        new_through = max(seen, floor)
        if through is None or new_through > through:
            self._write([("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)",
                          [(self.project_id, ADOPTED + self.source, str(new_through))])])
        return len(entries)

    def import_items(self, project: TaskImporter, items: Iterable[Item], total: int | None, batch_size: int = 1000,
                     desc: str = "importing tasks", max_batch_bytes: int = MAX_BATCH_BYTES,
                     first_batch_size: int | None = None) -> int:
        """Import ``items`` in batches, each through steps 1 to 3 of the module docstring.

        Args:
            project: Label Studio (one ``import_tasks`` call per batch).
            items: The tasks to import; may be a generator (payloads are built one batch at a time).
            total: How many ``items`` there are, ``None`` when not known yet (for the tqdm progress bar;
                ``TQDM_DISABLE=1`` hides it).
            batch_size: Tasks per import call, at most.
            desc: The progress bar's label.
            max_batch_bytes: Payload bytes per import call, at most (a batch holds at least one item).
            first_batch_size: Tasks of the first call, at most (``None``: ``batch_size``). Items that arrive slowly
                (a listing's pages) are best sent in a small first call: Label Studio starts working while the rest
                arrive. Every call costs Label Studio a fixed time besides its tasks' (about 0.1 s in 1.23), so
                the next calls are ``batch_size``.

        Returns:
            How many tasks were created.

        Raises:
            labelhub.errors.LabelStudioError: Label Studio refused a call; the batches before it are
                recorded, the failed one and the next one stay pending (and are recovered by the next run).
            ValueError: a batch's payloads cannot be encoded (:meth:`TaskImporter.prepare_import`); that batch is
                not begun, the call in flight finishes and its batch stays pending (recovered by the next run).

        One call is in flight at a time, in a worker thread. While it runs, the next batch's payloads are built
        (file URLs, texts, metadata), readied (:meth:`TaskImporter.prepare_import`: its request body encoded) and
        recorded as pending; the next call starts as soon as it returns, and its batch is recorded while the next
        call runs, so Label Studio waits for no state write and no encoding. The protocol per batch is unchanged
        (pending before its call, recorded after); at most two batches are pending at once, and the next batch's
        ``after_task_id`` (the largest id *recorded*) is below the ids of both.
        """
        created = 0
        batches = _batches(items, batch_size, max_batch_bytes, first_batch_size)
        in_flight: tuple[list[Item], Future] | None = None
        with progress_bar(total=total, desc=desc, unit=" tasks", leave=False) as bar, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelhub-import") as caller:
            while True:
                batch = next(batches, [])  # built (and its request encoded) while the previous call is in flight
                if batch:
                    tasks = project.prepare_import([item.payload for item in batch])
                    self.begin([item.key for item in batch], self.max_task_id())
                done, ids = in_flight, in_flight[1].result() if in_flight else []  # a call's error is raised here
                in_flight = None
                if batch:
                    in_flight = (batch, caller.submit(project.import_tasks, tasks))
                if done:
                    self.record(done[0], ids)
                    created += len(ids)
                    bar.update(len(ids))
                if not batch:
                    return created
