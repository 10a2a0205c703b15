"""A version built from the previous export's build (:mod:`labelhub.sync.versions.incremental`) equals a version
built from scratch of the same annotations, byte for byte: after added, edited, deleted and skipped annotations, an
annotator's email learnt, a task's data changed, and values that change a column's dtype. The reference is a copy of
the state (another file, so nothing is kept for it) whose rows are made by ``rows_frame`` and whose files are made by
the functions the exporter called before. Pure: a real sync state, no servers."""
from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import sample_repos

from labelhub.label_config import control_tags, data_field
from labelhub.repos.git import LocalGitRepo
from labelhub.repos.texts import FileTexts
from labelhub.sync.state import SyncState
from labelhub.sync.versions.agreement import agreement_report, analyse, consensus_rows
from labelhub.sync.versions.diff import diff_frames
from labelhub.sync.versions.exporter import differing_ids, json_lines, label_changes, label_columns
from labelhub.sync.versions.incremental import build_files, build_rows, current_revisions
from labelhub.sync.versions.rows import label_distribution
from labelhub.sync.versions.training import (consensus_records, consensus_text_files, control_labels,
                                             folder_patterns, on_current_content, text_files, training_records)

REPO = "owner/images"
SHA, OTHER_SHA = "1" * 40, "2" * 40
IMAGES = ('<View><Image name="image" value="$image"/>'
          '<Choices name="kind" toName="image" choice="multiple"><Choice value="a"/><Choice value="b"/>'
          '<Choice value="c"/></Choices>'
          '<RectangleLabels name="box" toName="image"><Label value="x"/><Label value="y"/></RectangleLabels>'
          '<TextArea name="note" toName="image"/></View>')
TEXTS = ('<View><Text name="text" value="$text"/>'
         '<Labels name="ner" toName="text"><Label value="PER"/><Label value="LOC"/></Labels></View>')


def image_task(task: int, pinned: bool = True, **meta) -> dict:
    url = f"https://hub/datasets/{REPO}/resolve/{SHA}/img/{task}.png" if pinned else f"https://cdn/img/{task}.png"
    return {"image": url, "hf_path": f"img/{task}.png", "hf_repo": REPO, "hf_revision": SHA, **meta}


