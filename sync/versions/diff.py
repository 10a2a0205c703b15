"""What changed between two versions, label by label and annotator by annotator (pure; pandas).

Rows (one per annotation, :mod:`labelhub.sync.versions.rows`) are matched by ``annotation_id``:

- **added**: in the newer version only; **removed**: in the older only;
- **relabelled**: in both, with another value in at least one control column (``from_name``) or another
  ``was_cancelled``; a control cell that changed with the same labels (a box moved, a text edited) is counted per
  control as **edited**.

A control cell's labels are read from the CSV's form: Choices and Taxonomy cells hold labels joined with
``|``; RectangleLabels and Labels cells a JSON list of boxes or spans with a ``label`` each; the JSON values of
another ``...Labels`` tag (PolygonLabels, KeyPointLabels, BrushLabels, ...) their ``<tag>labels`` lists. A control
without labels (TextArea, Number, Rating, Polygon, ...) has no labels to list: its non-empty cells count as
:data:`VALUE` (a brush's run-length numbers or a transcription would otherwise be listed as "labels" in every
commit description). Counts per label are per (row, label): a row with two boxes labelled ``car`` adds ``car``
twice.

:func:`diff_frames` compares two frames; :func:`diff_versions` reads two tags of one series of a repo
(:mod:`labelhub.sync.versions.series`: with several projects exporting into the repo, each commit holds every
project's CSV, so the series' ``--csv-path`` says which is read); :func:`summary_text` writes the Markdown that each
export's commit description and dataset card carry.
"""
from __future__ import annotations

import json
from collections import Counter
from urllib.parse import unquote, urlsplit
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from labelhub.errors import LabelHubError, RevisionNotFound
from labelhub.redaction import one_line
from labelhub.repos import DatasetRepo
from labelhub.sync.versions.rows import BOOKKEEPING, split_labels
from labelhub.sync.versions.series import DEFAULT_CSV_PATH, Series, did_you_mean, series_for

__all__ = ["VALUE", "MAX_LABELS", "VersionDiff", "cell_labels", "changed_annotations", "changed_rows", "changes_text", "controls_of", "diff_frames", "diff_versions", "known_labels",
           "file_of_url", "read_version_csv", "replaced_project", "summary_text"]

#: Columns after the control columns in every CSV (see :mod:`labelhub.sync.versions.rows`).
_FIRST_AFTER_CONTROLS = "annotator"
#: What a non-empty cell of a control without labels counts as.
VALUE = "(value)"
#: The labels of one control :func:`summary_text` names (the most counted first); the others are counted.
MAX_LABELS = 20


@dataclass
class VersionDiff:
    """The difference between two versions.

    Attributes:
        old, new: The versions compared (tags, or ``None`` for "nothing").
        added, removed, relabelled: Annotation counts.
        by_label: ``{from_name: {label: {"added", "removed", "relabelled_from", "relabelled_to": count}}}``.
        by_annotator: ``{annotator: {"added", "removed", "relabelled": count}}``.
        relabels: ``[{"control", "from", "to", "count"}]``, most frequent first: the cell's labels before and
            after (``|``-joined, sorted), for every relabelled annotation and control whose labels changed.
        edited: ``{from_name: count}`` of annotations in both whose cell of that control changed with the same
            labels (a box moved, a transcription edited).
        changed: Annotations in both versions whose row differs in any column but the bookkeeping ones
            (``updated_at``, ``lead_time``: :data:`labelhub.sync.versions.rows.BOOKKEEPING`): the ``~`` of a
            version's title and of ``labelhub versions``, the relabelled ones among them; ``None`` when not
            counted.
        changed_annotations: The changed ones, ``[{"annotation_id", "hf_path", "columns"}]``
            (:func:`changed_annotations`); empty when not listed (an export's own diff counts them from hashes).
        reversed: The older version was named second (``labelhub diff v19 v18``): the counts read from the newer to
            the older.
    """

    old: str | None
    new: str | None
    added: int = 0
    removed: int = 0
    relabelled: int = 0
    by_label: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    by_annotator: dict[str, dict[str, int]] = field(default_factory=dict)
    relabels: list[dict] = field(default_factory=list)
    changed: int | None = None
    edited: dict[str, int] = field(default_factory=dict)
    changed_annotations: list[dict] = field(default_factory=list)
    reversed: bool = False

    def to_dict(self) -> dict:
        """The diff as plain JSON-able data (``labelhub diff --json``)."""
        return {"old": self.old, "new": self.new, "added": self.added, "removed": self.removed,
                "relabelled": self.relabelled, "changed": self.changed, "by_label": self.by_label,
                "by_annotator": self.by_annotator, "relabels": self.relabels, "edited": self.edited,
                "changed_annotations": self.changed_annotations, "reversed": self.reversed}


