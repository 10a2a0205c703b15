"""The sync state's versions: the baseline an export's +added ~changed -removed is counted against."""
import io
import json
import sqlite3

import pandas as pd

from labelhub.sync.state import SyncState


def test_the_baseline_is_the_newest_tagged_version(tmp_path):
    state = SyncState(tmp_path / "s.sqlite3", 1, "o/r")
    assert state.exported_hashes() == {}
    state.begin_version(1, "e1", {7: "a", 8: "b"}, {"added": 2, "changed": 0, "removed": 0}, '[{"kind": "a"}]')
    state.set_version_status(1, "committed", "1" * 40, "0" * 40)
    assert state.exported_hashes() == {}  # committed, not yet tagged
    state.set_version_status(1, "tagged")
    assert state.exported_hashes() == {7: "a", 8: "b"}
    state.begin_version(2, "e2", {7: "c"}, {"added": 0, "changed": 1, "removed": 1}, '[{"kind": "b"}]')
    assert state.last_tagged_labels() == (1, '[{"kind": "a"}]', "1" * 40)
    assert state.exported_hashes() == {7: "a", 8: "b"}  # version 2 is being committed
    assert state.last_version() == {"version": 2, "export_id": "e2", "status": "committing", "commit_sha": None,
                                    "parent_commit": None, "summary": {"added": 0, "changed": 1, "removed": 1}}
    state.set_version_status(2, "committed", "2" * 40)
    state.set_version_status(2, "tagged")
    assert state.exported_hashes() == {7: "c"}
    kept = state.db.execute("SELECT version, hashes, labels, commit_sha FROM versions ORDER BY version").fetchall()
    assert kept == [(1, "{}", None, "1" * 40), (2, '{"7": "c"}', '[{"kind": "b"}]', "2" * 40)]  # v1's cleared, not v1
    assert state.last_tagged_labels() == (2, '[{"kind": "b"}]', "2" * 40)
    state.forget_versions()
    assert state.exported_hashes() == {} and state.last_version() is None


