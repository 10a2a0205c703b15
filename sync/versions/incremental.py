"""A version's rows and files made from the previous export's build: only what changed is made again (pandas).

An export of a project with many annotations changes few of them, so the build of a version keeps, per sync state,
what it made, for the next export of the same process (in memory; after a restart the first export makes everything
again, from the CSV rows stored in the state, :meth:`labelhub.sync.state.SyncState.store_rows`):

- **the frame** (:func:`build_rows`): the rows of unchanged annotations (same stored row hash, same annotator) are
  kept, the others decoded. pandas gives a column the dtype it infers from the kinds of values the rows hold (str,
  int, float, bool, ``None``, a missing key, ...): while each column holds the same kinds as before, the new rows
  take the kept columns' dtypes; otherwise the frame is made from every row, as on a first export;
- **per annotation**, its CSV line, its rows-JSON line and its training record's line: pandas formats a value by its
  column's dtype, so a line depends on its row and on the frame's columns and dtypes; while those are the same,
  unchanged rows keep their lines. For ``<Text valueType="url">`` a training line holds the file's text at the row's
  ``annotated_revision``, and so does the line of a ``<Text>`` row annotated on an older revision of its file than
  its task shows (the task's ``data.hf_revision`` in the sync state, :func:`current_revisions`): only the rows and
  tasks made again ask for texts, and :class:`labelhub.repos.texts.FileTexts` reads only those it has not read
  before (an export after one new annotation of a new file reads that file);
- for a ``Text``/``HyperText`` field, the agreement tables and the consensus are made from the rows annotated on
  their task's current content alone (:func:`labelhub.sync.versions.training.on_current_content`), in both builds;
- **per task**, the agreement tables (:func:`labelhub.sync.versions.agreement.merge_analyses`) and the consensus
  record's line; the figures of the whole version (Krippendorff's alpha, the means per label and per annotator) are
  computed again from those tables, which are the same as a build from scratch makes;
- **the label counts** of the manifest, less the rows that left and plus those that came.

The files are byte-equal to those of a build from scratch (``tests/test_versions_incremental.py``).
:func:`build_files` builds from scratch, without keeping anything, when given another frame than the last
:func:`build_rows` returned for the state.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Mapping
from operator import itemgetter
from dataclasses import dataclass, field

import cachetools
import numpy as np
import pandas as pd

from labelhub.label_config import DataField
from labelhub.repos.texts import FileTexts
from labelhub.sync.state import SyncState
from labelhub.sync.versions.agreement import (Analysis, agreement_report, analyse, consensus_rows, control_kinds,
                                              merge_analyses, prepare, prepared_tasks, rows_of_tasks)
from labelhub.sync.versions.rows import (ROW_FORMAT, annotation_reference, annotation_row, content_hash, label_counts,
                                         label_distribution, rows_frame)
from labelhub.label_config import TEXT_TAGS
from labelhub.sync.versions.training import (consensus_records, consensus_records_by_row, consensus_text_files,
                                             control_labels, folder_patterns_of, on_current_content, text_files,
                                             text_from_url, training_records_by_row, uses_revision)

__all__ = ["CONTENT_FORMAT", "VersionRows", "VersionFiles", "build_rows", "build_files", "content_key", "forget"]

log = logging.getLogger(__name__)

#: The form of the rows' content hashes (:func:`content_key`), part of the stored rows' fingerprint, so rows hashed
#: in another form are made again once (the exporter translates its baseline: :meth:`labelhub.sync.versions.
#: exporter.Exporter.upgrade`). 2: a file URL counts as the file it names (1: as written).
CONTENT_FORMAT = 2


def content_key(row: Mapping, value_key: str, data: Mapping) -> str:
    """The content hash of an export row (:func:`labelhub.sync.versions.rows.content_hash`) with its file URL
    (the value key's cell, ``http(s)://...``) counted as the file it names: ``hf://<hf_repo>@<hf_revision>/<hf_path>``
    of its task's ``data``. The sync rewrites every task's URL when its URL policy changes (a new
    ``LABELHUB_PUBLIC_URL`` or backend port, a rotated ``LABELHUB_SECRET``: :mod:`labelhub.sync.files.importer`);
    an annotation whose file (path and revision) stayed the same did not change, and the next version does not
    count it as changed (its CSV holds the new URL). A task that is not a repo file's (no ``hf_path``), or whose
    value is not a URL (a text in the task data), is hashed as written.

    Example:
        >>> data = {"hf_repo": "o/d", "hf_path": "a.png", "hf_revision": "abc"}
        >>> row = {"image": "http://127.0.0.1:9090/files/o/d/abc/a.png?sig=1", "kind": "cat"}
        >>> content_key(row, "image", data) == content_key({**row, "image": "http://sync:9090/f/a.png?sig=2"},
        ...                                                 "image", data)
        True
    """
    value = row.get(value_key)
    if data.get("hf_path") and isinstance(value, str) and value.startswith(("http://", "https://")):
        row = {**row, value_key: f"hf://{data.get('hf_repo', '')}@{data.get('hf_revision', '')}/{data['hf_path']}"}
    return content_hash(row)

#: Kinds of values, as pandas' dtype inference tells them apart (an int's range decides int64, uint64 or object).
_MISSING, _NAN, _NONE, _BOOL, _NEGATIVE, _INT, _UINT64, _HUGE, _FLOAT, _STR, _LIST, _DICT, _OTHER = range(13)
_KINDS = 13
_BY_TYPE = {str: _STR, bool: _BOOL, type(None): _NONE, list: _LIST, dict: _DICT}
_ABSENT = object()


def _kind(value) -> int:
    kind = _BY_TYPE.get(type(value))
    if kind is not None:
        return kind
    if type(value) is int:
        if 0 <= value < 2 ** 63:
            return _INT
        if -(2 ** 63) <= value < 0:
            return _NEGATIVE
        return _UINT64 if 0 < value < 2 ** 64 else _HUGE
    if type(value) is float:
        return _NAN if value != value else _FLOAT
    return _MISSING if value is _ABSENT else _OTHER


def _kinds(rows: list[dict], columns: list[str]) -> np.ndarray:
    """``(len(rows), len(columns))`` kinds of the rows' values (by type; each int and float looked at)."""
    out = np.empty((len(rows), len(columns)), np.uint8)
    for j, column in enumerate(columns):
        values = [row.get(column, _ABSENT) for row in rows]
        codes, types = pd.factorize(_objects(list(map(type, values))))
        kinds = np.array([_BY_TYPE.get(t, _MISSING if t is object else _OTHER) for t in types], np.uint8)
        out[:, j] = kinds[codes] if len(codes) else kinds[:0]
        for code, kind in enumerate(types):
            if kind is int or kind is float:
                at = np.flatnonzero(codes == code)
                some = [values[i] for i in at.tolist()]
                if kind is float:
                    out[at, j] = np.where(np.isnan(np.array(some, float)), _NAN, _FLOAT)
                elif 0 <= min(some) and max(some) < 2 ** 63:
                    out[at, j] = _INT
                else:
                    out[at, j] = [_kind(value) for value in some]
    return out


#: A value of each kind (``_MISSING``: the key left out), to ask pandas which dtype a set of kinds makes.
_SAMPLES = {_NAN: float("nan"), _NONE: None, _BOOL: True, _NEGATIVE: -1, _INT: 1, _UINT64: 2 ** 63, _HUGE: 2 ** 64,
            _FLOAT: 0.5, _STR: "a", _LIST: [0], _DICT: {"a": 0}}


@cachetools.cached(cachetools.LRUCache(maxsize=1024), key=lambda present: present.tobytes())
def _inferred_dtype(present: np.ndarray):
    """The dtype :func:`labelhub.sync.versions.rows.rows_frame` gives a column whose values are of the kinds
    ``present`` (a ``(_KINDS,)`` bool mask); ``None`` when one of them has no sample (``_OTHER``). pandas infers a
    column's dtype from the types of its values (and an int's range), which the kinds tell apart, so one value of
    each kind gets the dtype that all of them would."""
    kinds = np.flatnonzero(present).tolist()
    if any(kind != _MISSING and kind not in _SAMPLES for kind in kinds):
        return None
    rows = [{} if kind == _MISSING else {"c": _SAMPLES[kind]} for kind in kinds]
    return pd.DataFrame(rows).reindex(columns=["c"])["c"].dtype


def _kind_counts(kinds: np.ndarray) -> np.ndarray:
    """``(columns, kinds)`` counts."""
    counts = np.zeros((kinds.shape[1], _KINDS), np.int64)
    for j in range(kinds.shape[1]):
        counts[j] = np.bincount(kinds[:, j], minlength=_KINDS)
    return counts


def _schema(frame: pd.DataFrame) -> tuple:
    return tuple(frame.columns), tuple(str(dtype) for dtype in frame.dtypes)


def _csv_lines(frame: pd.DataFrame) -> list[bytes]:
    """The CSV line of each row of ``frame`` as ``frame.to_csv`` writes it (the same quoting and number formats): the
    rows are written with one more column holding a random marker, which ends each row's text (one row: the text).

    A row with a text cell holding a carriage return (``\\r``, a text with old Mac line ends) is written with every
    text cell quoted (``csv.QUOTE_NONNUMERIC``): pandas quotes only cells holding the line terminator (``\\n``),
    and a CSV reader (pandas' and Python's alike) ends a line at a lone ``\\r``, so that row would split in two.
    Every other row is written as before, so this changes no version without such a cell.
    """
    if frame.empty:
        return []
    if len(frame) == 1:  # the whole text is the row's line (an export of one new annotation)
        return [_csv_text(frame).encode()]
    marker = uuid.uuid4().hex
    text = frame.assign(**{marker: marker}).to_csv(index=False, header=False, lineterminator="\n")
    pieces = text.split(f",{marker}\n")
    if len(pieces) != len(frame) + 1 or pieces[-1]:
        raise AssertionError("a CSV row holds the row marker")  # not reachable: the marker is random
    lines = [(piece + "\n").encode() for piece in pieces[:-1]]
    if "\r" in text:  # rare: look for the rows (a scan of every text cell costs as much as the writing)
        for row in _rows_with_carriage_returns(frame):
            lines[row] = _csv_text(frame.iloc[[row]]).encode()
    return lines


def _csv_text(frame: pd.DataFrame, header: bool = False) -> str:
    """``frame``'s CSV text, text cells quoted when one of them holds a ``\\r`` (see :func:`_csv_lines`)."""
    text = frame.to_csv(index=False, header=header, lineterminator="\n")
    if "\r" not in text:
        return text
    return frame.to_csv(index=False, header=header, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)


def _rows_with_carriage_returns(frame: pd.DataFrame) -> np.ndarray:
    """The positions of the rows of ``frame`` with a text cell holding ``\\r``."""
    found = np.zeros(len(frame), dtype=bool)
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
            found |= values.map(lambda value: isinstance(value, str) and "\r" in value).to_numpy(dtype=bool)
    return np.flatnonzero(found)


def _json_lines(frame: pd.DataFrame) -> list[bytes]:
    """The line of each row of ``frame.to_json(orient="records", lines=True)`` (JSON escapes every newline)."""
    if frame.empty:
        return []
    lines = frame.to_json(orient="records", lines=True).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [(line + "\n").encode() for line in lines]


def _dumps(record: dict | None) -> bytes:
    return b"" if record is None else (json.dumps(record, allow_nan=False) + "\n").encode()


@dataclass
class _Tasks:
    """The per-task store of one files context: the analysis tables and consensus lines of every task, except the
    ``dirty`` ones (their annotations changed since)."""

    kinds: dict
    analysis: Analysis | None
    consensus: pd.DataFrame  # index task_id: line (bytes), file_name, revision ("" when the line names none)
    dirty: set = field(default_factory=set)


@dataclass
class VersionRows:
    """A version's rows as :func:`build_rows` made them, and what the next build reuses.

    Attributes:
        frame: The rows (:func:`labelhub.sync.versions.rows.rows_frame`), sorted by task and annotation.
        csv: The CSV (``frame.to_csv(index=False, lineterminator="\\n")``, UTF-8).
        hashes: ``{annotation_id: "<row hash>:<annotator>"}``: another value, another row.
        contents: ``{annotation_id: "<content hash>:<annotator>"}``
            (:func:`labelhub.sync.versions.rows.content_hash`): another value, another content; what the next
            export's ``+added ~changed -removed`` is counted against.
        reused: How many rows were kept from the previous build (not decoded again).
    """

    frame: pd.DataFrame
    csv: bytes
    hashes: dict[int, str]
    contents: dict[int, str] = field(default_factory=dict)
    reused: int = 0
    context: str = ""
    row_hash: np.ndarray | None = None  # per frame row
    content_hash: np.ndarray | None = None  # per frame row
    annotator: np.ndarray | None = None  # per frame row
    kinds: np.ndarray | None = None  # (rows, columns)
    kind_counts: np.ndarray | None = None  # (columns, kinds)
    schema: tuple = ()
    #: Per-row stores aligned with the frame ("key", "csv", "json", ("training", context), ("file_name", context)):
    #: an object array, ``None`` where the row's value is not made yet.
    lines: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)  # label_counts of the frame
    tasks: dict = field(default_factory=dict)  # files context -> _Tasks


