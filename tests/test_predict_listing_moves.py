"""Label Studio pages its task lists by page number, so a task deleted while the backend reads a list shifts the later
ones back by a place: the prediction jobs' listing (``labelhub predict``) and "Start training"'s reading of the
annotated tasks must still list every live task, once."""
from __future__ import annotations

import pytest

from labelhub.backend import labelstudio_api
from labelhub.backend.labelstudio_api import LabelStudioClient
from tests.backend_fixtures import TEXT_CONFIG
from tests.labelstudio import import_annotated, on_second_page

N = 12


@pytest.fixture
def listed(label_studio, make_project, monkeypatch):
    """A project of N annotated text tasks, its ids, a Label Studio client, and the jobs' client listing 5 a page."""
    monkeypatch.setattr(labelstudio_api, "TASK_PAGE_SIZE", 5)
    monkeypatch.setattr(labelstudio_api, "PREDICTION_PAGE_SIZE", 5)  # the listings with predictions
    client = label_studio.client()
    project = make_project("backend listing moves", TEXT_CONFIG)
    fresh = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["fresh"]}}
    ids = import_annotated(client, project.id, [{"text": f"review {i}"} for i in range(N)], [fresh])
    return client, project.id, ids, LabelStudioClient(label_studio.url, label_studio.api_key)


def test_a_task_deleted_while_the_prediction_job_lists_pages_skips_no_live_task(listed):
    client, project_id, ids, api = listed
    deleted = on_second_page(api._client, lambda: client.tasks.delete(ids[0]))  # read on page 1: later ones shift
    listed_ids = [task.id for task in api.tasks(project_id)]
    assert deleted
    assert sorted(listed_ids) == ids[1:]  # every live task, once


def test_a_task_deleted_while_training_reads_the_annotated_tasks_skips_no_live_task(listed):
    client, project_id, ids, api = listed
    deleted = on_second_page(api._client, lambda: client.tasks.delete(ids[0]))
    tasks = api.annotated_tasks(project_id)
    assert deleted
    assert sorted(task["id"] for task in tasks) == ids[1:]
    assert all(task["annotations"] for task in tasks)
