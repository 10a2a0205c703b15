"""A Text config whose tasks hold the files' texts (no ``valueType="url"``) needs no file URL, so ``labelhub sync`` of
a local repo makes its tasks without ``LABELHUB_SECRET``: the refusal (unsigned URLs cannot load) is for configs whose
tasks hold URLs (tests/test_file_url_policy.py)."""
from __future__ import annotations

import time

from labelhub.sync.annotations.intake import OVERLAP
from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub

TEXT_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
               '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>')
TEXTS = {f"docs/{i}.txt": f"document {i}: fine words".encode() for i in range(3)}


def test_a_local_repo_of_inline_texts_syncs_without_a_secret(label_studio, make_project, tmp_path):
    project = make_project("inline texts", TEXT_CONFIG)
    repo = sample_repos.local_repo_with(tmp_path / "texts", TEXTS)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token,
           "HF_TOKEN": HUB_TOKEN, "LABELHUB_SECRET": ""}
    done = invoke_labelhub("sync", "--repo", str(repo), "--project", str(project.id), "--state",
                           str(tmp_path / "state.sqlite3"), "--once", "--no-export", env=env)
    assert done.returncode == 0, done.stderr
    assert "the tasks hold the files' texts" in done.stderr
    tasks = label_studio.client().tasks.list(project=project.id, page_size=100, fields="task_only")
    assert sorted(t.data["text"] for t in tasks) == sorted(t.decode() for t in TEXTS.values())


def test_a_once_run_with_nothing_changed_makes_three_task_list_calls(label_studio, make_project, tmp_path):
    """The README: when the sha did not move, the file step makes no Label Studio call and the annotation step one per
    reconciliation (two in a ``--once`` run) and one per sweep; counted in Label Studio's request log (the audit: a
    second ``--once`` run over 100,000 tasks made 273 calls in 4 min 29 s)."""
    project = make_project("idle once", TEXT_CONFIG)
    repo = sample_repos.local_repo_with(tmp_path / "texts", TEXTS)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token,
           "HF_TOKEN": HUB_TOKEN, "LABELHUB_SECRET": ""}
    log = label_studio.log_path

    def once() -> list[str]:
        mark = len(log.read_text(errors="replace").splitlines())
        done = invoke_labelhub("sync", "--repo", str(repo), "--project", str(project.id), "--state",
                               str(tmp_path / "state.sqlite3"), "--once", env=env)
        assert done.returncode == 0, done.stderr
        lines = log.read_text(errors="replace").splitlines()[mark:]
        return sorted({line for line in lines if "/api/tasks" in line and f"project={project.id}" in line})

    once()
    time.sleep(OVERLAP.total_seconds() + 1)
    once()  # the overlap window of the tasks made, read once
    calls = once()
    assert len(calls) == 3 and not any("fields=all" in call for call in calls), calls