@dataclass
class VersionFiles:
    """The configs and figures of a version (see :func:`build_files`).

    Attributes:
        training: The default config's JSON Lines (one record per annotation not skipped).
        training_names: The records' ``file_name`` values (local layout; empty ones left out).
        consensus: The ``consensus`` config's JSON Lines (one record per task with a vote).
        consensus_names: Likewise for the consensus records.
        rows_json: ``frame.to_json(orient="records", lines=True)`` (UTF-8), or ``None`` when not asked.
        agreement: :func:`labelhub.sync.versions.agreement.agreement_report`.
        label_distribution: :func:`labelhub.sync.versions.rows.label_distribution`.
    """

    training: bytes
    training_names: list[str]
    consensus: bytes
    consensus_names: list[str]
    rows_json: bytes | None
    agreement: dict
    label_distribution: dict

    def training_patterns(self, metadata: str) -> list[str]:
        """:func:`labelhub.sync.versions.training.folder_patterns` of the training records."""
        return folder_patterns_of(self.training_names, metadata)

    def consensus_patterns(self, metadata: str) -> list[str]:
        """:func:`labelhub.sync.versions.training.folder_patterns` of the consensus records."""
        return folder_patterns_of(self.consensus_names, metadata)


#: Held by a whole build: two threads exporting one state's versions would otherwise change one build's stores.
_LOCK = threading.RLock()
#: Rounds of making the rows whose annotations changed while they were made or read (:func:`_export_rows`).
STORE_ATTEMPTS = 3
#: The last build of each state (path, project, repo): a few, so that tests with many states stay small.
_BUILDS: cachetools.LRUCache = cachetools.LRUCache(maxsize=4)


