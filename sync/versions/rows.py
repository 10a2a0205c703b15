"""Annotations → CSV rows (pure; pandas), one row per annotation.

Columns, in order (documented in the README and in each version's dataset card):

``task_id, annotation_id, hf_path, <value key>`` (the file URL pinned to the revision the task was
made from, e.g. ``image``), then one column per control tag, named by its ``from_name``:

- Choices (and Taxonomy): the selected labels joined with ``|``;
- Labels (spans over a Text): a JSON list of ``{"start", "end", "text", "label"}``, character offsets
  (https://labelstud.io/tags/labels), several labels of one span joined with ``|``;
- RectangleLabels: a JSON list of ``{"x", "y", "width", "height", "label"}``, coordinates as
  fractions 0 to 1 of the image (Label Studio stores percent 0 to 100:
  https://labelstud.io/tags/rectanglelabels), several labels of one region joined with ``|``;
- Labels over image regions (Label Studio's OCR template: a ``Rectangle`` draws the region, a ``Labels`` labels it,
  https://labelstud.io/templates/optical_character_recognition): boxes as RectangleLabels' (their ``labels``
  as ``label``), each with the region's ``id`` (its shape's result has the same one); labels of regions that are
  not boxes (a Polygon's ``points``): the JSON of their values, ``labels`` as ``label``. Older LabelHub joined
  these labels with ``|`` without their regions (:data:`ROW_FORMAT` 5);
- TextArea (https://labelstud.io/tags/textarea, ``value.text`` a list of entries): one entry as its text (a
  newline in it kept); several entries as a JSON list of strings (``["first", "second"]``, non-ASCII kept),
  and likewise one entry that would not read back as itself (one that is itself a JSON list of strings, or an
  empty one); :func:`textarea_cell` writes it, :func:`textarea_entries` reads it. Older LabelHub joined several
  entries with a newline (a cell that reads back as one entry holding the newlines); the first export after the
  upgrade makes every stored row again (:data:`ROW_FORMAT`), so those annotations count as changed once;
- any other control (a ``Rectangle``: its values in percent, as stored): the JSON of its result values;
- a box's ``rotation`` follows its label when it is not 0; a span's other value keys (HyperText's ``startOffset`` and
  ``endOffset``, an Audio ``channel``) follow its label; a region another result names keeps its ``id``, with its
  per-region answers as ``per_region`` (:func:`region_links`);

then ``annotator, created_at, updated_at, lead_time, was_cancelled, ground_truth, annotated_revision``
(the commit sha the task showed when the annotation was last saved: a file whose content changed later
has a newer ``hf_revision`` in its URL, and a training run can drop labels made on the older content),
then ``other_results`` when an annotation has result items no control column holds, as Label Studio stored them (a
JSON list): relations (``"type": "relation"``, no ``from_name``), results of a control the label config does not
have (any more), and results whose values do not have their control's types (:func:`labelhub.webhooks.result_problem`;
a span without ``start`` among spans; a warning names the task and annotation). The column is there only when
some row has such items, so a CSV without them is as before;
then the task's metadata columns (task data keys other than the value key and ``hf_*``), sorted; a key named
like one of the columns above (``annotator``, ``task_id``, a control's name, ``other_results``, ...) becomes
``data.<key>``.

The annotation fields come from Label Studio's annotation format
(https://labelstud.io/guide/export#Label-Studio-JSON-format-of-annotated-tasks).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from labelhub.sync.regions import fractions_from_percent
from labelhub.webhooks import result_problem

log = logging.getLogger(__name__)

FIXED_HEAD = ("task_id", "annotation_id", "hf_path")
FIXED_TAIL = ("annotator", "created_at", "updated_at", "lead_time", "was_cancelled", "ground_truth",
              "annotated_revision")
IDENTITY_KEYS = ("hf_repo", "hf_path", "hf_revision")
#: The number of the rows' format: raised when :func:`annotation_row` writes a cell otherwise, so that the rows a sync
#: state keeps (:meth:`labelhub.sync.state.SyncState.store_rows`) are made again once, not left in the older form
#: beside new ones. 2: several TextArea entries as a JSON list (they were joined with a newline). 3: ``other_results``.
#: 4: a region's ``id`` and ``per_region`` values, a box's ``rotation``, a span's other keys. 5: a Labels tag's labels
#: of image regions as boxes (they were joined with ``|``, without their regions).
ROW_FORMAT = 5
#: The column of the result items no control column holds (see the module docstring).
OTHER_RESULTS = "other_results"
#: The bookkeeping columns: what a save changes without changing what the annotation says. An annotator or reviewer
#: who opens an annotation and clicks Update with the same labels changes its ``updated_at``, and its ``lead_time``
#: (the time spent, which the editor sends), and nothing else of its row (PATCH ``/api/annotations/<id>`` with the same
#: ``result``: https://api.labelstud.io/api-reference/api-reference/annotations/update). An annotation whose row
#: differs from the last version's in these alone makes no version (:func:`content_hash`). ``created_at`` is not one:
#: a save leaves it as it is. ``annotator``, ``was_cancelled``, ``ground_truth``, ``annotated_revision`` (a save
#: after the file changed confirms the labels on the new content), the task data and the control columns are what
#: the annotation says.
BOOKKEEPING = ("updated_at", "lead_time")


#: The value keys that place a region (a result other results can name by its ``id``).
_PLACES = ("x", "start", "points")
#: Result types of the controls that can answer per region (``perRegion="true"``): never regions themselves, though
#: Label Studio copies their region's place into their value.
PER_REGION_TYPES = ("textarea", "choices", "taxonomy", "rating", "number", "datetime")
#: The key of a :func:`region_links` link (never written) saying that the region's id is held by its shape's result
#: and a ``labels`` result (a Labels tag's label of a Rectangle's region): its ``per_region`` values ride in the
#: shape's item alone, so that restore makes each per-region answer once.
LABEL_OF_REGION = "_label_of_region"
#: A span's keys of the CSV; its value's other keys (HyperText's offsets, an Audio channel) follow them.
_SPAN = ("start", "end", "text", "labels")


def control_value(tag: str, results: list[dict], links: Mapping[str, dict] | None = None) -> str:
    """The CSV cell of one control tag from its ``result`` items (see the module docstring).

    Args:
        tag: The control tag type.
        results: Its result items.
        links: ``{region id: keys}`` added to the item of each region named there (:func:`region_links`: its
            ``id``, and ``per_region`` values), for boxes, spans and the JSON values of other controls.
    """
    links = links or {}
    if tag == "RectangleLabels" or (tag == "Labels" and results and all(_is_box(r.get("value")) for r in results)):
        key = tag.lower()  # rectanglelabels, or labels: a Labels tag's label of a Rectangle's region
        boxes = []
        for r in results:
            value = r.get("value", {})
            box = {k: round(v, 9) for k, v in fractions_from_percent(value).items()}
            turned = {"rotation": value["rotation"]} if value.get("rotation") else {}
            boxes.append({**box, "label": "|".join(value.get(key, [])), **turned, **_link(r, links)})
        return json.dumps(boxes)
    if tag == "Labels" and any(isinstance(r.get("value"), dict) and any(k in r["value"] for k in _PLACES)
                               for r in results) and not all("start" in r.get("value", {}) for r in results):
        # a Labels tag's labels of other regions (a Polygon's points, an Ellipse): their values, as stored, but for
        # their labels as a box's
        return json.dumps([{**{k: v for k, v in r.get("value", {}).items() if k != "labels"},
                            "label": "|".join(r.get("value", {}).get("labels") or []), **_link(r, links)}
                           for r in results])
    if tag == "Labels" and all("start" in r.get("value", {}) for r in results):
        return json.dumps([{"start": r["value"].get("start"), "end": r["value"].get("end"),
                            "text": r["value"].get("text", ""), "label": "|".join(r["value"].get("labels", [])),
                            **{k: v for k, v in r["value"].items() if k not in _SPAN}, **_link(r, links)}
                           for r in results])
    if tag == "TextArea":
        return textarea_cell([t for r in results for t in r.get("value", {}).get("text", [])])
    key = tag.lower()
    if all(key in r.get("value", {}) for r in results) and tag in ("Choices", "Labels", "Taxonomy"):
        labels = []
        for r in results:
            for item in r["value"][key]:
                labels.append("/".join(item) if isinstance(item, list) else str(item))
        return "|".join(labels)
    return json.dumps([{**r.get("value", {}), **_link(r, links)} for r in results])


def _is_box(value) -> bool:
    """Whether a result value places a box: numbers ``x, y, width, height`` (percent, a Rectangle's region)."""
    return isinstance(value, Mapping) and all(
        type(value.get(k)) in (int, float) and math.isfinite(value[k]) for k in ("x", "y", "width", "height"))


def _link(result: Mapping, links: Mapping[str, dict]) -> dict:
    """The keys :func:`region_links` adds to a result's item: its region's ``id`` and ``per_region`` values, these
    on the item of the region's shape alone (:data:`LABEL_OF_REGION` explains why)."""
    link = links.get(result.get("id"), {})
    if "per_region" in link and link.get(LABEL_OF_REGION) and result.get("type") == "labels":
        return {"id": link["id"]}
    return {k: v for k, v in link.items() if k != LABEL_OF_REGION}


def content_hash(row: Mapping) -> str:
    """The hash of what an export row says: the SHA-256 (hex) of its JSON (keys sorted, as the state stores a row)
    without the :data:`BOOKKEEPING` columns.

    Args:
        row: An :func:`annotation_row` (with or without its ``annotator``: the exporter hashes rows without it and
            keys them by annotator beside).

    Returns:
        64 hex digits, equal for two saves of an annotation that differ in their bookkeeping columns alone.

    Example:
        >>> content_hash({"kind": "a", "updated_at": "2026-01-01"}) == content_hash({"kind": "a", "lead_time": 2.5})
        True
    """
    content = {key: value for key, value in row.items() if key not in BOOKKEEPING}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def region_links(results: list[dict]) -> dict[str, dict]:
    """How an annotation's results name each other, for the cells of its regions.

    A per-region control (``perRegion="true"``: a TextArea transcription of a box, a Choices of a span) answers
    with a result of one of :data:`PER_REGION_TYPES` whose ``id`` is its region's; a relation (``"type": "relation"``) names
    two regions by ``from_id`` and ``to_id`` (https://labelstud.io/guide/export#Relations). Such regions keep their
    ``id`` in their item, and their per-region values ride along in it as ``per_region: {from_name: value}``; the
    per-region control's own column still lists its values (the training rows read it).

    A region labelled by a ``Labels`` tag over an image (Label Studio's OCR template: a ``Rectangle`` to draw, a
    ``Labels`` to label, https://labelstud.io/templates/optical_character_recognition) is two results with one
    ``id``: its shape's (``rectangle``) and its label's (``labels``, the same place and ``labels``). Each names the
    other, so both keep the ``id`` (restore makes them one region again); its per-region values ride in the
    shape's item alone (:data:`LABEL_OF_REGION`).

    Args:
        results: The annotation's result items (each checked by :func:`labelhub.webhooks.result_problem`).

    Returns:
        ``{region id: {"id": region id, "per_region": {from_name: value}}}`` (``per_region`` only when it has one;
        :data:`LABEL_OF_REGION` ``True`` when a ``labels`` result and another region result share the id).
    """
    held: dict[str, list[str]] = {}
    for r in results:
        if (r.get("type") not in PER_REGION_TYPES and isinstance(r.get("value"), dict) and r.get("id")
                and any(k in r["value"] for k in _PLACES)):
            held.setdefault(r["id"], []).append(r.get("type"))
    regions = set(held)
    links: dict[str, dict] = {}
    for region, types in held.items():
        if len(types) > 1:  # a region's shape and its label: each names the other
            labelled = "labels" in types and set(types) != {"labels"}
            links[region] = {"id": region, **({LABEL_OF_REGION: True} if labelled else {})}
    for r in results:
        if r.get("type") == "relation":
            for key in ("from_id", "to_id"):
                if r.get(key) in regions:
                    links.setdefault(r[key], {"id": r[key]})
        elif r.get("id") in regions and r.get("type") in PER_REGION_TYPES and r.get("from_name"):
            link = links.setdefault(r["id"], {"id": r["id"]})
            link.setdefault("per_region", {})[r["from_name"]] = r.get("value", {})
    return links


def textarea_entries(cell: str) -> list[str]:
    """The entries of a TextArea cell (see the module docstring): a JSON list of strings is the entries, any other
    text is one entry, ``""`` none. The inverse of :func:`textarea_cell`.

    A cell of a version written before several entries were kept as a list (they were joined with a newline) reads as
    one entry holding the newlines, as it always did; only an old cell whose text was itself a JSON list of strings
    now reads as that list's entries.

    Args:
        cell: The CSV cell.

    Returns:
        The entries, in order (Label Studio's ``value.text``, https://labelstud.io/tags/textarea).

    Example:
        >>> textarea_entries('["first", "second"]'), textarea_entries("one\\nentry"), textarea_entries("")
        (['first', 'second'], ['one\\nentry'], [])
    """
    if cell.startswith("["):
        try:
            entries = json.loads(cell)
        except ValueError:
            entries = None
        if isinstance(entries, list) and all(isinstance(entry, str) for entry in entries):
            return entries
    return [cell] if cell else []


def textarea_cell(entries: list[str]) -> str:
    """The CSV cell of a TextArea's entries (see the module docstring): one entry as its text when
    :func:`textarea_entries` reads it back as itself, else a JSON list of strings; ``""`` for no entry.

    Args:
        entries: The entries, from the results' ``value.text`` (https://labelstud.io/tags/textarea).

    Returns:
        The cell; ``textarea_entries(textarea_cell(entries)) == entries`` for every list of strings. Entries that are
        not strings (Label Studio's API stores what it is given) are kept as their JSON, which restore reads as one
        entry: the export never fails on them.

    Example:
        >>> textarea_cell(["one\\nentry"]), textarea_cell(["first", "second"])
        ('one\\nentry', '["first", "second"]')
    """
    if not entries:
        return ""
    if len(entries) == 1 and isinstance(entries[0], str) and textarea_entries(entries[0]) == entries:
        return entries[0]
    return json.dumps(entries, ensure_ascii=False)


def annotator_of(annotation: Mapping, users: Mapping[int, str]) -> str:
    """The annotator's email (``completed_by`` is a user id, or a dict with ``email``)."""
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        return who.get("email") or str(who.get("id", ""))
    return users.get(who, "" if who is None else str(who))


def annotation_reference(annotation: Mapping) -> str:
    """How a row names its annotator before the users are known: the ``completed_by`` user id as text, or the
    email when ``completed_by`` is a dict that has one (see :func:`annotator_of`)."""
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        return who.get("email") or str(who.get("id", ""))
    return "" if who is None else str(who)


def annotation_row(task: Mapping, annotation: Mapping, controls: Mapping[str, str], value_key: str,
                   users: Mapping[int, str]) -> dict:
    """One CSV row as a dict (see the module docstring for the columns).

    Args:
        task: the task (``id``, ``data``).
        annotation: one of its annotations (``id``, ``result``, ``completed_by``, ...).
        controls: ``{from_name: control tag type}`` of the label config, in config order.
        value_key: the object tag's data key (``image``).
        users: ``{user id: email}``.
    """
    data = task.get("data") or {}
    row = {"task_id": task["id"], "annotation_id": annotation["id"], "hf_path": data.get("hf_path", ""),
           value_key: data.get(value_key, "")}
    by_control, others = _split_results(task, annotation, controls)
    links = region_links([r for results in by_control.values() for r in results]
                         + [r for r in others if isinstance(r, dict) and result_problem(r) is None])
    for name, tag in controls.items():
        row[name] = control_value(tag, by_control[name], links) if name in by_control else ""
    row.update({
        "annotator": annotator_of(annotation, users),
        "created_at": annotation.get("created_at", ""),
        "updated_at": annotation.get("updated_at", ""),
        "lead_time": annotation.get("lead_time"),
        "was_cancelled": bool(annotation.get("was_cancelled")),
        "ground_truth": bool(annotation.get("ground_truth")),
        "annotated_revision": annotation.get("annotated_revision") or data.get("hf_revision", ""),
    })
    if others:
        row[OTHER_RESULTS] = json.dumps(others, ensure_ascii=False)
    for key in sorted(data):
        if key != value_key and key not in IDENTITY_KEYS:
            value = data[key]
            # named like a column above: it must not overwrite it
            column = f"data.{key}" if key in row or key == OTHER_RESULTS else key
            row[column] = json.dumps(value) if isinstance(value, (dict, list)) else value
    return row


def _split_results(task: Mapping, annotation: Mapping,
                   controls: Mapping[str, str]) -> tuple[dict[str, list[dict]], list]:
    """``({from_name: its result items}, the other items)`` of an annotation: the others (see the module docstring)
    are kept as they are; those a control column would have held are named in a warning."""
    by_control: dict[str, list[dict]] = {}
    others, problems = [], []
    for result in annotation.get("result") or []:
        problem = result_problem(result)
        name = result.get("from_name") if problem is None else None
        if name not in controls:
            others.append(result)
            if problem is not None and isinstance(result, dict) and result.get("from_name") in controls:
                problems.append(f"{result['from_name']}{problem}")
            continue
        by_control.setdefault(name, []).append(result)
    for name, results in list(by_control.items()):
        if controls[name] == "Labels" and any("start" in r.get("value", {}) for r in results):
            spans = [r for r in results if _is_span(r.get("value", {}))]
            if len(spans) < len(results):
                others += [r for r in results if not _is_span(r.get("value", {}))]
                problems.append(f"{name}: {len(results) - len(spans)} span(s) without a start and an end")
                by_control[name] = spans
                if not spans:
                    del by_control[name]
    if problems:
        log.warning("task %s, annotation %s: %s; kept as Label Studio stored it in the CSV's %s column",
                    task.get("id"), annotation.get("id"), "; ".join(problems), OTHER_RESULTS)
    return by_control, others


def _is_span(value: Mapping) -> bool:
    """Whether a Labels value locates its span: ``start`` and ``end`` numbers (characters, seconds) or strings
    (HyperText's XPaths)."""
    return all(isinstance(value.get(k), (int, float, str)) and not isinstance(value.get(k), bool)
               for k in ("start", "end"))


def rows_frame(rows: Iterable[dict], controls: Mapping[str, str], value_key: str) -> pd.DataFrame:
    """The rows as a DataFrame with the columns in the documented order, sorted by task and
    annotation id (so that equal annotations give byte-equal CSVs)."""
    fixed = [*FIXED_HEAD, value_key, *controls, *FIXED_TAIL]
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=fixed)
    extra = sorted(c for c in frame.columns if c not in fixed)
    if OTHER_RESULTS in extra:  # first after the fixed columns, before the metadata
        extra.remove(OTHER_RESULTS)
        extra.insert(0, OTHER_RESULTS)
    frame = frame.reindex(columns=fixed + extra)
    return frame.sort_values(["task_id", "annotation_id"], kind="stable").reset_index(drop=True)


