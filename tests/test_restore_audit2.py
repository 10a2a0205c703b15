"""``labelhub restore``: a second audit's findings, each fixed and checked against a real Label Studio.

1. a ``<Text value="$text">`` version whose file changed after it was annotated (a byte order mark dropped, a prefix
   added) restored the task's text at export with the annotated revision: the spans covered the wrong characters.
   Now the task holds the file's text at the annotated revision (local repo and the test Hub);
2. the same version restored from a clone of the local repo (another absolute path) made every task again: a local
   repo is now identified by its root commit;
3. a text holding 40 hex digits set the task's ``hf_revision`` to them: only URLs are read for a revision;
4. a version of URL texts restored into a project of inline texts (or the reverse) made broken tasks: refused in one
   line, nothing created.
"""
from __future__ import annotations

import re
import subprocess
import uuid

import pandas as pd
import pytest

from labelhub.errors import LabelHubError
from labelhub.sync.versions.restore import plan_tasks, restore_key
from labelhub.sync.versions.restore_identity import legacy_key

from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub
from tests.test_sync_export import HubRepo
from tests.test_versions_end_to_end import span, sync_once
from tests.test_versions_text_url import commit, text_repo

INLINE = ('<View><Text name="text" value="$text"/>'
          '<Labels name="label" toName="text"><Label value="LOC"/></Labels></View>')
BY_URL = INLINE.replace('value="$text"/>', 'value="$text" valueType="url"/>')
BOM = b"\xef\xbb\xbf"
SHA = "a" * 40


def loc(text: str, word: str) -> list[dict]:
    s = span(text, word, "LOC")
    return [{"from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": s["start"], "end": s["end"], "text": word, "labels": ["LOC"]}}]


def restore(label_studio, repo_arg, project_id, state, tag):
    """``labelhub restore`` of ``tag`` of ``repo_arg`` into ``project_id`` in-process
    (:func:`tests.in_process.invoke_labelhub`): its exit code and output."""
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
           "HF_TOKEN": HUB_TOKEN, "TQDM_DISABLE": "1"}
    return invoke_labelhub("restore", "--repo", repo_arg, "--tag", tag, "--project", str(project_id), "--state",
                           str(state), env=env)


def tasks_of(label_studio, project_id) -> list:
    return list(label_studio.client().tasks.list(project=project_id, page_size=100, fields="all"))


def latest_tag(repo) -> str:
    return max(repo.tags(), key=lambda t: int(t.rsplit("v", 1)[1]))


def rows(*cells) -> pd.DataFrame:
    columns = ["task_id", "annotation_id", "hf_path", "text", "label", "annotator", "created_at", "updated_at",
               "lead_time", "was_cancelled", "ground_truth", "annotated_revision"]
    return pd.DataFrame([dict(zip(columns, c)) for c in cells], columns=columns).fillna("")


SPAN = '[{"start": 0, "end": 5, "text": "Paris", "label": "LOC"}]'


# -- 1: the text the spans index -----------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["local", "hub"])
def changed_texts(request, label_studio, tmp_path_factory):
    """bom.txt (a byte order mark) and pre.txt synced into an inline Text project, "Paris" labelled in each, then
    bom.txt loses its mark and pre.txt gains a prefix, and the next sync exports ``annotations-v2``. Yields
    ``(repo, annotated texts by path, the annotations' commit, tag, the project)``."""
    kind = request.param
    tmp = tmp_path_factory.mktemp(f"texts-{kind}")
    texts = {"bom.txt": "\ufeffAlice went to Paris.\n", "pre.txt": "Alice went to Paris.\n"}
    files = {"bom.txt": BOM + b"Alice went to Paris.\n", "pre.txt": b"Alice went to Paris.\n"}
    if kind == "local":
        repo = text_repo(kind, tmp, request, files)
    else:  # the module's fixture: the session's server (the function-scoped ``hub`` fixture clears its faults)
        hub = request.getfixturevalue("hub_server")
        hub.faults.clear()
        repo = HubRepo(hub, sample_repos.hub_repo_with(hub, f"labelhub/restore-{uuid.uuid4().hex[:10]}", files))
    client = label_studio.client()
    project = client.projects.create(title=f"restore texts {kind}", label_config=INLINE)
    try:
        state = tmp / "state.sqlite3"
        sync_once(label_studio, repo, project, state)
        annotated = repo.head().strip()
        for task in client.tasks.list(project=project.id, page_size=10):
            client.annotations.create(task.id, result=loc(task.data["text"], "Paris"))
        sync_once(label_studio, repo, project, state)
        commit(repo, {"bom.txt": b"Alice went to Paris.\n", "pre.txt": b"Note: Alice went to Paris.\n"})
        sync_once(label_studio, repo, project, state)
        tag = latest_tag(repo)
        assert tag == "annotations-v2"
        yield repo, texts, annotated, tag, project.id
    finally:
        client.projects.delete(project.id)