def _state_key(state: SyncState) -> tuple:
    return (str(state.path.resolve()), *state.key)


def forget(state: SyncState) -> None:
    """Drop what the builds of ``state`` kept (the next build makes everything).

    Args:
        state: The sync state.
    """
    with _LOCK:
        _BUILDS.pop(_state_key(state), None)


def _store_rows(state: SyncState, controls: Mapping[str, str], value_key: str, config: str) -> None:
    """Make and store the rows of the annotations that have none (new, changed, or made with another config).

    A row whose annotation or task a webhook changed while it was made is not stored
    (:meth:`~labelhub.sync.state.SyncState.store_rows`): :func:`_export_rows` makes it again.
    """
    made, made_from = [], []
    for task, annotation, stamp in state.live_annotations_without_row(config):
        row = annotation_row(task, annotation, controls, value_key, {})
        reference = annotation_reference(annotation)
        del row["annotator"]
        text = json.dumps(row, sort_keys=True, default=str)
        made.append((row["annotation_id"], text, hashlib.sha256(text.encode()).hexdigest(), reference,
                     content_key(row, value_key, task.get("data") or {})))
        made_from.append(stamp)
    state.store_rows(made, made_from)


def _export_rows(state: SyncState, controls: Mapping[str, str], value_key: str,
                 config: str) -> list[tuple[str, str, str, str | None]]:
    """The stored row of every live annotation (:meth:`~labelhub.sync.state.SyncState.export_rows`), once each has one.

    A webhook that changes an annotation drops its stored row, also after :func:`_store_rows` made the rows and
    before they are read; so the rows are read with the count of live annotations in one snapshot, and made again
    while some lack theirs: the version holds every live annotation, each as it is now (a version that left one
    out would count it as removed, then added again; found by an audit, 2026-12-07).
    """
    for _ in range(STORE_ATTEMPTS):
        _store_rows(state, controls, value_key, config)
        with state.snapshot():
            stored = state.export_rows()
            live = state.live_annotation_count()
        if len(stored) == live:
            return stored
    log.warning("annotations kept changing while their export rows were made: the next export takes %d of them",
                live - len(stored))
    return stored


