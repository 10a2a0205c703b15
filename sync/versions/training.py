"""Training-ready rows of a version: decoded media and typed labels through ``datasets.load_dataset`` (pure).

``datasets.load_dataset(repo, revision="annotations-vN", split="train")`` loads the version's *default*
config: one row per annotation that was not skipped (of a task made from a file of the repo, when the media are
files: an ``Image``/``Audio`` or ``valueType="url"`` task imported into Label Studio by other means stays in the CSV
only, since its media cell would point nowhere and stop ``datasets`` reading the split; a ``Text``/``HyperText``
task whose text is in the task data, or a ``Video`` task, is a row either way, ``hf_path`` empty: decided so
because the row holds what the annotation was made on, the task's text or URL: :func:`_has_media`), with

- the media: the object tag's value key (``image``, ``audio``) holds the file, as an ``Image`` feature (decoded)
  or an ``Audio(decode=False)`` one (``{path, bytes}``: ``datasets`` decodes audio with torchcodec, which needs
  FFmpeg; the card shows the ``cast_column`` that decodes it: :func:`folder_layout`); a ``Video`` task's column holds
  the task's URL as a string (``datasets``' ``Video`` needs the same decoders; the file is ``hf_path``); a
  ``Text`` task's text is a string column: **the text the annotation was made on**, so that each span's
  ``text[start:end]`` is its text. For ``<Text valueType="url">`` (the task holds the file's URL, Label
  Studio fetches the text) it is the file's text as it was at the row's ``annotated_revision`` (the consensus
  row's: at the commit its task's URL names), read from the repo when the version is built
  (:class:`labelhub.repos.texts.FileTexts`: UTF-8 as the browser decodes it, so span offsets index it; ``None``
  for a file the repo lacks at that commit, said in a warning); the CSV keeps the URL. For a text in the task data
  it is the task's text, except for a row annotated on an older revision of its file than the task shows (the
  file changed after it was annotated, and its task followed it: :func:`on_current_content`): that row holds the file's
  text at its ``annotated_revision``, decoded as the import decoded it (a byte order mark kept:
  :func:`labelhub.repos.texts.decode_task_text`; the CSV keeps the task's text). A span's ``text`` is the
  one the annotation saved; a span saved without one (over ``valueType="url"``, or made through the API) gets the
  characters between its offsets of its own row's text, never another's (not for HyperText, whose offsets are XPaths);
- the ``consensus`` config (one row per task) and the agreement figures count only the annotations made on the
  content the task shows now (:func:`on_current_content`: a ``Text``/``HyperText`` task's text, an ``Image``,
  ``Audio`` or ``Video`` task's file at the commit its URL names): the consensus row holds that content, and spans
  made on another text would not index it, nor boxes drawn on other pixels fit it. The others stay in the CSV and
  the default config (a local repository's: the texts only, below), and are counted in a warning at each export;
- one column per control tag (``from_name``), typed where ``datasets`` allows it:

  ==========================  =================================================================================
  control tag                 feature
  ==========================  =================================================================================
  Choices                     ``ClassLabel`` with the label config's choices in their order (then labels the
                              annotations hold that the config lacks, sorted: ``training_features``' ``found``)
  Choices ``choice=multiple``  a list of that ``ClassLabel``
  RectangleLabels             a list of ``{x, y, width, height, rotation}`` (float32 fractions 0 to 1 of the
                              image; ``rotation`` in degrees, clockwise around the box's top-left corner
                              ``(x, y)`` as Label Studio turns it, 0 for an upright box) with a ``ClassLabel``
                              ``label``
  Labels (over Text)          a list of ``{start, end, text, label}`` (character offsets, ``ClassLabel`` label)
  Labels over another tag     the cell as in the CSV (string): an Audio span's seconds, a HyperText span's XPaths
                              or an Image region are not character offsets
  TextArea                    the text, several entries joined with a newline (the CSV keeps them apart:
                              :func:`labelhub.sync.versions.rows.textarea_entries`)
  any other                   the JSON of its result values (string)
  ==========================  =================================================================================

- then, as strings, the task-data keys the label config's other object tags read (:func:`task_keys`: the
  question-answering template's ``question``; not the other metadata columns, which stay in the CSV);
- then ``task_id, annotation_id, hf_path, annotator, annotated_revision``.

Two layouts, because ``datasets`` reads a Hub repo and a local folder differently
(https://huggingface.co/docs/datasets/image_load and https://huggingface.co/docs/hub/datasets-manual-configuration):

- **Hub repo**: ``annotations/train.jsonl``, read by the ``json`` builder with the features above declared in the
  card's ``dataset_info``; each media cell is ``hf://datasets/<repo_id>@<revision>/<path_in_repo>``, the file as it
  was when it was annotated (``annotated_revision``), fetched when a row is read (with ``HF_TOKEN`` for a private
  repo). Only annotated files are downloaded.
- **Local git repository** (load a clone at the tag): ``metadata.jsonl`` at the repo's root, read by the
  ``imagefolder`` builder, whose ``file_name`` column is the file's path relative to it (the file at the tag); the
  media column is named ``image`` (an ``Audio`` version's rows file is read as JSON Lines, its ``file_name`` the
  path in the clone, not decoded: :func:`folder_layout`), and labels are strings (``datasets`` does not apply
  a card's features to a local folder). A folder holds each file as the tag has it, so an ``Image`` or ``Audio``
  row annotated on an older content of its file than its task shows (the file changed after the annotation) is
  left out of the default config, as a row of a file the repository no longer holds is: its labels would go with
  the newer pixels (:func:`media_elsewhere`; the CSV keeps it, and the consensus counts it not). Decided: no copy
  of the older file is written into the version (``datasets`` cannot read a blob at a commit from a folder).

These are the default series' file names; another project's series (another ``--csv-path`` or ``--tag-prefix``
``P`` in the same repo) writes ``P.train.jsonl``, ``P.consensus.jsonl`` and, in a local repository,
``P.metadata.jsonl`` (``imagefolder``'s ``metadata_filenames``) and ``P.consensus.jsonl`` at the root
(:mod:`labelhub.sync.versions.series`).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from labelhub.label_config import TEXT_TAGS, DataField, parse_label_config
from labelhub.sync.versions.rows import split_labels, textarea_entries

__all__ = ["LOCAL_METADATA", "HUB_ROWS", "LOCAL_CONSENSUS", "HUB_CONSENSUS", "training_features", "training_records",
           "task_keys", "training_records_by_row", "consensus_records", "consensus_records_by_row", "uses_revision",
           "media_column", "folder_patterns", "folder_patterns_of", "folder_layout", "split_labels", "control_labels",
           "text_from_file", "text_from_url", "on_current_content", "media_elsewhere", "text_files",
           "consensus_text_files"]

#: The rows file of a local repository: at its root, so that every ``file_name`` is below it.
LOCAL_METADATA = "metadata.jsonl"
#: The rows file of a Hub repo, beside the CSV by default.
HUB_ROWS = "train.jsonl"
#: The ``consensus`` config's rows: one per task (:func:`labelhub.sync.versions.agreement.consensus_rows`).
LOCAL_CONSENSUS, HUB_CONSENSUS = "consensus.jsonl", "consensus.jsonl"
#: The columns after the control columns, and their types, of each config.
ANNOTATION_COLUMNS = {"task_id": "int64", "annotation_id": "int64", "hf_path": "string", "annotator": "string",
                      "annotated_revision": "string"}
CONSENSUS_COLUMNS = {"task_id": "int64", "hf_path": "string", "annotators": "int32", "agreement": "float32",
                     "skipped": "int32"}
_SHA = re.compile(r"/([0-9a-f]{40})/")
_MEDIA = {"Image": "image", "Audio": "audio", "AudioPlus": "audio"}


def text_from_file(field: DataField) -> bool:
    """Whether the rows of ``field`` can hold a file's text read from the repo (so the export needs a
    :class:`labelhub.repos.texts.FileTexts`): a ``Text`` or ``HyperText`` tag. With ``valueType="url"``
    (:func:`text_from_url`) every row's text is read; with the text in the task data, only the text of a row whose
    annotation was made on an older revision of the file than the task shows now (:func:`text_files`)."""
    return field.tag in TEXT_TAGS


def text_from_url(field: DataField) -> bool:
    """Whether ``field`` is a ``Text`` or ``HyperText`` tag with ``valueType="url"`` (its tasks hold the file's URL,
    every training row holds the file's text read from the repo)."""
    return field.tag in TEXT_TAGS and field.as_url


def on_current_content(frame: pd.DataFrame, field: DataField, current: Mapping[int, str] | None = None) -> np.ndarray:
    """Which rows of ``frame`` were annotated on the content their task shows now: the rows whose
    ``annotated_revision`` is the task's commit (the 40-hex commit its URL names for a file's URL: an ``Image``,
    ``Audio`` or ``Video`` task, ``valueType="url"``; for a text in the task data, ``current[task_id]``), or either
    is unknown (a task not made from a repo file, an annotation without a revision). Only those vote in the
    ``consensus`` config and the agreement figures: a span's offsets index the text it was made on, a box the
    pixels it was drawn on, and a task's consensus row holds the task's current content (the file at the commit
    its URL names). A local repository's default config leaves the other media rows out too
    (:func:`media_elsewhere`).

    Args:
        frame: The export's rows.
        field: The object tag.
        current: ``{task_id: data.hf_revision}`` of the tasks (the sync state's task data), for a text in the task
            data (its value names no commit).

    Returns:
        A bool array, one per row.
    """
    if frame.empty:
        return np.ones(len(frame), bool)
    if field.tag not in TEXT_TAGS:  # a file's URL: one substring test per row (no regex over every URL)
        urls = frame[field.value_key] if field.value_key in frame else pd.Series("", index=frame.index)
        made = frame["annotated_revision"] if "annotated_revision" in frame else pd.Series("", index=frame.index)
        return np.fromiter((not _elsewhere(url, then) for url, then in zip(urls.to_numpy(object),
                                                                           made.to_numpy(object))),
                           bool, count=len(frame))
    if field.as_url:  # the commit the URL names
        cells = frame[field.value_key] if field.value_key in frame else pd.Series("", index=frame.index)
        now = cells.astype("string").str.extract(_SHA.pattern, expand=False)
    else:
        now = frame["task_id"].map(pd.Series(dict(current or {}), dtype=object))
    now = now.astype("string").fillna("").to_numpy(object)
    made = frame["annotated_revision"] if "annotated_revision" in frame else pd.Series("", index=frame.index)
    then = made.astype("string").fillna("").to_numpy(object)
    return (now == "") | (then == "") | (now == then)


def _elsewhere(url, revision) -> bool:
    """Whether a file's ``url`` names a 40-hex commit other than ``revision`` (both known): the task shows
    another content of its file than the annotation was made on."""
    then = _text(revision)
    if len(then) != 40 or not isinstance(url, str) or f"/{then}/" in url:
        return False
    return _SHA.search(url) is not None


def media_elsewhere(row: Mapping, field: DataField, local: bool) -> bool:
    """Whether the default config of a local repository leaves ``row`` out: an ``Image`` or ``Audio`` row whose
    ``annotated_revision`` is not the commit its task's URL names (the file changed after the annotation, and the
    task followed it). The local layout names a file by its path in a clone at the tag (``imagefolder``'s
    ``file_name``, an Audio version's ``file_name``), which holds the file's newer content: the row would pair
    the labels with other pixels or sound. ``git`` can give the blob at the older commit, but ``datasets`` cannot
    read it from the folder, and copying it into the version would grow the repository by every changed file: so
    the row stays in the CSV only (with its ``annotated_revision``, ``git show <annotated_revision>:<hf_path>``
    gives the file it was made on), like a row of a file the repository no longer holds. A Hub repo names each
    file at its ``annotated_revision`` (``hf://...@<revision>/<path>``), so it keeps every row.

    Args:
        row: A row of the export (a CSV row as a mapping).
        field: The object tag.
        local: Whether the repo is a local git repository.

    Returns:
        ``True`` to leave the row out of the default config.
    """
    return local and field.tag in _MEDIA and _elsewhere(row.get(field.value_key), row.get("annotated_revision"))


def _stale(row: Mapping, current: Mapping[int, str] | None) -> bool:
    """Whether a row of a text in the task data was annotated on another revision of its file than its task shows now
    (``current[task_id]``, the sync state's ``data.hf_revision``): the negation of :func:`on_current_content` for one
    such row, both revisions known."""
    task_id = row.get("task_id")
    now = "" if _missing(task_id) else _text((current or {}).get(int(task_id)))
    then = _text(row.get("annotated_revision"))
    return bool(now and then and now != then)


def text_files(frame: pd.DataFrame, field: DataField, current: Mapping[int, str] | None = None
               ) -> list[tuple[str, str]]:
    """The files whose texts the default config's records of ``frame`` hold (:func:`training_records_by_row`).

    Args:
        frame: The export's rows.
        field: The object tag the files fill.
        current: ``{task_id: data.hf_revision}`` (:func:`on_current_content`), for a text in the task data.

    Returns:
        ``(annotated_revision, hf_path)`` of each row not skipped that has both, in the frame's order (duplicates
        kept): every such row for ``valueType="url"``, those annotated on an older revision of their file than the
        task's (``current``) for a text in the task data; ``[]`` unless :func:`text_from_file`.
    """
    if not text_from_file(field) or frame.empty:
        return []
    rows = frame.reindex(columns=["task_id", "hf_path", "annotated_revision", "was_cancelled"]).to_dict("records")
    return [(revision, path) for row in rows
            for path, revision in [(_text(row["hf_path"]), _text(row["annotated_revision"]))]
            if path and revision and str(row["was_cancelled"]).lower() != "true"
            and (field.as_url or _stale(row, current))]


def consensus_text_files(consensus: pd.DataFrame, field: DataField, revision: str) -> list[tuple[str, str]]:
    """The files whose texts the consensus records of ``consensus`` hold (:func:`consensus_records_by_row`).

    Args:
        consensus: The consensus frame.
        field: The object tag the files fill.
        revision: As for :func:`consensus_records`.

    Returns:
        ``(commit, hf_path)`` of each row with a path: the commit its task's URL names, else ``revision``;
        ``[]`` unless :func:`text_from_url` (a consensus row of a text in the task data holds that text: only
        annotations made on it vote, :func:`on_current_content`).
    """
    if not text_from_url(field) or consensus.empty:
        return []
    return [(_commit_of(value, revision), path)
            for path, value in zip(consensus["hf_path"].map(_text), consensus[field.value_key]) if path]


def _commit_of(value, revision: str) -> str:
    """The 40-hex commit a task's URL names, else ``revision``."""
    pinned = _SHA.search(_text(value))
    return pinned.group(1) if pinned else revision


def folder_layout(field: DataField) -> bool:
    """Whether a local repository's configs of ``field`` are read by a folder builder (``imagefolder``: their
    ``data_files`` list the annotated files' top folders beside the rows file, and ``datasets`` decodes each
    ``file_name`` as an ``Image``): only for an ``Image`` tag.

    An ``Audio`` tag's rows file is listed alone, so ``datasets`` reads it as JSON Lines (``file_name``: the file's
    path in the clone, not decoded): ``audiofolder`` encodes every file with torchcodec while it builds the split
    (``datasets.Audio.encode_example`` imports it even with ``decode=False``), so without torchcodec and FFmpeg the
    whole ``load_dataset`` fails. Decided here: a version must load on any machine; decoding is the user's step
    (the card's recipe, README "Training-ready versions")."""
    return field.tag == "Image"


def media_column(field: DataField, local: bool) -> str:
    """The name of the media column: the value key, or ``image``/``audio`` in a local repository's folder layout."""
    return _MEDIA.get(field.tag, field.value_key) if local and field.tag in _MEDIA else field.value_key


def _control_specs(label_config: str, controls: Mapping[str, str]) -> dict[str, tuple[str, tuple[str, ...], bool]]:
    """``{from_name: (tag, labels in config order, multiple)}``; ``tag`` is ``""`` (a string cell, untyped) for
    ``Labels`` over anything but ``Text``: character offsets are typed, an Audio span's seconds, a HyperText span's
    XPaths and an Image region's box are not (their cells are not character spans)."""
    parsed, objects = parse_label_config(label_config)
    by_name = {c.name: c for c in parsed}
    specs = {}
    for name, tag in controls.items():
        control = by_name.get(name)
        labels = tuple(control.labels) if control else ()
        multiple = bool(control) and (control.attrs.get("choice") or "").lower() == "multiple"
        targets = {objects[n].tag for n in (control.to_name if control else ()) if n in objects}
        if tag == "Labels" and targets != {"Text"}:
            tag = ""
        specs[name] = (tag, labels, multiple)
    return specs


def task_keys(label_config: str, controls: Mapping[str, str], field: DataField, local: bool = False) -> list[str]:
    """The task-data keys besides the file's that the label config's object tags read (``value="$key"``), sorted:
    each is a string column of the default config, after the controls, so that a row holds what its annotator saw
    (the question-answering template's ``<Text name="question" value="$question"/>``, filled from ``--metadata``).

    Decided: only these keys, not every metadata column (those stay in the CSV: they can be many, and are no input
    of the annotation); only the default config (the consensus rows hold the task's file and its majority labels).
    A key named like another column of the row (a control, ``file_name``, the media column, the columns after
    the controls) is left out: it stays in the CSV, where a key named like a CSV column is ``data.<key>``.

    Args:
        label_config: The project's label config.
        controls: ``{from_name: control tag}``.
        field: The object tag the files fill.
        local: The local layout (its media column name, ``file_name``).

    Returns:
        The keys, sorted.

    Raises:
        labelhub.label_config.LabelConfigError: When ``label_config`` does not parse.
    """
    _, objects = parse_label_config(label_config)
    taken = {*controls, *ANNOTATION_COLUMNS, field.value_key, media_column(field, local), "file_name"}
    return sorted({o.value for o in objects.values() if o.value and o.value not in taken})


def _task_value(row: Mapping, key: str) -> str | None:
    """A task-data key's cell of a CSV row (``data.<key>`` when named like a CSV column: rows.py), as a string."""
    value = row.get(f"data.{key}", row.get(key))
    return None if _missing(value) else str(value)


def control_labels(label_config: str, controls: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """``{from_name: labels in config order}`` of each control of ``controls`` (empty for a control without labels,
    or one the config lacks): the labels a CSV cell's ``|`` may belong to (:func:`split_labels`).

    Raises:
        labelhub.label_config.LabelConfigError: When ``label_config`` does not parse.
    """
    return {name: labels for name, (_, labels, _) in _control_specs(label_config, controls).items()}


def training_features(label_config: str, controls: Mapping[str, str], field: DataField,
                      columns: Mapping[str, str] = ANNOTATION_COLUMNS, found: Mapping[str, Iterable[str]] | None = None,
                      with_task_keys: bool | None = None):
    """The ``datasets.Features`` of the Hub layout (see the module docstring).

    Args:
        label_config: The project's label config (the choices and labels, in order).
        controls: ``{from_name: control tag}`` of the export.
        field: The object tag the files fill.
        columns: The columns after the controls and their ``datasets.Value`` types (:data:`ANNOTATION_COLUMNS` for
            the default config, :data:`CONSENSUS_COLUMNS` for ``consensus``).
        found: ``{from_name: labels}`` the version's rows hold (its ``label_distribution``). Label Studio's API
            takes labels the config does not name (scripts, imported predictions, a choice removed from the config
            later); a ``ClassLabel`` that lacks one fails the whole ``load_dataset``, so they follow the config's
            labels, sorted (the config's keep their class indices).
        with_task_keys: Whether the :func:`task_keys` columns (strings) follow the controls; ``None``: for the
            default config's ``columns`` (:data:`ANNOTATION_COLUMNS`), not for ``consensus``'s.

    Returns:
        A ``datasets.Features``.
    """
    import datasets

    # an audio cell is not decoded (Audio(decode=False) loads as {"path", "bytes"}): datasets 4+ decodes audio with
    # torchcodec, which needs FFmpeg; the card shows the cast_column that decodes it once they are installed
    media = {"image": datasets.Image(), "audio": datasets.Audio(decode=False)}.get(_MEDIA.get(field.tag, ""),
                                                                                 datasets.Value("string"))
    features = {field.value_key: media}
    for name, (tag, labels, multiple) in _control_specs(label_config, controls).items():
        labels = list(labels) + sorted(set((found or {}).get(name, ())) - set(labels)) if labels else []
        label = datasets.ClassLabel(names=labels) if labels else datasets.Value("string")
        if tag == "Choices":
            features[name] = datasets.List(label) if multiple else label
        elif tag == "RectangleLabels":
            features[name] = datasets.List({"x": datasets.Value("float32"), "y": datasets.Value("float32"),
                                            "width": datasets.Value("float32"), "height": datasets.Value("float32"),
                                            "rotation": datasets.Value("float32"), "label": label})
        elif tag == "Labels":
            features[name] = datasets.List({"start": datasets.Value("int32"), "end": datasets.Value("int32"),
                                            "text": datasets.Value("string"), "label": label})
        else:
            features[name] = datasets.Value("string")
    if (columns is ANNOTATION_COLUMNS) if with_task_keys is None else with_task_keys:
        features.update((key, datasets.Value("string")) for key in task_keys(label_config, controls, field))
    for name, kind in columns.items():
        features[name] = datasets.Value(kind)
    return datasets.Features(features)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or value == ""


def _text(value) -> str:
    return "" if _missing(value) else str(value)


def _cell(tag: str, multiple: bool, cell, known: Sequence[str] = ()):
    empty = _missing(cell)
    if tag == "Choices":
        labels = [] if empty else split_labels(str(cell), known)
        return labels if multiple else (labels[0] if labels else None)
    if tag in ("RectangleLabels", "Labels"):
        return [{**item, "label": (split_labels(str(item.get("label", "")), known) or [""])[0]}
                for item in ([] if empty else _regions(tag, str(cell)))]
    if tag == "TextArea":
        return None if empty else "\n".join(textarea_entries(str(cell))) or None
    return None if empty else str(cell)


#: The typed keys of a region of the CSV (rows.control_value), the types the ``datasets`` features take, its text
#: keys, and its optional numbers with their value when the cell lacks them (the CSV writes a box's ``rotation``
#: only when it is not 0).
_REGION_KEYS = {"RectangleLabels": (("x", "y", "width", "height"), (int, float), (), {"rotation": 0.0}),
                "Labels": (("start", "end"), (int,), ("text",), {})}


def _regions(tag: str, cell: str) -> list[dict]:
    """The regions of a box or span cell that the features can hold: each with its numbers (a span's character
    offsets) and its label. Anything else (a cell an older export wrote from a malformed result, or edited by hand)
    is left out of the training row, which must load; the CSV keeps it."""
    numbers, kinds, texts, optional = _REGION_KEYS[tag]

    def number(value) -> bool:  # NaN and Infinity parse as floats, and no strict JSON line holds them
        return isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)

    try:
        items = json.loads(cell)
    except ValueError:
        return []
    return [{**{k: item[k] for k in numbers}, **{k: str(item.get(k, "")) for k in texts},
             **{k: item.get(k, default) for k, default in optional.items()}, "label": item.get("label", "")}
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict) and all(number(item.get(k)) for k in numbers)
            and all(number(item.get(k, default)) for k, default in optional.items())]


