"""End to end: a labels CSV or COCO file of real Fashion-MNIST images (28 x 28 px) → tasks with
predictions or annotations in a real Label Studio, boxes checked against values computed by hand,
each url one task whatever happens."""
from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from labelhub.file_urls import FileURLs
from labelhub.repos.git import LocalGitRepo
from labelhub.sync.labels.cli import import_labels
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.regions import fractions_from_percent
from tests import sample_repos
from tests.conftest import FILE_SECRET, run_labelhub
from tests.in_process import invoke_labelhub

CONFIG = ('<View><Image name="image" value="$image"/>'
          '<Choices name="kind" toName="image" choice="multiple"><Choice value="Ankle boot"/><Choice value="Bag"/>'
          '<Choice value="Coat"/><Choice value="Dress"/><Choice value="Trouser"/></Choices>'
          '<RectangleLabels name="box" toName="image"><Label value="Bag"/><Label value="Sneaker"/>'
          '<Label value="Trouser"/></RectangleLabels></View>')
HEADER = "url,pos_concepts,neg_concepts,metadata,left_col,top_row,right_col,bottom_row\n"
N = 6


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A local git repo with N real Fashion-MNIST PNGs; yields ``(LocalGitRepo, sha)``."""
    path = tmp_path_factory.mktemp("labels") / "repo"
    sample_repos.init_local_repo(path)
    sha = sample_repos.commit_local(path, sample_repos.image_files(0, N), message="images")
    return LocalGitRepo(path, file_urls=FileURLs(secret=FILE_SECRET)), sha  # signed, as import-labels makes them


@pytest.fixture
def project(make_project):
    return make_project("imported labels", CONFIG)


@pytest.fixture
def env(label_studio):
    return {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token,
            "TQDM_DISABLE": "1", "LABELHUB_SECRET": FILE_SECRET}  # a local repo is refused without one


@pytest.fixture
def invoke(env, tmp_path):
    """Run ``labelhub import-labels ARGS`` in-process (click's CliRunner) with the test's state file."""
    return lambda *args, **extra_env: invoke_import_labels(env, tmp_path / "state.sqlite3", *args, **extra_env)


def invoke_import_labels(env: dict, state: Path, *args: str, **extra_env: str):
    """``labelhub import-labels ARGS --state STATE`` in-process (click's CliRunner, exceptions raised), the root
    logger's handlers and level put back after (the command sets up logging)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return CliRunner().invoke(import_labels, [*args, "--state", str(state)], env={**env, **extra_env},
                                  catch_exceptions=False)
    finally:
        root.handlers[:], root.level = handlers, level


def run_import(*args: str, env: dict, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``labelhub import-labels ARGS`` in a guarded subprocess (``LABELHUB_TEST_KILL_AT`` as in tests.guarded)."""
    env = {**env, **({"LABELHUB_TEST_KILL_AT": kill_at} if kill_at else {})}
    return run_labelhub("import-labels", *args, env=env)


def tasks_of(label_studio, project_id) -> dict[str, list]:
    """``{source_url: [tasks]}`` with predictions and annotations."""
    by_url: dict[str, list] = {}
    for task in label_studio.client().tasks.list(project=project_id, page_size=1000, fields="all"):
        by_url.setdefault(task.data["source_url"], []).append(task)
    return by_url


def result_of(task, kind="predictions"):
    items = task.predictions if kind == "predictions" else task.annotations
    assert len(items) == 1
    item = items[0]
    return item.result if kind == "predictions" else item["result"]


def test_csv_becomes_tasks_with_hand_computed_percent_boxes_once(label_studio, project, repo, invoke, tmp_path):
    dataset, sha = repo
    p = [sample_repos.image_path(i) for i in range(N)]
    csv = tmp_path / "labels.csv"
    csv.write_text(HEADER + (
        f'{p[0]},Ankle boot,Bag|Coat,"{{""source"": ""platform-x"", ""score"": 0.9}}",,,,\n'  # 2
        f"{p[0]},Sneaker,,,0.25,0,0.75,1\n"             # 3: 7..21 px of 28 wide, the full height
        f"{p[1]},Trouser,,,0.1,0.2,0.35,0.9\n"          # 4
        f"{p[1]},Trouser,Dress,,,,,\n"                  # 5
        f"{p[4]},Bag,,,0.5,0.5,0.4,0.9\n"               # 6: bad, left >= right (a url with a bad row is held back)
        f"{p[2]},Coat,,,,,,\n"                          # 7
        "fmnist/vol-000/image/09999.png,Bag,,,,,,\n"    # 8: bad, not in the repo
        f"{p[3]},,,,,,,\n"                              # 9: no label: a task without prediction
    ))
    result = invoke(str(csv), "--project", str(project.id), "--repo", str(dataset.path),
                    "--model-version", "platform-x-v1")
    assert result.exit_code == 1, result.output
    # found by a walkthrough: which URLs the tasks get is said (without LABELHUB_SECRET: refused, test_file_url_policy)
    assert "signed proxy URLs" in result.output
    lines = result.output.splitlines()
    assert "line 6: left_col >= right_col (left_col=0.5, right_col=0.4)" in lines
    assert any(line.startswith("line 8: url is not http(s), hf:// or a path of the dataset repo") for line in lines)
    assert "rows read: 8, rejected: 2" in lines
    assert "tasks created: 4, regions: 2, as predictions" in lines
    assert ("rejected by reason: left_col >= right_col: 1, url is not http(s), hf:// or a path of the dataset "
            "repo: 1") in lines

    tasks = tasks_of(label_studio, project.id)
    assert sorted(tasks) == sorted(p[:4]) and all(len(t) == 1 for t in tasks.values())
    first = tasks[p[0]][0]
    assert first.data == {"image": dataset.file_url(sha, p[0]), "source_url": p[0], "neg_concepts": ["Bag", "Coat"],
                          "metadata": {"source": "platform-x", "score": 0.9}, "hf_repo": dataset.repo_id,
                          "hf_path": p[0], "hf_revision": sha}
    assert first.predictions[0].model_version == "platform-x-v1"
    choices, box = result_of(first)
    assert choices == {"from_name": "kind", "to_name": "image", "type": "choices",
                       "value": {"choices": ["Ankle boot"]}}
    assert box["from_name"] == "box" and box["type"] == "rectanglelabels"
    assert box["value"] == {"x": 25.0, "y": 0.0, "width": 50.0, "height": 100.0, "rotation": 0,
                            "rectanglelabels": ["Sneaker"]}
    box_1 = result_of(tasks[p[1]][0])[1]["value"]
    assert [box_1[k] for k in ("x", "y", "width", "height")] == pytest.approx([10, 20, 25, 70], abs=1e-9)
    # the round trip: what the export writes (fractions 0..1) is what the CSV said, within 1e-6
    assert fractions_from_percent(box_1) == pytest.approx({"x": 0.1, "y": 0.2, "width": 0.25, "height": 0.7},
                                                          abs=1e-6)
    assert tasks[p[1]][0].data["neg_concepts"] == ["Dress"]
    assert result_of(tasks[p[2]][0]) == [{"from_name": "kind", "to_name": "image", "type": "choices",
                                          "value": {"choices": ["Coat"]}}]
    assert not tasks[p[3]][0].predictions

    again = invoke(str(csv), "--project", str(project.id), "--repo", str(dataset.path))
    assert "tasks created: 0 (4 already imported), regions: 0, as predictions" in again.output.splitlines()
    assert sum(len(t) for t in tasks_of(label_studio, project.id).values()) == 4


def test_strict_imports_nothing_and_annotations_go_in_as_annotations(label_studio, project, invoke, tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text(HEADER + "https://example.test/a.png,Bag,,,0.1,0.1,0.6,0.6\n,Bag,,,,,,\n")
    strict = invoke(str(csv), "--project", str(project.id), "--as", "annotations", "--strict")
    assert strict.exit_code == 1
    assert strict.output.splitlines()[-4:] == ["line 3: missing url", "rows read: 2, rejected: 1",
                                               "nothing imported (--strict and 1 rows rejected)",
                                               "rejected by reason: missing url: 1"]
    assert label_studio.client().projects.get(project.id).task_number == 0

    csv.write_text(HEADER + "https://example.test/a.png,Bag,,,0.1,0.1,0.6,0.6\n")
    ok = invoke(str(csv), "--project", str(project.id), "--as", "annotations", "--strict")
    assert ok.exit_code == 0, ok.output
    task = tasks_of(label_studio, project.id)["https://example.test/a.png"][0]
    assert not task.predictions and task.is_labeled
    (region,) = result_of(task, "annotations")
    assert region["value"]["rectanglelabels"] == ["Bag"] and region["value"]["rotation"] == 0
    assert [region["value"][k] for k in ("x", "y", "width", "height")] == pytest.approx([10, 10, 50, 50], abs=1e-9)


def test_coco_file_of_real_images_becomes_percent_boxes(label_studio, project, repo, invoke, tmp_path):
    dataset, sha = repo
    images = []
    for i in range(4):
        path = sample_repos.image_path(i)
        width, height = Image.open(io.BytesIO(dataset.read_file(sha, path))).size
        images.append({"id": 100 + i, "file_name": path, "width": width, "height": height})
    assert {(im["width"], im["height"]) for im in images} == {(28, 28)}
    coco = {"images": images, "categories": [{"id": 1, "name": "Bag"}, {"id": 2, "name": "Trouser"},
                                             {"id": 3, "name": "Hat"}],
            "annotations": [{"id": 1, "image_id": 100, "category_id": 2, "bbox": [7, 0, 14, 28]},
                            {"id": 2, "image_id": 100, "category_id": 1, "bbox": [3.5, 7, 7, 14]},
                            {"id": 3, "image_id": 101, "category_id": 1, "bbox": [0, 14, 28, 14]},
                            {"id": 4, "image_id": 103, "category_id": 3, "bbox": [0, 0, 5, 5]}]}  # 103 held back
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    result = invoke(str(path), "--project", str(project.id), "--repo", str(dataset.path))
    assert result.exit_code == 1
    assert ("annotations[3] (id 4): unknown label ('Hat' is not a label of RectangleLabels 'box')"
            in result.output.splitlines())
    assert "tasks created: 3, regions: 3, as predictions" in result.output
    tasks = tasks_of(label_studio, project.id)
    first = result_of(tasks[sample_repos.image_path(0)][0])
    expected = [(25.0, 0.0, 50.0, 100.0, "Trouser"), (12.5, 25.0, 25.0, 50.0, "Bag")]
    assert [(r["value"]["x"], r["value"]["y"], r["value"]["width"], r["value"]["height"],
             r["value"]["rectanglelabels"][0]) for r in first] == expected
    assert all(r["original_width"] == 28 and r["original_height"] == 28 and r["value"]["rotation"] == 0
               for r in first)
    second = result_of(tasks[sample_repos.image_path(1)][0])[0]["value"]
    assert fractions_from_percent(second) == pytest.approx({"x": 0, "y": 0.5, "width": 1, "height": 0.5}, abs=1e-6)
    assert not tasks[sample_repos.image_path(2)][0].predictions


def test_big_file_goes_in_batches_of_1000_and_a_lost_state_adds_nothing(label_studio, project, invoke, tmp_path,
                                                                       monkeypatch):
    n = 2100
    csv = tmp_path / "big.csv"
    csv.write_text(HEADER + "".join(f"https://example.test/{i}.png,Bag,,,0.1,0.1,0.5,0.5\n" for i in range(n)))
    calls = []
    original = LabelStudioProject.import_tasks
    monkeypatch.setattr(LabelStudioProject, "import_tasks", lambda self, tasks: calls.append(len(tasks))
                        or original(self, tasks))
    first = invoke(str(csv), "--project", str(project.id))
    assert first.exit_code == 0, first.output
    assert calls == [1000, 1000, 100]
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"state.sqlite3{suffix}").unlink(missing_ok=True)
    again = invoke(str(csv), "--project", str(project.id))
    assert f"tasks created: 0 ({n} found in Label Studio from an earlier run)" in again.output  # counted once
    assert calls == [1000, 1000, 100] and label_studio.client().projects.get(project.id).task_number == n


@pytest.mark.parametrize("kill_at", ["before_import:2", "after_import:2", "after_record:3"])
def test_sigkill_mid_import_then_rerun_gives_no_duplicate_and_none_missing(label_studio, project, env, tmp_path,
                                                                          kill_at):
    csv = tmp_path / "labels.csv"
    urls = [f"https://example.test/{i}.png" for i in range(10)]
    csv.write_text(HEADER + "".join(f"{u},Bag,,,,,,\n" for u in urls))
    args = [str(csv), "--project", str(project.id), "--batch-size", "3", "--state", str(tmp_path / "s.sqlite3")]
    killed = run_import(*args, env=env, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rerun = run_import(*args, env=env)
    assert rerun.returncode == 0, rerun.stderr
    tasks = tasks_of(label_studio, project.id)
    assert sorted(tasks) == sorted(urls) and all(len(t) == 1 for t in tasks.values())
    assert all(len(t[0].predictions) == 1 for t in tasks.values())


def test_labels_for_files_the_sync_imported_go_to_their_tasks(label_studio, project, repo, env, invoke, tmp_path):
    dataset, _ = repo
    invoke_labelhub("sync", "--repo", str(dataset.path), "--project", str(project.id), "--once", "--state",
                    str(tmp_path / "state.sqlite3"), env=env, check=True)
    before = label_studio.client().projects.get(project.id).task_number
    assert before == N
    csv = tmp_path / "labels.csv"
    csv.write_text(HEADER + f"{sample_repos.image_path(1)},Bag,,,0.1,0.2,0.3,0.4\n")
    result = invoke(str(csv), "--project", str(project.id), "--repo", str(dataset.path))
    assert "tasks created: 0 (1 sync tasks labelled), regions: 1, as predictions" in result.output, result.output
    tasks = list(label_studio.client().tasks.list(project=project.id, fields="all"))
    assert len(tasks) == N
    (labelled,) = [t for t in tasks if t.predictions]
    assert labelled.data["hf_path"] == sample_repos.image_path(1)
    again = invoke(str(csv), "--project", str(project.id), "--repo", str(dataset.path))
    assert "tasks created: 0 (1 already imported)" in again.output
    assert sum(len(t.predictions) for t in label_studio.client().tasks.list(project=project.id, fields="all")) == 1


def test_an_import_killed_after_labelling_a_sync_task_labels_it_once_when_run_again(label_studio, project, repo, env,
                                                                                   invoke, tmp_path, monkeypatch):
    """The prediction is created, then the process dies before the ledger records it: the next run must see it."""
    from labelhub.sync.ledger import ImportLedger

    dataset, _ = repo
    invoke_labelhub("sync", "--repo", str(dataset.path), "--project", str(project.id), "--once", "--state",
                    str(tmp_path / "state.sqlite3"), env=env, check=True)
    csv = tmp_path / "labels.csv"
    csv.write_text(HEADER + f"{sample_repos.image_path(1)},Bag,,,0.1,0.2,0.3,0.4\n")
    record = ImportLedger.record

    def dies(self, *args, **kwargs):  # what a SIGKILL right after the create leaves: no record
        raise KeyboardInterrupt

    monkeypatch.setattr(ImportLedger, "record", dies)
    assert invoke(str(csv), "--project", str(project.id), "--repo", str(dataset.path)).exit_code != 0
    monkeypatch.setattr(ImportLedger, "record", record)
    again = invoke(str(csv), "--project", str(project.id), "--repo", str(dataset.path))
    assert "tasks created: 0 (1 already imported), regions: 0" in again.output, again.output  # held: nothing added
    assert sum(len(t.predictions) for t in label_studio.client().tasks.list(project=project.id, fields="all")) == 1


def test_cli_errors_are_one_clear_line_without_traceback_or_token(label_studio, project, env, invoke, tmp_path):
    good = tmp_path / "labels.csv"
    good.write_text(HEADER + "https://example.test/a.png,Bag,,,,,,\n")
    no_url = tmp_path / "no_url.csv"
    no_url.write_text("path\nx.png\n")
    not_json = tmp_path / "bad.json"
    not_json.write_text("{oops")
    text_project = label_studio.client().projects.create(
        title="text", label_config='<View><Text name="t" value="$text"/><Choices name="c" toName="t">'
                                   '<Choice value="x"/></Choices></View>')
    cases = {
        "project 999999 not found": [str(good), "--project", "999999"],
        "no 'url' column": [str(no_url), "--project", str(project.id)],
        "the COCO file is not JSON": [str(not_json), "--project", str(project.id)],
        "holds text, not a URL": [str(good), "--project", str(text_project.id)],
        "no such directory (a local git repository), and not a Hub repo_id": [str(good), "--project", str(project.id),
                                                                             "--repo", "no-such-dir"],
    }
    for expected, args in cases.items():
        result = invoke(*args)
        assert result.exit_code == 1 and expected in result.output, (expected, result.output)
        assert "Traceback" not in result.output and label_studio.personal_token not in result.output
    wrong = invoke(str(good), "--project", str(project.id), LABEL_STUDIO_API_KEY="wrong-key-123456789")
    assert wrong.exit_code == 1 and "refused LABEL_STUDIO_API_KEY" in wrong.output
    assert "wrong-key-123456789" not in wrong.output
