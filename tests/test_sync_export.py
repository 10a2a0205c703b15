"""End to end: annotations made through the real Label Studio → tagged versions of the dataset repo
that ``datasets.load_dataset(repo, revision="annotations-vN")`` loads; Hub test server and local git."""
from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub

CONFIG = ('<View><Image name="image" value="$image"/>'
          '<Choices name="kind" toName="image" choice="multiple"><Choice value="text-only"/>'
          '<Choice value="illustrated"/></Choices>'
          '<RectangleLabels name="box" toName="image"><Label value="figure"/><Label value="text"/></RectangleLabels>'
          '</View>')
N = 8


class LocalRepo:
    def __init__(self, path):
        self.path, self.arg = path, str(path)

    def head(self):
        return sample_repos.git(self.path, "rev-parse", "main")

    def tags(self):
        return sample_repos.git(self.path, "tag", "--list").split()

    def load(self, tag, tmp_path, name="rows", pandas=True):
        import datasets

        checkout = tmp_path / f"checkout-{tag}-{time.monotonic_ns()}"
        subprocess.run(["git", "-c", "advice.detachedHead=false", "clone", "-q", "--branch", tag, str(self.path), str(checkout)], check=True)
        if name == "rows":  # a local repo's default config is a folder of images: its CSV is read as a CSV
            loaded = datasets.load_dataset("csv", data_files=str(checkout / "annotations/annotations.csv"),
                                           split="train")
        else:
            loaded = datasets.load_dataset(str(checkout), name, split="train")
        return loaded.to_pandas() if pandas else loaded

    def commit_other(self, path, data):
        return sample_repos.commit_local(self.path, {path: data}, message="someone else")

    def read(self, rev, path):
        return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=self.path, capture_output=True).stdout


class HubRepo:
    def __init__(self, hub, repo_id):
        self.hub, self.arg, self.repo_id = hub, repo_id, repo_id

    def head(self):
        return self.hub.head(self.repo_id)

    def tags(self):
        from huggingface_hub import HfApi

        return [t.name for t in HfApi(token=HUB_TOKEN).list_repo_refs(self.repo_id, repo_type="dataset").tags]

    def load(self, tag, tmp_path, name="rows", pandas=True):
        import datasets

        loaded = datasets.load_dataset(self.repo_id, name, revision=tag, split="train", token=HUB_TOKEN,
                                       cache_dir=str(tmp_path / "hf-datasets"))
        return loaded.to_pandas() if pandas else loaded

    def commit_other(self, path, data):
        return self.hub.commit_files(self.repo_id, {path: data}, message="someone else")

    def read(self, rev, path):
        from huggingface_hub import hf_hub_download

        return open(hf_hub_download(self.repo_id, path, repo_type="dataset", revision=rev, token=HUB_TOKEN),
                    "rb").read()


def sample_repo(request, tmp_path, name: str, n: int = N) -> "LocalRepo | HubRepo":
    """The first ``n`` sample images in a local repo (``request.param == "local"``), else in a private Hub repo
    ``labelhub/<name>-<random>`` (the public one is loaded by tests/test_ship_examples.py)."""
    files = sample_repos.image_files(0, n)
    if request.param == "local":
        return LocalRepo(sample_repos.local_repo_with(tmp_path / "repo", files))
    hub = request.getfixturevalue("hub")
    return HubRepo(hub, sample_repos.hub_repo_with(hub, f"labelhub/{name}-{uuid.uuid4().hex[:10]}", files))


@pytest.fixture(params=["hub-private", "local"])
def repo(request, tmp_path):
    """A local repo, or a private Hub repo."""
    return sample_repo(request, tmp_path, "export")


@pytest.fixture(scope="module")
def second_annotator(label_studio):
    client = label_studio.client()
    email = "annotator2@labelhub.test"
    for user in client.users.list():
        if user.email == email:
            return user
    return client.users.create(username="annotator2", email=email, password="annotator2-password")


@pytest.fixture
def project(make_project):
    return make_project("export", CONFIG)


