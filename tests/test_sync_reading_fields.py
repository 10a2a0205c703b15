"""The sync's readings of annotated tasks name their fields (``include``) instead of taking ``fields=all``: what they
pass on must be what ``fields=all`` gives, for the annotation store compares each annotation as a whole (a field
missing from the reading would look like an edit and move the next version)."""
from __future__ import annotations

import pytest

from labelhub.sync.annotations.intake import DISPLAY_ONLY, _task_rows
from labelhub.sync.labelstudio import project as project_module
from labelhub.sync.labelstudio.project import ANNOTATED_TASK_FIELDS, LabelStudioProject

CONFIG = ('<View><Text name="text" value="$text"/><Choices name="kind" toName="text">'
          '<Choice value="a"/><Choice value="b"/></Choices></View>')


@pytest.fixture(scope="module")
def annotated(label_studio):
    """A project of 6 tasks with two prediction versions each; 4 annotated (one cancelled, one ground truth)."""
    client = label_studio.client()
    created = client.projects.create(title="reading fields", label_config=CONFIG)
    client.projects.import_tasks(id=created.id, request=[{"text": f"text {i}", "hf_revision": "abc"} for i in range(6)])
    ids = sorted(t.id for t in client.tasks.list(project=created.id, fields="task_only"))
    choice = [{"from_name": "kind", "to_name": "text", "type": "choices", "value": {"choices": ["b"]}}]
    for task_id in ids:
        for version in ("v1", "v2"):
            client.predictions.create(task=task_id, result=choice, score=0.5, model_version=version)
    client.annotations.create(id=ids[0], result=choice, lead_time=3.5)
    client.annotations.create(id=ids[1], result=choice, ground_truth=True)
    client.annotations.create(id=ids[2], result=[], was_cancelled=True)
    client.annotations.create(id=ids[3], result=choice)
    return LabelStudioProject(label_studio.url, label_studio.api_key, created.id), ids


def _stored(tasks: list[dict]) -> dict[int, tuple]:
    """What the annotation store keeps of each task (the intake's own conversion), by task id."""
    return {row[0]: row for row in _task_rows(tasks)}


def _reading(project: LabelStudioProject) -> dict[int, dict]:
    pages: list[dict] = []
    assert project.tasks_updated_since("", lambda tasks, ordered: pages.extend(tasks))
    return _stored(pages)


def test_every_field_label_studio_gives_an_annotation_is_read(label_studio, annotated):
    project, ids = annotated
    everything = project.client.tasks.list(project=project.project_id, fields="all")
    fields = {key for task in everything for annotation in task.annotations or [] for key in annotation}
    assert fields, "no annotation read"
    missing = fields - set(ANNOTATED_TASK_FIELDS) - set(DISPLAY_ONLY) - {"task"}
    assert not missing, f"add {sorted(missing)} to ANNOTATED_TASK_FIELDS: this Label Studio gives them"


def test_the_named_fields_read_what_fields_all_reads(annotated, monkeypatch):
    project, ids = annotated
    named = _reading(project)
    monkeypatch.setattr(project_module, "ANNOTATED_TASK_INCLUDE", None)  # the readings as they were: fields=all alone
    assert named == _reading(project)
    assert set(named) == set(ids) and sum(len(annotations) for _, _, annotations, _, _ in named.values()) == 4
    assert [t["id"] for t in project.tasks_by_id(ids[:2])] == ids[:2]
    monkeypatch.undo()
    assert _stored(project.tasks_by_id(ids)) == named