def test_a_restored_text_task_holds_the_text_its_spans_index(label_studio, make_project, changed_texts, tmp_path):
    """The task held the text at export ('Alice went to Paris.\\n' for bom.txt, spans 14..19 over 'aris.') with the
    annotated revision."""
    repo, texts, annotated, tag, _ = changed_texts
    target = make_project(f"restored texts {uuid.uuid4().hex[:6]}", INLINE)
    done = restore(label_studio, repo.arg, target.id, tmp_path / "r.sqlite3", tag)
    assert done.returncode == 0, done.stderr
    restored = {t.data["hf_path"]: t for t in tasks_of(label_studio, target.id)}
    assert sorted(restored) == sorted(texts)
    for path, task in restored.items():
        assert task.data["text"] == texts[path], path
        assert task.data["hf_revision"] == annotated
        [annotation] = task.annotations
        [result] = annotation["result"]
        value = result["value"]
        assert task.data["text"][value["start"]:value["end"]] == "Paris", (path, value)


# -- 3: a text's 40 hex digits are no revision -----------------------------------------------------------------------

def test_a_text_holding_40_hex_digits_keeps_its_annotated_revision():
    text = f"Paris, commit {'b' * 40} of the notes"
    [task], errors = plan_tasks(rows(("1", "10", "a.txt", text, SPAN, "a@x", "", "", "", "False", "False", SHA)),
                                {"controls": {"label": "Labels"}}, INLINE, "owner/ds", "annotations-v1")
    assert errors == [] and task.data["text"] == text
    assert task.data["hf_revision"] == SHA  # was 'b' * 40


# -- 4: texts of the other kind are refused ---------------------------------------------------------------------------

def test_a_version_of_the_other_text_kind_is_refused_in_one_line():
    url = f"http://127.0.0.1:9090/files/repo/{SHA}/a.txt?sig=x"
    with pytest.raises(LabelHubError, match=re.escape(
            'URLs (a project with <Text name="text" value="$text" valueType="url">\'s) but the project\'s '
            '<Text name="text" value="$text"> shows')):
        plan_tasks(rows(("1", "10", "a.txt", url, SPAN, "a@x", "", "", "", "False", "False", SHA)),
                   {"controls": {"label": "Labels"}}, INLINE, "owner/ds", "annotations-v1")
    with pytest.raises(LabelHubError, match=re.escape(
            'inline (a project with <Text name="text" value="$text">\'s) but the project\'s '
            '<Text name="text" value="$text" valueType="url"> reads a URL')):
        plan_tasks(rows(("1", "10", "a.txt", "Paris is nice", SPAN, "a@x", "", "", "", "False", "False", SHA)),
                   {"controls": {"label": "Labels"}}, BY_URL, "owner/ds", "annotations-v1")
    # the same kind restores
    for config, value in ((INLINE, "Paris is nice"), (BY_URL, url)):
        [task], _ = plan_tasks(rows(("1", "10", "a.txt", value, SPAN, "a@x", "", "", "", "False", "False", SHA)),
                               {"controls": {"label": "Labels"}}, config, "owner/ds", "annotations-v1")
        assert task.data["text"] == value


