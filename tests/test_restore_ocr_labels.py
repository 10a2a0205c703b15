"""Label Studio's OCR template (a ``Rectangle`` to draw, a ``Labels`` to label, a per-region ``TextArea``) through a
version and ``labelhub restore``, and a restore into a project the version is not of.

The template (https://labelstud.io/templates/optical_character_recognition) stores each region as three results with
one ``id``: ``rectangle`` (its place), ``labels`` (its place and labels) and ``textarea`` (its place and text). The
CSV's ``label`` column held ``Text|Handwriting`` (which label was whose box lost) and restore rejected every row
("labels without spans"); a restore into a project of another label config made a task per row whose data the
editor cannot show, without labels, and exited 0. Unit tests of the cells first, then end to end with a real Label
Studio and a local repo of Fashion-MNIST images.
"""
from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from labelhub.sync.versions.restore import cell_results, plan_tasks
from labelhub.sync.versions.rows import annotation_row, label_counts
from tests import sample_repos
from tests.in_process import invoke_labelhub
from tests.test_restore import restore, synced_repo

OCR = ('<View><Image name="image" value="$image"/><Labels name="label" toName="image"><Label value="Text"/>'
       '<Label value="Handwriting"/></Labels><Rectangle name="bbox" toName="image" strokeWidth="3"/>'
       '<TextArea name="transcription" toName="image" editable="true" perRegion="true" required="true" '
       'maxSubmissions="1" rows="5" placeholder="Recognized Text" displayMode="region-list"/></View>')
CONTROLS = {"label": "Labels", "bbox": "Rectangle", "transcription": "TextArea"}


def region(region_id, x, y, w, h, texts, label="Text", rotation=0):
    """The three results of one region, as the Label Studio editor saves them."""
    base = {"id": region_id, "to_name": "image", "original_width": 28, "original_height": 28, "image_rotation": 0,
            "origin": "manual"}
    place = {"x": x, "y": y, "width": w, "height": h, "rotation": rotation}
    return [{**base, "from_name": "bbox", "type": "rectangle", "value": dict(place)},
            {**base, "from_name": "label", "type": "labels", "value": {**place, "labels": [label]}},
            {**base, "from_name": "transcription", "type": "textarea", "value": {**place, "text": list(texts)}}]


def essentials(results) -> list[tuple]:
    """What a region says, sorted: ``(id, from_name, type, value with numbers to 6 decimals)`` (the CSV keeps a
    Labels region's place as fractions to 9 decimals, as RectangleLabels boxes: percent to 7)."""
    def value(v):
        return json.dumps({k: round(x, 6) if isinstance(x, float) else x for k, x in v.items()}, sort_keys=True)
    return sorted((r["id"], r["from_name"], r["type"], value(r["value"])) for r in results)


# -- pure ----------------------------------------------------------------------------------------------------------

def test_a_labels_region_is_written_as_a_box_with_its_id_and_comes_back_whole():
    annotated = (region("r1", 25.0, 12.5, 50.0, 25.0, ["Invoice 12345"])
                 + region("r2", 3.3333333333333335, 50.0, 50.0, 15.0, ["Total: 42,00 €", "second"], "Handwriting", 5))
    row = annotation_row({"id": 7, "data": {"image": "https://example.test/a.png"}},
                         {"id": 70, "result": annotated, "completed_by": 1}, CONTROLS, "image", {1: "a@x"})
    boxes = json.loads(row["label"])
    assert [(b["id"], b["label"], b["x"], b.get("rotation")) for b in boxes] == [
        ("r1", "Text", 0.25, None), ("r2", "Handwriting", 0.033333333, 5)]
    # the transcription rides once, in the shape's item, not again in the label's
    assert all("per_region" not in b for b in boxes)
    assert [b["per_region"]["transcription"]["text"] for b in json.loads(row["bbox"])] == [
        ["Invoice 12345"], ["Total: 42,00 €", "second"]]
    frame = pd.read_csv(io.StringIO(pd.DataFrame([row]).to_csv(index=False)), dtype=str, keep_default_na=False)
    tasks, errors = plan_tasks(frame, {"controls": CONTROLS}, OCR, "owner/ds", "annotations-v1")
    assert not errors
    restored = tasks[0].annotations[0]["result"]
    assert essentials(restored) == essentials(annotated)


def test_a_region_labelled_alone_keeps_its_place_and_labels_without_an_id():
    """A Labels result with a place no other result names: its box, numbered on restore as RectangleLabels boxes."""
    [result] = cell_results("Labels", "label", "image", '[{"x": 0.5, "y": 0.25, "width": 0.125, "height": 0.5, '
                                                        '"label": "Text|Handwriting"}]', ["Text", "Handwriting"])
    assert result == {"id": "label-1", "from_name": "label", "to_name": "image", "type": "labels", "value": {
        "x": 50.0, "y": 25.0, "width": 12.5, "height": 50.0, "rotation": 0, "labels": ["Text", "Handwriting"]}}
    with pytest.raises(ValueError, match="region 1 of label needs numbers"):
        cell_results("Labels", "label", "image", '[{"x": "a", "y": 0, "width": 1, "height": 1, "label": "Text"}]')
    # a version written before these regions were exported: the reason names both kinds of old version
    with pytest.raises(ValueError, match="labels without their regions .*spans, or its labels of image regions"):
        cell_results("Labels", "label", "image", "Text|Text")