def image_annotation(aid: int, who: int, choices=("a",), boxes=(), note: str | None = None, skipped=False,
                     updated="2026-01-01T00:00:00Z", **extra) -> dict:
    result = [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": list(choices)}}]
    result += [{"from_name": "box", "to_name": "image", "type": "rectanglelabels",
                "value": {"x": x, "y": y, "width": 20, "height": 20, "rectanglelabels": [label]}}
               for x, y, label in boxes]
    if note is not None:
        result.append({"from_name": "note", "to_name": "image", "type": "textarea", "value": {"text": [note]}})
    return {"id": aid, "completed_by": who, "lead_time": 2.5, "created_at": "2026-01-01T00:00:00Z",
            "updated_at": updated, "was_cancelled": skipped, "result": [] if skipped else result, **extra}


def span_annotation(aid: int, who: int, spans, updated="2026-01-01T00:00:00Z", text: bool = True) -> dict:
    """``text=False``: the spans carry no ``text``, as Label Studio saves them over ``<Text valueType="url">``."""
    return {"id": aid, "completed_by": who, "lead_time": 1.0, "updated_at": updated,
            "result": [{"from_name": "ner", "to_name": "text", "type": "labels",
                        "value": {"start": s, "end": e, **({"text": "x" * (e - s)} if text else {}),
                                  "labels": [label]}}
                       for s, e, label in spans]}


def add(state: SyncState, task: int, data: dict, *annotations: dict) -> None:
    state.upsert_task(task, data)
    state.apply_annotations(task, list(annotations), complete=False)


def copy_of(state: SyncState, tmp_path: Path) -> SyncState:
    """The same state in another file (a build of it keeps nothing from ``state``'s builds)."""
    path = tmp_path / f"copy-{uuid.uuid4().hex}.sqlite3"
    target = sqlite3.connect(path)
    state.db.backup(target)
    target.close()
    return SyncState(path, *state.key)


def assert_same_as_from_scratch(state: SyncState, tmp_path: Path, config: str, local: bool = False,
                                revision: str = OTHER_SHA, absent: frozenset[str] = frozenset(),
                                texts: FileTexts | None = None):
    """Build the next version incrementally and check every output against a build from scratch (``absent``: the
    files a local repository no longer holds, whose rows leave the folder layout's records; ``texts``: the reader
    of a ``valueType="url"`` text's files, the reference reads them with a reader of its own)."""
    controls, field = control_tags(config), data_field(config)
    built = build_rows(state, controls, field.value_key)
    files = build_files(state, built.frame, config, controls, field, REPO, local, revision, absent=absent,
                        texts=texts)
    reference = build_rows(copy_of(state, tmp_path), controls, field.value_key).frame  # rows_frame of every row
    pd.testing.assert_frame_equal(built.frame, reference, check_exact=True)
    assert built.csv == reference.to_csv(index=False, lineterminator="\n").encode()
    fresh = FileTexts(texts.repo) if texts is not None else None
    current = current_revisions(state)
    wanted = text_files(reference, field, current)
    records = [r for r in training_records(reference, config, controls, field, REPO, local,
                                           fresh and fresh.texts(wanted, as_url=field.as_url), current)
               if r.get("file_name") not in absent]
    assert files.training == json_lines(records)
    assert files.training_patterns("metadata.jsonl") == folder_patterns(records, "metadata.jsonl")
    voting = reference[on_current_content(reference, field, current)].reset_index(drop=True)
    analysis = analyse(voting, controls, labels=control_labels(config, controls))
    made = consensus_rows(voting, controls, field.value_key, analysis)
    consensus = [r for r in consensus_records(made, config, controls, field, REPO, local, revision,
                                              fresh and fresh.texts(consensus_text_files(made, field, revision),
                                                                    as_url=field.as_url))
                 if r.get("file_name") not in absent]
    assert files.consensus == json_lines(consensus)
    assert files.consensus_patterns("consensus.jsonl") == folder_patterns(consensus, "consensus.jsonl")
    assert files.rows_json == reference.to_json(orient="records", lines=True).encode()
    assert files.agreement == agreement_report(voting, controls, analysis)
    assert files.label_distribution == label_distribution(reference, controls, known=control_labels(config, controls))
    return built


def test_an_incremental_export_equals_a_build_from_scratch_of_the_same_annotations(tmp_path):
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    state.set_users({1: "ann@example.com", 2: "bob@example.com"})
    boxes = [(10, 10, "x"), (50, 50, "y")]
    for task in range(1, 13):
        people = (1, 2, 3) if task % 3 == 0 else (1 + task % 2,)
        add(state, task, image_task(task, pinned=task != 5, batch=task // 4),
            *(image_annotation(task * 10 + who, who, choices=("a", "b") if who == 3 else ("a",),
                               boxes=boxes[: 1 + (task + who) % 2], note="ok" if who == 1 else None,
                               skipped=task == 4 and who == 1, ground_truth=task == 6)
              for who in people))
    first = assert_same_as_from_scratch(state, tmp_path, IMAGES)
    assert first.reused == 0

    add(state, 3, image_task(3, batch=0), image_annotation(34, 4, choices=("c",), boxes=[(11, 11, "x")]))
    add(state, 6, image_task(6, batch=1), image_annotation(61, 1, choices=("b",), updated="2027-01-01T00:00:00Z"))
    state.delete_annotations([92])
    resaved = json.loads(state.db.execute("SELECT body FROM annotations WHERE annotation_id=12").fetchone()[0])
    state.apply_annotations(1, [{**resaved, "updated_at": "2027-02-01T00:00:00Z", "lead_time": 9.5}], complete=False)
    built = assert_same_as_from_scratch(state, tmp_path, IMAGES)
    assert built.reused == len(built.frame) - 3  # the new annotation, the edited one and the re-saved one made again
    assert built.hashes[12] != first.hashes[12] and built.contents[12] == first.contents[12]  # saved, same content
    assert b"2027-02-01T00:00:00Z" in built.csv

    state.set_users({3: "cy@example.com"})  # an annotator's email learnt: their rows change
    state.upsert_task(7, image_task(7, batch=9, split="test"))  # a task's data changed: a new column
    state.apply_annotations(8, [image_annotation(81, 1, skipped=True, updated="2027-01-01T00:00:00Z")],
                            complete=False)
    assert_same_as_from_scratch(state, tmp_path, IMAGES)
    assert_same_as_from_scratch(state, tmp_path, IMAGES, revision=SHA)  # the unpinned task's media follow it
    assert_same_as_from_scratch(state, tmp_path, IMAGES, local=True)
    gone = image_task(3, batch=0)["hf_path"]  # removed from the local repository after it was annotated
    assert_same_as_from_scratch(state, tmp_path, IMAGES, local=True, absent=frozenset({gone}))
    assert gone.encode() not in build_files(state, build_rows(state, control_tags(IMAGES), "image").frame, IMAGES,
                                            control_tags(IMAGES), data_field(IMAGES), REPO, True, OTHER_SHA,
                                            absent=frozenset({gone})).training

    state.delete_task_annotations(range(1, 13))
    empty = assert_same_as_from_scratch(state, tmp_path, IMAGES)
    assert empty.frame.empty


def test_spans_over_text_are_rebuilt_per_changed_task(tmp_path):
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    for task in range(1, 6):
        add(state, task, {"text": "x" * 40, "hf_path": f"t/{task}.txt", "hf_revision": SHA},
            *(span_annotation(task * 10 + who, who, [(0, 4, "PER"), (10, 10 + who, "LOC")]) for who in (1, 2, 3)))
    assert_same_as_from_scratch(state, tmp_path, TEXTS)
    add(state, 2, {"text": "x" * 40, "hf_path": "t/2.txt", "hf_revision": SHA},
        span_annotation(21, 1, [(0, 4, "LOC")], updated="2027-01-01T00:00:00Z"))
    state.delete_annotations([33])
    built = assert_same_as_from_scratch(state, tmp_path, TEXTS)
    assert built.reused == len(built.frame) - 1


def test_spans_saved_without_their_text_over_a_text_in_the_task_data_get_it_in_the_training_rows(tmp_path):
    """A Hub-path audit: spans made through the API over a ``<Text value="$text">`` (no ``text`` saved) had an empty
    ``text`` in the default and consensus configs, which the README promised from the row's own text."""
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    sentence = "John Smith works in Paris."
    for task in (1, 2):
        add(state, task, {"text": sentence, "hf_path": f"t/{task}.txt", "hf_revision": SHA},
            span_annotation(task * 10, 1, [(0, 10, "PER"), (20, 25, "LOC"), (20, 99, "LOC")], text=False))
    built = assert_same_as_from_scratch(state, tmp_path, TEXTS)
    field = data_field(TEXTS)
    records = training_records(built.frame, TEXTS, control_tags(TEXTS), field, REPO, False)
    assert [[span["text"] for span in r["ner"]] for r in records] == [["John Smith", "Paris", ""]] * 2
    consensus = build_files(state, built.frame, TEXTS, control_tags(TEXTS), field, REPO, False, SHA).consensus.decode()
    assert '"text": "John Smith"' in consensus.replace('":"', '": "') and '"Paris"' in consensus


#: Task metadata values of every JSON kind pandas types differently (a missing key too: ``None`` here drops it).
META = st.one_of(st.none(), st.just("absent"), st.integers(-3, 3), st.just(2 ** 63 + 1), st.floats(-2, 2),
                 st.booleans(), st.sampled_from(["a", "b"]), st.lists(st.integers(0, 2), max_size=2))
STEP = st.tuples(st.sampled_from(["add", "edit", "delete", "skip", "meta", "email", "resave"]), st.integers(0, 7),
                 st.integers(1, 3), st.lists(st.sampled_from("abc"), min_size=0, max_size=2),
                 st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60), st.sampled_from("xy")), max_size=2), META)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=6))
