"""Agreement between annotators and the consensus label of each task, from a version's rows (pure; pandas, numpy,
krippendorff).

The rows are the CSV's (:mod:`labelhub.sync.versions.rows`): one per annotation, one column per control tag named by
its ``from_name``. What counts:

- **Votes.** Rows with ``was_cancelled`` are skips: counted, never votes. An annotator's vote on a task is their
  latest non-skipped annotation (the highest ``annotation_id``; Label Studio keeps one annotation per annotator and
  task, so this only matters for imported duplicates).
- **Cells.** Choices, Labels and Taxonomy cells of labels are one categorical value each: the whole cell, its
  labels sorted and joined with ``|`` (so ``b|a`` and ``a|b`` are the same answer; a label of the config that holds
  ``|`` is one label: :func:`labelhub.sync.versions.rows.split_labels`); an empty cell is no answer for
  that control. TextArea and any other control: the cell as it is (exact match), empty = no answer.
  RectangleLabels: the JSON list of boxes; Labels over a Text, whose cells are a JSON list of spans
  ``{start, end, text, label}``: the spans. For both an empty cell is an answer, "none" (two annotators who marked
  nothing agree).
- **Majority** (categorical and exact-match controls): the most frequent cell among a task's answers. Ties go to the
  cell of a ``ground_truth`` annotation, then to the smallest cell in code-point order (``Zebra`` before ``apple``;
  so the result does not depend on the order of the rows).
- **Task agreement of a control**: the share of the task's answers equal to the majority; for boxes and spans,
  the mean over the pairs of annotators of their F1 (below). With fewer than two answers it is undefined: ``NaN``
  (an empty CSV cell), not 1. **Task agreement**: the mean over the controls that have one (Label Studio
  Enterprise's default too: the mean of the per-control scores).
- **Boxes.** Two boxes match when they have the same ``label`` and ``rotation`` (degrees, 0 when the cell has none)
  and IoU (intersection over union of the rectangles, taken unrotated) >= :data:`IOU_THRESHOLD`. Between two
  annotators, boxes are matched one to one greedily: the pair with the highest
  IoU first, then the highest of the pairs left (ties by position in the cells); their F1 is ``2 * matched /
  (boxes of one + boxes of the other)``, 1 when neither drew a box. The consensus boxes: every box starts alone;
  the candidate pairs are merged greedily, highest IoU first, when the two groups come from different annotators
  and every box of one has IoU >= the threshold with every box of the other (complete linkage: no chains); a group
  drawn by more than half of the task's annotators is kept, as the mean of its boxes (``x, y, width, height``; its
  ``rotation``, when not 0).
- **Spans.** Two spans match when ``start``, ``end``, ``label`` and the span's other place keys (HyperText's
  ``startOffset`` and ``endOffset``, whose ``start`` and ``end`` are XPaths; an Audio ``channel``) are equal (exact span
  agreement); F1 between two annotators as for boxes; the consensus keeps the spans that more than half of the task's
  annotators gave.
- **Agreement with the majority** (per annotator, categorical controls): the share of their answers equal to the
  majority, over the tasks with a strict majority (more than half of the answers; a tie decides nothing about who
  agreed).
- **Krippendorff's alpha** (nominal), per categorical control, on the annotators x tasks matrix of answers (``NaN``
  where an annotator did not answer), tasks with at least two answers only (the others have no pairable values):
  https://en.wikipedia.org/wiki/Krippendorff%27s_alpha, computed by the ``krippendorff`` package
  (https://github.com/pln-fing-udelar/fast-krippendorff). It is ``None`` when no task has two answers, and when
  every answer is the same value (alpha is 0/0 then: no variation to compare agreement against). The package builds
  a tasks x values x values array; past :data:`_ALPHA_ARRAY_LIMIT` elements the same nominal alpha is computed from
  its definition (coincidences from value counts per task) to stay within memory.

The per-control measures follow Label Studio Enterprise's agreement definitions (exact match for categorical
tags, IoU with a threshold for boxes, the mean over control tags for the task), with exact matches for spans where
Label Studio Enterprise also offers span overlap:
https://docs.humansignal.com/guide/stats.

:func:`consensus_rows` gives one row per task; :func:`agreement_report` the JSON-able measures;
:func:`agreement_markdown` the dataset card's section.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from collections.abc import Mapping, Sequence

import krippendorff
import numpy as np
import pandas as pd

from labelhub.sync.versions.rows import split_labels

__all__ = ["Analysis", "analyse", "CATEGORICAL", "IOU_THRESHOLD", "agreement_markdown", "agreement_report",
           "answer_cell", "consensus_rows", "control_kinds", "counted", "merge_analyses", "prepare", "prepared_tasks",
           "rows_of_tasks"]

#: Two boxes of one label match from this IoU on.
IOU_THRESHOLD = 0.5
#: Control tags whose cells are categorical (labels joined with ``|``).
CATEGORICAL = ("Choices", "Labels", "Taxonomy")
_BOXES = "RectangleLabels"
_BOX_KEYS = ("x", "y", "width", "height")
_SPAN_KEYS = ("start", "end")
#: A span's other place keys (rows.control_value keeps them): HyperText offsets, an Audio channel.
_SPAN_PLACE = ("startOffset", "endOffset", "channel")
#: Past this many elements of the package's tasks x values x values array (or annotators x tasks matrix), alpha is
#: computed from its definition instead (the same number, see the module docstring).
_ALPHA_ARRAY_LIMIT = 20_000_000
_TRUE = {"true", "1", "yes"}


def _blank(cell) -> bool:
    return cell is None or (isinstance(cell, float) and math.isnan(cell)) or cell == ""


def answer_cell(tag: str | None, cell, known: Sequence[str] = ()) -> str:
    """A control cell as the answer that is compared (see the module docstring).

    Args:
        tag: The control tag type (``Choices``, ``RectangleLabels``, ...).
        cell: The CSV cell (``NaN``/``None``/``""``: no answer).
        known: The control's labels in the label config (a label holding ``|`` stays whole).

    Returns:
        For Choices, Labels and Taxonomy the labels sorted and joined with ``|``; for others the cell as text;
        ``""`` for no answer.

    Example:
        >>> answer_cell("Choices", "b|a"), answer_cell("Choices", "yes|oui", ["yes|oui", "no"])
        ('a|b', 'yes|oui')
    """
    if _blank(cell):
        return ""
    text = str(cell)
    return "|".join(sorted(split_labels(text, known))) if tag in CATEGORICAL else text


def _regions_of(cell, keys: tuple[str, ...]) -> list[dict] | None:
    """The boxes or spans of a cell (``[]`` for an empty cell), ``None`` when it is not a JSON list of objects that
    all have ``keys``."""
    if _blank(cell):
        return []
    try:
        regions = json.loads(str(cell))
    except ValueError:
        return None
    if not isinstance(regions, list) or not all(isinstance(r, dict) and all(k in r for k in keys) for r in regions):
        return None
    return regions


def _holds_regions(column: pd.Series, keys: Sequence[str]) -> bool:
    """Whether a column's first non-empty cell is a JSON list of regions that all have ``keys``."""
    for cell in column.to_numpy():
        if not _blank(cell):
            return str(cell).startswith("[") and bool(_regions_of(cell, keys))
    return False


