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
import json

import pandas as pd

from labelhub.sync.versions.diff import changed_rows
from tests import sample_repos
from tests.in_process import invoke_labelhub
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
        done = invoke_labelhub("sync", "--repo", str(path), "--project", str(project.id), "--state",
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

    shown = invoke_labelhub("diff", "--repo", str(path), "annotations-v1", "annotations-v2", check=True)
    assert "+1 added, -0 removed, ~0 relabelled" in shown.stdout, shown.stdout
    assert "other columns only" not in shown.stdout, shown.stdout


class _Project:
    """The Label Studio project of the upgrade tests (a stand-in: the exporter reads these attributes)."""
    project_id, url, title, key = 1, "http://ls.test", "p", "1.1796529238"
    label_config = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
                    '<Choice value="a"/><Choice value="b"/></Choices></View>')


def _task(aid, host, sig):
    return {"image": f"http://{host}/files/repo/abc/{aid}.png?sig={sig}", "hf_repo": "repo",
            "hf_path": f"{aid}.png", "hf_revision": "abc"}


def _annotation(aid):
    return {"id": aid, "completed_by": 1, "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "lead_time": 2.0, "result": choice("a")}


def _as_an_older_labelhub_left_it(tmp_path, untagged: bool = False):
    """A state and a local repo as an earlier LabelHub left them after version 1 of annotations 11 to 13: content
    hashes of the rows with their URLs as written, rows stored under the older fingerprint; with ``untagged``, that
    LabelHub was killed between the version's commit and its tag. Returns ``(repo path, repo, state path, version 1)``
    once the state is closed (a new process opens it)."""
    from labelhub.repos.git import LocalGitRepo
    from labelhub.sync.state import ROWS_CONFIG, SyncState
    from labelhub.sync.versions.exporter import CONTENT_FORMAT_CURSOR, Exporter
    from labelhub.sync.versions.incremental import forget
    from labelhub.sync.versions.rows import ROW_FORMAT, content_hash

    repo_path = sample_repos.local_repo_with(tmp_path / "repo", {"a.png": b"png"})
    repo = LocalGitRepo(str(repo_path))
    path = tmp_path / "s.sqlite3"
    state = SyncState(path, 1, repo.repo_id)
    state.set_users({1: "ann@example.com"})
    for aid in (11, 12, 13):
        state.upsert_task(aid, _task(aid, "old:9090", 1))
        state.apply_annotations(aid, [_annotation(aid)], complete=False)
    first = Exporter(repo, _Project(), state).export()
    assert first.number == 1
    old = {json.loads(text)["annotation_id"]: content_hash(json.loads(text)) for text, *_ in state.export_rows()}
    baseline = {aid: f"{old[aid]}:{key.partition(':')[2]}" for aid, key in state.exported_hashes().items()}
    state.db.execute("UPDATE versions SET hashes=?, status=?", (json.dumps(baseline),
                                                                 "committed" if untagged else "tagged"))
    state.db.executemany("UPDATE export_rows SET content_hash=? WHERE annotation_id=?",
                         [(hashed, aid) for aid, hashed in old.items()])
    state.set_cursor(ROWS_CONFIG, json.dumps([{"kind": "Choices"}, "image", ROW_FORMAT], sort_keys=True))
    state.db.execute("DELETE FROM cursors WHERE name=?", (CONTENT_FORMAT_CURSOR,))
    if untagged:
        sample_repos.git(repo_path, "tag", "-d", "annotations-v1")
    state.close()
    forget(state)
    return repo_path, repo, path, first


def test_a_state_with_content_hashes_of_urls_as_written_is_translated_without_a_version(tmp_path):
    """A state an earlier LabelHub left (content hashes of rows with their URLs as written, rows stored under the
    older fingerprint): the exporter translates its baseline as it starts, so neither the upgrade nor the next URL
    rewrite counts any annotation as changed. The model: ``tests/test_sync_state_versions.py``."""
    from labelhub.sync.state import SyncState
    from labelhub.sync.versions.exporter import CONTENT_FORMAT_CURSOR, Exporter
    from labelhub.sync.versions.incremental import build_rows

    _, repo, path, _ = _as_an_older_labelhub_left_it(tmp_path)
    state = SyncState(path, 1, repo.repo_id)
    exporter = Exporter(repo, _Project(), state)  # the upgrade
    built = build_rows(state, {"kind": "Choices"}, "image")
    assert state.exported_hashes() == built.contents and state.cursor(CONTENT_FORMAT_CURSOR) == "2"
    assert exporter.export() is None  # no version for the upgrade

    for aid in (11, 12, 13):  # the URL policy changed: every task's URL rewritten
        state.upsert_task(aid, _task(aid, "new:9090", 2))
    state.upsert_task(14, _task(14, "new:9090", 2))
    state.apply_annotations(14, [_annotation(14)], complete=False)
    version = exporter.export()
    assert (version.number, version.added, version.changed, version.removed) == (2, 1, 0, 0)


def test_a_version_an_older_labelhub_committed_and_did_not_tag_is_translated_too(tmp_path):
    """The same upgrade, from an older LabelHub stopped between a version's commit and its tag: the export tags it
    (it is the baseline) and counts no annotation as changed. Before, only a tagged last version was translated, and
    the next version counted every annotation as changed (found by an audit)."""
    from labelhub.sync.state import SyncState
    from labelhub.sync.versions.exporter import CONTENT_FORMAT_CURSOR, Exporter

    _, repo, path, first = _as_an_older_labelhub_left_it(tmp_path, untagged=True)
    state = SyncState(path, 1, repo.repo_id)
    exporter = Exporter(repo, _Project(), state)  # the upgrade
    assert state.last_version_status() == "committed" and state.cursor(CONTENT_FORMAT_CURSOR) == "2"
    finished = exporter.export()  # tags the version the older LabelHub committed, and makes none
    assert (finished.number, finished.commit) == (1, first.commit) and repo.tags()["annotations-v1"] == first.commit
    assert exporter.export() is None and state.last_version()["version"] == 1
