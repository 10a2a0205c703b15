"""What a second audit of ``labelhub import-labels`` found: a metadata number beyond a float's range crashed the whole
import, a repo file whose name holds a backslash aborted it, a repo file URL too long for the backend went unsaid,
``hf://`` paths with a space or a ``%`` could not be named, and some messages sent people the wrong way (a name in
another Unicode normalization, a bad ``@REVISION``, a re-import onto sync tasks counted as labelling them, a CSV read
as COCO and the other way round). Real Label Studio, real local git repositories and the test Hub."""
from __future__ import annotations

import io
import json
import logging
import unicodedata
import uuid

import pytest

from labelhub.file_urls import MAX_URL_LENGTH, FileURLs
from labelhub.repos.git import LocalGitRepo
from labelhub.repos.hub import HubRepo
from labelhub.sync.labels import parsed as m
from labelhub.sync.labels.coco_file import read_coco
from labelhub.sync.labels.csv_file import read_labels_csv
from labelhub.sync.labels.parsed import LabelsFileError, ProjectLabels, UrlResolver
from tests import sample_repos
from tests.conftest import FILE_SECRET, HUB_TOKEN
from tests.in_process import invoke_labelhub
from tests.test_import_labels_adopt import all_tasks as tasks_of, invoke  # noqa: F401 (invoke: a fixture)
from tests.test_import_labels_to_tasks import CONFIG, HEADER, env  # noqa: F401 (env: a fixture)

LABELS = ProjectLabels.from_config(CONFIG)
P0, P1 = sample_repos.image_path(0), sample_repos.image_path(1)
BACKSLASHED = "img/odd\\name.png"
#: A path whose file URL is longer than MAX_URL_LENGTH: 11 directories of 85 "日" (255 bytes, a name's most), each
#: "日" 9 characters percent-encoded.
DEEP = "/".join(["日" * 85] * 11) + "/深.png"
NFD = unicodedata.normalize("NFD", "img/café.png")


@pytest.fixture(scope="module")
def repo_path(tmp_path_factory):
    """A local git repo of real PNGs: two Fashion-MNIST images, one named with a backslash, one at a deep path of
    non-ASCII names, one named in NFD."""
    images = sample_repos.image_files(0, 5)
    png = list(images.values())
    files = {P0: png[0], P1: png[1], BACKSLASHED: png[2], DEEP: png[3], NFD: png[4]}
    return sample_repos.local_repo_with(tmp_path_factory.mktemp("audit2") / "repo", files)


@pytest.fixture(scope="module")
def local(repo_path):
    repo = LocalGitRepo(repo_path, file_urls=FileURLs(secret=FILE_SECRET))  # signed, as import-labels makes them
    sha = repo.resolve("main")
    return UrlResolver(repo, sha, [f.path for f in repo.list_files(sha)], field=LABELS.field)


def csv(text: str, urls: UrlResolver | None = None):
    return read_labels_csv(io.StringIO(text), LABELS, urls or UrlResolver())


def coco(data: dict, urls: UrlResolver | None = None):
    return read_coco(io.StringIO(json.dumps(data)), LABELS, urls or UrlResolver())


@pytest.fixture
def project(make_project):
    return make_project("audit2 labels", CONFIG)


# 1. a number beyond a float's range --------------------------------------------------------------------------------

def test_a_metadata_number_beyond_a_float_is_a_rejected_row_and_the_rest_is_imported(label_studio, project, invoke,
                                                                                     tmp_path):
    """``{"x":1e999}`` read as ``inf`` made Label Studio's client refuse the whole batch with a traceback, run after
    run."""
    labels = tmp_path / "inf.csv"
    labels.write_text(HEADER + 'https://example.test/a.png,Bag,,"{""x"": 1}",,,,\n'
                               'https://example.test/b.png,Bag,,"{""x"": 1e999}",,,,\n')
    result = invoke("s.sqlite3", str(labels), "--project", str(project.id))
    assert result.exit_code == 1, result.output
    assert ("line 3: metadata is not a JSON object (out of range: the number 1e999 at x is beyond a float's range "
            "(about 1.8e308), which nothing can store or send)") in result.output.splitlines(), result.output
    assert "tasks created: 1, regions: 0, as predictions" in result.output.splitlines(), result.output
    assert [t.data["source_url"] for t in tasks_of(label_studio, project.id)] == ["https://example.test/a.png"]