def _holds_spans(column: pd.Series) -> bool:
    """Whether a Labels column holds spans (a JSON list of ``{start, end, text, label}``) rather than labels."""
    return _holds_regions(column, _SPAN_KEYS)


def _truthy(column: pd.Series) -> np.ndarray:
    if column.dtype == bool:
        return column.to_numpy()
    return column.map(lambda v: v is True or (not _blank(v) and str(v).strip().lower() in _TRUE)).to_numpy(bool)


def _prepared(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows, votes)``: every row with ``_who`` (annotator), ``_skip``, ``_gt``; and the votes (one per task and
    annotator, see the module docstring) numbered ``_v`` 0.., sorted by task."""
    rows = frame.reset_index(drop=True)
    n = len(rows)
    added = {"_who": rows["annotator"].fillna("").astype(str) if "annotator" in rows else "",
             "_skip": _truthy(rows["was_cancelled"]) if "was_cancelled" in rows else np.zeros(n, bool),
             "_gt": _truthy(rows["ground_truth"]) if "ground_truth" in rows else np.zeros(n, bool),
             "_order": (pd.to_numeric(rows["annotation_id"], errors="coerce").fillna(-1).to_numpy()
                        if "annotation_id" in rows else np.arange(n))}
    if n and not rows.columns.isin(list(added)).any():  # joined at once: a column set costs ~0.5 ms
        rows = pd.concat([rows, pd.DataFrame(added, index=rows.index)], axis=1)
    else:  # an empty frame, or one that has such a column already (replaced, as before)
        for name, values in added.items():
            rows[name] = values
    votes = rows.take(_vote_positions(rows)).reset_index(drop=True)
    votes["_v"] = np.arange(len(votes))
    return rows, votes


def _vote_positions(rows: pd.DataFrame) -> np.ndarray:
    """The positions of the votes among ``rows``: the rows not skipped, sorted by task and ``_order`` (stable), of
    which each task and annotator keeps the last; sorted and deduplicated with numpy on the key columns alone
    (a frame's sort and ``drop_duplicates`` cost milliseconds on the few rows of an export of one annotation)."""
    live = np.flatnonzero(~rows["_skip"].to_numpy(bool))
    task = rows["task_id"].to_numpy()[live]
    live = live[np.lexsort((rows["_order"].to_numpy()[live], task))]  # lexsort is stable: ties keep row order
    task_codes = pd.factorize(rows["task_id"].to_numpy()[live])[0].astype(np.int64)
    who_codes, who = pd.factorize(rows["_who"].to_numpy()[live])
    pair = task_codes * (len(who) + 1) + who_codes  # < rows**2: no overflow under 3e9 rows
    return live[~pd.Index(pair).duplicated(keep="last")]


def _aggregate(frame: pd.DataFrame, by, sort: bool = True, dropna: bool = True, **named: tuple[str, str]
               ) -> pd.DataFrame:
    """``frame.groupby(by, sort=sort, dropna=dropna).agg(**named)``, each ``(column, function)`` applied on its own:
    the same frame, without pandas' named-aggregation machinery, which costs a few milliseconds a call whatever the
    frame's size (an export of one new annotation makes several such calls, on the annotation-to-commit path)."""
    grouped = frame.groupby(by, sort=sort, dropna=dropna)
    return pd.DataFrame({out: getattr(grouped[column], how)() for out, (column, how) in named.items()})


def _answers(votes: pd.DataFrame, name: str, tag: str, known: Sequence[str] = ()) -> pd.DataFrame:
    """The non-empty answers of one exact-match control: ``task_id, _who, _gt, _cell``."""
    column = votes[name] if name in votes else pd.Series([""] * len(votes), index=votes.index)
    codes, uniques = pd.factorize(column)  # a missing cell is -1: the last entry, ""
    cells = np.array([answer_cell(tag, u, known) for u in uniques] + [""], dtype=object)[codes]
    keep = np.flatnonzero(cells != "")
    return pd.DataFrame({"task_id": votes["task_id"].array[keep], "_who": votes["_who"].array[keep],
                         "_gt": votes["_gt"].array[keep],
                         "_cell": pd.array(cells[keep], dtype="str") if len(votes) else cells[keep]},
                        index=votes.index[keep])


def _exact_match(answers: pd.DataFrame) -> pd.DataFrame:
    """Per task (index): ``cell`` (the majority), ``votes`` (its count), ``voters``, ``agreement``.

    When every task has one answer (one annotator per task, and the few tasks an export of one new annotation
    analyses), each answer is its task's majority: the table is made from the answers at once, the same as the
    counting below gives (``tests/test_agreement.py``)."""
    if len(answers) and answers["task_id"].is_unique:
        ones = np.ones(len(answers), np.int64)
        single = pd.DataFrame({"cell": answers["_cell"].to_numpy(), "votes": ones, "voters": ones,
                               "agreement": np.full(len(answers), np.nan)},
                              index=pd.Index(answers["task_id"].to_numpy(), name="task_id"))
        return single if single.index.is_monotonic_increasing else single.sort_index(kind="stable")
    return _counted_majority(answers)


def _counted_majority(answers: pd.DataFrame) -> pd.DataFrame:
    """:func:`_exact_match` by counting each task's answers."""
    counts = _aggregate(answers, ["task_id", "_cell"], sort=False, votes=("_gt", "size"), gt=("_gt", "any"))
    counts = counts.reset_index().sort_values(["task_id", "votes", "gt", "_cell"],
                                              ascending=[True, False, False, True], kind="stable")
    top = counts.drop_duplicates("task_id").set_index("task_id")
    per_task = pd.DataFrame({"cell": top["_cell"], "votes": top["votes"]})
    per_task["voters"] = answers.groupby("task_id").size().reindex(per_task.index)
    per_task["agreement"] = (per_task["votes"] / per_task["voters"]).where(per_task["voters"] >= 2)
    return per_task


def _nominal_alpha(units: np.ndarray, values: np.ndarray) -> float:
    """Nominal alpha from its definition, for units with two or more values each: ``1 - (n - 1) * (n - sum_c o_cc)
    / (n^2 - sum_c n_c^2)`` with ``o_cc = sum_u m_uc (m_uc - 1) / (m_u - 1)`` (Krippendorff's coincidences)."""
    m_uc = pd.Series(1, index=pd.MultiIndex.from_arrays([units, values])).groupby(level=[0, 1]).sum()
    m_u = m_uc.groupby(level=0).transform("sum")
    o_cc = float((m_uc * (m_uc - 1) / (m_u - 1)).sum())
    n_c = m_uc.groupby(level=1).sum().to_numpy(float)
    n = float(n_c.sum())
    expected = n * n - float((n_c * n_c).sum())
    return float("nan") if expected == 0 else 1 - (n - 1) * (n - o_cc) / expected


def _alpha(answers: pd.DataFrame) -> float | None:
    """Nominal Krippendorff's alpha of one control's answers (see the module docstring); ``None`` when undefined."""
    pairable = answers[answers.groupby("task_id")["_cell"].transform("size") >= 2]
    if pairable.empty:
        return None
    values, domain = pd.factorize(pairable["_cell"])
    if len(domain) < 2:
        return None
    tasks, task_ids = pd.factorize(pairable["task_id"])
    who, annotators = pd.factorize(pairable["_who"])
    if max(len(task_ids) * len(domain) ** 2, len(annotators) * len(task_ids)) > _ALPHA_ARRAY_LIMIT:
        alpha = _nominal_alpha(tasks, values)
    else:
        matrix = np.full((len(annotators), len(task_ids)), np.nan)
        matrix[who, tasks] = values
        alpha = float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))
    return None if math.isnan(alpha) else alpha


