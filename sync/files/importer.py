"""Files → tasks: one sync cycle that imports a repo's new files into a Label Studio project.

One cycle (:meth:`FileImporter.run`), through the crash-safe import ledger (:mod:`labelhub.sync.ledger`):

1. Read the revision's commit sha and the repo's tags: one Hub API call (``list_repo_refs``), kept in the state for
   the export (:mod:`labelhub.sync.files.seen`). If it is the sha synced last time, the files are selected as in the
   project's last completed cycle (:meth:`FileImporter.selection`: the revision, the globs, the metadata join; the
   ledger is shared by all of them) and nothing is pending, stop there (no Label Studio call), unless that cycle's
   listing left git LFS files out, their objects not fetched: the head is listed again every
   :data:`LFS_RELIST_SECONDS` meanwhile (``git lfs fetch`` does not move the branch).
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
   ._learn_blob_ids`), so a file changed or moved since is followed too. A moved or re-pinned task's annotations
   made on the content it showed name the new commit (older ones keep theirs:
   :meth:`labelhub.sync.state.SyncState.repin_annotations`), and a task's annotations are stored before its data
   changes, with the revision they were made on (:meth:`FileImporter._store_annotations`).
5. A file that left the repo keeps its task, marked in ``meta``: ``{"hf_removed": true,
   "hf_removed_in": sha}``; a file that comes back is marked ``hf_removed: false``. A file still in the commit
   but no longer selected (a new ``--exclude``) is not removed: its task is left as it is (a log line says so). So is
   a file moved to a path that is not selected (the same blob): the ledger records its new path, and a move back into
   the selection is followed by the same task (:meth:`FileImporter._moves_outside`).
6. A task whose commit the repo no longer holds (a rewritten history) while the head holds the same blob at the
   same path is re-pinned to the head (:meth:`FileImporter._repins`): at once when the last cycle's commit is gone,
   and also when a commit was pruned after the rewrite was synced (the head moved or not): every
   :data:`RECHECK_SECONDS` the commits the tasks show are looked up, in step 1's short-circuit too, which stops there
   only when none of them is found gone.
7. When the file URL policy changed since the last completed cycle (:meth:`FileImporter.url_form`: ``--file-urls``,
   ``LABELHUB_PUBLIC_URL``, ``LABELHUB_SECRET``, ``--url-lifetime``, a Hub repo's visibility), every task's URL is
   rebuilt from its ``hf_path`` and ``hf_revision`` and rewritten where it differs (:meth:`FileImporter
   ._rewrite_urls`): tasks made under an older policy load again. The policy is part of the selection, so the
   short-circuit of step 1 costs nothing more when nothing changed. The tasks step 2 adopted (made by ``labelhub
   import-labels`` or ``labelhub restore``, maybe with another ``LABELHUB_PUBLIC_URL`` or ``LABELHUB_SECRET``, or
   a lost state's) get their URLs checked the same way whatever the policy did (:meth:`FileImporter
   ._rewrite_adopted_urls`): only those tasks, one Data Manager query per 200 and a call per URL that differs.
8. An adopted task of a path a file moved to (an import of the new path run after a ``git mv`` and before the
   sync followed it) does not make the old path look removed: the old task follows its file and the adopted one
   is marked as its duplicate (:meth:`FileImporter._adopted_duplicates`, a warning naming both).

9. When the metadata join changed since the last completed cycle (the CSV's blob id, or ``--metadata``,
   ``--metadata-key``, ``--metadata-columns``), every task's metadata columns are brought to its row
   (:meth:`FileImporter._refresh_metadata`): a corrected title reaches the tasks made before, a column the row no
   longer has leaves them (and a task whose file changed or moved gets its row's columns, without the former
   ones). A state of an older LabelHub recorded no blob id: its first cycle after the head moved checks every task
   once.

The updates of steps 4 to 9 run a few at once (a task's own one after the other: a file removed and back with another
content gets its ``data`` and its ``meta`` updated) and are recorded as they land (:meth:`FileImporter._update`); a task
deleted in Label Studio is recorded as such (its file is never imported again) and the cycle goes on. A file whose
name a file URL cannot carry (a backslash, a control character) is left out with a warning.

A selection that matches none of the commit's files is said in one warning naming the filter that removed them (the
object tag's default file types, ``--include`` or ``--exclude``: :meth:`FileImporter._warn_none_selected`); the cycle
goes on. The cycle's log line names up to 5 files of each kind: created, changed, moved, removed, restored.

A text whose task would hold it (a ``<Text>`` without ``valueType="url"``) larger than :data:`MAX_TEXT_BYTES` is left
out with a warning naming it and its size, before it is read; every other file is imported. A task URL longer than
:data:`labelhub.file_urls.MAX_URL_LENGTH` (a deep path of non-ASCII names: each byte is 3 characters once
percent-encoded) is said in one warning per cycle naming its files; decided: such a file still gets its task, since
its URL may load (behind a server with a larger limit, or as a Hub ``resolve`` URL after a policy change rewrites it),
and a ``git mv`` to a shorter path then keeps the task and its annotations (step 4).
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
import json
import re
from pathlib import PurePosixPath
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from itertools import chain, islice

from labelhub.sync.files.selection import ALWAYS_EXCLUDE, iter_selected, shown_by
from labelhub.file_urls import MAX_URL_LENGTH, warn_long_urls
from labelhub.label_config import DataField, data_field, task_data_keys
from labelhub.errors import ConfigurationError, LabelConfigError, LabelHubError, RevisionNotFound
from labelhub.cli_options import progress_bar
from labelhub.sync.labelstudio.project import LabelStudioProject, TaskNotFound
from labelhub.sync.files.metadata import RESERVED_KEYS, MetadataSpec, MetadataTable
from labelhub.repos import DatasetRepo, RepoFile
from labelhub.repos.texts import decode_task_text
from labelhub.sync.state import SyncState
from labelhub.sync.annotations.intake import store_before_change
from labelhub.sync.files.payloads import build_file_task
from labelhub.sync.files.seen import remember_card, remember_refs
from labelhub.signing import SignatureError, parse_file_url, verify
from labelhub.sync.ledger import MAX_BATCH_BYTES, Entry, Item, Known

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
#: Task updates (a move, a change, a removal: one ``PATCH`` each) in flight at once: a few keep Label Studio busy
#: without crowding out the annotators. On 2 busy cores (``bench/follow_bench.py --files 500``): 500 moves 41.9 s
#: against 75.5 s for a GET then a PATCH a task in turn (0.55), 500 removals 32.4 s against 53.0 s (0.61), both
#: with the 1.8 s of the process's start; Label Studio's own time per PATCH is most of what is left.
UPDATE_WORKERS = 4
#: Tasks whose current data are read with one Data Manager query before their updates.
UPDATE_CHUNK = 200
#: Finished updates recorded in the ledger per transaction (each an fsync): a restart redoes at most these.
RECORD_EVERY = 20
#: A progress log line every so many updated tasks.
LOG_EVERY = 500
#: The state cursor of the project's last completed cycle: ``{"sha", "selection"}`` (:meth:`FileImporter.selection`).
LAST_CYCLE = "import_last_cycle"
#: The commit of the placeholder file whose URL shows the URL policy's form (:meth:`FileImporter.url_form`).
PLACEHOLDER_SHA = "0" * 40
#: A commit sha, which a task's URL is rebuilt at (:meth:`FileImporter._rewrite_urls`).
_SHA = re.compile(r"[0-9a-f]{40}")
#: A backslash or a control character: a name a signed file URL cannot carry (:func:`labelhub.signing.is_safe_path`).
_ODD_NAME = re.compile(r"[\x00-\x1f\x7f\\]")
#: The largest file (bytes, as listed) whose text a task holds inline (a ``<Text>`` without ``valueType="url"``); a
#: larger one is left out with a warning, unread. Label Studio refuses a request body over its
#: ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (250 MiB by default, ``label_studio/core/settings/base.py``) with a 500 that names
#: no task, so one such file stopped every later import. Decided: :data:`labelhub.sync.ledger.MAX_BATCH_BYTES`
#: (16 MiB), not a setting: JSON escapes at most 6 bytes a byte (``\u0001``), so a lone task stays under 96 MiB,
#: well within Label Studio's limit even lowered, and a text that long is past what its labeling page shows well;
#: point a ``<Text valueType="url">`` config at such files instead.
MAX_TEXT_BYTES = MAX_BATCH_BYTES
#: Seconds between two sweeps of the commits the tasks show (:meth:`FileImporter._repins`): a history rewritten and
#: pruned later (tags deleted, ``git gc``) is seen within this time, at the cost of one call (``git rev-parse`` or a
#: Hub ``repo_info``) per distinct commit the tasks show per sweep. The time is kept in the state
#: (:data:`REPIN_SWEEP`), so ``--once`` runs from cron sweep no more often than a daemon.
RECHECK_SECONDS = 3600
#: The state cursor holding the last sweep's time (``time.time()``).
REPIN_SWEEP = "import_repin_sweep"
#: Seconds after which step 1's short-circuit lists an unmoved head again when its last listing left git LFS files
#: out, their objects not fetched (:attr:`labelhub.repos.git.LocalGitRepo.lfs_unfetched`, kept in
#: :data:`LAST_CYCLE`): ``git lfs fetch`` does not move the branch, and the files would wait for its next commit.
#: Decided: a bound, not every poll: a listing cycle of 20,000 files took 0.27 s where the short-circuit takes
#: 0.06 s, and it grows with the repo while nothing else changes.
LFS_RELIST_SECONDS = 300


def _files_part(selection: dict) -> dict:
    """A :meth:`FileImporter.selection` without its file URL policy: what selects the files."""
    return {key: value for key, value in selection.items() if key != "file_urls"}


def _names(names: Sequence[str], most: int = 5) -> str:
    """Up to ``most`` of ``names``, then how many more: ``"a.png, b.png, ... (+12)"``."""
    shown = ", ".join(names[:most])
    return f"{shown}, ... (+{len(names) - most})" if len(names) > most else shown


def _duplicate_key(path: str, task_id: int) -> str:
    """The ledger key an adopted task that duplicates a moved file's task is kept under (:meth:`FileImporter
    ._adopted_duplicates`): never a path of the repo (git paths hold no NUL), so the file is never imported again
    for it, and the task stays known (a lost state would adopt it again otherwise)."""
    return f"{path}\x00duplicate task {task_id}"


def _is_duplicate_key(key: str) -> bool:
    """Whether a ledger key is one of :func:`_duplicate_key` (git paths hold no NUL)."""
    return "\x00" in key


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
    repinned: list[str] = field(default_factory=list)
    rewritten: int = 0
    metadata: int = 0


@dataclass(frozen=True)
class _Update:
    """One task to update: its ``data`` to show ``file`` (``kind="data"``), its ``meta``'s removal mark
    (``kind="meta"``), or its file URL under the current policy (``kind="url"``); ``record`` is what the ledger
    records once it landed: ``("follow", old key, new key, sha, blob_id)`` or ``("removed", key, sha or None)``, or
    for a URL nothing: ``("url", resign, exact)`` (see :meth:`FileImporter._rewrite_urls`)."""

    key: str
    known: Known
    kind: str
    file: RepoFile | None
    record: tuple


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
    _long_urls: list[str] = field(default_factory=list, init=False, repr=False)
    _created: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self):
        self.field: DataField = data_field(self.project.label_config)
        if not self.include:
            self.include = self.field.default_include
        if self.metadata is None or self.metadata.columns:  # else the CSV's header says, at the first cycle
            self._check_data_keys(self.metadata.columns if self.metadata else (), LabelConfigError)

    def _check_data_keys(self, columns: Iterable[str], error: type[LabelHubError]) -> None:
        """Refuse a label config that requires task data keys (:func:`labelhub.label_config.task_data_keys`) neither
        the file nor the metadata join's ``columns`` fill: Label Studio would answer 400 to every import (``"question"
        key is expected in task data``) and the sync would retry it for ever. Raised before anything is imported, as
        ``error`` (a :class:`~labelhub.errors.LabelConfigError` at start, a
        :class:`~labelhub.errors.ConfigurationError`, which stops the daemon, once a metadata CSV's header is read).
        """
        filled = {self.field.value_key, *columns}
        missing = {k: tag for k, tag in task_data_keys(self.project.label_config).items() if k not in filled}
        if not missing:
            return
        named = ", ".join(f"{k!r} ({tag})" for k, tag in list(missing.items())[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        join = (f"the metadata CSV {self.metadata.path} has no such column" if self.metadata else
                "give each a column of a metadata CSV (--metadata FILE, one row per file)")
        raise error(f"the label config of Label Studio project {self.project.project_id} reads task data the sync "
                    f"cannot fill: {named}{more}. The sync fills {self.field.value_key!r} (<{self.field.tag} "
                    f"name={self.field.name!r}>) with each file; {join}, or take those tags out of the label config")

    def selection(self) -> dict:
        """What selects this importer's files and makes their tasks (JSON types): the revision followed, the globs,
        the metadata join, the object tag's data key and the file URL policy (:meth:`url_form`). The cycle's
        short-circuit holds only when it is the one of the project's last completed cycle (:data:`LAST_CYCLE`)."""
        selection = {"repo": self.repo.repo_id, "revision": self.revision, "include": list(self.include or ()),
                     "exclude": list(self.exclude), "metadata": asdict(self.metadata) if self.metadata else None,
                     "value_key": self.field.value_key, "as_url": self.field.as_url, "file_urls": self.url_form()}
        return json.loads(json.dumps(selection))  # as the cursor reads back (tuples become lists)

    def url_form(self) -> dict | None:
        """What a task's file URL takes from the URL policy besides its file (JSON types, no secret), or ``None`` when
        the tasks hold texts: the URL of a placeholder file without its query (the form, Hub ``resolve`` or the
        backend's ``/files`` route, with its host and the repo's key), whether it is signed, and the policy's
        :meth:`labelhub.file_urls.FileURLs.signing_key` (a digest of the secret, the lifetime). No call: a Hub repo's
        visibility is the one its last listing or :meth:`labelhub.repos.DatasetRepo.resolve` saw."""
        if not self.field.as_url:
            return None
        sample = self.repo.file_url(PLACEHOLDER_SHA, "x")
        policy = getattr(self.repo, "file_urls", None)  # a labelhub.file_urls.FileURLs, when the repo has one
        signed = "sig=" in sample
        return {"url": sample.split("?")[0], "signed": signed, **(policy.signing_key() if signed and policy else {})}

    def _last_cycle(self) -> dict | None:
        """``{"sha": commit, "selection": ...}`` of the project's last completed cycle (``None``: none recorded)."""
        try:
            last = json.loads(self.state.cursor(LAST_CYCLE) or "null")
        except ValueError:
            return None
        return last if isinstance(last, dict) and last.get("selection", {}).get("repo") == self.repo.repo_id else None

    def run(self) -> FileImportReport:
        """Run one cycle (see the module docstring) and return its report.

        Raises:
            labelhub.errors.LabelHubError: the repo, the revision or the project is gone, or Label Studio
                refused a call; what was imported before the error is recorded. A task deleted in Label Studio is
                no error: it is recorded as deleted (:meth:`labelhub.sync.ledger.ImportLedger.set_deleted`).
        """
        ledger = self.state.ledger
        pending, _ = ledger.pending()
        synced = self.state.head(self.revision)
        self._swept_gone: list[str] | None = None  # what a sweep of step 1's short-circuit found gone
        last = self._last_cycle()
        selection = self.selection()
        # nothing to do only when the commit AND what selects the files are those of the last completed cycle (the
        # export's own commit moves ``heads`` forward: :meth:`labelhub.sync.versions.exporter.Exporter`); another
        # revision, glob or join reads the listing again, since the ledger is shared by all of them
        same_selection = last is not None and last.get("selection") == selection
        card: list[str] = []  # README.md's blob id, for the export (labelhub.sync.files.seen)
        metadata_oid: list[str] = []  # the metadata CSV's blob id at this commit
        in_commit: set[str] = set()  # every path of the commit, selected or not

        def listing(sha: str) -> Iterator[RepoFile]:
            for file in self.repo.iter_files(sha):
                if file.path == "README.md":
                    card.append(file.oid)
                elif self.metadata is not None and file.path == self.metadata.path:
                    metadata_oid.append(file.oid)
                in_commit.add(file.path)
                yield file

        # The recovery (a Label Studio query when the ledger is empty or has keys pending, else nothing) runs while
        # the Hub is read: from the start when the cycle has work for sure (a first sync, keys pending), else from
        # the head's move. It writes the state from its thread: no state access here until its answer.
        looked_up: list[Entry] = []  # what the recovery's lookup answered: the tasks it adopts are among them

        def lookup(after_task_id: int) -> list[Entry]:
            entries = self._existing_tasks(after_task_id)
            looked_up.extend(entries)
            return entries

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelhub-recover") as asking:
            first = pending or (synced is None and last is None)
            recovering = asking.submit(ledger.recover, lookup) if first else None
            sha, tags = self.repo.head_and_tags(self.revision)
            if recovering is None:
                if synced == sha and same_selection and not self._lfs_relist_due(last) and not self._swept_now(sha):
                    remember_refs(self.state, self.repo.repo_id, self.revision, sha, tags)
                    return FileImportReport(sha, unchanged=True)
                recovering = asking.submit(ledger.recover, lookup)
            listed = listing(sha)
            first_page = list(islice(listed, LISTING_PAGE))
            unfetched = getattr(self.repo, "lfs_unfetched", 0)  # of this listing (a local repo's; a Hub repo has none)
            recovered = recovering.result()
        if last is not None and _files_part(last["selection"]) != _files_part(selection):  # any sha (dev -> dev2 too)
            log.info("%s@%s: the files are selected otherwise than at the last cycle (revision, --include, "
                     "--exclude or --metadata): listing them again", self.repo.repo_id, sha[:12])
        remember_refs(self.state, self.repo.repo_id, self.revision, sha, tags)
        report = FileImportReport(sha, recovered=recovered)
        if report.recovered:
            log.info("recovered %d tasks that Label Studio already had", report.recovered)
        known = self._learn_blob_ids(ledger.entries(), sha)
        # the tasks recorded by this recovery (made by import-labels or restore, maybe with another state file and
        # another URL policy, or a lost state's): their URLs are checked below, and one may duplicate a moved file's
        adopted = {e.key for e in looked_up if e.key in known and known[e.key].task_id == e.task_id} \
            if recovered else set()
        table = self._metadata_table(sha)
        if table is not None and not self.metadata.columns:
            self._check_data_keys(table.columns, ConfigurationError)
        files: list[RepoFile] = []
        held: list[RepoFile] = []  # no task, but a blob some task shows: maybe a move, known once the listing is whole
        shown_blob: list[RepoFile] = []  # the same, selected or not: a move may leave the globs (_moves_outside)
        left_out: list[str] = []  # names a file URL cannot carry
        too_big: list[RepoFile] = []  # texts too large for a task to hold (MAX_TEXT_BYTES)
        self._long_urls = []  # files whose task URL is longer than MAX_URL_LENGTH (_data)
        self._created = []  # the paths of the files given to the ledger to import (_items), for the cycle's line

        blobs = {k.blob_id for k in known.values() if k.blob_id}

        def noting(every: Iterable[RepoFile]) -> Iterator[RepoFile]:
            for file in every:
                if file.oid in blobs and file.path not in known:
                    shown_blob.append(file)
                yield file

        def fresh() -> Iterator[RepoFile]:
            for file in iter_selected(noting(chain(first_page, listed)), self.include, self.exclude):
                if self.field.as_url and _ODD_NAME.search(file.path) and not self._url_ok(sha, file.path):
                    left_out.append(file.path)
                    continue
                if not self.field.as_url and file.size > MAX_TEXT_BYTES:  # never read: its task would stop the import
                    too_big.append(file)
                    continue
                files.append(file)
                if file.path in known:
                    continue
                if file.oid in blobs:
                    held.append(file)
                    continue
                yield file

        report.created = self._import(fresh(), sha, None, table)  # imports while the listing pages arrive
        report.files = len(files)
        if not files and not left_out and not too_big:
            self._warn_none_selected(sha, in_commit)
        if left_out:
            log.warning("%s@%s: %d files are left out: a file URL cannot carry their names (a backslash or a "
                        "control character): %s", self.repo.repo_id, sha[:12], len(left_out),
                        _names([repr(p) for p in sorted(left_out)]))
        if too_big:
            log.warning("%s@%s: %d files are left out: their texts are too large for a task to hold (over %.1f MB; "
                        "a task holds its text, and Label Studio refuses an import call over its "
                        "DATA_UPLOAD_MAX_MEMORY_SIZE): %s; a task that already shows one is left as it is. For such "
                        "files use <Text valueType=\"url\">", self.repo.repo_id, sha[:12], len(too_big),
                        MAX_TEXT_BYTES / 1e6, _names([f"{f.path} ({f.size / 1e6:,.1f} MB)"
                                                      for f in sorted(too_big, key=lambda f: f.path)]))
        by_path, big_paths = {f.path: f for f in files}, {f.path for f in too_big}
        gone = [p for p, k in known.items() if k.removed_in is None and p not in in_commit]
        unselected = sorted(p for p, k in known.items() if k.removed_in is None and p in in_commit
                            and p not in by_path and p not in left_out and p not in big_paths)
        if unselected:  # decided: a file still in the commit is not removed (README: "Tasks follow their files")
            log.info("%s@%s: %d files with a task are in the commit but not selected (--include/--exclude): their "
                     "tasks are left as they are, not marked removed: %s", self.repo.repo_id, sha[:12],
                     len(unselected), _names(unselected))
        # a duplicate's key whose mark a failed cycle did not land is gone too, but never a moved file's task: its
        # path may sort before the file's old one (match_moves pairs in path order), and it would take the move
        files_gone = [p for p in gone if not _is_duplicate_key(p)]
        moves, new = match_moves(files_gone, held, known)
        moved_from = {old for old, _ in moves}
        duplicates = self._adopted_duplicates([p for p in files_gone if p not in moved_from], adopted, by_path, known)
        if duplicates:  # the file's old task follows it; the adopted one is renamed out of its way
            ledger.follow([(f.path, _duplicate_key(f.path, known[f.path].task_id), sha, f.oid) for _, f in duplicates])
        moves += duplicates
        moved_from.update(old for old, _ in duplicates)
        outside = self._moves_outside([p for p in files_gone if p not in moved_from], [
            f for f in shown_blob if f.path not in by_path and f.path not in left_out and f.path not in big_paths],
            known, sha)
        moved_from.update(old for old, _ in outside)
        followed = {f.path for _, f in duplicates}  # their adopted task is out of the way: the old one follows
        changed = [f for f in files if f.path in known and f.path not in followed
                   and known[f.path].blob_id not in ("", f.oid)]
        unknown = [(f.path, f.oid) for f in files if f.path in known and f.path not in followed
                   and not known[f.path].blob_id]
        if unknown:  # shows this commit, or its revision lacks the file: remember the blob id, nothing to follow
            ledger.set_blob_ids(unknown)
        repins = self._repins({p: k for p, k in known.items() if p not in followed}, by_path, sha,
                              last.get("sha") if last else synced)
        report.removed = sorted(p for p in gone if p not in moved_from)
        report.restored = sorted(p for p, k in known.items() if k.removed_in is not None and p in by_path)
        report.moved = [(old, f.path) for old, f in moves]
        report.changed = [f.path for f in changed]
        report.repinned = [f.path for f in repins]
        if new:
            report.created += self._import(iter(new), sha, len(new), table)
        if table and (unmatched := table.unmatched_warning(by_path)):
            log.warning("%s", unmatched)
        if moves or repins:  # the same content at a new path, or at a new commit: what was annotated is that file
            self.state.repin_annotations([(known[old].task_id, known[old].revision) for old, _ in moves]
                                         + [(known[f.path].task_id, known[f.path].revision) for f in repins], sha)
        updates = [_Update(old, known[old], "data", file, ("follow", old, file.path, sha, file.oid))
                   for old, file in moves + [(f.path, f) for f in changed + repins]]
        updates += [_Update(p, known[p], "meta", None, ("removed", p, sha)) for p in report.removed]
        updates += [_Update(p, known[p], "meta", None, ("removed", p, None)) for p in report.restored]
        updates += [_Update(file.path, known[file.path], "duplicate", None,
                            ("removed", _duplicate_key(file.path, known[file.path].task_id), sha, known[old].task_id))
                    for old, file in duplicates]
        joined = {"metadata_oid": metadata_oid[0] if metadata_oid else None}
        if unfetched:  # the head is listed again (_lfs_relist_due)
            joined.update(lfs_unfetched=unfetched, listed_at=time.time())
        join_moved = last is not None and bool(selection["metadata"] or last["selection"].get("metadata")) and (
            last["selection"].get("metadata"), last.get("metadata_oid")) != (selection["metadata"], joined["metadata_oid"])
        stale = self._metadata_columns(table, last if join_moved else None)
        self._update(updates, sha, table, stale)
        warn_long_urls(sorted(self._long_urls), self.repo.repo_id, sha, log)
        if join_moved:
            report.metadata = self._refresh_metadata(table, stale, {u.known.task_id for u in updates if u.kind == "data"})
        selection["file_urls"] = self.url_form()  # after the listing, which refreshed a Hub repo's visibility
        if last is not None and selection["file_urls"] is not None and \
                last["selection"].get("file_urls") != selection["file_urls"]:
            report.rewritten = self._rewrite_urls(last["selection"].get("file_urls"), selection["file_urls"],
                                                  {u.known.task_id for u in updates if u.kind == "data"})
        if adopted and selection["file_urls"] is not None:  # after a policy change too: their secret may be another
            report.rewritten += self._rewrite_adopted_urls(
                {p: known[p] for p in adopted - {f.path for _, f in duplicates}}, {u.known.task_id for u in updates})
        self.state.add_file_changes({"new": report.created, "changed": len(report.changed), "moved": len(report.moved),
                                     "removed": len(report.removed), "restored": len(report.restored)})
        self.state.set_head(self.revision, sha)
        self.state.set_cursor(LAST_CYCLE, json.dumps({"sha": sha, "selection": selection, **joined}, sort_keys=True))
        remember_card(self.state, self.repo.repo_id, sha, card[0] if card else None)
        names = "".join(f"; {kind}: {_names(paths)}" for kind, paths in (
            ("created", sorted(self._created)), ("changed", report.changed),
            ("moved", [f"{a} → {b}" for a, b in report.moved]),
            ("removed", report.removed), ("restored", report.restored), ("re-pinned", report.repinned)) if paths)
        repinned = f", {len(report.repinned)} re-pinned" if report.repinned else ""  # said only when some were
        log.info("%s@%s → project %s: %d files, %d tasks created, %d recovered, %d changed, %d moved, %d removed, "
                 "%d restored%s%s", self.repo.repo_id, sha[:12], self.project.project_id, report.files, report.created,
                 report.recovered, len(report.changed), len(report.moved), len(report.removed), len(report.restored),
                 repinned, names)
        return report

    def _warn_none_selected(self, sha: str, paths: Iterable[str]) -> None:
        """Say in one warning that the selection matches none of the commit's files (``paths``, every path of the
        listing), and which filter removed them: the object tag's default file types, ``--include``, or
        ``--exclude``. Files that are never tasks (:data:`~labelhub.sync.files.selection.ALWAYS_EXCLUDE`:
        ``README.md``, ``.gitattributes``, ``annotations/*``, the export's files) do not count: a repo of those alone
        gets no warning.

        Decided: a warning, not an error (the run goes on and exits 0: files of a selected type may come in a later
        commit); said once per commit, since a cycle whose commit and selection are the last cycle's reads nothing
        (module docstring, step 1), and again when another commit or selection is listed and still matches none.
        The warning gives the commit's commonest extensions (``.txt: 4,000``), so a wrong object tag or a glob's typo
        shows at once.
        """
        own = [p for p in paths if not shown_by(p, ALWAYS_EXCLUDE)]
        if not own:
            return
        include = tuple(self.include or ())
        included = [p for p in own if shown_by(p, include)]
        if included:  # every one the include globs reach is excluded
            why = (f"the {len(included):,} that --include selects all match --exclude "
                   f"{' '.join(repr(g) for g in self.exclude)}")
        elif include == tuple(self.field.default_include):
            kinds = ", ".join(g for g in include if g == g.lower())
            why = (f"none is of a file type the <{self.field.tag}> tag reads ({kinds}: its default --include); check "
                   f"the label config's object tag, or give --include globs for its files")
        else:
            why = (f"none matches --include {' '.join(repr(g) for g in include)} (a glob matches the whole path from "
                   "the repo's root, e.g. 'docs/*.txt')")
        kinds = Counter(PurePosixPath(p).suffix.lower() or "(no extension)" for p in own)
        seen = ", ".join(f"{ext}: {n:,}" for ext, n in kinds.most_common(3))
        more = f", {len(kinds) - 3} more extensions" if len(kinds) > 3 else ""
        log.warning("%s@%s: the selection matches none of the commit's %s files (%s%s), so no task is made: %s",
                    self.repo.repo_id, sha[:12], f"{len(own):,}", seen, more, why)

    def _rewrite_urls(self, old: dict | None, new: dict, skip: set[int]) -> int:
        """Rewrite the file URL of every task of the ledger (but those of ``skip``, just updated, and those deleted
        in Label Studio) whose URL is not the one the policy now gives (:meth:`url_form` moved from ``old`` to
        ``new``), rebuilt from the task's ``hf_path`` and ``hf_revision``; through :meth:`_update` (the current data
        read 200 tasks a query, 4 updates at once). Said in one log line.

        Which URL differs: without a lifetime, any other URL (another form, host, key, or signature: a rotated
        secret); with one, whose signature moves with the time it was made, another URL without its query, a signed
        one for an unsigned one or back, and every signed URL when ``old`` shows another secret or lifetime.
        ``old=None``: a cycle of an older LabelHub recorded no policy; the URLs are compared, none rewritten blindly.
        A task without a commit sha, or whose file name a URL cannot carry, is left as it is.

        Returns:
            How many tasks were rewritten.
        """
        entries = self.state.ledger.entries()
        resign = old is not None and new.get("signed") and (old.get("secret"), old.get("lifetime")) != (
            new.get("secret"), new.get("lifetime"))
        exact = not new.get("lifetime")
        todo = [_Update(path, known, "url", None, ("url", bool(resign), exact))
                for path, known in sorted(entries.items()) if not known.deleted and known.task_id not in skip]
        rewritten = self._update(todo, "", None)
        what = "not recorded by the last cycle" if old is None else ", ".join(
            name for key, name in (("url", "form or host"), ("signed", "signing"), ("secret", "secret"),
                                   ("lifetime", "lifetime")) if old.get(key) != new.get(key))
        (log.warning if rewritten else log.info)(
            "%s: the file URL policy changed since the last cycle (%s): %d of %d tasks' URLs rewritten as %s",
            self.repo.repo_id, what, rewritten, len(todo), new["url"].replace(f"{PLACEHOLDER_SHA}/x", "<sha>/<path>"))
        return rewritten

    def _rewrite_adopted_urls(self, adopted: dict[str, Known], skip: set[int]) -> int:
        """Rewrite the file URLs of the tasks this cycle's recovery adopted (``adopted``: key → what the ledger
        records; but those of ``skip``, just updated) where they are not the ones the sync's URL policy gives: another
        process made them (``labelhub import-labels`` or ``labelhub restore``, maybe with another
        ``LABELHUB_PUBLIC_URL`` or ``LABELHUB_SECRET``, whose URLs would never load), and :meth:`_rewrite_urls` only
        runs when the sync's own policy changes. Through :meth:`_update` (one Data Manager query per 200 tasks, a
        call only for a URL that differs). Without a lifetime any other URL is rewritten; with one (a signed URL's
        signature moves with the time it was made) another form or host, and a signature the sync's secret does not
        verify (:func:`labelhub.signing.verify`, expiry not checked). Said in one log line (a warning when some were
        rewritten). Measured on 2 busy cores, a lost state adopting 600 tasks: 1.1 s to check them when their URLs
        are right, 81 s to rewrite all 600 (another host).

        Returns:
            How many tasks were rewritten.
        """
        exact = not (self.url_form() or {}).get("lifetime")
        todo = [_Update(path, known, "url", None, ("url", "verify", exact))
                for path, known in sorted(adopted.items()) if not known.deleted and known.task_id not in skip]
        rewritten = self._update(todo, "", None)
        if todo and not rewritten:  # checked, none rewritten
            log.info("%s: the %d tasks adopted from Label Studio (made by import-labels, restore or a lost state) were "
                     "checked: their file URLs are those of the sync's policy", self.repo.repo_id, len(todo))
        elif todo:
            log.warning(
                "%s: %d of %d tasks adopted from Label Studio (made by import-labels, restore or a lost state) showed "
                "a file URL other than the sync's policy gives: rewritten as %s", self.repo.repo_id, rewritten,
                len(todo), self.url_form()["url"].replace(f"{PLACEHOLDER_SHA}/x", "<sha>/<path>"))
        return rewritten

    def _url_stale(self, shown: object, url: str, record: tuple) -> bool:
        """Whether a task showing the URL ``shown`` needs ``url`` (``record``: an ``("url", resign, exact)`` of
        :meth:`_rewrite_urls`, or ``("url", "verify", exact)`` of :meth:`_rewrite_adopted_urls`: a signed URL is
        stale when the sync's secret does not verify its signature)."""
        _, resign, exact = record
        if not isinstance(shown, str) or exact:
            return shown != url
        if resign == "verify" and "sig=" in url:
            return shown.split("?")[0] != url.split("?")[0] or not self._signed_here(shown)
        return resign or shown.split("?")[0] != url.split("?")[0] or ("sig=" in shown) != ("sig=" in url)

    def _signed_here(self, url: str) -> bool:
        """Whether the policy's secret verifies the signature of the file URL ``url`` (its expiry not checked)."""
        ref = parse_file_url(url)
        secret = getattr(getattr(self.repo, "file_urls", None), "secret", None)
        if ref is None or not secret:
            return False
        try:
            verify(secret, ref.key, ref.sha, ref.path, ref.expires, ref.sig, check_expiry=False)
        except SignatureError:
            return False
        return True

    def _adopted_duplicates(self, gone: list[str], adopted: set[str], by_path: dict[str, RepoFile],
                            known: dict[str, Known]) -> list[tuple[str, RepoFile]]:
        """The moves whose new path already has a task this cycle adopted: ``[(old path, file)]``, a gone path and
        a file at an adopted path with the same git blob id (:func:`match_moves`' rule, in path order).

        ``labelhub import-labels`` run after a ``git mv`` and before the sync followed it makes a task of the new
        path (it knows the sync's task by its path only); the sync would then count the new path as known and the
        old one as removed, and the annotations of the old task would leave the training rows. Decided: the old task
        (the sync's, with the annotators' work) follows the file, as any move; the adopted one is marked
        ``hf_removed`` with ``hf_duplicate_of: <old task id>`` in its ``meta`` and kept in the ledger under
        :func:`_duplicate_key`, and a warning names both tasks, to delete the duplicate (its imported labels stay
        in it). A crash before its mark landed leaves it gone from the repo: the next cycle marks it removed."""
        gone_tasks = {known[g].task_id for g in gone}  # once, not per adopted path (40,000 files: 28.5 s)
        candidates = [by_path[p] for p in adopted if p in by_path and known[p].task_id not in gone_tasks]
        pairs, _ = match_moves(gone, candidates, known)
        for old, file in pairs:
            log.warning("%s: task %d of %s duplicates task %d, whose file moved there (%s → %s): a task another "
                        "process (import-labels, restore) made of the new path before the sync followed the move. "
                        "Task %d follows its file and keeps its annotations; task %d is marked hf_removed "
                        "(hf_duplicate_of: %d): delete it in Label Studio, after moving any label you want from it",
                        self.repo.repo_id, known[file.path].task_id, file.path, known[old].task_id, old, file.path,
                        known[old].task_id, known[file.path].task_id, known[old].task_id)
        return pairs

    def _moves_outside(self, gone: list[str], elsewhere: list[RepoFile], known: dict[str, Known],
                       sha: str) -> list[tuple[str, RepoFile]]:
        """The moves out of the selection: ``[(old path, file)]``, a gone path and a file of the commit that the
        globs (``--include``, ``--exclude``, the object tag's defaults) do not select with the same git blob id
        (:func:`match_moves`' rule, in path order), recorded in the ledger as the task's new key, its revision and
        blob id kept (:meth:`labelhub.sync.ledger.ImportLedger.follow`); said in one log line.

        Decided: such a file is in the commit, so its task is not removed (as a file no longer selected in place,
        module docstring, step 5): it is "not selected, left as is", showing the file at its former path and commit
        (where the annotations' content is), with no Label Studio call. The ledger follows the file, so that a later
        move back into the selection finds the task, which then follows it with its annotations (before, the task
        was marked removed, and the move back made a second task), and a later deletion of the file marks it
        removed.

        Args:
            gone: Paths with a task that left the commit and did not move to a selected file.
            elsewhere: The files of the commit the globs do not select, without a task, whose blob some task shows.
            known: The ledger's entries.
            sha: The commit (for the log line).
        """
        if not gone or not elsewhere:
            return []
        pairs, _ = match_moves(gone, elsewhere, known)
        if pairs:
            self.state.ledger.follow([(old, f.path, known[old].revision, known[old].blob_id) for old, f in pairs])
            log.info("%s@%s: %d files with a task moved to paths that are not selected (--include/--exclude): their "
                     "tasks are left as they are, not marked removed, and follow them if they come back into the "
                     "selection: %s", self.repo.repo_id, sha[:12], len(pairs),
                     _names([f"{old} → {f.path}" for old, f in pairs]))
        return pairs

    def _url_ok(self, sha: str, path: str) -> bool:
        """Whether a file URL can be made of ``path`` (a backslash or a control character in it: the backend's
        signed URLs refuse it, :func:`labelhub.signing.is_safe_path`; a Hub resolve URL carries it)."""
        try:
            self.repo.file_url(sha, path)
        except ValueError:
            return False
        return True

    def _repins(self, known: dict[str, Known], by_path: dict[str, RepoFile], sha: str,
                last_sha: str | None) -> list[RepoFile]:
        """The files whose task shows a commit the repo no longer holds (a history rewritten: a force-push, a squash
        or a ``git reset --hard``, then a garbage collection) while ``sha`` holds the same blob at the same path:
        their tasks are re-pinned to ``sha`` (their URLs would answer 404). Said in one warning.

        The commits the candidate tasks show are looked up (in one go: :meth:`_sweep`) when the last cycle's
        commit is gone (one call; the usual case of a rewrite and its prune seen in one go), or when a sweep is due
        (every :data:`RECHECK_SECONDS`, :meth:`_sweep_due`), else nothing is asked. Decided: the last cycle's commit
        still being there says nothing of older ones, since a rewrite is usually synced while the old commits still
        exist (kept by tags, not yet collected) and pruned later (tags deleted, ``git gc``): that order, which left
        such tasks pinned to the pruned commit for good, is caught by the next sweep, within the hour.
        """
        shown: dict[str, list[str]] = {}
        for path, entry in known.items():
            if (entry.removed_in is None and entry.revision and entry.revision != sha and path in by_path
                    and entry.blob_id == by_path[path].oid):
                shown.setdefault(entry.revision, []).append(path)
        if not shown:
            return []
        if self._swept_gone is not None:  # step 1's short-circuit swept this cycle
            gone = [rev for rev in shown if rev in self._swept_gone]
        elif self._sweep_due() or (last_sha and last_sha != sha and not self._holds(last_sha)):
            gone = self._sweep(shown, sha)
        else:
            return []
        if not gone:
            return []
        paths = sorted(p for rev in gone for p in shown[rev])
        log.warning("%s: the history was rewritten (a force-push or a squash): %d commits the tasks showed are gone "
                    "(%s); %d tasks whose file is the same at %s are re-pinned to it", self.repo.repo_id, len(gone),
                    _names([rev[:12] for rev in gone]), len(paths), sha[:12])
        return [by_path[p] for p in paths]

    @staticmethod
    def _lfs_relist_due(last: dict | None) -> bool:
        """Whether step 1's short-circuit lists the unmoved head again: the last completed cycle's listing left git LFS
        files out (their objects not fetched) and :data:`LFS_RELIST_SECONDS` have passed since it. No call."""
        if not last or not last.get("lfs_unfetched"):
            return False
        try:
            return time.time() - float(last.get("listed_at", 0)) >= LFS_RELIST_SECONDS
        except (TypeError, ValueError):
            return True

    def _swept_now(self, sha: str) -> bool:
        """Step 1's short-circuit at an unmoved head: when a sweep is due, look up the commits the present tasks show
        other than ``sha`` (:meth:`_sweep`) and say whether one is gone (then the cycle runs and re-pins). No call,
        and no read of the ledger, when none is due."""
        if not self._sweep_due():
            return False
        shown = {k.revision for k in self.state.ledger.entries().values()
                 if k.removed_in is None and not k.deleted and k.revision and k.revision != sha}
        self._swept_gone = self._sweep(shown, sha)
        return bool(self._swept_gone)

    def _sweep_due(self) -> bool:
        """Whether :data:`RECHECK_SECONDS` have passed since the last sweep (:data:`REPIN_SWEEP`; never: due)."""
        try:
            last = float(self.state.cursor(REPIN_SWEEP, "0"))
        except ValueError:
            last = 0.0
        return time.time() - last >= RECHECK_SECONDS

    def _sweep(self, revisions: Iterable[str], head: str) -> list[str]:
        """Those of ``revisions`` (commit shas) the repo no longer holds, asked in one go
        (:meth:`labelhub.repos.DatasetRepo.held_commits`, which answers as :meth:`_holds` of each would: a local
        repo's one ``git cat-file --batch-check``, a Hub repo's reading of ``head``'s history first); the sweep's
        time is kept in the state (:data:`REPIN_SWEEP`). One call each before: the 5,000 commits of a local repo took
        8.0 s (5,009 git processes), now 0.08 s (one); 502 commits of a Hub repo of 1,000 took 503 calls (12.6 s
        on the tests' Hub server), now 22 (0.33 s).

        Raises:
            labelhub.errors.LabelHubError: as :meth:`labelhub.repos.DatasetRepo.resolve` (the repo is gone or
                unreachable), but for :class:`~labelhub.errors.RevisionNotFound`, which means gone.
        """
        wanted = list(dict.fromkeys(revisions))
        held = self.repo.held_commits(wanted, head) if wanted else set()
        gone = [rev for rev in wanted if rev not in held]
        self.state.set_cursor(REPIN_SWEEP, repr(time.time()))
        return gone

    def _holds(self, sha: str) -> bool:
        """Whether the repo still holds commit ``sha`` (one call)."""
        try:
            self.repo.resolve(sha)
        except RevisionNotFound:
            return False
        return True

    def _existing_tasks(self, after_task_id: int) -> list[Entry]:
        """The project's tasks of this repo with an id above ``after_task_id`` (for :meth:`ImportLedger.recover`;
        :meth:`LabelStudioProject.repo_file_tasks`: one query)."""
        return [Entry(path, task_id, revision)
                for task_id, path, revision in self.project.repo_file_tasks(self.repo.repo_id, after_task_id)]

    def _metadata_table(self, sha: str) -> MetadataTable | None:
        if self.metadata is None:
            return None
        return MetadataTable(self.repo.read_file(sha, self.metadata.path), self.metadata)

    def _metadata_columns(self, table: MetadataTable | None, last: dict | None) -> frozenset[str]:
        """The task data keys a metadata join wrote: the columns of ``table`` and, with ``last`` (the last cycle,
        given when the join changed since), of the CSV it joined, read at its commit (one file read; a CSV that
        cannot be read any more, or a former join's key columns, are left as they are). Never the object tag's
        key or :data:`~labelhub.sync.files.metadata.RESERVED_KEYS`."""
        columns = set(table.columns if table else ())
        spec = (last or {}).get("selection", {}).get("metadata")
        if spec:
            former = MetadataSpec(spec["path"], spec["key_part"], tuple(spec["columns"]) if spec["columns"] else None)
            try:
                columns.update(MetadataTable(self.repo.read_file(last["sha"], former.path), former).columns)
            except LabelHubError as exc:
                log.warning("%s: the metadata CSV of the last cycle cannot be read (%s): the columns it alone had "
                            "stay in the tasks", self.repo.repo_id, exc)
        return frozenset(columns - {self.field.value_key, *RESERVED_KEYS})

    def _refresh_metadata(self, table: MetadataTable | None, stale: frozenset[str], skip: set[int]) -> int:
        """Bring every task's metadata columns to the join's current rows after the metadata CSV (or ``--metadata``,
        ``--metadata-key``, ``--metadata-columns``) changed since the last cycle: a column the task's row now has is
        set, one of ``stale`` it no longer has is removed (without ``--metadata`` any more: every former column).
        Tasks of ``skip`` (just updated with the new rows) and deleted ones are left out; a task that already shows
        its row makes no call. Through :meth:`_update` (one Data Manager query per 200 tasks, 4 updates at once),
        said in one log line.

        Returns:
            How many tasks were updated.
        """
        entries = self.state.ledger.entries()
        todo = [_Update(path, known, "metadata", None, ("metadata",))
                for path, known in sorted(entries.items()) if not known.deleted and known.task_id not in skip]
        updated = self._update(todo, "", table, stale)
        log.info("%s: the metadata join changed since the last cycle (%s): %d of %d tasks' metadata columns updated",
                 self.repo.repo_id, self.metadata.path if self.metadata else "--metadata dropped", updated, len(todo))
        return updated

    def _data(self, file: RepoFile, sha: str, table: MetadataTable | None) -> dict:
        """The task data of ``file`` at ``sha``; a URL longer than :data:`~labelhub.file_urls.MAX_URL_LENGTH` is
        noted for the cycle's warning (``_long_urls``)."""
        value = self._value(file, sha)
        if self.field.as_url and len(value) > MAX_URL_LENGTH:
            self._long_urls.append(file.path)
        return build_file_task(self.field, value, self.repo.repo_id, file.path, sha,
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
            self._created.append(file.path)  # created once the ledger returns (an error ends the cycle unsaid)
            yield Item(file.path, payload, sha, blob_id=file.oid, size=size)

    def _value(self, file: RepoFile, sha: str) -> str:
        """The task's value of ``file``: its URL (``valueType="url"``), else its text decoded with
        :func:`labelhub.repos.texts.decode_task_text` (a byte order mark kept, as U+FEFF; the export reads an older
        revision with the same function, so a span's offsets index the same text); a file that is not UTF-8 gets
        U+FFFD for each bad sequence, said in a warning naming it."""
        if self.field.as_url:
            return self.repo.file_url(sha, file.path)
        text, clean = decode_task_text(self.repo.read_file(sha, file.path))
        if not clean:
            log.warning("%s of %s at %s is not valid UTF-8: its task holds the text with each undecodable byte "
                        "sequence replaced by U+FFFD (annotate it as shown, or re-encode the file as UTF-8)",
                        file.path, self.repo.repo_id, sha[:12])
        return text

    def _store_annotations(self, updates: list[_Update], sha: str) -> None:
        """Store the annotations the tasks of ``updates`` (``kind="data"``, about to show ``sha``) have in Label
        Studio now, each with the revision it was made on (:func:`labelhub.sync.annotations.intake
        .store_before_change`, one Data Manager query per 200 tasks; none without such an update): for a file whose
        content changed, the revision its task shows; for a move or a re-pin (the same blob), ``sha``, which holds
        that content (as :meth:`labelhub.sync.state.SyncState.repin_annotations` did the stored ones). Decided: read
        before every chunk's updates, webhook or not (an event may be lost), so an annotation saved since the last
        reconciliation is not stored later with the revision the update gives its task.

        Raises:
            labelhub.errors.LabelHubError: Label Studio refused or could not be reached.
        """
        revisions = {u.known.task_id: sha if u.known.blob_id == u.record[4] else None
                     for u in updates if u.kind == "data"}
        if revisions:
            store_before_change(self.project, self.state, revisions)

    def _update(self, updates: list[_Update], sha: str, table: MetadataTable | None,
                stale: frozenset[str] = frozenset()) -> int:
        """Apply ``updates`` to their tasks: each task's current ``data`` or ``meta`` is read with the others'
        (:meth:`LabelStudioProject.tasks_fields`, a query per :data:`UPDATE_CHUNK` tasks), then updated with one call,
        :data:`UPDATE_WORKERS` calls at once, and each finished update is recorded in the ledger as it lands (every
        :data:`RECORD_EVERY` of them, one transaction), so that a restart redoes none that landed (a few at most,
        which are idempotent). Several updates of one task (a file removed, then back with another content: its
        ``data`` follows the file and its ``meta`` loses the removal mark) run one after the other, in their order,
        never at once: Label Studio's ``PATCH`` writes the whole task back (``Task.save()`` of the row it read), so
        of two overlapping ones only the last write stays, and the ledger recorded both as landed. A later update of
        a field an earlier one wrote reads the task again (:meth:`LabelStudioProject.update_data` with
        ``current=None``). A task deleted in Label Studio (a 404 of the task) is recorded as deleted, said once
        in a warning naming it and its file, and the cycle goes on; a task recorded as deleted gets no call.
        Progress: a tqdm bar on a terminal, and a log line every :data:`LOG_EVERY` tasks. A URL update
        (``kind="url"``) whose task already shows the URL makes no call, nor does a metadata update
        (``kind="metadata"``) whose task shows its row. ``stale``: the metadata columns a ``data`` or ``metadata``
        update removes where the task's row (of ``table``) lacks them (:meth:`_metadata_columns`). Before a chunk's
        ``data`` updates, the annotations their tasks have are stored (:meth:`_store_annotations`: one more query).

        Returns:
            How many update calls were made.

        Raises:
            labelhub.errors.LabelHubError: a call failed otherwise (the project is gone, Label Studio refused; the
                reading of a chunk's annotations too); the updates that landed before are recorded.
        """
        if not updates:
            return 0
        ledger = self.state.ledger
        called: list[int] = []
        done: list[_Update] = []
        deleted: list[_Update] = []

        def flush() -> None:
            if deleted:
                ledger.set_deleted([u.known.task_id for u in deleted])
                for u in deleted:
                    log.warning("task %d (file %s) was deleted in Label Studio: it is not updated, and its file is "
                                "not imported again", u.known.task_id, u.key)
            follows = [u.record[1:] for u in done if u.record[0] == "follow"]
            if follows:
                ledger.follow(follows)
            for removed_in in {u.record[2] for u in done if u.record[0] == "removed"}:
                ledger.set_removed([u.record[1] for u in done if u.record[0] == "removed"
                                    and u.record[2] == removed_in], removed_in)
            done.clear()
            deleted.clear()

        def apply(update: _Update, current: dict | None) -> bool:
            if update.kind == "data":
                self.project.update_data(update.known.task_id, self._data(update.file, sha, table)["data"], current,
                                         stale)
            elif update.kind == "metadata":
                path = (current or {}).get("hf_path") or update.key
                columns = table.columns_for(path) if table else {}
                columns = {k: v for k, v in columns.items() if k != self.field.value_key}
                if current is not None and {**{k: v for k, v in current.items() if k not in stale}, **columns} == current:
                    return False
                self.project.update_data(update.known.task_id, columns, current, stale)
            elif update.kind == "duplicate":
                self.project.update_meta(update.known.task_id, {"hf_removed": True, "hf_removed_in": sha,
                                                                "hf_duplicate_of": update.record[3]}, current)
            elif update.kind == "url":
                shown = current or {}
                revision = shown.get("hf_revision") or update.known.revision
                if not _SHA.fullmatch(str(revision)):
                    return False  # no commit to rebuild its URL from: left as it is
                try:
                    url = self.repo.file_url(revision, shown.get("hf_path") or update.key)
                except ValueError:  # a name a signed URL cannot carry (see _url_ok): left as it is
                    return False
                if current is not None and not self._url_stale(shown.get(self.field.value_key), url, update.record):
                    return False
                self.project.update_data(update.known.task_id, {self.field.value_key: url}, current)
            else:
                removed_in = update.record[2]
                self.project.update_meta(update.known.task_id, {"hf_removed": removed_in is not None,
                                                                "hf_removed_in": removed_in}, current)
            called.append(1)
            return True

        def apply_all(group: list[_Update], read: tuple[dict, dict] | None
                      ) -> tuple[list[_Update], bool, BaseException | None]:
            """Apply one task's updates in order: ``(those that landed, whether the task is gone, the error that
            stopped them)``; the updates after a 404 or an error are not tried."""
            landed: list[_Update] = []
            written: set[int] = set()  # 0: data, 1: meta, written by an update of this group
            for update in group:
                which = 1 if update.kind in ("meta", "duplicate") else 0
                current = None if read is None or which in written else read[which]
                try:
                    if apply(update, current):
                        written.add(which)
                except TaskNotFound:
                    return landed, True, None
                except Exception as exc:  # handed to the caller, which records what landed, then raises it
                    return landed, False, exc
                landed.append(update)
            return landed, False, None

        total, finished = len(updates), 0
        live = [u for u in updates if not u.known.deleted]
        done.extend(u for u in updates if u.known.deleted)  # the ledger follows their files, no call
        doing = "checking tasks' URLs" if all(u.kind == "url" for u in updates) else "updating tasks"  # most: no call
        with progress_bar(total=total, desc=doing, unit=" tasks", leave=False) as bar, \
                ThreadPoolExecutor(max_workers=UPDATE_WORKERS, thread_name_prefix="labelhub-update") as pool:
            try:
                for start in range(0, len(live), UPDATE_CHUNK):
                    chunk = live[start:start + UPDATE_CHUNK]
                    fields = self.project.tasks_fields([u.known.task_id for u in chunk])
                    self._store_annotations([u for u in chunk if u.kind == "data"], sha)
                    by_task: dict[int, list[_Update]] = {}  # a task's updates, in order: one worker runs them
                    for update in chunk:
                        by_task.setdefault(update.known.task_id, []).append(update)
                    running = {pool.submit(apply_all, group, fields.get(task_id)): group
                               for task_id, group in by_task.items()}
                    for future in as_completed(running):
                        group = running[future]
                        landed, gone, error = future.result()
                        if gone:  # recorded as deleted, said once; the ledger still follows its file
                            deleted.append(group[len(landed)])
                            landed = group
                        done.extend(landed)
                        if error is not None:
                            raise error
                        for _ in group:
                            finished += 1
                            if finished % LOG_EVERY == 0:
                                log.info("%s: %d of %d", doing, finished, total)
                        bar.update(len(group))
                        if len(done) >= RECORD_EVERY:
                            flush()
            except BaseException:  # an error, or Ctrl-C: the calls not started are dropped, what landed is kept
                pool.shutdown(wait=True, cancel_futures=True)
                flush()
                raise
        flush()
        return len(called)
