"""The sync state: one SQLite file (``--state``, default ``.labelhub/sync.sqlite3``).

Tables:

- ``imported`` and ``import_pending``: the crash-safe import ledger (:mod:`labelhub.sync.ledger`): which
  Label Studio task each repo file (source: the repo_id) or labels-file url became, with ``removed_in``,
  the commit sha where a file left the repo, and the keys of an import call under way.
- ``heads``: the commit sha last synced per ``(project_id, repo_id, revision)``; a poll that finds
  the same sha does nothing else.
- ``tasks_seen`` and ``annotations``: the project's annotated tasks and their annotations as Label
  Studio last showed them (JSON), kept by webhooks and reconciliation; ``deleted`` annotations stay
  as tombstones so that a late webhook never brings them back. ``users``: id → email. Indexed by task (a webhook
  event and each task a reconciliation stores read their task's rows: without it, a scan of the project's
  annotations, 40 ms an event at 100,000) and, for live ones, by annotator (the question every export asks).
  ``deleted_tasks``: the ids of the tasks known deleted (a ``TASKS_DELETED`` webhook, or the sweep): Label Studio never
  gives a task id twice, so no annotation of them is stored live again (a late webhook, or a page read before the
  deletion and stored after it).
- ``cursors``: named positions, e.g. the ``updated_at`` up to which tasks were reconciled, and the Label
  Studio instance and project the rows belong to (:func:`bind_project`).
- ``export_rows``: each live annotation's CSV row (JSON, without its annotator), the hash of that JSON (a row made
  again is one whose hash changed) and its *content hash*, without the bookkeeping columns (``updated_at``,
  ``lead_time``: :data:`labelhub.sync.versions.rows.BOOKKEEPING`).
- ``versions``: each export (``annotations-vN``, or ``P-vN`` of another series): its ``export_id``, state
  (``committing``, ``committed``, ``tagged``), commit sha, summary, and the content hashes (``content_hashes`` 1; a
  version tagged by a LabelHub that hashed whole rows has NULL there and whole-row hashes, see
  :meth:`SyncState.upgrade_baseline`) and label columns of its rows:
  those of the newest tagged version are what the next +/~/- and changes are counted against. Tagging a version
  clears those of the older ones (they hold one entry per annotation: 350 kB a version at 2,000 annotations, which
  a state of thousands of versions would otherwise keep).

Every write is one transaction (WAL mode), so a SIGKILL leaves the state as it was before the write
or after it; a reconciliation writes 500 tasks per transaction (:meth:`SyncState.store_task_lists`).
"""
from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from labelhub.locks import file_lock
from labelhub.redaction import without_userinfo
from labelhub.sync import ledger

log = logging.getLogger(__name__)