def test_a_state_written_with_the_exported_table_opens_with_the_same_baseline(tmp_path):
    path = tmp_path / "s.sqlite3"
    state = SyncState(path, 1, "o/r")
    state.begin_version(1, "e1", {7: "a"}, {"added": 1, "changed": 0, "removed": 0})
    state.set_version_status(1, "committed", "1" * 40)
    state.set_version_status(1, "tagged")
    db = sqlite3.connect(path)  # the copy of the baseline that states before 2026-12 kept
    db.execute("CREATE TABLE exported (project_id INTEGER NOT NULL, repo_id TEXT NOT NULL, annotation_id INTEGER "
               "NOT NULL, row_hash TEXT NOT NULL, PRIMARY KEY (project_id, repo_id, annotation_id))")
    db.execute("INSERT INTO exported VALUES (1, 'o/r', 7, 'a')")
    db.commit()
    db.close()
    reopened = SyncState(path, 1, "o/r")
    assert reopened.exported_hashes() == {7: "a"}
    tables = {row[0] for row in reopened.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "exported" not in tables


def test_annotations_stored_without_a_revision_keep_the_one_their_task_showed_when_opened(tmp_path):
    """A state from before annotations kept their revision (the column added empty by the migration): each gets the
    revision its task shows when the state is opened, so a file that changes afterwards does not move the
    annotation's ``annotated_revision`` to the new content."""
    path, old, new = tmp_path / "s.sqlite3", "a" * 40, "b" * 40
    state = SyncState(path, 1, "o/r")
    state.upsert_task(5, {"image": "u", "hf_path": "a.png", "hf_revision": old})
    state.upsert_task(6, {"text": "not from the repo"})
    for task in (5, 6):
        state.apply_annotations(task, [{"id": task * 10, "updated_at": "t", "result": []}], complete=False)
    state.db.execute("UPDATE annotations SET revision = NULL")  # as the migration left them
    state.db.close()
    state = SyncState(path, 1, "o/r")
    state.upsert_task(5, {"image": "u2", "hf_path": "a.png", "hf_revision": new})  # the file changed since
    revisions = {task["id"]: annotation.get("annotated_revision") for task, annotation in state.live_annotations()}
    assert revisions == {5: old, 6: None}


def test_a_state_an_older_labelhub_wrote_is_upgraded_without_a_version_and_counts_by_content_from_then(tmp_path):
    """A state whose tagged version holds whole-row hashes (bookkeeping columns included) and whose stored rows have
    no content hash, as a LabelHub that hashed whole rows left it. The exporter translates it as it starts: no
    version and no "~N changed" for the upgrade; a re-save after it makes no version; an annotation changed before
    it (not exported yet) counts as changed once, as the older LabelHub would have counted it."""
    from labelhub.repos.git import LocalGitRepo
    from labelhub.sync.versions.exporter import Exporter
    from labelhub.sync.versions.incremental import build_rows, forget
    from tests import sample_repos

    class Project:
        project_id, url, title = 1, "http://ls.test", "p"
        label_config = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
                        '<Choice value="a"/><Choice value="b"/></Choices></View>')

    def annotation(aid, label, updated, lead_time):
        return {"id": aid, "completed_by": 1, "created_at": "2026-01-01T00:00:00Z", "updated_at": updated,
                "lead_time": lead_time, "result": [{"from_name": "kind", "to_name": "image", "type": "choices",
                                                    "value": {"choices": [label]}}]}

    def resave(state, aid, updated):  # Update clicked with the same labels: a newer updated_at and lead_time
        (body,) = state.db.execute("SELECT body FROM annotations WHERE annotation_id=?", (aid,)).fetchone()
        body = json.loads(body)
        state.apply_annotations(aid, [{**body, "updated_at": updated, "lead_time": body["lead_time"] + 4}],
                                complete=False)

    repo = LocalGitRepo(str(sample_repos.local_repo_with(tmp_path / "repo", {"a.png": b"png"})))
    path = tmp_path / "s.sqlite3"
    state = SyncState(path, 1, repo.repo_id)
    state.set_users({1: "ann@example.com"})
    for aid in (11, 12, 13):
        state.upsert_task(aid, {"image": f"http://files/{aid}.png", "hf_path": f"{aid}.png"})
        state.apply_annotations(aid, [annotation(aid, "a", "2026-01-01T00:00:00Z", 2.0)], complete=False)
    assert Exporter(repo, Project(), state).export().number == 1
    whole_rows = build_rows(state, {"kind": "Choices"}, "image").hashes
    resave(state, 13, "2026-02-01T00:00:00Z")  # received by the older LabelHub, not exported yet
    # as the older LabelHub left the state: whole-row hashes, no content hashes
    state.db.execute("UPDATE versions SET hashes=?", (json.dumps(whole_rows),))
    state.db.execute("ALTER TABLE versions DROP COLUMN content_hashes")
    state.db.execute("ALTER TABLE export_rows DROP COLUMN content_hash")
    state.close()
    forget(state)  # a new process

    state = SyncState(path, 1, repo.repo_id)
    assert state.whole_row_baseline()
    exporter = Exporter(repo, Project(), state)  # the upgrade: before any reconciliation
    assert not state.whole_row_baseline()
    assert state.db.execute("SELECT count(*) FROM export_rows WHERE content_hash IS NULL").fetchone() == (0,)
    built = build_rows(state, {"kind": "Choices"}, "image")
    assert state.exported_hashes() == {11: built.contents[11], 12: built.contents[12], 13: whole_rows[13]}
    assert repo.tags().keys() == {"annotations-v1"}

    resave(state, 12, "2026-03-01T00:00:00Z")  # after the upgrade: not a change
    version = exporter.export()
    assert (version.number, version.added, version.changed, version.removed) == (2, 0, 1, 0)  # 13 alone
    rows = pd.read_csv(io.BytesIO(repo.read_file(version.commit, "annotations/annotations.csv")))
    assert rows.set_index("annotation_id").loc[12, "updated_at"] == "2026-03-01T00:00:00Z"  # written, not counted

    resave(state, 11, "2026-04-01T00:00:00Z")
    assert exporter.export() is None and exporter.export() is None
    assert repo.tags().keys() == {"annotations-v1", "annotations-v2"}