def _has_media(field: DataField, path: str, revision: str, local: bool) -> bool:
    """Whether a row's media can be named: a file task needs its ``hf_path`` (and, on the Hub or to read a text
    from the repo, a commit). A task not made from the repo (imported into Label Studio by hand) has none; its row
    stays in the CSV, but a media cell pointing nowhere would stop ``datasets`` reading the whole split. A ``Text``
    or ``HyperText`` task whose text is in the task data, and a ``Video`` task (its URL, a string), always have
    theirs: the row holds the text the annotation was made on (or the URL Label Studio showed), so it is kept."""
    if text_from_url(field):
        return bool(path and revision)
    return field.tag not in _MEDIA or bool(path and (local or revision))


def _media_and_labels(row: Mapping, specs: Mapping[str, tuple[str, tuple[str, ...], bool]], field: DataField,
                      repo_id: str, local: bool, revision: str,
                      texts: Mapping[tuple[str, str], str | None] | None = None, stale: bool = False) -> dict:
    """The head of a record: the media (``file_name`` in the local layout, an ``hf://`` URL at ``revision`` on the
    Hub, the text of a Text task, the text of the file at ``revision`` from ``texts`` for ``valueType="url"`` or
    for a ``stale`` row, one annotated on an older revision of its file than its task shows), then one typed cell
    per control (a span keeps the text the annotation saved; one without, the text between its offsets of the
    row's own text)."""
    path = _text(row.get("hf_path"))
    if text_from_url(field) or stale:
        if texts is None:
            raise ValueError(f"the training rows of <{field.tag}> annotated on another revision of their file (or of "
                             "valueType=\"url\") need the files' texts")
        record = {field.value_key: texts[(revision, path)]}
    elif field.tag not in _MEDIA:
        record = {media_column(field, local): _text(row.get(field.value_key))}
    elif local:
        record = {"file_name": path}
    else:
        record = {media_column(field, local): f"hf://datasets/{repo_id}@{revision}/{path}"}
    for name, (tag, labels, multiple) in specs.items():
        record[name] = _cell(tag, multiple, row.get(name), labels)
        if tag == "Labels" and field.tag == "Text":  # a HyperText span's offsets are XPaths, not characters
            _fill_span_texts(record[name], record[field.value_key])
    return record


