"""A ``<Text valueType="url">`` project (its tasks hold the files' URLs; Label Studio fetches the texts): its
versions' training rows hold the files' texts, loaded with ``datasets.load_dataset``, while the CSV keeps the URLs;
an export after one new annotation reads one file. Real Label Studio, the Hub test server through huggingface_hub,
a local git repository."""
from __future__ import annotations

import io
import json
import uuid

import pandas as pd
import pytest

from labelhub.repos.git import LocalGitRepo
from labelhub.repos.hub import HubRepo as LabelHubHubRepo
from labelhub.sync.annotations.intake import AnnotationIntake
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.state import SyncState
from labelhub.sync.versions.exporter import Exporter
from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.test_sync_export import HubRepo, LocalRepo
from tests.test_versions_end_to_end import span, sync_once

CONFIG = ('<View><Text name="text" value="$text" valueType="url"/>'
          '<Labels name="ner" toName="text"><Label value="PER"/><Label value="LOC"/></Labels>'
          '<Choices name="topic" toName="text"><Choice value="travel"/><Choice value="home"/></Choices></View>')
TEXTS = {"docs/a.txt": "Alice flew to Paris.\nShe stayed a week.",
         "docs/b.txt": "Zo\u00eb stayed in Rome \u2014 at home.",
         "docs/c.txt": "Bob drove to Oslo."}
CHANGED_B = "Zo\u00eb moved to Rome for good."


def text_repo(kind: str, tmp_path, request, files: dict[str, bytes]) -> "LocalRepo | HubRepo":
    if kind == "local":
        return LocalRepo(sample_repos.local_repo_with(tmp_path / "texts", files))
    hub = request.getfixturevalue("hub")
    return HubRepo(hub, sample_repos.hub_repo_with(hub, f"labelhub/texturl-{uuid.uuid4().hex[:10]}", files))


def commit(repo, files: dict[str, bytes]) -> str:
    if isinstance(repo, LocalRepo):
        return sample_repos.commit_local(repo.path, files, message="edit")
    return repo.hub.commit_files(repo.repo_id, files, message="edit")


def results(spans=(), topic=None) -> list[dict]:
    out = [{"from_name": "ner", "to_name": "text", "type": "labels",
            "value": {"start": s["start"], "end": s["end"], "text": s["text"], "labels": [s["label"]]}} for s in spans]
    if topic:
        out.append({"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": [topic]}})
    return out