def test_any_sequence_of_changes_builds_the_same_version_as_from_scratch(tmp_path, steps):
    state = SyncState(tmp_path / f"{uuid.uuid4().hex}.sqlite3", 7, REPO)
    for task in range(4):
        add(state, task, image_task(task, meta=task), image_annotation(task * 10 + 1, 1, boxes=[(5, 5, "x")]))
    previous = assert_same_as_from_scratch(state, tmp_path, IMAGES)
    version = 1
    for op, task, who, choices, boxes, meta in steps:
        version += 1
        updated = f"{2026 + version}-01-01T00:00:00Z"
        if op in ("add", "edit", "skip"):
            aid = task * 10 + (who if op == "add" else 1)
            add(state, task, image_task(task, meta=task),
                image_annotation(aid, who, choices, boxes, skipped=op == "skip", updated=updated))
        elif op == "delete":
            state.delete_annotations([task * 10 + who])
        elif op == "meta":
            state.upsert_task(task, image_task(task, **({} if meta == "absent" else {"meta": meta})))
        elif op == "resave":  # Update clicked with the same labels: only the bookkeeping columns change
            stored = state.db.execute("SELECT body FROM annotations WHERE annotation_id=? AND deleted=0",
                                      (task * 10 + who,)).fetchone()
            if stored:
                body = json.loads(stored[0])
                state.apply_annotations(task, [{**body, "updated_at": updated,
                                                "lead_time": (body.get("lead_time") or 0) + 1}], complete=False)
        else:
            state.set_users({who: f"user{version}@example.com"})
        built = assert_same_as_from_scratch(state, tmp_path, IMAGES)
        assert_changes_are_the_whole_diff(previous, built, control_tags(IMAGES))
        if op == "resave" and stored and task * 10 + who in previous.hashes:
            aid = task * 10 + who
            assert built.hashes[aid] != previous.hashes[aid] and built.contents[aid] == previous.contents[aid]
        previous = built


def assert_changes_are_the_whole_diff(old, new, controls) -> None:
    """The exporter's changes, compared on the rows whose content hash differs, equal the diff of every row (the
    older version's label columns as the state keeps them: JSON records)."""
    old_records = label_columns(old.frame, controls).to_json(orient="records")
    labels = label_columns(new.frame, controls)
    ids = differing_ids(old.contents, new.contents)
    whole = diff_frames(pd.DataFrame(json.loads(old_records), columns=list(labels.columns)), labels, controls,
                        "v1", "v2")
    assert label_changes(old_records, labels, ids, controls, "v1", "v2").to_dict() == whole.to_dict()


def test_a_frame_of_another_build_is_built_from_scratch(tmp_path):
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    add(state, 1, image_task(1), image_annotation(11, 1), image_annotation(12, 2, choices=("b",)))
    controls, field = control_tags(IMAGES), data_field(IMAGES)
    frame = build_rows(state, controls, field.value_key).frame.copy()
    files = build_files(state, frame, IMAGES, controls, field, REPO, False, SHA)
    assert files.agreement == agreement_report(frame, controls)
    assert json.loads(files.consensus)["kind"] == ["a"]  # a tie: the smallest answer


VALUE = st.one_of(st.integers(-(2 ** 63), 2 ** 64 - 1), st.floats(allow_nan=True), st.booleans(), st.none(),
                  st.text(max_size=5), st.just(float("nan")))


