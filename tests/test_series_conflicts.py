"""Two exporters, one series: what ``labelhub sync`` does when the series it would write is not its own alone
(:meth:`labelhub.sync.versions.exporter.Exporter.check_series`, :mod:`labelhub.sync.versions.series`).

- Two projects left at the default ``--csv-path`` (or two CSVs whose prefixes are the same, in different folders):
  the second is refused in one line before it writes anything; a running daemon that meets it stops (exit 1)
  instead of retrying every tick; ``--take-over-from`` lets a recreated project go on with the series.
- The same project synced with a second state file (a cron ``--once`` from another folder): no spurious version,
  each exporter adopts what the other made, no ``files restored`` ping-pong, no tag retried forever.
- A ``--csv-path`` inside the ``--include`` folder: the export's own files never become tasks.
- A local repo's card shows the clone recipe.

Real Label Studio, real local git repositories, the real ``labelhub`` command (the model:
``tests/test_two_projects_one_repo.py``).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from labelhub.repos import RepoFile, open_repo
from labelhub.sync.annotations.intake import AnnotationIntake
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.files.selection import select_files, with_export_files
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.state import SyncState
from labelhub.sync.versions.card import card_block
from labelhub.sync.versions.exporter import Exporter
from labelhub.sync.versions.series import series_for
from tests import sample_repos
from tests.conftest import FILE_SECRET, ROOT
from tests.in_process import invoke_labelhub
from tests.test_two_projects_one_repo import CONFIG, choice

git = sample_repos.git


def tags(path) -> list[str]:
    return sorted(git(path, "tag", "--list").split(), key=lambda t: (t.rsplit("-v", 1)[0], int(t.rsplit("-v", 1)[1])))


def csv_ids(path, tag, csv_path) -> set[int]:
    rows = pd.read_csv(io.StringIO(git(path, "show", f"{tag}:{csv_path}")))
    return set(rows["annotation_id"])


def titles(path) -> list[str]:
    return git(path, "log", "--format=%s", "main").splitlines()


class Once:
    """``labelhub sync --once`` of one project into one local repo, with its own state file."""

    def __init__(self, label_studio, path, project_id, state, *extra):
        self.args = ("sync", "--repo", str(path), "--project", str(project_id), "--state", str(state), "--once",
                     *extra)
        self.env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key}

    def __call__(self, *more, ok: bool = True) -> subprocess.CompletedProcess:
        done = invoke_labelhub(*self.args, *more, env=self.env)  # in-process: tests/in_process.py
        if ok:
            assert done.returncode == 0, done.stderr
        return done


def errors(done: subprocess.CompletedProcess) -> list[str]:
    """The lines of a run's stderr that are not log lines below ERROR."""
    return [line for line in done.stderr.splitlines() if not any(f" {level} " in line for level in ("INFO", "WARNING"))]


def annotate(client, project_id, n, kind="Bag") -> list[int]:
    """Annotate the first ``n`` tasks without an annotation; the new annotations' ids."""
    made = []
    for task in client.tasks.list(project=project_id, page_size=100):
        if len(made) == n:
            break
        if not task.total_annotations:
            made.append(client.annotations.create(task.id, result=choice(kind)).id)
    assert len(made) == n
    return made