def _fill_span_texts(spans: list[dict], text: str | None) -> None:
    """Give each span whose ``text`` is empty the text between its offsets of the row's own text: Label Studio saves
    no span text over a ``<Text valueType="url">`` (its ``saveTextResult`` is off by default then:
    https://labelstud.io/tags/text), and a span made through the API or SDK may carry none over a text in the task
    data (a Hub-path audit found those left empty). A span whose offsets do not fit the text keeps its empty text."""
    for span in spans if text else ():
        if not span["text"] and 0 <= span["start"] <= span["end"] <= len(text):
            span["text"] = text[span["start"]:span["end"]]


def training_records_by_row(frame: pd.DataFrame, label_config: str, controls: Mapping[str, str], field: DataField,
                            repo_id: str, local: bool, texts: Mapping[tuple[str, str], str | None] | None = None,
                            current: Mapping[int, str] | None = None) -> list[dict | None]:
    """The default config's record of each row of ``frame``, ``None`` for a skipped annotation, a row whose media
    cannot be named (:func:`_has_media`), or a local row of a file that changed since (:func:`media_elsewhere`).

    Args:
        frame, label_config, controls, field, repo_id, local, texts, current: As for :func:`training_records`.

    Returns:
        One JSON-able record or ``None`` per row, in the frame's order (a row's record depends on that row alone).
    """
    specs = _control_specs(label_config, controls)
    keys = task_keys(label_config, controls, field, local)
    records: list[dict | None] = []
    for row in frame.to_dict("records"):
        path, revision = _text(row.get("hf_path")), _text(row.get("annotated_revision"))
        if str(row.get("was_cancelled")).lower() == "true" or not _has_media(field, path, revision, local) \
                or media_elsewhere(row, field, local):
            records.append(None)
            continue
        stale = field.tag in TEXT_TAGS and not field.as_url and bool(path) and _stale(row, current)
        record = _media_and_labels(row, specs, field, repo_id, local, revision, texts, stale)
        record.update((key, _task_value(row, key)) for key in keys)
        record.update(task_id=int(row["task_id"]), annotation_id=int(row["annotation_id"]), hf_path=path,
                      annotator=_text(row.get("annotator")), annotated_revision=revision)
        records.append(record)
    return records


