"""Files → tasks: one sync cycle that imports a repo's new files into a Label Studio project.

One cycle (:meth:`FileImporter.run`), through the crash-safe import ledger (:mod:`labelhub.sync.ledger`):

1. Resolve the revision to a commit sha: one Hub API call. If it is the sha synced last time and
   nothing is pending, stop there (no Label Studio call).
2. Finish what a crash left: files recorded as pending are looked up in Label Studio among the
   tasks created after the import began (``id > after_task_id``, ``data.hf_repo`` equal), and
   recorded; the others are imported again below. A state without any task for this repo adopts
   the project's existing tasks of the repo the same way (a lost state file creates no duplicates).
3. List the files at that sha, keep those matching the globs, and import the files that have no
   task, in batches (``--batch-size``, default 1,000): each batch is recorded as pending, imported
   with one Label Studio call, then recorded with its task ids.
4. A file that left the repo keeps its task, marked in ``meta``: ``{"hf_removed": true,
   "hf_removed_in": sha}``; a file that comes back is marked ``hf_removed: false``.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from labelhub.sync.files.selection import select_files
from labelhub.label_config import DataField, data_field
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.files.metadata import MetadataSpec, MetadataTable
from labelhub.repos import DatasetRepo, RepoFile
from labelhub.sync.state import SyncState
from labelhub.sync.files.payloads import build_file_task
from labelhub.sync.ledger import Entry, Item

log = logging.getLogger(__name__)


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
        batch_size: tasks per Label Studio import call.

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
    batch_size: int = 1000

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
        sha = self.repo.resolve(self.revision)
        ledger = self.state.ledger
        pending, _ = ledger.pending()
        if self.state.head(self.revision) == sha and not pending:
            return FileImportReport(sha, unchanged=True)
        report = FileImportReport(sha)
        report.recovered = ledger.recover(self._existing_tasks)
        if report.recovered:
            log.info("recovered %d tasks that Label Studio already had", report.recovered)
        files = select_files(self.repo.list_files(sha), self.include, self.exclude)
        report.files = len(files)
        known = ledger.known()
        new = [f for f in files if f.path not in known]
        present = {f.path for f in files}
        report.removed = sorted(p for p, removed_in in known.items() if removed_in is None and p not in present)
        report.restored = sorted(p for p, removed_in in known.items() if removed_in is not None and p in present)
        if new:
            report.created = self._import(new, sha)
        self._mark(report.removed, sha)
        self._mark(report.restored, None)
        self.state.set_head(self.revision, sha)
        log.info("%s@%s → project %s: %d files, %d tasks created, %d recovered, %d removed, %d restored",
                 self.repo.repo_id, sha[:12], self.project.project_id, report.files, report.created,
                 report.recovered, len(report.removed), len(report.restored))
        return report

    def _existing_tasks(self, after_task_id: int) -> list[Entry]:
        """The project's tasks of this repo with an id above ``after_task_id`` (for :meth:`ImportLedger.recover`)."""
        return [Entry(data["hf_path"], task_id, data.get("hf_revision", ""))
                for task_id, data in self.project.task_data(after_task_id, hf_repo=self.repo.repo_id)
                if data.get("hf_path") is not None]

    def _import(self, files: list[RepoFile], sha: str) -> int:
        table = None
        if self.metadata:
            table = MetadataTable(self.repo.read_file(sha, self.metadata.path), self.metadata)
        items = (Item(f.path, build_file_task(self.field, self._value(f, sha), self.repo.repo_id, f.path, sha,
                                              table.columns_for(f.path) if table else None), sha)
                 for f in files)
        return self.state.ledger.import_items(self.project, items, len(files), self.batch_size)

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