def test_two_projects_left_at_the_default_csv_path_the_second_is_refused_until_it_takes_the_series_over(
        label_studio, make_project, tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 6))
    client = label_studio.client()
    first, second = make_project("default csv: first", CONFIG), make_project("default csv: second", CONFIG)
    # one state file for both, as two daemons started in one folder share the default one
    sync = {p.id: Once(label_studio, path, p.id, tmp_path / "state.sqlite3", "--include", "fmnist/**")
            for p in (first, second)}
    sync[first.id]()
    made = annotate(client, first.id, 2)
    sync[first.id]()
    assert tags(path) == ["annotations-v1"]
    head = git(path, "rev-parse", "main")

    refused = sync[second.id](ok=False)
    assert refused.returncode == 1, refused.stderr
    [line] = errors(refused)
    assert (f"annotations-v1 of {path} was exported from Label Studio project {first.id}, this is project "
            f"{second.id}") in line and "--csv-path" in line and f"--take-over-from {first.id}" in line
    assert "Traceback" not in refused.stderr
    # refused before anything was written: no task, no commit, no tag
    assert list(client.tasks.list(project=second.id, page_size=10)) == []
    assert git(path, "rev-parse", "main") == head and tags(path) == ["annotations-v1"]

    # the second project replaces the first (recreated): it takes the series over and goes on numbering it
    taken = sync[second.id]("--take-over-from", str(first.id))
    assert "taking over the series 'annotations' from Label Studio project" in taken.stderr
    # its first version holds its annotations (none yet): those of the first project are removed
    assert tags(path) == ["annotations-v1", "annotations-v2"]
    assert titles(path)[0] == f"annotations v2: +0 ~0 -{len(made)}"
    theirs = annotate(client, second.id, 3)
    sync[second.id]()  # the option is needed once: the series' newest version is its own now
    assert tags(path) == ["annotations-v1", "annotations-v2", "annotations-v3"]
    assert csv_ids(path, "annotations-v3", "annotations/annotations.csv") == set(theirs)
    manifest = json.loads(git(path, "show", "annotations-v3:annotations/manifest.json"))
    assert manifest["label_studio"]["project_id"] == second.id and manifest["counts"]["added"] == 3

    # and now the first project is the one refused
    again = sync[first.id](ok=False)
    assert again.returncode == 1 and f"was exported from Label Studio project {second.id}" in again.stderr


def test_a_daemon_that_meets_another_projects_version_of_its_series_stops_in_one_line(
        label_studio, make_project, tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 4))
    client = label_studio.client()
    first, second = make_project("daemon: first", CONFIG), make_project("daemon: second", CONFIG)
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
           "LABELHUB_SECRET": FILE_SECRET}
    log_path = tmp_path / "second.log"
    with open(log_path, "w") as log:  # started before the first project exported anything: nothing to refuse yet
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tests.guarded", "sync", "--repo", str(path), "--project", str(second.id),
             "--state", str(tmp_path / "second.sqlite3"), "--include", "fmnist/**", "--interval", "1",
             "--reconcile-interval", "1", "--export-interval", "0", "--sweep-interval", "3600"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while len(list(client.tasks.list(project=second.id, page_size=10))) < 4:
                assert time.monotonic() < deadline and daemon.poll() is None, log_path.read_text()[-3000:]
                time.sleep(0.3)
            first_sync = Once(label_studio, path, first.id, tmp_path / "first.sqlite3", "--include", "fmnist/**")
            first_sync()
            annotate(client, first.id, 1)
            first_sync()
            assert tags(path) == ["annotations-v1"]
            head = git(path, "rev-parse", "main")
            annotate(client, second.id, 2)
            code = daemon.wait(timeout=120)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    text = log_path.read_text()
    assert code == 1, text
    refusals = [line for line in text.splitlines() if f"was exported from Label Studio project {first.id}" in line]
    assert len(refusals) == 1, text  # said once, not retried every tick
    assert "will retry" not in text and "Traceback" not in text
    assert git(path, "rev-parse", "main") == head and tags(path) == ["annotations-v1"]


def test_two_csvs_whose_prefixes_are_the_same_in_different_folders_are_refused(label_studio, make_project, tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 4))
    client = label_studio.client()
    owner, other = make_project("prefix: annotations/test.csv", CONFIG), make_project("prefix: test/a.csv", CONFIG)
    owner_sync = Once(label_studio, path, owner.id, tmp_path / "owner.sqlite3", "--csv-path", "annotations/test.csv")
    owner_sync()
    annotate(client, owner.id, 1)
    owner_sync()
    assert tags(path) == ["test-v1"]
    head = git(path, "rev-parse", "main")
    refused = Once(label_studio, path, other.id, tmp_path / "other.sqlite3", "--csv-path",
                   "test/annotations.csv")(ok=False)
    assert refused.returncode == 1, refused.stderr
    [line] = errors(refused)
    assert "test-v1" in line and "not a version of --csv-path test/annotations.csv" in line
    assert f"annotations/test.csv of Label Studio project {owner.id}" in line and "--tag-prefix" in line
    assert git(path, "rev-parse", "main") == head and list(client.tasks.list(project=other.id, page_size=10)) == []