def build_rows(state: SyncState, controls: Mapping[str, str], value_key: str) -> VersionRows:
    """The export's rows from the state's annotation store, made from the previous build where rows are unchanged.

    Each annotation's row (without its annotator, whose email may be learnt later) is made once and stored with its
    hash and content hash (:func:`content_key`; :meth:`labelhub.sync.state.SyncState.store_rows`); it is made again
    only when the annotation, its task's data, the label config, the rows' format
    (:data:`~labelhub.sync.versions.rows.ROW_FORMAT`) or the content hashes' (:data:`CONTENT_FORMAT`) change. A build
    reads the stored rows in one query, and decodes those that the previous build of the state did not hold (all of
    them at the first build of a process).

    Args:
        state: The sync state.
        controls: ``{from_name: control tag type}`` of the label config, in config order.
        value_key: The object tag's data key (``image``).

    Returns:
        A :class:`VersionRows`: the frame, the CSV bytes, the row hashes and the content hashes the next export's
        ``+added ~changed -removed`` is counted against.
    """
    config = json.dumps([controls, value_key, ROW_FORMAT, CONTENT_FORMAT], sort_keys=True)
    with _LOCK:
        stored = _export_rows(state, controls, value_key, config)
        users = {str(k): v for k, v in state.users().items()}
        texts, row_hash, references, content = (_objects(list(map(itemgetter(i), stored))) for i in range(4))
        _fill_content_hashes(state, texts, row_hash, content, value_key)
        annotator = _objects([users.get(reference, reference) for reference in references])
        key = _state_key(state)
        previous = _BUILDS.get(key)
        if previous is not None and previous.context != config:
            previous = None
        build = None
        if previous is not None and len(previous.frame) and len(stored):
            build = _update(previous, texts, row_hash, content, annotator, controls)
        if build is None:
            build = _from_scratch(previous, texts, row_hash, content, annotator, controls, value_key, config)
        _BUILDS[key] = build
        return build


def _fill_content_hashes(state: SyncState, texts: np.ndarray, row_hash: np.ndarray, content: np.ndarray,
                         value_key: str) -> None:
    """Give the rows stored without a content hash (by a LabelHub that kept none) theirs, hashed from their JSON
    and their task's data (:func:`content_key`: the JSON read back hashes as the row it was written from), and
    store them: once, at the first build after the upgrade (one more query, of the tasks' data)."""
    missing = _missing(content)
    if not len(missing):
        return
    rows = json.loads("[" + ",".join(texts[missing]) + "]")
    data = {annotation.get("id"): task.get("data") or {} for task, annotation in state.live_annotations()}
    content[missing] = _objects([content_key(row, value_key, data.get(row["annotation_id"], {})) for row in rows])
    state.set_content_hashes(zip([row["annotation_id"] for row in rows], row_hash[missing].tolist(),
                                 content[missing].tolist()))


