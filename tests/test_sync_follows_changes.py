"""End to end: the sync follows the dataset as it really changes (real Label Studio, real images on the Hub
test server and in a local repo made with a plain ``git init`` on ``master``).

- a content change, a rename, a move across folders and a deletion in one commit: the changed file's task
  shows the new commit and keeps its annotation, the renamed and moved files keep their tasks with their new
  paths, the deleted one is marked; no task is created; the exported rows say the revision each annotation
  was made on;
- a Label Studio reset that gives a new project the same id: every file is imported again;
- a task deleted while its webhook was lost: the sweep finds it and its annotation leaves the next version.
"""
from __future__ import annotations

import csv
import io
import time

import pytest

from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub
from tests.labelstudio import LabelStudioServer, free_port

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
          '<Choice value="text-only"/><Choice value="illustrated"/></Choices></View>')
N = 8
CHANGED, RENAMED, MOVED, DELETED = (sample_repos.image_path(i) for i in (1, 2, 3, 4))
RENAMED_TO = "fmnist/vol-000/image/renamed.png"
MOVED_TO = "elsewhere/pages/00003.png"


class LocalMaster:
    """A local repository made with ``git init`` on ``master`` (the default of many systems)."""

    def __init__(self, path):
        path.mkdir(parents=True)
        sample_repos.git(path, "init", "-q", "-b", "master")
        self.path, self.repo_arg = path, str(path)

    def commit(self, files=None, deletes=()):
        return sample_repos.commit_local(self.path, files, deletes)

    def read(self, tag, path):
        return sample_repos.git(self.path, "show", f"{tag}:{path}")


class HubDataset:
    def __init__(self, hub, repo_id):
        hub.create_repo(repo_id)
        self.hub, self.repo_arg = hub, repo_id

    def commit(self, files=None, deletes=()):
        return self.hub.commit_files(self.repo_arg, files or {}, deletes=list(deletes), message="update")

    def read(self, tag, path):
        from huggingface_hub import hf_hub_download

        with open(hf_hub_download(self.repo_arg, path, repo_type="dataset", revision=tag, token=HUB_TOKEN)) as fh:
            return fh.read()


@pytest.fixture(params=["hub", "local-master"])
def dataset(request, tmp_path):
    if request.param == "local-master":
        return LocalMaster(tmp_path / "repo")
    return HubDataset(request.getfixturevalue("hub"), f"labelhub/follow-{time.monotonic_ns() % 10**9}")


def env_for(server, token=None):
    return {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": token or server.personal_token,
            "HF_TOKEN": HUB_TOKEN}


def sync_once(dataset, project_id, tmp_path, env):
    """``labelhub sync --once`` without ``--revision``: a local repo follows its checked-out branch."""
    return invoke_labelhub("sync", "--repo", dataset.repo_arg, "--project", str(project_id), "--state",
                           str(tmp_path / "state.sqlite3"), "--once", env=env, check=True)


def tasks_by_path(client, project_id):
    by_path: dict[str, list] = {}
    for task in client.tasks.list(project=project_id, page_size=1000, fields="all"):
        by_path.setdefault(task.data["hf_path"], []).append(task)
    return by_path


def rows_of(dataset, tag):
    return list(csv.DictReader(io.StringIO(dataset.read(tag, "annotations/annotations.csv"))))


def choice(value):
    return {"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": [value]}}


