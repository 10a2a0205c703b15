"""Agreement and consensus of a version's rows (:mod:`labelhub.sync.versions.agreement`): hand-checked cases, then
properties over random frames. Pure: no servers."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelhub.sync.versions import agreement
from labelhub.sync.versions.agreement import agreement_markdown, agreement_report, answer_cell, consensus_rows

CONTROLS = {"kind": "Choices", "box": "RectangleLabels"}


def box(x, y, w, h, label="car"):
    return {"x": x, "y": y, "width": w, "height": h, "label": label}


def frame(rows):
    """Rows ``(task_id, annotator, kind, boxes)`` or ``(..., {extra columns})``; annotation ids in order."""
    out = []
    for i, (task, who, kind, boxes, *extra) in enumerate(rows, start=1):
        out.append({"task_id": task, "annotation_id": i, "hf_path": f"img/{task}.png", "image": f"https://x/{task}",
                    "kind": kind, "box": json.dumps(boxes) if boxes else "", "annotator": who, "lead_time": 10.0,
                    "was_cancelled": False, "ground_truth": False, **(extra[0] if extra else {})})
    return pd.DataFrame(out)


def test_three_annotators_two_agree():
    rows = frame([(1, "a", "cat", []), (1, "b", "cat", []), (1, "c", "dog", [])])
    out = consensus_rows(rows, {"kind": "Choices"}, "image")
    assert list(out.columns) == ["task_id", "hf_path", "image", "kind", "annotators", "agreement", "skipped"]
    assert out.iloc[0][["task_id", "hf_path", "image", "kind", "annotators", "skipped"]].tolist() == [
        1, "img/1.png", "https://x/1", "cat", 3, 0]
    assert out.iloc[0]["agreement"] == pytest.approx(2 / 3, abs=1e-6)
    report = agreement_report(rows, {"kind": "Choices"})
    assert report["controls"]["kind"]["per_label"] == {"cat": {"tasks": 1, "agreement": pytest.approx(2 / 3, abs=1e-6)}}
    assert report["annotators"]["c"]["agreement_with_majority"] == 0.0
    assert report["annotators"]["a"]["agreement_with_majority"] == 1.0


def test_perfect_agreement_gives_alpha_one_and_a_single_value_gives_none():
    rows = frame([(t, who, "cat" if t % 2 else "dog", []) for t in range(1, 5) for who in "abc"])
    report = agreement_report(rows, {"kind": "Choices"})
    assert report["controls"]["kind"]["krippendorff_alpha"] == 1.0
    assert report["controls"]["kind"]["mean_task_agreement"] == 1.0
    same = frame([(t, who, "cat", []) for t in range(1, 3) for who in "ab"])
    assert agreement_report(same, {"kind": "Choices"})["controls"]["kind"]["krippendorff_alpha"] is None


# Krippendorff's worked example (3 coders x 15 units, nominal alpha 0.691), as in the krippendorff package's docs.
EXAMPLE = [[None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
           [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
           [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4]]


def example_frame():
    return frame([(unit, f"coder{c}", f"v{value}", []) for c, coder in enumerate(EXAMPLE)
                  for unit, value in enumerate(coder, start=1) if value is not None])


def test_alpha_matches_the_published_example_and_the_definition(monkeypatch):
    alpha = agreement_report(example_frame(), {"kind": "Choices"})["controls"]["kind"]["krippendorff_alpha"]
    assert alpha == pytest.approx(0.691358, abs=1e-6)
    monkeypatch.setattr(agreement, "_ALPHA_ARRAY_LIMIT", 0)  # the closed form used for very large matrices
    again = agreement_report(example_frame(), {"kind": "Choices"})["controls"]["kind"]["krippendorff_alpha"]
    assert again == pytest.approx(alpha, abs=1e-6)


def test_boxes_are_matched_by_iou_and_the_consensus_is_their_mean():
    a = [box(0.10, 0.10, 0.20, 0.20), box(0.60, 0.60, 0.20, 0.20), box(0.1, 0.5, 0.2, 0.2, "bus")]
    b = [box(0.12, 0.10, 0.20, 0.20), box(0.1, 0.5, 0.2, 0.2, "truck")]      # IoU 0.82 with a's car
    c = [box(0.14, 0.10, 0.20, 0.20), box(0.70, 0.60, 0.20, 0.20)]          # 0.67 with a's car; 1/3 with a's 2nd
    rows = frame([(1, "a", "", a), (1, "b", "", b), (1, "c", "", c)])
    out = consensus_rows(rows, {"box": "RectangleLabels"}, "image").iloc[0]
    kept = json.loads(out["box"])
    assert len(kept) == 1 and kept[0]["label"] == "car"
    assert kept[0]["x"] == pytest.approx(0.12) and kept[0]["width"] == pytest.approx(0.2)
    # F1 per pair: a-b 2*1/(3+2), a-c 2*1/(3+2), b-c 2*1/(2+2); cars alone: 2*1/3, 2*1/4, 2*1/3
    expected = (0.4 + 0.4 + 0.5) / 3
    assert out["agreement"] == pytest.approx(expected, abs=1e-6)
    report = agreement_report(rows, {"box": "RectangleLabels"})["controls"]["box"]
    assert report["mean_pairwise_iou_agreement"] == pytest.approx(expected, abs=1e-6)
    assert report["per_label"]["car"]["agreement"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3, abs=1e-6)
    assert report["per_label"]["bus"]["agreement"] == 0.0


def test_box_matching_is_one_to_one_greedy_and_complete_linkage():
    # a's one box overlaps two of b's: it matches the closer one only.
    rows = frame([(1, "a", "", [box(0.0, 0.0, 0.4, 0.4)]),
                  (1, "b", "", [box(0.05, 0.0, 0.4, 0.4), box(0.0, 0.0, 0.4, 0.4)])])
    out = consensus_rows(rows, {"box": "RectangleLabels"}, "image").iloc[0]
    assert out["agreement"] == pytest.approx(2 * 1 / 3, abs=1e-6)
    assert json.loads(out["box"]) == [box(0.0, 0.0, 0.4, 0.4)]
    # A chain a~b (IoU 0.67), b~c (0.67), a~c (0.43) is not one group: only a+b is, which is 2 of 3 annotators.
    chain = frame([(1, "a", "", [box(0.0, 0, 0.5, 0.5)]), (1, "b", "", [box(0.1, 0, 0.5, 0.5)]),
                   (1, "c", "", [box(0.2, 0, 0.5, 0.5)])])
    kept = json.loads(consensus_rows(chain, {"box": "RectangleLabels"}, "image").iloc[0]["box"])
    assert len(kept) == 1 and kept[0]["x"] == pytest.approx(0.05)
    # Two annotators who drew nothing agree; one box against nothing is 0; one annotator alone keeps their boxes.
    empty = frame([(1, "a", "", []), (1, "b", "", []), (2, "a", "", [box(0, 0, .5, .5)]), (2, "b", "", []),
                   (3, "a", "", [box(0, 0, .5, .5)])])
    out = consensus_rows(empty, {"box": "RectangleLabels"}, "image")
    assert out["agreement"].tolist()[:2] == [1.0, 0.0] and math.isnan(out["agreement"].iloc[2])
    assert out["box"].tolist()[:2] == ["", ""] and json.loads(out["box"].iloc[2]) == [box(0, 0, .5, .5)]


def test_ties_go_to_ground_truth_then_to_string_order_and_multiple_choices_are_sorted():
    tie = frame([(1, "a", "dog", []), (1, "b", "cat", [])])
    out = consensus_rows(tie, {"kind": "Choices"}, "image").iloc[0]
    assert (out["kind"], out["agreement"]) == ("cat", 0.5)
    marked = frame([(1, "a", "dog", [], {"ground_truth": True}), (1, "b", "cat", [])])
    assert consensus_rows(marked, {"kind": "Choices"}, "image").iloc[0]["kind"] == "dog"
    multi = frame([(1, "a", "b|a", []), (1, "b", "a|b", []), (1, "c", "a", [])])
    out = consensus_rows(multi, {"kind": "Choices"}, "image").iloc[0]
    assert (out["kind"], out["agreement"]) == ("a|b", pytest.approx(2 / 3, abs=1e-6))
    assert answer_cell("Choices", "b|a") == "a|b" and answer_cell("TextArea", "b|a") == "b|a"


def test_skips_are_excluded_and_counted_and_one_answer_is_nan():
    rows = frame([(1, "a", "cat", [], {"lead_time": 4.0}), (1, "b", "", [], {"was_cancelled": True, "lead_time": 2.0}),
                  (1, "c", "dog", []), (2, "a", "cat", []), (2, "b", "", [], {"was_cancelled": True}),
                  (3, "b", "", [], {"was_cancelled": True})])
    out = consensus_rows(rows, CONTROLS, "image")
    assert out["task_id"].tolist() == [1, 2]  # task 3 has only a skip
    assert out["annotators"].tolist() == [2, 1] and out["skipped"].tolist() == [1, 1]
    assert out["agreement"].iloc[0] == 0.5 * (0.5 + 1.0)  # Choices 1/2; boxes: two annotators drew nothing
    assert math.isnan(out["agreement"].iloc[1])
    written = out.to_csv(index=False).splitlines()[2]
    assert written.endswith(",1,,1"), written  # NaN is an empty cell
    report = agreement_report(rows, CONTROLS)
    assert report["totals"] == {"tasks": 3, "annotations": 6, "annotators": 3, "skipped": 3, "tasks_with_overlap": 1}
    assert report["annotators"]["b"] == {"annotations": 3, "skipped_rate": 1.0, "agreement_with_majority": None,
                                         "compared": 0, "mean_lead_time": round(22 / 3, 6)}
    assert report["annotators"]["a"]["mean_lead_time"] == 7.0
    json.dumps(report, allow_nan=False)


def test_an_annotators_latest_annotation_is_their_vote_and_csv_strings_are_read():
    rows = frame([(1, "a", "dog", []), (1, "b", "cat", []), (1, "a", "cat", [])])
    out = consensus_rows(rows, {"kind": "Choices"}, "image").iloc[0]
    assert (out["kind"], out["annotators"], out["agreement"]) == ("cat", 2, 1.0)
    rows = frame([(1, "a", "cat", []), (1, "b", "", [], {"was_cancelled": True}), (1, "c", "cat", [])])
    text = rows.to_csv(index=False)
    read = pd.read_csv(io.StringIO(text), dtype={"annotator": str}, keep_default_na=False)
    out = consensus_rows(read, CONTROLS, "image").iloc[0]
    assert (out["annotators"], out["skipped"], out["agreement"]) == (2, 1, 1.0)


def test_markdown_has_the_tables_and_escapes_pipes():
    rows = frame([(1, "a", "a|b", [box(0, 0, .5, .5)]), (1, "b", "a|b", [box(0, 0, .5, .5)]), (2, "", "c", []),
                  (2, "b", "c", [])])
    text = agreement_markdown(agreement_report(rows, CONTROLS))
    assert text.startswith("4 annotations (0 skipped) of 2 tasks by 3 annotators; 2 of them with two or more")
    assert "### Agreement" not in text  # the card's own heading names the consensus config
    assert "| `kind` | Choices | 2 | 1.000 | – | 1.000 |" in text
    assert "| `box` | RectangleLabels | 2 | – | 1.000 | 1.000 |" in text
    assert "| `kind` | a\\|b | 1 | 1.000 |" in text and "| (unknown) | 1 |" in text
    empty = agreement_report(frame([]).reindex(columns=["task_id"]), CONTROLS)
    assert empty["totals"]["annotations"] == 0 and agreement_markdown(empty).startswith("0 annotations")
    assert consensus_rows(frame([]), CONTROLS, "image").empty


# Properties over random frames: up to 6 tasks, 4 annotators, labels from a small set, boxes on a coarse grid.
LABELS = ["cat", "dog", "bird", "cat|dog", ""]
BOXES = st.lists(st.builds(lambda x, y, s, label: box(x / 10, y / 10, s / 10, s / 10, label),
                           st.integers(0, 6), st.integers(0, 6), st.integers(1, 4), st.sampled_from(["car", "bus"])),
                 max_size=3)
ANNOTATION = st.tuples(st.integers(1, 6), st.sampled_from("abcd"), st.sampled_from(LABELS), BOXES, st.booleans(),
                       st.booleans())


def random_frame(draws):
    return frame([(task, who, kind, boxes, {"was_cancelled": skip, "ground_truth": gt})
                  for task, who, kind, boxes, skip, gt in draws])


@settings(max_examples=80, deadline=None)
@given(st.lists(ANNOTATION, min_size=1, max_size=30))
def test_properties_of_consensus_and_report(draws):
    rows = random_frame(draws)
    out = consensus_rows(rows, CONTROLS, "image")
    live = rows[~rows["was_cancelled"]]
    assert sorted(out["task_id"]) == sorted(live["task_id"].unique())
    assert out["task_id"].is_unique
    scores = out["agreement"].to_numpy(float)
    assert np.all(np.isnan(scores) | ((scores >= 0) & (scores <= 1)))
    assert out["skipped"].sum() + out["annotators"].sum() <= len(rows) and (out["annotators"] >= 1).all()
    report = agreement_report(rows, CONTROLS)
    json.dumps(report, allow_nan=False)
    assert sum(e["annotations"] for e in report["annotators"].values()) == len(rows)
    for entry in report["controls"].values():
        for key in ("krippendorff_alpha", "mean_pairwise_iou_agreement", "mean_task_agreement"):
            value = entry.get(key)
            assert value is None or (-1 <= value <= 1 if key == "krippendorff_alpha" else 0 <= value <= 1)
        assert all(0 <= e["agreement"] <= 1 for e in entry["per_label"].values())
    assert all(e["agreement_with_majority"] is None or 0 <= e["agreement_with_majority"] <= 1
               for e in report["annotators"].values())


@settings(max_examples=60, deadline=None)
@given(st.lists(ANNOTATION, min_size=1, max_size=30), st.permutations(["cat", "dog", "bird"]),
       st.permutations("abcd"))
def test_alpha_does_not_depend_on_label_names_or_annotator_names(draws, names, people):
    rows = random_frame(draws)
    rename = dict(zip(["cat", "dog", "bird"], names))
    renamed = rows.assign(kind=rows["kind"].map(lambda cell: "|".join(rename.get(p, p) for p in cell.split("|"))),
                          annotator=rows["annotator"].map(dict(zip("abcd", people))))
    before = agreement_report(rows, {"kind": "Choices"})["controls"]["kind"]["krippendorff_alpha"]
    after = agreement_report(renamed, {"kind": "Choices"})["controls"]["kind"]["krippendorff_alpha"]
    assert (before is None and after is None) or after == pytest.approx(before, abs=1e-6)


def span(start, end, label, text="x"):
    return {"start": start, "end": end, "text": text, "label": label}


def test_labels_cells_with_spans_are_matched_exactly():
    spans = [[span(0, 4, "PER", "Anna"), span(10, 15, "ORG", "Acme.")], [span(0, 4, "PER", "Anna")],
             [span(0, 5, "PER", "Anna "), span(10, 15, "ORG", "Acme.")]]
    rows = pd.DataFrame([{"task_id": 1, "annotation_id": i, "text": "t", "ner": json.dumps(s), "annotator": who,
                          "was_cancelled": False} for i, (who, s) in enumerate(zip("abc", spans))])
    out = consensus_rows(rows, {"ner": "Labels"}, "text").iloc[0]
    assert json.loads(out["ner"]) == [span(0, 4, "PER", "Anna"), span(10, 15, "ORG", "Acme.")]
    expected = (2 * 1 / 3 + 2 * 1 / 4 + 0) / 3  # a-b, a-c, b-c
    assert out["agreement"] == pytest.approx(expected, abs=1e-6)
    entry = agreement_report(rows, {"ner": "Labels"})["controls"]["ner"]
    assert entry["exact_span_agreement"] == pytest.approx(expected, abs=1e-6) and "krippendorff_alpha" not in entry
    assert entry["per_label"]["ORG"]["agreement"] == pytest.approx((1 + 0 + 0) / 3, abs=1e-6)
    plain = frame([(1, "a", "", []), (1, "b", "", [])]).assign(kind=["PER|ORG", "ORG|PER"])
    assert agreement_report(plain, {"kind": "Labels"})["controls"]["kind"]["mean_task_agreement"] == 1.0


GROUPED_ROW = st.fixed_dictionaries({"task_id": st.integers(0, 3), "cell": st.sampled_from(["a", "b", None]),
                                     "f1": st.one_of(st.floats(0, 1), st.just(float("nan"))), "gt": st.booleans(),
                                     "text": st.sampled_from(["x", None, "y"])})


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(GROUPED_ROW, max_size=8), sort=st.booleans(), dropna=st.booleans())
def test_each_column_aggregated_on_its_own_equals_pandas_named_aggregation(rows, sort, dropna):
    frame = pd.DataFrame(rows, columns=["task_id", "cell", "f1", "gt", "text"]).astype(
        {"task_id": "int64", "f1": "float64", "gt": "bool"})
    for by, named in [(["task_id", "cell"], {"votes": ("gt", "size"), "gt": ("gt", "any")}),
                      ("cell", {"tasks": ("task_id", "nunique"), "agreement": ("f1", "mean")}),
                      ("task_id", {"label": ("cell", "first"), "size": ("gt", "size"), "x": ("f1", "mean")})]:
        pd.testing.assert_frame_equal(agreement._aggregate(frame, by, sort=sort, dropna=dropna, **named),
                                      frame.groupby(by, sort=sort, dropna=dropna).agg(**named))


@settings(max_examples=60, deadline=None)
@given(st.lists(ANNOTATION, min_size=1, max_size=30))
def test_the_one_answer_per_task_shortcut_equals_counting(draws):
    """:func:`agreement._exact_match` makes the table of tasks with one answer each without counting; on the same
    answers, counting gives the same table (values, dtypes, index). The report's no-overlap shortcut is checked
    against the full computation through the sub-frame of each task's first row."""
    rows = random_frame(draws)
    _, votes = agreement.prepare(rows)
    answers = agreement._answers(votes, "kind", "Choices")
    firsts = answers.drop_duplicates("task_id")
    if len(firsts):
        pd.testing.assert_frame_equal(agreement._exact_match(firsts), agreement._counted_majority(firsts))
    single = rows.drop_duplicates("task_id")  # one annotation per task: no overlap anywhere
    report = agreement_report(single, {"kind": "Choices"})
    entry = report["controls"]["kind"]
    assert entry["tasks_with_overlap"] == 0 and entry["krippendorff_alpha"] is None and entry["per_label"] == {}
    assert all(e["compared"] == 0 and e["agreement_with_majority"] is None for e in report["annotators"].values())


