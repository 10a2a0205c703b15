"""Faults on the way to the Hub: conflicts, rate limits, errors, lost answers, crashes, webhooks.
Nothing is lost or doubled."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from huggingface_hub import HfApi

from labelhub.errors import TransientHubError
from labelhub.sync.versions.exporter import Exporter
from labelhub.repos.hub import HubRepo
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.annotations.intake import AnnotationIntake
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.state import SyncState
from tests import sample_repos
from tests.conftest import FILE_SECRET, HUB_TOKEN, ROOT, run_labelhub
from tests.in_process import invoke_labelhub
from tests.test_sync_export import CONFIG, choice

N = 4


def hub_repo_with_images(hub, name: str) -> str:
    """A new dataset repo on the Hub test server with N real images; returns its repo_id."""
    repo_id = f"labelhub/{name}-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id)
    hub.commit_files(repo_id, sample_repos.image_files(0, N), message="images")
    return repo_id


@pytest.fixture
def setup(label_studio, hub, make_project, tmp_path):
    """A Hub repo with N images imported as tasks, one annotation per task, and an exporter."""
    repo_id = hub_repo_with_images(hub, "faults")
    client = label_studio.client()
    created = make_project("faults", CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo = HubRepo(repo_id, token=HUB_TOKEN)
    state = SyncState(tmp_path / "state.sqlite3", created.id, repo_id)
    FileImporter(repo, project, state).run()
    task_ids = [t.id for t in client.tasks.list(project=created.id, page_size=100)]
    for task_id in task_ids:
        client.annotations.create(task_id, result=[choice("illustrated")])
    sleeps = []
    exporter = Exporter(repo, project, state, sleep=sleeps.append)
    AnnotationIntake(project, state).reconcile()
    return exporter, hub, repo_id, sleeps, client, task_ids


def commit_titles(repo_id):
    return [c.title for c in HfApi(token=HUB_TOKEN).list_repo_commits(repo_id, repo_type="dataset")]


def test_someone_else_committing_meanwhile_gives_412_and_their_file_survives(setup):
    exporter, hub, repo_id, _, client, task_ids = setup
    assert exporter.export().number == 1
    hub.commit_files(repo_id, {"notes.txt": b"theirs"}, message="someone else")  # our parent is now stale
    client.annotations.create(task_ids[0], result=[choice("text-only")])
    AnnotationIntake(exporter.project, exporter.state).reconcile()
    hub.reset_calls()
    version = exporter.export()
    assert version.number == 2 and (version.added, version.changed, version.removed) == (1, 0, 0)
    assert hub.count_calls("POST", r"/commit/") == 2  # the 412, then the rebuilt commit
    files = HfApi(token=HUB_TOKEN).list_repo_files(repo_id, repo_type="dataset", revision="annotations-v2")
    assert "notes.txt" in files and "annotations/annotations.csv" in files
    assert hub.head(repo_id, "annotations-v2") == hub.head(repo_id)


@pytest.mark.parametrize("kind", ["429", "500"])
def test_rate_limit_and_server_error_are_retried_honouring_retry_after(setup, kind):
    exporter, hub, repo_id, sleeps, *_ = setup
    hub.faults.add(method="POST", path=r"/commit/", kind=kind, count=2, retry_after=7)
    assert exporter.export().number == 1
    assert sleeps == [7.0, 7.0]
    assert commit_titles(repo_id).count("annotations v1: +4 ~0 -0") == 1


def test_hub_down_longer_than_the_retries_keeps_the_export_pending(setup):
    exporter, hub, repo_id, sleeps, *_ = setup
    hub.faults.add(method="POST", path=r"/commit/", kind="500", count=exporter.max_attempts)
    with pytest.raises(TransientHubError):
        exporter.export()
    assert exporter.pending() and "annotations-v1" not in exporter.repo.tags()
    assert exporter.export().number == 1  # the Hub answers again: the same version lands once
    assert commit_titles(repo_id).count("annotations v1: +4 ~0 -0") == 1


def test_lost_answer_to_a_commit_that_landed_creates_no_second_commit(setup):
    exporter, hub, repo_id, *_ = setup
    hub.faults.add(method="POST", path=r"/commit/", kind="drop")
    version = exporter.export()
    assert version.number == 1 and hub.head(repo_id, "annotations-v1") == version.commit
    assert commit_titles(repo_id).count("annotations v1: +4 ~0 -0") == 1


def test_a_commit_that_landed_but_was_answered_502_creates_no_second_commit(setup):
    """A gateway's 5xx after the Hub wrote the commit: the retry on the same parent is refused (412), and the
    export must find its own commit by its export id, not commit the version again on top of it (found by an
    audit: two ``annotations v1`` commits, the tag on the second)."""
    exporter, hub, repo_id, *_ = setup
    hub.faults.add(method="POST", path=r"/commit/", kind="502_after")
    version = exporter.export()
    assert version.number == 1 and hub.head(repo_id, "annotations-v1") == version.commit
    assert commit_titles(repo_id).count("annotations v1: +4 ~0 -0") == 1


def test_lost_request_is_committed_again(setup):
    exporter, hub, repo_id, *_ = setup
    hub.faults.add(method="POST", path=r"/commit/", kind="drop_before")
    assert exporter.export().number == 1
    assert commit_titles(repo_id).count("annotations v1: +4 ~0 -0") == 1


def synced_project(label_studio, hub, make_project, tmp_path, name: str):
    """A Hub repo of N images synced into a new project by ``labelhub sync --once`` (in-process): ``(repo_id,
    project, the sync's arguments, its environment)``."""
    repo_id = hub_repo_with_images(hub, name)
    project = make_project(name, CONFIG)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key, "HF_TOKEN": HUB_TOKEN}
    args = ["sync", "--repo", repo_id, "--project", str(project.id), "--state", str(tmp_path / "s.sqlite3"), "--once"]
    invoke_labelhub(*args, env=env, check=True)
    return repo_id, project, args, env