# 2. a repo file whose name a file URL cannot carry -----------------------------------------------------------------

def test_a_repo_file_named_with_a_backslash_is_a_rejected_row_or_image(local):
    reason = (f"{BACKSLASHED!r}: {BACKSLASHED!r} is a file of {local.repo.repo_id}, but a file URL cannot carry its "
              "name (a backslash or a control character): rename it in the repo; labelhub sync leaves it out too")
    parsed = csv(f"url,pos_concepts\n{P0},Bag\n{BACKSLASHED},Bag\n", local)
    assert [str(e) for e in parsed.errors] == [f"line 3: {m.BAD_URL} ({reason})"]
    assert [t.url for t in parsed.tasks] == [P0]
    parsed = coco({"images": [{"id": 1, "file_name": P0, "width": 28, "height": 28},
                              {"id": 2, "file_name": BACKSLASHED, "width": 28, "height": 28}]}, local)
    assert [str(e) for e in parsed.errors] == [f"images[1] (id 2): {m.BAD_URL} ({reason})"]
    assert [t.url for t in parsed.tasks] == [P0]


def test_import_labels_imports_the_good_rows_beside_a_backslashed_file(label_studio, project, repo_path, invoke,
                                                                       tmp_path):
    labels = tmp_path / "odd.csv"
    labels.write_text(f"url,pos_concepts\n{P0},Bag\n{BACKSLASHED},Bag\n")
    result = invoke("s.sqlite3", str(labels), "--project", str(project.id), "--repo", str(repo_path))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "a file URL cannot carry its name" in result.output, result.output
    assert "tasks created: 1, regions: 0, as predictions" in result.output.splitlines(), result.output
    assert [t.data["hf_path"] for t in tasks_of(label_studio, project.id)] == [P0]


# 3. a task URL longer than the backend's request line --------------------------------------------------------------

def test_a_repo_file_url_too_long_for_the_backend_is_imported_with_the_syncs_warning(label_studio, project, repo_path,
                                                                                     invoke, tmp_path, caplog):
    labels = tmp_path / "deep.csv"
    labels.write_text(f"url,pos_concepts\n{P0},Bag\n{DEEP},Bag\n")
    with caplog.at_level(logging.WARNING, logger="labelhub"):
        result = invoke("s.sqlite3", str(labels), "--project", str(project.id), "--repo", str(repo_path))
    assert result.exit_code == 0, result.output
    said = caplog.text + result.output
    assert (f"1 files have a task URL longer than {MAX_URL_LENGTH} characters, which the backend and common proxies "
            "(nginx, Apache) refuse (414 Request-URI Too Long): their tasks are made, but a browser may not load "
            f"their files; shorten their paths in the repo (a task follows its file's git mv): {DEEP}") in said, said
    (deep,) = [t for t in tasks_of(label_studio, project.id) if t.data["hf_path"] == DEEP]
    assert len(deep.data["image"]) > MAX_URL_LENGTH


# 4. hf:// paths are literal -----------------------------------------------------------------------------------------

