"""``labelhub restore``: a version of the repo → a project's tasks and annotations, never twice.

Unit tests of the CSV cell → result conversion (with hypothesis round trips through
:func:`labelhub.sync.versions.rows.control_value`, TextArea entries too) and of the task plan, then end to end: a
real Label Studio, a local repo of 4 Fashion-MNIST images synced and annotated by two users, exported as
``annotations-v1``, restored into new projects (again, after a SIGKILL, from an edited version with an unknown
annotator and a broken row), and TextArea entries exported and restored as annotated.
"""
from __future__ import annotations

import io
import json
import signal
import uuid

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelhub.label_config import data_field
from labelhub.sync.versions.restore import RowError, cell_results, plan_tasks
from labelhub.sync.versions.rows import annotation_row, control_value
from labelhub.sync.versions.training import training_records_by_row
from tests import sample_repos
from tests.conftest import run_labelhub
from tests.in_process import invoke_labelhub
from tests.labelstudio import USERNAME

CONFIG = ('<View><Image name="image" value="$image"/>'
          '<Choices name="kind" toName="image" choice="multiple"><Choice value="Ankle boot"/><Choice value="Bag"/>'
          '<Choice value="Coat"/></Choices>'
          '<RectangleLabels name="box" toName="image"><Label value="Bag"/><Label value="Sneaker"/></RectangleLabels>'
          '<TextArea name="note" toName="image"/></View>')
CONTROLS = {"kind": "Choices", "box": "RectangleLabels", "note": "TextArea"}
SHA = "a" * 40


# -- pure: cells → results ---------------------------------------------------------------------------------------

def test_each_control_cell_becomes_label_studio_results():
    assert cell_results("Choices", "kind", "image", "Bag|Coat") == [
        {"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": ["Bag", "Coat"]}}]
    (box,) = cell_results("RectangleLabels", "box", "image", '[{"x": 0.25, "y": 0, "width": 0.5, "height": 1, '
                                                               '"label": "Bag"}]')
    assert box["type"] == "rectanglelabels" and box["value"] == {
        "x": 25.0, "y": 0.0, "width": 50.0, "height": 100.0, "rotation": 0, "rectanglelabels": ["Bag"]}
    assert cell_results("TextArea", "note", "image", "two\nlines")[0]["value"] == {"text": ["two\nlines"]}
    assert cell_results("Taxonomy", "t", "image", "A/B|C")[0]["value"] == {"taxonomy": [["A", "B"], ["C"]]}
    assert cell_results("Rating", "r", "image", '[{"rating": 4}]') == [
        {"id": "r-1", "from_name": "r", "to_name": "image", "type": "rating", "value": {"rating": 4}}]
    assert cell_results("Choices", "kind", "image", "") == []
    for tag, cell in (("RectangleLabels", "[{"), ("RectangleLabels", '[{"x": 1}]'), ("Rating", '{"rating": 4}')):
        with pytest.raises(ValueError):
            cell_results(tag, "c", "image", cell)


label = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters=" -_"), min_size=1, max_size=8)
fraction = st.integers(0, 10**9).map(lambda n: round(n / 1e9, 9))
box = st.builds(lambda x, y, w, h, labels: {"x": x, "y": y, "width": w, "height": h, "label": "|".join(labels)},
                fraction, fraction, fraction, fraction, st.lists(label, max_size=2))


@settings(max_examples=200, deadline=None)
@given(choices=st.lists(label, min_size=1, max_size=4), boxes=st.lists(box, min_size=1, max_size=4))
def test_cells_to_results_and_back_are_the_same_cells(choices, boxes):
    for tag, cell in (("Choices", "|".join(choices)), ("RectangleLabels", json.dumps(boxes))):
        assert control_value(tag, cell_results(tag, "c", "image", cell)) == cell


def note(*entries):
    return {"from_name": "note", "to_name": "image", "type": "textarea", "value": {"text": list(entries)}}