SCHEMA = ledger.SCHEMA + """
CREATE TABLE IF NOT EXISTS tasks_seen (
    project_id INTEGER NOT NULL, task_id INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (project_id, task_id));
CREATE TABLE IF NOT EXISTS annotations (
    project_id INTEGER NOT NULL, annotation_id INTEGER NOT NULL, task_id INTEGER NOT NULL,
    updated_at TEXT NOT NULL, body TEXT, deleted INTEGER NOT NULL DEFAULT 0, revision TEXT,
    PRIMARY KEY (project_id, annotation_id));
CREATE INDEX IF NOT EXISTS annotations_by_task ON annotations (project_id, task_id);
CREATE INDEX IF NOT EXISTS live_annotations_by_annotator
    ON annotations (project_id, json_extract(body, '$.completed_by')) WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS export_rows (
    project_id INTEGER NOT NULL, annotation_id INTEGER NOT NULL, row TEXT NOT NULL, row_hash TEXT NOT NULL,
    annotator TEXT NOT NULL, content_hash TEXT, PRIMARY KEY (project_id, annotation_id));
CREATE TABLE IF NOT EXISTS deleted_tasks (
    project_id INTEGER NOT NULL, task_id INTEGER NOT NULL, PRIMARY KEY (project_id, task_id));
CREATE TABLE IF NOT EXISTS users (user_id INTEGER PRIMARY KEY, email TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
    project_id INTEGER NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (project_id, name));
CREATE TABLE IF NOT EXISTS versions (
    project_id INTEGER NOT NULL, repo_id TEXT NOT NULL, version INTEGER NOT NULL, export_id TEXT NOT NULL,
    status TEXT NOT NULL, commit_sha TEXT, parent_commit TEXT, hashes TEXT NOT NULL, summary TEXT NOT NULL,
    labels TEXT, content_hashes INTEGER, PRIMARY KEY (project_id, repo_id, version));
CREATE TABLE IF NOT EXISTS heads (
    project_id INTEGER NOT NULL, repo_id TEXT NOT NULL, revision TEXT NOT NULL, sha TEXT NOT NULL,
    PRIMARY KEY (project_id, repo_id, revision));
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (or create, with its folder) the state file: WAL mode, ``synchronous=FULL``, every table made,
    older tables migrated (:func:`labelhub.sync.ledger.migrate`); one process at a time does that, under the file
    lock ``<path>.lock`` (:func:`labelhub.locks.file_lock`, left beside the state file).

    Args:
        path: The SQLite file (``--state``).

    Returns:
        A connection in autocommit mode (each write is one transaction), made with ``check_same_thread=False``
        but used by one thread at a time: two transactions at once on one connection fail or roll each other back,
        so the webhook receiver applies its events one at a time
        (:func:`labelhub.sync.annotations.receiver.webhook_app`).

    Raises:
        sqlite3.Error: The file is not an SQLite database or cannot be written.
        OSError: The folder or the lock file cannot be made.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        with file_lock(path.with_name(path.name + ".lock")):
            _set_up(db)
    except BaseException:
        db.close()
        raise
    return db


def _set_up(db: sqlite3.Connection) -> None:
    """WAL mode, the tables, the migrations of :func:`connect`; one process at a time (its caller's file lock).

    Two processes opening a new state file at once (two ``labelhub sync`` of two projects started together in
    one folder) failed at once without the lock: SQLite answers ``PRAGMA journal_mode=WAL`` with "database is
    locked" while another connection holds the file, without waiting for its busy timeout (17 of 30 such races
    in a test, 2026-12-07).
    """
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    if "revision" not in {row[1] for row in db.execute("PRAGMA table_info(annotations)")}:
        db.execute("ALTER TABLE annotations ADD COLUMN revision TEXT")
    # annotations stored before the column (or opened since by a LabelHub that left it empty): the revision their
    # task shows now, fixed, so that a file changing later does not move them to its new content (one scan of the
    # annotations without one; annotations of tasks not made from a repo file keep none)
    db.execute("UPDATE annotations SET revision = (SELECT json_extract(t.data, '$.hf_revision') FROM tasks_seen t "
               "WHERE t.project_id = annotations.project_id AND t.task_id = annotations.task_id) "
               "WHERE revision IS NULL AND EXISTS (SELECT 1 FROM tasks_seen t WHERE t.project_id = "
               "annotations.project_id AND t.task_id = annotations.task_id AND json_valid(t.data) AND "
               "json_type(t.data, '$.hf_revision') = 'text')")
    versions = {row[1] for row in db.execute("PRAGMA table_info(versions)")}
    if "labels" not in versions:
        db.execute("ALTER TABLE versions ADD COLUMN labels TEXT")
    if "content_hashes" not in versions:  # its versions hold whole-row hashes: NULL says so
        db.execute("ALTER TABLE versions ADD COLUMN content_hashes INTEGER")
    if "content_hash" not in {row[1] for row in db.execute("PRAGMA table_info(export_rows)")}:
        # NULL: the next build hashes the row's content from its JSON (SyncState.set_content_hashes)
        db.execute("ALTER TABLE export_rows ADD COLUMN content_hash TEXT")
    db.execute("DROP TABLE IF EXISTS exported")  # states before 2026-12: a copy of the newest tagged version's hashes
    ledger.migrate(db)


#: The cursor that names the Label Studio instance and project a state's rows belong to.
BINDING = "label_studio_project"
#: Tables whose rows belong to one Label Studio project (``project_id`` column); ``users`` is per instance.
PROJECT_TABLES = ("imported", "import_pending", "tasks_seen", "annotations", "export_rows", "cursors", "versions",
                  "heads", "deleted_tasks")
#: The cursor :func:`bind_project` sets when it dropped a project's rows (``"1"``): the ``users`` table (per instance,
#: kept) may hold emails of an earlier instance under ids the new one gave again (a reset Label Studio numbers its
#: users from 1 again), so :func:`labelhub.sync.annotations.intake.learn_annotators` reads the users once more.
USERS_STALE = "users_stale"
#: The cursor holding the label config fingerprint the stored export rows were made with.
ROWS_CONFIG = "export_rows_config"
#: The cursor counting the repo's files the import cycles made tasks of or followed since the last version (JSON).
FILE_CHANGES = "file_changes_since_version"


def bind_project(db: sqlite3.Connection, project_id: int, label_studio_url: str, project_key: str) -> bool:
    """Bind the state's rows of ``project_id`` to one Label Studio instance and project, checked at every start.

    Label Studio identifies a project to ML backends as ``<id>.<created_at in unix seconds>``
    (``MLApi._create_project_uid`` in ``label_studio/ml/api_connector.py``): after Label Studio is reset, or
    a project is deleted and a new one gets the same id, the id is the same but the key is not. Rows of
    another instance or project would make the sync believe files are imported and annotations stored, so
    they are dropped (the ledger then rebuilds from the project's tasks, see :mod:`labelhub.sync.ledger`).

    Args:
        db: The state database.
        project_id: The project id.
        label_studio_url: Label Studio's URL (trailing ``/`` and a ``user:password@`` ignored).
        project_key: ``<id>.<created_at unix seconds>`` (:attr:`labelhub.sync.labelstudio.project.LabelStudioProject.key`).

    Returns:
        Whether rows were dropped (said in one warning line); ``False`` for the same project, or a state without
        a binding (a new file, or one written before bindings were kept).
    """
    identity = f"{without_userinfo(label_studio_url.rstrip('/'))} {project_key}"
    row = db.execute("SELECT value FROM cursors WHERE project_id=? AND name=?", (project_id, BINDING)).fetchone()
    if row and row[0] == identity:
        return False
    stored = without_userinfo(row[0]) if row else None  # LabelHub kept a URL's user:password@ before
    with db:
        db.execute("BEGIN IMMEDIATE")
        if row and stored != identity:
            for table in PROJECT_TABLES:
                db.execute(f"DELETE FROM {table} WHERE project_id=?", (project_id,))
            # users are not dropped (another project of the file may be exporting with them): overwritten, once read
            db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, '1')", (project_id, USERS_STALE))
        db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)", (project_id, BINDING, identity))
    if row and stored != identity:
        log.warning("the state of project %d was made for %s, not %s: rebuilding it from Label Studio", project_id,
                    stored, identity)
    return bool(row) and stored != identity


class SyncState:
    """The state of one sync (one Label Studio project, one repo).

    Args:
        path: the SQLite file (created with its parent folder when missing).
        project_id: the Label Studio project id.
        repo_id: the repo's ``repo_id`` (or a local repo's path).
    """

    def __init__(self, path: str | Path, project_id: int, repo_id: str):
        self.path = Path(path)
        self.db = connect(self.path)
        self.key = (project_id, repo_id)
        #: The import ledger of this repo's files (key: ``path_in_repo``).
        self.ledger = ledger.ImportLedger(self.db, project_id, repo_id)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction (``BEGIN IMMEDIATE``): committed when the block ends, rolled back if it raises."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            yield

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction (``BEGIN``): every query of this connection in the block sees the file as it was at
        the first of them, whatever other connections (the webhook receiver's) write meanwhile; SQLite's isolation in
        WAL mode, https://sqlite.org/isolation.html. Writers are not blocked."""
        with self.db:
            self.db.execute("BEGIN")
            yield

    def _write(self, sql: str, rows: Iterable[tuple]) -> int:
        """Run ``sql`` for each of ``rows`` in one transaction; returns the rows it changed."""
        with self._transaction():
            return self.db.executemany(sql, rows).rowcount

    def _bump_if(self, changed: int, name: str | None) -> None:
        """Inside a write transaction: add 1 to the integer cursor ``name`` (``None``: none) when ``changed``, so that
        what a write stored and the counter that makes it exported commit together (0 when unset; :meth:`bump_cursor`
        in a transaction of its own)."""
        if changed and name:
            self.db.execute("INSERT INTO cursors VALUES (?, ?, '1') ON CONFLICT(project_id, name) "
                            "DO UPDATE SET value = CAST(value AS INTEGER) + 1", (self.key[0], name))

    def _task_deleted(self, task_id: int) -> bool:
        """Whether task ``task_id`` is known deleted (``deleted_tasks``)."""
        return bool(self._deleted_among([task_id]))

    def _deleted_among(self, task_ids: Sequence[int]) -> set[int]:
        """Those of ``task_ids`` known deleted (``deleted_tasks``): one query."""
        if not task_ids:
            return set()
        return {row[0] for row in self.db.execute(
            f"SELECT task_id FROM deleted_tasks WHERE project_id=? AND task_id IN ({','.join('?' * len(task_ids))})",
            (self.key[0], *task_ids))}

    # heads
    def head(self, revision: str) -> str | None:
        """The commit sha last synced for ``revision`` (``None`` before the first sync)."""
        row = self.db.execute("SELECT sha FROM heads WHERE project_id=? AND repo_id=? AND revision=?",
                              (*self.key, revision)).fetchone()
        return row[0] if row else None

    def set_head(self, revision: str, sha: str) -> None:
        """Record that ``revision`` was synced at commit ``sha``."""
        self._write("INSERT OR REPLACE INTO heads VALUES (?, ?, ?, ?)", [(*self.key, revision, sha)])

    # annotations (the intake)
    def upsert_task(self, task_id: int, data: dict) -> None:
        """Remember a task's data (for the CSV's URL and metadata columns); when it changed, the export rows of
        its annotations are made again at the next export."""
        with self._transaction():
            self._upsert_task(task_id, data)

    def _upsert_task(self, task_id: int, data: dict) -> None:
        text = json.dumps(data, sort_keys=True)
        old = self.db.execute("SELECT data FROM tasks_seen WHERE project_id=? AND task_id=?",
                              (self.key[0], task_id)).fetchone()
        if old and old[0] == text:
            return
        self.db.execute("INSERT OR REPLACE INTO tasks_seen VALUES (?, ?, ?)", (self.key[0], task_id, text))
        self.db.execute("DELETE FROM export_rows WHERE project_id=? AND annotation_id IN "
                        "(SELECT annotation_id FROM annotations WHERE project_id=? AND task_id=?)",
                        (self.key[0], self.key[0], task_id))

    def apply_event_annotation(self, task_id: int, data: dict | None, annotation: dict, revision: str | None,
                               bump: str | None = None) -> int | None:
        """Store the annotation a webhook event brought (:meth:`apply_annotations` with ``complete=False``), with its
        task's ``data`` only when the state holds none for the task, in one transaction.

        The state's task data comes from Label Studio's API (reconciliation reads each task with its annotations); an
        event's ``task.data`` never replaces it: an event may be late (the task's data changed since: a file that
        changed in the repo), or not Label Studio's, and the data is shared by every annotation of the task.

        Args:
            task_id: The event's ``task.id``.
            data: Its ``task.data`` (``None``: the event has none; the stored data is not compared).
            annotation: The annotation (as stored: :func:`labelhub.sync.annotations.intake` normalizes it).
            revision: The commit sha the event's task showed (``data.hf_revision``), stored with the annotation.
            bump: An integer cursor to add 1 to in the same transaction when a row changed (the annotations
                generation: a crash or an error after the write cannot leave a stored change that is never exported).

        Returns:
            How many annotation rows changed, or ``None`` when ``data`` is not the task's stored data: then nothing
            is stored (the next reconciliation reads the task, whose ``updated_at`` the annotation's save moved, with
            its data and annotations as they are). 0 for a task known deleted (``deleted_tasks``: a late event).
        """
        with self._transaction():
            if self._task_deleted(task_id):
                return 0
            if data is not None:
                text = json.dumps(data, sort_keys=True)
                old = self.db.execute("SELECT data FROM tasks_seen WHERE project_id=? AND task_id=?",
                                      (self.key[0], task_id)).fetchone()
                if old and old[0] != text:
                    return None
                if not old:
                    self._upsert_task(task_id, data)
            changed = self._apply_annotations(task_id, [annotation], False, None, revision)
            self._bump_if(changed, bump)
            return changed

    def repin_annotations(self, tasks: Iterable[tuple[int, str]], sha: str) -> None:
        """Make the annotations made on the content each task showed name commit ``sha`` as the one they were made
        on, and the export rows of the tasks' annotations be made again: the same content is at another path (a move)
        or at another commit (a history rewritten) in ``sha``. A training row names its file as
        ``<repo>@<annotated_revision>/<hf_path>``; with the task's new path and the older commit it named no file.

        Args:
            tasks: ``(task_id, revision)``: each task and the commit it showed before (the ledger's revision).
            sha: The commit the tasks show now.

        Decided: only the annotations whose revision is the one the task showed are re-pinned; an annotation made on
        an older, edited content of the file (its revision older: the export says so) keeps its revision, whether
        that commit still exists or not (a history rewritten drops it too), since ``sha`` holds another content.
        """
        pairs = list(tasks)
        with self._transaction():
            for start in range(0, len(pairs), 500):
                chunk = [task_id for task_id, _ in pairs[start:start + 500]]
                marks = ",".join("?" * len(chunk))
                self.db.execute(f"DELETE FROM export_rows WHERE project_id=? AND annotation_id IN "
                                f"(SELECT annotation_id FROM annotations WHERE project_id=? AND task_id IN ({marks}))",
                                (self.key[0], self.key[0], *chunk))
            self.db.executemany("UPDATE annotations SET revision=? WHERE project_id=? AND task_id=? AND revision=?",
                                [(sha, self.key[0], task_id, revision) for task_id, revision in pairs if revision])

    def bind(self, label_studio_url: str, project_key: str) -> bool:
        """See :func:`bind_project`.

        Returns:
            Whether rows of another instance or project were dropped.
        """
        return bind_project(self.db, self.key[0], label_studio_url, project_key)

    def apply_annotations(self, task_id: int, annotations: list[dict], complete: bool,
                          as_of: str | None = None, revision: str | None = None) -> int:
        """Store a task's annotations; returns how many rows changed.

        Args:
            task_id: the task.
            annotations: annotation dicts (``id``, ``updated_at``, ...). One older than the stored one
                (by ``updated_at``) is ignored.
            complete: ``True`` when ``annotations`` is the task's whole list as Label Studio showed it
                (reconciliation, the truth): an annotation in it is live even if a tombstone says
                otherwise, and a stored one missing from it is marked deleted unless it is newer than
                ``as_of``. ``False`` for a webhook event (a hint): a tombstone wins, so a late
                ``ANNOTATION_CREATED`` never brings back a deleted annotation.
            as_of: the task's ``updated_at`` when the list was read (Label Studio's format); a stored
                annotation updated after it (a webhook that raced the read) is not marked deleted.
            revision: the commit sha the task showed when it was read (``data.hf_revision``): stored with
                each annotation written now, so an annotation keeps the revision it was made on when its
                task later follows a changed file.

        A task known deleted (``deleted_tasks``) stores nothing (0): its ids are never given again.
        """
        with self._transaction():
            if self._task_deleted(task_id):
                return 0
            return self._apply_annotations(task_id, annotations, complete, as_of, revision)

    def store_task_lists(self, tasks: Sequence[tuple], per_transaction: int = 500, bump: str | None = None) -> int:
        """Store what reconciliation read: for each ``(task_id, data, annotations, as_of, revision[, own])``, what
        :meth:`upsert_task` and then :meth:`apply_annotations` with ``complete=True`` do (``own``: ``{annotation id:
        revision}``, the revision an annotation was made on when it is not the task's, see
        :meth:`_apply_annotations`), ``per_transaction``
        tasks to a transaction (one each took 0.65 ms a task, most of it the commit's ``fsync``; a webhook's
        write waits at most for one of these transactions). A task known deleted (``deleted_tasks``: read before
        its deletion, stored after it) is skipped.

        Args:
            tasks: The tasks read.
            per_transaction: Tasks per transaction.
            bump: An integer cursor to add 1 to in each transaction that changed a row (the annotations generation),
                so that a reading that fails later (a Label Studio error on a later page) leaves no stored change
                without it.

        Returns:
            How many annotation rows changed.
        """
        changed = 0
        for start in range(0, len(tasks), per_transaction):
            chunk = tasks[start:start + per_transaction]
            with self._transaction():
                here, deleted = 0, self._deleted_among([task[0] for task in chunk])
                for task_id, data, annotations, as_of, revision, *own in chunk:
                    if task_id in deleted:
                        continue
                    self._upsert_task(task_id, data)
                    here += self._apply_annotations(task_id, annotations, True, as_of, revision, *own)
                self._bump_if(here, bump)
            changed += here
        return changed

    def _apply_annotations(self, task_id: int, annotations: list[dict], complete: bool, as_of: str | None,
                           revision: str | None, own: Mapping[int, str] | None = None) -> int:
        """:meth:`apply_annotations` in the caller's transaction. An annotation written now (new, or changed since it
        was stored) is stored with ``own[its id]`` when ``own`` has it, else with ``revision`` (the task's); one
        stored already and unchanged keeps its revision.

        Decided: ``own`` holds the revisions a restore kept of its annotations that nobody saved since
        (:func:`labelhub.sync.annotations.intake.restored_revisions`): a restored task shows one revision, its
        annotations were made on theirs (a file that changed between two of them).
        """
        project = self.key[0]
        own = own or {}
        changed = 0
        stored = {row[0]: (row[1], row[2], row[3]) for row in self.db.execute(
            "SELECT annotation_id, updated_at, deleted, body FROM annotations WHERE project_id=? AND task_id=?",
            (project, task_id))}
        # an event's annotation stored under another task: a tombstone of an ANNOTATIONS_DELETED that came before the
        # annotation was known (task 0). Label Studio never gives an annotation id twice, so it wins whatever task a
        # late event names. Not among ``stored``: a complete list marks only its own task's missing rows deleted.
        elsewhere = {}
        if not complete and annotations:
            elsewhere = {row[0]: (row[1], row[2], row[3]) for row in self.db.execute(
                "SELECT annotation_id, updated_at, deleted, body FROM annotations WHERE project_id=? AND task_id<>? "
                f"AND annotation_id IN ({','.join('?' * len(annotations))})",
                (project, task_id, *(a["id"] for a in annotations)))}
        for annotation in annotations:
            body = json.dumps(annotation, sort_keys=True)
            saved_at = annotation.get("updated_at") or ""  # null in a webhook body (Label Studio's API takes it)
            old = stored.get(annotation["id"]) or elsewhere.get(annotation["id"])
            if old:
                updated_at, deleted, old_body = old
                if deleted and not complete:
                    continue
                if not deleted and (updated_at > saved_at or old_body == body):
                    continue
            self.db.execute("INSERT OR REPLACE INTO annotations (project_id, annotation_id, task_id, updated_at, "
                            "body, deleted, revision) VALUES (?, ?, ?, ?, ?, 0, ?)",
                            (project, annotation["id"], task_id, saved_at, body, own.get(annotation["id"], revision)))
            self.db.execute("DELETE FROM export_rows WHERE project_id=? AND annotation_id=?",
                            (project, annotation["id"]))
            changed += 1
        if complete:
            present = {a["id"] for a in annotations}
            gone = [(project, aid) for aid, (updated_at, deleted, _) in stored.items()
                    if not deleted and aid not in present and (as_of is None or updated_at <= as_of)]
            self.db.executemany("UPDATE annotations SET deleted=1 WHERE project_id=? AND annotation_id=?", gone)
            changed += len(gone)
        return changed

    def delete_annotations(self, annotation_ids: Iterable[int], bump: str | None = None) -> None:
        """Mark annotations deleted (tombstones), known or not yet (an unknown one is kept under task 0; a late event
        naming its task does not bring it back: :meth:`apply_annotations`).

        Args:
            annotation_ids: The ids.
            bump: An integer cursor to add 1 to in the same transaction when ``annotation_ids`` is not empty.
        """
        rows = [(self.key[0], aid) for aid in annotation_ids]
        with self._transaction():
            self.db.executemany("INSERT INTO annotations (project_id, annotation_id, task_id, updated_at, body, "
                                "deleted) VALUES (?, ?, 0, '', NULL, 1) "
                                "ON CONFLICT(project_id, annotation_id) DO UPDATE SET deleted=1", rows)
            self._bump_if(len(rows), bump)

    def delete_task_annotations(self, task_ids: Iterable[int], bump: str | None = None) -> int:
        """Record the tasks ``task_ids`` as deleted (``deleted_tasks``: no annotation of them is stored live again)
        and mark every annotation of them deleted.

        Args:
            task_ids: Ids of tasks deleted in Label Studio.
            bump: An integer cursor to add 1 to in the same transaction when an annotation was marked deleted.

        Returns:
            How many annotations were marked deleted.
        """
        ids = [(self.key[0], task_id) for task_id in task_ids]
        with self._transaction():
            self.db.executemany("INSERT OR IGNORE INTO deleted_tasks VALUES (?, ?)", ids)
            changed = self.db.executemany(
                "UPDATE annotations SET deleted=1 WHERE project_id=? AND task_id=? AND deleted=0", ids).rowcount
            self._bump_if(changed, bump)
            return changed

    def live_annotation_count(self) -> int:
        """How many stored annotations are not deleted."""
        return self.db.execute("SELECT count(*) FROM annotations WHERE project_id=? AND deleted=0",
                               self.key[:1]).fetchone()[0]

    def live_annotations(self) -> list[tuple[dict, dict]]:
        """``[(task, annotation)]`` of every stored annotation not deleted, with the task's data; an annotation
        stored with the revision it was made on has it as ``annotated_revision``."""
        return self._live()

    def _live(self, only_without_row: bool = False) -> list[tuple[dict, dict]] | list[tuple[dict, dict, tuple]]:
        # a plain (not correlated) subquery: SQLite builds it once, not once per annotation
        where = " AND a.annotation_id NOT IN (SELECT annotation_id FROM export_rows WHERE project_id=?)" \
            if only_without_row else ""
        rows = self.db.execute(
            "SELECT a.task_id, t.data, a.body, a.revision FROM annotations a LEFT JOIN tasks_seen t "
            "ON t.project_id = a.project_id AND t.task_id = a.task_id WHERE a.project_id=? AND a.deleted=0" + where,
            self.key[:1] * (2 if only_without_row else 1))
        if only_without_row:  # with what each was read from, for store_rows
            return [(*self._pair(*row), (row[2], row[1], row[3])) for row in rows]
        return [self._pair(*row) for row in rows]

    @staticmethod
    def _pair(task_id: int, data: str | None, body: str, revision: str | None) -> tuple[dict, dict]:
        annotation = json.loads(body)
        if revision:
            annotation["annotated_revision"] = revision
        return {"id": task_id, "data": json.loads(data or "{}")}, annotation

    def live_annotations_without_row(self, config: str) -> list[tuple[dict, dict, tuple]]:
        """Like :meth:`live_annotations`, for the annotations whose export row is not stored (new, changed, or
        made with another label config: ``config`` is its fingerprint; a new one forgets every stored row).

        Returns:
            ``[(task, annotation, made_from)]``: ``made_from`` is what the pair was read from, for
            :meth:`store_rows`.
        """
        if self.cursor(ROWS_CONFIG) != config:
            with self._transaction():
                self.db.execute("DELETE FROM export_rows WHERE project_id=?", self.key[:1])
                self.db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)", (self.key[0], ROWS_CONFIG, config))
        return self._live(only_without_row=True)

    def store_rows(self, rows: Iterable[tuple[int, str, str, str, str]],
                   made_from: Iterable[tuple] | None = None) -> int:
        """Store ``(annotation_id, row JSON, row hash, annotator reference, content hash)`` export rows (the content
        hash: :func:`labelhub.sync.versions.rows.content_hash`).

        Args:
            rows: The rows.
            made_from: With each row, the ``made_from`` :meth:`live_annotations_without_row` gave its annotation: the
                row is then stored only if its annotation and task are still what it was made from. The receiver's
                thread may apply a webhook between the read and this write; its change drops no row yet (there is
                none), so a row made from the older annotation would stay in every later version. Left unstored, it
                is to be made again.

        Returns:
            How many rows were stored.
        """
        insert = "INSERT OR REPLACE INTO export_rows (project_id, annotation_id, row, row_hash, annotator, content_hash)"
        if made_from is None:
            return self._write(f"{insert} VALUES (?, ?, ?, ?, ?, ?)", [(self.key[0], *row) for row in rows])
        return self._write(
            f"{insert} SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM annotations a "
            "LEFT JOIN tasks_seen t ON t.project_id = a.project_id AND t.task_id = a.task_id WHERE a.project_id=? "
            "AND a.annotation_id=? AND a.deleted=0 AND a.body IS ? AND t.data IS ? AND a.revision IS ?)",
            [(self.key[0], *row, self.key[0], row[0], *stamp) for row, stamp in zip(rows, made_from)])

    def export_rows(self) -> list[tuple[str, str, str, str | None]]:
        """``[(row JSON, row hash, annotator reference, content hash)]`` of every live annotation, in no particular
        order (call :meth:`live_annotations_without_row` and :meth:`store_rows` first). The content hash is ``None``
        for a row stored by a LabelHub that kept none (:meth:`set_content_hashes`)."""
        # CROSS JOIN keeps export_rows the outer loop (https://sqlite.org/optoverview.html#crossjoin): both tables
        # are then read in annotation id order, where the planner would pick live_annotations_by_annotator
        return self.db.execute(
            "SELECT r.row, r.row_hash, r.annotator, r.content_hash FROM export_rows r CROSS JOIN annotations a "
            "ON a.project_id = r.project_id AND a.annotation_id = r.annotation_id "
            "WHERE r.project_id=? AND a.deleted=0", self.key[:1]).fetchall()

    def set_content_hashes(self, hashes: Iterable[tuple[int, str, str]]) -> int:
        """Store ``(annotation_id, row hash, content hash)``: the content hashes of rows stored without one (by a
        LabelHub that kept none), each stored only while its row is the one of ``row hash``; returns how many."""
        return self._write("UPDATE export_rows SET content_hash=? WHERE project_id=? AND annotation_id=? AND "
                           "row_hash=?", [(content, self.key[0], aid, row_hash) for aid, row_hash, content in hashes])

    def seed_revisions(self, revisions: Iterable[tuple[int, str, str]]) -> int:
        """Take ``(annotation_id, updated_at, revision)`` from a version another exporter made (its CSV's
        ``annotated_revision``): each live annotation stored with that ``updated_at`` (not changed since that
        version) gets ``revision`` as the commit it was made on, and its export row is made again. A state that
        read the annotation later stored the task's revision of then, a newer commit when its file changed since.

        Returns:
            How many annotations got another revision.
        """
        rows = [(revision, self.key[0], int(aid), updated_at, revision)
                for aid, updated_at, revision in revisions if revision]
        changed = []
        with self._transaction():
            for row in rows:
                if self.db.execute("UPDATE annotations SET revision=? WHERE project_id=? AND annotation_id=? AND "
                                   "deleted=0 AND updated_at=? AND revision IS NOT ?", row).rowcount:
                    changed.append((self.key[0], row[2]))
            self.db.executemany("DELETE FROM export_rows WHERE project_id=? AND annotation_id=?", changed)
        return len(changed)

    def annotated_task_ids(self) -> set[int]:
        """The ids of the tasks that have live annotations in the store."""
        return {row[0] for row in self.db.execute(
            "SELECT DISTINCT task_id FROM annotations WHERE project_id=? AND deleted=0", self.key[:1])}

    def set_users(self, users: dict[int, str]) -> None:
        """Remember ``{user id: email}`` (every user Label Studio listed: the emails of this project's instance are
        then known, :meth:`users_stale` is ``False``)."""
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO users VALUES (?, ?)", users.items())
            self.db.execute("DELETE FROM cursors WHERE project_id=? AND name=?", (self.key[0], USERS_STALE))

    def users_stale(self) -> bool:
        """Whether the stored users may be another Label Studio instance's (:data:`USERS_STALE`: the project's rows
        were dropped by :func:`bind_project` since the users were last read)."""
        return bool(self.cursor(USERS_STALE))

    def users(self) -> dict[int, str]:
        """``{user id: email}`` of every known user."""
        return dict(self.db.execute("SELECT user_id, email FROM users"))

    def unknown_annotators(self) -> set[int]:
        """The ``completed_by`` user ids of live annotations that have no email in ``users``.

        Read from the index ``live_annotations_by_annotator`` (its expression is the query's), not from every
        annotation's JSON body: every export asks, and decoding the bodies took 0.35 to 0.7 s at 100,000
        annotations against about 20 ms from the index."""
        rows = self.db.execute(
            "SELECT DISTINCT json_extract(body, '$.completed_by') FROM annotations WHERE project_id=? AND deleted=0 "
            "AND json_extract(body, '$.completed_by') NOT IN (SELECT user_id FROM users)", self.key[:1])
        return {row[0] for row in rows if isinstance(row[0], int)}

    def cursor(self, name: str, default: str = "") -> str:
        """A named cursor's value (``default`` when unset)."""
        row = self.db.execute("SELECT value FROM cursors WHERE project_id=? AND name=?",
                              (self.key[0], name)).fetchone()
        return row[0] if row else default

    def set_cursor(self, name: str, value: str) -> None:
        """Set a named cursor."""
        self._write("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)", [(self.key[0], name, value)])

    def bump_cursor(self, name: str) -> None:
        """Add 1 to an integer cursor, atomically (0 when unset), in a transaction of its own (a write that changes
        what the cursor counts moves it in its own transaction instead: ``bump=`` of the writes)."""
        with self._transaction():
            self._bump_if(1, name)

    def add_file_changes(self, counts: dict[str, int]) -> None:
        """Add an import cycle's ``{"new", "changed", "moved", "removed", "restored": files}`` to those since the
        last version (:data:`FILE_CHANGES`, read by the export and emptied when its version is tagged), atomically."""
        counts = {k: int(v) for k, v in counts.items() if v}
        if not counts:
            return
        with self._transaction():
            total = self.file_changes()
            for kind, n in counts.items():
                total[kind] = total.get(kind, 0) + n
            self.db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)",
                            (self.key[0], FILE_CHANGES, json.dumps(total, sort_keys=True)))

    def file_changes(self) -> dict[str, int]:
        """The repo's files the import cycles made tasks of or followed since the last version (see
        :meth:`add_file_changes`; ``{}`` when none, or when the cursor does not read)."""
        try:
            found = json.loads(self.cursor(FILE_CHANGES) or "{}")
        except ValueError:
            return {}
        return {k: v for k, v in found.items() if isinstance(v, int)} if isinstance(found, dict) else {}

    # versions (the export)
    def exported_hashes(self) -> dict[int, str]:
        """``{annotation_id: hash}`` of the newest tagged version (``{}`` before the first): see
        :meth:`exported_baseline`."""
        baseline = self.exported_baseline()
        return baseline[1] if baseline else {}

    def exported_baseline(self) -> tuple[int, dict[int, str], bool] | None:
        """``(version, {annotation_id: hash}, content)`` of the newest tagged version (``None`` before the first):
        the hashes are what :meth:`begin_version` was given (the exporter's content keys) when ``content``; else the
        version was tagged by a LabelHub that hashed whole rows (:meth:`upgrade_baseline`)."""
        row = self.db.execute("SELECT version, hashes, content_hashes FROM versions WHERE project_id=? AND repo_id=? "
                              "AND status='tagged' ORDER BY version DESC LIMIT 1", self.key).fetchone()
        if row is None:
            return None
        return row[0], {int(k): v for k, v in json.loads(row[1]).items()}, bool(row[2])

    def whole_row_baseline(self) -> bool:
        """Whether the newest tagged version holds whole-row hashes (tagged by a LabelHub that hashed whole rows;
        :meth:`upgrade_baseline`), without decoding them."""
        row = self.db.execute("SELECT content_hashes FROM versions WHERE project_id=? AND repo_id=? AND "
                              "status='tagged' ORDER BY version DESC LIMIT 1", self.key).fetchone()
        return row is not None and not row[0]

    def upgrade_baseline(self, version: int, hashes: dict[int, str]) -> None:
        """Replace the whole-row hashes of tagged version ``version`` with ``hashes``, content hashes (the exporter
        translates them: :func:`labelhub.sync.versions.exporter.upgraded_hashes`), once; a version whose hashes are
        content hashes already is left as it is."""
        self._write("UPDATE versions SET hashes=?, content_hashes=1 WHERE project_id=? AND repo_id=? AND version=? "
                    "AND status='tagged' AND content_hashes IS NULL", [(json.dumps(hashes), *self.key, version)])

    def last_version(self) -> dict | None:
        """The newest version row as a dict of ``version``, ``export_id``, ``status``, ``commit_sha``,
        ``parent_commit`` and ``summary`` (``None`` before the first export); its hashes are not decoded."""
        row = self.db.execute("SELECT version, export_id, status, commit_sha, parent_commit, summary "
                              "FROM versions WHERE project_id=? AND repo_id=? ORDER BY version DESC LIMIT 1",
                              self.key).fetchone()
        if row is None:
            return None
        version = dict(zip(("version", "export_id", "status", "commit_sha", "parent_commit", "summary"), row))
        version["summary"] = json.loads(version["summary"])
        return version

    def last_version_status(self) -> str | None:
        """The newest version's status (``committing``, ``committed``, ``tagged``; ``None`` before the
        first export), without decoding its hashes (cheap enough for every tick)."""
        row = self.db.execute("SELECT status FROM versions WHERE project_id=? AND repo_id=? "
                              "ORDER BY version DESC LIMIT 1", self.key).fetchone()
        return row[0] if row else None

    def tagged_versions(self) -> dict[int, str]:
        """``{version: commit sha}`` of every version of this project and repo that was tagged, oldest first."""
        rows = self.db.execute("SELECT version, commit_sha FROM versions WHERE project_id=? AND repo_id=? AND "
                               "status='tagged' AND commit_sha IS NOT NULL ORDER BY version", self.key).fetchall()
        return dict(rows)

    def last_tagged_commit(self) -> str | None:
        """The commit sha of the newest tagged version (``None`` before the first)."""
        row = self.db.execute("SELECT commit_sha FROM versions WHERE project_id=? AND repo_id=? AND status='tagged' "
                              "ORDER BY version DESC LIMIT 1", self.key).fetchone()
        return row[0] if row else None

    def begin_version(self, version: int, export_id: str, hashes: dict[int, str], summary: dict,
                      labels: str | None = None) -> None:
        """Record version ``version`` as being committed (before the commit call), with its rows' content hashes
        (``hashes``: ``{annotation_id: hash}``, what the next version's +/~/- is counted against) and label columns
        (``labels``: JSON records, what the next version's changes are counted against)."""
        self._write("INSERT OR REPLACE INTO versions (project_id, repo_id, version, export_id, status, hashes, summary, "
                    "labels, content_hashes) VALUES (?, ?, ?, ?, 'committing', ?, ?, ?, 1)",
                    [(*self.key, version, export_id, json.dumps(hashes), json.dumps(summary), labels)])

    def version_baseline(self, version: int) -> tuple[dict[int, str], str | None]:
        """``({annotation_id: hash}, label columns as JSON records)`` of version ``version`` whatever its status (the
        hashes and labels :meth:`begin_version` was given; ``({}, None)`` for a version older than the newest tagged,
        whose are cleared, or none)."""
        row = self.db.execute("SELECT hashes, labels FROM versions WHERE project_id=? AND repo_id=? AND version=?",
                              (*self.key, version)).fetchone()
        if row is None:
            return {}, None
        return {int(k): v for k, v in json.loads(row[0]).items()}, row[1]

    def last_tagged_labels(self) -> tuple[int, str | None, str] | None:
        """``(version, label columns as JSON records, commit sha)`` of the newest tagged version (``None`` before
        the first). The records are ``None`` for a version tagged by a LabelHub that did not keep them (before
        2026-12): the caller reads them from the version's CSV."""
        row = self.db.execute("SELECT version, labels, commit_sha FROM versions WHERE project_id=? AND repo_id=? AND "
                              "status='tagged' ORDER BY version DESC LIMIT 1", self.key).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def forget_versions(self) -> None:
        """Forget every version of this project and repo, and so the baseline of the next +/~/- (the export's series
        changed: :data:`labelhub.sync.versions.exporter.SERIES`); the stored export rows are kept."""
        self._write("DELETE FROM versions WHERE project_id=? AND repo_id=?", [self.key])

    def drop_version(self, version: int) -> None:
        """Forget a version whose commit never landed."""
        self._write("DELETE FROM versions WHERE project_id=? AND repo_id=? AND version=?", [(*self.key, version)])

    def set_version_status(self, version: int, status: str, commit_sha: str | None = None,
                           parent_commit: str | None = None, cursors: dict[str, str] | None = None) -> None:
        """Move a version to ``committed`` (with its sha) or ``tagged`` (its hashes become the baseline of
        :meth:`exported_hashes`, and the older versions' hashes and label columns are cleared); the named
        ``cursors`` are set in the same transaction."""
        with self._transaction():
            self.db.execute("UPDATE versions SET status=?, commit_sha=coalesce(?, commit_sha), "
                            "parent_commit=coalesce(?, parent_commit) WHERE project_id=? AND repo_id=? AND version=?",
                            (status, commit_sha, parent_commit, *self.key, version))
            if status == "tagged":
                self.db.execute("UPDATE versions SET hashes='{}', labels=NULL WHERE project_id=? AND repo_id=? AND "
                                "version<? AND (hashes<>'{}' OR labels IS NOT NULL)", (*self.key, version))
            self.db.executemany("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)",
                                [(self.key[0], name, value) for name, value in (cursors or {}).items()])


