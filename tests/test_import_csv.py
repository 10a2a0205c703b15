"""Parsing and checking labels files (no Label Studio): every row checked, each bad one reported
with its line number and reason; good rows grouped by url into tasks."""
from __future__ import annotations

import io
import json

import pytest

from labelhub.sync.labels.coco_file import read_coco
from labelhub.sync.labels.csv_file import read_labels_csv
from labelhub.errors import LabelConfigError
from labelhub.repos.git import LocalGitRepo
from labelhub.sync.labels.parsed import LabelsFileError, ProjectLabels, UrlResolver
from labelhub.sync.regions import FractionEdges
from tests import sample_repos

CONFIG = ('<View><Image name="image" value="$image"/>'
          '<Choices name="kind" toName="image" choice="multiple"><Choice value="Bag"/><Choice value="Coat"/>'
          '<Choice value="Dress"/></Choices>'
          '<RectangleLabels name="box" toName="image"><Label value="Bag"/><Label value="Coat"/><Label value="Sneaker"/>'
          '</RectangleLabels></View>')
LABELS = ProjectLabels.from_config(CONFIG)
HEADER = "url,pos_concepts,neg_concepts,metadata,left_col,top_row,right_col,bottom_row\n"

MIXED = HEADER + (
    'https://example.test/a.png,Bag,Coat|Dress,"{""source"": ""v1""}",,,,\n'     # 2 good: whole image
    "https://example.test/a.png,Bag,,,0.1,0.2,0.35,0.9\n"                        # 3 good: a region of a.png
    ",Bag,,,,,,\n"                                                               # 4
    "https://example.test/b.png,Bag,,,0.1,-0.2,1.5,0.9\n"                        # 5
    "https://example.test/b.png,Bag,,,0.6,0.2,0.6,0.9\n"                         # 6
    "https://example.test/b.png,Bag,,,0.1,0.8,0.5,0.3\n"                         # 7
    "https://example.test/b.png,Bag,,,0.1,,0.5,\n"                               # 8
    'https://example.test/b.png,Bag,,"[1, 2]",,,,\n'                             # 9
    "https://example.test/b.png,Bag,,{oops,,,,\n"                                # 10
    "https://example.test/b.png,Handbag,,,,,,\n"                                 # 11
    "https://example.test/b.png,,Hat,,,,,\n"                                     # 12
    "ftp://example.test/c.png,Bag,,,,,,\n"                                       # 13
    "images/c.png,Bag,,,,,,\n"                                                   # 14
    "https://example.test/b.png,Bag,,,0.1,abc,0.5,0.9\n"                         # 15
    "https://example.test/b.png,,,,0.1,0.2,0.5,0.9\n"                            # 16
    ',Handbag,,"""x""",0.5,0.2,0.4,\n'                                           # 17: four problems
    "\n"                                                                         # 18 blank: ignored
    "hf://datasets/labelhub/fmnist@v1.0/img/1.png, Bag | Dress ,,,,,,\n"          # 19 good
    'https://example.test/d.png,,,"{""note"":\n""two lines""}",,,,\n'            # 20-21 good
    "https://example.test/e.png,Bag,,,2,0,0.5,0.5\n"                             # 22
    "https://example.test/a.png,Sneaker,,,0,0,1,1\n"                             # 23 good: a 2nd region
)

EXPECTED_REPORT = [
    "line 4: missing url",
    "line 5: box values outside 0 to 1 (top_row=-0.2, right_col=1.5)",
    "line 6: left_col >= right_col (left_col=0.6, right_col=0.6)",
    "line 7: top_row >= bottom_row (top_row=0.8, bottom_row=0.3)",
    "line 8: box with some of its four columns empty (empty: top_row, bottom_row)",
    "line 9: metadata is not a JSON object (a JSON list)",
    "line 10: metadata is not a JSON object (not JSON: Expecting property name enclosed in double quotes: "
    "line 1 column 2 (char 1))",
    "line 11: unknown label ('Handbag' is not a Choice of 'kind')",
    "line 12: unknown label ('Hat' is in no Choices or RectangleLabels tag of the label config)",
    "line 13: url is not http(s), hf:// or a path of the dataset repo ('ftp://example.test/c.png': "
    "scheme ftp:// is not supported)",
    "line 14: url is not http(s), hf:// or a path of the dataset repo ('images/c.png': a path needs --repo, "
    "the dataset repo it is in)",
    "line 15: box value is not a number (top_row='abc')",
    "line 16: box without a positive concept",
    "line 17: missing url",
    "line 17: box with some of its four columns empty (empty: bottom_row)",
    "line 17: metadata is not a JSON object (a JSON str)",
    "line 17: unknown label ('Handbag' is not a label of RectangleLabels 'box')",
    "line 22: box values outside 0 to 1 (left_col=2)",
    "line 22: left_col >= right_col (left_col=2, right_col=0.5)",
]


