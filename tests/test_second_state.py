"""A second ``--state`` of the same project (the audit's cron ``labelhub sync --once`` run from another folder while
the daemon runs): what it may and may not do.

- a fresh state that goes on from the other exporter's version makes no version for annotations already in it, and
  its rows keep the revision each annotation was made on, even when the file changed since;
- a task deleted in Label Studio that the version has rows of is not made again by the fresh state's first import;
- a second ``labelhub sync`` of the project on the same host, whatever its ``--state``, is refused in one line
  naming the other's ``--state`` while the first holds its lock.

Real Label Studio, real local git repositories, the real ``labelhub`` command (as ``tests/test_series_conflicts.py``).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from labelhub.repos import open_repo
from labelhub.repos.hub import HubRepo
from labelhub.sync.annotations.intake import AnnotationIntake
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.state import SyncState
from labelhub.sync.versions.exporter import Exporter
from labelhub.sync.versions.incremental import build_rows
from tests import sample_repos
from tests.conftest import FILE_SECRET, HUB_TOKEN, ROOT
from tests.test_series_conflicts import annotate, tags
from tests.test_two_projects_one_repo import CONFIG

git = sample_repos.git


def csv_rows(path, tag) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(git(path, "show", f"{tag}:annotations/annotations.csv")), dtype=str,
                       keep_default_na=False)


def sync_once(repo, project, state):
    """What ``labelhub sync --once`` does, in its order: the exporter (its series check) first, then the import, the
    reconciliation and the export."""
    exporter = Exporter(repo, project, state, sleep=lambda s: None)
    FileImporter(repo, project, state).run()
    AnnotationIntake(project, state).reconcile()
    return exporter.export()


class Repo:
    """The repo of the audit's sequence: a local git repository or a dataset repo of the Hub test server."""

    def __init__(self, kind, tmp_path, request, files):
        self.kind = kind
        if kind == "local":
            self.path = sample_repos.local_repo_with(tmp_path / "repo", files)
            self.repo = open_repo(str(self.path))
        else:
            self.hub = request.getfixturevalue("hub")
            self.path = sample_repos.hub_repo_with(self.hub, f"labelhub/second-state-{time.monotonic_ns() % 10**9}",
                                                   files, private=False)
            self.repo = HubRepo(self.path, token=HUB_TOKEN)

    def head(self) -> str:
        return git(self.path, "rev-parse", "main") if self.kind == "local" else self.hub.head(self.path)

    def change(self, files):
        if self.kind == "local":
            sample_repos.commit_local(self.path, files, message="a better image")
        else:
            self.hub.commit_files(self.path, files, message="a better image")

    def tags(self) -> list[str]:
        if self.kind == "local":
            return tags(self.path)
        return sorted(self.repo.head_and_tags("main")[1], key=lambda t: int(t.rsplit("-v", 1)[1]))

    def rows(self, tag) -> pd.DataFrame:
        sha = self.repo.head_and_tags("main")[1][tag]
        return pd.read_csv(io.BytesIO(self.repo.read_file(sha, "annotations/annotations.csv")), dtype=str,
                           keep_default_na=False)