def test_changed_renamed_moved_and_deleted_files_keep_their_tasks_and_annotations(label_studio, make_project,
                                                                                   dataset, tmp_path):
    client, env = label_studio.client(), env_for(label_studio)
    project = make_project("follow", CONFIG)
    first = dataset.commit(sample_repos.image_files(0, N))
    sync_once(dataset, project.id, tmp_path, env)
    tasks = tasks_by_path(client, project.id)
    assert len(tasks) == N and tasks[CHANGED][0].data["hf_revision"] == first
    for path in (CHANGED, RENAMED, MOVED):
        client.annotations.create(tasks[path][0].id, result=[choice("illustrated")])
    sync_once(dataset, project.id, tmp_path, env)  # the annotations, on the first commit: annotations-v1
    ids = {path: tasks[path][0].id for path in (CHANGED, RENAMED, MOVED, DELETED)}

    images = sample_repos.image_files(0, N + 1)
    second = dataset.commit({CHANGED: images[sample_repos.image_path(N)], RENAMED_TO: images[RENAMED],
                             MOVED_TO: images[MOVED]}, deletes=(RENAMED, MOVED, DELETED))
    out = sync_once(dataset, project.id, tmp_path, env)
    assert "1 changed, 2 moved, 1 removed" in out.stderr, out.stderr

    tasks = tasks_by_path(client, project.id)
    assert sum(len(t) for t in tasks.values()) == N and all(len(t) == 1 for t in tasks.values())  # no new task
    changed = tasks[CHANGED][0]
    assert changed.id == ids[CHANGED] and changed.data["hf_revision"] == second and second in changed.data["image"]
    assert len(changed.annotations) == 1
    assert tasks[RENAMED_TO][0].id == ids[RENAMED] and tasks[RENAMED_TO][0].data["image"].split("?")[0].endswith(RENAMED_TO)
    assert tasks[MOVED_TO][0].id == ids[MOVED] and len(tasks[MOVED_TO][0].annotations) == 1
    assert RENAMED not in tasks and MOVED not in tasks
    assert not (tasks[RENAMED_TO][0].meta or {}).get("hf_removed")
    assert tasks[DELETED][0].id == ids[DELETED] and tasks[DELETED][0].meta["hf_removed"] is True

    card = dataset.read("annotations-v2", "README.md")  # the history says why the rows changed
    assert "Repo files since annotations-v1: 1 changed, 2 moved, 1 removed." in card
    assert f"Repo files of the first version: {N} new." in dataset.read("annotations-v1", "README.md")
    rows = {row["hf_path"]: row for row in rows_of(dataset, "annotations-v2")}
    assert set(rows) == {CHANGED, RENAMED_TO, MOVED_TO}
    assert rows[CHANGED]["annotated_revision"] == first  # made on the first commit's content
    # a moved file is the same content at its new path: its annotations name the commit where that path holds it,
    # so a training row's hf://...@<annotated_revision>/<hf_path> names a file
    assert rows[RENAMED_TO]["annotated_revision"] == rows[MOVED_TO]["annotated_revision"] == second
    assert second in rows[CHANGED]["image"]  # while the task now shows the new content
    assert {row["annotated_revision"] for row in rows_of(dataset, "annotations-v1")} == {first}

    # annotations-v1 (made on the first commit) restored into a new project, then the repo synced into it: the
    # restored tasks follow their files as the first project's did (restore records them without a blob id)
    target = make_project("follow, restored", CONFIG)
    state = ("--project", str(target.id), "--state", str(tmp_path / "restored.sqlite3"))
    invoke_labelhub("restore", "--repo", dataset.repo_arg, "--tag", "annotations-v1", *state, env=env, check=True)
    out = invoke_labelhub("sync", "--repo", dataset.repo_arg, *state, "--once", "--no-export", env=env, check=True)
    assert "1 changed, 2 moved" in out.stderr, out.stderr
    restored = tasks_by_path(client, target.id)
    assert sorted(restored) == sorted(set(tasks) - {DELETED}), (sorted(restored), sorted(tasks))
    assert all(len(t) == 1 for t in restored.values())
    # the head (the export of annotations-v2 since) holds the second commit's content
    assert restored[CHANGED][0].data["hf_revision"] not in ("", first) and len(restored[CHANGED][0].annotations) == 1
    assert len(restored[RENAMED_TO][0].annotations) == len(restored[MOVED_TO][0].annotations) == 1


def test_a_project_recreated_with_the_same_id_after_a_reset_gets_every_file_again(tmp_path):
    repo = LocalMaster(tmp_path / "repo")
    repo.commit(sample_repos.image_files(0, N))
    port = free_port()
    created = []
    for run in ("before", "after"):
        with LabelStudioServer(tmp_path / f"ls-{run}", port=port) as server:  # a fresh database each time
            project = server.client().projects.create(title="reset", label_config=CONFIG)
            created.append(project.id)
            out = sync_once(repo, project.id, tmp_path, env_for(server, server.api_key))
            assert len(tasks_by_path(server.client(), project.id)) == N, out.stderr
        if run == "before":
            time.sleep(1.1)  # Label Studio names a project by its id and created_at in whole seconds
    assert created[0] == created[1]
    assert f"{N} tasks created" in out.stderr and "rebuilding it from Label Studio" in out.stderr


def test_a_task_deleted_without_its_webhook_leaves_the_next_version(label_studio, make_project, tmp_path):
    client, env = label_studio.client(), env_for(label_studio)
    repo = LocalMaster(tmp_path / "repo")
    repo.commit(sample_repos.image_files(0, N))
    project = make_project("sweep", CONFIG)
    sync_once(repo, project.id, tmp_path, env)
    tasks = tasks_by_path(client, project.id)
    for path in (CHANGED, RENAMED):
        client.annotations.create(tasks[path][0].id, result=[choice("text-only")])
    sync_once(repo, project.id, tmp_path, env)
    assert {row["hf_path"] for row in rows_of(repo, "annotations-v1")} == {CHANGED, RENAMED}
    client.tasks.delete(str(tasks[RENAMED][0].id))  # no webhook is registered: none arrives
    out = sync_once(repo, project.id, tmp_path, env)
    assert "sweep: 1 tasks deleted" in out.stderr, out.stderr
    assert {row["hf_path"] for row in rows_of(repo, "annotations-v2")} == {CHANGED}
