"""What the labels-file parsers decide that an audit against the real Label Studio found missing: a url is imported
whole or held back (said), a CSV whose label column has another name is refused, COCO sizes are checked against the
repo's image, a file of the repo has one spelling (``./a.png``, ``hf://datasets/OWNER/NAME/a.png``), and errors say
how to fix them. No Label Studio: the parsers with a real local git repository or the test Hub."""
from __future__ import annotations

import io
import json
import logging
import uuid

import pytest

from labelhub.errors import LabelConfigError
from labelhub.repos.git import LocalGitRepo
from labelhub.repos.hub import HubRepo
from labelhub.sync.labels import parsed as m
from labelhub.sync.labels.coco_file import read_coco
from labelhub.sync.labels.csv_file import read_labels_csv
from labelhub.sync.labels.parsed import LabelsFileError, ProjectLabels, UrlResolver
from tests import sample_repos
from tests.conftest import HUB_TOKEN

CONFIG = ('<View><Image name="image" value="$image"/>'
          '<Choices name="kind" toName="image" choice="multiple"><Choice value="Indoor"/><Choice value="Cat"/>'
          '</Choices>'
          '<RectangleLabels name="box" toName="image"><Label value="Bag"/><Label value="Sneaker"/>'
          '</RectangleLabels></View>')
LABELS = ProjectLabels.from_config(CONFIG)
HEADER = "url,pos_concepts,neg_concepts,metadata,left_col,top_row,right_col,bottom_row\n"
P0, P1 = sample_repos.image_path(0), sample_repos.image_path(1)


def csv(text: str, urls: UrlResolver | None = None):
    return read_labels_csv(io.StringIO(text), LABELS, urls or UrlResolver())