def _iou(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    ax, ay, aw, ah = (a[k].to_numpy(float) for k in _BOX_KEYS)
    bx, by, bw, bh = (b[k].to_numpy(float) for k in _BOX_KEYS)
    iw = np.clip(np.minimum(ax + aw, bx + bw) - np.maximum(ax, bx), 0, None)
    ih = np.clip(np.minimum(ay + ah, by + bh) - np.maximum(ay, by), 0, None)
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _regions(votes: pd.DataFrame, name: str, keys: tuple[str, ...], extra: tuple[str, ...] = ()
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(voting, regions)``: the votes whose cell is a list of regions (``_v, task_id``), and one row per region
    (``_v, task_id, label, *keys, *extra, _b``: ``_b`` numbers them in vote order)."""
    column = votes[name] if name in votes else pd.Series([""] * len(votes))
    parsed = [_regions_of(cell, keys) for cell in column.to_numpy()]
    voting = votes.loc[np.array([p is not None for p in parsed], bool), ["_v", "task_id"]]
    records = [(v, task, str(r.get("label", "")), *(r[k] for k in keys), *(r.get(k, "") for k in extra))
               for v, task, found in zip(votes["_v"].to_numpy(), votes["task_id"].to_numpy(), parsed) if found
               for r in found]
    regions = pd.DataFrame(records, columns=["_v", "task_id", "label", *keys, *extra])
    regions["_b"] = np.arange(len(regions))
    return voting, regions


def _pairwise(voting: pd.DataFrame, regions: pd.DataFrame, matched: pd.DataFrame) -> dict:
    """F1 of every pair of a task's annotators from their matched regions (``_v_a, _v_b, label``, one row per
    match): ``pairs`` (``task_id, f1``), ``label_pairs`` (``task_id, label, f1`` per pair and label either gave) and
    ``per_task`` (index task_id: ``voters``, ``agreement`` = the mean F1 of its pairs, ``NaN`` with one voter)."""
    given = regions.groupby("_v").size()
    pairs = voting.merge(voting, on="task_id", suffixes=("_a", "_b"))
    pairs = pairs[pairs["_v_a"] < pairs["_v_b"]].reset_index(drop=True)
    m = matched.groupby(["_v_a", "_v_b"]).size()
    m = m.reindex(pd.MultiIndex.from_arrays([pairs["_v_a"], pairs["_v_b"]]), fill_value=0).to_numpy(float)
    n = (given.reindex(pairs["_v_a"], fill_value=0).to_numpy(float)
         + given.reindex(pairs["_v_b"], fill_value=0).to_numpy(float))
    pairs["f1"] = np.divide(2 * m, n, out=np.ones_like(m), where=n > 0)

    per_label = regions.groupby(["_v", "label"]).size().rename("n").reset_index()
    ends = pairs[["task_id", "_v_a", "_v_b"]]
    side_a = ends.merge(per_label.rename(columns={"_v": "_v_a", "n": "n_a"}), on="_v_a")
    side_b = ends.merge(per_label.rename(columns={"_v": "_v_b", "n": "n_b"}), on="_v_b")
    label_pairs = side_a.merge(side_b, on=["task_id", "_v_a", "_v_b", "label"], how="outer")
    label_pairs = label_pairs.merge(matched.groupby(["_v_a", "_v_b", "label"]).size().rename("m").reset_index(),
                                    on=["_v_a", "_v_b", "label"], how="left").fillna({"n_a": 0, "n_b": 0, "m": 0})
    label_pairs["f1"] = 2 * label_pairs["m"] / (label_pairs["n_a"] + label_pairs["n_b"])

    per_task = pd.DataFrame({"voters": voting.groupby("task_id").size()})
    per_task["agreement"] = pairs.groupby("task_id")["f1"].mean().reindex(per_task.index)
    return {"per_task": per_task, "pairs": pairs[["task_id", "f1"]],
            "label_pairs": label_pairs[["task_id", "label", "f1"]]}


def _box_analysis(votes: pd.DataFrame, name: str, consensus: bool) -> dict:
    """One RectangleLabels control (see :func:`_pairwise`; ``per_task`` also has ``cell`` when ``consensus``)."""
    voting, boxes = _regions(votes, name, _BOX_KEYS, ("rotation",))
    boxes[list(_BOX_KEYS)] = boxes[list(_BOX_KEYS)].astype(float)
    boxes["rotation"] = pd.to_numeric(boxes["rotation"], errors="coerce").fillna(0.0).astype(float)

    # Candidate matches: same task, label and rotation, different annotators, IoU >= the threshold.
    cand = boxes.merge(boxes, on=["task_id", "label", "rotation"], suffixes=("_a", "_b"))
    cand = cand[cand["_v_a"] < cand["_v_b"]]
    a = cand[[f"{k}_a" for k in _BOX_KEYS]].set_axis(list(_BOX_KEYS), axis=1)
    b = cand[[f"{k}_b" for k in _BOX_KEYS]].set_axis(list(_BOX_KEYS), axis=1)
    cand = cand.assign(iou=_iou(a, b))[["task_id", "label", "_v_a", "_v_b", "_b_a", "_b_b", "iou"]]
    cand = cand[cand["iou"] >= IOU_THRESHOLD].sort_values(["iou", "_b_a", "_b_b"], ascending=[False, True, True],
                                                          kind="stable")

    # One-to-one greedy matching per pair of annotators (pairs never interact across tasks, labels or annotators).
    used: set[tuple[int, int]] = set()
    taken = np.zeros(len(cand), bool)
    for i, (va, vb, ba, bb) in enumerate(zip(cand["_v_a"].tolist(), cand["_v_b"].tolist(), cand["_b_a"].tolist(),
                                             cand["_b_b"].tolist())):
        if (ba, vb) not in used and (bb, va) not in used:
            used.add((ba, vb))
            used.add((bb, va))
            taken[i] = True
    result = _pairwise(voting, boxes, cand[taken])
    if consensus:
        per_task = result["per_task"]
        per_task["cell"] = _consensus_boxes(boxes, cand, per_task["voters"]).reindex(per_task.index).fillna("")
    return result


def _span_analysis(votes: pd.DataFrame, name: str, consensus: bool) -> dict:
    """One Labels control whose cells are spans: exact matches (same ``start``, ``end`` and ``label``); the
    consensus keeps the spans given by more than half of the task's annotators (see :func:`_pairwise`)."""
    voting, spans = _regions(votes, name, _SPAN_KEYS, ("text", *_SPAN_PLACE))
    place = ["start", "end", *_SPAN_PLACE, "label"]
    spans = spans.drop_duplicates(["_v", *place])
    same = spans.merge(spans, on=["task_id", *place], suffixes=("_a", "_b"))
    result = _pairwise(voting, spans, same[same["_v_a"] < same["_v_b"]])
    if consensus:
        per_task = result["per_task"]
        groups = _aggregate(spans, ["task_id", *place], dropna=False, size=("_v", "size"),
                            text=("text", "first")).reset_index()
        kept = groups[groups["size"] * 2 > per_task["voters"].reindex(groups["task_id"]).to_numpy()]
        by_task: dict = {}
        for task, start, end, *where, label, text in kept[["task_id", *place, "text"]].itertuples(index=False):
            by_task.setdefault(task, []).append({"start": start, "end": end, "text": text, "label": label, **{
                k: v for k, v in zip(_SPAN_PLACE, where) if v != ""}})
        cells = pd.Series({task: json.dumps(found) for task, found in by_task.items()}, dtype=object)
        per_task["cell"] = cells.reindex(per_task.index).fillna("")
    return result


def _consensus_boxes(boxes: pd.DataFrame, cand: pd.DataFrame, voters: pd.Series) -> pd.Series:
    """Per task, the consensus boxes' cell (JSON list, ``""`` for none): see the module docstring."""
    if boxes.empty:
        return pd.Series(dtype=object)
    first, second = cand["_b_a"].tolist(), cand["_b_b"].tolist()
    close = set(zip(first, second))  # first < second: boxes are numbered in vote order
    owner = boxes["_v"].tolist()
    root = list(range(len(boxes)))
    members: dict[int, list[int]] = {}
    for ba, bb in zip(first, second):  # highest IoU first
        ra, rb = root[ba], root[bb]
        if ra == rb:
            continue
        group_a, group_b = members.get(ra, [ra]), members.get(rb, [rb])
        if len(group_a) > 1 or len(group_b) > 1:
            if {owner[p] for p in group_a} & {owner[q] for q in group_b}:
                continue
            if not all(((p, q) if p < q else (q, p)) in close for p in group_a for q in group_b):
                continue
        if len(group_a) < len(group_b):
            ra, rb, group_a, group_b = rb, ra, group_b, group_a
        members[ra] = group_a + group_b
        members.pop(rb, None)
        for q in group_b:
            root[q] = ra
    groups = _aggregate(boxes.assign(_group=root), "_group", task_id=("task_id", "first"), label=("label", "first"),
                        rotation=("rotation", "first"), size=("_v", "size"), **{k: (k, "mean") for k in _BOX_KEYS})
    kept = groups[groups["size"] * 2 > voters.reindex(groups["task_id"]).to_numpy()]
    kept = kept.sort_values(["task_id", "label", "y", "x"], kind="stable")
    by_task: dict = {}
    for task, label, rotation, *values in kept[["task_id", "label", "rotation", *_BOX_KEYS]].itertuples(index=False):
        by_task.setdefault(task, []).append({**{k: round(float(v), 9) for k, v in zip(_BOX_KEYS, values)},
                                             "label": label, **({"rotation": rotation} if rotation else {})})
    return pd.Series({task: json.dumps(found) for task, found in by_task.items()}, dtype=object)


def control_kinds(votes: pd.DataFrame, controls: Mapping[str, str]) -> dict[str, str]:
    """How each control's answers are compared, decided on a whole version's votes.

    Args:
        votes: The votes of a version (from :func:`analyse`'s preparation: one row per task and annotator).
        controls: ``{from_name: control tag type}``.

    Returns:
        ``{from_name: kind}``: ``"boxes"`` (RectangleLabels, and Labels whose first non-empty cell is a JSON list of
        boxes: the labels of image regions), ``"spans"`` (Labels whose first non-empty cell is a JSON list of spans)
        or ``"cells"`` (exact match of the cell).
    """
    kinds = {}
    for name, tag in controls.items():
        if tag == _BOXES:
            kinds[name] = "boxes"
        elif tag == "Labels" and name in votes and _holds_regions(votes[name], _BOX_KEYS):
            kinds[name] = "boxes"  # a Labels tag over an image region (the OCR template's): its cells are boxes
        elif tag == "Labels" and name in votes and _holds_spans(votes[name]):
            kinds[name] = "spans"
        else:
            kinds[name] = "cells"
    return kinds


def _analysis(votes: pd.DataFrame, controls: Mapping[str, str], consensus: bool,
              kinds: Mapping[str, str], labels: Mapping[str, Sequence[str]]) -> dict[str, dict]:
    """``{from_name: {"tag", "kind", "per_task", ...}}`` for every control (see the helpers)."""
    result = {}
    for name, tag in controls.items():
        if kinds[name] == "boxes":
            result[name] = {"tag": tag, "kind": "boxes", **_box_analysis(votes, name, consensus)}
        elif kinds[name] == "spans":
            result[name] = {"tag": tag, "kind": "spans", **_span_analysis(votes, name, consensus)}
        else:
            answers = _answers(votes, name, tag, labels.get(name, ()))
            per_task = _exact_match(answers)
            result[name] = {"tag": tag, "kind": "cells", "per_task": per_task, "answers": answers}
    return result


@dataclass(frozen=True)
class Analysis:
    """A version's votes analysed once (:func:`analyse`), for :func:`consensus_rows` and :func:`agreement_report`.

    Attributes:
        rows: Every row, with ``_who`` (annotator), ``_skip``, ``_gt`` and ``_order``.
        votes: One row per task and annotator (their latest annotation not skipped), sorted by task.
        results: ``{from_name: {"tag", "kind", "per_task", ...}}``: per control, tables whose rows each belong to one
            task (``per_task`` indexed by ``task_id``, the others with a ``task_id`` column), sorted by task.
        kinds: :func:`control_kinds` of the votes the results were computed with.
        labels: ``{from_name: the label config's labels}`` the answers were read with (:func:`answer_cell`).
    """

    rows: pd.DataFrame
    votes: pd.DataFrame
    results: dict
    kinds: dict | None = None
    labels: dict | None = None


def analyse(frame: pd.DataFrame, controls: Mapping[str, str], kinds: Mapping[str, str] | None = None,
            prepared: tuple[pd.DataFrame, pd.DataFrame] | None = None,
            labels: Mapping[str, Sequence[str]] | None = None) -> Analysis | None:
    """Prepare a version's rows and analyse every control once (``None`` for an empty frame).

    Args:
        frame, controls: As for :func:`consensus_rows`.
        kinds: :func:`control_kinds` to use (those of a whole version when ``frame`` holds some of its tasks);
            ``None``: decided on ``frame``.
        prepared: :func:`prepare` of ``frame`` when already made (for some tasks of a version: :func:`prepared_tasks`).
        labels: ``{from_name: the label config's labels}`` (``labelhub.sync.versions.training.control_labels``), so that
            a label holding ``|`` is one label; without it every ``|`` splits.

    Returns:
        An :class:`Analysis` to pass to both :func:`consensus_rows` and :func:`agreement_report`.
    """
    if frame.empty:
        return None
    rows, votes = prepared or _prepared(frame)
    kinds = dict(kinds) if kinds is not None else control_kinds(votes, controls)
    labels = dict(labels or {})
    return Analysis(rows, votes, _analysis(votes, controls, True, kinds, labels), kinds, labels)


def _merge_table(kept: pd.DataFrame | None, fresh: pd.DataFrame | None, tasks: pd.Index) -> pd.DataFrame:
    """``kept``'s rows of the tasks not in ``tasks``, then ``fresh``'s, sorted by task (stable: a task's rows keep
    their order). Tables of ``per_task`` are indexed by ``task_id``; the others have a ``task_id`` column."""
    indexed = "task_id" not in (kept if kept is not None else fresh).columns
    if kept is not None:
        kept = kept[~(kept.index if indexed else kept["task_id"]).isin(tasks)]
    parts = [part for part in (kept, fresh) if part is not None and len(part)]
    if not parts:
        return fresh if fresh is not None else kept
    if len(parts) == 1:
        return parts[0] if indexed else parts[0].reset_index(drop=True)
    merged = pd.concat(parts)
    if indexed:
        return merged.sort_index(kind="stable")
    return merged.sort_values("task_id", kind="stable").reset_index(drop=True)


def prepare(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A version's rows and votes as :class:`Analysis` holds them (see its attributes).

    Args:
        frame: A version's rows (see :func:`consensus_rows`).

    Returns:
        ``(rows, votes)``.
    """
    return _prepared(frame)


def prepared_tasks(prepared: tuple[pd.DataFrame, pd.DataFrame], tasks: pd.Index) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`prepare` of a version's rows of ``tasks`` alone, taken from :func:`prepare` of the whole version: a
    task's rows and votes are made from its own rows, so they are the same, in the same order; the votes are numbered
    ``_v`` again from 0.

    Args:
        prepared: ``(rows, votes)`` of the whole version.
        tasks: The task ids to keep.

    Returns:
        ``(rows, votes)`` of those tasks, as :func:`prepare` of ``frame[frame["task_id"].isin(tasks)]`` gives.
    """
    rows, votes = (rows_of_tasks(frame, tasks).reset_index(drop=True) for frame in prepared)
    votes["_v"] = np.arange(len(votes))
    return rows, votes


def rows_of_tasks(frame: pd.DataFrame, tasks: pd.Index) -> pd.DataFrame:
    """The rows of ``frame`` whose ``task_id`` is in ``tasks``, in their order and with their index:
    ``frame[frame["task_id"].isin(tasks)]``, taken by position (a boolean mask costs twice as long on a few rows).

    Args:
        frame: Rows with a ``task_id`` column.
        tasks: The task ids to keep.

    Returns:
        Those rows.
    """
    return frame.take(np.flatnonzero(np.isin(frame["task_id"].to_numpy(), tasks.to_numpy())))


def merge_analyses(frame: pd.DataFrame, controls: Mapping[str, str], kept: Analysis | None, fresh: Analysis | None,
                   tasks: pd.Index, prepared: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> Analysis | None:
    """The analysis of a version's rows from the analysis of an earlier version and that of the changed tasks.

    Every table of a control's results holds rows of one task each, computed from that task's votes alone (with the
    version's :func:`control_kinds`), so the analysis of ``frame`` is ``kept``'s rows of the unchanged tasks plus
    ``fresh``'s, in task order: the same tables as :func:`analyse` of ``frame`` gives (index labels aside).

    Args:
        frame: The version's rows (see :func:`consensus_rows`).
        controls: ``{from_name: control tag type}``.
        kept: An analysis made with the same controls and kinds (its tasks not in ``tasks`` are unchanged in
            ``frame``), or ``None``.
        fresh: The analysis of ``frame``'s rows of ``tasks`` (with ``kinds`` of the whole ``frame``), or ``None``
            when they have none.
        tasks: The task ids whose rows changed (added, changed or removed annotations); every task of ``frame``
            when ``kept`` is ``None``.
        prepared: :func:`prepare` of ``frame`` when already made.

    Returns:
        An :class:`Analysis` of ``frame`` (``None`` for an empty frame).
    """
    if frame.empty:
        return None
    if kept is None and fresh is None:
        return analyse(frame, controls)  # nothing analysed before: no labels known either
    rows, votes = prepared or _prepared(frame)
    results = {}
    for name in controls:
        old = kept.results[name] if kept else None
        new = fresh.results[name] if fresh else None
        either = new or old
        results[name] = {key: _merge_table(old and old[key], new and new[key], tasks)
                         if isinstance(value, pd.DataFrame) else value for key, value in either.items()}
    return Analysis(rows, votes, results, (fresh or kept).kinds, (fresh or kept).labels)


def consensus_rows(frame: pd.DataFrame, controls: Mapping[str, str], value_key: str,
                   analysis: Analysis | None = None) -> pd.DataFrame:
    """One row per task that has at least one non-skipped annotation: its consensus labels and agreement.

    Args:
        frame: A version's rows (columns of :mod:`labelhub.sync.versions.rows`; ``task_id``, ``annotator``,
            ``was_cancelled`` and the control columns are read; ``annotation_id``, ``ground_truth``, ``hf_path`` and
            ``value_key`` when present).
        controls: ``{from_name: control tag type}``.
        value_key: The object tag's data key (``image``), copied from the task's first row.

    Returns:
        Columns ``task_id, hf_path, <value_key>``, one per control in the CSV's form (the majority cell, or the
        consensus boxes or spans as a JSON list; ``""`` when there is none), ``annotators`` (votes: non-skipped
        annotations, one per annotator), ``agreement`` (0..1, ``NaN`` with fewer than two votes; rounded to 6
        places) and ``skipped``, sorted by ``task_id``. The rules are in the module docstring.
    """
    columns = ["task_id", "hf_path", value_key, *controls, "annotators", "agreement", "skipped"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    analysis = analysis or analyse(frame, controls)
    rows, votes = analysis.rows, analysis.votes
    vote_tasks, annotators = np.unique(votes["task_id"].to_numpy(), return_counts=True)
    tasks = pd.Index(vote_tasks, name="task_id")
    row_tasks = rows["task_id"].to_numpy()
    data: dict = {"task_id": vote_tasks}  # the columns in order, made into a frame at once (a column set costs ~1 ms)
    for key in ("hf_path", value_key):
        data[key] = _first_values(row_tasks, rows[key], vote_tasks) if key in rows and key != "task_id" else ""
    scores = []
    for name, result in analysis.results.items():
        per_task = result["per_task"].reindex(tasks)
        data[name] = per_task["cell"].fillna("").array
        scores.append(per_task["agreement"].to_numpy(float))
    data["annotators"] = annotators
    if scores:
        stacked = np.vstack(scores)
        counted = (~np.isnan(stacked)).sum(axis=0)
        total = np.nansum(stacked, axis=0)
        agreement = np.divide(total, counted, out=np.full(len(tasks), np.nan), where=counted > 0)
    else:
        agreement = np.full(len(tasks), np.nan)
    data["agreement"] = np.round(agreement, 6)
    skips = rows["_skip"].to_numpy()
    data["skipped"] = (rows[skips].groupby("task_id").size().reindex(tasks, fill_value=0).to_numpy() if skips.any()
                       else np.zeros(len(tasks), np.int64))
    out = pd.DataFrame(data)
    return out if list(out.columns) == columns else out[columns]  # a control named like a fixed column


def _first_values(row_tasks: np.ndarray, column: pd.Series, tasks: np.ndarray) -> np.ndarray:
    """Per task of ``tasks`` (sorted ids), the first non-null value of ``column`` among its rows (``""`` when none):
    what ``groupby("task_id").first()`` gives, as an object array."""
    values = column.to_numpy(object)
    present = np.flatnonzero(~pd.isna(values))
    out = np.full(len(tasks), "", dtype=object)
    found, first = np.unique(row_tasks[present], return_index=True)
    at = np.searchsorted(tasks, found)
    inside = at < len(tasks)
    inside[inside] = tasks[at[inside]] == found[inside]
    out[at[inside]] = values[present[first[inside]]]
    return out


def _number(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def agreement_report(frame: pd.DataFrame, controls: Mapping[str, str], analysis: Analysis | None = None) -> dict:
    """The agreement measures of a version, as plain JSON-able data.

    Args:
        frame: A version's rows (see :func:`consensus_rows`).
        controls: ``{from_name: control tag type}``.

    Returns:
        ``{"totals": {tasks, annotations, annotators, skipped, tasks_with_overlap}, "iou_threshold",
        "controls": {from_name: {...}}, "annotators": {email: {...}}}``. ``tasks_with_overlap``: tasks with two or
        more votes. Per control: ``tag``, ``tasks_with_overlap`` (tasks where two or more answered it),
        ``mean_task_agreement`` (the mean of the task agreements defined in the module docstring), and

        - Choices, Labels, Taxonomy: ``krippendorff_alpha`` (nominal; ``None`` when undefined), ``per_label``:
          ``{cell: {"tasks", "agreement"}}`` over the tasks with two or more answers whose majority is that cell
          (agreement: the mean share of answers equal to it);
        - RectangleLabels: ``mean_pairwise_iou_agreement`` (the mean over every task and pair of its annotators of
          the matched-box F1), ``per_label``: ``{label: {"tasks", "agreement"}}``, the mean F1 of that label's
          boxes alone over the pairs where either annotator drew one;
        - Labels whose cells are spans: ``exact_span_agreement`` (the same with spans matched exactly) and
          ``per_label`` likewise (Labels cells of labels only are Choices-like, above).

        Per annotator (``""``: unknown): ``annotations`` (rows, skips included), ``skipped_rate``,
        ``agreement_with_majority`` (the share of their answers to Choices-like controls, on tasks with two or more
        answers, equal to the majority; ``None`` without any), ``compared`` (how many such answers) and
        ``mean_lead_time`` (seconds, over their rows with a lead time). Numbers are rounded to 6 places; undefined
        ones are ``None``.
    """
    analysis = analysis or (analyse(frame, controls) if len(frame) else None)
    rows, votes = (analysis.rows, analysis.votes) if analysis else (None, None)
    report: dict = {"totals": {"tasks": 0, "annotations": 0, "annotators": 0, "skipped": 0, "tasks_with_overlap": 0},
                    "iou_threshold": IOU_THRESHOLD, "controls": {}, "annotators": {}}
    if rows is None:
        for name, tag in controls.items():
            measure = "mean_pairwise_iou_agreement" if tag == _BOXES else "krippendorff_alpha"
            report["controls"][name] = {"tag": tag, "tasks_with_overlap": 0, "mean_task_agreement": None,
                                        **({measure: None} if tag == _BOXES or tag in CATEGORICAL else {}),
                                        "per_label": {}}
        return report
    who_codes, annotators = pd.factorize(rows["_who"], sort=True)  # sorted: the report's order of annotators
    skips = rows["_skip"].to_numpy(bool)
    report["totals"] = {"tasks": len(pd.unique(rows["task_id"])), "annotations": len(rows),
                        "annotators": len(annotators), "skipped": int(skips.sum()),
                        "tasks_with_overlap": int((_counts(votes["task_id"]) >= 2).sum())}
    compared = []
    for name, result in analysis.results.items():
        tag, per_task = result["tag"], result["per_task"]
        entry: dict = {"tag": tag, "tasks_with_overlap": int((per_task["voters"] >= 2).sum()),
                       "mean_task_agreement": _number(per_task["agreement"].mean())}
        if result["kind"] in ("boxes", "spans"):
            pairs, label_pairs = result["pairs"], result["label_pairs"]
            measure = "mean_pairwise_iou_agreement" if result["kind"] == "boxes" else "exact_span_agreement"
            entry[measure] = _number(pairs["f1"].mean()) if len(pairs) else None
            by_label = _aggregate(label_pairs, "label", tasks=("task_id", "nunique"), agreement=("f1", "mean"))
        else:
            answers = result["answers"]
            overlap = per_task[per_task["voters"] >= 2]
            if overlap.empty:  # no task answered twice (one annotator per task): no alpha, no label, nothing judged
                by_label = None
                if tag in CATEGORICAL:
                    entry["krippendorff_alpha"] = None
            else:
                by_label = _aggregate(overlap, "cell", tasks=("votes", "size"), agreement=("agreement", "mean"))
                if tag in CATEGORICAL:
                    entry["krippendorff_alpha"] = _number(_alpha(answers))
                    strict = overlap[overlap["votes"] * 2 > overlap["voters"]]  # a tie says nothing of who agreed
                    judged = answers.join(strict["cell"].rename("_major"), on="task_id", how="inner")
                    compared.append(judged.assign(_same=judged["_cell"] == judged["_major"])[["_who", "_same"]])
        entry["per_label"] = _per_label(by_label)
        report["controls"][name] = entry

    # per annotator, counted with numpy over the codes of ``_who`` (a groupby per figure costs a few ms per export)
    k = len(annotators)
    counted = np.bincount(who_codes, minlength=k)
    skipped = np.bincount(who_codes, weights=skips, minlength=k)
    lead = (pd.to_numeric(rows["lead_time"], errors="coerce").to_numpy(float) if "lead_time" in rows
            else np.full(len(rows), np.nan))
    timed = ~np.isnan(lead)
    lead_sum = np.bincount(who_codes[timed], weights=lead[timed], minlength=k)
    lead_n = np.bincount(who_codes[timed], minlength=k)
    lead_mean = np.divide(lead_sum, lead_n, out=np.full(k, np.nan), where=lead_n > 0)
    same, judged_n = np.zeros(k), np.zeros(k, np.int64)
    if compared:
        judged = pd.concat(compared)
        codes = annotators.get_indexer(judged["_who"])
        judged_n = np.bincount(codes, minlength=k)
        same = np.bincount(codes, weights=judged["_same"].to_numpy(float), minlength=k)
    for i, who in enumerate(annotators):
        report["annotators"][str(who)] = {
            "annotations": int(counted[i]), "skipped_rate": _number(skipped[i] / counted[i]),
            "agreement_with_majority": _number(same[i] / judged_n[i]) if judged_n[i] else None,
            "compared": int(judged_n[i]), "mean_lead_time": _number(lead_mean[i])}
    return report


def _counts(task_ids: pd.Series) -> np.ndarray:
    """How many rows each task has, in the order of the sorted task ids."""
    return np.unique(task_ids.to_numpy(), return_counts=True)[1]


def _per_label(by_label: pd.DataFrame | None) -> dict:
    """``{label: {"tasks", "agreement"}}`` of a ``by_label`` table (``tasks``, ``agreement``; index: the label), the
    most tasks first (ties: the highest agreement first, then in the table's order); ``{}`` for ``None``."""
    if by_label is None or by_label.empty:
        return {}
    by_label = by_label.sort_values(["tasks", "agreement"], ascending=False, kind="stable")
    return {str(label): {"tasks": int(t), "agreement": _number(a)}
            for label, t, a in by_label[["tasks", "agreement"]].itertuples()}


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _md(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ") or "∅"


def counted(n, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 (``counted(1, "task")`` → ``"1 task"``; a count that is not a
    number, e.g. ``"?"`` of an older manifest, takes the plural)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def agreement_markdown(report: Mapping, top: int = 20) -> str:
    """The dataset card's agreement section.

    Args:
        report: An :func:`agreement_report`.
        top: How many labels per control to list (the ones with the most tasks).

    Returns:
        Markdown: a line of totals, a table per control (alpha, pairwise F1, mean task agreement), a table per annotator
        (annotations, skipped rate, agreement with the majority, mean lead time) and one of agreement per label.
    """
    totals = report["totals"]
    lines = [f"{counted(totals['annotations'], 'annotation')} ({totals['skipped']} skipped) of "
             f"{counted(totals['tasks'], 'task')} by {counted(totals['annotators'], 'annotator')}; "
             f"{totals['tasks_with_overlap']} of them with two or more annotators. "
             f"Krippendorff's alpha is nominal; pairwise F1 is between two annotators' boxes matched at IoU ≥ "
             f"{report['iou_threshold']} (or spans matched exactly); a task's agreement is, per control, the share of "
             f"its answers equal to the majority answer (the mean F1 of its pairs for boxes and spans), averaged over "
             f"its controls; agreement with majority counts the tasks with a strict majority.",
             "", "| control | type | tasks with overlap | Krippendorff's α | pairwise F1 | mean task agreement |",
             "|---|---|---|---|---|---|"]
    for name, entry in report["controls"].items():
        lines.append(f"| `{_md(name)}` | {entry['tag']} | {entry['tasks_with_overlap']} | "
                     f"{_fmt(entry.get('krippendorff_alpha'))} | "
                     f"{_fmt(entry.get('mean_pairwise_iou_agreement', entry.get('exact_span_agreement')))} | "
                     f"{_fmt(entry.get('mean_task_agreement'))} |")
    if report["annotators"]:
        lines += ["", "| annotator | annotations | skipped (share) | agreement with majority | mean lead time (s) |",
                  "|---|---|---|---|---|"]
        for who, entry in report["annotators"].items():
            lines.append(f"| {_md(who) if who else '(unknown)'} | {entry['annotations']} | "
                         f"{_fmt(entry['skipped_rate'])} | {_fmt(entry['agreement_with_majority'])} | "
                         f"{_fmt(entry['mean_lead_time'], 1)} |")
    labelled = [(name, label, e) for name, entry in report["controls"].items()
                for label, e in list(entry.get("per_label", {}).items())[:top]]
    if labelled:
        lines += ["", "| control | label | tasks | agreement |", "|---|---|---|---|"]
        lines += [f"| `{_md(name)}` | {_md(label)} | {e['tasks']} | {_fmt(e['agreement'])} |"
                  for name, label, e in labelled]
    return "\n".join(lines)
