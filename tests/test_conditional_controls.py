"""A control Label Studio shows only while a choice is selected (``visibleWhen="choice-selected"``,
https://labelstud.io/tags/choices) is predicted only where the predicted choices show it (found at stop 55: it was
predicted on every task, and its score counted in the task score that orders the Data Manager).

The real Flask app in-process: Label Studio's ``/setup``, ``/webhook`` and ``/predict`` bodies.
"""
from __future__ import annotations

import pytest

from labelhub.backend.app import create_app
from labelhub.label_config import ChoiceCondition, choice_conditions
from tests.backend_fixtures import plot_review_tasks, project_key, project_payload

KEY = project_key()


def _config(around_view: bool) -> str:
    child = "<Choices name='tone' toName='text'><Choice value='dark'/><Choice value='light'/></Choices>"
    when = "visibleWhen='choice-selected' whenTagName='kind' whenChoiceValue='review'"
    child = f"<View {when}>{child}</View>" if around_view else child.replace("<Choices ", f"<Choices {when} ")
    return ("<View><Text name='text' value='$text'/><Choices name='kind' toName='text'>"
            f"<Choice value='plot'/><Choice value='review'/></Choices>{child}</View>")


def _event(ann_id: int, task: dict, kind: str, config: str) -> dict:
    result = [{"id": f"k{ann_id}", "from_name": "kind", "to_name": "text", "type": "choices",
               "value": {"choices": [kind]}}]
    if kind == "review":  # the tone is asked only of a review, as the editor shows it only then
        result.append({"id": f"t{ann_id}", "from_name": "tone", "to_name": "text", "type": "choices",
                       "value": {"choices": ["dark" if ann_id % 4 < 2 else "light"]}})
    return {"action": "ANNOTATION_CREATED", "task": {"id": task["id"], "data": task["data"]},
            "project": project_payload(label_config=config),
            "annotation": {"id": ann_id, "task": task["id"], "was_cancelled": False, "ground_truth": False,
                           "updated_at": "2024-06-10T09:00:00Z", "created_at": "2024-06-10T09:00:00Z",
                           "result": result}}


@pytest.mark.parametrize("around_view", [False, True], ids=["on-the-control", "on-a-view"])
def test_a_control_shown_only_for_a_choice_is_predicted_only_where_that_choice_is(tmp_path, around_view):
    config = _config(around_view)
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    client = app.test_client()
    assert client.post("/setup", json={"project": KEY, "schema": config}).status_code == 200
    tasks, labels = plot_review_tasks(40)
    for n, (task, label) in enumerate(zip(tasks[:24], labels[:24])):
        assert client.post("/webhook", json=_event(100 + n, task, label, config)).status_code == 200
    app.extensions["labelhub"].trainer.run_once()
    answer = client.post("/predict", json={"tasks": tasks[24:], "project": KEY, "label_config": config}).json
    kinds = set()
    for prediction in answer["results"]:
        by_control = {r["from_name"]: r for r in prediction["result"]}
        kind = by_control["kind"]["value"]["choices"][0]
        kinds.add(kind)
        assert ("tone" in by_control) == (kind == "review"), prediction
        if kind == "plot":  # the task score is the kind's alone (a single choice's score, as it is)
            assert prediction["score"] == pytest.approx(by_control["kind"]["score"])
    assert kinds == {"plot", "review"}


def test_the_conditions_follow_label_studios_editor():
    config = ("<View><Text name='t' value='$text'/>"
              "<Choices name='a' toName='t'><Choice value='x' alias='X'/><Choice value='y'/></Choices>"
              "<Choices name='b' toName='t' visibleWhen='choice-selected' whenTagName='a' whenChoiceValue='x,y'>"
              "<Choice value='1'/></Choices>"
              "<Choices name='c' toName='t' visibleWhen='choice-unselected' whenTagName='a'>"
              "<Choice value='2'/></Choices>"
              "<View visibleWhen='choice-selected'><Choices name='d' toName='t' whenChoiceValue='1'>"
              "<Choice value='3'/></Choices></View>"
              "<Choices name='e' toName='t' visibleWhen='region-selected'><Choice value='4'/></Choices></View>")
    found = choice_conditions(config)
    assert found == {"b": (ChoiceCondition(True, "a", ("X", "y")),), "c": (ChoiceCondition(False, "a", ()),),
                     "d": (ChoiceCondition(True, "", ("1",)), ChoiceCondition(True, "", ()))}
    assert found["b"][0].holds({"a": {"X"}}) and not found["b"][0].holds({"a": set()})
    assert found["c"][0].holds({}) and not found["c"][0].holds({"a": {"y"}})
    assert all(c.holds({"b": {"1"}}) for c in found["d"]) and not all(c.holds({"a": {"y"}}) for c in found["d"])