def coco(data: dict, urls: UrlResolver | None = None):
    return read_coco(io.StringIO(json.dumps(data)), LABELS, urls or UrlResolver())


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A local git repository of two real 28 x 28 Fashion-MNIST PNGs: ``UrlResolver`` over it."""
    path = tmp_path_factory.mktemp("parse") / "repo"
    sample_repos.init_local_repo(path)
    sha = sample_repos.commit_local(path, sample_repos.image_files(0, 2))
    repo = LocalGitRepo(path, public_url="http://files.test")
    return UrlResolver(repo, sha, [f.path for f in repo.list_files(sha)], field=LABELS.field)


# 1. a url is imported whole or held back --------------------------------------------------------------------------

def test_a_url_with_a_rejected_row_is_held_back_whole_and_comes_whole_once_fixed():
    """The audit's boxes.csv: three boxes of img/6.png, two rejected; the task was made with the good one, and the
    fixed file later brought nothing (the import is keyed on the url)."""
    bad = HEADER + ("https://example.test/6.png,Bag,,,0.1,0.1,0.4,0.4\n"      # 2 good
                    "https://example.test/6.png,Bag,,,0.5,0.5,0.4,0.9\n"      # 3 left >= right
                    "https://example.test/6.png,Hat,,,0.5,0.5,0.9,0.9\n"      # 4 unknown label
                    "https://example.test/7.png,Bag,,,0.1,0.1,0.4,0.4\n")     # 5 good, another url
    parsed = csv(bad)
    assert [t.url for t in parsed.tasks] == ["https://example.test/7.png"]
    assert [str(e) for e in parsed.errors] == [
        "line 2: held back: another row of its url was rejected (rejected: lines 3, 4)",
        "line 3: left_col >= right_col (left_col=0.5, right_col=0.4)",
        "line 4: unknown label ('Hat' is not a label of RectangleLabels 'box')"]
    assert (parsed.rows, parsed.rejected_rows) == (4, 3)
    fixed = csv(bad.replace("0.5,0.5,0.4,0.9", "0.5,0.5,0.6,0.9").replace("Hat", "Sneaker"))
    assert not fixed.errors
    assert [len(t.regions) for t in fixed.tasks] == [3, 1]


def test_a_coco_image_with_a_rejected_annotation_is_held_back_with_its_good_ones():
    data = {"images": [{"id": 1, "file_name": "https://example.test/1.png", "width": 28, "height": 28},
                       {"id": 2, "file_name": "https://example.test/2.png", "width": 28, "height": 28}],
            "categories": [{"id": 1, "name": "Bag"}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]},
                            {"id": 11, "image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5]},
                            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5]}]}
    parsed = coco(data)
    assert [str(e) for e in parsed.errors] == [
        "images[0] (id 1): held back: another row of its url was rejected (rejected: annotations[1])",
        "annotations[0] (id 10): held back: another row of its url was rejected (rejected: annotations[1])",
        "annotations[1] (id 11): unknown category_id (category_id=9)"]
    assert [t.url for t in parsed.tasks] == ["https://example.test/2.png"] and parsed.rejected_rows == 3


# 2. a label column under another name -----------------------------------------------------------------------------

def test_columns_the_import_does_not_read_without_a_label_column_are_refused():
    with pytest.raises(LabelsFileError) as refused:
        csv("url,labels\nimg/9.png,Indoor\n")
    assert str(refused.value) == (
        "the labels CSV has no label column the import reads, and columns it does not: labels (the columns are url, "
        "pos_concepts, neg_concepts, metadata, left_col, top_row, right_col, bottom_row; a CSV of the url column "
        "alone makes tasks without labels)")
    with pytest.raises(LabelsFileError, match="columns it does not: labels"):
        csv('url,metadata,labels\nhttps://example.test/a.png,{},Indoor\n')
    # a url-only list of images to label stays allowed, and so does an unread column beside a label column
    assert [t.url for t in csv("url\nhttps://example.test/a.png\n").tasks] == ["https://example.test/a.png"]
    kept = csv("url,pos_concepts,note\nhttps://example.test/a.png,Indoor,x\n")
    assert kept.tasks[0].concepts == ["Indoor"]


# 3. COCO sizes ----------------------------------------------------------------------------------------------------

def test_coco_width_and_height_are_checked_against_the_repo_image(local):
    data = {"images": [{"id": 1, "file_name": P0, "width": 14, "height": 14},       # the real image is 28 x 28
                       {"id": 2, "file_name": P1, "width": 28, "height": 28},
                       {"id": 3, "file_name": "https://example.test/3.png", "width": 640.6, "height": 480},
                       {"id": 4, "file_name": "https://example.test/4.png", "width": 640.0, "height": 480}],
            "categories": [{"id": 1, "name": "Bag"}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 7, 7]},
                            {"id": 11, "image_id": 2, "category_id": 1, "bbox": [0, 0, 7, 7]}]}
    parsed = coco(data, local)
    assert [str(e) for e in parsed.errors] == [
        f"images[0] (id 1): width and height are not the image's (width=14, height=14, but {P0} is 28x28 px: its "
        "boxes would be scaled wrong)",
        "images[2] (id 3): image without a width and height of at least 1 px (width=640.6, height=480: not whole "
        "pixels)",
        "annotations[0] (id 10): its image was rejected (images[0] (id 1))"]
    assert [(t.url, t.original_width) for t in parsed.tasks] == [(P1, 28), ("https://example.test/4.png", 640)]
    assert parsed.tasks[0].regions[0].edges.right == 0.25


def test_a_hub_repo_has_its_first_images_checked_only(hub, monkeypatch):
    """A download per image of a Hub repo is what the sync avoids: the first HUB_SIZE_CHECKS are read."""
    repo_id = sample_repos.hub_repo_with(hub, f"labelhub/sizes-{uuid.uuid4().hex[:8]}", sample_repos.image_files(0, 3))
    repo = HubRepo(repo_id, token=HUB_TOKEN)
    sha = repo.resolve("main")
    urls = UrlResolver(repo, sha, [f.path for f in repo.list_files(sha)], field=LABELS.field)
    monkeypatch.setattr(m, "HUB_SIZE_CHECKS", 2)
    images = [{"id": i, "file_name": sample_repos.image_path(i), "width": 56, "height": 56} for i in range(3)]
    parsed = coco({"images": images, "annotations": [], "categories": []}, urls)
    assert [e.where for e in parsed.errors] == ["images[0] (id 0)", "images[1] (id 1)"]
    assert all(e.reason == m.IMAGE_SIZE_MISMATCH for e in parsed.errors)
    assert [t.url for t in parsed.tasks] == [sample_repos.image_path(2)]


# 4. hf:// urls of --repo ------------------------------------------------------------------------------------------

def test_an_hf_url_of_the_hub_repo_is_its_file_checked_and_pinned(hub):
    repo_id = sample_repos.hub_repo_with(hub, f"labelhub/hfurl-{uuid.uuid4().hex[:8]}", sample_repos.image_files(0, 2))
    repo = HubRepo(repo_id, token=HUB_TOKEN)
    sha = repo.resolve("main")
    urls = UrlResolver(repo, sha, [f.path for f in repo.list_files(sha)], field=LABELS.field)
    parsed = csv(HEADER + (f"hf://datasets/{repo_id}/{P0},Indoor,,,,,,\n"            # 2: the repo's file
                           f"hf://datasets/{repo_id}@{sha}/{P1},Cat,,,,,,\n"          # 3: at --revision's commit
                           f"hf://datasets/{repo_id}/fmnist/nope.png,Cat,,,,,,\n"     # 4: not a file of it
                           f"hf://{repo_id}/{P0},Cat,,,,,,\n"                         # 5: its name as a model repo
                           f"hf://datasets/{repo_id}@nope/{P0},Cat,,,,,,\n"           # 6: another revision
                           f"{P1},,,,,,,\n"), urls)                                   # 7: line 3's file
    assert [(t.url, t.value, t.hf, t.lines) for t in parsed.tasks] == [
        (P0, repo.file_url(sha, P0), (repo_id, P0, sha), [2]), (P1, repo.file_url(sha, P1), (repo_id, P1, sha), [3, 7])]
    reasons = [e.detail for e in parsed.errors]
    assert reasons[0] == f"'hf://datasets/{repo_id}/fmnist/nope.png': not a file of {repo_id} at {sha[:12]}"
    assert reasons[1] == (f"'hf://{repo_id}/{P0}': hf://{repo_id}/... is a model repo's url; the dataset --repo's "
                          f"files are hf://datasets/{repo_id}/{P0} or {P0}")
    assert reasons[2].startswith(f"'hf://datasets/{repo_id}@nope/{P0}': names {repo_id} at nope, which it does not "
                                 f"have (revision 'nope' not found") and reasons[2].endswith("correct the @nope, or "
                                                                      f"leave it out for --revision's commit {sha[:12]}")


def test_a_malformed_hf_url_says_every_form():
    (error,) = csv("url\nhf://nope\n").errors
    assert error.detail == ("'hf://nope': an hf:// url is hf://datasets/OWNER/NAME[@REVISION]/PATH (or "
                            "spaces/OWNER/NAME/..., and models/OWNER/NAME/... or OWNER/NAME/... for a model repo)")


# 5. one spelling of a repo file -----------------------------------------------------------------------------------

def test_a_repo_file_has_one_spelling_whatever_the_file_wrote(local):
    for spelling in (P0, f"./{P0}", P0.replace("/image/", "//image/"), P0.replace("/image/", "/./image/")):
        (task,) = csv(f"url\n{spelling}\n", local).tasks
        assert task.url == P0 and task.hf[1] == P0, spelling
    (task,) = coco({"images": [{"id": 1, "file_name": f"./{P0}", "width": 28, "height": 28}]}, local).tasks
    assert task.url == P0


# 6. COCO crowds, polygons, annotations of rejected images ---------------------------------------------------------

def test_coco_crowds_are_skipped_with_a_count_and_polygons_are_said(caplog):
    data = {"images": [{"id": 1, "file_name": "https://example.test/1.png", "width": 28, "height": 28}],
            "categories": [{"id": 1, "name": "Bag"}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1,
                             "segmentation": {"counts": [0, 25], "size": [28, 28]}},
                            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0,
                             "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]}]}
    with caplog.at_level(logging.WARNING, logger="labelhub"):
        parsed = coco(data)
    assert not parsed.errors and (parsed.rows, parsed.rejected_rows, parsed.skipped) == (3, 0, 1)
    assert len(parsed.tasks[0].regions) == 1
    assert "skipped 1 iscrowd annotations (a box around a crowd of objects, not one object): annotations[0]" \
           in caplog.text
    assert "imported the bbox of 1 annotations with segmentation polygons; the polygons are not imported" in caplog.text


# 7. positive and negative -----------------------------------------------------------------------------------------

def test_a_concept_both_positive_and_negative_is_rejected():
    parsed = csv("url,pos_concepts,neg_concepts\nhttps://example.test/5.png,Indoor,Indoor|Cat\n")
    assert [str(e) for e in parsed.errors] == [
        "line 2: a concept both positive and negative ('Indoor' in pos_concepts and neg_concepts)"]
    assert not parsed.tasks


# 8. hints ---------------------------------------------------------------------------------------------------------

def test_errors_say_how_to_fix_them(local):
    with pytest.raises(LabelConfigError, match='add valueType="url" to the tag'):
        ProjectLabels.from_config('<View><Text name="t" value="$text"/><Choices name="c" toName="t">'
                                  '<Choice value="x"/></Choices></View>')
    backslashed = P0.replace("/", "\\")
    (error,) = csv(f"url\n{backslashed}\n", local).errors
    assert error.detail.endswith(f"; paths of the repo are separated by '/': {P0!r}")
    (error,) = csv(f"url\n/{P0}\n", local).errors
    assert error.detail.endswith(f"; paths are from the repo's root, without a leading '/': {P0!r}")
    (error,) = csv("url,pos_concepts\nhttps://example.test/a.png,cat\n").errors
    assert error.detail == "'cat' is not a Choice of 'kind'; did you mean 'Cat'?"
    (error,) = csv("url,pos_concepts,left_col,top_row,right_col,bottom_row\n"
                   "https://example.test/a.png,Sneakr,0,0,1,1\n").errors
    assert error.detail == "'Sneakr' is not a label of RectangleLabels 'box'; did you mean 'Sneaker'?"


def test_a_semicolon_csv_and_upper_case_columns_are_read():
    parsed = csv('URL;Pos_Concepts;metadata\nhttps://example.test/a.png;Indoor|Cat;"{""a"": 1, ""b"": 2}"\n')
    assert not parsed.errors
    assert [(t.url, t.concepts, t.metadata) for t in parsed.tasks] == [
        ("https://example.test/a.png", ["Indoor", "Cat"], {"a": 1, "b": 2})]
    tabs = csv("url\tpos_concepts\nhttps://example.test/a.png\tCat\n")
    assert tabs.tasks[0].concepts == ["Cat"]
    with pytest.raises(LabelsFileError,
                       match=r"no 'url' column \(columns: path;label; .*separated by ',', ';' or tabs"):
        csv("path;label\na.png;Cat\n")


def test_a_concept_positive_on_one_row_of_a_url_and_negative_on_another_is_rejected():
    parsed = csv(HEADER + ("https://example.test/5.png,Indoor,,,,,,\n"            # 2
                           "https://example.test/5.png,,Indoor,,,,,\n"            # 3: contradicts line 2
                           "https://example.test/6.png,,Bag,,,,,\n"               # 4
                           "https://example.test/6.png,Bag,,,0,0,0.5,0.5\n"       # 5: a Bag box, no Bag on line 4
                           "https://example.test/7.png,Indoor,Bag,,,,,\n"))       # 6 good
    assert [str(e) for e in parsed.errors] == [
        "line 2: held back: another row of its url was rejected (rejected: line 3)",
        "line 3: a concept both positive and negative ('Indoor' negative here, positive on line 2)",
        "line 4: held back: another row of its url was rejected (rejected: line 5)",
        "line 5: a concept both positive and negative ('Bag' positive here, negative on line 4)"]
    assert [t.url for t in parsed.tasks] == ["https://example.test/7.png"]
