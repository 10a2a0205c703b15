"""``labelhub restore``: what an audit found, each fixed and checked against a real Label Studio.

- a restore into a project that already has tasks of the version's files (the project that exported it) makes no
  second task of them, says so and exits 1;
- a version of another series is read with its manifest's CSV, and a ``--csv-path`` the manifest contradicts is
  refused;
- annotators without a Label Studio user are named, with their annotations' count;
- a row with too many or too few cells, a duplicated annotation id, a broken ``other_results`` cell reject that row
  only, named by its CSV line (a hypothesis property: any corrupted row, the others restored identically);
- an older Labels cell skips that control only; an annotation none of whose results the project takes is skipped;
- a commit sha prefix is a version; summary counts nest; ``diff`` keeps a label holding ``|`` whole.
"""
from __future__ import annotations

import uuid

import pytest

from tests import sample_repos
from tests.conftest import run_labelhub
from tests.test_restore import CONFIG, choice, rect, restore, synced_repo


@pytest.fixture(scope="module")
def exported(label_studio, tmp_path_factory):
    """A local repo of 4 images synced into a project and annotated (3 tasks, 4 annotations, two by a second
    user), exported as ``annotations-v1``; yields ``(repo, env, project id, sync state, second user's email)``. The
    project stays for the module."""
    client = label_studio.client()
    project = client.projects.create(title="audit source", label_config=CONFIG)
    email = f"second-{uuid.uuid4().hex[:8]}@labelhub.test"
    second = client.users.create(username=email, email=email, password="second-user-password-1")
    tmp = tmp_path_factory.mktemp("audit")
    try:
        repo, env, sync, tasks = synced_repo(label_studio, project.id, tmp, 4)
        client.annotations.create(tasks[0].id, result=[*choice("Bag", "Coat"), rect(12.5, "Bag")], lead_time=2.5)
        client.annotations.create(tasks[0].id, result=choice("Bag"), completed_by=second.id)
        client.annotations.create(tasks[1].id, result=[rect(40.0, "Sneaker")], completed_by=second.id)
        client.annotations.create(tasks[2].id, result=choice("Coat"))
        run_labelhub(*sync, env=env, check=True)  # annotations-v1
        assert "annotations-v1" in sample_repos.git(repo, "tag")
        yield repo, env, project.id, tmp / "s.sqlite3", email
    finally:
        client.projects.delete(project.id)


def task_count(label_studio, project_id) -> int:
    return len(list(label_studio.client().tasks.list(project=project_id, page_size=100)))


# -- 1: no second task of a file the project has --------------------------------------------------------------------

@pytest.mark.parametrize("own_state", [False, True], ids=["new-state", "the-sync's-state"])
def test_restore_into_the_exporting_project_makes_no_duplicate(label_studio, exported, tmp_path, own_state):
    """It made 4 tasks (6 → 10) and the next sync exported the duplicates."""
    repo, env, project_id, sync_state, _ = exported
    before = task_count(label_studio, project_id)
    state = sync_state if own_state else tmp_path / "r.sqlite3"
    for _ in range(2):  # a re-run does the same
        result = restore(repo, project_id, state, env)
        assert result.returncode == 1, result.stderr
        assert result.stdout.splitlines()[-1] == (
            "tasks created: 0 (3 skipped: the project has their files' tasks), annotations: 0, annotators without a "
            "Label Studio user: 0, rows rejected: 0"), result.stdout
        assert "3 task(s) of the version are not restored: the project already has tasks of their files" \
            in result.stderr and "Restore into a new project" in result.stderr, result.stderr
    assert task_count(label_studio, project_id) == before == 4