@settings(max_examples=200, deadline=None)
@given(st.lists(VALUE, min_size=1, max_size=6), st.sampled_from(["int64", "uint64", "float64", "bool", "object", "str"]))
def test_a_new_rows_column_holds_what_a_series_of_its_dtype_holds(values, dtype):
    """The columns of an export's new rows are made without a Series (``incremental._column``): for any values,
    a frame gets the same column as from ``pd.Series(values, dtype=dtype)``, or the same error is raised."""
    from labelhub.sync.versions.incremental import _column

    dtype = pd.Series(dtype=dtype).dtype
    try:
        expected = pd.Series(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        try:
            _column(values, dtype)
        except type(exc):
            return
        raise AssertionError(f"{values!r} as {dtype} made a column where pandas raises {exc!r}")
    pd.testing.assert_frame_equal(pd.DataFrame({"c": _column(values, dtype)}), pd.DataFrame({"c": expected}))


def test_an_annotation_changed_while_its_row_is_made_is_exported_as_it_is_now(tmp_path, monkeypatch):
    """The receiver's thread applies webhooks while an export makes its rows: a row made from the annotation as it
    was must not be stored, or every later version would keep the older label."""
    from labelhub.sync.annotations.intake import AnnotationIntake
    from labelhub.sync.state import SyncState
    from labelhub.sync.versions import incremental

    state = SyncState(tmp_path / "s.sqlite3", 1, "o/r")
    receiver = AnnotationIntake(None, SyncState(tmp_path / "s.sqlite3", 1, "o/r"))  # its own connection
    task = {"id": 5, "data": {"image": "https://example.test/5.png"}}

    def event(action, label, second):
        receiver.apply_event(action, {"task": task, "annotation": {
            "id": 100, "task": 5, "completed_by": 7, "updated_at": f"2026-01-01T00:00:0{second}.000000Z",
            "result": [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]}})

    event("ANNOTATION_CREATED", "a", 0)
    row = incremental.annotation_row
    changed = []

    def racing(*args, **kwargs):
        made = row(*args, **kwargs)
        if not changed:
            changed.append(event("ANNOTATION_UPDATED", "b", 9))  # lands between the read and the store
        return made

    monkeypatch.setattr(incremental, "annotation_row", racing)
    built = incremental.build_rows(state, {"kind": "Choices"}, "image")
    assert changed and list(built.frame["kind"]) == ["b"]


def test_an_annotation_changed_after_the_rows_are_made_is_in_the_version_as_it_is_now(tmp_path, monkeypatch):
    """A webhook that changes *another* annotation while an export makes its rows drops that annotation's stored row
    after the export looked for rows to make: the version must still hold it (found by an audit: it was left out,
    and the version counted it as removed)."""
    from labelhub.sync.annotations.intake import AnnotationIntake
    from labelhub.sync.state import SyncState
    from labelhub.sync.versions import incremental

    state = SyncState(tmp_path / "s.sqlite3", 1, "o/r")
    receiver = AnnotationIntake(None, SyncState(tmp_path / "s.sqlite3", 1, "o/r"))  # its own connection

    def event(action, annotation_id, label, second):
        task = {"id": annotation_id, "data": {"image": f"https://example.test/{annotation_id}.png"}}
        receiver.apply_event(action, {"task": task, "annotation": {
            "id": annotation_id, "task": annotation_id, "completed_by": 7,
            "updated_at": f"2026-01-01T00:00:0{second}.000000Z",
            "result": [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]}})

    event("ANNOTATION_CREATED", 100, "a", 0)
    event("ANNOTATION_CREATED", 101, "a", 0)
    assert len(incremental.build_rows(state, {"kind": "Choices"}, "image").frame) == 2
    event("ANNOTATION_UPDATED", 100, "b", 1)  # the export makes 100's row again...
    row = incremental.annotation_row
    changed = []

    def racing(*args, **kwargs):
        made = row(*args, **kwargs)
        if not changed:  # ...and meanwhile another annotator re-saves 101
            changed.append(event("ANNOTATION_UPDATED", 101, "c", 2))
        return made

    monkeypatch.setattr(incremental, "annotation_row", racing)
    built = incremental.build_rows(state, {"kind": "Choices"}, "image")
    assert changed
    assert dict(zip(built.frame["annotation_id"], built.frame["kind"])) == {100: "b", 101: "c"}


def test_labels_the_config_lacks_follow_its_labels_in_the_class_label_so_the_version_loads():
    """Label Studio's API takes a choice the config does not name; a ClassLabel without it fails load_dataset."""
    from labelhub.label_config import data_field
    from labelhub.sync.versions.training import training_features

    config = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
              '<Choice value="b"/><Choice value="a"/></Choices></View>')
    features = training_features(config, {"kind": "Choices"}, data_field(config),
                                 found={"kind": {"a": 3, "zz-scripted": 2, "c-removed": 1}})
    assert features["kind"].names == ["b", "a", "c-removed", "zz-scripted"]  # the config's keep their indices
    assert training_features(config, {"kind": "Choices"}, data_field(config))["kind"].names == ["b", "a"]