def test_the_same_project_with_a_second_state_adopts_the_other_exporters_versions_and_nothing_is_lost(
        label_studio, make_project, tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 8))
    client = label_studio.client()
    project = make_project("two states", CONFIG)
    daemon_state = Once(label_studio, path, project.id, tmp_path / "daemon" / "labelhub-state.sqlite3",
                        "--csv-path", "annotations/train.csv")
    cron_state = Once(label_studio, path, project.id, tmp_path / "cron" / "labelhub-state.sqlite3",
                      "--csv-path", "annotations/train.csv")
    for folder in ("daemon", "cron"):
        (tmp_path / folder).mkdir()
    daemon_state()
    made = annotate(client, project.id, 2)
    daemon_state()
    assert tags(path) == ["train-v1"]

    # a second state, no new annotation: it goes on from train-v1, no spurious version counting them all as added
    cron_state()
    assert tags(path) == ["train-v1"]

    # a new annotation exported by the second state: train-v2 with +1
    made += annotate(client, project.id, 1)
    cron_state()
    assert tags(path) == ["train-v1", "train-v2"]
    assert titles(path)[0] == "train v2: +1 ~0 -0"

    # the first state adopts train-v2 (no files restored, no tag taken) and exports the next one after it
    made += annotate(client, project.id, 1)
    run = daemon_state()
    assert "was exported by another exporter of Label Studio project" in run.stderr
    assert tags(path) == ["train-v1", "train-v2", "train-v3"]
    assert titles(path)[0] == "train v3: +1 ~0 -0"
    assert not any("files restored" in title for title in titles(path))
    assert csv_ids(path, "train-v3", "annotations/train.csv") == set(made)
    for state in (daemon_state, cron_state):  # both are done: no version, no error
        again = state()
        assert errors(again) == [] and tags(path) == ["train-v1", "train-v2", "train-v3"]


def test_a_tag_taken_between_our_commit_and_our_tag_is_adopted_not_retried(label_studio, make_project, tmp_path):
    """Two exporters of one project (two states) over one local repo: the second makes version 2 while the first is
    between its commit and its tag; the first adopts it instead of failing on the tag at every export."""
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 4))
    client = label_studio.client()
    created = make_project("tag taken", CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    exporters = []
    for name in ("one", "two"):
        repo = open_repo(str(path))
        state = SyncState(tmp_path / f"{name}.sqlite3", created.id, repo.repo_id)
        FileImporter(repo, project, state).run()
        exporters.append(Exporter(repo, project, state, sleep=lambda s: None))
    one, two = exporters
    annotate(client, created.id, 1)
    for exporter in exporters:
        AnnotationIntake(project, exporter.state).reconcile()
    assert one.export().tag == "annotations-v1" and two.export() is None  # the second adopts v1
    annotate(client, created.id, 1)
    for exporter in exporters:
        AnnotationIntake(project, exporter.state).reconcile()

    create_tag = one.repo.create_tag

    def the_other_exporter_first(tag, sha, **kwargs):  # the other exporter's version lands before our tag
        one.repo.create_tag = create_tag
        made = two.export()
        assert made is not None and made.tag == tag
        return create_tag(tag, sha, **kwargs)

    one.repo.create_tag = the_other_exporter_first
    assert one.export() is None  # its rows are those of the other's annotations-v2: nothing left to make
    assert tags(path) == ["annotations-v1", "annotations-v2"]
    assert one.state.last_version()["version"] == 2 and one.state.last_version()["status"] == "tagged"
    annotate(client, created.id, 1)
    AnnotationIntake(project, one.state).reconcile()
    assert one.export().tag == "annotations-v3"


def test_a_csv_path_inside_the_include_folder_makes_no_task_of_the_exports_files(label_studio, make_project, tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 3))
    client = label_studio.client()
    project = make_project("csv inside include", CONFIG)
    sync = Once(label_studio, path, project.id, tmp_path / "state.sqlite3", "--include", "fmnist/**",
                "--csv-path", "fmnist/annotations.csv")
    sync()
    annotate(client, project.id, 1)
    sync()
    assert tags(path) == ["fmnist-v1"]
    assert "fmnist/fmnist.manifest.json" in git(path, "ls-tree", "-r", "--name-only", "main")
    # a commit of someone else on top of the export's: the next cycle lists the repo with the export's files in it
    sample_repos.commit_local(path, sample_repos.image_files(3, 4))
    sync()
    paths = sorted(t.data["hf_path"] for t in client.tasks.list(project=project.id, page_size=100))
    assert paths == [sample_repos.image_path(i) for i in range(4)]


