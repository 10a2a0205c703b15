"""A version of the repo → a Label Studio project's tasks and annotations, never twice (``labelhub restore``).

The version is read at its tag (or commit sha) through :func:`labelhub.repos.open_repo`: the CSV
(:mod:`labelhub.sync.versions.rows` says its columns) and the manifest beside it (``manifest.json``, or
``P.manifest.json`` for the series of another ``--csv-path``/``--tag-prefix``, :mod:`labelhub.sync.versions.series`),
whose ``controls`` give each control column's tag type (without a manifest, the project's label config gives it).

- **Tasks**: one per distinct ``task_id`` of the CSV; the rows of several annotators of one task become one task
  with several annotations. ``data``: the CSV's value column (its 4th) under the *project's* value key
  (:func:`labelhub.label_config.data_field`: a version of ``$image`` tasks restores into a project reading
  ``$picture`` with the same controls), as written (the file URL), except a text in the task data (``<Text
  value="$text">``), which is the file's text at the row's ``annotated_revision``, the text its spans index
  (:mod:`labelhub.sync.versions.restore_texts`; the CSV holds the task's text at export, newer when the file changed
  after the annotation); ``hf_repo`` (the ``--repo``'s repo_id), ``hf_path`` and ``hf_revision`` when the row has an
  ``hf_path``: ``hf_revision`` is the 40-hex segment of the URL's path for a project whose value is a URL (the commit
  the URL shows, as the sync set it), else the row's ``annotated_revision`` (a text's own 40-hex words are never
  read as one); the metadata columns
  (after ``annotated_revision``; empty cells left out, JSON objects and lists decoded, the rest kept as text, as
  the sync's metadata join made them); ``restored_from`` (``"<repo_id>@<tag>"``) and ``source_task_id`` (the
  version's ``task_id``), and for a local repository ``restored_repo`` (``"git:<root commit>"``,
  :mod:`labelhub.sync.versions.restore_identity`): the restore's identity.
- **Annotations**, in Label Studio's result format (https://labelstud.io/guide/export) from each control cell, with
  ``to_name`` from the project's label config: Choices → ``choices`` split on ``|``; Taxonomy → ``taxonomy``
  paths (``|`` between, ``/`` within); RectangleLabels → one region per box, percent 0 to 100
  (:func:`labelhub.sync.regions.percent_from_fractions`), ``rotation: 0``, ``rectanglelabels`` split on ``|``;
  TextArea → one result whose ``text`` is the cell's entries (:func:`labelhub.sync.versions.rows.textarea_entries`:
  a JSON list of strings is several entries, other text one entry, newlines in it kept; a version written
  before several entries were kept as a list joined them with a newline, and they come back as that one
  entry, as they always did); Labels → one span per item of the cell's JSON list (``start``, ``end``,
  ``text``, ``labels`` split on ``|``), a box item (``x``, no ``start``: the label of an image region) a ``labels``
  result with the box's percent place and ``rotation`` and the region's ``id`` (so that Label Studio joins it to the
  region's ``rectangle`` result again), another region's item (a Polygon's ``points``) its value as stored, its
  ``label`` split into ``labels`` (a cell of labels only, written
  before LabelHub kept a Labels tag's spans or regions, is skipped, said once with a count; the row's other controls
  are restored); any other control → the
  cell's JSON list of result values, one result each. Labels are split with
  the project's labels (:func:`labelhub.sync.versions.rows.split_labels`: a label holding ``|``, or ``/`` in a
  Taxonomy, stays whole). The ``other_results`` items of the project's controls are restored as they were stored,
  and the relations between restored regions (a region a relation or a per-region answer names keeps its ``id`` in
  the CSV: :func:`labelhub.sync.versions.rows.region_links`; its ``per_region`` answers come back on it); other
  relations are left out, said once. A box's ``rotation`` and a span's other keys come back as exported.
  A control the project lacks, or whose tag type differs, is skipped, said once. ``was_cancelled``, ``ground_truth`` and ``lead_time`` are carried over; the version's
  ``annotation_id`` is sent as the annotation ``id``, which Label Studio keeps as the annotation's ``import_id``.
- **Annotators**: ``completed_by`` is the id of the Label Studio user with the row's email (case-insensitive,
  :meth:`LabelStudioProject.users`); Label Studio's import takes a member's id there (``_insert_valid_completed_by``
  in ``label_studio/tasks/serializers.py``, Label Studio 1.23; checked by ``tests/test_restore.py``), so
  annotations and tasks stay one import call. An email without a user leaves ``completed_by`` out: the annotation
  is the importing user's. Annotations have no ``meta`` field (neither in the model nor in the import), so every
  original annotator is kept in the **task's** ``meta``: ``restored_annotations``, one
  ``{annotation_id, annotator, matched, created_at, updated_at, annotated_revision}`` per annotation
  (``annotation_id`` = the restored annotation's ``import_id``): unmatched emails and the original times (the
  import sets its own) are never lost, and a sync of the project stores each annotation with its own
  ``annotated_revision`` until someone saves it (:func:`labelhub.sync.annotations.intake.restored_revisions`): the
  task shows one revision, its annotations may have been made on several.
- **Never twice, resumable**: every task goes through :class:`labelhub.sync.ledger.ImportLedger` with source
  :data:`RESTORE_SOURCE` and key ``"<repo identity>#<task_id>"`` (:func:`restore_key`: a Hub repo's id, a local
  repository's root commit, so that a clone, a moved copy or a Docker mount of it is the same source; a task a restore
  recorded under the path before is known under that key too; the tag left out: a project holds each source task
  once, so restoring a later version into the same project adds only its new tasks and leaves restored ones as
  they are; restore into a new project to get a version exactly). A task with an ``hf_path`` is also recorded
  under the repo's own source (an alias) so that a later ``labelhub sync`` of the repo into the project makes no
  second task of its files. A crash between Label Studio's answer and the record is recovered at the next start
  from the tasks with a ``data.restored_from`` (:meth:`Restorer._existing_tasks`). A re-run plans only the rows of
  tasks the ledger does not hold yet (:func:`without_restored`): it repeats no warning about restored rows and
  spends no time on them (1.7 s of 5,000 annotations), and a row :func:`plan_tasks` would reject is reported while
  its task is not restored (rows of the wrong width, :func:`read_rows`, every time).
- **Another project**: a version none of whose control columns the project has with the version's tag type is
  refused
  (a :class:`labelhub.errors.LabelHubError`, one line) before anything is created: its tasks would show nothing in
  the project's editor and carry no labels. A project with some of the version's controls takes those, the others
  said once. A version whose texts are of another kind than the project's ``Text``/``HyperText`` tag reads (URLs
  into a project of inline texts, inline texts into a ``valueType="url"`` one) is refused the same way
  (:func:`labelhub.sync.versions.restore_texts.check_text_kind`): Label Studio would show a URL as the text.
- **Files the project has**: a task of the version whose file (``hf_repo``, ``hf_path``) the project already has a
  task of (the sync's, an import's, the exporting project itself; for a local repository, also a task made from
  another path of it, a clone or a mount, whose ``hf_repo`` is that path) is not restored
  (:meth:`Restorer._file_tasks`): counted in :attr:`RestoreReport.held` and named in a warning; the CLI exits 1,
  since the version is then not wholly in the project (restore into a new project; nothing is lost). A task this
  restore made before stays "already restored".
- **Annotations of dropped results**: an annotation none of whose results the project takes (every control it had
  skipped) is not made, counted in a warning: a non-cancelled annotation with no result counts its task as labelled.
- **Errors**: an unknown tag, a missing CSV, a CSV that does not parse or lacks LabelHub's columns, a
  ``--csv-path`` the version's manifest contradicts raise :class:`labelhub.errors.LabelHubError` (one line from the
  CLI); a row that cannot be read (:func:`read_rows`: more or fewer cells than the header; :func:`plan_tasks`: an
  ``annotation_id`` of an earlier row, a cell not in its column's form) is a :class:`RowError` naming its CSV line
  and ids (printed and counted; the other rows are restored).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pandas as pd

from labelhub.errors import EntryNotFound, LabelHubError, RevisionNotFound
from labelhub.label_config import data_field, parse_label_config
from labelhub.repos import DatasetRepo
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.ledger import Entry, ImportLedger, Item
from labelhub.sync.regions import percent_from_fractions
from labelhub.sync.versions.restore_identity import holds_commit, legacy_key, repo_identities, repo_identity
from labelhub.sync.versions.restore_texts import annotated_texts, check_text_kind, is_url
from labelhub.sync.versions.series import did_you_mean, series_for, version_tag_prefix
from labelhub.sync.versions.rows import FIXED_HEAD, FIXED_TAIL, OTHER_RESULTS, split_labels, textarea_entries

log = logging.getLogger(__name__)

__all__ = ["RESTORE_SOURCE", "RowError", "RestoredTask", "RestoreReport", "Restorer", "cell_results",
           "read_rows", "read_version", "plan_tasks", "restore_key",
           "without_restored"]

#: The ledger source of restored tasks (key: ``"<repo identity>#<task_id of the version>"``, :func:`restore_key`).
RESTORE_SOURCE = "restore:source_task"
_SHA = re.compile(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])")


@dataclass(frozen=True)
class RowError:
    """A CSV row that cannot be restored.

    Attributes:
        row: The CSV line the row starts on (the header is line 1; a frame not read by :func:`read_version`
            counts its data rows from line 2).
        reason: Why, one line.
        task_id, annotation_id: The row's ids when they are numbers (``None`` otherwise).
    """

    row: int
    reason: str
    task_id: int | None = None
    annotation_id: int | None = None

    def __str__(self) -> str:
        ids = ", ".join(f"{name} {value}" for name, value in (("task_id", self.task_id),
                                                              ("annotation_id", self.annotation_id)) if value is not None)
        return f"line {self.row}" + (f" ({ids})" if ids else "") + f": {self.reason}"


def _int_or_none(cell) -> int | None:
    try:
        return int(str(cell))
    except ValueError:
        return None


@dataclass
class RestoredTask:
    """One task to restore: ``payload`` without ``completed_by`` (set once users are known)."""

    source_task_id: int
    data: dict
    annotations: list[dict] = field(default_factory=list)
    annotators: list[dict] = field(default_factory=list)


@dataclass
class RestoreReport:
    """What a restore did.

    Attributes:
        created: Tasks created by this run.
        annotations: Annotations created by this run.
        already_restored: Tasks of the version a restore into this project made before (by an earlier run, or by
            this one's recovery: ``recovered`` counts those among them).
        recovered: Of ``already_restored``, the tasks an interrupted run created and did not record (found in
            Label Studio).
        held: Tasks of the version not restored because the project already has a task of their file (the same
            ``hf_repo`` and ``hf_path``, made by the sync, an import or a restore of another version's task of it);
            ``held_task_ids`` are those project tasks.
        unmatched: Annotations created whose annotator has no Label Studio user; ``unmatched_annotators``:
            ``{email: annotations}`` of them.
        errors: The rows rejected.
    """

    created: int = 0
    annotations: int = 0
    already_restored: int = 0
    recovered: int = 0
    held: int = 0
    held_task_ids: list[int] = field(default_factory=list)
    unmatched: int = 0
    unmatched_annotators: dict[str, int] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)

    def summary(self) -> str:
        """The summary line the CLI prints: the parts in brackets are tasks not created (``recovered`` nests in
        ``already restored``)."""
        extra = []
        if self.already_restored:
            extra.append(f"{self.already_restored} already restored" + (
                f", {self.recovered} of them found in Label Studio from an earlier run" if self.recovered else ""))
        if self.held:
            extra.append(f"{self.held} skipped: the project has their files' tasks")
        return (f"tasks created: {self.created}" + (f" ({'; '.join(extra)})" if extra else "")
                + f", annotations: {self.annotations}, annotators without a Label Studio user: "
                + f"{len(self.unmatched_annotators)}, rows rejected: {len(self.errors)}")


def _boxes(cell: str) -> list[dict]:
    boxes = json.loads(cell)
    if not isinstance(boxes, list) or not all(isinstance(b, dict) for b in boxes):
        raise ValueError("not a JSON list of boxes")
    return boxes


def cell_results(tag: str, from_name: str, to_name: str, cell: str, labels: Sequence[str] = ()) -> list[dict]:
    """Label Studio result items of one control cell of the CSV (the inverse of
    :func:`labelhub.sync.versions.rows.control_value`; pure).

    Args:
        tag: The control tag type (``Choices``, ``RectangleLabels``, ...).
        from_name, to_name: The result's control and object tag names.
        cell: The cell (``""``: no result).
        labels: The control's labels in the project's label config: a label holding ``|`` (or, in a Taxonomy,
            ``/``) comes back whole (:func:`labelhub.sync.versions.rows.split_labels`).

    Returns:
        The result items (see the module docstring). A region the CSV kept the ``id`` of has it back (else
        ``<from_name>-<n>``), and its ``per_region`` values (``{from_name: value}``) under the item's key
        ``per_region``, which :func:`plan_tasks` turns into results of those controls.

    Raises:
        ValueError: The cell is not in its tag's form (bad JSON, a box without ``x, y, width, height``).
    """
    if cell == "":
        return []
    base = {"from_name": from_name, "to_name": to_name, "type": tag.lower()}
    if tag == "RectangleLabels":
        results = []
        for n, box in enumerate(_boxes(cell), 1):
            try:
                percent = percent_from_fractions({k: float(box[k]) for k in ("x", "y", "width", "height")})
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"box {n} of {from_name} needs numbers x, y, width, height") from None
            label = str(box.get("label") or "")
            rotation = box.get("rotation") if isinstance(box.get("rotation"), (int, float)) else 0
            results.append({**_region(box, from_name, n), **base, "value": {
                **percent, "rotation": rotation, "rectanglelabels": split_labels(label, labels) if label else []}})
        return results
    if tag == "TextArea":
        return [{**base, "value": {"text": textarea_entries(cell)}}]
    if tag == "Labels":
        if not cell.startswith("["):
            raise _LabelsWithoutRegions(f"{from_name} holds labels without their regions (a version written before LabelHub "
                             "exported a Labels tag's spans, or its labels of image regions)")
        results = []
        for n, span in enumerate(_boxes(cell), 1):
            if "start" not in span and all(k in span for k in ("x", "y", "width", "height")) and "points" not in span:
                # the label of an image region: a box
                try:
                    [box] = cell_results("RectangleLabels", from_name, to_name, json.dumps([span]), labels)
                except ValueError:
                    raise ValueError(f"region {n} of {from_name} needs numbers x, y, width, height") from None
                value = box["value"]
                value["labels"] = value.pop("rectanglelabels")
                results.append({**box, **_region(span, from_name, n), "type": "labels", "value": value})
                continue
            if "start" not in span and any(k in span for k in ("x", "points")):  # another region (a Polygon's points)
                value = {k: v for k, v in span.items() if k not in ("id", "per_region", "label")}
                label = str(span.get("label") or "")
                results.append({**_region(span, from_name, n), **base,
                                "value": {**value, "labels": split_labels(label, labels) if label else []}})
                continue
            start, end = (span.get(key) if isinstance(span, dict) else None for key in ("start", "end"))
            if not all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in (start, end)):
                raise ValueError(f"span {n} of {from_name} needs a start and an end")
            # as exported: character offsets over Text, seconds over Audio (an int() lost their fractions)
            value = {"start": start, "end": end, "text": str(span.get("text", "")),
                     **{k: v for k, v in span.items() if k not in _SPAN_CELL}}  # HyperText offsets, a channel
            label = str(span.get("label") or "")
            results.append({**_region(span, from_name, n), **base,
                            "value": {**value, "labels": split_labels(label, labels) if label else []}})
        return results
    if tag in ("Choices", "Taxonomy") and not cell.startswith("[{"):
        if tag == "Taxonomy":
            value = [split_labels(path, labels, "/") for path in cell.split("|")]
        else:
            value = split_labels(cell, labels)
        return [{**base, "value": {tag.lower(): value}}]
    values = json.loads(cell)  # any other control (and the JSON fallback of rows.control_value)
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise ValueError(f"{from_name} is not a JSON list of result values")
    return [{**_region(value, from_name, n), **base,
             "value": {k: v for k, v in value.items() if k not in ("id", "per_region")}}
            for n, value in enumerate(values, 1)]


class _LabelsWithoutRegions(ValueError):
    """A Labels cell of labels only (``PER|LOC``), written before LabelHub kept a Labels tag's spans or regions:
    :func:`plan_tasks` skips that cell, not the row."""


#: The keys of a span item of the CSV that are not its value's (rows.control_value).
_SPAN_CELL = ("start", "end", "text", "label", "id", "per_region")


def _region(item: Mapping, from_name: str, n: int) -> dict:
    """A restored region's ``id`` (the one the CSV kept, else ``<from_name>-<n>``: Label Studio's editor names every
    region) and its ``per_region`` values."""
    found = {"id": str(item["id"]) if isinstance(item.get("id"), (str, int)) else f"{from_name}-{n}"}
    return {**found, **({"per_region": item["per_region"]} if isinstance(item.get("per_region"), dict) else {})}


def read_version(repo: DatasetRepo, tag: str, csv_path: str | None,
                 tag_prefix: str | None = None) -> tuple[str, pd.DataFrame, dict, list[RowError]]:
    """``(commit sha, CSV rows as text, manifest, rows rejected)`` of a version of one series (one tag listing, two
    or three file reads).

    Args:
        repo: The dataset repo.
        tag: The version's tag (``annotations-v3``, ``test-v3``), its commit sha, or an unambiguous prefix of 7 hex
            digits or more of a version's commit sha (what ``labelhub versions`` prints); a commit that no tag
            names needs its full sha on the Hub (a local repo resolves a prefix too). An annotated tag's own object
            sha (``git rev-parse annotations-v1``) is read as its commit.
        csv_path: The series' CSV (``--csv-path``); with several projects exporting into the repo, every commit holds
            each project's CSV, and this one is read. ``None`` (not given): the CSV the version's manifest names
            (``P.manifest.json`` beside the default CSV, or at a usual place,
            :meth:`labelhub.sync.versions.series.Series.manifest_candidates`; ``P`` from ``tag_prefix`` or the tag),
            the default CSV for a version of the default series without a manifest.
        tag_prefix: The series' tag prefix (:mod:`labelhub.sync.versions.series`); ``None``: derived from
            ``csv_path`` (or, when that is ``None``, from the tag).

    Returns:
        ``(sha, frame, manifest, rejected)``: the commit; the CSV's rows with every cell a string, indexed by the
        CSV line each starts on (index name ``line``), an inline text row's value the file's text at its
        ``annotated_revision``, the text its spans index (:func:`labelhub.sync.versions.restore_texts.annotated_texts`:
        one more file read per distinct file and revision of such rows); the manifest (``{}`` when the version has
        none); the rows whose cells are more or fewer than the header's (:func:`read_rows`).

    Raises:
        RevisionNotFound: ``tag`` is neither a tag of the repo nor a commit sha (or a prefix of one).
        labelhub.errors.ConfigurationError: ``tag`` is named as a version of another series than ``csv_path``'s.
        LabelHubError: The manifest names another CSV than ``csv_path`` (one line naming both); a version of another
            series than the default without a manifest and without ``csv_path``; no CSV at ``csv_path``, or one
            that does not parse or lacks LabelHub's columns.
        labelhub.errors.HubError: The Hub could not be read.
    """
    explicit = csv_path is not None
    series = series_for(csv_path, tag_prefix or (None if explicit else version_tag_prefix(tag)))
    series.check_tag(tag)
    sha = _version_sha(repo, tag)
    places = [series.manifest_path] + ([] if explicit else series.manifest_candidates())
    manifest, where = {}, None
    for place in places:
        try:
            found = json.loads(repo.read_file(sha, place))
        except (FileNotFoundError, ValueError):
            continue
        if isinstance(found, dict):
            manifest, where = found, place
            break
    named = manifest.get("csv_path") if isinstance(manifest.get("csv_path"), str) else None
    if explicit and named and named.strip("/") != series.csv_path:
        raise LabelHubError(f"{tag} of {repo.repo_id} is a version of the CSV {named} (its manifest {where}), not "
                            f"of --csv-path {series.csv_path}: pass --csv-path {named}, or leave it out")
    if not explicit:
        if named:
            series = series_for(named, series.prefix)
        elif not series.is_default:
            raise LabelHubError(f"{tag} of {repo.repo_id} has no manifest of the series {series.prefix!r} (looked at "
                                f"{', '.join(places)}): pass its --csv-path")
    csv_path = series.csv_path
    try:
        raw = repo.read_file(sha, csv_path)
    except EntryNotFound:
        raise LabelHubError(f"{tag} of {repo.repo_id} has no annotations CSV at {csv_path} (see --csv-path)") from None
    frame, rejected = read_rows(raw, f"{csv_path} at {tag}")
    missing = [c for c in (*FIXED_HEAD, "annotator") if c not in frame.columns]
    if missing or len(frame.columns) < 4:
        raise LabelHubError(f"{csv_path} at {tag} is not a LabelHub annotations CSV (missing columns: "
                            f"{', '.join(missing) or 'the value column'})")
    frame, _ = annotated_texts(repo, frame)
    return sha, frame, manifest, rejected


def _version_sha(repo: DatasetRepo, tag: str) -> str:
    """The commit of ``tag`` (see :func:`read_version`): a tag, a version's commit sha or a prefix of one (from the
    tag listing, no other call), else a commit the repo resolves (one call; a Hub repo takes full shas only).

    Raises:
        RevisionNotFound: Not a tag, an ambiguous prefix, or no commit of the repo.
    """
    tags = repo.tags()
    if tag in tags:
        return tags[tag]
    if not re.fullmatch(r"[0-9a-f]{7,40}", tag):
        raise RevisionNotFound(f"{tag!r} is not a tag of {repo.repo_id} nor a commit sha{did_you_mean(tag, tags)} "
                               "(see labelhub versions)")
    versions = {sha for sha in tags.values() if sha.startswith(tag)}
    if len(versions) > 1:
        raise RevisionNotFound(f"{tag!r} starts the commit shas of {len(versions)} versions of {repo.repo_id}: give "
                               "more digits")
    if versions:
        return versions.pop()
    try:
        sha = repo.resolve(tag)  # a local repo peels an annotated tag's object sha, and resolves a prefix
    except RevisionNotFound:
        raise RevisionNotFound(f"{tag!r} is no commit of {repo.repo_id} (a commit no tag names needs its full "
                               "40-digit sha on the Hub; see labelhub versions)") from None
    if sha != tag and len(tag) == 40:
        log.info("%s is a tag object's sha: reading its commit %s", tag, sha)
    return sha


def read_rows(raw: bytes, where: str) -> tuple[pd.DataFrame, list[RowError]]:
    """The rows of an annotations CSV (RFC 4180, as ``pandas.DataFrame.to_csv`` writes it; read with Python's
    :mod:`csv` so that each row's cells are counted) and the rows that cannot be read.

    Args:
        raw: The CSV's bytes (UTF-8, a byte order mark allowed).
        where: The CSV's name in errors (``annotations/annotations.csv at annotations-v3``).

    Returns:
        ``(frame, rejected)``: every cell a string (an empty cell ``""``), the index the CSV line each row starts on
        (name ``line``; the header is line 1, blank lines are skipped); a row with more or fewer cells than the
        header (a stray trailing comma, a truncated line) is a :class:`RowError` naming its line and ids, and the
        rows after it are read as usual.

    Raises:
        LabelHubError: Not UTF-8, no header, a header naming a column twice, or a quote left open (the file's
            structure is lost from there on).
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelHubError(f"{where} does not parse: not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    lines, records, rejected = [], [], []
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not cells:
                continue
            if header is None:
                header = cells
                continue
            if len(cells) != len(header):
                ids = {name: _int_or_none(cells[header.index(name)]) if name in header and header.index(name) < len(
                    cells) else None for name in ("task_id", "annotation_id")}
                rejected.append(RowError(line, f"{len(cells)} cells where the header has {len(header)} (a stray "
                                               "separator or a cut line)", **ids))
                continue
            lines.append(line)
            records.append(cells)
    except csv.Error as exc:
        raise LabelHubError(f"{where} does not parse at line {reader.line_num}: {exc}") from None
    if header is None:
        raise LabelHubError(f"{where} does not parse: it is empty")
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise LabelHubError(f"{where} does not parse: its header names {', '.join(twice)} twice")
    return pd.DataFrame(records, columns=header, index=pd.Index(lines, name="line", dtype=int)), rejected


def _controls(frame: pd.DataFrame, manifest: Mapping, label_config: str) -> dict[str, tuple[str, str, tuple]]:
    """``{from_name: (tag, to_name, labels)}`` of the CSV's control columns that the project can take (the others
    said once).

    Raises:
        LabelHubError: The version is not one of a project like this one: the project can take none of its control
            columns (a version of spans over text restored into a project of boxes). Restoring would make tasks
            without labels, which the project's editor may not even show.
    """
    columns = list(frame.columns)
    names = columns[4:columns.index("annotator")]
    versioned = manifest.get("controls") if isinstance(manifest.get("controls"), dict) else {}
    project = {c.name: c for c in parse_label_config(label_config)[0]}
    usable, skipped = {}, []
    for name in names:
        control, tag = project.get(name), versioned.get(name)
        if control is None or not control.to_name:
            skipped.append(f"control {name!r} of the version is not in the project's label config: its labels are "
                           "skipped (a later restore into this project does not add them)")
        elif tag and tag != control.tag:
            skipped.append(f"control {name!r} is {tag} in the version but {control.tag} in the project: its labels are "
                           "skipped (a later restore into this project does not add them)")
        else:
            usable[name] = (control.tag, control.to_name[0], tuple(control.labels))
    if names and not usable:
        raise LabelHubError(f"none of the version's controls ({', '.join(names)}) is in the project's label config "
                            "with the version's tag type: restore it into a project with the version's label config")
    for reason in skipped:
        log.warning("%s", reason)
    return usable


def _flag(cell: str, name: str) -> bool:
    text = cell.strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0", ""):
        return False
    raise ValueError(f"{name} is not true or false: {cell!r}")


def _number(row: Mapping, name: str, kind: type):
    try:
        value = kind(row[name])
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not a number: {row[name]!r}") from None
    if not math.isfinite(value):  # Label Studio's JSON has no inf or nan: the whole import would fail on it
        raise ValueError(f"{name} is not a finite number: {row[name]!r}")
    return value


def _revision_in(url: str) -> str | None:
    """The commit sha in a file URL's path (Hub ``/resolve/<sha>/``, the backend's ``/files/<repo>/<sha>/``);
    ``None`` for a cell that is no URL (:func:`labelhub.sync.versions.restore_texts.is_url`: a text, whose 40-hex
    words are no revision)."""
    if not is_url(url):
        return None
    try:
        found = _SHA.search(urlsplit(url).path)
    except ValueError:
        return None
    return found.group(0) if found else None


def _metadata(cell: str):
    if cell[:1] in "{[":
        try:
            return json.loads(cell)
        except ValueError:
            pass
    return cell


def plan_tasks(frame: pd.DataFrame, manifest: Mapping, label_config: str, repo_id: str,
               tag: str) -> tuple[list[RestoredTask], list[RowError]]:
    """The tasks of a version's rows (pure, see the module docstring), in ``task_id`` order.

    Raises:
        labelhub.errors.LabelConfigError: The project's label config has no object tag a file fills.
        LabelHubError: The version's texts are of another kind than the project's text tag reads (URLs into a
            project of inline texts, or the reverse: :func:`labelhub.sync.versions.restore_texts.check_text_kind`),
            or the project has none of its controls with their tag types.
    """
    target = data_field(label_config)
    value_key = target.value_key
    identity = repo_identity(repo_id, tag)
    check_text_kind(frame, target)
    controls = _controls(frame, manifest, label_config)
    columns = list(frame.columns)
    tail = max(columns.index(c) for c in FIXED_TAIL if c in columns)
    metadata_columns = [c for c in columns[tail + 1:] if c != OTHER_RESULTS]
    tasks: dict[int, RestoredTask] = {}
    errors: list[RowError] = []
    relations = 0
    version_controls = columns[4:columns.index("annotator")] if "annotator" in columns else []
    lines = frame.index if frame.index.name == "line" else range(2, len(frame) + 2)
    seen: dict[int, int] = {}  # annotation_id → its line
    unregioned: dict[str, int] = {}  # control → cells of labels without regions, skipped
    emptied = 0
    for line, row in zip(lines, frame.to_dict("records")):
        line = int(line)
        try:
            task_id, annotation_id = _number(row, "task_id", int), _number(row, "annotation_id", int)
            if annotation_id in seen:
                raise ValueError(f"annotation_id {annotation_id} is also line {seen[annotation_id]}'s (a version "
                                 "holds each annotation once): this row is left out")
            own = {}
            for name, (ctag, to_name, labels) in controls.items():
                try:
                    own[name] = cell_results(ctag, name, to_name, row[name], labels)
                except _LabelsWithoutRegions:
                    unregioned[name] = unregioned.get(name, 0) + 1
                except ValueError as exc:
                    raise ValueError(f"{name} ({ctag}): {exc}") from None
            result = _with_per_region(own, controls)
            try:
                others, left = _other_results(row.get(OTHER_RESULTS, ""), controls, {r.get("id") for r in result})
            except ValueError as exc:
                raise ValueError(f"{OTHER_RESULTS}: {exc}") from None
            result += others
            relations += left
            lead_time = _number(row, "lead_time", float) if row.get("lead_time") else None
            annotation = {"id": annotation_id, "result": result, "lead_time": lead_time,
                          "was_cancelled": _flag(row.get("was_cancelled", ""), "was_cancelled"),
                          "ground_truth": _flag(row.get("ground_truth", ""), "ground_truth")}
        except (ValueError, TypeError) as exc:
            errors.append(RowError(line, str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                                   _int_or_none(row.get("task_id", "")), _int_or_none(row.get("annotation_id", ""))))
            continue
        seen[annotation_id] = line
        if not result and not annotation["was_cancelled"] and (
                row.get(OTHER_RESULTS) or any(row.get(name) for name in version_controls)):
            # every result dropped: an annotation with no result would count the task as labelled
            emptied += 1
            annotation = None
        task = tasks.get(task_id)
        if task is None:
            # "data.<key>": a data key the export renamed because a column has its name
            data = {k.removeprefix("data.") if k.removeprefix("data.") in (*columns, OTHER_RESULTS) else k:
                    _metadata(row[k]) for k in metadata_columns if row[k] != ""}
            data[value_key] = row[columns[3]]
            if row["hf_path"]:
                data.update(hf_repo=repo_id, hf_path=row["hf_path"],
                            hf_revision=(_revision_in(row[columns[3]]) if target.as_url else None)
                            or row.get("annotated_revision", ""))
            data.update(restored_from=f"{repo_id}@{tag}", source_task_id=task_id)
            if identity != repo_id:
                data["restored_repo"] = identity
            task = tasks[task_id] = RestoredTask(task_id, data)
        if annotation is None:
            continue
        task.annotations.append(annotation)
        task.annotators.append({"annotation_id": annotation_id, "annotator": row["annotator"],
                                **{k: row.get(k, "") for k in ("created_at", "updated_at", "annotated_revision")}})
    _warn_unknown_labels(tasks.values(), label_config)
    for name, count in unregioned.items():
        log.warning("%s: %d cell(s) hold labels without their regions (a version written before LabelHub exported "
                    "a Labels tag's spans, or its labels of image regions): those cells are skipped, the rows' other "
                    "controls restored; a later restore into this project does not add them", name, count)
    if emptied:
        log.warning("%d annotation(s) are not restored: none of their results is of a control the project takes (an "
                    "annotation without results would count its task as labelled)", emptied)
    if relations:
        log.warning("%d relation(s) and result(s) of controls the project lacks, kept in the version's %s column, "
                    "are not restored (a relation between regions the restore did not make, or one the version did "
                    "not keep the ids of)", relations, OTHER_RESULTS)
    return [tasks[k] for k in sorted(tasks)], errors


def _with_per_region(own: Mapping[str, list[dict]], controls: Mapping[str, tuple]) -> list[dict]:
    """The results of a row's control cells, each region's ``per_region`` values as results of their controls with
    the region's ``id`` (a per-region control's own column, which lists the same values without their regions, is
    then not read)."""
    per_region, linked, made = [], set(), set()
    for results in own.values():
        for result in results:
            for name, value in (result.pop("per_region", None) or {}).items():
                if name in controls and isinstance(value, dict) and "id" in result and (result["id"], name) not in made:
                    made.add((result["id"], name))  # once per region, though its shape and its label both carried it
                    tag, to_name, _ = controls[name]
                    per_region.append({"id": result["id"], "from_name": name, "to_name": to_name,
                                       "type": tag.lower(), "value": value})
                    linked.add(name)
    return [r for name, results in own.items() if name not in linked for r in results] + per_region


def _other_results(cell: str, controls: Mapping[str, tuple], ids: set) -> tuple[list[dict], int]:
    """``(items to restore, how many are left out)`` of a row's ``other_results`` cell: the items of the project's
    controls come back as Label Studio stored them, and the relations between restored regions (``ids``: those the
    CSV kept the ids of); relations between others, and items of other controls, are left out.

    Raises:
        ValueError: The cell is not a JSON list.
    """
    if not cell:
        return [], 0
    items = json.loads(cell)
    if not isinstance(items, list):
        raise ValueError("not a JSON list of results")
    kept = [item for item in items if isinstance(item, dict) and (
        item.get("from_name") in controls
        or (item.get("type") == "relation" and item.get("from_id") in ids and item.get("to_id") in ids))]
    return kept, len(items) - len(kept)


def _warn_unknown_labels(tasks, label_config: str) -> None:
    """Log once per control the labels of the restored annotations that the project's label config lacks: Label
    Studio keeps them, but its editor shows no such choice (a config edited since the version, or another one)."""
    known = {c.name: set(c.labels) for c in parse_label_config(label_config)[0] if c.labels}
    unknown: dict[str, set[str]] = {}
    for task in tasks:
        for annotation in task.annotations:
            for result in annotation["result"]:
                value = result.get("value")  # a relation has none
                labels = next((v for k, v in value.items() if k in ("choices", "labels", "rectanglelabels")
                               and isinstance(v, list)), []) if isinstance(value, dict) else []
                name = result.get("from_name")
                unknown.setdefault(name, set()).update(
                    str(label) for label in labels if name in known and str(label) not in known[name])
    for name, labels in unknown.items():
        if labels:
            log.warning("%s: the labels %s are not in the project's label config (Label Studio keeps them; its "
                        "editor offers no such choice)", name, ", ".join(map(repr, sorted(labels)[:10])))


def without_restored(frame: pd.DataFrame, known: Mapping[str, object], repo_id: str) -> tuple[pd.DataFrame, int]:
    """``(rows, tasks left out)``: ``frame`` without the rows of tasks ``known`` already holds (the restore ledger's
    keys, :func:`restore_key`, under any identity of ``repo_id``:
    :func:`labelhub.sync.versions.restore_identity.repo_identities`), so that a re-run plans (and warns about) only
    what it may restore. A row whose ``task_id`` is no number stays (:func:`plan_tasks` rejects it)."""
    if not known or not len(frame):
        return frame, 0
    known = set(known)
    done = pd.Series(False, index=frame.index)
    for identity in repo_identities(repo_id):
        done |= frame["task_id"].map(lambda cell: f"{identity}#{_int_or_none(cell)}").isin(known)
    return frame[~done], int(frame["task_id"][done].nunique())


def restore_key(data: Mapping) -> str | None:
    """The ledger key of a restored task from its data: ``"<data.restored_repo>#<source_task_id>"`` (a local
    repository's root commit, :mod:`labelhub.sync.versions.restore_identity`), else the repo of ``restored_from``
    (a Hub repo's id, or the path a restore before that identity recorded); ``None`` for a task that was not
    restored."""
    identity, task_id = data.get("restored_repo"), data.get("source_task_id")
    if isinstance(identity, str) and identity and task_id not in (None, ""):
        return f"{identity}#{task_id}"
    return legacy_key(data)


@dataclass
class Restorer:
    """Restores a version's tasks into ``project`` through ``ledger`` (source :data:`RESTORE_SOURCE`)."""

    project: LabelStudioProject
    ledger: ImportLedger
    batch_size: int = 1000

    def run(self, tasks: list[RestoredTask], errors: list[RowError], left_out: int = 0) -> RestoreReport:
        """Recover, skip what is restored, import the rest in batches (tqdm progress). ``left_out``: tasks already
        restored whose rows were not planned (:func:`without_restored`), counted as already restored.

        Raises:
            labelhub.errors.LabelStudioError: Label Studio refused a call; what was restored is recorded, and
                running the same restore again continues.
        """
        report = RestoreReport(errors=list(errors))
        report.recovered = self.ledger.recover(self._existing_tasks)
        known = self.ledger.known()
        pending = [t for t in tasks if restore_key(t.data) not in known and legacy_key(t.data) not in known]
        report.already_restored = len(tasks) - len(pending) + left_out
        held = self._file_tasks(pending)
        new = [t for t in pending if t.source_task_id not in held]
        report.held, report.held_task_ids = len(held), sorted(held.values())
        if held:
            shown = ", ".join(map(str, report.held_task_ids[:5])) + (
                f" (+{len(held) - 5})" if len(held) > 5 else "")
            log.warning("%d task(s) of the version are not restored: the project already has tasks of their files "
                        "(tasks %s), made by a sync, an import or a restore of another version; a restore adds no "
                        "second task of a file. Restore into a new project to get the version's annotations",
                        len(held), shown)
        users = {email.lower(): user_id for user_id, email in self.project.users().items() if email}
        counts = {"annotations": 0, "unmatched": 0}
        unmatched = report.unmatched_annotators

        def items() -> Iterator[Item]:
            for task in new:
                annotations, annotators = [], []
                for annotation, who in zip(task.annotations, task.annotators):
                    user_id = users.get(str(who["annotator"]).lower())
                    annotations.append({**annotation, "completed_by": user_id} if user_id else dict(annotation))
                    annotators.append({**who, "matched": user_id is not None})
                    counts["unmatched"] += user_id is None
                    if user_id is None:
                        unmatched[str(who["annotator"])] = unmatched.get(str(who["annotator"]), 0) + 1
                counts["annotations"] += len(annotations)
                payload = {"data": task.data, "meta": {"restored_annotations": annotators}, "annotations": annotations}
                data = task.data
                alias = ((data["hf_repo"], data["hf_path"], data["hf_revision"]),) if data.get("hf_path") else ()
                yield Item(restore_key(data), payload, aliases=alias, size=len(json.dumps(payload)))

        report.created = self.ledger.import_items(self.project, items(), len(new), self.batch_size,
                                                  desc="restoring tasks")
        report.annotations, report.unmatched = counts["annotations"], counts["unmatched"]
        if unmatched:
            ranked = sorted(unmatched.items(), key=lambda kv: (-kv[1], kv[0]))
            shown = ", ".join(f"{email or '(no email)'} ({n})" for email, n in ranked[:5]) + (
                f", +{len(ranked) - 5} more" if len(ranked) > 5 else "")
            log.warning("%d annotation(s) of %d annotator(s) without a Label Studio user are the importing user's "
                        "(their emails are kept in each task's meta.restored_annotations): %s. To attribute them, "
                        "create those users, then restore into a new project: a re-run into this project does not "
                        "re-attribute annotations it made", report.unmatched, len(ranked), shown)
        log.debug("project %s: %s", self.project.project_id, report.summary())  # the CLI prints it on stdout
        return report

    def _file_tasks(self, tasks: Sequence[RestoredTask]) -> dict[int, int]:
        """``{source task id: project task id}`` of ``tasks`` whose file (``data.hf_repo``, ``data.hf_path``) the
        project already has a task of: the repo's own ledger (the sync's source, where a restore also records its
        tasks' files), after adopting the project's tasks of the repo's files it lacks with the sync's lookup
        (:meth:`labelhub.sync.labelstudio.project.LabelStudioProject.repo_file_tasks`, from the ledger's adoption
        cursor on: one light call when nothing changed); for a local repository, then the tasks made from another
        path of it (:meth:`_other_paths_tasks`). A task deleted in Label Studio holds nothing.

        Raises:
            labelhub.errors.LabelStudioError: the lookup failed.
        """
        by_repo: dict[str, list[RestoredTask]] = {}
        for task in tasks:
            if task.data.get("hf_repo") and task.data.get("hf_path"):
                by_repo.setdefault(task.data["hf_repo"], []).append(task)
        held: dict[int, int] = {}
        for repo_id, repo_tasks in by_repo.items():
            ledger = ImportLedger(self.ledger.db, self.project.project_id, repo_id)
            ledger.recover(lambda after, repo_id=repo_id: [
                Entry(path, task_id, revision)
                for task_id, path, revision in self.project.repo_file_tasks(repo_id, after)])
            entries = ledger.entries()
            for task in repo_tasks:
                found = entries.get(task.data["hf_path"])
                if found is not None and not found.deleted:
                    held[task.source_task_id] = found.task_id
            rest = [task for task in repo_tasks if task.source_task_id not in held]
            if rest and os.path.isabs(repo_id):
                held.update(self._other_paths_tasks(repo_id, rest))
        return held

    def _other_paths_tasks(self, repo_id: str, tasks: Sequence[RestoredTask]) -> dict[int, int]:
        """``{source task id: project task id}`` of ``tasks`` (of the local repository ``repo_id``) whose file the
        project has a task of made from **another path** of the same repository (a clone, a moved copy, a Docker
        mount: its ``data.hf_repo`` is that path): same when this repository holds a commit those tasks show
        (:func:`labelhub.sync.versions.restore_identity.holds_commit`). One listing of the project's tasks with an
        ``hf_path`` (Label Studio lists about a thousand a second; one call when no task has one: never skipped on
        the project summary's counts, see :meth:`labelhub.sync.labelstudio.project.LabelStudioProject.repo_file_tasks`).

        Raises:
            labelhub.errors.LabelStudioError: the listing failed.
        """
        others: dict[str, list[tuple[int, str, str]]] = {}
        for task_id, data in self.project.task_data(0, hf_path=None):
            other = data.get("hf_repo")
            if isinstance(other, str) and other != repo_id and os.path.isabs(other) \
                    and isinstance(data.get("hf_path"), str):
                others.setdefault(other, []).append((task_id, data["hf_path"], str(data.get("hf_revision", ""))))
        files: dict[str, int] = {}
        for other, found in others.items():
            if holds_commit(repo_id, [revision for _, _, revision in found]):
                for task_id, path, _ in found:
                    files.setdefault(path, task_id)
        return {task.source_task_id: files[task.data["hf_path"]] for task in tasks if task.data["hf_path"] in files}

    def _existing_tasks(self, after_task_id: int) -> list[Entry]:
        """The project's restored tasks above ``after_task_id`` (for :meth:`ImportLedger.recover`)."""
        entries = []
        for task_id, data in self.project.task_data(after_task_id, restored_from=None):
            key = restore_key(data)
            if key:
                alias = ((data["hf_repo"], data["hf_path"], data.get("hf_revision", "")),) \
                    if data.get("hf_repo") and data.get("hf_path") else ()
                entries.append(Entry(key, task_id, aliases=alias))
        return entries