def test_textarea_entries_are_exported_and_restored_as_annotated():
    """Two entries came back as one entry "first\\nsecond" (the CSV joined them with a newline)."""
    for entries in (["first", "second"], ["two\nlines"], ["only"], ['["looks", "like a list"]'], ["é", "ß\n"]):
        cell = control_value("TextArea", [note(*entries)])
        assert cell_results("TextArea", "note", "image", cell) == [note(*entries)], (entries, cell)
    assert control_value("TextArea", [note("first", "second")]) == '["first", "second"]'
    assert control_value("TextArea", [note("two\nlines")]) == "two\nlines"  # one entry: the text, as before
    # a version written before: several entries joined with a newline come back as one entry, as they always did
    assert cell_results("TextArea", "note", "image", "first\nsecond") == [note("first\nsecond")]
    # the training config's column keeps joining them with a newline
    rows = pd.DataFrame([{"task_id": 1, "annotation_id": 1, "hf_path": "a.png", "image": "u", "kind": "", "box": "",
                          "note": '["first", "second"]', "annotator": "a@x", "annotated_revision": SHA,
                          "was_cancelled": False}])
    [record] = training_records_by_row(rows, CONFIG, CONTROLS, data_field(CONFIG), "owner/ds", local=False)
    assert record["note"] == "first\nsecond"


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(st.text(max_size=8), max_size=4))
def test_any_textarea_entries_come_back_from_their_cell(entries):
    expected = [note(*entries)] if entries else []  # no entry: an empty cell, no result
    assert cell_results("TextArea", "note", "image", control_value("TextArea", [note(*entries)])) == expected


def frame(*rows, metadata=("metadata", "source")):
    columns = ["task_id", "annotation_id", "hf_path", "picture", "kind", "box", "gone", "annotator", "created_at",
               "updated_at", "lead_time", "was_cancelled", "ground_truth", "annotated_revision", *metadata]
    return pd.DataFrame([dict(zip(columns, r)) for r in rows], columns=columns).fillna("")


def test_rows_of_one_task_become_one_task_and_bad_rows_are_counted():
    url = f"http://127.0.0.1:9090/files/repo/{SHA}/a.png?sig=x"
    rows = frame(
        ("7", "70", "a.png", url, "Bag", '[{"x": 0.1, "y": 0.2, "width": 0.3, "height": 0.4, "label": "Bag"}]', "z",
         "a@x", "t1", "t2", "3.5", "False", "True", "b" * 40, '{"score": 1}', "web"),
        ("7", "71", "a.png", url, "Coat", "", "", "b@x", "t3", "t4", "", "True", "False", "b" * 40, '{"score": 1}',
         "web"),
        ("8", "80", "", "https://example.test/b.png", "", "", "", "a@x", "", "", "", "False", "False", "", "", ""),
        ("x", "81", "", "u", "", "", "", "a@x", "", "", "", "False", "False", "", "", ""),
        ("9", "90", "", "u", "", "[{", "", "a@x", "", "", "", "False", "False", "", "", ""),
        ("10", "100", "", "u", "", "", "", "a@x", "", "", "inf", "False", "False", "", "", ""),  # JSON has no inf
    )
    tasks, errors = plan_tasks(rows, {"controls": {**CONTROLS, "gone": "Choices"}}, CONFIG, "owner/ds",
                               "annotations-v1")
    # rows are named by their CSV line (the header is line 1) and their ids when they are numbers
    assert errors == [RowError(5, "task_id is not a number: 'x'", None, 81), errors[1],
                      RowError(7, "lead_time is not a finite number: 'inf'", 10, 100)]
    assert errors[1].row == 6 and errors[1].reason.startswith("box (RectangleLabels): ")
    first, second = tasks
    assert first.data == {"image": url, "hf_repo": "owner/ds", "hf_path": "a.png", "hf_revision": SHA,
                          "metadata": {"score": 1}, "source": "web", "restored_from": "owner/ds@annotations-v1",
                          "source_task_id": 7}
    assert second.data == {"image": "https://example.test/b.png", "restored_from": "owner/ds@annotations-v1",
                           "source_task_id": 8}
    one, two = first.annotations
    assert (one["id"], one["lead_time"], one["was_cancelled"], one["ground_truth"]) == (70, 3.5, False, True)
    assert [r["from_name"] for r in one["result"]] == ["kind", "box"]  # "gone" is not in the project: skipped
    assert (two["was_cancelled"], two["lead_time"]) == (True, None)
    assert first.annotators[1] == {"annotation_id": 71, "annotator": "b@x", "created_at": "t3", "updated_at": "t4",
                                   "annotated_revision": "b" * 40}


# -- end to end ----------------------------------------------------------------------------------------------------

