"""Files → tasks: one sync cycle that imports a repo's new files into a Label Studio project.

One cycle (:meth:`FileImporter.run`), through the crash-safe import ledger (:mod:`labelhub.sync.ledger`):

1. Read the revision's commit sha and the repo's tags: one Hub API call (``list_repo_refs``), kept in the state for
   the export (:mod:`labelhub.sync.files.seen`). If it is the sha synced last time and nothing is pending, stop
   there (no Label Studio call).
2. Finish what a crash left: files recorded as pending are looked up in Label Studio among the
   tasks created after the import began (``id > after_task_id``, ``data.hf_repo`` equal), and
   recorded; the others are imported again below. A state without any task for this repo adopts
   the project's existing tasks of the repo the same way (a lost state file creates no duplicates). The listing's
   first page is fetched meanwhile.
3. List the files at that sha, keep those matching the globs, and import the files that have no
   task, in batches (``--batch-size``; the first call :data:`FIRST_BATCH` at most): each batch is recorded as
   pending, imported with one Label Studio call, then recorded with its task ids; the next batch is built, its
   request encoded and recorded as pending while a call runs (:meth:`labelhub.sync.ledger.ImportLedger.import_items`).
   The import starts as the listing's first page arrives; a file whose blob some task already shows waits for the
   whole listing (it may be a move).
4. Tasks follow their files (:func:`match_moves`): a file whose content changed (another git blob id at the
   same path) keeps its task, which now shows the new commit (its URL and ``hf_revision``) and keeps its
   annotations; a file renamed or moved (the same blob id at a new path in the same commit) keeps its task
   with the new path, and is neither a new task nor removed. A task recorded without a blob id (by ``labelhub
   restore`` or ``labelhub import-labels``) first learns the one of the revision it shows (:meth:`FileImporter
   ._learn_blob_ids`), so a file changed or moved since is followed too.
5. A file that left the repo keeps its task, marked in ``meta``: ``{"hf_removed": true,
   "hf_removed_in": sha}``; a file that comes back is marked ``hf_removed: false``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import chain, islice

from labelhub.sync.files.selection import iter_selected
from labelhub.label_config import DataField, data_field
from labelhub.errors import LabelHubError, RevisionNotFound
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.files.metadata import MetadataSpec, MetadataTable
from labelhub.repos import DatasetRepo, RepoFile
from labelhub.sync.state import SyncState
from labelhub.sync.files.payloads import build_file_task
from labelhub.sync.files.seen import remember_card, remember_refs
from labelhub.sync.ledger import Entry, Item, Known

log = logging.getLogger(__name__)

#: Entries of a page of a Hub listing (``list_repo_tree``): the first page is listed while the ledger's recovery
#: asks Label Studio for the tasks it already has (when it does: an empty ledger, or keys left pending).
LISTING_PAGE = 1000
#: Tasks of a cycle's first import call, at most: two listing pages, so Label Studio works on them while the next
#: pages are listed (a page costs us 25 to 70 ms, Label Studio 0.25 to 0.55 ms a task; measured on 2 busy cores).
#: Every call costs Label Studio about 0.1 s besides its tasks (10 calls of 1,000 tasks: 0.96 s more than one of
#: 10,000), so the next calls are as big as ``batch_size`` allows: two calls for 10,000 files. The split is worth
#: its 0.1 s: one call would wait for the whole listing (0.3 to 0.7 s for 10 pages), and the first tasks show in
#: Label Studio after 2,000 files' import rather than 10,000's. Smaller (one page) and Label Studio is done before
#: the other nine pages are listed and waits; larger and it starts later (``bench/sync_bench.py``).
FIRST_BATCH = 2000


def match_moves(gone: list[str], arrived: list[RepoFile], known: dict[str, Known]
                ) -> tuple[list[tuple[str, RepoFile]], list[RepoFile]]:
    """Pair files that left with files that arrived in the same commit with the same git blob id: a rename or a
    move across folders, whose task follows the file (pure).

    Args:
        gone: Paths with a task that are not in the commit.
        arrived: Files of the commit that have no task.
        known: The ledger's entries (:meth:`labelhub.sync.ledger.ImportLedger.entries`), for the blob ids.

    Returns:
        ``(moves, new)``: ``[(old path, file)]`` and the arrived files that are new. When several files share a
        blob (copies), they pair in path order and the rest are new.
    """
    left: dict[str, list[str]] = {}
    for path in sorted(gone):
        if known[path].blob_id:
            left.setdefault(known[path].blob_id, []).append(path)
    moves, new = [], []
    for file in sorted(arrived, key=lambda f: f.path):
        olds = left.get(file.oid)
        if olds:
            moves.append((olds.pop(0), file))
        else:
            new.append(file)
    return moves, new


@dataclass
class FileImportReport:
    """What a cycle did. ``unchanged`` is true when the head had not moved."""

    sha: str
    unchanged: bool = False
    files: int = 0
    created: int = 0
    recovered: int = 0
    removed: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class FileImporter:
    """Imports the files of ``repo`` into ``project``, never twice.

    Attributes:
        repo: the dataset repo.
        project: the Label Studio project (its label config names the data key).
        state: the sync state.
        revision: the branch, tag or sha to follow.
        include, exclude: globs (:func:`labelhub.sync.files.selection.select_files`); ``include=None`` uses the
            object tag's defaults (image extensions for Image, ``*.txt`` for Text, ...).
        metadata: the optional metadata join.
        batch_size: tasks per Label Studio import call (at most; and at most
            :data:`labelhub.sync.ledger.MAX_BATCH_BYTES` of URLs or texts). The first call of a cycle carries at
            most :data:`FIRST_BATCH`: it starts while the listing's next pages arrive.

    Raises:
        labelhub.errors.LabelConfigError: at construction, when the label config has no object tag a
            file can fill.
    """

    repo: DatasetRepo
    project: LabelStudioProject
    state: SyncState
    revision: str = "main"
    include: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    metadata: MetadataSpec | None = None
    batch_size: int = 10_000

    def __post_init__(self):
        self.field: DataField = data_field(self.project.label_config)
        if not self.include:
            self.include = self.field.default_include

    def run(self) -> FileImportReport:
        """Run one cycle (see the module docstring) and return its report.

        Raises:
            labelhub.errors.LabelHubError: the repo, the revision or the project is gone, or Label Studio
                refused a call; what was imported before the error is recorded.
        """
        ledger = self.state.ledger
        pending, _ = ledger.pending()
        synced = self.state.head(self.revision)
        card: list[str] = []  # README.md's blob id, for the export (labelhub.sync.files.seen)

        def listing(sha: str) -> Iterator[RepoFile]:
            for file in self.repo.iter_files(sha):
                if file.path == "README.md":
                    card.append(file.oid)
                yield file

        # The recovery (a Label Studio query when the ledger is empty or has keys pending, else nothing) runs while
        # the Hub is read: from the start when the cycle has work for sure (a first sync, keys pending), else from
        # the head's move. It writes the state from its thread: no state access here until its answer.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelhub-recover") as asking:
            recovering = asking.submit(ledger.recover, self._existing_tasks) if pending or synced is None else None
            sha, tags = self.repo.head_and_tags(self.revision)
            if recovering is None:
                if synced == sha:
                    remember_refs(self.state, self.repo.repo_id, self.revision, sha, tags)
                    return FileImportReport(sha, unchanged=True)
                recovering = asking.submit(ledger.recover, self._existing_tasks)
            listed = listing(sha)
            first_page = list(islice(listed, LISTING_PAGE))
            recovered = recovering.result()
        remember_refs(self.state, self.repo.repo_id, self.revision, sha, tags)
        report = FileImportReport(sha, recovered=recovered)
        if report.recovered:
            log.info("recovered %d tasks that Label Studio already had", report.recovered)
        known = self._learn_blob_ids(ledger.entries(), sha)
        table = self._metadata_table(sha)
        files: list[RepoFile] = []
        held: list[RepoFile] = []  # no task, but a blob some task shows: maybe a move, known once the listing is whole

        def fresh() -> Iterator[RepoFile]:
            blobs = {k.blob_id for k in known.values() if k.blob_id}
            for file in iter_selected(chain(first_page, listed), self.include, self.exclude):
                files.append(file)
                if file.path in known:
                    continue
                if file.oid in blobs:
                    held.append(file)
                    continue
                yield file

        report.created = self._import(fresh(), sha, None, table)  # imports while the listing pages arrive
        report.files = len(files)
        by_path = {f.path: f for f in files}
        gone = [p for p, k in known.items() if k.removed_in is None and p not in by_path]
        moves, new = match_moves(gone, held, known)
        moved_from = {old for old, _ in moves}
        changed = [f for f in files if f.path in known and known[f.path].blob_id not in ("", f.oid)]
        unknown = [(f.path, f.oid) for f in files if f.path in known and not known[f.path].blob_id]
        if unknown:  # shows this commit, or its revision lacks the file: remember the blob id, nothing to follow
            ledger.set_blob_ids(unknown)
        report.removed = sorted(p for p in gone if p not in moved_from)
        report.restored = sorted(p for p, k in known.items() if k.removed_in is not None and p in by_path)
        report.moved = [(old, f.path) for old, f in moves]
        report.changed = [f.path for f in changed]
        if new:
            report.created += self._import(iter(new), sha, len(new), table)
        self._follow(moves + [(f.path, f) for f in changed], sha, known, table)
        if table and (unmatched := table.unmatched_warning()):
            log.warning("%s", unmatched)
        if moves:  # the same content at a new path: what was annotated is the file at the new path of this commit
            self.state.repin_annotations([known[old].task_id for old, _ in moves], sha)
        self._mark(report.removed, sha)
        self._mark(report.restored, None)
        self.state.add_file_changes({"new": report.created, "changed": len(report.changed), "moved": len(report.moved),
                                     "removed": len(report.removed), "restored": len(report.restored)})
        self.state.set_head(self.revision, sha)
        remember_card(self.state, self.repo.repo_id, sha, card[0] if card else None)
        log.info("%s@%s → project %s: %d files, %d tasks created, %d recovered, %d changed, %d moved, %d removed, "
                 "%d restored", self.repo.repo_id, sha[:12], self.project.project_id, report.files, report.created,
                 report.recovered, len(report.changed), len(report.moved), len(report.removed), len(report.restored))
        return report

    def _existing_tasks(self, after_task_id: int) -> list[Entry]:
        """The project's tasks of this repo with an id above ``after_task_id`` (for :meth:`ImportLedger.recover`).

        When Label Studio's summary counts no task with ``hf_path`` in its data
        (:meth:`LabelStudioProject.data_columns`: about 20 ms), there is none and the Data Manager query (70 to 90 ms,
        before a first sync's first import call) is not made; when the summary cannot be read, it is."""
        try:
            columns = self.project.data_columns()
        except LabelHubError:
            columns = None  # the query below says what is wrong, if anything
        if columns is not None and not columns.get("hf_path"):
            return []
        return [Entry(data["hf_path"], task_id, data.get("hf_revision", ""))
                for task_id, data in self.project.task_data(after_task_id, hf_repo=self.repo.repo_id)
                if data.get("hf_path") is not None]

    def _metadata_table(self, sha: str) -> MetadataTable | None:
        if self.metadata is None:
            return None
        return MetadataTable(self.repo.read_file(sha, self.metadata.path), self.metadata)

    def _data(self, file: RepoFile, sha: str, table: MetadataTable | None) -> dict:
        return build_file_task(self.field, self._value(file, sha), self.repo.repo_id, file.path, sha,
                               table.columns_for(file.path) if table else None)

    def _learn_blob_ids(self, known: dict[str, Known], sha: str) -> dict[str, Known]:
        """``known`` with the blob ids of the tasks recorded without one, read at the revision each task shows, and
        remembered in the ledger.

        ``labelhub restore`` and ``labelhub import-labels`` record the tasks they make from a repo's files under
        the repo's source without a blob id (they read a version's CSV or a labels file, not the repo's listing),
        and so did LabelHub before blob ids were kept. Taken from the listing of this cycle's commit, a file
        changed or moved since the revision its task shows would look unchanged, or new: its task would not follow
        it, or a second task would be made. One :meth:`labelhub.repos.DatasetRepo.blob_ids` call per revision
        (per 1,000 paths), once: the ids are recorded. Tasks of this very commit are left to the listing.
        """
        by_revision: dict[str, list[str]] = {}
        for path, entry in known.items():
            if not entry.blob_id and entry.revision and entry.revision != sha and entry.removed_in is None:
                by_revision.setdefault(entry.revision, []).append(path)
        learned: dict[str, str] = {}
        for revision, paths in by_revision.items():
            try:
                learned.update(self.repo.blob_ids(revision, paths))
            except RevisionNotFound:  # a revision the repo no longer holds (a force-push): left to the listing
                log.warning("%s: revision %s of %d tasks is gone: their files are taken as they are now",
                            self.repo.repo_id, revision[:12], len(paths))
        if not learned:
            return known
        self.state.ledger.set_blob_ids(learned.items())
        return {path: replace(entry, blob_id=learned[path]) if path in learned else entry
                for path, entry in known.items()}

    def _import(self, files: Iterator[RepoFile], sha: str, total: int | None, table: MetadataTable | None) -> int:
        return self.state.ledger.import_items(self.project, self._items(files, sha, table), total, self.batch_size,
                                              first_batch_size=FIRST_BATCH)

    def _items(self, files: Iterator[RepoFile], sha: str, table: MetadataTable | None) -> Iterator[Item]:
        """The ledger items of ``files``, built as the ledger asks for them (size: the URL's or text's length)."""
        for file in files:
            payload = self._data(file, sha, table)
            size = len(payload["data"][self.field.value_key]) + 200
            yield Item(file.path, payload, sha, blob_id=file.oid, size=size)

    def _follow(self, pairs: list[tuple[str, RepoFile]], sha: str, known: dict[str, Known],
                table: MetadataTable | None) -> None:
        """Point the tasks of ``(old path, file)`` pairs at ``file`` at ``sha``: its URL (or text), ``hf_path``,
        ``hf_revision`` and metadata change, its annotations stay. One read and one update call per task,
        then one ledger write; a crash in between repeats the updates (they are idempotent)."""
        if not pairs:
            return
        for old, file in pairs:
            self.project.update_data(known[old].task_id, self._data(file, sha, table)["data"])
        self.state.ledger.follow([(old, file.path, sha, file.oid) for old, file in pairs])

    def _value(self, file: RepoFile, sha: str) -> str:
        if self.field.as_url:
            return self.repo.file_url(sha, file.path)
        return self.repo.read_file(sha, file.path).decode("utf-8", errors="replace")

    def _mark(self, paths: list[str], removed_in: str | None) -> None:
        if not paths:
            return
        for path, task_id in self.state.ledger.task_ids(paths).items():
            self.project.update_meta(task_id, {"hf_removed": removed_in is not None, "hf_removed_in": removed_in})
        self.state.ledger.set_removed(paths, removed_in)