def other_sources(state: SyncState) -> dict[str, int]:
    """``{source: files}`` of the import ledger's sources other than ``state``'s own, for its project: local
    repositories (absolute paths), Hub ids, ``labels:...`` and ``restore:...``."""
    project_id, repo_id = state.key
    return dict(state.db.execute("SELECT source, count(*) FROM imported WHERE project_id=? AND source != ? "
                                 "GROUP BY source", (project_id, repo_id)))


def other_local_repos(state: SyncState) -> dict[str, int]:
    """``{path: files}`` of the local repositories (a source that is an absolute path, as
    :class:`labelhub.repos.git.LocalGitRepo` names one) other than ``state``'s own whose files the import ledger holds
    for its project (:func:`other_sources`): what a repository that moved or is mounted at another path leaves
    (:func:`move_local_repo`)."""
    return {source: files for source, files in other_sources(state).items() if source.startswith("/")}


def move_local_repo(state: SyncState, old: str) -> int:
    """Make the rows of the local repository at ``old`` those of ``state``'s (``labelhub sync --repo-moved-from``), in
    one transaction: its files in the import ledger (they keep their tasks), its versions and its synced heads.
    The tasks in Label Studio keep ``hf_repo`` as they were made (the old path).

    A file the ledger holds under both paths (an ``import-labels --repo <new>`` made its task before the move was
    made; import-labels refuses that now) keeps the old path's task, the one with the file's history; the other
    task stays in Label Studio, as the ledger records one task per file.

    Returns:
        How many files moved.

    Raises:
        ValueError: the ledger has imports of ``old`` under way (a crash mid-import: they are found in Label Studio
            by the old path, so finish them first).
    """
    project_id, repo_id = state.key
    if state.db.execute("SELECT 1 FROM import_pending WHERE project_id=? AND source=?", (project_id, old)).fetchone():
        # not a symlink at the old path: LocalGitRepo resolves it, so the sync would name the repository by its target
        raise ValueError(f"an import from {old} was interrupted: put the repository back at {old} for a moment (move "
                         f"it back, or bind-mount it there; a symlink does not do, it resolves to the new path), run "
                         f"labelhub sync --once --repo {old} to finish it, then move it and pass --repo-moved-from")
    with state._transaction():
        # rows of the new path (an import-labels run there before the move was made): the old path's row of a file
        # wins, as its task has the file's history (annotations, versions); the other task stays in Label Studio
        state.db.execute("DELETE FROM imported WHERE project_id=? AND source=? AND key IN "
                         "(SELECT key FROM imported WHERE project_id=? AND source=?)", (project_id, repo_id,
                                                                                        project_id, old))
        moved = state.db.execute("UPDATE imported SET source=? WHERE project_id=? AND source=?",
                                 (repo_id, project_id, old)).rowcount
        for table in ("versions", "heads"):
            state.db.execute(f"DELETE FROM {table} WHERE project_id=? AND repo_id=?", (project_id, repo_id))
            state.db.execute(f"UPDATE {table} SET repo_id=? WHERE project_id=? AND repo_id=?",
                             (repo_id, project_id, old))
    return moved