def choice(*values):
    return [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": list(values)}}]


def rect(x, label):
    return {"from_name": "box", "to_name": "image", "type": "rectanglelabels",
            "value": {"x": x, "y": 10.0, "width": 25.0, "height": 50.0, "rotation": 0, "rectanglelabels": [label]}}


def synced_repo(label_studio, project_id, tmp, files: int):
    """A local repo of ``files`` Fashion-MNIST images synced into the project once: ``(repo, env, the sync's
    arguments, the project's tasks in id order)``."""
    repo = tmp / "repo"
    sample_repos.init_local_repo(repo)
    sample_repos.commit_local(repo, sample_repos.image_files(0, files))
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token,
           "TQDM_DISABLE": "1"}
    sync = ["sync", "--repo", str(repo), "--project", str(project_id), "--state", str(tmp / "s.sqlite3"), "--once"]
    invoke_labelhub(*sync, env=env, check=True)
    tasks = sorted(label_studio.client().tasks.list(project=project_id, page_size=10), key=lambda t: t.id)
    return repo, env, sync, tasks


@pytest.fixture(scope="module")
def version(label_studio, tmp_path_factory):
    """A local repo whose ``annotations-v1`` holds 4 annotations of 3 tasks by two users; yields
    ``(repo path, env, second user's email)``."""
    client = label_studio.client()
    project = client.projects.create(title="restore source", label_config=CONFIG)
    email = f"second-{uuid.uuid4().hex[:8]}@labelhub.test"
    second = client.users.create(username=email, email=email, password="second-user-password-1")
    try:
        repo, env, sync, tasks = synced_repo(label_studio, project.id, tmp_path_factory.mktemp("restore"), 4)
        client.annotations.create(tasks[0].id, result=[*choice("Bag", "Coat"), rect(12.5, "Bag"),
                                                       {"from_name": "note", "to_name": "image", "type": "textarea",
                                                        "value": {"text": ["a bag, a coat"]}}], lead_time=12.5)
        client.annotations.create(tasks[0].id, result=choice("Bag"), completed_by=second.id, ground_truth=True)
        client.annotations.create(tasks[1].id, result=[rect(40.0, "Sneaker"), rect(5.0, "Bag")],
                                  completed_by=second.id)
        client.annotations.create(tasks[2].id, result=[], was_cancelled=True)
        invoke_labelhub(*sync, env=env, check=True)  # annotations-v1
        assert "annotations-v1" in sample_repos.git(repo, "tag")
        yield repo, env, email
    finally:
        client.projects.delete(project.id)


def v1_rows(repo) -> pd.DataFrame:
    csv = sample_repos.git(repo, "show", "annotations-v1:annotations/annotations.csv")
    return pd.read_csv(io.StringIO(csv + "\n"), dtype=str, keep_default_na=False)


def restored_rows(label_studio, project_id) -> tuple[list, dict]:
    """``(tasks, {(source task id, source annotation id): row as the export would write it})``."""
    client = label_studio.client()
    users = {u.id: u.email for u in client.users.list()}
    tasks = list(client.tasks.list(project=project_id, page_size=100, fields="all"))
    rows = {}
    for task in tasks:
        for annotation in task.annotations:
            row = annotation_row(task.dict(), annotation, CONTROLS, "image", users)
            rows[(str(task.data["source_task_id"]), str(annotation["import_id"]))] = row
    return tasks, rows


def restore(repo, project_id, state, env, *extra, tag="annotations-v1", kill_at=None):
    """``labelhub restore`` of ``tag`` into the project: in-process, or with ``kill_at`` (``LABELHUB_TEST_KILL_AT``
    of :mod:`tests.guarded`) in a subprocess that SIGKILLs itself there."""
    args = ("restore", "--repo", str(repo), "--tag", tag, "--project", str(project_id), "--state", str(state), *extra)
    if kill_at:
        return run_labelhub(*args, env={**env, "LABELHUB_TEST_KILL_AT": kill_at})
    return invoke_labelhub(*args, env=env)


