"""Annotation store → a version of the dataset repo: one atomic commit and a tag per export.

An export (:meth:`Exporter.export`):

1. builds the CSV (:mod:`labelhub.sync.versions.rows`), one row per live annotation, and counts ``+added ~changed
   -removed`` against the content hashes of the last tagged version's rows: each row's hash without its
   bookkeeping columns, ``updated_at`` and ``lead_time`` (:data:`labelhub.sync.versions.rows.BOOKKEEPING`). No
   change → no commit, no tag; nor when the rows changed in those columns alone (an annotator or reviewer opened
   an annotation and clicked Update with the same labels): a version whose labels are the last one's would be
   noise in the repo's history. Their newer values are not lost: the CSV of the next version made for a change
   holds them (every row as it is then), and its ``~changed`` does not count those annotations;
2. records the version as ``committing`` (with a fresh ``export_id``) in the state;
3. commits the CSV, the manifest, the training and consensus rows and ``README.md``
   (:mod:`labelhub.sync.versions.card`) in one commit whose ``parent_commit`` is the head it was built on, with the
   message ``annotations vN: +a ~c -r`` and ``LabelHub-Export-Id: <export_id>`` in its description (the head is
   our last version's commit, or the branch head the import cycle's last poll saw when it moved since (someone
   pushed: :meth:`Exporter._parent`), or for a state's first version the head whose tags numbered it, as that
   poll read them: :mod:`labelhub.sync.files.seen`; so an export makes no Hub call but the commit's three and
   the tag's one):
   - 412/409 (the branch moved): re-read the head, rebuild the files and retry; other people's
     files are kept, since the commit only touches the series' own files, and the card is rebuilt from the new
     head's (another series' configs and section kept);
   - the branch's history was rewritten (a squash or a force-push; a local repository after ``git gc`` no longer
     has the parent commit at all): the same rebuild on the new head, said in one warning (the tags of earlier
     versions keep their commits: nothing deletes them);
   - 429/5xx: wait (``Retry-After`` when given, else exponential backoff) and retry;
   - no answer: look for a commit carrying the ``export_id`` before committing again;
4. tags ``annotations-vN`` on that exact commit (never on the branch name), then makes its rows
   the new baseline.

**A local head that lost the version's files.** The export moves a local branch without touching its work tree or
index, so a commit made there from the stale index drops (or reverts) the files the last version wrote. When the
import cycle's poll sees a head other than the last version's commit, the next export checks that head once
(:meth:`Exporter._lost_files`): files lost are said in one warning and written back, by the version itself when
annotations changed, else by one untagged commit ``annotations vN: files restored`` holding them as the version wrote
them (:meth:`Exporter._restore`).

A crash anywhere leaves the state at a step the next export finishes: ``committing`` → look for
the commit by its ``export_id`` (tag it if found, forget the version if not); ``committed`` → tag it.

**Several projects, one repo.** The tags, file names and configs above are those of the default *series*
(``--csv-path annotations/annotations.csv``); a project exporting with another ``--csv-path`` (or
``--tag-prefix``) writes its own series, ``test-vN`` with ``annotations/test.manifest.json`` and so on
(:mod:`labelhub.sync.versions.series`), so two daemons exporting two projects into one repo never write the same
tag or file. Their exports interleave through step 3: each commit is built on the head it read, a commit of the
other daemon in between is a 412 (Hub) or a failed compare-and-swap (local), and the rebuild keeps the other's
files, configs and card section. The state remembers the series its versions belong to (cursor
:data:`SERIES`): when a project's ``--tag-prefix`` (or derived prefix) changes, its version rows are forgotten and
the new series is numbered from the repo's tags.

**One series, one project** (:meth:`Exporter.check_series`). The series' newest version in the repo (its tags as
the import cycle's last poll read them) must be this project's: its manifest at this series' ``manifest_path``
names that tag, this ``--csv-path`` and this Label Studio project (its id, and its key ``<id>.<created_at>`` when
the manifest has one: :meth:`Exporter._replaced`). Else nothing is written and the export raises
:class:`labelhub.errors.ConfigurationError` in one line: another CSV with the same tag prefix (in the same folder or
another: ``annotations/test.csv`` and ``test/annotations.csv`` both derive ``test``), or another project with the
same ``--csv-path`` (two daemons left at the default one: each version would hold one project's annotations
and drop the other's) unless that project was deleted from this Label Studio (a project deleted and recreated
takes its series over, with a warning; so does a project that got a reset Label Studio's old id, whose first
version counts the old project's annotations as removed and its own as added). The check runs as the exporter
starts (so ``labelhub sync`` stops before importing) and at every export whose series got a version this state
did not make (one manifest read, once per version); the daemon stops on it
(:class:`labelhub.sync.service.SyncService`): it cannot fix itself. A project restored under a new id (or whose
predecessor still exists) takes its predecessor's series over with ``take_over_from`` (``--take-over-from OLD_ID``).

**Another exporter of the same project** (a second ``--state``: a cron ``--once`` run from another folder, whose
default state is another file; or a state that lost its versions). A version of the series that this state did
not make, found by the check above to be this project's, is adopted (:meth:`Exporter._adopt`): it becomes the
state's last version, so the next one is numbered after it, built on it, and counts its changes against its CSV's
rows (a fresh state's first export of annotations already in it makes no version: those unchanged since take the
``annotated_revision`` its CSV gives them, :meth:`Exporter._seed_revisions`). A fresh state that starts on such a
version records the tasks its CSV names that Label Studio no longer has as deleted, before its first import
(:meth:`Exporter._keep_deleted_tasks`). ``labelhub sync`` refuses a second process of the project on one host
(:func:`labelhub.locks.project_lock`); two hosts are what this paragraph is left for. A tag taken between our commit
and our tag (:class:`_TagTaken`) or a version number taken before our commit (:class:`_Renumber`) is adopted the
same way and the export numbered again: never a retry of the same tag.

**A state an older LabelHub wrote** holds its last version's hashes of whole rows (bookkeeping columns
included), and rows stored without a content hash. The exporter translates them once as it starts, before the
daemon's first reconciliation (:meth:`Exporter.upgrade`), while the state's annotations are those the older
LabelHub knew: each stored row gets its content hash from its JSON, and an annotation whose row is the same as in
that version, in the columns that version's CSV had (an older CSV lacks ``annotated_revision``: :data:`NEWER_COLUMNS`),
gets its content hash in the baseline (:func:`upgraded_hashes`); one whose row changed since (a change
the older LabelHub had not exported yet) keeps its old hash and counts as changed in the next version, as the older
LabelHub would have counted it: its content in that version is not known. No version is made for the upgrade, and
no annotation counts as changed for it.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from labelhub.sync.versions.card import (card_block, card_text, class_names, dataset_card, manifest_json,
                                         merged_entries, parsed_card)
from labelhub.sync.versions.diff import VersionDiff, changes_text, diff_frames, read_version_csv, replaced_project
from labelhub.sync.versions.agreement import agreement_markdown
from labelhub.sync.versions.incremental import CONTENT_FORMAT, VersionRows, build_files, build_rows
from labelhub.sync.versions.rows import BOOKKEEPING, FIXED_HEAD, FIXED_TAIL, OTHER_RESULTS, content_hash
from labelhub.sync.versions.series import DEFAULT_CSV_PATH, DEFAULT_PREFIX, series_for
from labelhub.sync.versions.training import (CONSENSUS_COLUMNS, control_labels, folder_layout, text_from_file,
                                             training_features)
from labelhub.errors import (AmbiguousCommit, CommitConflict, ConfigurationError, ForeignTag, LabelHubError,
                             ProjectNotFound, RevisionNotFound, TagExists, TransientHubError)
from labelhub.redaction import one_line
from labelhub.retry import hub_retrying, interruptible_sleep
from labelhub.sync.annotations.intake import GENERATION, learn_annotators
from labelhub.sync.files.seen import SeenRefs, git_blob_id, remember_refs, seen_card, seen_refs
from labelhub.label_config import control_tags, data_field
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.repos import DatasetRepo
from labelhub.repos.texts import FileTexts
from labelhub.sync.state import FILE_CHANGES, SyncState

log = logging.getLogger(__name__)

#: The default series' tags (``annotations-vN``); another series' are :meth:`labelhub.sync.versions.series.Series.tag`.
TAG_PREFIX = "annotations-v"
EXPORT_ID_KEY = "LabelHub-Export-Id"
EXPORTED_GENERATION = "exported_generation"
CARD = "last_card"
#: The cursor naming the series (tag prefix) of the state's versions; unset: the default series.
SERIES = "export_series"
#: The cursor naming the form of the content hashes of the state's baseline
#: (:data:`labelhub.sync.versions.incremental.CONTENT_FORMAT`); unset: 1, a file URL hashed as written.
CONTENT_FORMAT_CURSOR = "export_content_format"
#: The cursor listing (JSON) the tags of this state's versions whose deletion was said (:meth:`Exporter._say_untagged`).
UNTAGGED_SAID = "export_untagged_said"


class _Renumber(Exception):
    """A state's first version met a branch that moved and a series with another newest tag than the refs it was
    numbered from: nothing landed, it is numbered again on ``refs``."""

    def __init__(self, refs: SeenRefs):
        super().__init__(refs.head)
        self.refs = refs


class _TagTaken(Exception):
    """The tag of a version we committed names another commit: another exporter made that version number. Our
    version is forgotten (its commit stays on the branch, untagged); ``refs`` are the refs read just then."""

    def __init__(self, tag: str, refs: SeenRefs):
        super().__init__(tag)
        self.tag = tag
        self.refs = refs


#: Attempts of one export when other exporters keep taking its version number (:class:`_Renumber`,
#: :class:`_TagTaken`): each one adopts what they made before numbering again.
RENUMBER_ATTEMPTS = 5


@dataclass
class Version:
    """A landed version: ``tag`` (``annotations-v{number}``, or another series' ``P-v{number}``) at ``commit``."""

    number: int
    tag: str
    commit: str
    added: int
    changed: int
    removed: int


def build_csv(state: SyncState, controls: dict[str, str], value_key: str) -> tuple[pd.DataFrame, bytes, dict[int, str]]:
    """The export's rows from the state's annotation store (:func:`labelhub.sync.versions.incremental.build_rows`).

    Each annotation's row (without its annotator, whose email may be learnt later) is made once and stored
    with its hash (:meth:`labelhub.sync.state.SyncState.store_rows`); it is made again only when the
    annotation, its task's data or the label config change. An export reads the stored rows in one query and
    decodes those the previous export of this process did not hold
    (:func:`labelhub.sync.versions.incremental.build_rows`, which keeps what it made for the next export and for
    :func:`labelhub.sync.versions.incremental.build_files`).

    Returns:
        ``(frame, csv bytes, {annotation_id: "<content hash of its row>:<annotator>"})`` (the content hash:
        :func:`labelhub.sync.versions.rows.content_hash`): what the next export's ``+added ~changed -removed`` is
        counted against.
    """
    built = build_rows(state, controls, value_key)
    return built.frame, built.csv, built.contents


def json_lines(records: list[dict]) -> bytes:
    """JSON Lines (https://jsonlines.org) of ``records``, keys in their order (a folder loader's column order),
    strict JSON (no ``NaN``)."""
    return "".join(json.dumps(record, allow_nan=False) + "\n" for record in records).encode()


def label_columns(frame: pd.DataFrame, controls: dict[str, str]) -> pd.DataFrame:
    """The columns of an export that its changes are counted on: ``annotation_id, annotator, was_cancelled`` and
    the control columns (see :mod:`labelhub.sync.versions.diff`)."""
    return frame.reindex(columns=["annotation_id", "annotator", "was_cancelled", *controls])


def label_changes(old_records: str, labels: pd.DataFrame, ids: set[int], controls: dict[str, str],
                  old_name: str, new_name: str, known: Mapping[str, Sequence[str]] | None = None) -> VersionDiff:
    """:func:`labelhub.sync.versions.diff.diff_frames` of an older version's label columns (``old_records``: JSON
    records, as the state keeps them) and ``labels`` (:func:`label_columns`), comparing the rows of ``ids`` alone.

    With ``ids`` from :func:`differing_ids` the result is the whole diff: a row with the same content hash in both
    versions has the same label cells and adds nothing, and at 100,000 annotations leaving those rows out saves making a frame of
    every old row and comparing every pair. ``known``: the label config's labels per control, so that a label
    holding ``|`` counts as one (:func:`labelhub.sync.versions.training.control_labels`)."""
    old = pd.DataFrame([r for r in json.loads(old_records) if r.get("annotation_id") in ids],
                       columns=list(labels.columns))
    return diff_frames(old, labels[labels["annotation_id"].isin(ids)], controls, old_name, new_name, known)


def files_text(counts: dict[str, int], since: str | None) -> str:
    """The line a version's description and card add about the repo's files the import cycles made tasks of or
    followed since the previous version (:meth:`labelhub.sync.state.SyncState.file_changes`): ``""`` when none.

    Example:
        >>> files_text({"new": 3, "moved": 1, "removed": 1}, "annotations-v2")
        '\\n\\nRepo files since annotations-v2: 3 new, 1 moved, 1 removed.'
    """
    parts = [f"{counts[kind]} {kind}" for kind in ("new", "changed", "moved", "removed", "restored")
             if counts.get(kind)]
    if not parts:
        return ""
    return f"\n\nRepo files {'since ' + since if since else 'of the first version'}: {', '.join(parts)}."


def differing_ids(old: dict[int, str], new: dict[int, str]) -> set[int]:
    """The annotation ids added, changed or removed between two ``{annotation_id: hash}`` (the exporter's: content
    hashes, so an annotation changed in its bookkeeping columns alone is not one of them)."""
    return {k for k, v in new.items() if old.get(k) != v} | (old.keys() - new.keys())


def diff_counts(old: dict[int, str], new: dict[int, str], ids: set[int] | None = None) -> tuple[int, int, int]:
    """``(added, changed, removed)`` annotations between two ``{annotation_id: hash}``.

    ``ids``: their :func:`differing_ids`, when the caller already has them (only those are looked at then)."""
    ids = differing_ids(old, new) if ids is None else ids
    added = sum(1 for k in ids if k not in old)
    removed = sum(1 for k in ids if k not in new)
    return added, len(ids) - added - removed, removed


#: The columns of the CSV that an older LabelHub's rows may lack (``annotated_revision``, ``other_results``: added
#: after versions were first hashed): :func:`older_row_hashes` leaves them out of a row to hash it as that LabelHub did.
NEWER_COLUMNS = ("annotated_revision", OTHER_RESULTS)


def upgraded_hashes(old: dict[int, str], rows: dict[int, str], contents: dict[int, str],
                    older: Mapping[int, Collection[str]] | None = None) -> dict[int, str]:
    """A baseline of whole-row hashes (a version an older LabelHub tagged) as content hashes: an annotation whose
    row hash is the same now (``rows``), or is one of the hashes its row has now without the columns that LabelHub
    did not write (``older``), has the content hash it has now (``contents``); the others keep their old hash, which
    no content hash equals, so they count as changed.

    Args:
        old: ``{annotation_id: "<row hash>:<annotator>"}`` of the version (or, before rows were stored, the bare
            SHA-256 of the whole row, annotator included).
        rows: :attr:`labelhub.sync.versions.incremental.VersionRows.hashes` of the rows now.
        contents: :attr:`labelhub.sync.versions.incremental.VersionRows.contents` of the rows now.
        older: :func:`older_row_hashes` of the rows now (``None``: none).

    Returns:
        ``{annotation_id: hash}``, the keys of ``old``.

    Example:
        >>> upgraded_hashes({1: "r1:a", 2: "r2:a", 3: "r3:a"}, {1: "r1:a", 2: "r2b:a"}, {1: "c1:a", 2: "c2:a"})
        {1: 'c1:a', 2: 'r2:a', 3: 'r3:a'}
        >>> upgraded_hashes({2: "r2:a"}, {2: "r2b:a"}, {2: "c2:a"}, older={2: {"r2:a"}})
        {2: 'c2:a'}
    """
    older = older or {}
    return {k: contents[k] if k in contents and (rows.get(k) == v or v in older.get(k, ())) else v
            for k, v in old.items()}


def older_row_hashes(state: SyncState, built: VersionRows) -> dict[int, set[str]]:
    """``{annotation_id: whole-row hashes}`` an older LabelHub would have made of each row stored now, had its CSV
    lacked some of :data:`NEWER_COLUMNS` (each subset of those the row has left out): ``"<SHA-256 of the row's
    JSON>:<annotator>"`` (rows stored without their annotator) and the SHA-256 of the row's JSON with its annotator
    (the earliest form). A hash equal to the version's says the row is, in every column that version had, what it
    was (found by an audit: an upgrade from before ``annotated_revision`` counted every exported annotation as
    changed once). One read of the stored rows; at most eight hashes a row, once, as the exporter starts."""
    found: dict[int, set[str]] = {}
    for text, _, _, _ in state.export_rows():
        row = json.loads(text)
        aid = int(row["annotation_id"])
        annotator = built.hashes.get(aid, "").partition(":")[2]
        present = [column for column in NEWER_COLUMNS if column in row]
        hashes = found.setdefault(aid, set())
        for drop in range(1 << len(present)):
            kept = {k: v for k, v in row.items() if k not in {c for i, c in enumerate(present) if drop >> i & 1}}
            hashes.add(f"{_sha256(kept)}:{annotator}")
            hashes.add(_sha256({**kept, "annotator": annotator}))
    return found


def _sha256(row: Mapping) -> str:
    """The SHA-256 (hex) of ``row``'s JSON as rows are stored (keys sorted)."""
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()


def exported_contents(state: SyncState, built: VersionRows) -> dict[int, str]:
    """``{annotation_id: content hash}`` of the state's newest tagged version (``{}`` before the first), what the
    rows ``built`` are compared with; a baseline of whole-row hashes is translated by :func:`upgraded_hashes` and
    stored so (:meth:`labelhub.sync.state.SyncState.upgrade_baseline`), once."""
    baseline = state.exported_baseline()
    if baseline is None:
        return {}
    version, hashes, content = baseline
    if not content:
        hashes = upgraded_hashes(hashes, built.hashes, built.contents, older_row_hashes(state, built))
        state.upgrade_baseline(version, hashes)
        log.info("counting changes by content from now on: %d of the %d annotations of the last version are as "
                 "then", sum(1 for k, v in hashes.items() if built.contents.get(k) == v), len(hashes))
    return hashes


@dataclass
class Exporter:
    """Exports the project's annotations to ``repo`` (see the module docstring).

    Attributes:
        repo: the dataset repo (Hub or local git) that receives the versions.
        project: the Label Studio project (its label config names the columns).
        state: the sync state.
        csv_path: ``path_in_repo`` of the CSV; the manifest is ``manifest.json`` beside it (the default series).
        revision: the branch to commit to.
        max_attempts: attempts per export on 429/5xx/no answer before giving up until the next tick.
        sleep: how to wait between attempts (tests pass a no-op); the default ends early on SIGTERM/SIGINT
            (:func:`labelhub.retry.request_shutdown`).
        tag_prefix: the series' tag prefix (tags ``{tag_prefix}-vN``, its files and configs named after it, see
            :mod:`labelhub.sync.versions.series`); ``None``: derived from ``csv_path`` (``annotations`` for the
            default CSV).
        texts: for a ``<Text>`` or ``<HyperText>`` project, the reader of the files' texts its training rows hold
            (:class:`labelhub.repos.texts.FileTexts` of ``repo``, made once per exporter, so each file is read once
            per process): every row's text for ``valueType="url"``, and an inline text's rows annotated on an older
            content of their file (:func:`labelhub.sync.versions.training.text_from_file`); ``None`` for any other
            project.
        take_over_from: the Label Studio project id whose series this project continues (``--take-over-from``: a
            project recreated or restored under a new id): its versions count as this project's
            (:meth:`check_series`). ``None``: a series whose newest version another project exported is refused.

    Raises:
        labelhub.errors.ConfigurationError: the tag prefix (given or derived) is not a valid one, or a control tag
            is named like a column of the CSV (``annotator``, ``task_id``, ..., or the object's value key), or the
            series' newest version in the repo belongs to another CSV or another project (:meth:`check_series`).
    """

    repo: DatasetRepo
    project: LabelStudioProject
    state: SyncState
    csv_path: str = DEFAULT_CSV_PATH
    revision: str = "main"
    max_attempts: int = 5
    sleep: Callable[[float], None] = interruptible_sleep
    tag_prefix: str | None = None
    take_over_from: int | None = None
    controls: dict[str, str] = field(init=False)
    #: Heads found to hold the last version's files (:meth:`_lost_files`), in this process.
    _checked: set[str] = field(init=False, default_factory=set)
    #: ``(commit, {path: blob id})`` of the last version's files, read once per version.
    _expected: tuple[str, dict[str, str]] = field(init=False, default=("", {}))
    #: ``(commit, README.md)`` of the last version, read once per version (:meth:`_restored_card`).
    _last_card: tuple[str, str] = field(init=False, default=("", ""))
    #: ``(tag, commit)`` of the series' versions adopted (:meth:`_adopt`) in this process.
    _owned: set[tuple[str, str]] = field(init=False, default_factory=set)
    #: The rows built again by an adoption that gave annotations their revisions (:meth:`_seed_revisions`): the
    #: export goes on with them.
    _rebuilt: VersionRows | None = field(init=False, default=None)

    def __post_init__(self):
        self.controls = control_tags(self.project.label_config)
        self.field = data_field(self.project.label_config)
        self.value_key = self.field.value_key
        self.texts = FileTexts(self.repo) if text_from_file(self.field) else None
        taken = sorted(set(self.controls) & {*FIXED_HEAD, *FIXED_TAIL, OTHER_RESULTS, self.value_key})
        if taken:  # its column would hold two things, and every export would fail
            raise ConfigurationError(f"the label config's control tag {', '.join(map(repr, taken))} is named like a "
                                     "column of the export CSV (see its columns in the README): rename it")
        self.series = series_for(self.csv_path, self.tag_prefix)
        self.csv_path = self.series.csv_path
        self.manifest_path = self.series.manifest_path
        self._follow_series()
        self.upgrade()
        self.check_series()

    def upgrade(self) -> None:
        """Translate a baseline of whole-row hashes (a version an older LabelHub tagged) into content hashes now
        (see the module docstring; no Hub or Label Studio call, one build of the rows: what the first export would
        make), or a baseline of content hashes of an older form (:meth:`_translate_contents`: the last version's,
        tagged, or committed and not tagged yet, which the next export tags). Nothing when the baseline holds
        content hashes of this form (two queries)."""
        form = str(CONTENT_FORMAT)
        if self.state.whole_row_baseline():
            exported_contents(self.state, build_rows(self.state, self.controls, self.value_key))
        elif self.state.cursor(CONTENT_FORMAT_CURSOR, "1") != form and \
                self.state.last_version_status() in ("tagged", "committed"):
            self._translate_contents()
        if self.state.cursor(CONTENT_FORMAT_CURSOR, "1") != form:
            self.state.set_cursor(CONTENT_FORMAT_CURSOR, form)

    def _translate_contents(self) -> None:
        """Give the baseline (the last version's ``{annotation_id: "<content hash>:<annotator>"}``: the last tagged one,
        or one an older LabelHub committed and was stopped before tagging, which the next export tags and counts
        against; found by an audit: its hashes were left in the older form, and the next version counted every
        annotation as changed) the content hashes of this LabelHub's form
        (:func:`labelhub.sync.versions.incremental.content_key`: a file URL counts as the file it names) where the
        annotation's stored row is the one it was hashed from: its stored content hash then is the baseline's (the
        rows stored are read before the build makes them again, once, in the new form). Other annotations keep their
        hash and count as changed in the next version, as they would have. One read of the stored rows, one build,
        one write of the baseline."""
        before = {}
        for text, _, _, content in self.state.export_rows():
            row = json.loads(text)
            before[int(row["annotation_id"])] = content or content_hash(row)
        built = build_rows(self.state, self.controls, self.value_key)
        last = self.state.last_version()
        version = last["version"]
        hashes, labels = self.state.version_baseline(version)
        translated = {}
        for key, value in hashes.items():
            old, _, who = value.partition(":")
            now = built.contents.get(key)
            translated[key] = f"{now.partition(':')[0]}:{who}" if now and before.get(key) == old else value
        if translated == hashes:
            return
        # the same version again (its commit, parent, summary, label columns and status), with the hashes translated;
        # a crash between the two leaves it "committing", which the next export finishes by finding its commit
        self.state.begin_version(version, last["export_id"], translated, last["summary"], labels)
        self.state.set_version_status(version, last["status"], last["commit_sha"], last["parent_commit"])
        log.info("content hashes of the last version translated: a file URL counts as the file it names (%d of its "
                 "%d annotations are as then)", sum(1 for k, v in translated.items() if v != hashes[k]), len(hashes))

    def _follow_series(self) -> None:
        """Forget the state's versions when they belong to another series (the prefix changed): the new series is
        numbered from the repo's tags and its first version counts every annotation as added.

        Raises:
            ConfigurationError: the state's versions have no series recorded (cursor :data:`SERIES`: made before
                series existed, when every project tagged ``annotations-vN`` whatever its ``--csv-path``, or with the
                default series, which recorded none), ``--tag-prefix`` was not given, and the prefix derived from
                ``--csv-path`` is not ``annotations`` (:meth:`_unchosen_series`). Nothing is written to the state.
        """
        stored = self.state.cursor(SERIES)
        if not stored:
            self._unchosen_series()
            stored = DEFAULT_PREFIX
        if stored == self.series.prefix:
            return
        if self.state.last_version_status() is not None:
            log.warning("the tag prefix changed from %r to %r: starting the series %s-vN", stored,
                        self.series.prefix, self.series.prefix)
            self.state.forget_versions()
            self.state.set_cursor(EXPORTED_GENERATION, "")  # pending: the new series' first version is due
        self.state.set_cursor(SERIES, self.series.prefix)

    def _unchosen_series(self) -> None:
        """Refuse to start another series for versions that have no series recorded unless the user chose.

        Decided (found by an audit of upgrades): before series existed every project tagged ``annotations-vN``, so a
        project that exported with ``--csv-path annotations/labels.csv`` and restarts with the same flags after the
        upgrade would derive the prefix ``labels``, forget its versions and start ``labels-v1`` counting every
        annotation as added, though the user changed nothing. Which series to go on with is the user's choice, said
        by ``--tag-prefix``; with it given (``tag_prefix`` set) the prefix is followed as any change is.

        Raises:
            ConfigurationError: the state has versions, ``tag_prefix`` is not set and the derived prefix is not
                ``annotations``; the message names both ``--tag-prefix`` choices.
        """
        derived = self.series.prefix
        if self.tag_prefix or derived == DEFAULT_PREFIX or self.state.last_version_status() is None:
            return
        raise ConfigurationError(
            f"this state's versions were made before series existed (or with the default --csv-path), tagged "
            f"{DEFAULT_PREFIX}-vN, and --csv-path {self.csv_path} derives the tag prefix {derived!r}: pass "
            f"--tag-prefix {DEFAULT_PREFIX} to go on with them (as before), or --tag-prefix {derived} to start the "
            f"series {derived}-vN (its first version counts every annotation as added)")

    def pending(self) -> bool:
        """True when annotations changed since the last export, a version is not finished, or the import cycle saw
        the branch at a head whose files were not checked yet (:meth:`_lost_files`); no call."""
        return (self.state.cursor(GENERATION, "0") != self.state.cursor(EXPORTED_GENERATION, "0")
                or self.state.last_version_status() not in (None, "tagged") or self._unchecked_head() is not None)

    def _unchecked_head(self) -> tuple[str, str] | None:
        """``(head, last version's commit)`` when the import cycle's last poll saw the branch of a local repository
        at another commit than the last tagged version's, not checked yet by :meth:`_lost_files` in this process
        (state reads only). A Hub repo is not checked: it has no work tree whose stale index could be committed (a
        ``git push`` to it must fast-forward), and the check would cost Hub calls at every commit of others."""
        if not self.repo.local:
            return None
        seen = seen_refs(self.state, self.repo.repo_id, self.revision)
        last = self.state.last_tagged_commit()
        if seen is None or last is None or seen.head == last or seen.head in self._checked:
            return None
        return seen.head, last

    def _own_paths(self) -> list[str]:
        """The files of this series an export writes and no one else should (the CSV, the manifest, the training,
        consensus and, on the Hub, rows files: as :meth:`_files` names them); ``README.md`` is shared and not among
        them."""
        local, series = self.repo.local, self.series
        paths = [self.csv_path, self.manifest_path, series.local_metadata_path if local else series.hub_training_path,
                 series.local_consensus_path if local else series.hub_consensus_path]
        return paths if local else [*paths, series.rows_path]

    def _lost_files(self) -> tuple[str, str, list[str]] | None:
        """``(head, last version's commit, paths)`` when the branch's head, as the import cycle last saw it, no longer
        holds the last version's files as that version wrote them: its own files (:meth:`_own_paths`) missing or
        with other content, or ``README.md`` missing, or whose series' part (its section, its configs and features)
        is not the last version's (:meth:`_restored_card`: an older version's card committed from a stale index);
        people may edit the rest of it, which a restore keeps. A commit made from a stale
        index of a local work tree does that (the export moves the branch without touching the work tree, so
        ``git add new.png && git commit`` there commits the files as they were before the export, or without them).

        Local repositories only (:meth:`_unchecked_head`): two ``git ls-tree`` (:meth:`labelhub.repos.DatasetRepo.
        blob_ids`), a read of ``README.md`` when it changed and a read of the refs when something is lost, once per
        head in this process, and none while the head is the last version's commit (after each export). ``None``: nothing lost, or nothing to check.
        """
        unchecked = self._unchecked_head()
        if unchecked is None:
            return None
        head, last = unchecked
        paths = [*self._own_paths(), "README.md"]
        try:
            if self._expected[0] != last:
                self._expected = (last, self.repo.blob_ids(last, paths))
            lost = self._lost_at(head, paths)
            if lost:  # before saying so, the head as it is now (one call): the poll's may be older than the version
                now, tags = self.repo.head_and_tags(self.revision)
                remember_refs(self.state, self.repo.repo_id, self.revision, now, tags)
                if now != head:
                    head, lost = now, (self._lost_at(now, paths) if now != last else [])
        except RevisionNotFound:  # a head gone since the poll (a rewrite): the next poll sees the new one
            return None
        if not lost:
            self._checked.add(head)
            return None
        return head, last, lost

    def _lost_at(self, head: str, paths: list[str]) -> list[str]:
        """Those of ``paths`` that ``head`` lacks or holds with other content than the last version
        (:attr:`_expected`); ``README.md`` only when it lacks it. One blob id read."""
        expected, found = self._expected[1], self.repo.blob_ids(head, paths)
        lost = [path for path in paths if path != "README.md" and path in expected and found.get(path) != expected[path]]
        card = "README.md" in expected and found.get("README.md") != expected["README.md"]
        if card and "README.md" in found:  # edited: lost when this series' part is not the last version's (two reads)
            text = self.repo.read_file(head, "README.md").decode(errors="replace")
            card = self._restored_card(text, head) != text
        return lost + (["README.md"] if card else [])

    def _version_marks(self, card: str) -> tuple[str | None, list[str]]:
        """``(this series' section, the versions its configs name)`` of ``card``: the section between the series'
        markers (``None``: absent) and each ``LabelHub <prefix>-vN, export <id>`` of its configs' ``description``."""
        begin, end = self.series.markers
        section = re.search(re.escape(begin) + ".*?" + re.escape(end), card, re.S)
        return (section.group(0) if section else None,
                re.findall(rf"LabelHub {re.escape(self.series.prefix)}-v\d+, export [0-9a-f]+", card))

    def _restored_card(self, text: str, commit: str | None = None) -> str:
        """``text``, a ``README.md`` of the branch head, with this series' part made the last version's again: its
        section (between its markers) and the version its configs' ``description`` names (``datasets`` keys a
        local folder's cache by the card's configs: a card naming an older version loads that version's cached
        rows). Everything else is kept: people may edit the rest of the card. A card without the section (its
        author replaced the whole README) gets the section appended and the series' ``configs`` and ``dataset_info``
        entries set, as a version writes it into such a card (:func:`labelhub.sync.versions.card.dataset_card`); it
        was the last version's card whole before, which threw the author's text away. One whose text (its YAML
        aside) the last version's card holds (an older card a commit from a stale work tree brought back) is the
        last version's card whole, as the version wrote it. ``text`` itself when its part
        is the last version's (nothing lost) or the last version's card has no section. The last version's card: one
        read, once per version.

        Raises:
            labelhub.errors.LabelHubError: ``text`` (read at ``commit``) lacks the section and its YAML front matter
                does not parse (:func:`labelhub.sync.versions.card.parsed_card`): it is not rewritten.
        """
        last = self._expected[0]
        if self._last_card[0] != last or not last:
            try:
                self._last_card = (last, self.repo.read_file(last, "README.md").decode(errors="replace"))
            except FileNotFoundError:
                self._last_card = (last, "")
        card = self._last_card[1]
        ours, versions = self._version_marks(card)
        theirs, named = self._version_marks(text)
        if ours is None:
            return text
        if theirs is None:
            from huggingface_hub.repocard import REGEX_YAML_BLOCK

            block = REGEX_YAML_BLOCK.search(text)
            if text[block.end() if block else 0:].strip() in card:  # a README the card was made from (a stale index)
                return card
            body = text if block else "---\n{}\n---\n" + text  # as dataset_card does
            return self._with_series_yaml(f"{body.rstrip()}\n\n{ours}\n", card, commit)
        restored = text.replace(theirs, ours) if theirs != ours else text
        if versions and any(v != versions[0] for v in named):
            restored = re.sub(rf"LabelHub {re.escape(self.series.prefix)}-v\d+, export [0-9a-f]+",
                              lambda _: versions[0], restored)
        mine, wanted = self._series_yaml(restored), self._series_yaml(card)
        if mine != wanted and wanted is not None and mine is not None:  # other files or features than then
            restored = self._with_series_yaml(restored, card)
        return restored

    def _series_yaml(self, card: str) -> list | None:
        """This series' entries of ``card``'s ``configs`` and ``dataset_info`` (by config name), as parsed
        (``huggingface_hub.DatasetCard``); ``None`` when its YAML does not parse or its ``configs``/``dataset_info`` are
        not lists of mappings (:func:`labelhub.sync.versions.card.parsed_card`)."""
        try:
            data = parsed_card(card).data
        except Exception:  # noqa: BLE001 - a card people broke: its part is left as it is
            return None
        names = self.series.config_names
        infos = getattr(data, "dataset_info", None)
        infos = [infos] if isinstance(infos, dict) else list(infos or [])
        return [[c for c in (getattr(data, "configs", None) or []) if isinstance(c, dict)
                 and c.get("config_name", "default") in names],
                [i for i in infos if isinstance(i, dict) and i.get("config_name", "default") in names]]

    def _with_series_yaml(self, text: str, card: str, commit: str | None = None) -> str:
        """``text`` with this series' ``configs`` and ``dataset_info`` entries those of ``card`` (where the first
        of them stood; other entries and keys kept), written by ``huggingface_hub.DatasetCard``.

        Raises:
            labelhub.errors.LabelHubError: ``text``'s front matter (read at ``commit``) cannot be rebuilt
                (:func:`labelhub.sync.versions.card.parsed_card`).
        """
        names = self.series.config_names
        mine = parsed_card(text, commit)

        as_list = lambda value: [value] if isinstance(value, dict) else list(value or [])  # noqa: E731
        ours = self._series_yaml(card)
        mine.data.configs = merged_entries(list(getattr(mine.data, "configs", None) or []), ours[0], names)
        infos = merged_entries(as_list(getattr(mine.data, "dataset_info", None)), ours[1], names)
        if infos:
            mine.data.dataset_info = infos[0] if len(infos) == 1 else infos
        elif hasattr(mine.data, "dataset_info"):
            del mine.data.dataset_info
        return str(mine)

    def _restore(self, head: str, last: str, lost: list[str]) -> str | None:
        """Write ``lost`` back as the last version (at commit ``last``) holds them, in one commit on ``head``
        (``annotations vN: files restored``, no tag: no annotation changed, the version's tag still names its
        files); its sha, or ``None`` when the branch moved meanwhile (the next poll's head is checked again)."""
        number = self.state.last_version()["version"]
        tag = self.series.tag(number)
        files = {path: self.repo.read_file(last, path) for path in lost if path != "README.md"}
        if "README.md" in lost:  # the card's other text is the user's: only this series' part goes back
            try:
                files["README.md"] = self._restored_card(self.repo.read_file(head, "README.md").decode(
                    errors="replace"), head).encode()
            except FileNotFoundError:
                files["README.md"] = self.repo.read_file(last, "README.md")
        message = f"{self.series.commit_title(number)}: files restored"
        description = (f"{', '.join(lost)} as {tag} wrote them ({last[:12]}): {head[:12]} lacked them or held other "
                       "content. No annotation changed.")
        try:
            sha = hub_retrying(self.max_attempts, f"restoring the files of {tag}", self.sleep,
                               on=(TransientHubError,))(self.repo.commit, files, message, description, head,
                                                        self.revision)
        except CommitConflict:
            log.info("branch %s moved while the files of %s were restored: checking its new head at the next poll",
                     self.revision, tag)
            return None
        self._moved_on(head, sha)
        self._checked.add(sha)
        log.info("restored %s on %s at %s", ", ".join(lost), self.revision, sha[:12])
        return sha

    def _moved_on(self, parent: str, sha: str, tag: str | None = None) -> None:
        """The branch moved from ``parent`` to our commit ``sha`` (tagged ``tag``): the heads the importer and the
        export know follow it when they were at ``parent`` (the importer need not relist for our own commit)."""
        if self.state.head(self.revision) == parent:
            self.state.set_head(self.revision, sha)
        seen = seen_refs(self.state, self.repo.repo_id, self.revision)
        if seen is not None and seen.head == parent:
            remember_refs(self.state, self.repo.repo_id, self.revision, sha, {**seen.tags, **({tag: sha} if tag else {})})

    def export(self) -> Version | None:
        """Export once; returns the new version, or ``None`` when nothing changed (or only bookkeeping columns:
        see the module docstring; the export is no longer pending either way).

        The version is numbered after the newest of the series' tags in the repo (as the import cycle's last poll
        read them, no call), not after the state's last version alone: a newer version of this project made by
        another exporter (a second ``--state``: a cron ``--once`` run from another folder) is adopted first
        (:meth:`_follow_repo`), and so is a version whose number another exporter tagged between our commit and
        our tag.

        Raises:
            labelhub.errors.HubError: the Hub kept failing (the export stays pending and is retried).
            labelhub.errors.ConfigurationError: the series' newest version belongs to another CSV or another
                Label Studio project (:meth:`check_series`); nothing was written.
            labelhub.errors.LabelHubError: the branch keeps moving, or other exporters kept taking the version
                number (:data:`RENUMBER_ATTEMPTS`), or the ``README.md`` the card is rebuilt from cannot be (not
                UTF-8, or a YAML front matter that does not parse: :func:`labelhub.sync.versions.card.parsed_card`):
                one line, nothing written, the export retried (the daemon goes on importing).
        """
        generation = self.state.cursor(GENERATION, "0")
        learn_annotators(self.project, self.state)
        built = build_rows(self.state, self.controls, self.value_key)
        frame, csv, hashes = built.frame, built.csv, built.contents
        finished = self._finish_unfinished(built)
        labels = label_columns(frame, self.controls)
        refs, lost = self._refs(), None
        for attempt in range(RENUMBER_ATTEMPTS):
            refs = self._follow_repo(refs, built)
            if self._rebuilt is not None:  # an adoption gave annotations the revisions they were made on
                built, self._rebuilt = self._rebuilt, None
                frame, csv, hashes = built.frame, built.csv, built.contents
                labels = label_columns(frame, self.controls)
            if attempt == 0:
                lost = self._lost_files()
                if lost:
                    self._say_lost(lost)
            exported = exported_contents(self.state, built)
            differing = differing_ids(exported, hashes)
            if not differing:  # nothing changed, or bookkeeping columns alone: their values wait for the next version
                self.state.set_cursor(EXPORTED_GENERATION, generation)
                if lost:  # no version to make: the files go back as the last version wrote them
                    self._restore(*lost)
                return finished
            added, changed, removed = diff_counts(exported, hashes, differing)
            summary = {"added": added, "changed": changed, "removed": removed}
            if attempt == 0:
                refs = self._say_untagged(refs)
            last = self.state.last_version()
            if last:  # on the freshest head known: the commit's compare-and-swap says when someone committed since
                number, parent = last["version"] + 1, self._parent(last, refs)
            else:  # the first version of the series: on the head of the last read of the refs
                number, parent = max(self.series.numbered(refs.tags), default=0) + 1, refs.head
            export_id = uuid.uuid4().hex
            change = self._changes(labels, self.series.tag(number), differing)
            told = changes_text(change, changed) + files_text(self.state.file_changes(), change.old)
            self.state.begin_version(number, export_id, hashes, summary, labels.to_json(orient="records"))
            message = f"{self.series.commit_title(number)}: +{added} ~{changed} -{removed}"
            description = (f"Annotations of Label Studio project {self.project.project_id} ({self.project.url}).\n\n"
                           f"{told}\n\n{EXPORT_ID_KEY}: {export_id}")
            try:
                sha, parent, files = self._commit(number, export_id, frame, csv, summary, change, told, message,
                                                  description, parent, first=last is None)
            except _Renumber as moved:  # nothing landed: number the version again on the fresh refs
                self.state.drop_version(number)
                refs = moved.refs
                continue
            self.state.set_version_status(number, "committed", sha, parent)
            try:
                self._tag(number, sha, summary, card=files["README.md"].decode(), generation=generation)
            except _TagTaken as taken:  # our commit stays untagged; adopt theirs and number again
                refs = taken.refs
                continue
            self._moved_on(parent, sha, self.series.tag(number))
            log.info("exported %s at %s: %s", self.series.tag(number), sha[:12], message)
            return Version(number, self.series.tag(number), sha, added, changed, removed)
        raise LabelHubError(f"other exporters kept taking the version numbers of the series {self.series.prefix!r} "
                            f"in {self.repo.repo_id}: gave up after {RENUMBER_ATTEMPTS} attempts (run one exporter "
                            "per project and series)")

    def _parent(self, last: dict, refs: SeenRefs) -> str:
        """The commit the next version is built on: the branch head the import cycle's last poll saw (``refs``) when
        it moved since our last version (someone pushed: building on our last version's commit would send a commit
        certain to be refused, 412, then the whole version again), else our last version's commit; no call (one,
        ``resolve``, when neither is known). A poll older than our last version is safe: its head is an ancestor,
        refused by the compare-and-swap like any stale parent, and :meth:`_commit` rebuilds on the head read then."""
        ours = last["commit_sha"]
        if refs.head and refs.head != ours and refs.head != last.get("parent_commit"):
            return refs.head
        return ours or self.repo.resolve(self.revision)

    def _say_lost(self, lost: tuple[str, str, list[str]]) -> None:
        """Say why the branch's head lacks the last version's files, which are written back: its history was
        rewritten (a local repo whose version commit is no longer an ancestor of the head: ``git reset --hard`` to an
        older commit, a rebase; one ``git merge-base --is-ancestor``), else, the card alone, that its part is put back,
        else a commit from a stale work tree's index."""
        head, _, paths = lost
        last = self.state.last_version()
        version = self.series.tag(last["version"])
        if self._rewritten(last.get("commit_sha") or head, head, gone=False):
            log.warning("the history of branch %s of %s was rewritten (a git reset, a rebase or a force-push): %s, the "
                        "commit of %s, is no longer in it; writing its files (%s) back on the new head %s (the tags of "
                        "earlier versions keep their commits)", self.revision, self.repo.repo_id,
                        str(last.get("commit_sha"))[:12], version, ", ".join(paths), head[:12])
            return
        if paths == ["README.md"]:  # edited by hand (the whole README replaced), or from a stale work tree
            log.warning("README.md of %s at %s lacks the part of the dataset card %s wrote (its section between the "
                        "LabelHub markers, or its configs): putting that part back, the rest of the card as it is",
                        self.revision, head[:12], version)
            return
        log.warning(
            "%s of %s at %s lacks the files of %s as it wrote them (%s): a commit made from a work tree whose "
            "index predates the export (the export moves the branch without touching the work tree) drops or "
            "reverts them; writing them back. To avoid it, commit through a clone (git pull before, git push "
            "after), or run git reset --keep in the work tree before git add and git commit",
            self.revision, self.repo.repo_id, head[:12], version, ", ".join(paths))


    def _say_untagged(self, refs: SeenRefs) -> SeenRefs:
        """Say, once per version, that the tag of a version this state tagged is no longer in the repo, before the
        next version is numbered: someone deleted it (``git tag -d``, ``HfApi.delete_tag``), and the series shows a
        gap (``v1, v3``). Decided: the tag is not made again (its deletion may be deliberate, a version withdrawn) and
        its number is not reused (a number names one CSV for good); the warning names the commit, which stays in the
        branch's history, and how to tag it again.

        No call while the refs the import cycle kept show every such tag; they may lack one (a head that moved
        meanwhile keeps :meth:`_moved_on` from adding ours), so the repo's refs are read (one call) before saying
        it. Returns the refs to go on with (the fresh ones when read)."""
        said = set(json.loads(self.state.cursor(UNTAGGED_SAID, "[]")))
        ours = {self.series.tag(number): sha for number, sha in self.state.tagged_versions().items()}
        if not [tag for tag in ours if tag not in refs.tags and tag not in said]:
            return refs
        refs = self._fresh_refs()
        missing = [tag for tag in ours if tag not in refs.tags and tag not in said]
        if not missing:
            return refs
        self.state.set_cursor(UNTAGGED_SAID, json.dumps(sorted(said | set(missing))))
        tag, sha = missing[-1], ours[missing[-1]]
        again = (f"git -C {self.repo.repo_id} tag {tag} {sha}" if self.repo.local else
                 f"HfApi().create_tag({self.repo.repo_id!r}, tag={tag!r}, revision={sha!r}, repo_type='dataset')")
        last = self.state.last_version()
        log.warning("tags of versions this sync exported are gone from %s (deleted by hand?): %s. They are not made "
                    "again and a version number is never reused: the next version is %s. The commits stay in the "
                    "history of %s; to tag one again: %s", self.repo.repo_id,
                    ", ".join(f"{t} (commit {ours[t][:12]})" for t in missing[-5:]),
                    self.series.tag(last["version"] + 1) if last else self.series.tag(1), self.revision, again)
        return refs

    def _refs(self) -> SeenRefs:
        """The branch head and the tags an export is numbered from and (a first version) committed on: those the
        import cycle's last poll read (:mod:`labelhub.sync.files.seen`), no call; one call when there are none. A
        head that moved since makes the commit's compare-and-swap fail, and :meth:`_commit` reads them again."""
        seen = seen_refs(self.state, self.repo.repo_id, self.revision)
        if seen is None:
            head, tags = self.repo.head_and_tags(self.revision)
            remember_refs(self.state, self.repo.repo_id, self.revision, head, tags)
            seen = SeenRefs(head, tags)
        return seen

    def _newest(self, tags: dict[str, str]) -> tuple[int, str, str] | None:
        """``(number, tag, commit)`` of the series' newest version among ``tags`` when it is not the state's last
        tagged version nor one already found to be ours (``None``: nothing to check). No call."""
        numbered = self.series.numbered(tags)
        if not numbered:
            return None
        number = max(numbered)
        tag = numbered[number]
        sha = tags[tag]
        if (tag, sha) in self._owned:
            return None
        last = self.state.last_version()
        if last is not None and (last["version"] > number or (last["version"] == number and last["status"] == "tagged"
                                                              and last["commit_sha"] == sha)):
            return None  # ours (or refs older than our last version)
        return number, tag, sha

    def check_series(self) -> None:
        """Refuse, before anything is written, a series whose newest version in the repo is another CSV's or
        another Label Studio project's (:meth:`_owner_manifest`); run as the exporter starts, and by every export
        (:meth:`_follow_repo`).

        At start it reads the refs the import cycle last saw, or the repo's (one call), and the newest version's
        manifest when it is not the state's last version (one read); before refusing, the repo's refs as they are
        now (one call: the state's may show a tag deleted since). A repo that does not answer leaves the check
        to the first export; a tag made by hand (:class:`ForeignTag`) is said in a warning and the first export
        waits for it to go.

        Raises:
            labelhub.errors.ConfigurationError: see :meth:`_owner_manifest`.
        """
        if self.state.last_version_status() not in (None, "tagged"):
            return  # an unfinished version: the first export finishes it, then checks
        try:
            refs = self._refs()
            newest = self._newest(refs.tags)
            if newest is not None:
                try:
                    self._owner_manifest(newest[1], newest[2])
                except (ConfigurationError, ForeignTag):  # refs a poll old: the repo's now (one call) before refusing
                    refs = self._fresh_refs()
                    newest = self._newest(refs.tags)
                    if newest is not None:
                        self._owner_manifest(newest[1], newest[2])
                if newest is not None:
                    self._keep_deleted_tasks(newest[1], newest[2])
        except ConfigurationError:
            raise
        except ForeignTag as exc:  # said now; the export waits for the tag to go, the imports go on
            log.warning("%s", exc)
        except (LabelHubError, OSError) as exc:  # the repo did not answer: the first export checks
            log.debug("series not checked at start: %s", one_line(exc, 200))

    def _keep_deleted_tasks(self, tag: str, sha: str) -> None:
        """For a fresh state (no version, an import ledger that never looked at the project's tasks) about to go on
        from ``tag`` (at ``sha``), this project's version another exporter made: record as deleted in Label Studio
        (:meth:`labelhub.sync.ledger.ImportLedger.set_deleted`) the tasks its CSV has rows of that the project no
        longer has, so that the first import does not make their files tasks again (a task someone deleted in Label
        Studio stays deleted: the README). Said in one warning. Two calls: the CSV, and which of its task ids the
        project still has (:meth:`labelhub.sync.labelstudio.project.LabelStudioProject.existing_task_ids`); nothing
        when that listing moved under its reading.

        Decided: a file the version names under another path than the repo's now (moved since) is not matched, and
        a second task of the same file made in Label Studio after the deletion is not adopted by the first import
        (its path is known as deleted).
        """
        ledger = self.state.ledger
        if self.state.last_version() is not None or ledger.adopted_through() is not None or ledger.count():
            return
        try:
            rows = read_version_csv(self.repo, sha, self.series)
        except (FileNotFoundError, ValueError, LabelHubError) as exc:
            log.debug("deleted tasks not looked for in %s: %s", tag, one_line(exc, 200))
            return
        if not {"task_id", "hf_path"} <= set(rows.columns) or not len(rows):
            return
        revision = rows["annotated_revision"] if "annotated_revision" in rows else ""
        files = {int(task): (str(path), str(rev)) for task, path, rev in
                 zip(rows["task_id"], rows["hf_path"], revision if len(revision) else [""] * len(rows)) if path}
        existing = self.project.existing_task_ids(sorted(files))
        if existing is None:
            return
        gone = {task: files[task] for task in sorted(set(files) - existing)}
        if not gone:
            return
        from labelhub.sync.ledger import Entry

        ledger.record([Entry(path, task, rev) for task, (path, rev) in gone.items()])
        ledger.set_deleted(gone)
        log.warning("%d tasks of %s (%s) are no longer in Label Studio project %s (deleted there): their files are "
                    "not made tasks again: %s", len(gone), tag, sha[:12], self.project.project_id,
                    ", ".join(f"task {task} ({path})" for task, (path, _) in list(gone.items())[:20])
                    + (", ..." if len(gone) > 20 else ""))

    def _owner_manifest(self, tag: str, sha: str) -> dict:
        """The manifest of version ``tag`` (at commit ``sha``) of this series, when it was exported with this
        ``--csv-path`` from this Label Studio project (or from ``take_over_from``). One read (a few more to name
        the other CSV when it is not).

        Returns:
            The manifest (``{}`` when it does not parse: an edited file, taken as this project's; its
            ``label_studio`` ``{}`` when that is not an object).

        Raises:
            ForeignTag: ``tag`` is no version LabelHub made (:meth:`_version_commit`): a tag made by hand.
            labelhub.errors.ConfigurationError: the commit holds no manifest of ``tag`` at this series' path
                (another CSV in another folder exports with the same tag prefix), or it names another
                ``csv_path`` (the same, in the same folder), or another Label Studio project (two projects
                exporting into one series would each make versions without the other's annotations) that is
                not ``take_over_from`` and was not deleted from this Label Studio (:meth:`_deleted`).
        """
        repo, prefix = self.repo.repo_id, self.series.prefix
        try:
            manifest = json.loads(self.repo.read_file(sha, self.manifest_path))
        except FileNotFoundError:
            manifest = None
        except (ValueError, RecursionError):  # an edited file (nested too deeply for json's recursion)
            manifest = {}
        if manifest is not None and not isinstance(manifest, dict):
            manifest = {}
        if manifest and not isinstance(manifest.get("label_studio") or {}, Mapping):
            manifest = {**manifest, "label_studio": {}}  # an edited section: read as none, as diff_versions does
        if manifest is None or manifest.get("tag", tag) != tag:
            other = self._other_manifest(tag, sha)
            if other is None and not self._version_commit(tag, sha, manifests_read=True):
                raise self._foreign_tag(tag, sha, "the export of this series waits")
            holder = (f" ({other.get('csv_path', '?')} of Label Studio project "
                      f"{(other.get('label_studio') or {}).get('project_id', '?')})" if other else "")
            raise ConfigurationError(
                f"{tag} of {repo} is not a version of --csv-path {self.csv_path}: its commit holds no "
                f"{self.manifest_path} of {tag}; another CSV{holder} exports with the tag prefix {prefix!r}; give "
                "this one its own --tag-prefix or --csv-path")
        other = manifest.get("csv_path")
        project = (manifest.get("label_studio") or {}).get("project_id")
        if other and other != self.csv_path:
            raise ConfigurationError(
                f"{tag} of {repo} holds {other} (Label Studio project {project if project is not None else '?'}), "
                f"not {self.csv_path}: another project exports with the tag prefix {prefix!r}; give this one its "
                "own --tag-prefix or --csv-path")
        replaced = self._replaced(manifest)
        if replaced and project != self.take_over_from and not self._deleted(project, manifest):
            raise ConfigurationError(
                f"{tag} of {repo} was exported from Label Studio project {project} of "
                f"{(manifest.get('label_studio') or {}).get('url', '?')} created at another time (project key "
                f"{manifest['label_studio']['project_key']}, this is {self._key()} of {self.project.url}): "
                f"another project with the same id cannot share the series {prefix!r} ({self.csv_path}); if it still "
                f"exports there, give this one its own --csv-path; if this project replaces it, pass "
                f"--take-over-from {project} to go on with its series")
        if project is not None and not replaced and project not in (self.project.project_id, self.take_over_from) \
                and not self._deleted(project, manifest):
            raise ConfigurationError(
                f"{tag} of {repo} was exported from Label Studio project {project}, this is project "
                f"{self.project.project_id}: two projects cannot share the series {prefix!r} ({self.csv_path}); if "
                f"project {project} still exports there, give this one its own --csv-path (e.g. "
                f"--csv-path annotations/<name>.csv, tags <name>-vN); if this project replaces it (recreated or "
                f"restored), pass --take-over-from {project} to go on with its series")
        return manifest

    def _replaced(self, manifest: dict) -> bool:
        """Whether ``manifest`` was exported by another project that had this project's id
        (:func:`labelhub.sync.versions.diff.replaced_project`: its ``label_studio.project_key`` is not this one's;
        a Label Studio reset gives the new project the old one's id). ``False`` for a manifest without the key (an
        older LabelHub's): taken as this project's, as that LabelHub did."""
        return replaced_project(manifest.get("label_studio"), self.project.project_id, self._key())

    def _key(self) -> str | None:
        """The project's key ``<id>.<created_at>`` (:attr:`labelhub.sync.labelstudio.project.LabelStudioProject.key`);
        ``None`` for a project object without one (a stand-in in a test)."""
        return getattr(self.project, "key", None)

    def _deleted(self, project_id, manifest: dict) -> bool:
        """Whether Label Studio project ``project_id``, which exported ``manifest``, was deleted from this Label
        Studio (the manifest names this one's URL and it answers 404 for the project: one call; or the id now
        names this project, created after it: :meth:`_replaced`, no call): its series is this project's to take
        over (a project deleted and recreated, Label Studio reset) without ``--take-over-from``. A project of
        another Label Studio, or one this cannot tell, is not."""
        if (manifest.get("label_studio") or {}).get("url") != self.project.url:
            return False
        if self._replaced(manifest):
            return True
        try:
            self.project.call(self.project.client.projects.get, project_id)
        except ProjectNotFound:
            return True
        except LabelHubError:
            return False
        return False

    def _untagged_at_head(self, refs: SeenRefs, newest: tuple[int, str, str] | None) -> tuple[int, str, str] | None:
        """For a state with no version yet (a new or a lost ``--state``): the version the manifest at the branch
        head names, ``(number, tag, head)``, when it is newer than ``newest`` (the series' newest tag) because its tag
        was deleted; else ``newest``. Adopting the newest tag alone numbered the next version as the untagged one
        (two ``annotations v2`` commits in the branch, the second counted against v1). One read, none when the
        import cycle's listing of the head showed no ``README.md`` (every version writes one)."""
        if not refs.head or seen_card(self.state, self.repo.repo_id, refs.head) == "":
            return newest
        try:
            manifest = json.loads(self.repo.read_file(refs.head, self.manifest_path))
        except (FileNotFoundError, ValueError, RecursionError, RevisionNotFound):
            return newest
        tag = manifest.get("tag") if isinstance(manifest, dict) else None
        number = self.series.number(tag) if isinstance(tag, str) else None
        if number is None or number <= (newest[0] if newest else 0) or tag in refs.tags:
            return newest
        return number, tag, refs.head

    def _other_manifest(self, tag: str, sha: str) -> dict | None:
        """The manifest of ``tag`` at one of the usual places of another CSV with this prefix
        (:meth:`labelhub.sync.versions.series.Series.manifest_candidates`), to name it; ``None`` when none is."""
        for path in self.series.manifest_candidates():
            try:
                manifest = json.loads(self.repo.read_file(sha, path))
            except (FileNotFoundError, ValueError, RecursionError):
                continue
            if isinstance(manifest, dict) and manifest.get("tag") == tag:
                return manifest
        return None

    def _follow_repo(self, refs: SeenRefs, built: VersionRows, fresh: bool = False) -> SeenRefs:
        """Check the series' newest version among ``refs.tags`` (:meth:`_newest`; no call when it is ours) and, when
        another exporter of this project made it (a second ``--state``, or a state that lost its versions; or a
        project this one takes over), adopt it: it becomes the state's last tagged version, so the next version
        is numbered after it, built on it, checked against its files (:meth:`_lost_files`) and counted against
        its rows (:meth:`_adopt`).

        ``refs`` are those the import cycle last read (they may be a poll interval old): before refusing, the refs
        are read again (one call, remembered; ``fresh``: they were just read) and the check made on them, so a tag
        deleted since the poll no longer stops anything.

        Returns:
            The refs checked (the fresh ones when they were read again).

        Raises:
            labelhub.errors.ConfigurationError: see :meth:`_owner_manifest`.
            ForeignTag: the newest tag of the series was not made by LabelHub (:meth:`_owner_manifest`).
        """
        newest = self._newest(refs.tags)
        if self.state.last_version() is None:
            newest = self._untagged_at_head(refs, newest)
        if newest is None:
            return refs
        number, tag, sha = newest
        try:
            manifest = self._owner_manifest(tag, sha)
        except (ConfigurationError, ForeignTag):
            if fresh:
                raise
            return self._follow_repo(self._fresh_refs(), built, fresh=True)
        self._adopt(number, tag, sha, manifest, built)
        return refs

    def _fresh_refs(self) -> SeenRefs:
        """The refs as the repo has them now (one call), remembered for the next export and check."""
        head, tags = self.repo.head_and_tags(self.revision)
        remember_refs(self.state, self.repo.repo_id, self.revision, head, tags)
        return SeenRefs(head, tags)

    def _version_commit(self, tag: str, sha: str, manifests_read: bool = False) -> bool:
        """Whether commit ``sha``, which ``tag`` names, is a version LabelHub made under that name: a manifest naming
        ``tag`` at this series' path or where another CSV of the prefix keeps it (:meth:`_other_manifest`), or a
        commit titled ``<prefix> vN: ...`` (:meth:`labelhub.sync.versions.series.Series.commit_title`; one call).
        ``True`` when the repo cannot tell (the refusal then stays the one it was). ``manifests_read``: the caller
        found no manifest naming ``tag`` already (only the title is read then)."""
        if manifests_read:
            return self._titled_version(tag, sha)
        try:
            manifest = json.loads(self.repo.read_file(sha, self.manifest_path))
        except (FileNotFoundError, ValueError, RecursionError):
            manifest = None
        if isinstance(manifest, dict) and manifest.get("tag") == tag:
            return True
        if self._other_manifest(tag, sha) is not None:
            return True
        return self._titled_version(tag, sha)

    def _titled_version(self, tag: str, sha: str) -> bool:
        """Whether commit ``sha`` is titled as version ``tag`` of this series (``annotations v4: ...``; one call);
        ``True`` when the repo cannot tell."""
        number = self.series.number(tag)
        try:
            _, title = self.repo.commit_info(sha)
        except (LabelHubError, OSError, IndexError):
            return True
        return number is not None and title.startswith(f"{self.series.commit_title(number)}:")

    def _foreign_tag(self, tag: str, sha: str, what: str) -> ForeignTag:
        """The one-line error for a hand-made ``tag`` (on ``sha``): ``what`` waits until it is deleted or moved."""
        repo = self.repo.repo_id
        how = (f"git -C {repo} tag -d {tag}" if self.repo.local else
               f"HfApi().delete_tag({repo!r}, tag={tag!r}, repo_type='dataset')")
        return ForeignTag(
            f"the tag {tag} of {repo} (on commit {sha[:12]}) was not made by LabelHub: its commit holds no "
            f"{self.manifest_path} of {tag} and is no '{self.series.commit_title(self.series.number(tag) or 0)}' "
            f"version commit; {what} until it is deleted ({how}) or renamed to a name outside the series' "
            f"{self.series.prefix}-vN; imports go on meanwhile")

    def _adopt(self, number: int, tag: str, sha: str, manifest: dict, built: VersionRows) -> None:
        """Record version ``number`` (``tag`` at ``sha``, which another exporter made) as the state's last tagged
        version. Its baseline: an annotation whose row in its CSV equals ours now (bookkeeping columns aside) has
        its content hash now; one whose row differs, or that only it holds, a hash no row has (changed,
        removed); one it lacks is not in it (added). Before comparing, the annotations unchanged since it (the same
        ``updated_at``) take the ``annotated_revision`` its CSV gives them (:meth:`_seed_revisions`; their rows are
        built again, in :attr:`_rebuilt` for the export). Its label columns are its CSV's. Two reads: its CSV and its
        ``README.md`` (what the next card is rebuilt from).

        A version of another project that had this project's id (:meth:`_replaced`: Label Studio was reset, and
        its annotation ids start again at 1) has none of our annotations, whatever their ids: its rows are kept in
        the baseline and its label columns under their ids negated (annotation ids are positive), so the next
        version counts every one of them as removed and every annotation of this project as added, and no
        relabel is made up from two annotations that share an id."""
        try:
            theirs = read_version_csv(self.repo, sha, self.series)
        except (FileNotFoundError, ValueError) as exc:
            log.warning("cannot read the CSV of %s (%s): its annotations count as changed in the next version", tag,
                        one_line(exc, 300))
            theirs = pd.DataFrame(columns=["annotation_id"])
        replaced = self._replaced(manifest)
        if replaced:  # another project's annotations: its ids are not ours (see above)
            theirs = theirs.assign(annotation_id=-theirs["annotation_id"].astype(int))
        elif self._seed_revisions(tag, theirs):
            built = self._rebuilt = build_rows(self.state, self.controls, self.value_key)
        ours = pd.read_csv(io.BytesIO(built.csv), dtype=str, keep_default_na=False) if built.contents else \
            pd.DataFrame(columns=["annotation_id"])
        columns = sorted((set(ours.columns) | set(theirs.columns)) - set(BOOKKEEPING) - {"annotation_id"})
        mine = ours.set_index(ours["annotation_id"].astype(int)).reindex(columns=columns, fill_value="")
        other = theirs.set_index(theirs["annotation_id"].astype(int)).reindex(columns=columns, fill_value="")
        both = mine.index.intersection(other.index)
        same = (mine.loc[both] == other.loc[both]).all(axis=1) if columns else pd.Series(True, index=both)
        hashes = {int(k): built.contents[int(k)] if ok else f"{tag}:{k}" for k, ok in same.items()}
        hashes.update({int(k): f"{tag}:{k}" for k in other.index.difference(both)})
        theirs["annotation_id"] = theirs["annotation_id"].astype(int)
        records = label_columns(theirs, self.controls).to_json(orient="records")
        try:
            card = self.repo.read_file(sha, "README.md").decode(errors="replace")
        except FileNotFoundError:
            card = ""
        counts = manifest.get("counts") if isinstance(manifest.get("counts"), dict) else {}
        summary = {key: int(counts.get(key, 0) or 0) for key in ("added", "changed", "removed")}
        had = self.state.last_version()
        self.state.begin_version(number, str(manifest.get("export_id") or f"adopted-{tag}"), hashes, summary, records)
        self.state.set_version_status(number, "tagged", sha, manifest.get("parent_commit"), cursors={CARD: card})
        project = (manifest.get("label_studio") or {}).get("project_id", self.project.project_id)
        if replaced:
            log.warning("taking over the series %r from Label Studio project %s of %s created at another time "
                        "(project key %s, this is %s: %s): going on from %s (%s); its %d annotations count as "
                        "removed and this project's as added in the next version (the two projects' annotation ids "
                        "name different annotations)", self.series.prefix, project,
                        (manifest.get("label_studio") or {}).get("url", "?"), manifest["label_studio"]["project_key"],
                        self._key(), "--take-over-from" if project == self.take_over_from and
                        (manifest.get("label_studio") or {}).get("url") != self.project.url else
                        "Label Studio was reset or the project deleted and its id given again", tag, sha[:12],
                        len(other))
        elif project != self.project.project_id:
            log.warning("taking over the series %r from Label Studio project %s (%s): going on from %s (%s); %d of "
                        "its %d annotations are as in this project", self.series.prefix, project,
                        "--take-over-from" if project == self.take_over_from else "deleted from this Label Studio",
                        tag, sha[:12], int(same.sum()), len(other))
        elif had is not None and had["version"] == number:  # the same version, on another commit than ours
            log.warning("%s of %s now names commit %s, not %s as this state recorded (the tag moved by hand, or "
                        "another --state of this project exported it again): going on from it, its rows as they are "
                        "there",
                        tag, self.repo.repo_id, sha[:12], str(had.get("commit_sha"))[:12])
        elif had is not None:
            log.warning("%s of %s (%s) was exported by another exporter of Label Studio project %s (another --state: "
                        "a daemon or a cron job started in another folder?): going on from it; run one exporter per "
                        "project and series (the default --state is relative to the folder it starts in)", tag,
                        self.repo.repo_id, sha[:12], project)
        else:
            log.info("going on from %s (%s), the series' newest version, of this project: changes are counted "
                     "against its rows", tag, sha[:12])
        self._owned.add((tag, sha))

    def _seed_revisions(self, tag: str, theirs: pd.DataFrame) -> int:
        """Give the annotations of ``theirs`` (the CSV of ``tag``, a version another exporter made) that did not
        change since (the same ``updated_at`` in the state) the commit that version says they were made on
        (its ``annotated_revision`` column), when the state holds another (:meth:`labelhub.sync.state.SyncState.
        seed_revisions`). A state that read them after their file changed stored the newer commit its task shows
        (:func:`labelhub.sync.versions.rows.annotation_row` falls back to the task's ``hf_revision``): its rows
        would pair the label with the changed file, differ from the version's, and make a version of that alone,
        which the other exporter would then turn back (the audit's noise versions). No call.

        Returns:
            How many annotations got another revision (their rows are to be built again).
        """
        if not {"annotation_id", "updated_at", "annotated_revision"} <= set(theirs.columns) or not len(theirs):
            return 0
        seeded = self.state.seed_revisions(
            (int(aid), str(updated), str(revision)) for aid, updated, revision in
            theirs[["annotation_id", "updated_at", "annotated_revision"]].itertuples(index=False, name=None))
        if seeded:
            log.info("%d annotations unchanged since %s take the revision it says they were made on (this state read "
                     "them after their files changed)", seeded, tag)
        return seeded

    def _changes(self, labels: pd.DataFrame, tag: str, ids: set[int]) -> VersionDiff:
        """What changed since the last tagged version, label by label (no Hub call: its label columns are in
        the state). Only the rows of ``ids`` (:func:`differing_ids`) are compared: a row whose content hash is the
        same in both versions has the same label columns, and adds nothing to a :class:`VersionDiff`."""
        baseline = self.state.last_tagged_labels()
        if baseline is None:
            return diff_frames(labels.iloc[0:0], labels, self.controls, None, tag, self._known_labels())
        version, records, commit = baseline
        if records is None:  # tagged by a LabelHub that did not keep them: read from its CSV (one download, once)
            records = self._labels_at(commit, version)
        return label_changes(records, labels, ids, self.controls, self.series.tag(version), tag, self._known_labels())

    def _known_labels(self) -> dict[str, tuple[str, ...]]:
        """The label config's labels per control (a label holding ``|`` is one label in the counts)."""
        return control_labels(self.project.label_config, self.controls)

    def _labels_at(self, commit: str, version: int) -> str:
        """The label columns (:func:`label_columns`, JSON records) of the version at ``commit``, read from its CSV;
        ``"[]"`` when it cannot be read (said in the log: the changes are then counted from nothing)."""
        try:
            frame = read_version_csv(self.repo, commit, self.series)
            frame["annotation_id"] = frame["annotation_id"].astype(int)
        except (LabelHubError, OSError, KeyError, ValueError) as exc:
            log.warning("cannot read the labels of %s (%s): its changes are counted from nothing",
                        self.series.tag(version), one_line(exc, 300))
            return "[]"
        return label_columns(frame, self.controls).to_json(orient="records")

    def _files(self, number: int, export_id: str, frame: pd.DataFrame, csv: bytes, summary: dict,
               change: VersionDiff, told: str, parent: str) -> dict[str, bytes]:
        last_tagged = number - 1 if number > 1 else None
        live = frame[~frame["was_cancelled"].astype(bool)] if len(frame) else frame
        # the configs and figures, made again only for the annotations and tasks changed since the last build
        absent = frozenset(path for path, removed in self.state.ledger.known().items() if removed) \
            if self.repo.local else frozenset()  # the Hub layout names each file at the commit it was annotated on
        built = build_files(self.state, frame, self.project.label_config, self.controls, self.field,
                            self.repo.repo_id, self.repo.local, parent, rows_json=not self.repo.local, absent=absent,
                            texts=self.texts)
        manifest = {
            "version": number, "tag": self.series.tag(number), "export_id": export_id,
            "parent_version": self.series.tag(last_tagged) if last_tagged else None, "parent_commit": parent,
            "counts": {"annotations": len(frame), "tasks": int(frame["task_id"].nunique()) if len(frame) else 0,
                       "annotators": int(frame["annotator"].nunique()) if len(frame) else 0,
                       "cancelled": len(frame) - len(live),
                       "ground_truth": int(frame["ground_truth"].astype(bool).sum()) if "ground_truth" in frame else 0,
                       **summary},
            "label_distribution": built.label_distribution,
            "label_studio": {"project_id": self.project.project_id, "project_key": self._key(),
                             "url": self.project.url, "title": self.project.title},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "csv_path": self.csv_path, "csv_sha256": hashlib.sha256(csv).hexdigest(),
            "controls": self.controls,
            "changes": {**change.to_dict(), "relabels": change.relabels[:100]},
            "agreement": built.agreement,
        }
        previous = self._previous_card(parent)
        local, series = self.repo.local, self.series
        training_path = series.local_metadata_path if local else series.hub_training_path
        folder = local and folder_layout(self.field)  # imagefolder; an Audio series' rows file alone is JSON Lines
        training_files = built.training_patterns(training_path) if folder else [training_path]
        found = built.label_distribution  # labels the config lacks still load (see training_features)
        features = None if local else training_features(self.project.label_config, self.controls, self.field,
                                                        found=found)
        # the class names per control, in the order the training config numbers them (Hub: its ClassLabel's; local:
        # the label config's): what examples/boxes_to_yolo.py numbers classes by, and a changed label set shows
        manifest["class_names"] = class_names(features) if features is not None else {
            name: list(labels) for name, labels in control_labels(self.project.label_config, self.controls).items()
            if labels}
        rows_path = None if local else series.rows_path
        consensus_path = series.local_consensus_path if local else series.hub_consensus_path
        consensus_files = built.consensus_patterns(consensus_path) if folder else [consensus_path]
        consensus_features = None if local else training_features(self.project.label_config, self.controls,
                                                                   self.field, CONSENSUS_COLUMNS, found=found)
        card = dataset_card(previous, self.csv_path, card_block(manifest, self.controls, self.value_key,
                                                                 changes=told,
                                                                 agreement=agreement_markdown(manifest["agreement"]),
                                                                 series=series, rows_config=not local,
                                                                 local=bool(local), media=self.field.tag,
                                                                 repo_id=None if local else self.repo.repo_id),
                            training_files=training_files, features=features, rows_path=rows_path,
                            consensus_files=consensus_files, consensus_features=consensus_features,
                            # a folder builder's rows file only when the files hold media (imagefolder, audiofolder);
                            # a Text project's rows are plain JSON Lines, whose builder warns at an unknown parameter
                            consensus_metadata=consensus_path if local and len(consensus_files) > 1 else None,
                            series=series, training_metadata=training_path
                            if local and not series.is_default and len(training_files) > 1 else None,
                            version=f"LabelHub {manifest['tag']}, export {export_id}", commit=parent)
        files = {self.csv_path: csv, self.manifest_path: manifest_json(manifest), training_path: built.training,
                 consensus_path: built.consensus, "README.md": card.encode()}
        if rows_path:
            files[rows_path] = built.rows_json
        return files

    def _previous_card(self, parent: str) -> str | None:
        """The ``README.md`` at ``parent`` that the card is rebuilt from (``None``: it has none), with no call when
        the state knows it: our last version's card when ``parent`` is that version, none or that card when the
        import cycle listed ``parent`` (:func:`labelhub.sync.files.seen.seen_card`); else it is read (one
        download).

        Raises:
            labelhub.errors.LabelHubError: the ``README.md`` read is not UTF-8 (:func:`labelhub.sync.versions.card.
                card_text`): the card is not rebuilt from a text whose characters would be lost.
        """
        card = self.state.cursor(CARD) or None
        if parent == self.state.last_tagged_commit():
            return card
        blob = seen_card(self.state, self.repo.repo_id, parent)
        if blob == "":
            return None
        if blob and card is not None and blob == git_blob_id(card.encode()):
            return card
        try:
            data = self.repo.read_file(parent, "README.md")
        except FileNotFoundError:
            return None
        return card_text(data, parent)

    def _commit(self, number, export_id, frame, csv, summary, change, told, message, description,
                parent, first: bool = False) -> tuple[str, str, dict[str, bytes]]:
        """Commit until it lands; returns ``(sha, the parent it landed on, the files committed)``.

        A 412/409, or a parent that is no longer a commit of the repo (a rewritten history, see :meth:`_rewritten`),
        reads the refs again (one call) and rebuilds the files on the new head (at most 10 times); a series
        that got the version ``number`` (or a later one) meanwhile, or for a state's ``first`` version any
        version, raises :class:`_Renumber` instead (the export adopts it and numbers again). 429/5xx and lost answers are retried by
        :func:`labelhub.retry.hub_retrying` (``max_attempts``, ``Retry-After`` honoured), a lost answer, and a
        conflict after a failed call, first looked up by its export id (:meth:`_commit_once`)."""
        conflicts, failed = 0, []
        while True:
            files = self._files(number, export_id, frame, csv, summary, change, told, parent)
            try:
                sha = hub_retrying(self.max_attempts, f"commit of v{number}", self.sleep)(
                    self._commit_once, files, message, description, parent, export_id, failed)
                return sha, parent, files
            except (CommitConflict, RevisionNotFound) as exc:
                conflicts += 1
                if conflicts > 10:
                    raise LabelHubError(f"{self.revision} kept moving: gave up after {conflicts} conflicts") from None
                old = parent
                parent, tags = self.repo.head_and_tags(self.revision)
                remember_refs(self.state, self.repo.repo_id, self.revision, parent, tags)
                newest = max(self.series.numbered(tags), default=0)
                if newest >= number or (first and newest + 1 != number):  # another exporter made a version
                    raise _Renumber(SeenRefs(parent, tags))
                if self._rewritten(old, parent, gone=isinstance(exc, RevisionNotFound)):
                    log.warning("the history of branch %s was rewritten (a squash or a force-push): %s, which the "
                                "export was built on, is no longer in it; rebuilding the export on its new head %s "
                                "(the tags of earlier versions keep their commits)", self.revision, old[:12],
                                parent[:12])
                else:
                    log.info("branch %s moved: rebuilding the export on %s", self.revision, parent[:12])

    def _rewritten(self, old: str, head: str, gone: bool) -> bool:
        """Whether the branch's history was rewritten since ``old``, the commit an export was built on: ``gone``
        (the commit call said ``old`` is not a commit of the repo: a local repo after ``git gc``), or, in a local
        repository, ``old`` is not an ancestor of the new ``head`` (one ``git merge-base --is-ancestor``). A Hub
        repo answers a stale ``parent_commit`` with 412 whether the branch moved on or was rewritten, and telling
        them apart would read the whole history: the export is rebuilt on the new head the same way, without
        the warning."""
        if gone:
            return True
        return bool(self.repo.local) and old != head and not self.repo.is_ancestor(old, head)

    def _commit_once(self, files: dict[str, bytes], message: str, description: str, parent: str,
                     export_id: str, failed: list[BaseException]) -> str:
        """One commit call; a lost answer is looked up by ``export_id`` before it counts as a failure, and so is a
        conflict after a failed call of this export (``failed``, which this call extends): a 5xx may come from a
        gateway that gave up while the Hub wrote the commit, and the retry on the same parent is then refused with
        412 because of our own commit (found by an audit: the version was committed twice)."""
        try:
            return self.repo.commit(files, message, description, parent, self.revision)
        except (AmbiguousCommit, TransientHubError, CommitConflict) as exc:
            conflict = isinstance(exc, CommitConflict)  # nothing committed: only a failed call before may have
            if isinstance(exc, AmbiguousCommit) or (conflict and failed):
                landed = self.repo.find_commit(f"{EXPORT_ID_KEY}: {export_id}", self.revision)
                if landed:
                    return landed
            if not conflict:
                failed.append(exc)
            raise

    def _tag(self, number: int, sha: str, summary: dict, card: str | None = None,
             generation: str | None = None) -> None:
        """Tag ``sha`` as version ``number``, the tag's message the commit's title with its counts (``git tag -n``
        lists them); remember ``card`` (the README it holds, ``""``: none) for the next export and ``generation``
        (of the annotations it holds) as exported, in the transaction that marks it tagged.

        Raises:
            _TagTaken: the tag exists on another commit (another exporter made version ``number`` between our
                commit and our tag): our version is forgotten, its commit left untagged on the branch, and the
                caller adopts theirs (:meth:`_follow_repo`, which refuses it when it is another project's).
            ForeignTag: the tag exists on a commit LabelHub did not make as that version (a tag made by hand): our
                version stays ``committed``, and the next export tags our commit once the name is free.
        """
        tag = self.series.tag(number)
        message = f"{self.series.commit_title(number)}: +{summary['added']} ~{summary['changed']} -{summary['removed']}"
        try:
            hub_retrying(self.max_attempts, f"tag {tag}", self.sleep, on=(TransientHubError,))(
                self.repo.create_tag, tag, sha, message=message)
        except TagExists:
            head, tags = self.repo.head_and_tags(self.revision)
            remember_refs(self.state, self.repo.repo_id, self.revision, head, tags)
            other = tags.get(tag)
            if other is None or (other != sha and not self._version_commit(tag, other)):
                # a hand-made tag (or one deleted just now): our commit keeps the version, tagged once the name is
                # free (the next export, :meth:`_finish_unfinished`), never committed again
                raise self._foreign_tag(tag, other or "?", f"our commit {sha[:12]} of {tag} stays on {self.revision} "
                                        "untagged (the next export tags it, no second commit)") from None
            if other != sha:
                self.state.drop_version(number)
                log.warning("%s exists on %s, not on our commit %s, which stays on %s untagged: another exporter made "
                            "that version; following the repo's versions", tag, str(tags.get(tag))[:12], sha[:12],
                            self.revision)
                raise _TagTaken(tag, SeenRefs(head, tags)) from None
        cursors = {CARD: card} if card is not None else {}
        cursors[FILE_CHANGES] = "{}"  # told in this version's description and card
        if generation is not None:
            cursors[EXPORTED_GENERATION] = generation
        self.state.set_version_status(number, "tagged", cursors=cursors)
        seen = seen_refs(self.state, self.repo.repo_id, self.revision)
        if seen is not None and seen.tags.get(tag) != sha:  # the check needs no call for our own tag
            remember_refs(self.state, self.repo.repo_id, self.revision, seen.head, {**seen.tags, tag: sha})

    def _finish_unfinished(self, built: VersionRows) -> Version | None:
        """Finish a version a crash left ``committing`` (find its commit by its export id, else forget it) or
        ``committed`` (tag it); a tag another exporter took meanwhile is adopted (:meth:`_follow_repo`). Returns the
        version tagged, else ``None``."""
        last = self.state.last_version()
        if last is None or last["status"] == "tagged":
            return None
        if last["status"] == "committing":
            sha = self.repo.find_commit(f"{EXPORT_ID_KEY}: {last['export_id']}", self.revision)
            if sha is None:
                self.state.drop_version(last["version"])
                return None
            self.state.set_version_status(last["version"], "committed", sha)
            last["commit_sha"] = sha
        summary = last["summary"]
        # the card that commit holds is the next export's to rebuild (the one remembered is the version before's:
        # rebuilt from it, the next card would drop what others changed in the README since)
        try:
            card = self.repo.read_file(last["commit_sha"], "README.md").decode(errors="replace")
        except FileNotFoundError:
            card = ""
        try:
            self._tag(last["version"], last["commit_sha"], summary, card=card)
        except _TagTaken as taken:
            self._follow_repo(taken.refs, built)
            return None
        self._moved_on(last.get("parent_commit") or "", last["commit_sha"], self.series.tag(last["version"]))
        log.info("finished %s at %s after an interruption", self.series.tag(last["version"]), last["commit_sha"][:12])
        return Version(last["version"], self.series.tag(last["version"]), last["commit_sha"], summary["added"],
                       summary["changed"], summary["removed"])