def test_hf_paths_are_literal_as_hf_file_system_reads_them_and_a_bad_revision_is_not_suggested(hub):
    spaced, percent = "img/a b.png", "img/pct%20x.png"
    png = list(sample_repos.image_files(0, 2).values())
    repo_id = sample_repos.hub_repo_with(hub, f"labelhub/literal-{uuid.uuid4().hex[:8]}",
                                         {spaced: png[0], percent: png[1]})
    repo = HubRepo(repo_id, token=HUB_TOKEN)
    sha = repo.resolve("main")
    urls = UrlResolver(repo, sha, [f.path for f in repo.list_files(sha)], field=LABELS.field)
    parsed = csv(f"url\nhf://datasets/{repo_id}/{spaced}\nhf://datasets/{repo_id}/{percent}\n"
                 f"hf://datasets/{repo_id}/img/a%20b.png\nhf://datasets/{repo_id}@nope/{spaced}\n", urls)
    assert [t.hf for t in parsed.tasks] == [(repo_id, spaced, sha), (repo_id, percent, sha)]
    decoded, revision = (e.detail for e in parsed.errors)
    assert decoded == (f"'hf://datasets/{repo_id}/img/a%20b.png': not a file of {repo_id} at {sha[:12]}; an hf:// "
                       "path is not percent-decoded (as huggingface_hub's HfFileSystem reads it): write 'img/a b.png'")
    assert revision.startswith(f"'hf://datasets/{repo_id}@nope/{spaced}': names {repo_id} at nope, which it does "
                               "not have (revision 'nope' not found"), revision
    assert revision.endswith(f": correct the @nope, or leave it out for --revision's commit {sha[:12]}")
    assert "--revision nope" not in revision
    # another repo's hf:// url: the path goes to the Hub as it is written (a space encoded, "%" too)
    (task,) = csv("url\nhf://datasets/other/set/img/a b%20c.png\n").tasks
    assert task.value.endswith("/datasets/other/set/resolve/main/img/a%20b%2520c.png")


# 5. messages that say the way --------------------------------------------------------------------------------------

def test_a_name_in_another_unicode_normalization_is_said(local):
    nfc = unicodedata.normalize("NFC", NFD)
    assert nfc != NFD
    (error,) = csv(f"url\n{nfc}\n", local).errors
    assert error.detail == (f"{nfc!r}: not a file of {local.repo.repo_id} at {local.sha[:12]}; the repo has this "
                            f"name in another Unicode normalization (NFC/NFD: the same letters, other code points): "
                            f"write it as the repo does, {NFD!r}")
    (task,) = csv(f"url\n{NFD}\n", local).tasks
    assert task.url == NFD


def test_a_csv_read_as_coco_and_a_coco_file_read_as_csv_say_which_format_to_give():
    with pytest.raises(LabelsFileError) as refused:
        read_coco(io.BytesIO(b"url,pos_concepts\nhttps://example.test/a.png,Bag\n"), LABELS, UrlResolver())
    assert str(refused.value).endswith("; it looks like a labels CSV (its first line names a url column): give "
                                       "--format csv")
    with pytest.raises(LabelsFileError) as refused:
        read_labels_csv(io.BytesIO(json.dumps({"images": [{"id": 1, "file_name": "a.png"}] * 50}).encode()),
                        LABELS, UrlResolver())
    assert str(refused.value) == "the labels file is JSON, not a CSV (it begins with '{'): for a COCO file give " \
                                 "--format coco"


def test_a_reimport_onto_sync_tasks_that_hold_its_labels_counts_them_as_already_imported(
        label_studio, project, repo_path, env, invoke, tmp_path):
    """Another state file finds the sync's tasks again; they already hold the file's labels: nothing is added, and
    the summary said "2 sync tasks labelled, regions: 1"."""
    invoke_labelhub("sync", "--repo", str(repo_path), "--project", str(project.id), "--once", "--no-export",
                    "--include", P0, "--include", P1, "--state", str(tmp_path / "daemon.sqlite3"), env=env, check=True)
    labels = tmp_path / "labels.csv"
    labels.write_text(HEADER + f"{P0},Bag,,,0.1,0.1,0.5,0.5\n{P1},Coat,,,,,,\n")
    first = invoke("a.sqlite3", str(labels), "--project", str(project.id), "--repo", str(repo_path))
    assert "tasks created: 0 (2 sync tasks labelled), regions: 1, as predictions" in first.output.splitlines(), \
        first.output
    again = invoke("b.sqlite3", str(labels), "--project", str(project.id), "--repo", str(repo_path))
    assert "tasks created: 0 (2 already imported), regions: 0, as predictions" in again.output.splitlines(), \
        again.output
    assert sum(len(t.predictions) for t in tasks_of(label_studio, project.id)) == 2