def test_every_bad_row_is_reported_with_its_line_and_reason():
    parsed = read_labels_csv(io.StringIO(MIXED), LABELS, UrlResolver())
    assert [str(e) for e in parsed.errors] == EXPECTED_REPORT
    assert parsed.rows == 20 and parsed.rejected_rows == 15  # lines 2-23 less a blank and a continued line


def test_good_rows_are_grouped_by_url_into_tasks():
    parsed = read_labels_csv(io.StringIO(MIXED), LABELS, UrlResolver(endpoint="https://hub.example.test"))
    by_url = {t.url: t for t in parsed.tasks}
    assert list(by_url) == ["https://example.test/a.png", "hf://datasets/labelhub/fmnist@v1.0/img/1.png",
                            "https://example.test/d.png"]
    a = by_url["https://example.test/a.png"]
    assert (a.lines, a.concepts, a.neg_concepts, a.metadata) == ([2, 3, 23], ["Bag"], ["Coat", "Dress"],
                                                                  {"source": "v1"})
    assert [(r.edges, r.labels) for r in a.regions] == [(FractionEdges(0.1, 0.2, 0.35, 0.9), ("Bag",)),
                                                        (FractionEdges(0.0, 0.0, 1.0, 1.0), ("Sneaker",))]
    hf = by_url["hf://datasets/labelhub/fmnist@v1.0/img/1.png"]
    assert hf.value == "https://hub.example.test/datasets/labelhub/fmnist/resolve/v1.0/img/1.png"
    assert hf.concepts == ["Bag", "Dress"] and hf.hf is None
    d = by_url["https://example.test/d.png"]
    assert d.metadata == {"note": "two lines"} and d.lines == [20] and not d.concepts and not d.regions
    assert parsed.regions == 2


def test_a_file_passes_only_row_by_row_not_when_any_row_is_good():
    # the widely shared ingestion script checks with .any(): one good row lets every bad one through
    csv = HEADER + ("https://example.test/a.png,Bag,,,0.1,0.1,0.5,0.5\n"
                    "https://example.test/b.png,Bag,,,0.9,0.1,0.5,0.5\n")
    parsed = read_labels_csv(io.StringIO(csv), LABELS, UrlResolver())
    assert [str(e) for e in parsed.errors] == ["line 3: left_col >= right_col (left_col=0.9, right_col=0.5)"]
    assert [t.url for t in parsed.tasks] == ["https://example.test/a.png"]


def test_only_url_column_is_required_and_labels_are_not_nan():
    csv = "url\nhttps://example.test/NA.png\n"
    parsed = read_labels_csv(io.StringIO(csv), LABELS, UrlResolver())
    assert not parsed.errors and [t.url for t in parsed.tasks] == ["https://example.test/NA.png"]
    with pytest.raises(LabelsFileError, match="no 'url' column"):
        read_labels_csv(io.StringIO("path,label\na.png,Bag\n"), LABELS, UrlResolver())


def test_a_row_too_long_or_not_utf8_is_one_rejected_row_and_the_others_are_read_on():
    data = (HEADER.encode() + b"https://example.test/a.png,Bag,,,,,,,extra\n"        # 2: a field too many
            + b'"https://example.test/\nb.png",Bag,,,,,,\n'                              # 3-4: a url with a newline
            + b"https://example.test/c.png,Bag,,,,,,\n"                                  # 5 good
            + b"https://example.test/d\xff.png,Bag,,,,,,\n"                              # 6: a byte not UTF-8
            + b"https://example.test/e.png,Coat,,,,,,\n")                                # 7 good
    parsed = read_labels_csv(io.BytesIO(data), LABELS, UrlResolver())
    assert [str(e) for e in parsed.errors] == [
        "line 2: more fields than the header has (expected 8 fields, saw 9)",
        "line 3: url is not http(s), hf:// or a path of the dataset repo ('https://example.test/\\nb.png': "
        "character 21 is a control character)",
        "line 6: bytes that are not UTF-8 (read as U+FFFD) (in url)"]
    assert [(t.url, t.lines) for t in parsed.tasks] == [("https://example.test/c.png", [5]),
                                                        ("https://example.test/e.png", [7])]
    assert (parsed.rows, parsed.rejected_rows) == (5, 3)