def test_restore_rebuilds_tasks_labels_and_annotators_once(label_studio, make_project, version, tmp_path):
    repo, env, email = version
    target = make_project("restored", CONFIG)
    state = tmp_path / "r.sqlite3"
    first = restore(repo, target.id, state, env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == ("tasks created: 3, annotations: 4, annotators without a Label Studio "
                                             "user: 0, rows rejected: 0")
    source = v1_rows(repo)
    tasks, rows = restored_rows(label_studio, target.id)
    assert len(tasks) == source["task_id"].nunique() == 3
    assert sorted(rows) == sorted(zip(source["task_id"], source["annotation_id"]))
    for _, old in source.iterrows():
        new = rows[(old["task_id"], old["annotation_id"])]
        for column in ("kind", "box", "note", "annotator", "image", "hf_path", "annotated_revision"):
            assert str(new[column]) == old[column], (column, new[column], old[column])
        for column in ("was_cancelled", "ground_truth"):
            assert str(new[column]) == old[column], column
        assert (new["lead_time"] or "") == (float(old["lead_time"]) if old["lead_time"] else "")
    assert {r["annotator"] for r in rows.values()} == {USERNAME, email}
    by_source = {str(t.data["source_task_id"]): t for t in tasks}
    meta = by_source[source["task_id"][0]].meta["restored_annotations"]
    assert {(m["annotator"], m["matched"]) for m in meta} == {(USERNAME, True), (email, True)}

    again = restore(repo, target.id, state, env)
    assert again.returncode == 0, again.stderr
    assert "tasks created: 0 (3 already restored), annotations: 0" in again.stdout
    assert len(restored_rows(label_studio, target.id)[0]) == 3
    # the restored tasks are the repo files' tasks: a sync of the repo into the project adds only the 4th file
    invoke_labelhub("sync", "--repo", str(repo), "--project", str(target.id), "--state", str(state), "--once",
                    "--no-export", env=env, check=True)
    paths = [t.data["hf_path"] for t in label_studio.client().tasks.list(project=target.id, page_size=100)]
    assert sorted(paths) == sorted(sample_repos.image_files(0, 4)), paths


def test_sigkill_mid_restore_then_rerun_gives_no_duplicate_and_none_missing(label_studio, make_project, version,
                                                                            tmp_path):
    repo, env, _ = version
    target = make_project("restored after a kill", CONFIG)
    state = tmp_path / "k.sqlite3"
    killed = restore(repo, target.id, state, env, "--batch-size", "1", kill_at="after_import:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rerun = restore(repo, target.id, state, env, "--batch-size", "1")
    assert rerun.returncode == 0, rerun.stderr
    # batch 1 recorded, batch 2 created but not recorded (found again), batch 3 created now
    assert rerun.stdout.startswith("tasks created: 1 (2 already restored, 1 of them found in Label Studio from an "
                                   "earlier run), annotations: 1,"), rerun.stdout
    tasks, rows = restored_rows(label_studio, target.id)
    source = v1_rows(repo)
    assert sorted(str(t.data["source_task_id"]) for t in tasks) == sorted(source["task_id"].unique())
    assert sorted(rows) == sorted(zip(source["task_id"], source["annotation_id"]))


def test_unknown_annotator_and_broken_row_and_unknown_tag(label_studio, make_project, version, tmp_path):
    repo, env, email = version
    csv = sample_repos.git(repo, "show", "annotations-v1:annotations/annotations.csv") + "\n"
    edited = csv.replace(email, "gone@elsewhere.test") + "not-a-number,1,,u,,,,a@x,,,,False,False,\n"
    sample_repos.commit_local(repo, {"annotations/annotations.csv": edited.encode()}, message="edited")
    sample_repos.git(repo, "tag", "edited")
    target = make_project("restored edited", CONFIG)
    result = restore(repo, target.id, tmp_path / "e.sqlite3", env, tag="edited")
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "line 6 (annotation_id 1): task_id is not a number: 'not-a-number'",
        "tasks created: 3, annotations: 4, annotators without a Label Studio user: 1, rows rejected: 1"]
    tasks, rows = restored_rows(label_studio, target.id)
    assert {r["annotator"] for r in rows.values()} == {USERNAME}  # unmatched: the importing user's
    kept = {m["annotator"] for t in tasks for m in t.meta["restored_annotations"] if not m["matched"]}
    assert kept == {"gone@elsewhere.test"}

    for args in (("--tag", "annotations-v9"), ("--tag", "annotations-v1", "--csv-path", "nope/a.csv")):
        bad = invoke_labelhub("restore", "--repo", str(repo), "--project", str(target.id), "--state",
                              str(tmp_path / "e.sqlite3"), *args, env=env)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and args[-1] in bad.stderr, bad.stderr


def test_textarea_entries_come_back_from_label_studio_through_a_version(label_studio, make_project, tmp_path):
    """Export → restore kept an annotation's two TextArea entries as one entry "first\\nsecond"."""
    client = label_studio.client()
    source = make_project("textarea source", CONFIG)
    repo, env, sync, tasks = synced_repo(label_studio, source.id, tmp_path, 2)
    annotated = {tasks[0].id: ["first", "second"], tasks[1].id: ["two\nlines"]}
    for task_id, entries in annotated.items():
        client.annotations.create(task_id, result=[note(*entries)])
    invoke_labelhub(*sync, env=env, check=True)  # annotations-v1
    exported = {json.dumps(t.annotations[0]["result"][0]["value"]["text"])
                for t in client.tasks.list(project=source.id, page_size=10, fields="all")}
    assert exported == {json.dumps(entries) for entries in annotated.values()}  # Label Studio kept them as sent

    target = make_project("textarea restored", CONFIG)
    result = restore(repo, target.id, tmp_path / "r.sqlite3", env)
    assert result.returncode == 0, result.stderr
    restored = {t.data["source_task_id"]: [r["value"]["text"] for a in t.annotations for r in a["result"]]
                for t in client.tasks.list(project=target.id, page_size=10, fields="all")}
    assert restored == {task_id: [entries] for task_id, entries in annotated.items()}


def test_spans_come_back_with_their_offsets_as_exported():
    """An Audio span's seconds lost their fractions to int(); character offsets stay integers."""
    [audio] = cell_results("Labels", "seg", "audio", '[{"start": 1.5, "end": 2.75, "text": "", "label": "A"}]')
    assert (audio["value"]["start"], audio["value"]["end"], audio["value"]["labels"]) == (1.5, 2.75, ["A"])
    [text] = cell_results("Labels", "ner", "text", '[{"start": 3, "end": 8, "text": "Paris", "label": "LOC"}]')
    assert (text["value"]["start"], text["value"]["end"]) == (3, 8) and isinstance(text["value"]["start"], int)
    with pytest.raises(ValueError, match="span 1 of ner needs a start and an end"):
        cell_results("Labels", "ner", "text", '[{"start": null, "end": 8, "label": "LOC"}]')


def test_labels_the_project_lacks_are_restored_with_a_warning(caplog):
    rows = frame(("7", "70", "a.png", "https://example.test/a.png", "Bag|Dog", "", "", "a@x", "", "", "", "False",
                  "False", "", "", ""))
    tasks, errors = plan_tasks(rows, {"controls": CONTROLS}, CONFIG, "owner/ds", "annotations-v1")
    assert not errors and tasks[0].annotations[0]["result"][0]["value"]["choices"] == ["Bag", "Dog"]
    assert "kind: the labels 'Dog' are not in the project's label config" in caplog.text


def test_labels_holding_the_separators_and_other_results_come_back(caplog):
    """A choice "T-shirt|top" came back as two choices the project lacks, a Taxonomy label "T-shirt/top" as the path
    T-shirt → top; the items of ``other_results`` of the project's controls come back as stored, relations do not
    (their regions' ids are not in the CSV)."""
    config = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image"><Choice value="T-shirt|top"/>'
              '</Choices><Taxonomy name="tax" toName="image"><Choice value="Tops"><Choice value="T-shirt/top"/></Choice>'
              '</Taxonomy><RectangleLabels name="box" toName="image"><Label value="a|b"/></RectangleLabels></View>')
    assert cell_results("Choices", "kind", "image", "T-shirt|top", ["T-shirt|top"])[0]["value"] == {
        "choices": ["T-shirt|top"]}
    assert cell_results("Taxonomy", "tax", "image", "Tops/T-shirt/top|Tops", ["Tops", "T-shirt/top"])[0]["value"] == {
        "taxonomy": [["Tops", "T-shirt/top"], ["Tops"]]}
    malformed = {"id": "r9", "from_name": "box", "to_name": "image", "type": "rectanglelabels",
                 "value": {"rectanglelabels": ["a|b"]}}
    relation = {"from_id": "r1", "to_id": "r2", "type": "relation", "direction": "right"}
    columns = ["task_id", "annotation_id", "hf_path", "image", "kind", "tax", "box", "annotator", "created_at",
               "updated_at", "lead_time", "was_cancelled", "ground_truth", "annotated_revision", "other_results",
               "data.other_results"]
    row = ["7", "70", "", "https://example.test/a.png", "T-shirt|top", "Tops/T-shirt/top",
           '[{"x": 0.1, "y": 0.2, "width": 0.3, "height": 0.4, "label": "a|b"}]', "a@x", "", "", "", "False", "False",
           "", json.dumps([malformed, relation]), "meta"]
    tasks, errors = plan_tasks(pd.DataFrame([row], columns=columns), {}, config, "owner/ds", "annotations-v1")
    assert not errors
    [task] = tasks
    values = {r["from_name"]: r["value"] for r in task.annotations[0]["result"][:3]}
    assert values["kind"] == {"choices": ["T-shirt|top"]} and values["tax"] == {"taxonomy": [["Tops", "T-shirt/top"]]}
    assert values["box"]["rectanglelabels"] == ["a|b"] and task.annotations[0]["result"][3:] == [malformed]
    assert task.data["other_results"] == "meta" and "other_results" not in task.annotations[0]
    assert "1 relation(s) and result(s) of controls the project lacks" in caplog.text
    assert "not in the project's label config" not in caplog.text