def test_restoring_inline_texts_into_a_url_project_creates_nothing(label_studio, make_project, changed_texts,
                                                                    tmp_path):
    repo, _, _, tag, _ = changed_texts
    target = make_project(f"url texts {uuid.uuid4().hex[:6]}", BY_URL)
    refused = restore(label_studio, repo.arg, target.id, tmp_path / "r.sqlite3", tag)
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    [line] = lines
    assert "inline" in line and 'valueType="url"' in line, line
    assert tasks_of(label_studio, target.id) == []


# -- 2: a clone of the local repo is the same source -------------------------------------------------------------------

@pytest.mark.parametrize("changed_texts", ["local"], indirect=True)  # a clone is of a local repo
def test_the_same_version_from_a_clone_of_the_repo_creates_nothing_twice(label_studio, make_project, changed_texts,
                                                                          tmp_path):
    """Restored from the repo, then from a clone (another absolute path), with the same state and with another:
    the second made 2 more tasks and 2 more annotations."""
    repo, texts, _, tag, _ = changed_texts
    clone = tmp_path / "elsewhere" / "clone"
    subprocess.run(["git", "clone", "-q", "--mirror", str(repo.path), str(clone)], check=True)
    target = make_project(f"clone {uuid.uuid4().hex[:6]}", INLINE)
    state = tmp_path / "r.sqlite3"
    first = restore(label_studio, repo.arg, target.id, state, tag)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1].startswith("tasks created: 2, annotations: 2,"), first.stdout
    for where, state_file in ((clone, state), (clone, tmp_path / "other.sqlite3"), (repo.path, state)):
        again = restore(label_studio, str(where), target.id, state_file, tag)
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines()[-1].startswith("tasks created: 0 (2 already restored"), again.stdout
    tasks = tasks_of(label_studio, target.id)
    assert len(tasks) == 2 and sum(len(t.annotations) for t in tasks) == 2
    root = sample_repos.git(repo.path, "rev-list", "--max-parents=0", "HEAD").strip()
    assert {restore_key(t.data) for t in tasks} == {f"git:{root}#{t.data['source_task_id']}" for t in tasks}


def test_a_restore_recorded_under_the_repos_path_is_still_known():
    """A restore before the root commit identity keyed its tasks by the path (``/srv/repo#7``): a task's legacy key
    is that one, so a re-run from that path creates nothing twice."""
    old = {"restored_from": "/srv/repo@annotations-v1", "source_task_id": 7}
    assert restore_key(old) == legacy_key(old) == "/srv/repo#7"
    new = {**old, "restored_repo": "git:" + SHA}
    assert restore_key(new) == f"git:{SHA}#7" and legacy_key(new) == "/srv/repo#7"
    hub = {"restored_from": "owner/ds@annotations-v1", "source_task_id": 7}
    assert restore_key(hub) == "owner/ds#7"


@pytest.mark.parametrize("changed_texts", ["local"], indirect=True)
def test_a_clone_restored_into_the_project_synced_from_the_repo_makes_no_second_task_of_a_file(
        label_studio, changed_texts, tmp_path):
    """The project's tasks were made by a sync of the repo's path; restoring its version from a clone (another
    path) made a second task of each file (their ``hf_repo`` is the other path)."""
    repo, _, _, tag, project_id = changed_texts
    clone = tmp_path / "mounted" / "repo"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone)], check=True)
    before = len(tasks_of(label_studio, project_id))
    for state in (tmp_path / "r.sqlite3", tmp_path / "r.sqlite3"):  # a re-run does the same
        held = restore(label_studio, str(clone), project_id, state, tag)
        assert held.returncode == 1, held.stderr
        assert held.stdout.splitlines()[-1].startswith(
            "tasks created: 0 (2 skipped: the project has their files' tasks)"), held.stdout
    assert len(tasks_of(label_studio, project_id)) == before == 2