@settings(max_examples=40, deadline=None)
@given(st.lists(ANNOTATION, min_size=1, max_size=30), st.sets(st.integers(0, 5)))
def test_the_votes_of_some_tasks_taken_from_the_whole_version_equal_their_own(draws, tasks):
    """:func:`agreement.prepared_tasks` of the whole version equals :func:`agreement.prepare` of those tasks' rows."""
    rows = random_frame(draws)
    index = pd.Index(sorted(tasks), dtype="int64")
    taken = agreement.prepared_tasks(agreement.prepare(rows), index)
    own = agreement.prepare(rows[rows["task_id"].isin(index)])
    for a, b in zip(taken, own):
        pd.testing.assert_frame_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(st.lists(ANNOTATION, min_size=1, max_size=30), st.randoms(use_true_random=False),
       st.lists(st.booleans(), min_size=30, max_size=30))
def test_the_numpy_counting_equals_the_pandas_groupby_definitions(draws, random, missing_path):
    """The votes, the report's per-annotator figures and the consensus rows' copied values are counted with numpy
    (:func:`agreement._vote_positions`, :func:`agreement._first_values`); on rows in any order, with missing
    ``hf_path`` values, they equal the pandas definitions: sort and ``drop_duplicates``, ``groupby``."""
    rows = random_frame(draws)
    rows["hf_path"] = [None if gone else path for path, gone in zip(rows["hf_path"], missing_path)]
    rows = rows.take(random.sample(range(len(rows)), len(rows))).reset_index(drop=True)
    prepared, votes = agreement.prepare(rows)
    keys = prepared.loc[~prepared["_skip"]].sort_values(["task_id", "_order"], kind="stable")
    expected = keys.drop_duplicates(["task_id", "_who"], keep="last").index.to_numpy()
    assert agreement._vote_positions(prepared).tolist() == expected.tolist()

    report = agreement_report(rows, CONTROLS)
    grouped = prepared.groupby("_who")
    assert list(report["annotators"]) == sorted(grouped.groups)
    for who, entry in report["annotators"].items():
        assert entry["annotations"] == grouped.size()[who]
        assert entry["skipped_rate"] == round(grouped["_skip"].mean()[who], 6)
        assert entry["mean_lead_time"] == round(grouped["lead_time"].mean()[who], 6)

    out = consensus_rows(rows, CONTROLS, "image").set_index("task_id")
    first = prepared.groupby("task_id")[["hf_path", "image"]].first().reindex(out.index).fillna("")
    assert out["hf_path"].tolist() == first["hf_path"].tolist()
    assert out["image"].tolist() == first["image"].tolist()
    assert out["annotators"].tolist() == votes.groupby("task_id").size().reindex(out.index).tolist()