def test_task_data_keys_named_like_export_columns_do_not_overwrite_them():
    from labelhub.sync.versions.rows import annotation_row

    task = {"id": 5, "data": {"image": "https://example.test/5.png", "kind": "meta", "annotation_id": "m-1",
                              "task_id": "t-9", "annotator": "someone@metadata", "source": "v1"}}
    annotation = {"id": 100, "completed_by": 7, "result": [
        {"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": ["a"]}}]}
    row = annotation_row(task, annotation, {"kind": "Choices"}, "image", {7: "ann@example.test"})
    assert (row["task_id"], row["annotation_id"], row["kind"], row["annotator"]) == (5, 100, "a", "ann@example.test")
    assert (row["data.kind"], row["data.annotation_id"], row["data.task_id"], row["data.annotator"], row["source"]) \
        == ("meta", "m-1", "t-9", "someone@metadata", "v1")


def test_a_task_not_made_from_the_repo_stays_in_the_csv_but_not_in_the_training_rows():
    """Its media cell would point nowhere (``hf://datasets/o/r@/``), and datasets stops reading the whole split."""
    from labelhub.label_config import data_field
    from labelhub.sync.versions.rows import annotation_row, rows_frame
    from labelhub.sync.versions.training import training_records_by_row

    config = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
              '<Choice value="a"/></Choices></View>')
    result = [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": ["a"]}}]
    tasks = [{"id": 1, "data": {"image": "https://hub/x", "hf_path": "a.png", "hf_revision": "a" * 40}},
             {"id": 2, "data": {"image": "https://elsewhere.test/b.png"}}]  # imported into Label Studio by hand
    frame = rows_frame([annotation_row(task, {"id": 10 + task["id"], "result": result}, {"kind": "Choices"}, "image",
                                       {}) for task in tasks], {"kind": "Choices"}, "image")
    for local in (False, True):
        first, second = training_records_by_row(frame, config, {"kind": "Choices"}, data_field(config), "o/r", local)
        assert second is None and first["kind"] == "a"
    assert list(frame["task_id"]) == [1, 2]


def test_labels_over_another_tag_than_text_are_a_string_cell_not_character_spans():
    """A Labels region over an Image (or an Audio span in seconds) is no character span: typed as one, every export
    failed (the cell is not the spans' JSON) or the version did not load (seconds into int32)."""
    from labelhub.label_config import data_field
    from labelhub.sync.versions.rows import annotation_row, rows_frame
    from labelhub.sync.versions.training import training_features, training_records_by_row

    config = ('<View><Image name="image" value="$image"/><Labels name="lbl" toName="image"><Label value="cat"/>'
              '</Labels><Rectangle name="box" toName="image"/></View>')
    result = [{"from_name": "lbl", "to_name": "image", "type": "labels",
               "value": {"x": 10, "y": 10, "width": 20, "height": 20, "labels": ["cat"]}}]
    task = {"id": 1, "data": {"image": "https://hub/x", "hf_path": "a.png", "hf_revision": "a" * 40}}
    frame = rows_frame([annotation_row(task, {"id": 11, "result": result}, {"lbl": "Labels"}, "image", {})],
                       {"lbl": "Labels"}, "image")
    [record] = training_records_by_row(frame, config, {"lbl": "Labels"}, data_field(config), "o/r", False)
    assert isinstance(record["lbl"], str) and "cat" in record["lbl"]
    assert training_features(config, {"lbl": "Labels"}, data_field(config))["lbl"].dtype == "string"


def test_a_control_named_like_an_export_column_is_refused_when_the_exporter_starts(tmp_path):
    from labelhub.errors import ConfigurationError
    from labelhub.repos.git import LocalGitRepo
    from labelhub.sync.state import SyncState
    from labelhub.sync.versions.exporter import Exporter
    from tests import sample_repos

    class Project:
        project_id, url, title = 1, "http://ls.test", "p"
        label_config = ('<View><Image name="image" value="$image"/><Choices name="annotator" toName="image">'
                        '<Choice value="a"/></Choices></View>')

    repo = LocalGitRepo(str(sample_repos.local_repo_with(tmp_path / "repo", {"a.png": b"png"})))
    with pytest.raises(ConfigurationError, match="control tag 'annotator' is named like a column"):
        Exporter(repo, Project(), SyncState(tmp_path / "s.sqlite3", 1, repo.repo_id))


def test_a_label_holding_a_bar_stays_whole_in_the_training_rows():
    """The CSV joins a cell's labels with "|": a config label "a|b" read back as "a" was the wrong class (local) or
    no class at all (the Hub's ClassLabel)."""
    from labelhub.label_config import data_field
    from labelhub.sync.versions.rows import annotation_row, rows_frame
    from labelhub.sync.versions.training import split_labels, training_records_by_row

    assert split_labels("a|b|plain", ["a|b", "plain"]) == ["a|b", "plain"]
    assert split_labels("x|y", ["a|b"]) == ["x", "y"] and split_labels("a|b", ["a", "b", "a|b"]) == ["a|b"]
    config = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image"><Choice value="a|b"/>'
              '<Choice value="c"/></Choices><Choices name="tags" toName="image" choice="multiple"><Choice value="a|b"/>'
              '<Choice value="plain"/></Choices></View>')
    controls = {"kind": "Choices", "tags": "Choices"}
    result = [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": ["a|b"]}},
              {"from_name": "tags", "to_name": "image", "type": "choices", "value": {"choices": ["a|b", "plain"]}}]
    task = {"id": 1, "data": {"image": "https://hub/x", "hf_path": "a.png", "hf_revision": "a" * 40}}
    frame = rows_frame([annotation_row(task, {"id": 11, "result": result}, controls, "image", {})], controls, "image")
    [record] = training_records_by_row(frame, config, controls, data_field(config), "o/r", False)
    assert record["kind"] == "a|b" and record["tags"] == ["a|b", "plain"]


