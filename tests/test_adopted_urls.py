"""End to end, real Label Studio: the tasks the sync adopts from ``labelhub import-labels`` (another state file)
get the sync's file URLs, and an import made after a ``git mv`` and before the sync followed it does not take the
moved file's annotated task out of the training rows (the audit's walkthrough, /tmp/audit-post)."""
from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from labelhub.signing import parse_file_url, verify
from labelhub.sync.labels.cli import import_labels
from tests import sample_repos
from tests.conftest import FILE_SECRET
from tests.in_process import invoke_labelhub
from tests.test_import_labels_to_tasks import CONFIG, HEADER, env  # noqa: F401 (env: a fixture)

N = 4
SYNC_URL = "http://127.0.0.1:18510"


@pytest.fixture
def project(make_project):
    return make_project("adopted urls", CONFIG)


def _import(env, tmp_path, project, repo, rows, *extra, **extra_env):
    """``labelhub import-labels`` in-process with its own state file (not the sync's)."""
    csv = tmp_path / "labels.csv"
    csv.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(import_labels, [str(csv), "--project", str(project.id), "--repo", str(repo),
                                                    "--state", str(tmp_path / "import.sqlite3"), *extra],
                                    env={**env, **extra_env}, catch_exceptions=False)
    finally:
        root.handlers[:], root.level = handlers, level
    assert result.exit_code == 0, result.output
    return result.output


def _sync(env, repo, project, tmp_path, *extra):
    return invoke_labelhub("sync", "--repo", str(repo), "--project", str(project.id), "--once", "--no-export",
                           "--state", str(tmp_path / "daemon.sqlite3"), "--public-url", SYNC_URL, *extra,
                           env=env, check=True).stderr


def _tasks(label_studio, project_id) -> dict[str, list]:
    by_path: dict[str, list] = {}
    for task in label_studio.client().tasks.list(project=project_id, page_size=1000, fields="all"):
        by_path.setdefault(task.data["hf_path"], []).append(task)
    return by_path


def _loads_for_the_sync(url: str) -> bool:
    ref = parse_file_url(url)
    try:
        verify(FILE_SECRET, ref.key, ref.sha, ref.path, ref.expires, ref.sig)
    except ValueError:
        return False
    return url.startswith(SYNC_URL + "/files/")


@pytest.mark.parametrize("lifetime", ["0", "7d"])
def test_a_task_adopted_from_an_import_with_another_url_policy_gets_the_syncs_url(
        label_studio, project, env, tmp_path, lifetime):
    repo = sample_repos.local_repo_with(tmp_path / "shelf", sample_repos.image_files(0, N))
    p = [sample_repos.image_path(i) for i in range(N)]
    _sync(env, repo, project, tmp_path, "--include", p[0], "--url-lifetime", lifetime)
    # the walkthrough's import: another host for the backend and another secret than the sync's
    _import(env, tmp_path, project, repo, [f"{p[2]},Bag,,,,,,"], "--public-url", "http://localhost:18510",
            LABELHUB_SECRET="another-secret-" + "x" * 20)
    (imported,) = _tasks(label_studio, project.id)[p[2]]
    assert not _loads_for_the_sync(imported.data["image"])
    log = _sync(env, repo, project, tmp_path, "--url-lifetime", lifetime)
    assert f"{N} files, {N - 2} tasks created, 1 recovered" in log, log
    assert "1 of 1 tasks adopted from Label Studio (made by import-labels, restore or a lost state) showed a file " \
           f"URL other than the sync's policy gives: rewritten as {SYNC_URL}/files/shelf/<sha>/<path>" in log, log
    tasks = _tasks(label_studio, project.id)
    assert sorted(tasks) == sorted(p) and all(len(t) == 1 for t in tasks.values())
    assert all(_loads_for_the_sync(t.data["image"]) for (t,) in tasks.values())
    assert tasks[p[2]][0].id == imported.id and tasks[p[2]][0].predictions  # the same task, its labels kept