def test_a_label_holding_a_bar_rotated_boxes_hypertext_offsets_and_ties_are_judged_as_they_are():
    """Found by an audit against independent computations: a config label "yes|oui" came out of the consensus as
    "oui|yes" (no label of the config: the Hub's consensus config did not load); boxes of another rotation matched
    at IoU 1; HyperText spans, whose start and end are XPaths, matched whatever their offsets; and a tie made the
    alphabetically first annotator agree with the "majority"."""
    controls = {"kind": "Choices"}
    known = agreement.analyse(frame([(1, "a", "yes|oui", []), (1, "b", "yes|oui", []), (2, "a", "yes|oui", []),
                                     (2, "b", "oui|yes", [])]), controls, labels={"kind": ["yes|oui", "oui", "yes"]})
    rows = consensus_rows(known.rows, controls, "image", known)
    assert rows["kind"].tolist() == ["yes|oui", "oui|yes"]  # one label; two labels, sorted
    assert rows["agreement"].tolist() == [1.0, 0.5]  # the share of answers equal to the majority

    turned = frame([(1, "a", "", [box(0.1, 0.1, 0.2, 0.2)]), (1, "b", "", [{**box(0.1, 0.1, 0.2, 0.2), "rotation": 90}]),
                    (2, "a", "", [{**box(0.1, 0.1, 0.2, 0.2), "rotation": 45}]),
                    (2, "b", "", [{**box(0.1, 0.1, 0.2, 0.2), "rotation": 45}])])
    out = consensus_rows(turned, {"box": "RectangleLabels"}, "image")
    assert out["agreement"].tolist() == [0.0, 1.0]
    assert json.loads(out["box"].iloc[1]) == [{**box(0.1, 0.1, 0.2, 0.2), "rotation": 45.0}]

    anna = {"start": "/p[1]/text()[1]", "end": "/p[1]/text()[1]", "startOffset": 0, "endOffset": 4, "text": "Anna",
            "label": "PER"}
    bob = {**anna, "startOffset": 9, "endOffset": 12, "text": "Bob"}
    pages = pd.DataFrame([{"task_id": 1, "annotation_id": i, "page": "p", "ner": json.dumps(s), "annotator": who,
                           "was_cancelled": False} for i, (who, s) in enumerate(zip("abc", [[anna], [bob], [anna]]))])
    out = consensus_rows(pages, {"ner": "Labels"}, "page").iloc[0]
    assert json.loads(out["ner"]) == [anna] and out["agreement"] == pytest.approx(1 / 3, abs=1e-6)

    ties = frame([(t, who, label, []) for t in (1, 2, 3) for who, label in (("ann", "cat"), ("bob", "dog"))])
    report = agreement_report(ties, controls)
    assert report["controls"]["kind"]["krippendorff_alpha"] == pytest.approx(-2 / 3, abs=1e-3)
    assert [report["annotators"][who]["agreement_with_majority"] for who in ("ann", "bob")] == [None, None]


def test_a_labels_tag_over_image_regions_is_matched_as_boxes_not_by_its_cells():
    """The OCR template's ``<Labels>`` over an image: its cells are boxes with each annotator's own region ``id``, so
    comparing whole cells made identical boxes disagree; they are matched by IoU as RectangleLabels are."""
    a = [{**box(0.1, 0.1, 0.3, 0.1, "Text"), "id": "a1"}, {**box(0.1, 0.5, 0.3, 0.1, "Handwriting"), "id": "a2"}]
    b = [{**box(0.1, 0.1, 0.3, 0.1, "Text"), "id": "b7"}, {**box(0.1, 0.5, 0.3, 0.1, "Handwriting"), "id": "b8"}]
    rows = frame([(1, "a", "", a), (1, "b", "", b)])
    report = agreement_report(rows, {"box": "Labels"})["controls"]["box"]
    assert report["mean_pairwise_iou_agreement"] == pytest.approx(1.0)
    assert set(report["per_label"]) == {"Text", "Handwriting"}
    out = consensus_rows(rows, {"box": "Labels"}, "image").iloc[0]
    assert sorted(r["label"] for r in json.loads(out["box"])) == ["Handwriting", "Text"] and out["agreement"] == 1.0