def test_a_label_holding_a_bar_counts_whole_in_the_label_distribution(tmp_path):
    """The manifest's and card's ``label_distribution`` (also the labels a version's ``ClassLabel`` adds) counted a
    config label "a|b" as "a" and "b"; labels the config lacks still split at every "|"."""
    config = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image" choice="multiple">'
              '<Choice value="a|b"/><Choice value="c"/></Choices></View>')
    controls, field = control_tags(config), data_field(config)
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    chose = [["a|b", "c"], ["a|b"], ["x|y"]]
    for task, choices in enumerate(chose, 1):
        result = [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": choices}}]
        add(state, task, image_task(task), {**image_annotation(task * 10, 1), "result": result})
    for task, more in ((None, {"a|b": 2, "c": 1, "x": 1, "y": 1}), (4, {"a|b": 3, "c": 1, "x": 1, "y": 1})):
        if task:  # the second build is incremental
            add(state, task, image_task(task), {**image_annotation(task * 10, 1), "result": [
                {"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": ["a|b"]}}]})
        built = build_rows(state, controls, field.value_key)
        files = build_files(state, built.frame, config, controls, field, REPO, False, OTHER_SHA)
        assert files.label_distribution == {"kind": more}
    assert label_distribution(built.frame, controls) == {"kind": {"a": 3, "b": 3, "c": 1, "x": 1, "y": 1}}
    assert_same_as_from_scratch(state, tmp_path, config)


def test_a_cell_holding_a_carriage_return_is_quoted_so_its_row_reads_back_whole(tmp_path):
    """pandas quotes only cells holding ``\\n``; a lone ``\\r`` (old Mac line ends) unquoted splits the row for every
    CSV reader. Only such rows are written with their text cells quoted."""
    import io

    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    add(state, 1, image_task(1, caption="first line\rsecond line"), image_annotation(10, 1, note="a\rb"))
    add(state, 2, image_task(2, caption="plain"), image_annotation(20, 1, note="plain"))
    controls = control_tags(IMAGES)
    built = build_rows(state, controls, "image")
    back = pd.read_csv(io.StringIO(built.csv.decode()), keep_default_na=False)
    assert back["caption"].tolist() == ["first line\rsecond line", "plain"]
    assert back["note"].tolist() == ["a\rb", "plain"]
    lines = built.csv.decode().split("\n")
    assert '"img/1.png"' in lines[1] and '"img/2.png"' not in lines[2]  # the other row is written as before
    assert lines[2] == built.frame.iloc[[1]].to_csv(index=False, header=False, lineterminator="\n").rstrip("\n")


def test_rows_a_state_kept_in_an_older_format_are_made_again_once(tmp_path):
    """Rows an older LabelHub stored (several TextArea entries joined with a newline, under the fingerprint without
    ``ROW_FORMAT``) are made again by the next export: one version does not hold both forms."""
    import hashlib

    from labelhub.sync.state import ROWS_CONFIG
    from labelhub.sync.versions.rows import annotation_reference, annotation_row, content_hash

    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    controls = control_tags(IMAGES)
    two = image_annotation(10, 1)
    two["result"].append({"from_name": "note", "to_name": "image", "type": "textarea",
                          "value": {"text": ["first", "second"]}})
    add(state, 1, image_task(1), two)
    state.set_cursor(ROWS_CONFIG, json.dumps([controls, "image"], sort_keys=True))  # the older fingerprint
    (task, annotation, stamp), = state.live_annotations_without_row(json.dumps([controls, "image"], sort_keys=True))
    row = annotation_row(task, annotation, controls, "image", {})
    del row["annotator"]
    row["note"] = "first\nsecond"  # as the older LabelHub wrote it
    text = json.dumps(row, sort_keys=True, default=str)
    assert state.store_rows([(10, text, hashlib.sha256(text.encode()).hexdigest(), annotation_reference(annotation),
                              content_hash(row))], [stamp]) == 1
    built = build_rows(state, controls, "image")
    assert built.frame["note"].tolist() == ['["first", "second"]']


def test_a_task_not_made_from_the_repo_builds_the_version_files_incrementally_too(tmp_path):
    """A task imported by hand (no ``hf_path``) beside the repo's: the incremental build pairs each task with its
    consensus record, none for that task (the export failed with "Length of values (1) does not match")."""
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    add(state, 1, image_task(1), image_annotation(10, 1))
    add(state, 2, {"image": "https://example.test/hand.png"}, image_annotation(20, 1), image_annotation(21, 2))
    for local in (False, True):
        built = assert_same_as_from_scratch(state, tmp_path, IMAGES, local=local)
        files = build_files(state, built.frame, IMAGES, control_tags(IMAGES), data_field(IMAGES), REPO, local,
                            OTHER_SHA)
        assert b"hand.png" not in files.consensus and b"hand.png" in built.csv
    add(state, 2, {"image": "https://example.test/hand.png"}, image_annotation(20, 1, choices=("b",)))
    assert_same_as_from_scratch(state, tmp_path, IMAGES)  # the next export, made from this one's build


