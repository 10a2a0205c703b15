"""End to end: the import cycle against what the sync audit found blocking or misleading it (real Label Studio, a
local repo made with ``git init`` on ``master``):

- a task deleted in Label Studio, then its file changed, moved or deleted: the cycle warns once naming the task and
  its file, records it as deleted (its file is not imported again) and applies the repo's other changes; the cycle
  line names the files;
- a file whose name has a backslash or a tab is left out with one warning; the others become tasks;
- the "nothing to do" short-circuit holds only for the last cycle's commit and selection: alternating
  ``--revision`` moves the tasks back and forth, a new ``--exclude`` marks nothing removed, and dropping it is
  seen at once;
- a rewritten history (amend, then ``git gc --prune=now``): the tasks whose commit is gone and whose file is the
  same at the head are re-pinned to the head.
"""
from __future__ import annotations

from tests import sample_repos
from tests.in_process import invoke_labelhub
from tests.test_sync_follows_changes import CONFIG, LocalMaster, env_for, tasks_by_path

N = 6
PATHS = [sample_repos.image_path(i) for i in range(N)]


def sync(repo, project_id, tmp_path, env, *args, check=True):
    return invoke_labelhub("sync", "--repo", repo.repo_arg, "--project", str(project_id), "--state",
                           str(tmp_path / "state.sqlite3"), "--once", "--no-export", *args, env=env, check=check)


def test_a_task_deleted_in_label_studio_does_not_block_the_sync(label_studio, make_project, tmp_path):
    client, env = label_studio.client(), env_for(label_studio)
    repo = LocalMaster(tmp_path / "repo")
    repo.commit(sample_repos.image_files(0, N))
    project = make_project("deleted task", CONFIG)
    sync(repo, project.id, tmp_path, env)
    tasks = tasks_by_path(client, project.id)
    changed, moved, removed = (tasks[PATHS[i]][0].id for i in (1, 2, 3))
    for task_id in (changed, moved, removed):
        client.tasks.delete(str(task_id))

    images = sample_repos.image_files(0, N + 1)
    head = repo.commit({PATHS[1]: images[sample_repos.image_path(N)], "moved/00002.png": images[PATHS[2]]},
                       deletes=(PATHS[2], PATHS[3], PATHS[4]))
    out = sync(repo, project.id, tmp_path, env)
    for task_id, path in ((changed, PATHS[1]), (moved, PATHS[2]), (removed, PATHS[3])):
        assert f"task {task_id} (file {path}) was deleted in Label Studio" in out.stderr, out.stderr
    assert "not found" not in out.stderr
    assert f"removed: {PATHS[3]}, {PATHS[4]}" in out.stderr, out.stderr  # the cycle line names the files
    assert f"moved: {PATHS[2]} → moved/00002.png" in out.stderr and f"changed: {PATHS[1]}" in out.stderr
    after = tasks_by_path(client, project.id)
    assert sorted(after) == sorted({PATHS[0], PATHS[4], PATHS[5]})  # nothing imported again
    assert after[PATHS[4]][0].meta["hf_removed"] is True and after[PATHS[4]][0].meta["hf_removed_in"] == head

    repo.commit({PATHS[1]: images[PATHS[0]], "moved/00002.png": images[PATHS[5]]})  # the deleted tasks' files again
    out = sync(repo, project.id, tmp_path, env)
    assert "deleted in Label Studio" not in out.stderr and "0 tasks created" in out.stderr, out.stderr
    assert sum(len(t) for t in tasks_by_path(client, project.id).values()) == N - 3


def test_a_file_name_a_url_cannot_carry_is_left_out_and_the_others_are_imported(label_studio, make_project,
                                                                                  tmp_path):
    client, env = label_studio.client(), {**env_for(label_studio), "LABELHUB_SECRET": "s" * 32}  # signed URLs
    repo = LocalMaster(tmp_path / "repo")
    images = list(sample_repos.image_files(0, 3).values())
    repo.commit({"ok.png": images[0], "back\\slash.png": images[1], "tab\there.png": images[2]})
    project = make_project("odd names", CONFIG)
    out = sync(repo, project.id, tmp_path, env)
    assert "2 files are left out" in out.stderr and "'back\\\\slash.png'" in out.stderr, out.stderr
    assert "'tab\\there.png'" in out.stderr
    assert sorted(tasks_by_path(client, project.id)) == ["ok.png"]


def test_the_short_circuit_holds_only_for_the_last_cycles_commit_and_selection(label_studio, make_project, tmp_path):
    client, env = label_studio.client(), env_for(label_studio)
    repo = LocalMaster(tmp_path / "repo")
    master = repo.commit(sample_repos.image_files(0, N))
    sample_repos.git(repo.path, "checkout", "-q", "-b", "other")
    other = repo.commit({PATHS[0]: sample_repos.image_files(N, N + 1)[sample_repos.image_path(N)]})
    sample_repos.git(repo.path, "checkout", "-q", "master")
    project = make_project("selection", CONFIG)

    def shown(path):
        return tasks_by_path(client, project.id)[path][0]

    sync(repo, project.id, tmp_path, env, "--revision", "master")
    sync(repo, project.id, tmp_path, env, "--revision", "other")
    assert shown(PATHS[0]).data["hf_revision"] == other
    out = sync(repo, project.id, tmp_path, env, "--revision", "master")  # master did not move
    assert "1 changed" in out.stderr, out.stderr
    assert shown(PATHS[0]).data["hf_revision"] == master

    out = sync(repo, project.id, tmp_path, env, "--revision", "master", "--exclude", PATHS[5])
    assert "selected otherwise than at the last cycle" in out.stderr, out.stderr
    assert "1 files with a task are in the commit but not selected" in out.stderr and "0 removed" in out.stderr
    assert not (shown(PATHS[5]).meta or {}).get("hf_removed")
    out = sync(repo, project.id, tmp_path, env, "--revision", "master", "--exclude", PATHS[5])
    assert "not selected" not in out.stderr  # the same commit and selection: nothing to do
    out = sync(repo, project.id, tmp_path, env, "--revision", "master")
    assert "selected otherwise" in out.stderr and "0 tasks created" in out.stderr, out.stderr


def test_tasks_of_a_rewritten_history_are_re_pinned_to_the_same_file_at_the_head(label_studio, make_project,
                                                                                  tmp_path):
    client, env = label_studio.client(), env_for(label_studio)
    repo = LocalMaster(tmp_path / "repo")
    first = repo.commit(sample_repos.image_files(0, N))
    project = make_project("rewrite", CONFIG)
    sync(repo, project.id, tmp_path, env)
    sample_repos.git(repo.path, "commit", "-q", "--amend", "-m", "squashed")
    head = sample_repos.git(repo.path, "rev-parse", "HEAD")
    sample_repos.git(repo.path, "reflog", "expire", "--expire=now", "--all")
    sample_repos.git(repo.path, "gc", "-q", "--prune=now")
    assert head != first
    out = sync(repo, project.id, tmp_path, env)
    assert "the history was rewritten" in out.stderr and f"{N} tasks whose file is the same" in out.stderr, out.stderr
    tasks = tasks_by_path(client, project.id)
    assert len(tasks) == N and all(t[0].data["hf_revision"] == head and head in t[0].data["image"]
                                   for t in tasks.values())
    out = sync(repo, project.id, tmp_path, env)
    assert "history was rewritten" not in out.stderr