# -- end to end ----------------------------------------------------------------------------------------------------

def test_ocr_regions_come_back_with_their_labels_and_transcriptions(label_studio, make_project, tmp_path):
    client = label_studio.client()
    source = make_project("ocr source", OCR)
    repo, env, sync, tasks = synced_repo(label_studio, source.id, tmp_path, 2)
    annotated = {tasks[0].id: region("a1", 3.3333333333333335, 10.0, 50.0, 15.0, ["Invoice 12345"])
                 + region("a2", 3.3333333333333335, 50.0, 50.0, 15.0, ["Total: 42.00 €"], "Handwriting", 5),
                 tasks[1].id: region("b1", 2.0, 33.0, 90.0, 30.0, ["Straße – naïve café", 'line two, "quotes"'])}
    for task_id, result in annotated.items():
        client.annotations.create(task_id, result=result)
    invoke_labelhub(*sync, env=env, check=True)  # annotations-v1
    csv = sample_repos.git(repo, "show", "annotations-v1:annotations/annotations.csv")
    rows = pd.read_csv(io.StringIO(csv + "\n"), dtype=str, keep_default_na=False)
    assert sorted(b["label"] for cell in rows["label"] for b in json.loads(cell)) == ["Handwriting", "Text", "Text"]

    target = make_project("ocr restored", OCR)
    result = restore(repo, target.id, tmp_path / "r.sqlite3", env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("rows rejected: 0"), result.stdout
    restored = {t.data["source_task_id"]: t.annotations
                for t in client.tasks.list(project=target.id, page_size=10, fields="all")}
    assert sorted(restored) == sorted(annotated)
    for task_id, result in annotated.items():
        [annotation] = restored[task_id]
        assert essentials(annotation["result"]) == essentials(result), task_id


def test_a_version_is_not_restored_into_a_project_of_another_config(label_studio, make_project, tmp_path):
    """Refused in one line, nothing created, when none of the version's controls is in the project (a project reading
    another data key with the version's controls takes the version: its tasks' value moves under the project's key,
    ``tests/test_restore.py``)."""
    client = label_studio.client()
    source = make_project("ocr wrong source", OCR)
    repo, env, sync, tasks = synced_repo(label_studio, source.id, tmp_path, 1)
    client.annotations.create(tasks[0].id, result=region("a1", 10.0, 10.0, 50.0, 15.0, ["hello"]))
    invoke_labelhub(*sync, env=env, check=True)
    boxes = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
             '<Label value="Text"/></RectangleLabels></View>')
    for n, (config, reason) in enumerate(((boxes, "none of the version's controls (label, bbox, transcription)"),)):
        target = make_project(f"not an ocr project {n}", config)
        refused = restore(repo, target.id, tmp_path / f"w{n}.sqlite3", env)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and reason in refused.stderr, refused.stderr
        assert list(client.tasks.list(project=target.id, page_size=10)) == []


def test_labels_of_other_image_regions_keep_their_values_and_count_their_labels():
    """A Labels tag's labels of a Polygon's region were joined with ``|`` without the polygon; they are its value as
    stored, ``labels`` as a box's ``label`` (so that the label counts read them), and come back as stored."""
    config = ('<View><Image name="image" value="$image"/><Labels name="label" toName="image"><Label value="Text"/>'
              '</Labels><Polygon name="poly" toName="image"/></View>')
    controls = {"label": "Labels", "poly": "Polygon"}
    place = {"points": [[10.0, 10.0], [50.5, 10.0], [30.0, 40.25]], "closed": True}
    annotated = [{"id": "p1", "from_name": "poly", "to_name": "image", "type": "polygon", "value": dict(place)},
                 {"id": "p1", "from_name": "label", "to_name": "image", "type": "labels",
                  "value": {**place, "labels": ["Text"]}}]
    row = annotation_row({"id": 7, "data": {"image": "https://example.test/a.png"}},
                         {"id": 70, "result": annotated, "completed_by": 1}, controls, "image", {1: "a@x"})
    assert json.loads(row["label"]) == [{**place, "label": "Text", "id": "p1"}]
    assert label_counts(pd.DataFrame([row]), controls)["label"] == {"Text": 1}
    frame = pd.read_csv(io.StringIO(pd.DataFrame([row]).to_csv(index=False)), dtype=str, keep_default_na=False)
    tasks, errors = plan_tasks(frame, {"controls": controls}, config, "owner/ds", "annotations-v1")
    assert not errors
    assert essentials(tasks[0].annotations[0]["result"]) == essentials(annotated)