def training_records(frame: pd.DataFrame, label_config: str, controls: Mapping[str, str], field: DataField,
                     repo_id: str, local: bool, texts: Mapping[tuple[str, str], str | None] | None = None,
                     current: Mapping[int, str] | None = None) -> list[dict]:
    """The rows of the default config, one per annotation that was not skipped (see the module docstring).

    Args:
        frame: The export's rows (:mod:`labelhub.sync.versions.rows`).
        label_config: The project's label config.
        controls: ``{from_name: control tag}``.
        field: The object tag the files fill (its value key names the media column).
        repo_id: The Hub repo_id (for ``hf://`` URLs); ignored for a local repository.
        local: Whether the repo is a local git repository (the folder layout: an ``Image`` or ``Audio`` row annotated
            on an older content of its file than its task's URL names is left out, :func:`media_elsewhere`).
        texts: For a ``Text``/``HyperText`` (:func:`text_from_file`): ``{(commit, hf_path): text or None}`` of
            at least the files :func:`text_files` names (:meth:`labelhub.repos.texts.FileTexts.texts`).
        current: ``{task_id: data.hf_revision}`` of the tasks (:func:`on_current_content`), for a text in the task data:
            a row annotated on another revision of its file than its task's holds the text at its
            ``annotated_revision``, read from ``texts`` (the task data holds the file's newer text, which the
            span offsets do not index). ``None``: every row holds its task's text.

    Returns:
        JSON-able records, in the frame's order.

    Raises:
        ValueError: ``texts`` is ``None`` for a ``valueType="url"`` text, or for a row of a text in the task data
            annotated on another revision than its task's.
        KeyError: ``texts`` lacks a file :func:`text_files` names.
    """
    return [record for record in training_records_by_row(frame, label_config, controls, field, repo_id, local, texts,
                                                         current) if record is not None]