def _decode(texts: np.ndarray, annotators: np.ndarray) -> list[dict]:
    rows = json.loads("[" + ",".join(texts) + "]")  # one decode, not one per row
    for row, annotator in zip(rows, annotators):
        row["annotator"] = annotator
    return rows


def _from_scratch(previous: VersionRows | None, texts, row_hash, content, annotator, controls, value_key,
                  config: str) -> VersionRows:
    """Every row decoded and the frame made by :func:`labelhub.sync.versions.rows.rows_frame`; the lines of rows
    that ``previous`` holds are kept when the frame's columns and dtypes are the same."""
    rows = _decode(texts, annotator)
    frame = rows_frame(rows, controls, value_key)
    if frame.empty:
        csv = frame.to_csv(index=False, lineterminator="\n").encode()
        return VersionRows(frame, csv, {}, context=config, schema=_schema(frame))
    order = np.lexsort((np.array([r["annotation_id"] for r in rows]), np.array([r["task_id"] for r in rows])))
    rows = [rows[i] for i in order]  # the frame's order (rows_frame sorts by task and annotation id)
    row_hash, content, annotator = row_hash[order], content[order], annotator[order]
    kinds = _kinds(rows, list(frame.columns))
    build = VersionRows(frame, b"", {}, {}, 0, config, row_hash, content, annotator, kinds, _kind_counts(kinds),
                        _schema(frame), labels=label_counts(frame, controls))
    if previous is not None and len(previous.frame) and previous.schema == build.schema:
        old = _positions(previous, row_hash)
        old[(old >= 0) & (previous.annotator[np.maximum(old, 0)] != annotator)] = -1
        _carry(previous, build, old)
    _finish(build)
    return build


def _positions(previous: VersionRows, row_hash: np.ndarray) -> np.ndarray:
    """Each row hash's position in ``previous`` (-1: not there). A row's hash covers its annotation id, so a hash
    is in one row at most."""
    where = dict(zip(previous.row_hash.tolist(), range(len(previous.row_hash))))
    return np.fromiter((where.get(h, -1) for h in row_hash.tolist()), np.int64, len(row_hash))


def _update(previous: VersionRows, texts, row_hash, content, annotator, controls) -> VersionRows | None:
    """The new build from ``previous`` and the rows that changed; ``None`` when the kinds of values a column holds
    changed so that pandas would infer another dtype for it (:func:`_inferred_dtype`; the frame is then made from
    scratch). A skipped annotation's ``lead_time`` of ``None`` in a float column, for example, keeps ``float64``."""
    old = _positions(previous, row_hash)
    kept = (old >= 0) & (previous.annotator[np.maximum(old, 0)] == annotator)
    fresh = np.flatnonzero(~kept)
    kept_old = old[kept]
    gone = np.ones(len(previous.frame), bool)
    gone[kept_old] = False
    gone_old = np.flatnonzero(gone)
    columns = list(previous.frame.columns)
    rows = _decode(texts[fresh], annotator[fresh])
    known = set(columns)
    if any(not known.issuperset(row) for row in rows):
        return None
    kinds = _kinds(rows, columns)
    counts = previous.kind_counts - _kind_counts(previous.kinds[gone_old]) + _kind_counts(kinds)
    moved = np.flatnonzero(((counts > 0) != (previous.kind_counts > 0)).any(axis=1))
    if any(_inferred_dtype(counts[j] > 0) != previous.frame.dtypes.iloc[j] for j in moved.tolist()):
        return None
    part = pd.DataFrame({column: _column([row.get(column, np.nan) for row in rows], dtype)
                         for column, dtype in previous.frame.dtypes.items()})
    ids = np.concatenate([previous.frame["annotation_id"].to_numpy()[kept_old], part["annotation_id"].to_numpy()])
    tasks = np.concatenate([previous.frame["task_id"].to_numpy()[kept_old], part["task_id"].to_numpy()])
    order = np.lexsort((ids, tasks))  # the frame's order: by task, then annotation
    rows_at = np.concatenate([kept_old, len(previous.frame) + np.arange(len(part))])[order]
    both = pd.concat([previous.frame, part], ignore_index=True) if len(part) else previous.frame
    frame = both.take(rows_at).reset_index(drop=True)  # every column taken once
    origin = np.concatenate([kept_old, np.full(len(fresh), -1)])[order]
    labels = {name: counted.copy() for name, counted in previous.labels.items()}
    for name, counted in (label_counts(previous.frame.take(gone_old), controls).items() if len(gone_old) else ()):
        labels[name].subtract(counted)
    for name, counted in label_counts(part, controls).items():
        labels[name].update(counted)
    build = VersionRows(frame, b"", {}, {}, len(kept_old), previous.context,
                        np.concatenate([previous.row_hash[kept_old], row_hash[fresh]])[order],
                        np.concatenate([previous.content_hash[kept_old], content[fresh]])[order],
                        np.concatenate([previous.annotator[kept_old], annotator[fresh]])[order],
                        np.concatenate([previous.kinds[kept_old], kinds])[order], counts, previous.schema,
                        labels=labels)
    _carry(previous, build, origin, changed_old=gone_old)
    _finish(build)
    return build


