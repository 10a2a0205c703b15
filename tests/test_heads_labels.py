"""Which head answers which control, and that predictions name only the current label config's labels.

Through the backend's own app (``/setup``, ``/webhook``, ``/predict`` and the trainer, as
``tests/test_project_model.py`` drives them): object boxes next to a per-region caption, dynamic choices
(``value="$options"``, https://labelstud.io/tags/choices), a choice renamed after a fit, malformed tasks of an
image project.
"""
from __future__ import annotations

import logging

from labelhub.backend.app import create_app
from tests.backend_fixtures import annotation_event, image_tasks, plot_review_tasks, project_key, project_payload

KEY = project_key()

#: The audit's config: object classes as RectangleLabels, a whole-image choice and a caption per box.
OBJECTS_AND_CAPTIONS = ("<View><Image name='img' value='$image'/>"
                        "<RectangleLabels name='box' toName='img'><Label value='Trouser'/><Label value='Sneaker'/>"
                        "<Label value='Bag'/></RectangleLabels>"
                        "<Choices name='count' toName='img'><Choice value='one'/><Choice value='several'/></Choices>"
                        "<TextArea name='caption' toName='img' perRegion='true'/></View>")
#: A RectangleLabels with one label only marks text lines: OCR draws with it.
TEXT_LINES = ("<View><Image name='img' value='$image'/>"
              "<RectangleLabels name='box' toName='img'><Label value='Text'/></RectangleLabels>"
              "<TextArea name='caption' toName='img' perRegion='true'/></View>")
DYNAMIC = "<View><Text name='text' value='$text'/><Choices name='c' toName='text' value='$options'/></View>"


def choices(*labels):
    return ("<View><Text name='text' value='$text'/><Choices name='kind' toName='text'>"
            + "".join(f"<Choice value='{c}'/>" for c in labels) + "</Choices></View>")


def make_app(tmp_path):
    return create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})


def _annotate(client, tasks, labels, config, from_name):
    for task, label in zip(tasks, labels):
        body = annotation_event(5000 + task["id"], task, label, project=project_payload(label_config=config),
                                from_name=from_name)
        assert client.post("/webhook", json=body).status_code == 200


def test_object_classes_are_learned_as_boxes_and_a_per_region_caption_is_said_unanswered(tmp_path, caplog):
    app = make_app(tmp_path)
    caplog.set_level(logging.INFO, logger="labelhub.backend.models.project")
    assert app.test_client().post("/setup", json={"project": KEY, "schema": OBJECTS_AND_CAPTIONS}).status_code == 200
    model = app.extensions["labelhub"].models.get(KEY, OBJECTS_AND_CAPTIONS)
    assert sorted((h.name, h.control.from_name) for h in model.heads) == [("boxes", "box"), ("choices", "count")]
    said = [r.getMessage() for r in caplog.records if "'caption'" in r.getMessage()]
    assert len(said) == 1 and "not answered" in said[0] and "<RectangleLabels name='box'> (3 labels)" in said[0]

    caplog.clear()
    model = app.extensions["labelhub"].models.get(KEY, TEXT_LINES)
    assert [(h.name, h.claims()) for h in model.heads] == [("ocr", ("caption", "box"))]
    said = [r.getMessage() for r in caplog.records if "'box'" in r.getMessage()]
    assert len(said) == 1 and "drawn by the ocr head of <TextArea name='caption'>" in said[0], said


def test_malformed_tasks_of_an_image_project_get_an_error_each_and_the_others_are_predicted(tmp_path):
    from tests.backend_fixtures import IMAGE_CONFIG

    ocr = "<View><Image name='image' value='$image'/><TextArea name='text' toName='image'/></View>"
    client = make_app(tmp_path).test_client()
    (good,), _ = image_tasks(1)
    # the Choices head answers nothing before a fit; OCR answers from the first task (its images are fetched)
    cases = [(config, tasks) for config in (IMAGE_CONFIG, ocr)
             for bad in ("x", None, {"id": 7, "data": "x"}, 5) for tasks in ([bad], [bad, good, bad])]
    for config, tasks in cases:
        answer = client.post("/predict", json={"tasks": tasks, "project": KEY, "label_config": config})
        assert answer.status_code == 200, (tasks[0], answer.get_data(as_text=True)[:300])
        results = answer.json["results"]
        assert len(results) == len(tasks)
        for task, pred in zip(tasks, results):
            assert pred.get("result", []) == [] and pred["model_version"].startswith("labelhub-0-")
            assert ("error" in pred) == (task is not good) == ("result" not in pred), pred  # Label Studio stores none
            if task is not good:
                assert "'data' object" in pred["error"], pred


