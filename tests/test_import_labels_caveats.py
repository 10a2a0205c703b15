"""End to end, real Label Studio: ``labelhub import-labels`` on the sync's own tasks gives them the file's
``neg_concepts`` and ``metadata`` as a new task gets them (README, "What a task gets"), and beside a sync daemon
with the same ``--state`` it says so first, before reading the file (the audit's walkthrough, /tmp/audit-post)."""
from __future__ import annotations

import logging
import time

import pytest
from click.testing import CliRunner

from labelhub.locks import file_lock
from labelhub.sync.labels.cli import import_labels
from tests import sample_repos
from tests.in_process import invoke_labelhub
from tests.test_import_labels_to_tasks import CONFIG, HEADER, env  # noqa: F401 (env: a fixture)

N = 4


@pytest.fixture(scope="module")
def repo_path(tmp_path_factory):
    return sample_repos.local_repo_with(tmp_path_factory.mktemp("caveats") / "repo", sample_repos.image_files(0, N))


@pytest.fixture
def project(make_project):
    return make_project("import caveats", CONFIG)


def _invoke(env, state, *args):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return CliRunner().invoke(import_labels, [*args, "--state", str(state)], env=env, catch_exceptions=False)
    finally:
        root.handlers[:], root.level = handlers, level


def test_the_sync_tasks_get_the_files_negative_concepts_and_metadata_once(label_studio, project, repo_path, env,
                                                                         tmp_path):
    state = tmp_path / "s.sqlite3"
    invoke_labelhub("sync", "--repo", str(repo_path), "--project", str(project.id), "--once", "--no-export",
                    "--state", str(state), env=env, check=True)
    p = [sample_repos.image_path(i) for i in range(N)]
    csv = tmp_path / "l.csv"
    csv.write_text(HEADER + f'{p[1]},Bag,Coat,"{{""source"": ""platform-x""}}",,,,\n{p[2]},Bag,,,,,,\n')
    started = time.monotonic()
    result = _invoke(env, state, str(csv), "--project", str(project.id), "--repo", str(repo_path))
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "tasks created: 0 (2 sync tasks labelled), regions: 0, as predictions" in result.output.splitlines()
    tasks = {t.data["hf_path"]: t for t in label_studio.client().tasks.list(project=project.id, page_size=100,
                                                                            fields="all")}
    assert tasks[p[1]].data["neg_concepts"] == ["Coat"]
    assert tasks[p[1]].data["metadata"] == {"source": "platform-x"}
    assert tasks[p[1]].data["hf_path"] == p[1] and tasks[p[1]].data["image"].startswith("http")  # the sync's keys
    assert "neg_concepts" not in tasks[p[2]].data and "metadata" not in tasks[p[2]].data
    assert len(tasks[p[1]].predictions) == 1
    logging.getLogger(__name__).info("import of 2 rows onto sync tasks: %.2f s", elapsed)
    # a new state (a lost one): the same file again changes nothing
    again = _invoke(env, tmp_path / "other.sqlite3", str(csv), "--project", str(project.id), "--repo", str(repo_path))
    assert again.exit_code == 0, again.output
    assert "got the file's neg_concepts or metadata" not in again.output
    (task,) = [t for t in label_studio.client().tasks.list(project=project.id, page_size=100, fields="all")
               if t.data["hf_path"] == p[1]]
    assert task.data["neg_concepts"] == ["Coat"] and len(task.predictions) == 1


def test_beside_a_running_sync_the_refusal_comes_before_the_file_is_read(label_studio, project, env, tmp_path):
    state = tmp_path / "daemon.sqlite3"
    csv = tmp_path / "bad.csv"
    csv.write_text(HEADER + "https://example.test/a.png,NotALabel,,,,,,\n")
    with file_lock(f"{state}.{project.id}.lock", blocking=False) as held:  # what the daemon holds while it runs
        assert held
        result = _invoke(env, state, str(csv), "--project", str(project.id))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines and lines[0].startswith(f"Error: another labelhub sync, import-labels or restore of project "
                                         f"{project.id} runs with --state {state}"), result.output
    assert "line 2" not in result.output and "rows read" not in result.output
    assert not list(label_studio.client().tasks.list(project=project.id, page_size=10))