#: The Python types numpy turns into each kind of numeric dtype as pandas does (others go through a Series).
_NATURAL = {"b": (bool,), "i": (int,), "u": (int,), "f": (float, type(None))}


def _column(values: list, dtype):
    """``values`` as a column of ``dtype`` in a new frame: what ``pd.Series(values, dtype=dtype)`` gives it, made
    without the Series for numbers and strings (a third of its time; an export of one annotation makes one per
    column). An object column stays a Series: a frame made from an object array of strings infers ``str``."""
    natural = _NATURAL.get(dtype.kind) if isinstance(dtype, np.dtype) else None
    if natural and all(type(value) in natural for value in values):
        try:
            return np.array(values, dtype=dtype)
        except OverflowError:  # an int out of the dtype's range: pandas' own error
            return pd.Series(values, dtype=dtype)
    if isinstance(dtype, pd.StringDtype):
        return pd.array(values, dtype=dtype)
    return pd.Series(values, dtype=dtype)


def _carry(previous: VersionRows, build: VersionRows, origin: np.ndarray,
           changed_old: np.ndarray | None = None) -> None:
    """Give ``build`` the per-row and per-task stores of ``previous``: ``origin`` is each new row's position in
    ``previous`` (-1: a new or changed row); ``changed_old``: the previous rows that left or changed."""
    fresh = origin < 0
    for name, values in previous.lines.items():
        carried = values[np.maximum(origin, 0)]
        carried[fresh] = None
        build.lines[name] = carried
    if changed_old is None:
        changed_old = np.setdiff1d(np.arange(len(previous.frame)), origin[~fresh])
    tasks = set(build.frame["task_id"].to_numpy()[fresh].tolist())
    tasks |= set(previous.frame["task_id"].to_numpy()[changed_old].tolist())
    for context, store in previous.tasks.items():
        store.dirty |= tasks
        build.tasks[context] = store


def _finish(build: VersionRows) -> None:
    """Make the CSV (the lines of new rows), the row hashes and the content hashes."""
    frame = build.frame
    lines = _fill(build, "csv", _csv_lines)
    header = _csv_header(tuple(frame.columns))
    build.csv = header + b"".join(lines)
    ids = frame["annotation_id"].tolist()
    build.hashes = dict(zip(ids, _keys(build, "key", build.row_hash)))
    build.contents = dict(zip(ids, _keys(build, "content key", build.content_hash)))


def _keys(build: VersionRows, name: str, hashes: np.ndarray) -> list[str]:
    """``"<hash>:<annotator>"`` of each row (``hashes``: one per frame row), kept in the per-row store ``name``."""
    keys = build.lines.setdefault(name, np.full(len(build.frame), None, dtype=object))
    missing = _missing(keys)
    keys[missing] = _objects([f"{h}:{a}" for h, a in zip(hashes[missing], build.annotator[missing])])
    return keys.tolist()


@cachetools.cached(cachetools.LRUCache(maxsize=64))
def _csv_header(columns: tuple) -> bytes:
    """The CSV header line ``to_csv`` writes for a frame of ``columns`` (it depends on their names alone)."""
    return _csv_text(pd.DataFrame(columns=list(columns)), header=True).encode()


def _missing(values: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.equal(values, None))


def _fill(build: VersionRows, name, make) -> np.ndarray:
    """The per-row store ``name`` of ``build``, its missing values made by ``make(frame of those rows)`` (a list
    of one value per row)."""
    values = build.lines.get(name)
    if values is None:
        values = build.lines[name] = np.full(len(build.frame), None, dtype=object)
    missing = _missing(values)
    if len(missing):
        values[missing] = _objects(make(build.frame.take(missing)))
    return values


def _objects(items: list) -> np.ndarray:
    """A 1-d object array of ``items`` as they are (a tuple or list stays one element; ``fromiter`` is tens of
    times faster than assigning a list to an object array, which looks into every item)."""
    return np.fromiter(items, dtype=object, count=len(items))