def cell_labels(tag: str | None, cell, known: Sequence[str] = ()) -> list[str]:
    """The labels of one control cell of the CSV (see the module docstring).

    Args:
        tag: The control tag type (``Choices``, ``RectangleLabels``, ...), or ``None`` when unknown (the cell's
            form is guessed: a JSON list of objects with ``label`` is boxes, else ``|``-joined labels).
        cell: The cell (``NaN``/``None``/``""``: no label).
        known: The control's labels (the label config's, or a version's ``label_distribution``): one holding ``|``
            stays whole, as the restore reads it (:func:`labelhub.sync.versions.rows.split_labels`); without them
            every ``|`` splits.

    Returns:
        The labels, with repeats (one per box); ``[VALUE]`` for a cell of a control without labels.

    Example:
        >>> cell_labels("Choices", "a|b"), cell_labels("PolygonLabels", '[{"points": [], "polygonlabels": ["car"]}]')
        (['a', 'b'], ['car'])
        >>> cell_labels("Choices", "a|b|c", ["a|b", "c"])
        ['a|b', 'c']
        >>> cell_labels("TextArea", "a transcription")
        ['(value)']
    """
    if cell is None or (isinstance(cell, float) and pd.isna(cell)) or cell == "":
        return []
    text = str(cell)
    if tag in (None, "RectangleLabels", "Labels") and text.startswith("["):
        boxes = _json_objects(text)
        if boxes is not None:
            return [str(b.get("label", "")) for b in boxes]
    if tag in (None, "Choices", "Labels", "Taxonomy"):
        return split_labels(text, known)
    if tag.endswith("Labels"):
        values = _json_objects(text)
        labels = [v.get(tag.lower()) for v in values or ()]
        if values is not None and all(isinstance(x, list) for x in labels):
            return [str(label) for x in labels for label in x]
    return [VALUE]


def _json_objects(text: str) -> list[dict] | None:
    """A cell's JSON list of objects, or ``None`` when it is not one."""
    try:
        items = json.loads(text)
    except ValueError:
        return None
    return items if isinstance(items, list) and all(isinstance(x, dict) for x in items) else None


def controls_of(frame: pd.DataFrame, manifest: Mapping | None = None) -> dict[str, str | None]:
    """``{from_name: tag or None}`` of a version's control columns: the manifest's ``controls`` when it has
    them, else the CSV's columns between the value key (the 4th column) and ``annotator``."""
    if manifest and isinstance(manifest.get("controls"), dict):
        return {name: tag for name, tag in manifest["controls"].items() if name in frame.columns}
    columns = list(frame.columns)
    end = columns.index(_FIRST_AFTER_CONTROLS) if _FIRST_AFTER_CONTROLS in columns else len(columns)
    return {name: None for name in columns[4:end]}


def _bump(table: dict, *keys_and_field) -> None:
    *keys, name = keys_and_field
    for key in keys:
        table = table.setdefault(key, {})
    table[name] = table.get(name, 0) + 1


def _differ(old: pd.DataFrame, new: pd.DataFrame, columns: list[str], text) -> np.ndarray:
    """Per row of two aligned frames, whether a cell of ``columns`` may differ: not the same value of the same type
    (compared as ``text(value)`` when ``text`` is given), or a column missing from either frame."""
    out = np.zeros(len(old), bool)
    for column in columns:
        if column not in old.columns or column not in new.columns:
            return np.ones(len(old), bool)
        if old[column].dtype == new[column].dtype and old[column].dtype != object:
            # one dtype (not object): equal values are of one type too, and print alike; NaN never equals
            out |= ~np.asarray(old[column].to_numpy() == new[column].to_numpy(), bool)
            continue
        before, after = old[column].tolist(), new[column].tolist()
        if text is not None:
            out |= np.fromiter((text(x) != text(y) for x, y in zip(before, after)), bool, len(before))
        else:
            out |= np.fromiter((not (x is y or (type(x) is type(y) and x == y)) for x, y in zip(before, after)),
                               bool, len(before))
    return out


