"""A local repository that moves (``labelhub sync --repo-moved-from``): what is refused and what follows it.

Real Label Studio, local git repositories (:mod:`tests.sample_repos`), ``labelhub`` run in-process
(:func:`tests.in_process.invoke_labelhub`) but for the daemon that stops when its repository moves (a subprocess);
the setup is :class:`tests.test_sync_export_repairs.Setup` (N images, one annotation each, synced once:
annotations-v1; its syncs in-process too).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from labelhub.repos.git import LocalGitRepo
from labelhub.sync.ledger import Entry, ImportLedger
from labelhub.sync.state import connect
from tests import sample_repos
from tests.conftest import FILE_SECRET, ROOT
from tests.in_process import invoke_labelhub
from tests.test_sync_export_repairs import N, Setup, git


@pytest.fixture
def local(label_studio, make_project, tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, N))
    setup = Setup(label_studio, make_project, tmp_path, LocalGitRepo(path), str(path))
    setup.sync()  # annotations-v1, from the repo's first path
    return setup


def task_count(local) -> int:
    return local.client.projects.get(local.created.id).task_number


def one_line_refusal(proc) -> str:
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr
    return proc.stderr


@pytest.mark.parametrize("target", ["unrelated", "older-copy"])
def test_repo_moved_from_onto_a_repository_without_the_last_commit_is_refused_and_changes_nothing(local, target):
    old = local.repo.path
    moved = old.parent / "repo-moved"
    if target == "unrelated":
        sample_repos.local_repo_with(moved, sample_repos.image_files(N, 2 * N))
    else:
        shutil.copytree(old, moved)  # a copy made before the next version
        local.annotate(0)
        local.sync()  # annotations-v2 in the original only
        shutil.rmtree(old)
    refused = one_line_refusal(local.sync("--repo-moved-from", str(old), repo_arg=str(moved), check=False))
    assert f"{moved} lacks commit" in refused and "nothing was changed" in refused, refused
    assert task_count(local) == N
    state = connect(local.tmp_path / "state.sqlite3")
    assert state.execute("SELECT count(*) FROM imported WHERE source=?", (str(old),)).fetchone()[0] == N
    assert "annotations-v2" not in git(moved, "tag", "--list")


def test_a_symlink_left_at_the_old_path_and_a_relative_repo_moved_from_move_the_state(local):
    old = local.repo.path
    moved = old.parent / "repo-moved"
    shutil.move(old, moved)
    os.symlink(moved, old)
    relative = os.path.relpath(old, ROOT)  # invoke_labelhub runs from ROOT
    done = local.sync("--repo-moved-from", relative, repo_arg=str(moved))
    assert f"the repository moved from {old} to {moved}" in done.stderr, done.stderr
    # the file URLs name the old directory: the backend needs it under that key
    assert f"LABELHUB_FILE_REPOS needs repo={moved}" in done.stderr
    assert task_count(local) == N


def test_import_labels_after_a_move_is_refused_until_the_sync_moved_the_state(local):
    old = local.repo.path
    moved = old.parent / "repo-moved"
    shutil.move(old, moved)
    labels = local.tmp_path / "labels.csv"
    labels.write_text(f"url,pos_concepts\n{sample_repos.image_path(1)},illustrated\n")
    state = str(local.tmp_path / "state.sqlite3")
    args = ("import-labels", str(labels), "--project", str(local.created.id), "--repo", str(moved), "--state", state)
    refused = one_line_refusal(invoke_labelhub(*args, env=local.env))
    assert f"run labelhub sync --repo {moved} --repo-moved-from {old} first" in refused, refused
    assert task_count(local) == N
    local.sync("--repo-moved-from", str(old), repo_arg=str(moved))
    imported = invoke_labelhub(*args, env=local.env, check=True)
    assert "tasks created: 0" in imported.stdout, imported.stdout
    assert task_count(local) == N


def test_a_few_rows_under_the_new_path_do_not_disable_the_move_check_nor_the_move(local):
    """As an import-labels --repo <new> before this fix left them: one file recorded under the new path."""
    old = local.repo.path
    moved = old.parent / "repo-moved"
    shutil.move(old, moved)
    db = connect(local.tmp_path / "state.sqlite3")
    task_id = db.execute("SELECT task_id FROM imported WHERE source=? ORDER BY key LIMIT 1", (str(old),)).fetchone()[0]
    ImportLedger(db, local.created.id, str(moved)).record([Entry(sample_repos.image_path(0), task_id)])
    db.close()
    refused = one_line_refusal(local.sync(repo_arg=str(moved), check=False))
    assert f"holds {N} files of project {local.created.id} from the local repository {old}, 1 from {moved}" in refused
    assert f"--repo-moved-from {old}" in refused and task_count(local) == N
    done = local.sync("--repo-moved-from", str(old), repo_arg=str(moved))
    assert f"its {N} files keep their tasks" in done.stderr, done.stderr
    assert task_count(local) == N


def test_a_lost_state_after_a_move_is_refused_and_repo_moved_from_adopts_the_old_paths_tasks(local):
    old = local.repo.path
    moved = old.parent / "repo-moved"
    shutil.move(old, moved)
    (local.tmp_path / "state.sqlite3").rename(local.tmp_path / "lost.sqlite3")
    for suffix in ("-wal", "-shm"):
        (local.tmp_path / f"state.sqlite3{suffix}").unlink(missing_ok=True)
    refused = one_line_refusal(local.sync(repo_arg=str(moved), check=False))
    assert f"tasks of this repository's files from {old}" in refused and f"--repo-moved-from {old}" in refused
    assert task_count(local) == N
    sample_repos.commit_local(moved, sample_repos.image_files(N, N + 1))  # one new file
    done = local.sync("--repo-moved-from", str(old), repo_arg=str(moved))
    assert f"adopted the {N} tasks of {old}'s files" in done.stderr, done.stderr
    assert task_count(local) == N + 1  # the new file alone
    local.sync("--repo-moved-from", str(old), repo_arg=str(moved))  # the option left in place: nothing more
    assert task_count(local) == N + 1


def test_a_running_sync_whose_repository_moves_stops_with_one_line_saying_where_to_restart(local):
    old = local.repo.path
    log_path = local.tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tests.guarded", "sync", "--repo", str(old), "--project", str(local.created.id),
             "--state", str(local.tmp_path / "state.sqlite3"), "--interval", "0.5", "--export-interval", "0"],
            cwd=ROOT, env={**os.environ, **local.env, "LABELHUB_SECRET": FILE_SECRET}, stdout=log,
            stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while "file URLs of" not in log_path.read_text():
                assert daemon.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.2)
            time.sleep(2)  # a few polls of the unchanged head
            shutil.move(old, old.parent / "repo-moved")
            assert daemon.wait(timeout=60) == 1
        finally:
            if daemon.poll() is None:
                daemon.kill()
    text = log_path.read_text()
    assert f"the repository is gone from {old} (moved, renamed or unmounted): restart the sync with --repo <its new " \
           f"path> --repo-moved-from {old}" in text, text
    assert "will retry" not in text and "FileNotFoundError" not in text, text


def test_import_labels_with_another_state_after_a_move_labels_the_old_paths_sync_task(local):
    old = local.repo.path
    moved = old.parent / "repo-moved"
    shutil.move(old, moved)
    sample_repos.commit_local(moved, sample_repos.image_files(N, N + 1))  # one new file: a task of the new path
    local.sync("--repo-moved-from", str(old), repo_arg=str(moved))
    # the lookup of other paths skips the one asked for, whatever the order of the tasks
    assert [path for path, _, _ in local.project.other_repo_file_tasks(str(old))] == [str(moved)]
    assert [path for path, _, _ in local.project.other_repo_file_tasks(str(moved))] == [str(old)]
    labels = local.tmp_path / "labels.csv"
    labels.write_text(f"url,pos_concepts\n{sample_repos.image_path(1)},illustrated\n")
    imported = invoke_labelhub("import-labels", str(labels), "--project", str(local.created.id), "--repo", str(moved),
                            "--state", str(local.tmp_path / "other.sqlite3"), env=local.env, check=True)
    assert "tasks created: 0 (1 sync tasks labelled)" in imported.stdout, imported.stdout + imported.stderr
    assert task_count(local) == N + 1