def uses_revision(value, field: DataField, local: bool) -> bool:
    """Whether a consensus record's media names the ``revision`` given to :func:`consensus_records` (its task's URL,
    ``value``, names no commit) rather than one of its own.

    Args:
        value: The task's value key cell (the file's URL).
        field, local: As for :func:`consensus_records`.

    Returns:
        ``True`` for a Hub repo's media file, or a file's text read from the repo (:func:`text_from_url`), whose
        URL holds no 40-hex commit.
    """
    return (field.tag in _MEDIA and not local or text_from_url(field)) and not _SHA.search(_text(value))


def consensus_records(consensus: pd.DataFrame, label_config: str, controls: Mapping[str, str], field: DataField,
                      repo_id: str, local: bool, revision: str,
                      texts: Mapping[tuple[str, str], str | None] | None = None) -> list[dict]:
    """The rows of the ``consensus`` config, one per task with media in the repo, from
    :func:`labelhub.sync.versions.agreement.consensus_rows` (cells typed as in the default config).

    Args:
        consensus: The consensus frame.
        label_config, controls, field, repo_id, local: As for :func:`training_records`.
        revision: The commit of the media when a task's URL names none (the version's parent commit).
        texts: For a ``valueType="url"`` text: the texts of at least the files :func:`consensus_text_files` names
            (as for :func:`training_records`).

    Returns:
        JSON-able records: the media, one cell per control, then :data:`CONSENSUS_COLUMNS` (``agreement`` is
        ``None`` with fewer than two annotators). A task not made from a repo file has none (it stays in the CSV).

    Raises:
        ValueError, KeyError: As for :func:`training_records`.
    """
    return [record for record in consensus_records_by_row(consensus, label_config, controls, field, repo_id, local,
                                                          revision, texts) if record is not None]