def test_regions_come_back_with_their_ids_rotation_per_region_values_and_relations():
    """The OCR layout (a Rectangle and its perRegion TextArea), a rotated box with a perRegion Choices, a relation
    between them and a HyperText span: the CSV lost the rotation, the span's offsets and which text belonged to which
    box, and restore made whole-image answers of the per-region values."""
    config = ('<View><Image name="image" value="$image"/><Rectangle name="bbox" toName="image"/>'
              '<TextArea name="transcription" toName="image" perRegion="true"/>'
              '<RectangleLabels name="box" toName="image"><Label value="a"/></RectangleLabels>'
              '<Choices name="size" toName="image" perRegion="true"><Choice value="big"/></Choices>'
              '<Relations><Relation value="next"/></Relations>'
              '<HyperText name="page" value="$page"/><Labels name="tags" toName="page"><Label value="T"/></Labels>'
              '</View>')
    controls = {"bbox": "Rectangle", "transcription": "TextArea", "box": "RectangleLabels", "size": "Choices",
                "tags": "Labels"}
    annotated = [
        {"id": "r1", "from_name": "bbox", "to_name": "image", "type": "rectangle",
         "value": {"x": 10, "y": 10, "width": 5, "height": 5, "rotation": 0}},
        {"id": "b1", "from_name": "box", "to_name": "image", "type": "rectanglelabels",
         "value": {"x": 20.0, "y": 30.0, "width": 10.0, "height": 5.0, "rotation": 15, "rectanglelabels": ["a"]}},
        {"id": "s1", "from_name": "tags", "to_name": "page", "type": "labels",
         "value": {"start": "/p[1]", "end": "/p[1]", "startOffset": 2, "endOffset": 7, "text": "hello",
                   "labels": ["T"]}},
        # Label Studio copies the region's place into a per-region answer's value
        {"id": "r1", "from_name": "transcription", "to_name": "image", "type": "textarea",
         "value": {"x": 10, "y": 10, "width": 5, "height": 5, "rotation": 0, "text": ["hi"]}},
        {"id": "b1", "from_name": "size", "to_name": "image", "type": "choices",
         "value": {"x": 20.0, "y": 30.0, "width": 10.0, "height": 5.0, "rotation": 15, "choices": ["big"]}},
        {"from_id": "b1", "to_id": "r1", "type": "relation", "direction": "right", "labels": ["next"]}]
    task = {"id": 7, "data": {"image": "https://example.test/a.png", "page": "<p>a hello</p>"}}
    row = annotation_row(task, {"id": 70, "result": annotated, "completed_by": 1}, controls, "image", {1: "a@x"})
    assert json.loads(row["box"])[0]["rotation"] == 15 and json.loads(row["tags"])[0]["startOffset"] == 2
    csv = pd.DataFrame([row]).to_csv(index=False)
    frame = pd.read_csv(io.StringIO(csv), dtype=str, keep_default_na=False)
    tasks, errors = plan_tasks(frame, {"controls": controls}, config, "owner/ds", "annotations-v1")
    assert not errors
    restored = tasks[0].annotations[0]["result"]
    def key(r):
        return json.dumps(r, sort_keys=True)
    # a region nothing names keeps no id in the CSV (boxes and spans read as before): it comes back numbered
    expected = [{**r, "id": "tags-1"} if r.get("id") == "s1" else r for r in annotated]
    assert sorted(map(key, restored)) == sorted(map(key, expected))
