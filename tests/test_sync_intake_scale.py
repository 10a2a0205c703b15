"""What reconciliation and the sweep cost at scale (an audit of ``labelhub sync`` on 100,000 tasks): an idle project's
reconciliation reads no task once the overlap after a move was read, a save committed late with an earlier
``updated_at`` is still read, a reading is stored a page at a time, and the sweep lists task ids only when the
counts say a task may be gone."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from labelhub.sync.annotations import intake as intake_module
from labelhub.sync.annotations.intake import CURSOR, CURSOR_MOVED_AT, AnnotationIntake
from labelhub.sync.labelstudio.server import DB_NAME
from tests.test_sync_export import choice
from tests.test_sync_listing_moves import N, annotated  # noqa: F401 (a fixture: N annotated tasks, 5 a page)


def _as_if_moved_seconds_ago(intake: AnnotationIntake, seconds: float) -> None:
    """What waiting ``seconds`` after the cursor moved does to the state, without the wait."""
    moved_at = float(intake.state.cursor(CURSOR_MOVED_AT))
    intake.state.set_cursor(CURSOR_MOVED_AT, repr(moved_at - seconds))


def test_an_idle_project_reconciles_with_no_task_read_once_the_overlap_was_read(annotated):
    # the audit: the cursor was T but every query asked for updated_at > T - 5 s, which after a bulk import held
    # 36,000 tasks: 72 pages at every reconciliation, forever
    client, project, intake, ids = annotated
    intake.reconcile()
    assert intake.last_read == N and len(intake.state.live_annotations()) == N
    intake.reconcile()  # started within OVERLAP of the move: the window is read again
    assert intake.last_read == N
    _as_if_moved_seconds_ago(intake, intake_module.OVERLAP.total_seconds() + 1)
    intake.reconcile()  # the window read once, OVERLAP after the move: settled
    assert intake.last_read == N
    for _ in range(2):
        intake.reconcile()
        assert intake.last_read == 0  # idle: one query, no task
    client.annotations.create(ids[3], result=[choice("text-only")])
    intake.reconcile()
    assert intake.last_read == 1 and len(intake.state.live_annotations()) == N + 1


def test_a_save_committed_late_with_an_updated_at_before_the_cursor_is_read(annotated, label_studio):
    client, project, intake, ids = annotated
    intake.reconcile()
    cursor = datetime.strptime(intake.state.cursor(CURSOR), "%Y-%m-%dT%H:%M:%S.%fZ")
    # a save that took its updated_at 1 s before the newest task read, and committed after the reading: Label
    # Studio's own save, then its updated_at set back in Label Studio's database (no API sets it)
    late = client.annotations.create(ids[0], result=[choice("text-only")])
    earlier = (cursor - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(label_studio.data_dir / DB_NAME, timeout=30) as db:
        db.execute("UPDATE task SET updated_at=? WHERE id=?", (earlier, ids[0]))
    _as_if_moved_seconds_ago(intake, intake_module.OVERLAP.total_seconds() + 1)
    intake.reconcile()
    assert late.id in {ann["id"] for _, ann in intake.state.live_annotations()}
    intake.reconcile()
    assert intake.last_read == 0  # and then settled


def test_a_reading_is_stored_a_page_at_a_time(annotated):
    # the audit: the first sync read its 100,000 new tasks into one list (RSS 898 MB) before storing any
    client, project, intake, ids = annotated
    stored, store = [], intake.state.store_task_lists
    intake.state.store_task_lists = lambda tasks, *a, **k: (stored.append(len(tasks)), store(tasks, *a, **k))[1]
    intake.reconcile()
    assert stored == [5, 5, 2] and len(intake.state.live_annotations()) == N


def test_the_sweep_looks_for_tasks_only_when_the_counts_say_a_task_may_be_gone(annotated):
    # the audit: every --once run listed the ids of all 100,000 tasks (200 pages, 2.8 min) to find none deleted
    client, project, intake, ids = annotated
    intake.reconcile()
    looked, task_ids, existing = [], project.task_ids, project.existing_task_ids
    project.task_ids = lambda: (looked.append("all"), task_ids())[1]
    project.existing_task_ids = lambda some: (looked.append(list(some)), existing(some))[1]
    assert intake.sweep() == 0 and looked == ["all"]  # no baseline yet, annotations stored: every id, once
    for _ in range(2):
        assert intake.sweep() == 0
    assert looked == ["all"]  # nothing changed: the count and the largest id, one call
    # a task created and annotated since: only it is looked for
    client.projects.import_tasks(project.project_id, request=[{"image": "https://example.test/new.png"}])
    new = max(t.id for t in client.tasks.list(project=project.project_id, page_size=100))
    client.annotations.create(new, result=[choice("text-only")])
    intake.reconcile()
    assert intake.sweep() == 0 and looked == ["all", [new]]
    client.tasks.delete(new)
    assert intake.sweep() == 1
    client.tasks.delete(ids[2])
    assert intake.sweep() == 1
    assert {task["id"] for task, _ in intake.state.live_annotations()} == set(ids) - {ids[2]}
    del looked[:]
    assert intake.sweep() == 0 and looked == []


def test_a_big_reading_reads_only_the_tasks_that_can_change_the_store(annotated, label_studio, monkeypatch):
    # the audit: the first sync read back the 100,000 tasks it had just made, none annotated (4 min 50 s)
    monkeypatch.setattr(intake_module, "SPLIT_ABOVE", 4)
    client, project, intake, ids = annotated
    intake.reconcile()
    _as_if_moved_seconds_ago(intake, intake_module.OVERLAP.total_seconds() + 1)
    intake.reconcile()  # the overlap window, once: settled
    assert intake.last_read == N
    emptied = ids[4]
    for ann in client.annotations.list(emptied):
        client.annotations.delete(ann.id)
    stale = ids[5]  # a live annotation beside a total_annotations of 0 (the audit saw it under concurrent saves)
    client.annotations.create(stale, result=[choice("text-only")])
    with sqlite3.connect(label_studio.data_dir / DB_NAME, timeout=30) as db:
        db.execute("UPDATE task SET total_annotations=0 WHERE id=?", (stale,))
    client.projects.import_tasks(project.project_id, request=[{"image": f"https://example.test/new-{i}.png"}
                                                              for i in range(20)])
    intake.reconcile()
    assert intake.last_read == 2  # the emptied task and the annotated one, not the 20 new ones
    live = {(task["id"], ann["id"]) for task, ann in intake.state.live_annotations()}
    assert emptied not in {task_id for task_id, _ in live} and len(live) == N - 1 + 1
    assert sum(task_id == stale for task_id, _ in live) == 2
    _as_if_moved_seconds_ago(intake, intake_module.OVERLAP.total_seconds() + 1)
    intake.reconcile()  # the overlap window, once
    intake.reconcile()
    assert intake.last_read == 0  # past the new tasks: none read again
