"""End to end: a history rewritten first and pruned later (real Label Studio, a local repo made with ``git init`` on
``master``, ``labelhub sync --once`` as a subprocess).

The usual order: the tasks are made at commit A, the branch is reset to an older commit O (``git reset --hard``) and
the sync follows it while A still exists (a tag keeps it); later the tags are deleted and ``git gc --prune=now`` drops
A. The tasks whose file is the same blob at the head must then be re-pinned to the head by the next cycle, whether
the head stayed at O or a new commit C came meanwhile, once the next sweep is due (every ``RECHECK_SECONDS``, the
time kept in the state: an hour is made to pass here by clearing it): before, the sync looked the last cycle's commit
up only (O, still there) and left them pinned to the pruned A for good (their URLs answered 404, nothing was logged).
"""
from __future__ import annotations

import sqlite3
import subprocess

import pytest

from tests import sample_repos
from tests.test_sync_follows_changes import CONFIG, LocalMaster, env_for, tasks_by_path
from tests.test_sync_import_faults import sync

N = 4
OLD = [sample_repos.image_path(i) for i in range(N)]  # in O and A, the same blobs
ADDED = [sample_repos.image_path(i) for i in range(N, N + 2)]  # in A only


def _an_hour_passes(tmp_path) -> None:
    """Make the next sweep due: the state forgets the last one's time (``import_repin_sweep``)."""
    from labelhub.sync.files.importer import REPIN_SWEEP

    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        assert db.execute("DELETE FROM cursors WHERE name=?", (REPIN_SWEEP,)).rowcount == 1


def _exists(repo, sha: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=repo.path,
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("then", ["same head", "new commit"])
def test_tasks_left_on_a_commit_pruned_after_the_rewrite_was_synced_are_re_pinned(label_studio, make_project,
                                                                                  tmp_path, then):
    client, env = label_studio.client(), env_for(label_studio)
    repo = LocalMaster(tmp_path / "repo")
    images = sample_repos.image_files(0, N + 3)
    old = repo.commit({p: images[p] for p in OLD})
    sample_repos.git(repo.path, "tag", "annotations-v1")
    made = repo.commit({p: images[p] for p in ADDED})
    sample_repos.git(repo.path, "tag", "annotations-v2")
    project = make_project(f"repin later, {then}", CONFIG)
    sync(repo, project.id, tmp_path, env)
    assert all(t[0].data["hf_revision"] == made for t in tasks_by_path(client, project.id).values())

    sample_repos.git(repo.path, "reset", "-q", "--hard", old)  # the rewrite, synced while `made` still exists
    out = sync(repo, project.id, tmp_path, env)
    assert "history was rewritten" not in out.stderr and "2 removed" in out.stderr, out.stderr
    assert tasks_by_path(client, project.id)[OLD[0]][0].data["hf_revision"] == made  # still there: nothing to do

    sample_repos.git(repo.path, "tag", "-d", "annotations-v1", "annotations-v2")  # the prune, later
    sample_repos.git(repo.path, "reflog", "expire", "--expire=now", "--all")
    sample_repos.git(repo.path, "gc", "-q", "--prune=now")
    assert not _exists(repo, made)
    head = old
    if then == "new commit":
        head = repo.commit({sample_repos.image_path(N + 2): images[sample_repos.image_path(N + 2)]})
    out = sync(repo, project.id, tmp_path, env)  # the last sweep was less than RECHECK_SECONDS ago: not yet
    assert "history was rewritten" not in out.stderr, out.stderr

    _an_hour_passes(tmp_path)
    out = sync(repo, project.id, tmp_path, env)
    assert "the history was rewritten" in out.stderr and f"{N} tasks whose file is the same" in out.stderr, out.stderr
    assert made[:12] in out.stderr
    line = next(line for line in out.stderr.splitlines() if "tasks created" in line)
    assert f"{N} re-pinned" in line and f"re-pinned: {', '.join(sorted(OLD))}" in line, line
    tasks = tasks_by_path(client, project.id)
    for path in OLD:
        assert tasks[path][0].data["hf_revision"] == head and head in tasks[path][0].data["image"], tasks[path][0].data
    out = sync(repo, project.id, tmp_path, env)
    assert "history was rewritten" not in out.stderr, out.stderr


def test_a_daemon_sweeps_the_shown_commits_at_most_once_per_recheck_period(label_studio, make_project, tmp_path,
                                                                            monkeypatch):
    """A daemon's cycles: the commits the tasks show are looked up once per RECHECK_SECONDS, so the short-circuit of
    an unmoved head makes no call in between; once due (RECHECK_SECONDS = 0 here), the pruned commit is found gone and
    its tasks are re-pinned."""
    from labelhub.repos import open_repo
    from labelhub.sync.files import importer
    from labelhub.sync.labelstudio.project import LabelStudioProject
    from labelhub.sync.state import SyncState

    repo_dir = LocalMaster(tmp_path / "repo")
    images = sample_repos.image_files(0, N + 2)
    old = repo_dir.commit({p: images[p] for p in OLD})
    made = repo_dir.commit({p: images[p] for p in ADDED})
    sample_repos.git(repo_dir.path, "tag", "annotations-v1")
    created = make_project("repin later, daemon", CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo = open_repo(str(repo_dir.path))
    state = SyncState(tmp_path / "state.sqlite3", created.id, repo.repo_id)
    looked_up: list[str] = []
    resolve = repo.resolve

    def counted(revision):
        looked_up.append(revision)
        return resolve(revision)

    monkeypatch.setattr(repo, "resolve", counted)

    def cycle():
        looked_up.clear()
        return importer.FileImporter(repo, project, state, revision="master").run()

    cycle()
    sample_repos.git(repo_dir.path, "reset", "-q", "--hard", old)
    report = cycle()
    assert not report.repinned and looked_up.count(made) == 1  # still held: remembered
    sample_repos.git(repo_dir.path, "tag", "-d", "annotations-v1")
    sample_repos.git(repo_dir.path, "reflog", "expire", "--expire=now", "--all")
    sample_repos.git(repo_dir.path, "gc", "-q", "--prune=now")
    report = cycle()
    assert report.unchanged and made not in looked_up  # not due: the short-circuit makes no call
    monkeypatch.setattr(importer, "RECHECK_SECONDS", 0)
    report = cycle()
    assert not report.unchanged and sorted(report.repinned) == sorted(OLD), report
    tasks = tasks_by_path(label_studio.client(), created.id)
    assert all(tasks[p][0].data["hf_revision"] == old for p in OLD)
    report = cycle()
    assert report.unchanged and not report.repinned  # every task shows the head: nothing to look up