def test_a_column_named_twice_is_refused_even_where_pandas_renames_it():
    with pytest.raises(LabelsFileError, match="the column 'url' more than once"):
        read_labels_csv(io.StringIO("url,pos_concepts,url\nhttps://example.test/a.png,Bag,x\n"), LABELS, UrlResolver())


def test_paths_must_be_files_of_the_dataset_repo(tmp_path):
    repo_dir = tmp_path / "repo"
    sample_repos.init_local_repo(repo_dir)
    sha = sample_repos.commit_local(repo_dir, {**sample_repos.image_files(0, 2), "fmnist/labels.csv": b"a,b\n",
                                               "fmnist/UPPER.PNG": sample_repos.image_files(0, 1)[
                                                   sample_repos.image_path(0)]})
    repo = LocalGitRepo(repo_dir, public_url="http://files.test")
    urls = UrlResolver(repo, sha, [f.path for f in repo.list_files(sha)], field=LABELS.field)
    path = sample_repos.image_path(1)
    csv = HEADER + (f"{path},Bag,,,,,,\n./{sample_repos.image_path(0)},Coat,,,,,,\nfmnist/nope.png,Bag,,,,,,\n"
                    f"./{path},Dress,,,,,,\nfmnist/labels.csv,Bag,,,,,,\nfmnist/UPPER.PNG,Bag,,,,,,\n")
    parsed = read_labels_csv(io.StringIO(csv), LABELS, urls)  # line 5: the same file as line 2, the same task
    assert [str(e) for e in parsed.errors] == [
        f"line 4: url is not http(s), hf:// or a path of the dataset repo ('fmnist/nope.png': not a file of "
        f"{repo.repo_id} at {sha[:12]})",
        "line 6: url is not http(s), hf:// or a path of the dataset repo ('fmnist/labels.csv': fmnist/labels.csv is "
        "not a file type an <Image> shows (*.jpg, *.jpeg, *.png, *.gif, *.bmp, *.webp, *.tif, *.tiff))"]
    task = parsed.tasks[0]
    assert task.hf == (repo.repo_id, path, sha) and task.value == repo.file_url(sha, path)
    assert task.lines == [2, 5] and task.concepts == ["Bag", "Dress"] and len(parsed.tasks) == 3
    assert [t.hf[1] for t in parsed.tasks[1:]] == [sample_repos.image_path(0), "fmnist/UPPER.PNG"]


def test_label_config_without_url_object_or_labels_is_refused():
    with pytest.raises(LabelConfigError, match="holds text"):
        ProjectLabels.from_config('<View><Text name="t" value="$text"/><Choices name="c" toName="t">'
                                  '<Choice value="x"/></Choices></View>')
    with pytest.raises(LabelConfigError, match="no Choices or RectangleLabels"):
        ProjectLabels.from_config('<View><Image name="i" value="$image"/><TextArea name="c" toName="i"/></View>')