def build_files(state: SyncState, frame: pd.DataFrame, label_config: str, controls: Mapping[str, str],
                field: DataField, repo_id: str, local: bool, revision: str, rows_json: bool = True,
                absent: frozenset[str] = frozenset(), texts: FileTexts | None = None) -> VersionFiles:
    """A version's configs and agreement figures, made again only for the annotations and tasks that changed since
    the state's previous build (see the module docstring).

    Args:
        state: The sync state whose :func:`build_rows` made ``frame``.
        frame: The version's rows; another frame than the last :func:`build_rows` of ``state`` returned is built
            from scratch (nothing kept).
        label_config: The project's label config.
        controls: ``{from_name: control tag type}``.
        field: The object tag the files fill.
        repo_id: The Hub repo_id (for ``hf://`` URLs).
        local: Whether the repo is a local git repository (the folder layout).
        revision: The commit of the media when a task's URL names none (the version's parent commit).
        rows_json: Whether to make ``rows_json`` (the Hub layout's rows file).
        absent: Paths the repo no longer holds (a local repository's removed files): their rows leave the folder
            layout's records, whose ``imagefolder`` fails on a file it cannot find (the CSV keeps them).
        texts: The reader of the repo's files, for a ``Text``/``HyperText`` field
            (:func:`labelhub.sync.versions.training.text_from_file`): a ``valueType="url"`` field's records hold
            the files' texts; a text in the task data is read for the rows annotated on an older revision of their
            file than their task shows (the task's ``data.hf_revision`` in ``state``), whose records hold the text
            they were made on. Only annotations made on a task's current content vote in the consensus and
            agreement (:func:`labelhub.sync.versions.training.on_current_content`; the others are counted in a
            warning).

    Returns:
        A :class:`VersionFiles`, byte-equal to what
        :func:`labelhub.sync.versions.training.training_records`,
        :func:`labelhub.sync.versions.training.consensus_records`, ``frame.to_json``,
        :func:`labelhub.sync.versions.agreement.agreement_report` and
        :func:`labelhub.sync.versions.rows.label_distribution` give for ``frame``.

    Raises:
        ValueError: ``texts`` is ``None`` for a ``valueType="url"`` text field, or for a text in the task data with
            rows annotated on an older revision of their file.
        labelhub.errors.HubError: A file's text could not be read from the Hub (:class:`FileTexts`).
    """
    if text_from_url(field) and texts is None:
        raise ValueError(f"the training rows of <{field.tag} valueType=\"url\"> need a reader of the files' texts")
    current = current_revisions(state) if field.tag in TEXT_TAGS and not field.as_url else None
    voting = _voting(frame, field, current, local)
    with _LOCK:
        build = _BUILDS.get(_state_key(state))
        if build is None or build.frame is not frame or frame.empty:
            return _files_from_scratch(frame, label_config, controls, field, repo_id, local, revision, rows_json,
                                       absent, texts, current, voting)
        return _files(build, label_config, controls, field, repo_id, local, revision, rows_json, absent, texts,
                      current, voting)


def current_revisions(state: SyncState) -> dict[int, str]:
    """``{task_id: data.hf_revision}`` of the tasks ``state`` has seen (the commit whose content each task shows
    now: :mod:`labelhub.sync.files.payloads`); tasks without one are left out.

    Args:
        state: The sync state.

    Returns:
        The commits (40-hex strings), by task id.
    """
    rows = state.db.execute("SELECT task_id, json_extract(data, '$.hf_revision') FROM tasks_seen "
                            "WHERE project_id=? AND json_type(data, '$.hf_revision') = 'text'", state.key[:1])
    return {int(task): sha for task, sha in rows if sha}


def _voting(frame: pd.DataFrame, field: DataField, current: Mapping[int, str] | None,
            local: bool = False) -> pd.DataFrame:
    """The rows of ``frame`` that vote in the consensus and agreement (``frame`` itself when all do): those
    annotated on the content their task shows now (:func:`labelhub.sync.versions.training.on_current_content`).
    The others are counted in a warning, which says where they are: a local repository's default config leaves out
    the Image and Audio ones too (:func:`labelhub.sync.versions.training.media_elsewhere`)."""
    keep = on_current_content(frame, field, current)
    if keep.all():
        return frame
    older = frame[~keep]
    kept = ("the CSV keeps them; the default config leaves them out too (a clone holds the file's newer content)"
            if local and field.tag in ("Image", "Audio") else
            "the CSV and the default config keep them, with the content they were made on")
    log.warning("%d annotation(s) of %d task(s) were made on an older revision of their file than their task shows "
                "now (the file changed after; e.g. task %s, annotated on %s): %s; the consensus config and the "
                "agreement figures leave them out", len(older), older["task_id"].nunique(), older["task_id"].iloc[0],
                str(older["annotated_revision"].iloc[0])[:12], kept)
    return frame.take(np.flatnonzero(keep)).reset_index(drop=True)


def _texts(texts: FileTexts | None, wanted: list[tuple[str, str]], field: DataField) -> dict | None:
    """The texts of the files ``wanted`` (``None`` without a reader: a field whose records hold no file text),
    decoded as Label Studio showed them: as the browser decodes a ``valueType="url"`` file, as the import decoded a
    text in the task data (a byte order mark kept: :meth:`labelhub.repos.texts.FileTexts.texts`)."""
    return texts.texts(wanted, as_url=field.as_url) if texts is not None else None


