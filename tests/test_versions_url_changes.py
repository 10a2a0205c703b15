"""A change of the sync's file URL policy (the backend moved host, ``LABELHUB_SECRET`` rotated) rewrites every task's
URL and makes no version by itself; the next version, made for one new annotation, counts that one alone: an
annotation whose file (path and revision) stayed the same did not change
(:func:`labelhub.sync.versions.incremental.content_key`), though its row in the CSV holds the new URL. ``labelhub
diff`` counts it so too (:func:`labelhub.sync.versions.diff.changed_rows`).

Real Label Studio, a real local git repository, the real ``labelhub`` command (URL policies as in
``tests/test_file_url_policy.py``).
"""
from __future__ import annotations

import io

import pandas as pd

from labelhub.sync.versions.diff import changed_rows
from tests import sample_repos
from tests.conftest import run_labelhub
from tests.test_file_url_policy import CONFIG, SECRET, _env
from tests.test_series_conflicts import tags, titles

git = sample_repos.git
N = 5


def choice(kind):
    return [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": [kind]}}]


def rows(path, tag) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(git(path, "show", f"{tag}:annotations/annotations.csv")), dtype=str,
                       keep_default_na=False)


def test_a_url_rewrite_counts_no_annotation_as_changed_in_the_next_version(label_studio, make_project, tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "shelf", sample_repos.image_files(0, N))
    project, client = make_project("url changes", CONFIG), label_studio.client()

    def sync(secret, public_url):
        done = run_labelhub("sync", "--repo", str(path), "--project", str(project.id), "--state",
                            str(tmp_path / "state.sqlite3"), "--once", "--public-url", public_url,
                            env=_env(label_studio, secret))
        assert done.returncode == 0, done.stderr
        return done.stderr

    def annotate(n):
        tasks = [t for t in client.tasks.list(project=project.id, page_size=100) if not t.total_annotations]
        for task in tasks[:n]:
            client.annotations.create(task.id, result=choice("a"))

    sync(SECRET, "http://old-host:9090")
    annotate(3)
    sync(SECRET, "http://old-host:9090")
    assert tags(path) == ["annotations-v1"] and titles(path)[0] == "annotations v1: +3 ~0 -0"

    moved = sync(SECRET + "-rotated", "http://new-host:9090")  # the backend moved, and the secret rotated
    assert f"{N} of {N} tasks' URLs rewritten" in moved, moved
    assert tags(path) == ["annotations-v1"]  # no version for the URLs alone

    annotate(1)
    sync(SECRET + "-rotated", "http://new-host:9090")
    assert tags(path) == ["annotations-v1", "annotations-v2"]
    assert titles(path)[0] == "annotations v2: +1 ~0 -0", titles(path)
    old, new = rows(path, "annotations-v1"), rows(path, "annotations-v2")
    assert all(url.startswith("http://new-host:9090/") for url in new["image"])  # the CSV holds the new URLs
    assert changed_rows(old, new, "image") == 0 and changed_rows(old, new) == 3  # as written, every URL differs

    shown = run_labelhub("diff", "--repo", str(path), "annotations-v1", "annotations-v2", check=True)
    assert "+1 added, -0 removed, ~0 relabelled" in shown.stdout, shown.stdout
    assert "other columns only" not in shown.stdout, shown.stdout