@pytest.mark.parametrize("kind", ["local", "hub"])
def test_a_text_url_version_loads_with_the_files_texts_as_they_were_annotated(label_studio, make_project, annotators,
                                                                              kind, tmp_path, request, monkeypatch):
    """v1: each training row's ``text`` is its file's text (spans index it), the consensus rows too, the CSV holds
    the tasks' URLs. Then b.txt changes: its task follows the file (a new URL, so its row changed, v2), and v2's
    training row keeps the text b.txt had when it was annotated, while its consensus row shows the file the task
    shows now: b.txt's one annotation was made on its older content, so it has no consensus row (only annotations
    made on a task's current content vote: tests/test_versions_span_texts.py)."""
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    client = label_studio.client()
    b_user, _ = annotators
    repo = text_repo(kind, tmp_path, request, {p: t.encode() for p, t in TEXTS.items()})
    project = make_project(f"text url {kind}", CONFIG)
    state = tmp_path / "state.sqlite3"
    sync_once(label_studio, repo, project, state)
    tasks = {t.data["hf_path"]: t for t in client.tasks.list(project=project.id, page_size=100)}
    assert sorted(tasks) == sorted(TEXTS)
    first = tasks["docs/a.txt"].data["hf_revision"]
    assert tasks["docs/a.txt"].data["text"].split("?")[0].endswith(f"/{first}/docs/a.txt")  # a URL, not the text

    a, b, c = (TEXTS[f"docs/{n}.txt"] for n in "abc")
    plan = {("docs/a.txt", "A"): results([span(a, "Alice", "PER"), span(a, "Paris", "LOC")], "travel"),
            ("docs/a.txt", "B"): results([span(a, "Alice", "PER")], "travel"),
            ("docs/b.txt", "A"): results([span(b, "Zo\u00eb", "PER"), span(b, "Rome", "LOC")], "home"),
            ("docs/c.txt", "A"): results([span(c, "Oslo", "LOC")], "travel")}
    for (path, who), result in plan.items():
        client.annotations.create(tasks[path].id, result=result, **({"completed_by": b_user.id} if who == "B" else {}))
    sync_once(label_studio, repo, project, state)

    train = repo.load("annotations-v1", tmp_path, name=None, pandas=False)
    assert train.num_rows == 4
    for row in train:
        assert row["text"] == TEXTS[row["hf_path"]], row
        for s in row["ner"]:
            assert row["text"][s["start"]:s["end"]] == s["text"], row  # the offsets index the text
    consensus = {row["hf_path"]: row for row in repo.load("annotations-v1", tmp_path, name="consensus", pandas=False)}
    assert {p: r["text"] for p, r in consensus.items()} == TEXTS
    if kind == "hub":
        assert train.features["text"].dtype == "string"
        csv = repo.load("annotations-v1", tmp_path)  # the rows config: the CSV's cells
    else:
        csv = pd.read_csv(io.BytesIO(repo.read("annotations-v1", "annotations/annotations.csv")))
    assert all(url.split("?")[0].endswith(f"/{first}/{path}") for url, path in zip(csv["text"], csv["hf_path"]))

    second = commit(repo, {"docs/b.txt": CHANGED_B.encode()})
    sync_once(label_studio, repo, project, state)
    assert "annotations-v2" in repo.tags()
    manifest = json.loads(repo.read("annotations-v2", "annotations/manifest.json"))
    assert manifest["counts"]["changed"] == 1, manifest["counts"]
    train = {row["hf_path"]: row for row in repo.load("annotations-v2", tmp_path, name=None, pandas=False)}
    assert train["docs/b.txt"]["text"] == b and train["docs/b.txt"]["annotated_revision"] == first
    consensus = {row["hf_path"]: row for row in repo.load("annotations-v2", tmp_path, name="consensus", pandas=False)}
    assert "docs/b.txt" not in consensus and consensus["docs/a.txt"]["text"] == a
    assert second != first


@pytest.fixture(scope="module")
def annotators(label_studio):
    """One more Label Studio user (B), besides the admin (A); a list, as tests.test_versions_end_to_end's."""
    client = label_studio.client()
    email = f"b-{uuid.uuid4().hex[:8]}@labelhub.test"
    return [client.users.create(username=email, email=email, password="b-annotator-password-1"), None]


@pytest.mark.parametrize("kind", ["local", "hub"])
def test_an_export_after_one_new_annotation_reads_one_file(label_studio, make_project, kind, tmp_path, request):
    """In one process, as the daemon: the first export reads every annotated file; the next, after one annotation
    of a new task, reads that task's file alone (once, though its training and consensus rows both hold it: one
    download from the Hub), and one after a second annotation of a file already read reads none."""
    files = {f"docs/{i:02d}.txt": f"Document {i} about Paris.".encode() for i in range(12)}
    repo = text_repo(kind, tmp_path, request, files)
    created = make_project(f"text url reads {kind}", CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    dataset = LocalGitRepo(repo.path) if kind == "local" else LabelHubHubRepo(repo.repo_id, token=HUB_TOKEN)
    state = SyncState(tmp_path / "state.sqlite3", created.id, dataset.repo_id)
    FileImporter(dataset, project, state).run()
    client = label_studio.client()
    tasks = {t.data["hf_path"]: t.id for t in client.tasks.list(project=created.id, page_size=100)}
    paths = sorted(tasks)
    for path in paths[:10]:
        client.annotations.create(tasks[path], result=results(topic="travel"))
    AnnotationIntake(project, state).reconcile()
    exporter = Exporter(dataset, project, state, sleep=lambda s: None)
    assert exporter.export().number == 1
    assert exporter.texts.reads == 10

    def export_after(path: str) -> list[str]:
        client.annotations.create(tasks[path], result=results(topic="home"))
        AnnotationIntake(project, state).reconcile()
        if kind == "hub":
            repo.hub.reset_calls()
        assert exporter.export() is not None
        return [c.path for c in repo.hub.calls if "/resolve/" in c.path] if kind == "hub" else []

    downloads = export_after(paths[10])
    assert exporter.texts.reads == 11
    if kind == "hub":
        assert downloads and all(p.endswith(paths[10]) for p in downloads), downloads
    downloads = export_after(paths[0])
    assert exporter.texts.reads == 11 and downloads == []