def test_dynamic_choices_learn_the_annotated_choices_and_answer_from_each_tasks_options(tmp_path, caplog):
    app = make_app(tmp_path)
    client = app.test_client()
    assert client.post("/setup", json={"project": KEY, "schema": DYNAMIC}).status_code == 200
    tasks, labels = plot_review_tasks(40)
    for task in tasks:
        task["data"]["options"] = [{"value": "plot"}, {"value": "review"}, {"value": "unused"}]
    caplog.set_level(logging.INFO, logger="labelhub.backend.models.project")
    _annotate(client, tasks[:30], labels[:30], DYNAMIC, "c")
    app.extensions["labelhub"].trainer.run_once()
    kv = app.extensions["labelhub"].store.project(KEY).kv()
    assert kv["model_version"].startswith("labelhub-30-") and kv["heads"]["c"].get("file"), (
        kv, [r.getMessage() for r in caplog.records])
    held = tasks[30:]
    held[0]["data"]["options"] = [{"value": "review"}]  # only one of the learned choices offered
    held[1]["data"]["options"] = ["other"]  # none of them
    held[2]["data"]["options"] = [{"value": "x", "children": [{"value": "plot", "alias": "plot"}]}]
    results = client.post("/predict", json={"tasks": held, "project": KEY, "label_config": DYNAMIC}).json["results"]
    assert results[0]["result"][0]["value"] == {"choices": ["review"]}
    assert results[1]["result"] == []
    assert results[2]["result"][0]["value"] == {"choices": ["plot"]}
    right = sum(p["result"][0]["value"]["choices"] == [label] for p, label in zip(results[3:], labels[33:]))
    assert right >= 5, results[3:]


def test_a_renamed_choice_moves_the_version_is_never_predicted_and_the_log_says_why_it_is_left_out(tmp_path, caplog):
    before, after = choices("plot", "review"), choices("synopsis", "review")
    app = make_app(tmp_path)
    client = app.test_client()
    client.post("/setup", json={"project": KEY, "schema": before})
    tasks, labels = plot_review_tasks(30)
    _annotate(client, tasks[:24], labels[:24], before, "kind")
    app.extensions["labelhub"].trainer.run_once()
    trained = client.post("/setup", json={"project": KEY, "schema": before}).json["model_version"]
    assert trained.startswith("labelhub-24-")
    preds = client.post("/predict", json={"tasks": tasks[24:], "project": KEY, "label_config": before}).json["results"]
    assert {p["result"][0]["value"]["choices"][0] for p in preds} == {"plot", "review"}

    # the config renames "plot": the version moves at once, the same in another worker and after a restart
    renamed = client.post("/setup", json={"project": KEY, "schema": after}).json["model_version"]
    assert renamed.startswith("labelhub-24-") and renamed != trained
    assert make_app(tmp_path).test_client().post("/setup", json={"project": KEY, "schema": after}
                                                 ).json["model_version"] == renamed
    preds = client.post("/predict", json={"tasks": tasks[24:], "project": KEY, "label_config": after}).json["results"]
    assert all(p["model_version"] == renamed and p["result"] == [] for p in preds), preds  # no "plot", no guess
    assert client.post("/setup", json={"project": KEY, "schema": before}).json["model_version"] == trained

    # the next fit under the new config: the annotations of "plot" are left out, and the log says so
    caplog.set_level(logging.INFO, logger="labelhub.backend.models.project")
    _annotate(client, tasks[24:26], ["review", "review"], after, "kind")
    app.extensions["labelhub"].trainer.run_once()
    said = [r.getMessage() for r in caplog.records if "head of 'kind'" in r.getMessage()]
    assert said and "12 of 26 annotations hold only choices the label config lacks: 'plot'" in said[-1], said
    assert "a fit needs two different choices" in said[-1]
    kv = app.extensions["labelhub"].store.project(KEY).kv()
    assert renamed in kv["versions"] and kv["model_version"] != renamed  # the interim set is ours to retire
    preds = client.post("/predict", json={"tasks": tasks[26:], "project": KEY, "label_config": after}).json["results"]
    assert all(r["value"]["choices"][0] in ("synopsis", "review") for p in preds for r in p["result"])