def _files(build: VersionRows, label_config: str, controls: Mapping[str, str], field: DataField, repo_id: str,
           local: bool, revision: str, rows_json: bool, absent: frozenset[str] = frozenset(),
           texts: FileTexts | None = None, current: Mapping[int, str] | None = None,
           voting: pd.DataFrame | None = None) -> VersionFiles:
    """:func:`build_files` of the frame of ``build``, with its stores (``current``: the tasks' commits, for a text
    in the task data; ``voting``: the rows that vote, :func:`_voting`)."""
    frame = build.frame
    known = control_labels(label_config, controls)  # the labels a cell's "|" may belong to, read once
    context = (label_config, json.dumps(controls), field.tag, field.value_key, repo_id, local)
    lines = build.lines.setdefault(("training", context), np.full(len(frame), None, dtype=object))
    names = build.lines.setdefault(("file_name", context), np.full(len(frame), None, dtype=object))
    missing = _missing(lines)
    if len(missing):
        part = frame.take(missing)
        records = training_records_by_row(part, label_config, controls, field, repo_id, local,
                                          _texts(texts, text_files(part, field, current), field), current)
        lines[missing] = _objects([_dumps(record) for record in records])
        names[missing] = _objects([(record or {}).get("file_name") or "" for record in records])

    every = frame
    frame = every if voting is None else voting  # the agreement and the consensus: the rows that vote
    prepared = prepare(frame)
    kinds = control_kinds(prepared[1], controls)
    store = build.tasks.get(context)
    if store is None or store.kinds != kinds:
        dirty, kept, kept_consensus = set(every["task_id"].unique().tolist()), None, None
    else:
        used = store.consensus["revision"]
        dirty = store.dirty | set(store.consensus.index[(used != "") & (used != revision)].tolist())
        kept, kept_consensus = store.analysis, store.consensus
    tasks = pd.Index(sorted(dirty), dtype="int64")
    part = rows_of_tasks(frame, tasks)
    fresh = analyse(part, controls, kinds, prepared_tasks(prepared, tasks), known) if len(part) else None
    analysis = merge_analyses(frame, controls, kept, fresh, tasks, prepared)
    report = agreement_report(frame, controls, analysis)
    made = consensus_rows(part, controls, field.value_key, fresh)
    records = consensus_records_by_row(made, label_config, controls, field, repo_id, local, revision,
                                       _texts(texts, consensus_text_files(made, field, revision), field))
    made = pd.DataFrame({"line": [_dumps(record) for record in records],
                         "file_name": [(record or {}).get("file_name") or "" for record in records],
                         "revision": [revision if uses_revision(value, field, local) else ""
                                      for value in made[field.value_key]]},
                        index=pd.Index(made["task_id"].to_numpy(), dtype="int64"))
    if kept_consensus is not None:
        made = pd.concat([kept_consensus[~kept_consensus.index.isin(tasks)], made]).sort_index(kind="stable")
    # no row votes (every annotation made on an older content of its file): no tables to keep, the next build
    # analyses the tasks that change (merge_analyses of an empty frame is None)
    kept_analysis = Analysis(None, None, analysis.results, kinds) if analysis is not None else None
    build.tasks[context] = _Tasks(kinds, kept_analysis, made)
    json_rows = b"".join(_fill(build, "json", _json_lines)) if rows_json else None
    consensus_names = made["file_name"].to_numpy(object)
    return VersionFiles(b"".join(line for line, name in zip(lines, names) if name not in absent),
                        [name for name in names if name and name not in absent],
                        b"".join(line for line, name in zip(made["line"], consensus_names) if name not in absent),
                        [name for name in consensus_names if name and name not in absent], json_rows, report,
                        label_distribution(every, controls, build.labels, known))


def _files_from_scratch(frame: pd.DataFrame, label_config: str, controls: Mapping[str, str], field: DataField,
                        repo_id: str, local: bool, revision: str, rows_json: bool,
                        absent: frozenset[str] = frozenset(), texts: FileTexts | None = None,
                        current: Mapping[int, str] | None = None, voting: pd.DataFrame | None = None
                        ) -> VersionFiles:
    """:func:`build_files` without any store: every record and figure made from ``frame`` (the agreement and the
    consensus from ``voting``, :func:`_voting`)."""
    known = control_labels(label_config, controls)
    voting = frame if voting is None else voting
    analysis = analyse(voting, controls, labels=known)
    records = training_records_by_row(frame, label_config, controls, field, repo_id, local,
                                      _texts(texts, text_files(frame, field, current), field), current)
    records = [record for record in records if record is not None and record.get("file_name") not in absent]
    made = consensus_rows(voting, controls, field.value_key, analysis)
    consensus = consensus_records(made, label_config, controls, field, repo_id, local, revision,
                                  _texts(texts, consensus_text_files(made, field, revision), field))
    consensus = [record for record in consensus if record.get("file_name") not in absent]
    return VersionFiles(b"".join(map(_dumps, records)), [r["file_name"] for r in records if r.get("file_name")],
                        b"".join(map(_dumps, consensus)), [r["file_name"] for r in consensus if r.get("file_name")],
                        frame.to_json(orient="records", lines=True).encode() if rows_json else None,
                        agreement_report(voting, controls, analysis),
                        label_distribution(frame, controls, known=known))