def test_the_files_of_every_series_are_never_tasks():
    own = series_for("test/annotations.csv")
    assert with_export_files(["test/**"], ["x/*"], own.all_paths) == ("x/*", "test/annotations.csv")
    assert with_export_files(None, (), own.all_paths) == ()  # the object tag's defaults reach none of them
    assert with_export_files(["*.png"], (), own.all_paths) == ()
    other = series_for("data/other.csv")  # another project's series: its named files, wherever they are
    files = [RepoFile(p, 1, "x") for p in (*other.all_paths[1:], "data/a.png", "data/train.csv")]
    assert [f.path for f in select_files(files, ["data/**", "*.jsonl"])] == ["data/a.png", "data/train.csv"]


@pytest.mark.parametrize("local", [True, False])
def test_a_local_repos_card_shows_the_clone_recipe(local):
    manifest = {"tag": "test-v5", "counts": {"annotations": 1, "tasks": 1, "annotators": 1, "added": 1, "changed": 0,
                                             "removed": 0},
                "label_studio": {"project_id": 3}, "created_at": "2026-12-06T00:00:00+00:00",
                "parent_version": "test-v4", "label_distribution": {}}
    block = card_block(manifest, {"kind": "Choices"}, "image", series=series_for("annotations/test.csv"),
                       rows_config=not local, local=local)
    if local:
        assert "git clone --branch test-v5 <path of this repository> test-v5" in block
        assert 'datasets.load_dataset("./test-v5", "test", split="train")' in block
        assert 'pd.read_csv("./test-v5/annotations/test.csv", dtype=str, keep_default_na=False)' in block
        assert "revision=" not in block and "<repo_id>" not in block
    else:
        assert 'datasets.load_dataset("<repo_id>", "test", revision="test-v5", split="train")' in block
        assert "git clone" not in block


def test_an_export_file_with_glob_characters_in_its_path_is_excluded_alone():
    paths = ["d[1]/a*b?.csv", "d[1]/x.png", "d1/a1b2.csv", "d[1]/aXbY.csv"]
    exclude = with_export_files(["d*"], (), ["d[1]/a*b?.csv"])
    files = [RepoFile(p, 1, "0" * 40) for p in paths]
    assert [f.path for f in select_files(files, ["d*"], exclude)] == ["d1/a1b2.csv", "d[1]/aXbY.csv", "d[1]/x.png"]


def test_a_project_deleted_and_recreated_takes_its_series_over_with_a_warning(label_studio, make_project, tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 3))
    client = label_studio.client()
    old = client.projects.create(title="deleted: old", label_config=CONFIG)  # deleted by the test itself
    Once(label_studio, path, old.id, tmp_path / "old.sqlite3")()
    annotate(client, old.id, 1)
    Once(label_studio, path, old.id, tmp_path / "old.sqlite3")()
    assert tags(path) == ["annotations-v1"]
    client.projects.delete(old.id)
    new = make_project("deleted: new", CONFIG)
    run = Once(label_studio, path, new.id, tmp_path / "new.sqlite3")
    taken = run()
    assert (f"taking over the series 'annotations' from Label Studio project {old.id} (deleted from this Label "
            "Studio)") in taken.stderr
    annotate(client, new.id, 2)
    run()
    assert tags(path)[-1] == "annotations-v3" and titles(path)[0] == "annotations v3: +2 ~0 -0"