def test_sigkill_between_commit_and_tag_then_rerun_finishes_the_version(label_studio, hub, make_project, tmp_path):
    repo_id, project, args, env = synced_project(label_studio, hub, make_project, tmp_path, "kill")
    client = label_studio.client()
    for task in client.tasks.list(project=project.id, page_size=100):
        client.annotations.create(task.id, result=[choice("text-only")])
    killed = run_labelhub(*args, env={**env, "LABELHUB_TEST_KILL_AT": "after_commit:1"})
    assert killed.returncode == -signal.SIGKILL
    assert commit_titles(repo_id)[0] == "annotations v1: +4 ~0 -0"
    assert "annotations-v1" not in [t.name for t in HfApi().list_repo_refs(repo_id, repo_type="dataset").tags]
    landed = hub.head(repo_id)
    for n in range(60):  # a busy repo: others push more commits than a short look back would read
        hub.commit_files(repo_id, {f"notes/{n}.txt": b"x"}, message=f"note {n}")
    invoke_labelhub(*args, env=env, check=True)
    assert commit_titles(repo_id).count("annotations v1: +4 ~0 -0") == 1
    assert hub.head(repo_id, "annotations-v1") == landed


def test_webhooks_drive_exports_and_bad_events_are_rejected_while_the_daemon_runs(label_studio, tmp_path):
    repo = tmp_path / "repo"
    sample_repos.init_local_repo(repo)
    sample_repos.commit_local(repo, sample_repos.image_files(0, N))
    client = label_studio.client()
    project = client.projects.create(title="webhooks", label_config=CONFIG)
    from tests.labelstudio import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/webhook"
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
           "LABELHUB_WEBHOOK_SECRET": "s3cret-webhook-value", "LABELHUB_SECRET": FILE_SECRET}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "tests.guarded", "sync", "--repo", str(repo), "--project", str(project.id), "--state",
         str(tmp_path / "s.sqlite3"), "--export-interval", "0", "--reconcile-interval", "3600", "--interval", "3600",
         "--webhook-url", url, "--webhook-port", str(port)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while client.projects.get(project.id).task_number < N or not client.webhooks.list(project=str(project.id)):
            assert time.monotonic() < deadline and daemon.poll() is None
            time.sleep(0.2)
        hook = client.webhooks.list(project=str(project.id))[0]
        assert hook.url == url and hook.send_payload and "X-LabelHub-Secret" in (hook.headers or {})
        task = next(iter(client.tasks.list(project=project.id, page_size=1)))
        saved = time.monotonic()
        client.annotations.create(task.id, result=[choice("illustrated")])
        while "annotations-v1" not in sample_repos.git(repo, "tag", "--list"):
            assert time.monotonic() - saved < 30, "the webhook did not lead to a version"
            time.sleep(0.05)
        print(f"annotation saved → tagged commit: {time.monotonic() - saved:.2f} s")
        bad = requests.post(url, data="{not json", headers={"X-LabelHub-Secret": "s3cret-webhook-value"})
        unknown = requests.post(url, json={"action": "SOMETHING"}, headers={"X-LabelHub-Secret": "s3cret-webhook-value"})
        wrong = requests.post(url, json={"action": "ANNOTATION_CREATED"}, headers={"X-LabelHub-Secret": "nope"})
        assert (bad.status_code, unknown.status_code, wrong.status_code) == (400, 400, 403)
        assert "unknown action 'SOMETHING'" in unknown.json()["error"]
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0
    assert "webhook rejected: not JSON" in stderr and "webhook refused" in stderr and "unknown action" in stderr
    assert "s3cret-webhook-value" not in stderr and label_studio.api_key not in stderr
    client.projects.delete(project.id)


def test_a_version_finished_after_a_sigkill_keeps_the_cards_edits_in_the_next_version(label_studio, hub, make_project,
                                                                                      tmp_path):
    """The next export rebuilds the card from the one the finished version committed, not from the version before's
    (which dropped a person's edit made in between and every other project's section)."""
    from huggingface_hub import hf_hub_download

    repo_id, project, args, env = synced_project(label_studio, hub, make_project, tmp_path, "card-kill")
    client = label_studio.client()
    tasks = sorted(client.tasks.list(project=project.id, page_size=100), key=lambda t: t.id)

    def card(revision="main") -> str:
        with open(hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision,
                                  token=HUB_TOKEN)) as fh:
            return fh.read()

    client.annotations.create(tasks[0].id, result=[choice("text-only")])
    invoke_labelhub(*args, env=env, check=True)  # annotations-v1
    hub.commit_files(repo_id, {"README.md": card() + "\nOur own words about the data.\n"}, message="card edit")
    client.annotations.create(tasks[1].id, result=[choice("text-only")])
    killed = run_labelhub(*args, env={**env, "LABELHUB_TEST_KILL_AT": "after_commit:1"})  # annotations-v2, untagged
    assert killed.returncode == -signal.SIGKILL
    client.annotations.create(tasks[2].id, result=[choice("illustrated")])
    invoke_labelhub(*args, env=env, check=True)  # finishes v2, exports v3
    assert hub.head(repo_id, "annotations-v3") == hub.head(repo_id)
    assert "Our own words about the data." in card("annotations-v2")
    assert "Our own words about the data." in card("annotations-v3")