def last_seen_commits(db: sqlite3.Connection, project_id: int, path: str) -> list[str]:
    """The commits a state (``db``) last saw of the local repository at ``path`` for project ``project_id``: its
    newest version's commit and its synced heads (one per revision). A repository that holds none of them is not the
    one the state's rows of ``path`` are of (another repository, or an older copy of it); ``[]`` when the state
    recorded none (a first sync interrupted before its head was recorded)."""
    version = db.execute("SELECT commit_sha FROM versions WHERE project_id=? AND repo_id=? AND commit_sha IS NOT NULL "
                         "ORDER BY version DESC LIMIT 1", (project_id, path)).fetchone()
    heads = db.execute("SELECT sha FROM heads WHERE project_id=? AND repo_id=?", (project_id, path))
    return list(dict.fromkeys([*(version or ()), *(row[0] for row in heads)]))


def earlier_paths(db: sqlite3.Connection, project_id: int, repo_id: str) -> dict[str, int]:
    """``{path: files}`` of the other local paths whose files a state (``db``) holds for project ``project_id`` and
    that were paths of the local repository ``repo_id``: it holds a commit the state last saw of them
    (:func:`last_seen_commits`, :func:`labelhub.sync.versions.restore_identity.holds_commit`), so it moved from
    there or is mounted there too. ``{}`` for a Hub repo."""
    from labelhub.sync.versions.restore_identity import holds_commit

    rows = db.execute("SELECT source, count(*) FROM imported WHERE project_id=? AND source LIKE '/%' AND source != ? "
                      "GROUP BY source", (project_id, repo_id)).fetchall()
    return {path: files for path, files in rows
            if any(holds_commit(repo_id, [sha]) for sha in last_seen_commits(db, project_id, path))}