def split_labels(text: str, known: Sequence[str], sep: str = "|") -> list[str]:
    """The labels of a CSV cell, which joins them with ``|``: a label of the config that holds ``|`` itself
    (``"a|b"``) stays whole, the longest such match first; other parts are split at each ``|``. ``sep="/"`` splits
    a Taxonomy path into its labels the same way (``"T-shirt/top"`` is one label of Fashion-MNIST).

    Example:
        >>> split_labels("a|b|plain", ["a|b", "plain"]), split_labels("Tops/T-shirt/top", ["T-shirt/top"], "/")
        (['a|b', 'plain'], ['Tops', 'T-shirt/top'])
    """
    parts, labels, i = text.split(sep), [], 0
    known = set(known)
    while i < len(parts):
        j = next((j for j in range(len(parts), i + 1, -1) if sep.join(parts[i:j]) in known), i + 1)
        labels.append(sep.join(parts[i:j]))
        i = j
    return labels


def label_counts(frame: pd.DataFrame, controls: Mapping[str, str]) -> dict[str, Counter]:
    """``{from_name: Counter({labels: count})}`` over the rows not cancelled (Choices-like and boxes); what
    :func:`label_distribution` splits and sorts. Counts of two sets of rows add up to those of both.

    A key is a cell's labels as the CSV joins them with ``|`` (a region's, for boxes and spans), not yet split:
    only the label config tells a label holding ``|`` from two labels (:func:`split_labels`).

    Args:
        frame: Rows (columns of this module; ``was_cancelled`` and the control columns are read).
        controls: ``{from_name: control tag type}``.

    Returns:
        One ``Counter`` per control (empty for a control whose cells hold no labels).
    """
    live = frame[~frame["was_cancelled"].astype(bool)] if len(frame) else frame
    counts: dict[str, Counter] = {}
    for name, tag in controls.items():
        counted: Counter = Counter()
        cells = live[name] if name in live else ()
        for cell, times in (pd.Series(cells, dtype=object).value_counts(sort=False).items() if len(cells) else ()):
            if not cell:
                continue
            if tag == "RectangleLabels" or (tag == "Labels" and cell.startswith("[")):
                labels = [b["label"] for b in json.loads(cell)]
            elif tag in ("Choices", "Labels", "Taxonomy"):
                labels = [cell]
            else:
                continue
            for label in labels:
                counted[label] += times
        counts[name] = counted
    return counts


def label_distribution(frame: pd.DataFrame, controls: Mapping[str, str],
                       counts: Mapping[str, Counter] | None = None,
                       known: Mapping[str, Sequence[str]] | None = None) -> dict[str, dict[str, int]]:
    """``{from_name: {label: count}}`` over the rows not cancelled (Choices-like and boxes), most frequent first.

    Args:
        frame: Rows (see :func:`label_counts`).
        controls: ``{from_name: control tag type}``.
        counts: :func:`label_counts` of ``frame`` when known (then ``frame`` is not read).
        known: ``{from_name: the label config's labels}``, so that a label holding ``|`` counts as one
            (``labelhub.sync.versions.training.control_labels``); without it every ``|`` splits.

    Returns:
        Per control with labels, ``{label: count}`` sorted by count (descending), then label.
    """
    counts = label_counts(frame, controls) if counts is None else counts
    positive = {}
    for name, counted in counts.items():
        split: Counter = Counter()
        for labels, times in counted.items():
            for label in split_labels(labels, (known or {}).get(name, ())):
                split[label] += times
        positive[name] = +split  # + drops labels counted to zero
    return {name: dict(sorted(counted.items(), key=lambda kv: (-kv[1], kv[0])))
            for name, counted in positive.items() if counted}
