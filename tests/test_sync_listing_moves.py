"""Label Studio pages its task lists by page number, so a task saved or deleted while the sync reads a list shifts
the later ones by a place: reconciliation must not move its cursor past a task it never read, and the sweep must
not take a task it did not see for deleted."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from labelhub.sync.annotations.intake import AnnotationIntake
from labelhub.sync.labelstudio import project as project_module
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.state import SyncState
from tests.labelstudio import import_annotated, on_second_page
from tests.test_sync_export import CONFIG, choice

N = 12


@pytest.fixture
def annotated(label_studio, make_project, tmp_path, monkeypatch):
    """A project of N annotated tasks, listed 5 a page, and the sync's intake of it."""
    monkeypatch.setattr(project_module, "TASK_PAGE_SIZE", 5)
    client = label_studio.client()
    created = make_project("listing moves", CONFIG)
    ids = import_annotated(client, created.id, [{"image": f"https://example.test/{i}.png"} for i in range(N)],
                           [choice("illustrated")])
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    return client, project, AnnotationIntake(project, SyncState(tmp_path / "s.sqlite3", created.id, "o/r")), ids


def test_a_task_saved_while_reconciliation_pages_is_not_skipped(annotated):
    client, project, intake, ids = annotated
    first_page_task = ids[0]  # oldest updated_at: read on page 1, then moved to the end by the save below
    moved = on_second_page(project.client,
                           lambda: client.annotations.create(first_page_task, result=[choice("text-only")]))
    by_id, read_by_id = project._tasks_by_id, []
    project._tasks_by_id = lambda ids: (read_by_id.append(list(ids)), by_id(ids))[1]
    intake.reconcile()
    assert moved and len(read_by_id) == 1 and len(read_by_id[0]) == 1  # the one task the reading skipped, by id
    live = {ann["id"] for _, ann in intake.state.live_annotations()}
    assert len(live) == N + 1  # every annotation, the one saved meanwhile too
    newest = max(datetime.fromisoformat(str(task.updated_at).replace("Z", "+00:00"))
                 for task in client.tasks.list(project=project.project_id))
    cursor = newest.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert intake.state.cursor("tasks_updated_at") == cursor  # past every task: no second reading of them all


def test_a_task_deleted_while_the_sweep_pages_leaves_the_others_alone(annotated):
    client, project, intake, ids = annotated
    intake.reconcile()
    assert len(intake.state.live_annotations()) == N
    deleted = on_second_page(project.client, lambda: client.tasks.delete(ids[0]))
    intake.sweep()
    assert deleted
    assert len(intake.state.live_annotations()) >= N - 1  # at most the deleted task's annotation leaves
    intake.sweep()  # the project holds still now: the deleted task is found
    assert {task["id"] for task, _ in intake.state.live_annotations()} == set(ids[1:])


def test_a_listing_stops_at_its_last_page_without_asking_for_the_next():
    """The SDK's pager has a next page after every full page; the page past the last answered 404, which Label
    Studio logs as an error with a 36-line traceback: 1,112 of them in a 25-minute soak."""
    from types import SimpleNamespace

    from labelhub.labelstudio_client import list_tasks

    def pages(total, size):
        ids = list(range(1, total + 1))
        chunks = [ids[i:i + size] for i in range(0, total, size)] or [[]]
        out = []
        for n, chunk in enumerate(chunks):
            out.append(SimpleNamespace(items=[SimpleNamespace(id=i) for i in chunk], has_next=True,
                                       response=SimpleNamespace(total=total), get_next=lambda n=n: out[n + 1]))
        return out

    for total, size, calls in ((3, 10, 1), (10, 10, 1), (20, 10, 2), (25, 10, 3)):
        made = pages(total, size)
        asked = []
        client = SimpleNamespace(tasks=SimpleNamespace(list=lambda **params: made[0]))

        def call(fn):
            asked.append(1)
            return fn()

        listing = list_tasks(client, call, project=1, page_size=size)
        assert [t.id for t in listing.tasks] == list(range(1, total + 1)) and listing.held_still
        assert len(asked) == calls, (total, size)