def consensus_records_by_row(consensus: pd.DataFrame, label_config: str, controls: Mapping[str, str],
                             field: DataField, repo_id: str, local: bool, revision: str,
                             texts: Mapping[tuple[str, str], str | None] | None = None) -> list[dict | None]:
    """:func:`consensus_records` aligned with the rows of ``consensus``: ``None`` for a task without media in the
    repo (the incremental build keeps one entry per task)."""
    specs = _control_specs(label_config, controls)
    records: list[dict | None] = []
    for row in consensus.to_dict("records"):
        path = _text(row.get("hf_path"))
        commit = _commit_of(row.get(field.value_key), revision)
        if not _has_media(field, path, commit, local):
            records.append(None)
            continue
        record = _media_and_labels(row, specs, field, repo_id, local, commit, texts)
        agreement = row.get("agreement")
        record.update(task_id=int(row["task_id"]), hf_path=path, annotators=int(row.get("annotators") or 0),
                      agreement=None if _missing(agreement) else float(agreement),
                      skipped=int(row.get("skipped") or 0))
        records.append(record)
    return records


def folder_patterns(records: list[dict], metadata: str = LOCAL_METADATA) -> list[str]:
    """The ``data_files`` patterns of the local layout: the rows file and the top folders of the annotated files
    (``imagefolder`` lists them; only the files the rows name are read)."""
    return folder_patterns_of([r["file_name"] for r in records if r.get("file_name")], metadata)


def folder_patterns_of(file_names, metadata: str = LOCAL_METADATA) -> list[str]:
    """:func:`folder_patterns` from the records' ``file_name`` values.

    Args:
        file_names: The ``file_name`` of each record (an iterable of paths; empty ones are skipped).
        metadata: The rows file's path.

    Returns:
        ``[metadata, "top/**" or "file", ...]``, the tops sorted.
    """
    tops = sorted({name.split("/", 1)[0] + ("/**" if "/" in name else "") for name in set(file_names) if name})
    return [metadata, *tops]
