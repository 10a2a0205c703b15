"""The sync state's versions: the baseline an export's +added ~changed -removed is counted against."""
import sqlite3

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
