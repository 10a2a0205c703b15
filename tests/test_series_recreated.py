"""A Label Studio reset between two versions: the new project gets the old one's id (and its annotation and task
ids start again at 1), but it is another project (:meth:`labelhub.sync.versions.exporter.Exporter._replaced`).

Its first version takes the series over with a warning, counting the old project's annotations as removed and its
own as added, and ``labelhub diff`` makes up no relabel from two annotations that share an id. Real Label Studio
(a fresh database on the same port, as ``labelhub demo`` after its folder was moved away), a real local git
repository, the real ``labelhub`` command (the model: ``tests/test_series_conflicts.py``).
"""
from __future__ import annotations

import json
import time

from tests import sample_repos
from tests.in_process import invoke_labelhub
from tests.labelstudio import LabelStudioServer, free_port
from tests.test_series_conflicts import annotate, csv_ids, tags, titles
from tests.test_two_projects_one_repo import CONFIG

git = sample_repos.git


def test_a_project_recreated_with_the_same_id_after_a_reset_counts_its_annotations_as_another_projects(tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 4))
    port, state, created = free_port(), tmp_path / "state.sqlite3", []

    def sync(server, project_id, *extra):
        env = {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.api_key}
        return invoke_labelhub("sync", "--repo", str(path), "--project", str(project_id), "--state", str(state),
                               "--once", *extra, env=env, check=True)

    with LabelStudioServer(tmp_path / "ls-before", port=port) as server:
        client = server.client()
        project = client.projects.create(title="before the reset", label_config=CONFIG)
        created.append(project.id)
        sync(server, project.id)
        annotate(client, project.id, 3, "Bag")
        sync(server, project.id)
    assert tags(path) == ["annotations-v1"] and titles(path)[0] == "annotations v1: +3 ~0 -0"
    manifest = json.loads(git(path, "show", "annotations-v1:annotations/manifest.json"))
    before = manifest["label_studio"]["project_key"]
    assert before.startswith(f"{project.id}.")
    time.sleep(1.1)  # Label Studio names a project by its id and created_at in whole seconds

    with LabelStudioServer(tmp_path / "ls-after", port=port) as server:  # the same URL, a fresh database
        client = server.client()
        project = client.projects.create(title="after the reset", label_config=CONFIG)
        created.append(project.id)
        rebuilt = sync(server, project.id, "--no-export")
        made = annotate(client, project.id, 1, "Top")  # the id of one of the old project's annotations
        out = sync(server, project.id)
    assert created[0] == created[1]
    assert "rebuilding it from Label Studio" in rebuilt.stderr, rebuilt.stderr
    assert (f"taking over the series 'annotations' from Label Studio project {project.id} of {server.url} created "
            f"at another time (project key {before}, this is ") in out.stderr, out.stderr
    assert "its 3 annotations count as removed" in out.stderr
    assert tags(path) == ["annotations-v1", "annotations-v2"]
    assert titles(path)[0] == "annotations v2: +1 ~0 -3", titles(path)
    manifest = json.loads(git(path, "show", "annotations-v2:annotations/manifest.json"))
    assert manifest["label_studio"]["project_key"] != before
    csv_path = "annotations/annotations.csv"
    assert made[0] in csv_ids(path, "annotations-v1", csv_path)  # two annotations share an id
    assert csv_ids(path, "annotations-v2", csv_path) == set(made)
    assert manifest["changes"]["added"] == 1 and manifest["changes"]["removed"] == 3
    assert manifest["changes"]["relabels"] == [] and manifest["changes"]["relabelled"] == 0

    shown = invoke_labelhub("diff", "--repo", str(path), "annotations-v1", "annotations-v2", check=True)
    assert "+1 added, -3 removed, ~0 relabelled" in shown.stdout, shown.stdout
    counts = [line for line in shown.stdout.splitlines() if line.startswith("- `")]  # the per-label lines (no legend)
    assert counts and "relabels" not in shown.stdout and not any("→" in line for line in counts), shown.stdout