def test_results_no_control_column_holds_are_kept_in_other_results_and_the_export_goes_on(tmp_path, caplog):
    """Label Studio's API stores any result: one box without numbers (or a span without offsets, a taxonomy path
    holding a number) failed every export of the project, and relations were dropped without a word."""
    bad_box = {"from_name": "box", "to_name": "image", "type": "rectanglelabels",
               "value": {"x": "10", "y": 1, "width": 2, "height": 3, "rectanglelabels": ["x"]}}
    relation = {"from_id": "r1", "to_id": "r2", "type": "relation", "direction": "right", "labels": []}
    gone = {"from_name": "removed", "to_name": "image", "type": "choices", "value": {"choices": ["old"]}}
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    add(state, 1, image_task(1, other_results="meta"), image_annotation(10, 1, boxes=[(10, 10, "x")]))
    bad = image_annotation(20, 1, boxes=[(30, 30, "y")])
    add(state, 2, image_task(2), {**bad, "result": [*bad["result"], bad_box, relation, gone]})
    built = assert_same_as_from_scratch(state, tmp_path, IMAGES)
    first, second = built.frame.to_dict("records")
    columns = list(built.frame.columns)
    assert columns[columns.index("annotated_revision") + 1:] == ["other_results", "data.other_results"]
    assert json.loads(second["other_results"]) == [bad_box, relation, gone]
    assert json.loads(second["box"]) == [{"x": 0.3, "y": 0.3, "width": 0.2, "height": 0.2, "label": "y"}]
    assert first["data.other_results"] == "meta" and pd.isna(first["other_results"])
    assert "task 2, annotation 20: box is a box without numbers x, y, width, height" in caplog.text
    spans = [{"from_name": "ner", "to_name": "text", "type": "labels", "value": {"labels": ["PER"]}},
             {"from_name": "ner", "to_name": "text", "type": "labels", "value": {"start": 0, "end": 2, "labels": ["LOC"]}}]
    texts = SyncState(tmp_path / "texts.sqlite3", 7, REPO)
    add(texts, 1, {"text": "ab", "hf_path": "a.txt", "hf_revision": SHA}, {**span_annotation(10, 1, []), "result": spans})
    row = assert_same_as_from_scratch(texts, tmp_path, TEXTS).frame.iloc[0]
    assert json.loads(row["other_results"]) == spans[:1] and json.loads(row["ner"])[0]["label"] == "LOC"


def test_regions_with_ids_rotation_and_per_region_values_build_every_file(tmp_path):
    """A box's id, rotation and per-region values ride in its CSV item: the training rows, the consensus and the
    agreement read its place and label as before."""
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    for who in (1, 2):
        ann = image_annotation(10 + who, who, boxes=[(10, 10, "x")])
        box = next(r for r in ann["result"] if r["from_name"] == "box")
        box.update(id=f"b{who}")
        box["value"]["rotation"] = 30
        ann["result"].append({"id": f"b{who}", "from_name": "note", "to_name": "image", "type": "textarea",
                              "value": {"text": [f"box of {who}"]}})
        add(state, 1, image_task(1), ann) if who == 1 else state.apply_annotations(1, [ann], complete=False)
    built = assert_same_as_from_scratch(state, tmp_path, IMAGES)
    cell = json.loads(built.frame["box"].iloc[0])
    assert cell == [{"x": 0.1, "y": 0.1, "width": 0.2, "height": 0.2, "label": "x", "rotation": 30, "id": "b1",
                     "per_region": {"note": {"text": ["box of 1"]}}}]
    [record, _] = training_records(built.frame, IMAGES, control_tags(IMAGES), data_field(IMAGES), REPO, False)
    assert record["box"] == [{"x": 0.1, "y": 0.1, "width": 0.2, "height": 0.2, "rotation": 30, "label": "x"}]  # typed


URL_TEXTS = ('<View><Text name="text" value="$text" valueType="url"/>'
             '<Labels name="ner" toName="text"><Label value="PER"/><Label value="LOC"/></Labels></View>')


def url_text_task(repo: LocalGitRepo, sha: str, path: str) -> dict:
    return {"text": repo.file_url(sha, path), "hf_path": path, "hf_repo": repo.repo_id, "hf_revision": sha}