def diff_frames(old: pd.DataFrame, new: pd.DataFrame, controls: Mapping[str, str | None],
                old_name: str | None = None, new_name: str | None = None,
                known: Mapping[str, Sequence[str]] | None = None) -> VersionDiff:
    """Compare two versions' rows.

    Args:
        old, new: The rows (columns as in :mod:`labelhub.sync.versions.rows`; ``annotation_id`` required, one row
            per annotation). An empty ``old`` is "nothing": every row is added.
        controls: ``{from_name: tag}`` of the control columns to compare (:func:`controls_of`).
        old_name, new_name: The versions' names, kept in the result.
        known: ``{from_name: labels}`` (the label config's, or :func:`known_labels`): a label holding ``|`` counts
            as one (:func:`cell_labels`); ``None``: every ``|`` splits.

    Returns:
        A :class:`VersionDiff`.

    Raises:
        ValueError: an ``annotation_id`` is in two rows of ``old`` or of ``new``.
    """
    diff = VersionDiff(old_name, new_name)
    known = known or {}
    empty = pd.DataFrame(columns=["annotation_id"])
    old, new = (frame.reset_index(drop=True) if len(frame) else empty for frame in (old, new))
    old_ids, new_ids = (pd.Index(frame["annotation_id"].to_numpy()) for frame in (old, new))
    for ids, name in ((old_ids, old_name), (new_ids, new_name)):
        if not ids.is_unique:
            raise ValueError(f"annotation_id repeats in the rows of {name or 'a version'}: one row per annotation")
    # each new row's position in ``old`` (-1: added) and each old row's in ``new`` (-1: removed); those added and
    # removed are counted in id order
    at_old, at_new = old_ids.get_indexer(new_ids), new_ids.get_indexer(old_ids)
    by_id = (np.argsort(new_ids.to_numpy(), kind="stable"), np.argsort(old_ids.to_numpy(), kind="stable"))
    relabels: Counter = Counter()

    def annotator(row) -> str:
        value = row.get("annotator", "")
        return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)

    for rows, positions, kind in ((new, by_id[0][at_old[by_id[0]] < 0], "added"),
                                  (old, by_id[1][at_new[by_id[1]] < 0], "removed")):
        for row in rows.take(positions).to_dict("records") if len(positions) else ():  # to_dict costs ms on no rows
            setattr(diff, kind, getattr(diff, kind) + 1)
            _bump(diff.by_annotator, annotator(row), kind)
            for name, tag in controls.items():
                for label in cell_labels(tag, row.get(name), known.get(name, ())):
                    _bump(diff.by_label, name, label, kind)
    both = np.flatnonzero(at_old >= 0)  # in the new rows' order
    olds, news = old.take(at_old[both]), new.take(both)
    differ = _differ(olds, news, ["was_cancelled"], str)  # rows with the same cells cannot have changed
    differ |= _differ(olds, news, list(controls), None)
    pairs = zip(olds[differ].to_dict("records"), news[differ].to_dict("records")) if differ.any() else ()
    for before, after in pairs:
        changed = str(before.get("was_cancelled")) != str(after.get("was_cancelled"))
        for name, tag in controls.items():
            labels = known.get(name, ())
            was, now = cell_labels(tag, before.get(name), labels), cell_labels(tag, after.get(name), labels)
            if Counter(was) == Counter(now):
                if _cell_text(before.get(name)) != _cell_text(after.get(name)):
                    changed = True
                    diff.edited[name] = diff.edited.get(name, 0) + 1
                continue
            changed = True
            relabels[(name, "|".join(sorted(was)), "|".join(sorted(now)))] += 1
            lost, gained = Counter(was) - Counter(now), Counter(now) - Counter(was)
            for label, n in lost.items():
                for _ in range(n):
                    _bump(diff.by_label, name, label, "relabelled_from")
            for label, n in gained.items():
                for _ in range(n):
                    _bump(diff.by_label, name, label, "relabelled_to")
        if changed:
            diff.relabelled += 1
            _bump(diff.by_annotator, annotator(after), "relabelled")
    diff.relabels = [{"control": c, "from": f, "to": t, "count": n}
                     for (c, f, t), n in sorted(relabels.items(), key=lambda kv: (-kv[1], kv[0]))]
    return diff


def _cell_text(cell) -> str:
    return "" if cell is None or (isinstance(cell, float) and pd.isna(cell)) else str(cell)


