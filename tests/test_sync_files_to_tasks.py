"""End to end: real Label Studio, real images in a local git repo and on the Hub test server,
``labelhub sync --once`` → exactly one task per file, whatever happens. The syncs run in-process
(:func:`tests.in_process.invoke_labelhub`) but those killed (SIGKILL) and those whose errors are read as a process
prints them (subprocesses)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests import sample_repos
from tests.conftest import FILE_SECRET, HUB_TOKEN, ROOT, run_labelhub
from tests.in_process import invoke_labelhub

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
          '<Choice value="text-only"/><Choice value="illustrated"/></Choices></View>')
N = 30


@pytest.fixture(params=["hub", "local"])
def dataset(request, tmp_path):
    """A dataset repo with N real images and the inventory CSV; yields an object that can commit."""
    files = {**sample_repos.image_files(0, N), sample_repos.INVENTORY: sample_repos.inventory_csv(N + 10)}
    if request.param == "local":
        repo = tmp_path / "repo"
        sample_repos.init_local_repo(repo)
        sample_repos.commit_local(repo, files, message="initial images")
        yield LocalDataset(repo)
    else:
        hub = request.getfixturevalue("hub")
        repo_id = f"labelhub/fmnist-{tmp_path.name[-20:].strip('_')}-{time.monotonic_ns() % 10**6}"
        hub.create_repo(repo_id)
        hub.commit_files(repo_id, files, message="initial images")
        yield HubDataset(hub, repo_id)


class LocalDataset:
    def __init__(self, path):
        self.path, self.repo_arg, self.repo_id = path, str(path), str(path.resolve())

    def commit(self, files=None, deletes=()):
        return sample_repos.commit_local(self.path, files, deletes)


class HubDataset:
    def __init__(self, hub, repo_id):
        self.hub, self.repo_arg, self.repo_id = hub, repo_id, repo_id

    def commit(self, files=None, deletes=()):
        return self.hub.commit_files(self.repo_id, files or {}, deletes=list(deletes), message="update")


@pytest.fixture
def project(make_project):
    return make_project("fmnist", CONFIG)


def sync_args(dataset, project, tmp_path, *extra):
    return ["sync", "--repo", dataset.repo_arg, "--project", str(project.id), "--state",
            str(tmp_path / "state.sqlite3"), "--metadata", sample_repos.INVENTORY, "--metadata-columns", "id,meta",
            "--once", *extra]


def env_for(label_studio):
    return {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token,
            "HF_TOKEN": HUB_TOKEN}


def tasks_by_path(label_studio, project_id):
    client = label_studio.client()
    tasks = list(client.tasks.list(project=project_id, page_size=1000, fields="task_only"))
    by_path: dict[str, list] = {}
    for task in tasks:
        by_path.setdefault(task.data["hf_path"], []).append(task)
    return by_path


def test_files_become_tasks_once_and_follow_new_commits(label_studio, project, dataset, tmp_path):
    env = env_for(label_studio)
    first = invoke_labelhub(*sync_args(dataset, project, tmp_path), env=env, check=True)
    tasks = tasks_by_path(label_studio, project.id)
    assert sorted(tasks) == sorted(sample_repos.image_path(i) for i in range(N))
    assert all(len(t) == 1 for t in tasks.values())
    sample = tasks[sample_repos.image_path(12)][0].data
    assert sample["hf_repo"] == dataset.repo_id and len(sample["hf_revision"]) == 40
    assert sample["hf_revision"] in sample["image"] and sample["image"].split("?")[0].endswith(sample_repos.image_path(12))
    assert sample["id"] == "vol-001" and sample["meta"] == "Fashion volume 001, a title with a comma"
    assert "30 tasks created" in first.stderr
    assert label_studio.personal_token not in first.stderr + first.stdout
    assert "\r" not in first.stderr and " tasks/s" not in first.stderr  # no progress bar off a terminal: a log

    again = invoke_labelhub(*sync_args(dataset, project, tmp_path), env=env, check=True)
    assert sum(len(t) for t in tasks_by_path(label_studio, project.id).values()) == N
    assert "tasks created" not in again.stderr  # the head did not move: nothing imported

    removed = sample_repos.image_path(3)
    dataset.commit(sample_repos.image_files(N, N + 4), deletes=(removed,))
    invoke_labelhub(*sync_args(dataset, project, tmp_path), env=env, check=True)
    tasks = tasks_by_path(label_studio, project.id)
    assert len(tasks) == N + 4 and all(len(t) == 1 for t in tasks.values())
    assert tasks[removed][0].meta["hf_removed"] is True
    assert tasks[sample_repos.image_path(N + 2)][0].data["meta"].startswith("Fashion volume 003")
    assert not tasks[sample_repos.image_path(4)][0].meta.get("hf_removed")


def test_lost_state_file_creates_no_duplicate(label_studio, project, dataset, tmp_path):
    env = env_for(label_studio)
    invoke_labelhub(*sync_args(dataset, project, tmp_path), env=env, check=True)
    (tmp_path / "state.sqlite3").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"state.sqlite3{suffix}").unlink(missing_ok=True)
    invoke_labelhub(*sync_args(dataset, project, tmp_path), env=env, check=True)
    assert sum(len(t) for t in tasks_by_path(label_studio, project.id).values()) == N


KILL_POINTS = [("local", "before_import:1"), ("local", "after_import:1"), ("local", "after_import:3"),
               ("local", "after_record:2"), ("hub", "after_import:3")]


@pytest.mark.parametrize("dataset, kill_at", KILL_POINTS, indirect=["dataset"])
def test_sigkill_mid_import_then_rerun_gives_no_duplicate_and_none_missing(label_studio, project, dataset,
                                                                          tmp_path, kill_at):
    env = env_for(label_studio)
    killed = run_labelhub(*sync_args(dataset, project, tmp_path, "--batch-size", "7"),
                          env={**env, "LABELHUB_TEST_KILL_AT": kill_at})
    assert killed.returncode == -signal.SIGKILL
    invoke_labelhub(*sync_args(dataset, project, tmp_path, "--batch-size", "7"), env=env, check=True)
    tasks = tasks_by_path(label_studio, project.id)
    assert sorted(tasks) == sorted(sample_repos.image_path(i) for i in range(N))
    assert all(len(t) == 1 for t in tasks.values()), {p: len(t) for p, t in tasks.items() if len(t) > 1}


@pytest.mark.parametrize("dataset", ["local"], indirect=True)
def test_daemon_killed_from_outside_during_import_recovers(label_studio, project, dataset, tmp_path):
    env = {**os.environ, **env_for(label_studio), "LABELHUB_SECRET": FILE_SECRET}
    args = [a for a in sync_args(dataset, project, tmp_path, "--batch-size", "1") if a != "--once"]
    daemon = subprocess.Popen([sys.executable, "-m", "tests.guarded", *args, "--interval", "3600"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = label_studio.client()
    deadline = time.monotonic() + 60
    while client.projects.get(project.id).task_number < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    invoke_labelhub(*sync_args(dataset, project, tmp_path), env=env_for(label_studio), check=True)
    tasks = tasks_by_path(label_studio, project.id)
    assert len(tasks) == N and all(len(t) == 1 for t in tasks.values())


def test_cli_errors_are_one_clear_line_without_traceback_or_token(label_studio, hub, project, tmp_path):
    env = env_for(label_studio)
    repo = tmp_path / "repo"
    sample_repos.init_local_repo(repo)
    sample_repos.commit_local(repo, sample_repos.image_files(0, 2))
    client = label_studio.client()
    no_image = client.projects.create(title="no image", label_config='<View><Header value="x"/></View>')
    state = ["--state", str(tmp_path / "s.sqlite3"), "--once"]
    cases = {
        "not found": ["sync", "--repo", str(repo), "--project", "999999", *state],
        "revision 'nope' not found": ["sync", "--repo", str(repo), "--project", str(project.id), "--revision",
                                      "nope", *state],
        "no such directory (a local git repository), and not a Hub repo_id": ["sync", "--repo", "no-such-dir",
                                                                             "--project", "1", *state],
        "dataset labelhub/missing not found": ["sync", "--repo", "labelhub/missing", "--project", "1", *state],
        "no Image, Audio, Video, Text or HyperText": ["sync", "--repo", str(repo), "--project", str(no_image.id),
                                                      *state],
        "Invalid value for '--project'": ["sync", "--repo", str(repo), "--project", "x", *state],
    }
    # in-process (tests/in_process.py): each is refused before any work; only the Hub's endpoint needs a process of
    # its own (huggingface_hub reads HF_ENDPOINT when it is imported)
    results = [invoke_labelhub(*args, env=env) for args in cases.values()]
    wrong_key = invoke_labelhub(*cases["not found"][:4], str(project.id), *state,
                                env={**env, "LABEL_STUDIO_API_KEY": "wrong-key-123456789"})
    unreachable = run_labelhub("sync", "--repo", "labelhub/x", "--project", "1", *state,
                               env={**env, "HF_ENDPOINT": "http://127.0.0.1:9"})
    for expected, result in zip(cases, results):
        assert result.returncode != 0, expected
        assert expected in result.stderr, (expected, result.stderr)
        assert "Traceback" not in result.stderr and label_studio.personal_token not in result.stderr
    assert unreachable.returncode != 0 and "cannot reach the Hub at http://127.0.0.1:9" in unreachable.stderr
    assert HUB_TOKEN not in unreachable.stderr
    assert wrong_key.returncode != 0 and "refused LABEL_STUDIO_API_KEY" in wrong_key.stderr
    assert "wrong-key-123456789" not in wrong_key.stderr


@pytest.mark.parametrize("dataset", ["local"], indirect=True)
def test_an_edited_metadata_csv_reaches_the_tasks_made_before(label_studio, project, dataset, tmp_path):
    """A corrected metadata row updates the tasks already made, a column that left the CSV leaves them, and a task
    whose row is unchanged gets no call (its data is as it was)."""
    env = env_for(label_studio)
    invoke_labelhub(*sync_args(dataset, project, tmp_path), env=env, check=True)
    before = tasks_by_path(label_studio, project.id)
    volumes = sorted({sample_repos.image_path(i).split("/")[1] for i in range(N)})
    rows = "".join(f'{v},"{"Corrected title" if v == volumes[0] else "Fashion volume " + v[4:] + ", a title with a comma"}"\n'
                   for v in volumes)
    dataset.commit({sample_repos.INVENTORY: rows.encode()})
    run = invoke_labelhub(*sync_args(dataset, project, tmp_path), env=env, check=True)
    after = tasks_by_path(label_studio, project.id)
    first = [p for p in after if p.split("/")[1] == volumes[0]]
    assert first and all(after[p][0].data["meta"] == "Corrected title" for p in first)
    assert all(after[p][0].data == before[p][0].data for p in after if p not in first)
    assert f"{len(first)} of {N} tasks' metadata columns updated" in run.stderr

    # a header CSV with another column: the former 'meta' column leaves every task, 'title' arrives
    header = "id,title\n" + "".join(f"{v},Title {v}\n" for v in volumes)
    dataset.commit({sample_repos.INVENTORY: header.encode()})
    args = [a for a in sync_args(dataset, project, tmp_path) if a not in ("--metadata-columns", "id,meta")]
    invoke_labelhub(*args, env=env, check=True)
    after = tasks_by_path(label_studio, project.id)
    sample = after[sample_repos.image_path(12)][0].data
    assert "meta" not in sample and sample["title"] == "Title vol-001" and sample["id"] == "vol-001"
    assert len(after) == N and all(len(t) == 1 for t in after.values())