def sync_once(label_studio, repo, project, tmp_path, *extra):
    return invoke_labelhub("sync", "--repo", repo.arg, "--project", str(project.id), "--state",
                           str(tmp_path / "state.sqlite3"), "--once", *extra,
                           env={"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
                                "HF_TOKEN": HUB_TOKEN}, check=True)


def choice(*labels):
    return {"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": list(labels)}}


def box(x, y, w, h, label):
    return {"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 28,
            "original_height": 28, "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0,
                                             "rectanglelabels": [label]}}


def test_annotations_become_tagged_versions_loadable_with_datasets(label_studio, repo, project, second_annotator,
                                                                     tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)  # a private repo's images are read with the environment's token
    client = label_studio.client()
    sync_once(label_studio, repo, project, tmp_path)
    assert not [t for t in repo.tags() if t.startswith("annotations-")]  # nothing annotated: no version
    tasks = {t.data["hf_path"]: t.id for t in client.tasks.list(project=project.id, page_size=100)}
    paths = [sample_repos.image_path(i) for i in range(N)]
    made = {}
    for i, path in enumerate(paths[:6]):
        result = [choice("illustrated" if i % 2 else "text-only")]
        if i == 2:
            result.append(box(10, 20, 30, 40, "figure"))
            result.append(box(50.5, 0, 25.25, 12.5, "text"))
        made[(path, "admin")] = client.annotations.create(tasks[path], result=result, lead_time=1.5 + i,
                                                          was_cancelled=False)
    for path in paths[:2]:
        made[(path, "annotator2")] = client.annotations.create(tasks[path], result=[choice("illustrated")],
                                                               completed_by=second_annotator.id)
    skipped = client.annotations.create(tasks[paths[6]], result=[], was_cancelled=True)

    sync_once(label_studio, repo, project, tmp_path)
    v1_commit = repo.head()
    assert "annotations-v1" in repo.tags()
    rows = repo.load("annotations-v1", tmp_path)
    assert len(rows) == 9
    assert list(rows.columns[:11]) == ["task_id", "annotation_id", "hf_path", "image", "kind", "box", "annotator",
                                      "created_at", "updated_at", "lead_time", "was_cancelled"]
    by_id = rows.set_index("annotation_id")
    assert by_id.loc[made[(paths[2], "admin")].id, "kind"] == "text-only"
    boxes = json.loads(by_id.loc[made[(paths[2], "admin")].id, "box"])
    assert [b["label"] for b in boxes] == ["figure", "text"]
    assert [boxes[0][k] for k in ("x", "y", "width", "height")] == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=1e-9)
    assert [boxes[1][k] for k in ("x", "y", "width", "height")] == pytest.approx([0.505, 0, 0.2525, 0.125], abs=1e-9)
    assert by_id.loc[made[(paths[0], "annotator2")].id, "annotator"] == second_annotator.email
    assert by_id.loc[made[(paths[0], "admin")].id, "annotator"] == label_studio.username
    assert bool(by_id.loc[skipped.id, "was_cancelled"]) is True
    assert by_id.loc[made[(paths[3], "admin")].id, "image"].split("?")[0].endswith(paths[3])
    manifest = json.loads(repo.read("annotations-v1", "annotations/manifest.json"))
    assert manifest["counts"]["annotations"] == 9 and manifest["counts"]["added"] == 9
    assert manifest["label_distribution"]["kind"] == {"illustrated": 5, "text-only": 3}
    assert "| illustrated | 5 |" in repo.read("annotations-v1", "README.md").decode()

    train = repo.load("annotations-v1", tmp_path, name=None, pandas=False)  # the default config: training rows
    assert train.num_rows == 8  # the skip is not a training row
    local = isinstance(repo, LocalRepo)
    first = {row["annotation_id"]: row for row in train}[made[(paths[2], "admin")].id]
    import io

    import numpy as np
    from PIL import Image

    at_revision = Image.open(io.BytesIO(repo.read(first["annotated_revision"], paths[2])))
    assert np.array_equal(np.asarray(first["image"]), np.asarray(at_revision))  # the pixels of the file, as annotated
    labels = first["kind"]
    boxes = first["box"]
    if local:  # datasets reads a local folder's labels as strings
        assert labels == ["text-only"] and [b["label"] for b in boxes] == ["figure", "text"]
    else:
        assert train.features["kind"].feature.names == ["text-only", "illustrated"]
        assert train.features["box"].feature["label"].names == ["figure", "text"]
        assert labels == [0] and [b["label"] for b in boxes] == [0, 1]
    assert [round(boxes[0][k], 4) for k in ("x", "y", "width", "height")] == [0.1, 0.2, 0.3, 0.4]
    assert first["annotator"] == label_studio.username and len(first["annotated_revision"]) == 40

    consensus = {row["task_id"]: row for row in repo.load("annotations-v1", tmp_path, name="consensus", pandas=False)}
    assert len(consensus) == 6  # one row per task with an answer; the skipped task has none
    two = consensus[tasks[paths[0]]]  # admin: text-only, annotator2: illustrated
    assert (two["annotators"], two["skipped"]) == (2, 0) and 0 < two["agreement"] < 1  # they disagree on kind
    assert two["image"].size == (28, 28)
    agreement = json.loads(repo.read("annotations-v1", "annotations/manifest.json"))["agreement"]
    assert agreement["totals"]["tasks"] >= 6 and "kind" in agreement["controls"]
    assert "### Agreement" in repo.read("annotations-v1", "README.md").decode()

    client.annotations.update(made[(paths[1], "admin")].id, result=[choice("text-only", "illustrated")])
    client.annotations.delete(made[(paths[4], "admin")].id)
    sync_once(label_studio, repo, project, tmp_path)
    assert "annotations-v2" in repo.tags()
    v2 = repo.load("annotations-v2", tmp_path)
    assert repo.load("annotations-v2", tmp_path, name=None).shape[0] == 7
    assert len(v2) == 8
    assert v2.set_index("annotation_id").loc[made[(paths[1], "admin")].id, "kind"] == "text-only|illustrated"
    assert len(repo.load("annotations-v1", tmp_path)) == 9  # v1 is unchanged
    assert repo.read("annotations-v1", "annotations/manifest.json") == \
        repo.read(v1_commit, "annotations/manifest.json")

    if local:  # the README's recipe: a clone at the tag, loaded by its folder; v1 then v2 under one folder name
        import shutil

        import datasets

        same, cache = tmp_path / "v", str(tmp_path / "one-datasets-cache")
        for tag, rows in (("annotations-v1", 8), ("annotations-v2", 7)):
            shutil.rmtree(same, ignore_errors=True)
            sample_repos.git(tmp_path, "-c", "advice.detachedHead=false", "clone", "-q", "--branch", tag,
                             repo.arg, str(same))
            # datasets keys a folder's prepared cache by its name and the card's configs: each version's differ
            assert datasets.load_dataset(str(same), split="train", cache_dir=cache).num_rows == rows, tag

    head = repo.head()
    sync_once(label_studio, repo, project, tmp_path)
    assert repo.head() == head and "annotations-v3" not in repo.tags()  # no change: no commit, no tag

    listed = invoke_labelhub("versions", "--repo", repo.arg, env={"HF_TOKEN": HUB_TOKEN}, check=True).stdout
    assert "annotations-v1" in listed and "+9 ~0 -0" in listed and "+0 ~1 -1" in listed