def replaced_project(label_studio: Mapping | None, project_id, project_key: str | None) -> bool:
    """Whether a manifest's ``label_studio`` section names Label Studio project ``project_id`` but not the project
    whose key is ``project_key``: another project that had the same id (Label Studio reset, or another Label
    Studio, whose new project got the old one's id). Its annotation ids name other annotations: rows of the two
    are never matched by ``annotation_id``.

    Label Studio names a project ``<id>.<created_at in unix seconds>`` (``MLApi._create_project_uid`` in
    ``label_studio/ml/api_connector.py``; :attr:`labelhub.sync.labelstudio.project.LabelStudioProject.key`), which
    manifests hold as ``label_studio.project_key`` (since 2026-12). ``False`` when either key is unknown (a
    manifest of an older LabelHub, a project without ``created_at``): those are taken as the same project, as before.

    Example:
        >>> replaced_project({"project_id": 1, "project_key": "1.1796529238"}, 1, "1.1796529942")
        True
        >>> replaced_project({"project_id": 1}, 1, "1.1796529942")  # an older LabelHub's manifest
        False
    """
    section = label_studio if isinstance(label_studio, Mapping) else {}
    theirs = section.get("project_key")
    if section.get("project_id") != project_id or not isinstance(theirs, str) or not isinstance(project_key, str):
        return False
    return "." in theirs and "." in project_key and theirs != project_key


def read_version_csv(repo: DatasetRepo, sha: str, series: Series) -> pd.DataFrame:
    """The rows of the version of ``series`` at commit ``sha``: its CSV, every cell as written (``dtype=str``): a
    label ``01`` or ``2.50`` read as a number would become 1 or 2.5, and a column with an empty cell in one version
    and not the other would read as changed. One file read.

    Raises:
        labelhub.errors.EntryNotFound: The commit has no CSV at the series' ``csv_path``.
    """
    import io

    return pd.read_csv(io.BytesIO(repo.read_file(sha, series.csv_path)), dtype=str, keep_default_na=False)


def _read_version(repo: DatasetRepo, sha: str, series: Series, tag: str) -> tuple[pd.DataFrame, dict]:
    """The rows (:func:`read_version_csv`) and the manifest (``{}`` when it does not parse or is not an object) of
    version ``tag`` (at commit ``sha``).

    Raises:
        labelhub.errors.EntryNotFound: The commit has no CSV at the series' ``csv_path``.
        labelhub.errors.LabelHubError: The CSV is not one to compare (a hand-edited file): not UTF-8, empty or not
            CSV, without an ``annotation_id`` column, or with an annotation in two rows; one line
            ``<csv_path> at <tag>: <why>``.
    """
    try:
        frame = read_version_csv(repo, sha, series)
    except LabelHubError:
        raise
    except ValueError as exc:  # pandas' ParserError and EmptyDataError, UnicodeDecodeError
        raise LabelHubError(f"{series.csv_path} at {tag}: {_csv_fault(exc)}") from None
    if "annotation_id" not in frame.columns:
        raise LabelHubError(f"{series.csv_path} at {tag}: no annotation_id column (its header: "
                            f"{one_line(', '.join(map(str, frame.columns)), 120)})")
    repeated = frame["annotation_id"][frame["annotation_id"].duplicated()]
    if len(repeated):
        raise LabelHubError(f"{series.csv_path} at {tag}: annotation_id {one_line(repeated.iloc[0], 40)} is in more "
                            "than one row (one row per annotation: a row pasted twice?)")
    try:
        manifest = json.loads(repo.read_file(sha, series.manifest_path))
    except (FileNotFoundError, ValueError, RecursionError):  # RecursionError: nested too deeply (an edited file)
        manifest = {}
    return frame, manifest if isinstance(manifest, dict) else {}


