"""A restored task whose annotations were made on two revisions of its file keeps each annotation's revision.

Against a real Label Studio: annotation X is exported on file F at R1, F changes to R2, annotation Y is made on R2;
the version holds X at R1 and Y at R2. ``labelhub restore`` into a new project makes one task showing one revision;
a sync of that project stored every annotation with that revision (X's label paired with R2's image). Each restored
annotation now keeps the revision of the task's ``meta.restored_annotations`` (its ``import_id``) until someone saves
it in Label Studio; a save gives it the revision the task shows, as any annotation's.
"""
from __future__ import annotations

import io

import pandas as pd

from tests import sample_repos
from tests.in_process import invoke_labelhub
from tests.test_restore import CONFIG, choice, synced_repo


def csv_at(repo, tag: str, path: str) -> pd.DataFrame:
    text = sample_repos.git(repo, "show", f"{tag}:{path}")
    return pd.read_csv(io.StringIO(text + "\n"), dtype=str, keep_default_na=False)


def newest_tag(repo, prefix: str) -> str:
    return max((t for t in sample_repos.git(repo, "tag").split() if t.startswith(prefix)),
               key=lambda t: int(t.rsplit("-v", 1)[1]))


def test_restored_annotations_keep_the_revisions_they_were_made_on(label_studio, make_project, tmp_path):
    client = label_studio.client()
    source = make_project("revisions source", CONFIG)
    repo, env, sync, tasks = synced_repo(label_studio, source.id, tmp_path, 2)
    task = tasks[0]
    client.annotations.create(task.id, result=choice("Bag"))  # X, on R1
    invoke_labelhub(*sync, env=env, check=True)
    r1 = task.data["hf_revision"]
    path = task.data["hf_path"]
    sample_repos.commit_local(repo, {path: sample_repos.image_files(5, 6)[sample_repos.image_path(5)]},
                              message="the file changes")
    invoke_labelhub(*sync, env=env, check=True)  # the task follows R2
    r2 = client.tasks.get(task.id).data["hf_revision"]
    assert r2 != r1
    client.annotations.create(task.id, result=choice("Coat"))  # Y, on R2
    invoke_labelhub(*sync, env=env, check=True)
    tag = newest_tag(repo, "annotations-v")
    original = csv_at(repo, tag, "annotations/annotations.csv")
    made_on = dict(zip(original["kind"], original["annotated_revision"]))
    assert made_on == {"Bag": r1, "Coat": r2}  # the export is right: the premise

    target = make_project("revisions restored", CONFIG)
    state = str(tmp_path / "restored.sqlite3")
    invoke_labelhub("restore", "--repo", str(repo), "--tag", tag, "--project", str(target.id), "--state", state,
                    env=env, check=True)
    resync = ["sync", "--repo", str(repo), "--project", str(target.id), "--state", state, "--once",
              "--csv-path", "restored/annotations.csv"]
    invoke_labelhub(*resync, env=env, check=True)
    again = csv_at(repo, newest_tag(repo, "restored-v"), "restored/annotations.csv")
    assert dict(zip(again["kind"], again["annotated_revision"])) == made_on
    by_import = {str(a["import_id"]): a["id"] for t in client.tasks.list(project=target.id, fields="all")
                 for a in t.annotations}
    for _, row in original.iterrows():  # each restored annotation, by its import_id, has the original's revision
        mine = again[again["annotation_id"] == str(by_import[row["annotation_id"]])]
        assert list(mine["annotated_revision"]) == [row["annotated_revision"]], row["annotation_id"]

    # X saved in Label Studio: made on the content the restored task shows (R2), as any saved annotation
    shows = next(iter(client.tasks.list(project=target.id, fields="all"))).data["hf_revision"]
    x = by_import[original.loc[original["kind"] == "Bag", "annotation_id"].item()]
    client.annotations.update(x, result=choice("Ankle boot"))
    invoke_labelhub(*resync, env=env, check=True)
    last = csv_at(repo, newest_tag(repo, "restored-v"), "restored/annotations.csv")
    assert dict(zip(last["kind"], last["annotated_revision"])) == {"Ankle boot": shows, "Coat": r2}