def test_the_first_version_after_an_upgrade_counts_its_changes_from_the_last_version(label_studio, project, tmp_path):
    """A state whose tagged versions kept no label columns (written before 2026-12): the next version's changes are
    counted from the last version's CSV, not from nothing."""
    import sqlite3

    repo = LocalRepo(sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 3)))
    client = label_studio.client()
    sync_once(label_studio, repo, project, tmp_path)
    tasks = sorted(client.tasks.list(project=project.id, page_size=10), key=lambda t: t.id)
    first = client.annotations.create(tasks[0].id, result=[choice("text-only")])
    client.annotations.create(tasks[1].id, result=[choice("illustrated")])
    sync_once(label_studio, repo, project, tmp_path)  # annotations-v1
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    db.execute("UPDATE versions SET labels = NULL")  # as the older LabelHub left its versions
    db.commit()
    db.close()
    client.annotations.update(first.id, result=[choice("illustrated")])
    client.annotations.create(tasks[2].id, result=[choice("text-only")])
    client.tasks.update(id=tasks[1].id, data={**tasks[1].data, "batch": "b2"})  # a change in no label
    sync_once(label_studio, repo, project, tmp_path)  # annotations-v2
    changes = json.loads(repo.read("annotations-v2", "annotations/manifest.json"))["changes"]
    assert (changes["old"], changes["added"], changes["relabelled"], changes["removed"]) == ("annotations-v1", 1, 1, 0)
    message = subprocess.run(["git", "log", "-1", "--format=%B", "annotations-v2"], cwd=repo.path, check=True,
                             capture_output=True, text=True).stdout
    assert message.startswith("annotations v2: +1 ~2 -0") and "Since annotations-v1: +1 added" in message
    assert "~2 changed: 1 relabelled, 1 in other columns only" in message
    assert "~2 changed: 1 relabelled, 1 in other columns only" in repo.read("annotations-v2", "README.md").decode()