@pytest.mark.parametrize("kind", ["local", "hub"])
def test_a_fresh_state_after_a_file_changed_makes_no_version_and_keeps_the_annotated_revision(
        label_studio, make_project, tmp_path, caplog, request, kind):
    files = sample_repos.image_files(0, 4)
    where = Repo(kind, tmp_path, request, files)
    first_sha = where.head()
    client = label_studio.client()
    created = make_project("second state", CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo = where.repo
    daemon = SyncState(tmp_path / "daemon.sqlite3", created.id, repo.repo_id)
    assert sync_once(repo, project, daemon) is None
    annotate(client, created.id, 3)
    assert sync_once(repo, project, daemon).tag == "annotations-v1"
    rows = where.rows("annotations-v1")
    assert set(rows["annotated_revision"]) == {first_sha}

    # the lead changes an annotated file: its task follows it, its annotation keeps the commit it was made on
    by_path = {t.data["hf_path"]: t for t in client.tasks.list(project=created.id, page_size=100)}
    annotated = sorted(p for p, t in by_path.items() if t.total_annotations)
    changed, deleted = annotated[0], annotated[1]
    where.change({changed: files[sorted(files)[3]]})
    sync_once(repo, project, daemon)
    newest = where.tags()[-1]
    theirs = where.rows(newest)
    assert theirs.set_index("hf_path").loc[changed, "annotated_revision"] == first_sha

    # a fresh state (a cron --once from another folder): no version, and its rows are the version's
    cron = SyncState(tmp_path / "cron.sqlite3", created.id, repo.repo_id)
    assert sync_once(repo, project, cron) is None
    assert where.tags()[-1] == newest
    exporter = Exporter(repo, project, cron, sleep=lambda s: None)
    built = build_rows(cron, exporter.controls, exporter.value_key)
    assert dict(zip(built.frame["annotation_id"].astype(str), built.frame["annotated_revision"])) == \
        dict(zip(theirs["annotation_id"], theirs["annotated_revision"]))

    # the lead deletes an annotated task in Label Studio; another fresh state does not make it again
    client.tasks.delete(by_path[deleted].id)
    before = {t.id for t in client.tasks.list(project=created.id, page_size=100)}
    other = SyncState(tmp_path / "cron2.sqlite3", created.id, repo.repo_id)
    caplog.clear()
    made = sync_once(repo, project, other)
    assert {t.id for t in client.tasks.list(project=created.id, page_size=100)} == before  # nothing recreated
    assert [r.getMessage() for r in caplog.records if "no longer in Label Studio project" in r.getMessage()
            and deleted in r.getMessage()]
    assert made is not None and (made.added, made.changed, made.removed) == (0, 0, 1)
    assert where.rows(made.tag).set_index("hf_path").loc[changed, "annotated_revision"] == first_sha

    # and the states do not flip anything back and forth
    for state in (daemon, cron):  # what a TASKS_DELETED webhook (or the sweep of labelhub sync) stores
        state.delete_task_annotations([by_path[deleted].id])
    for state in (daemon, cron, other, daemon):
        assert sync_once(repo, project, state) is None
    assert where.tags()[-1] == made.tag


def test_a_second_sync_of_the_project_with_another_state_is_refused_while_the_first_runs(
        label_studio, make_project, tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 2))
    created = make_project("one writer", CONFIG)
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
           "LABELHUB_CACHE": str(tmp_path / "cache"),
           "LABELHUB_SECRET": FILE_SECRET}
    (tmp_path / "daemon").mkdir()
    (tmp_path / "cron").mkdir()
    daemon_state = tmp_path / "daemon" / "labelhub-state.sqlite3"
    daemon = subprocess.Popen([sys.executable, "-m", "tests.guarded", "sync", "--repo", str(path), "--project",
                               str(created.id), "--state", str(daemon_state), "--interval", "1"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not daemon_state.exists() or not list((tmp_path / "cache" / "locks").glob("*.holder")):
            assert daemon.poll() is None and time.monotonic() < deadline, daemon.stderr.read() if daemon.poll() else ""
            time.sleep(0.2)
        cron = subprocess.run([sys.executable, "-m", "tests.guarded", "sync", "--repo", str(path), "--project",
                               str(created.id), "--state", str(tmp_path / "cron" / "labelhub-state.sqlite3"),
                               "--once"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert cron.returncode == 1, cron.stderr
        last = cron.stderr.strip().splitlines()[-1]
        assert "another labelhub sync" in last and str(daemon_state) in last, cron.stderr
    finally:
        daemon.terminate()
        daemon.wait(30)
    # the first one gone, the second runs
    again = subprocess.run([sys.executable, "-m", "tests.guarded", "sync", "--repo", str(path), "--project",
                            str(created.id), "--state", str(tmp_path / "cron" / "labelhub-state.sqlite3"), "--once"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr


def test_a_commit_that_reverts_the_exported_files_to_an_older_version_gets_the_last_card_back(
        label_studio, make_project, tmp_path, caplog):
    """The README's own ``git add img/25.png && git commit`` from a work tree whose index holds an older version's
    files (annotations-v1's): the files restored are the last version's, the card too (its section and the version
    its configs name), and a line of the user's own outside the markers is kept."""
    import logging

    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 3))
    client = label_studio.client()
    created = make_project("restored card", CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo = open_repo(str(path))
    state = SyncState(tmp_path / "state.sqlite3", created.id, repo.repo_id)
    assert sync_once(repo, project, state) is None
    annotate(client, created.id, 1)
    assert sync_once(repo, project, state).tag == "annotations-v1"
    git(path, "reset", "-q", "--hard", "main")  # the work tree and index at annotations-v1
    annotate(client, created.id, 1)
    v2 = sync_once(repo, project, state)
    assert v2.tag == "annotations-v2"
    card_v2 = git(path, "show", "annotations-v2:README.md")
    (path / "README.md").write_text((path / "README.md").read_text() + "\nOur own note.\n")
    (path / "img.png").write_bytes(sample_repos.image_files(5, 6)[sample_repos.image_path(5)])
    git(path, "add", "img.png", "README.md")  # the index still holds annotations-v1's files
    git(path, "commit", "-q", "-m", "add img.png")
    assert "annotations-v1" in git(path, "show", "main:README.md")
    caplog.set_level(logging.INFO)
    FileImporter(repo, project, state).run()
    exporter = Exporter(repo, project, state, sleep=lambda s: None)
    assert exporter.export() is None
    head = git(path, "rev-parse", "main")
    assert git(path, "log", "-1", "--format=%s", head) == "annotations v2: files restored"
    card = git(path, "show", "main:README.md")
    assert "Our own note." in card and "LabelHub annotations-v1," not in card and "LabelHub annotations-v2," in card
    assert card.replace("\nOur own note.", "").strip() == card_v2.strip()
    assert "README.md" in [r.getMessage() for r in caplog.records if "restored" in r.getMessage()][-1]
    # our own commit: no "branch main moved" about it, and nothing more to do
    caplog.clear()
    FileImporter(repo, project, state).run()
    annotate(client, created.id, 1)
    AnnotationIntake(project, state).reconcile()
    assert exporter.export().tag == "annotations-v3"
    assert not [r for r in caplog.records if "moved: rebuilding" in r.getMessage()], caplog.text


def test_the_daemon_says_nothing_of_a_branch_move_for_its_own_files_restored_commit(
        label_studio, make_project, tmp_path):
    """The audit's daemon: after its ``annotations v2: files restored`` commit, the next version is built on that
    commit without ``branch main moved: rebuilding the export on <its sha>``."""
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 3))
    client = label_studio.client()
    created = make_project("own commit", CONFIG)
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
           "LABELHUB_CACHE": str(tmp_path / "cache"), "LABELHUB_SECRET": FILE_SECRET}
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tests.guarded", "sync", "--repo", str(path), "--project", str(created.id),
             "--state", str(tmp_path / "state.sqlite3"), "--interval", "1", "--reconcile-interval", "1",
             "--export-interval", "0", "--sweep-interval", "3600"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)

        def wait_for(what):
            deadline = time.monotonic() + 120
            while what not in log_path.read_text():
                assert daemon.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.3)

        try:
            wait_for("3 tasks created")
            annotate(client, created.id, 1)
            wait_for("exported annotations-v1")
            git(path, "reset", "-q", "--hard", "main")  # the work tree's index at annotations-v1
            annotate(client, created.id, 1)
            wait_for("exported annotations-v2")
            (path / "img.png").write_bytes(sample_repos.image_files(5, 6)[sample_repos.image_path(5)])
            git(path, "add", "img.png")
            git(path, "commit", "-q", "-m", "add img.png")  # reverts the exported files to annotations-v1's
            wait_for("on main at")  # restored ... on main at <sha>
            time.sleep(3)  # a few polls of the restored head
            annotate(client, created.id, 1)
            wait_for("exported annotations-v3")
        finally:
            daemon.terminate()
            daemon.wait(60)
    text = log_path.read_text()
    assert "files restored" in git(path, "log", "-1", "--format=%s", "annotations-v3^")
    assert "moved: rebuilding" not in text, text