def test_an_import_after_a_move_keeps_the_annotated_task_and_marks_its_duplicate(label_studio, project, env,
                                                                                tmp_path):
    repo = sample_repos.local_repo_with(tmp_path / "shelf", sample_repos.image_files(0, N))
    p = [sample_repos.image_path(i) for i in range(N)]
    _sync(env, repo, project, tmp_path)
    (annotated,) = _tasks(label_studio, project.id)[p[1]]
    label_studio.client().annotations.create(
        annotated.id, result=[{"from_name": "kind", "to_name": "image", "type": "choices",
                               "value": {"choices": ["Coat"]}}])
    moved = "sub/" + p[1]
    (repo / moved).parent.mkdir(parents=True)
    sample_repos.git(repo, "mv", p[1], moved)
    sample_repos.git(repo, "commit", "-q", "-m", "move")
    # before the sync's next cycle: an import of the new path makes a task of it (it knows tasks by path only)
    _import(env, tmp_path, project, repo, [f"{moved},Coat,,,,,,"])
    (duplicate,) = _tasks(label_studio, project.id)[moved]
    log = _sync(env, repo, project, tmp_path)
    assert f"task {duplicate.id} of {moved} duplicates task {annotated.id}, whose file moved there " \
           f"({p[1]} → {moved})" in log, log
    assert "1 moved" in log and "0 removed" in log, log
    tasks = {t.id: t for ts in _tasks(label_studio, project.id).values() for t in ts}
    old, dup = tasks[annotated.id], tasks[duplicate.id]
    assert old.data["hf_path"] == moved and old.annotations and not (old.meta or {}).get("hf_removed")
    assert _loads_for_the_sync(old.data["image"]) and moved in old.data["image"]
    assert dup.meta["hf_removed"] is True and dup.meta["hf_duplicate_of"] == annotated.id
    # the next cycle leaves both as they are, and makes no third task
    again = _sync(env, repo, project, tmp_path)
    assert "WARNING" not in again and "removed" not in again, again
    assert len(tasks) == len({t.id for ts in _tasks(label_studio, project.id).values() for t in ts}) == N + 1


def test_after_a_failed_cycle_the_annotated_task_still_follows_its_moved_file_not_the_duplicate(
        label_studio, project, env, tmp_path, monkeypatch):
    """A cycle that records the import's task as a duplicate, then fails before its updates land (Label Studio gone
    away, a kill), leaves the duplicate's key gone from the repo with the moved file's blob: the next cycle paired it
    with the file whenever the new path sorts before the old one (here ``a/`` before ``p``), so the duplicate followed
    the file and the annotated task was marked removed (found by an audit)."""
    from labelhub.errors import LabelStudioError
    from labelhub.sync.labelstudio.project import LabelStudioProject

    repo = sample_repos.local_repo_with(tmp_path / "shelf", sample_repos.image_files(0, N))
    p = [sample_repos.image_path(i) for i in range(N)]
    _sync(env, repo, project, tmp_path)
    (annotated,) = _tasks(label_studio, project.id)[p[1]]
    moved = "a/" + p[1]
    assert moved < p[1]
    (repo / moved).parent.mkdir(parents=True)
    sample_repos.git(repo, "mv", p[1], moved)
    sample_repos.git(repo, "commit", "-q", "-m", "move")
    _import(env, tmp_path, project, repo, [f"{moved},Coat,,,,,,"])
    (duplicate,) = _tasks(label_studio, project.id)[moved]

    def unreachable(*args, **kwargs):
        raise LabelStudioError("Label Studio cannot be reached (a test's)")

    with monkeypatch.context() as patched:
        patched.setattr(LabelStudioProject, "update_data", unreachable)
        patched.setattr(LabelStudioProject, "update_meta", unreachable)
        failed = invoke_labelhub("sync", "--repo", str(repo), "--project", str(project.id), "--once", "--no-export",
                                 "--state", str(tmp_path / "daemon.sqlite3"), "--public-url", SYNC_URL, env=env)
    assert failed.returncode != 0 and "cannot be reached" in failed.stderr, failed.stderr
    log = _sync(env, repo, project, tmp_path)
    assert "1 moved" in log, log
    tasks = {t.id: t for ts in _tasks(label_studio, project.id).values() for t in ts}
    old, dup = tasks[annotated.id], tasks[duplicate.id]
    assert old.data["hf_path"] == moved and not (old.meta or {}).get("hf_removed"), (old.data, old.meta)
    assert dup.meta["hf_removed"] is True