def test_a_re_save_with_the_same_labels_makes_no_version_and_the_next_version_carries_its_times(label_studio,
                                                                                              project, tmp_path):
    """Update clicked with the same labels (PATCH ``/api/annotations/<id>``, the same ``result``): Label Studio
    changes the annotation's ``updated_at`` and ``lead_time`` alone, and the next export makes no commit and no tag.
    A label changed later makes a version counting ``~1 changed``, whose CSV holds the re-saved annotation's newer
    ``updated_at`` and ``lead_time``."""
    import sqlite3

    import pandas as pd

    repo = LocalRepo(sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 2)))
    client = label_studio.client()
    sync_once(label_studio, repo, project, tmp_path)
    tasks = sorted(client.tasks.list(project=project.id, page_size=10), key=lambda t: t.id)
    resaved = client.annotations.create(tasks[0].id, result=[choice("text-only"), box(10, 20, 30, 40, "figure")],
                                        lead_time=2.0)
    relabelled = client.annotations.create(tasks[1].id, result=[choice("illustrated")], lead_time=3.0)
    sync_once(label_studio, repo, project, tmp_path)  # annotations-v1
    head = repo.head()

    before = client.annotations.get(resaved.id)
    client.annotations.update(resaved.id, result=before.result, lead_time=before.lead_time + 4.5)
    after = client.annotations.get(resaved.id)
    assert after.updated_at > before.updated_at and after.result == before.result
    sync_once(label_studio, repo, project, tmp_path)
    db = sqlite3.connect(tmp_path / "state.sqlite3")
    (stored,) = db.execute("SELECT body FROM annotations WHERE annotation_id=?", (resaved.id,)).fetchone()
    db.close()
    assert json.loads(stored)["lead_time"] == 6.5  # the sync saw the re-save
    assert repo.head() == head and repo.tags() == ["annotations-v1"]  # and made no version of it

    client.annotations.update(relabelled.id, result=[choice("text-only")])
    sync_once(label_studio, repo, project, tmp_path)
    assert repo.tags() == ["annotations-v1", "annotations-v2"]
    message = subprocess.run(["git", "log", "-1", "--format=%B", "annotations-v2"], cwd=repo.path, check=True,
                             capture_output=True, text=True).stdout
    assert message.startswith("annotations v2: +0 ~1 -0") and "~1 relabelled" in message
    rows = repo.load("annotations-v2", tmp_path).set_index("annotation_id")
    assert rows.loc[relabelled.id, "kind"] == "text-only"
    assert pd.Timestamp(rows.loc[resaved.id, "updated_at"]) == pd.Timestamp(after.updated_at)  # carried, not counted
    assert rows.loc[resaved.id, "lead_time"] == 6.5
    manifest = json.loads(repo.read("annotations-v2", "annotations/manifest.json"))
    assert (manifest["counts"]["changed"], manifest["changes"]["relabelled"]) == (1, 1)
    listed = invoke_labelhub("versions", "--repo", repo.arg, check=True).stdout
    assert "+2 ~0 -0" in listed and "+0 ~1 -0" in listed and "annotations-v3" not in listed