def test_coco_bad_images_and_annotations_are_reported_by_position():
    coco = {
        "images": [{"id": 1, "file_name": "https://example.test/1.png", "width": 28, "height": 28},
                   {"id": 2, "file_name": "2.png", "coco_url": "https://example.test/2.png", "width": 56,
                    "height": 28},
                   {"id": 3, "file_name": "3.png", "width": 28, "height": 28},
                   {"id": 4, "file_name": "https://example.test/4.png", "width": 0},
                   {"id": 5, "file_name": "https://example.test/5.png", "width": 28, "height": 28}],
        "categories": [{"id": 7, "name": "Bag"}, {"id": 8, "name": "Hat"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [7, 0, 14, 28]},
            {"id": 11, "image_id": 2, "category_id": 7, "bbox": [14, 7, 28, 14]},
            {"id": 12, "image_id": 5, "category_id": 8, "bbox": [0, 0, 1, 1]},
            {"id": 13, "image_id": 9, "category_id": 7, "bbox": [0, 0, 1, 1]},
            {"id": 14, "image_id": 5, "category_id": 5, "bbox": [0, 0, 1, 1]},
            {"id": 15, "image_id": 5, "category_id": 7, "bbox": [20, 0, 10, 5]},
            {"id": 16, "image_id": 5, "category_id": 7, "bbox": [0, 0, 0, 5]},
            {"id": 17, "image_id": 1, "category_id": 7, "bbox": [20, 0, 8.5, 5]},  # 0.5 px over: clipped
            {"id": 18, "image_id": 4, "category_id": 7, "bbox": [0, 0, 1, 1]},     # its image is rejected: listed
        ]}
    parsed = read_coco(io.StringIO(json.dumps(coco)), LABELS, UrlResolver())
    assert [str(e) for e in parsed.errors] == [
        "images[2] (id 3): url is not http(s), hf:// or a path of the dataset repo ('3.png': a path needs "
        "--repo, the dataset repo it is in)",
        "images[3] (id 4): image without a width and height of at least 1 px (width=0, height=None)",
        "images[4] (id 5): held back: another row of its url was rejected (rejected: annotations[2], annotations[4], "
        "annotations[5], annotations[6])",
        "annotations[2] (id 12): unknown label ('Hat' is not a label of RectangleLabels 'box')",
        "annotations[3] (id 13): unknown image_id (image_id=9)",
        "annotations[4] (id 14): unknown category_id (category_id=5)",
        "annotations[5] (id 15): bbox outside the image (bbox=[20, 0, 10, 5] in an image of 28x28 px)",
        "annotations[6] (id 16): bbox is not 4 numbers with width and height > 0 (bbox=[0, 0, 0, 5])",
        "annotations[8] (id 18): its image was rejected (images[3] (id 4))",
    ]
    assert parsed.rows == 14 and parsed.rejected_rows == 9
    one, two = parsed.tasks
    assert (one.url, two.url, two.value) == ("https://example.test/1.png", "https://example.test/2.png",
                                             "https://example.test/2.png")
    assert [r.edges for r in one.regions] == [FractionEdges(0.25, 0.0, 0.75, 1.0),
                                              FractionEdges(20 / 28, 0.0, 1.0, 5 / 28)]
    assert two.regions[0].edges == FractionEdges(0.25, 0.25, 0.75, 0.75)
    assert (two.original_width, two.original_height) == (56, 28)


def test_a_local_repo_file_whose_name_is_not_utf8_is_left_out_and_the_others_are_listed(tmp_path, caplog):
    import os

    repo_path = sample_repos.local_repo_with(tmp_path / "repo", {"ok.png": b"png"})
    with open(os.path.join(os.fsencode(repo_path), b"caf\xe9.png"), "wb") as fh:  # Latin-1 bytes in the name
        fh.write(b"png")
    sha = sample_repos.commit_local(repo_path, message="a Latin-1 name")
    assert [f.path for f in LocalGitRepo(str(repo_path)).list_files(sha)] == ["ok.png"]
    assert r"names are not UTF-8 (caf\xe9.png)" in caplog.text


def test_a_per_region_choices_is_no_whole_image_concept():
    """A ``perRegion="true"`` Choices answers each region: a whole-image concept put there was one answer of the whole
    image, which Label Studio's editor shows under no region."""
    config = CONFIG.replace('choice="multiple">', 'choice="multiple" perRegion="true">')
    labels = ProjectLabels.from_config(config)
    assert labels.choices == {} and labels.unknown_choice("Bag") == (
        "'Bag': the label config has no Choices tag for whole-image concepts")


def test_a_single_choice_choices_takes_one_concept_per_url():
    """Label Studio's API stored two choices in a single-choice Choices (its editor shows one); the second concept's
    row is rejected, on the same line or a later one."""
    labels = ProjectLabels.from_config(CONFIG.replace(' choice="multiple"', ""))
    assert labels.single == {"kind"}
    text = HEADER + ("https://example.test/a.png,Bag,,,,,,\n"      # 2 good, held back with line 4
                     "https://example.test/a.png,Bag,,,,,,\n"      # 3 good (the same choice again), held back
                     "https://example.test/a.png,Coat,,,,,,\n"     # 4 a second choice
                     "https://example.test/b.png,Bag|Dress,,,,,,\n"  # 5 two on one line
                     "https://example.test/c.png,Dress,,,,,,\n")   # 6 kept
    parsed = read_labels_csv(io.StringIO(text), labels, UrlResolver())
    assert [str(e) for e in parsed.errors] == [
        "line 2: held back: another row of its url was rejected (rejected: line 4)",
        "line 3: held back: another row of its url was rejected (rejected: line 4)",
        "line 4: a second choice of a single-choice Choices for one url ('Coat' after 'Bag' in 'kind': keep one, or "
        'set choice="multiple" on it)',
        "line 5: a second choice of a single-choice Choices for one url ('Dress' after 'Bag' in 'kind': keep one, or "
        'set choice="multiple" on it)']
    assert {t.url: t.concepts for t in parsed.tasks} == {"https://example.test/c.png": ["Dress"]}