def _csv_fault(exc: ValueError) -> str:
    """Why pandas could not read a version's CSV, in one line."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (a byte 0x{exc.object[exc.start]:02x}): save it as UTF-8"
    if isinstance(exc, pd.errors.EmptyDataError):
        return "empty (not even a header row)"
    return f"does not parse as CSV ({one_line(exc, 200)})"


def known_labels(*manifests: Mapping) -> dict[str, list[str]]:
    """``{from_name: labels}`` the versions' manifests counted (``label_distribution``, whose labels the exporter
    split with the project's label config): what :func:`cell_labels` needs to keep a label holding ``|`` whole when
    no label config is at hand."""
    known: dict[str, list[str]] = {}
    for manifest in manifests:
        found = manifest.get("label_distribution") if isinstance(manifest, Mapping) else None
        for name, counts in (found.items() if isinstance(found, Mapping) else ()):
            if isinstance(counts, Mapping):
                known.setdefault(str(name), []).extend(str(label) for label in counts)
    return known


def diff_versions(repo: DatasetRepo, old_tag: str, new_tag: str, csv_path: str = DEFAULT_CSV_PATH,
                  tag_prefix: str | None = None) -> VersionDiff:
    """Compare two tagged versions of one series of ``repo`` (two or four file reads, one tag listing).

    Args:
        repo: The dataset repo.
        old_tag, new_tag: Tags (``annotations-v2``, ``test-v2``) or commit shas.
        csv_path: The series' CSV (``path_in_repo``).
        tag_prefix: The series' tag prefix; ``None``: derived from ``csv_path``.

    Returns:
        A :class:`VersionDiff` (controls from the newer version's manifest, or its columns). Versions of two
        projects that had the same id (:func:`replaced_project`: a Label Studio reset between them) match no rows:
        the older one's annotations are removed, the newer one's added.

    Raises:
        RevisionNotFound: A tag is neither a tag of the repo nor a commit sha.
        labelhub.errors.ConfigurationError: A tag is named as a version of another series (``test-v2`` read with
            the default ``csv_path``), or the tag prefix is not a valid one.
        labelhub.errors.EntryNotFound: A version has no CSV at ``csv_path``.
        labelhub.errors.LabelHubError: A version's CSV is not one to compare (not UTF-8, empty or not CSV, no
            ``annotation_id`` column, an annotation in two rows): one line ``<csv_path> at <tag>: <why>``.

    Example:
        >>> repo = open_repo("owner/dataset")  # doctest: +SKIP
        >>> diff_versions(repo, "test-v1", "test-v2", "annotations/test.csv").added  # doctest: +SKIP
        12
    """
    series = series_for(csv_path, tag_prefix)
    tags = repo.tags()
    for tag in (old_tag, new_tag):
        if tag in tags:  # a tag the repo lacks is said so first, with a hint (a misspelt prefix is no other series)
            series.check_tag(tag)
    shas = []
    for tag in (old_tag, new_tag):
        if tag in tags:
            shas.append(tags[tag])
        elif len(tag) == 40 and all(c in "0123456789abcdef" for c in tag):
            shas.append(tag)
        else:
            raise RevisionNotFound(f"{tag!r} is not a tag of {repo.repo_id}{did_you_mean(tag, tags)} (see labelhub "
                                   "versions)")
    old, old_manifest = _read_version(repo, shas[0], series, old_tag)
    new, manifest = _read_version(repo, shas[1], series, new_tag)
    section = manifest.get("label_studio") if isinstance(manifest.get("label_studio"), Mapping) else {}
    if replaced_project(old_manifest.get("label_studio"), section.get("project_id"), section.get("project_key")):
        # two projects that had one id (a Label Studio reset): their annotation ids name different annotations
        old = old.assign(annotation_id=[f"{old_tag}:{x}" for x in old["annotation_id"]])
    diff = diff_frames(old, new, controls_of(new, manifest), old_tag, new_tag, known_labels(old_manifest, manifest))
    diff.changed_annotations = changed_annotations(old, new, new.columns[3] if len(new.columns) > 3 else None)
    diff.changed = len(diff.changed_annotations)
    numbers = [series.number(tag) for tag in (old_tag, new_tag)]
    diff.reversed = None not in numbers and numbers[0] > numbers[1]
    return diff


def file_of_url(url, hf_path) -> str:
    """What a CSV's file URL (the value key's cell) names: ``<revision>/<hf_path>`` when it is an ``http(s)`` URL
    whose path ends with them (a Hub resolve URL ``.../resolve/<revision>/<path>``, a signed proxy URL
    ``.../files/<repo>/<revision>/<path>?...``: :mod:`labelhub.file_urls`), else the cell as written. Two URLs of one
    file (another host or port, another signature, the other form) name the same.

    Example:
        >>> file_of_url("http://127.0.0.1:9090/files/repo/abc/d/x%20y.png?exp=1&sig=2", "d/x y.png")
        'abc/d/x y.png'
    """
    text = str(url)
    if not hf_path or not text.startswith(("http://", "https://")):
        return text
    path, tail = unquote(urlsplit(text).path), f"/{hf_path}"
    if not path.endswith(tail):
        return text
    return f"{path[:-len(tail)].rsplit('/', 1)[-1]}{tail}"


def changed_rows(old: pd.DataFrame, new: pd.DataFrame, value_key: str | None = None) -> int:
    """How many annotations of both versions' rows (CSV cells read as written) differ in any column but the
    bookkeeping ones: ``len(changed_annotations(old, new, value_key))`` (see there)."""
    return len(changed_annotations(old, new, value_key))


def changed_annotations(old: pd.DataFrame, new: pd.DataFrame, value_key: str | None = None) -> list[dict]:
    """The annotations of both versions' rows (CSV cells read as written) that differ in any column but the
    bookkeeping ones (:data:`labelhub.sync.versions.rows.BOOKKEEPING`: a row saved again with the same labels is not
    changed, as the exporter counts it; versions tagged before it did counted those in their titles); a column one
    version lacks reads as empty cells there (a column only some exports have, ``other_results`` or a metadata key,
    changes only the rows that have a value in it). ``value_key``: the file URL's column, compared as the file it
    names (:func:`file_of_url`, with the row's ``hf_path``), as the exporter counts it
    (:func:`labelhub.sync.versions.incremental.content_key`): a URL rewritten by a change of the sync's URL policy
    (another host, port or secret) is not a change.

    Returns:
        ``[{"annotation_id", "hf_path", "columns"}]`` in the newer rows' order: the id as a number (as the CSV
        writes it when it is not one: a replaced project's ``tag:id``), the newer row's ``hf_path`` (``None``
        without the column), and the names of the columns that differ, sorted.

    Example:
        >>> old = pd.DataFrame({"annotation_id": ["1", "2"], "hf_path": ["a.png", "b.png"], "kind": ["x", "y"]})
        >>> changed_annotations(old, old.assign(kind=["x", "z"]))
        [{'annotation_id': 2, 'hf_path': 'b.png', 'columns': ['kind']}]
    """
    both = old.merge(new, on="annotation_id", how="inner", suffixes=("_old", "_new"))
    if both.empty:
        return []
    differs: dict[str, np.ndarray] = {}
    for column in sorted(set(old.columns) | set(new.columns)):
        if column == "annotation_id" or column in BOOKKEEPING:
            continue
        if column in old.columns and column in new.columns:
            before, after = both[f"{column}_old"].astype(str), both[f"{column}_new"].astype(str)
        elif column in old.columns:  # merge names a column of one frame without a suffix
            before, after = both[column].astype(str), ""
        else:
            before, after = "", both[column].astype(str)
        if column == value_key and column in old.columns and column in new.columns and "hf_path_old" in both:
            before = pd.Series([file_of_url(u, p) for u, p in zip(before, both["hf_path_old"])], index=both.index)
            after = pd.Series([file_of_url(u, p) for u, p in zip(after, both["hf_path_new"])], index=both.index)
        differ = np.asarray(before != after, bool)
        if differ.any():
            differs[column] = differ
    paths = (both["hf_path_new"] if "hf_path_new" in both else both["hf_path"] if "hf_path" in both
             else pd.Series([None] * len(both)))
    out = []
    for at in np.flatnonzero(np.logical_or.reduce(list(differs.values()))) if differs else ():
        path = paths.iloc[at]
        given = both["annotation_id"].iloc[at]
        given = given.item() if hasattr(given, "item") else given
        out.append({"annotation_id": int(given) if isinstance(given, str) and given.isdigit() else given,
                    "hf_path": None if path is None or (isinstance(path, float) and pd.isna(path)) else str(path),
                    "columns": [c for c, d in differs.items() if d[at]]})
    return out


#: The legend of the per-label counts of :func:`summary_text` (``Coat +1 -1 →1, Pullover 1→``).
LEGEND = ("per label: `+N` added, `-N` removed, `→N` relabelled to it, `N→` relabelled from it (annotations; "
          "a box or span counts once per region)")

#: How many changed annotations :func:`changes_text` names (``labelhub diff --json`` lists all of them).
MAX_CHANGED = 10


def changes_text(diff: VersionDiff, changed: int, top: int = 10) -> str:
    """:func:`summary_text` (``top`` as there), and when some of the ``changed`` annotations (a version title's
    ``~``) changed in no label, a line saying so: ``~2 changed: 1 relabelled, 1 in other columns only (...)``. What
    a version's commit description and card say, and ``labelhub diff``. Sets ``diff.changed`` to ``changed`` when it
    is ``None`` (an export's diff, counted from label columns only), so the manifest's ``changes.changed`` is the
    title's ``~`` as ``counts.changed`` is."""
    if diff.changed is None:  # one count in the manifest's changes and counts (an export's diff does not count it)
        diff.changed = changed
    other = changed - diff.relabelled
    text = summary_text(diff, top)
    if other > 0:
        text += (f"\n\n~{changed} changed: {diff.relabelled} relabelled, {other} in other "
                 "columns only (task data, annotator, ground truth, annotated revision, or the export's format)")
    if diff.changed_annotations:
        shown = diff.changed_annotations[:MAX_CHANGED]
        text += "\n" + "\n".join(f"  ~ {row['annotation_id']} `{row['hf_path']}`: {', '.join(row['columns'])}"
                                  for row in shown)
        if len(diff.changed_annotations) > len(shown):
            text += f"\n  and {len(diff.changed_annotations) - len(shown)} more (--json lists them all)"
    return text


def summary_text(diff: VersionDiff, top: int = 10) -> str:
    """The Markdown summary of a diff that each export's commit description and dataset card carry.

    Args:
        diff: The diff against the previous version.
        top: How many relabels (from → to) to list.

    Returns:
        A few lines: the counts, the labels that changed (added, removed, relabelled from/to; the
        :data:`MAX_LABELS` most counted per control, the others counted), the cells edited with the same labels, the
        annotators, and the most frequent relabels.
    """
    since = f"Since {diff.old}" if diff.old else "First version"
    lines = [f"{since}: +{diff.added} added, -{diff.removed} removed, ~{diff.relabelled} relabelled."]
    if diff.reversed:
        lines[0] += (f" Reversed: {diff.old} is the newer version (named first), so + counts what only {diff.new} "
                     f"has and - what only {diff.old} has.")
    counted_labels = False
    for name in [*diff.by_label, *(n for n in diff.edited if n not in diff.by_label)]:
        labels = diff.by_label.get(name, {})
        shown = sorted(sorted(labels), key=lambda label: -sum(labels[label].values()))[:MAX_LABELS]
        parts = []
        for label in sorted(shown):
            counts = labels[label]
            bits = [f"+{counts['added']}" if counts.get("added") else "",
                    f"-{counts['removed']}" if counts.get("removed") else "",
                    f"→{counts['relabelled_to']}" if counts.get("relabelled_to") else "",
                    f"{counts['relabelled_from']}→" if counts.get("relabelled_from") else ""]
            parts.append(f"{'values' if label == VALUE else label} {' '.join(b for b in bits if b)}")
            counted_labels = True
        if len(labels) > len(shown):
            parts.append(f"and {len(labels) - len(shown)} more labels")
        if diff.edited.get(name):  # the cell changed, its labels did not (a box moved, a text edited)
            parts.append(f"{diff.edited[name]} edited")
        lines.append(f"- `{name}`: " + ", ".join(parts))
    if counted_labels:
        lines.append(f"- {LEGEND}")
    if diff.by_annotator:
        lines.append("- annotators: " + ", ".join(
            f"{who or '(unknown)'} " + " ".join(f"{sign}{counts[key]}" for sign, key in
                                                (("+", "added"), ("-", "removed"), ("~", "relabelled"))
                                                if counts.get(key))
            for who, counts in sorted(diff.by_annotator.items())))
    if diff.relabels and top:
        lines.append("- relabels: " + "; ".join(f"`{r['control']}` {r['from'] or '∅'} → {r['to'] or '∅'} ×{r['count']}"
                                               for r in diff.relabels[:top]))
    return "\n".join(lines)


def diff_table(diff: VersionDiff) -> Sequence[str]:
    """Lines for a terminal (``labelhub diff``): the summary, then the from → to table of every relabel (the
    summary's own list of the most frequent is left out: the table says it)."""
    lines = (summary_text(diff, top=0) if diff.changed is None else changes_text(diff, diff.changed, top=0)
             ).splitlines()
    if diff.relabels:
        width = max(len(r["from"] or "∅") for r in diff.relabels)
        lines += ["", "relabels (control: from → to, count):"]
        lines += [f"  {r['control']}: {(r['from'] or '∅'):<{width}} → {r['to'] or '∅'}  {r['count']}"
                  for r in diff.relabels]
    return lines