@pytest.mark.parametrize("local", [False, True], ids=["hub-layout", "local-layout"])
def test_a_text_url_version_holds_the_files_texts_and_an_export_reads_only_new_files(tmp_path, local, caplog):
    """``<Text valueType="url">`` over a real git repository: the training and consensus records hold each file's
    text (at the annotation's revision; the consensus at its task's URL's), equal to a build from scratch; an
    export after one new annotation of a new file reads that file alone, a second annotation of a read file none;
    a file not UTF-8 is decoded with U+FFFD and named in a warning, a file the repo lacks at the annotation's
    revision gives ``None`` and a warning, and each row stays."""
    path = tmp_path / "texts"
    files = {f"t/{task}.txt": f"Text {task}: Alice went to Paris.".encode() for task in range(1, 6)}
    files["t/6.txt"] = "caf\u00e9 ".encode() + b"\xff\xfe bytes"
    sample_repos.init_local_repo(path)
    first = sample_repos.commit_local(path, files, message="texts")
    repo = LocalGitRepo(path)
    texts = FileTexts(repo)
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    for task in range(1, 4):
        add(state, task, url_text_task(repo, first, f"t/{task}.txt"),
            *(span_annotation(task * 10 + who, who, [(0, 4, "PER"), (20, 99, "LOC")], text=who == 2) for who in (1, 2)))
    built = assert_same_as_from_scratch(state, tmp_path, URL_TEXTS, local=local, revision=first, texts=texts)
    assert texts.reads == 3
    field = data_field(URL_TEXTS)
    records = training_records(built.frame, URL_TEXTS, control_tags(URL_TEXTS), field, REPO, local,
                               texts.texts(text_files(built.frame, field)))
    assert [(r["hf_path"], r["text"]) for r in records] == [(f"t/{t}.txt", files[f"t/{t}.txt"].decode())
                                                           for t in (1, 1, 2, 2, 3, 3)]
    # a span saved without its text gets the file's between its offsets (one past the end keeps none); a saved one
    # keeps its own
    assert [[span["text"] for span in r["ner"]] for r in records] == [["Text", ""], ["xxxx", "x" * 79]] * 3
    assert set(built.frame["text"]) == {repo.file_url(first, f"t/{t}.txt") for t in (1, 2, 3)}  # the CSV's URL
    assert texts.reads == 3  # all from the cache

    add(state, 4, url_text_task(repo, first, "t/4.txt"), span_annotation(41, 1, [(5, 6, "LOC")]))
    assert_same_as_from_scratch(state, tmp_path, URL_TEXTS, local=local, revision=first, texts=texts)
    assert texts.reads == 4  # the new file, once for its training and consensus records
    add(state, 4, url_text_task(repo, first, "t/4.txt"), span_annotation(42, 2, [(5, 6, "LOC")]))
    assert_same_as_from_scratch(state, tmp_path, URL_TEXTS, local=local, revision=first, texts=texts)
    assert texts.reads == 4

    # t/5.txt moved to t/moved.txt after it was annotated: no such path at the annotation's revision
    moved = sample_repos.commit_local(path, {"t/moved.txt": files["t/5.txt"]}, deletes=("t/5.txt",), message="mv")
    caplog.set_level("WARNING", logger="labelhub.repos.texts")
    add(state, 5, {**url_text_task(repo, moved, "t/moved.txt"), "hf_revision": first},
        {**span_annotation(51, 1, [(0, 4, "PER")]), "annotated_revision": first})
    add(state, 6, url_text_task(repo, first, "t/6.txt"), span_annotation(61, 1, [(0, 4, "PER")]))
    built = assert_same_as_from_scratch(state, tmp_path, URL_TEXTS, local=local, revision=moved, texts=texts)
    by_path = {r["hf_path"]: r["text"] for r in training_records(
        built.frame, URL_TEXTS, control_tags(URL_TEXTS), field, REPO, local, texts.texts(text_files(built.frame,
                                                                                                     field)))}
    assert by_path["t/moved.txt"] is None and by_path["t/6.txt"] == "caf\u00e9 \ufffd\ufffd bytes"
    warned = caplog.text
    assert f"t/moved.txt is not in {repo.repo_id} at {first[:12]}" in warned
    assert f"t/6.txt of {repo.repo_id} at {first[:12]} is not valid UTF-8" in warned
    consensus = build_files(state, built.frame, URL_TEXTS, control_tags(URL_TEXTS), field, REPO, local, moved,
                            texts=texts).consensus.decode()
    # the consensus row reads the file at its URL's commit; t/moved.txt's one annotation names an older commit than
    # its task's URL (by hand here: a sync repins the annotations of a moved file), so it does not vote
    assert json.dumps(files["t/4.txt"].decode()) in consensus and '"t/moved.txt"' not in consensus
    assert len(built.frame) == 10  # every row kept in the CSV


def test_a_text_url_version_needs_a_reader_of_the_files_texts(tmp_path):
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    add(state, 1, {"text": f"https://hub/datasets/{REPO}/resolve/{SHA}/t/1.txt", "hf_path": "t/1.txt",
                   "hf_revision": SHA}, span_annotation(11, 1, [(0, 4, "PER")]))
    built = build_rows(state, control_tags(URL_TEXTS), "text")
    with pytest.raises(ValueError, match="valueType"):
        build_files(state, built.frame, URL_TEXTS, control_tags(URL_TEXTS), data_field(URL_TEXTS), REPO, False, SHA)


def test_a_version_description_counts_a_label_holding_a_bar_as_one_label():
    """The export's counts (label_changes) split cells with the label config's labels: ``A|B`` is one label."""
    controls = {"kind": "Choices"}
    old = json.dumps([{"annotation_id": 1, "annotator": "a@x", "was_cancelled": False, "kind": "A|B"}])
    labels = pd.DataFrame([{"annotation_id": 1, "annotator": "a@x", "was_cancelled": False, "kind": "C"}])
    diff = label_changes(old, labels, {1}, controls, "v1", "v2", {"kind": ("A|B", "C")})
    assert {"control": "kind", "from": "A|B", "to": "C", "count": 1} in diff.relabels
    assert set(diff.by_label["kind"]) == {"A|B", "C"}
