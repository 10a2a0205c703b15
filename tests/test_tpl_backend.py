"""What the backend answers for Label Studio's own templates where an audit of every template found it unclear or
wrong: a control over several objects (the mammogram template), refusals that named a supported pair (visual
genome's dynamic RectangleLabels, per-region controls), text data that is no string, and the trainer's repeated
warning for a project it cannot train. The backend in-process (``create_app`` and Flask's test client), as in
``tests/test_backend_protocol.py``; the label configs are Label Studio 1.23.2's templates, trimmed to their tags."""
from __future__ import annotations

import logging

import pytest

from labelhub.backend.app import create_app
from labelhub.backend.log_once import forget
from tests.backend_fixtures import IMAGE_CONFIG, PLOT_REVIEW_CONFIG, annotation_event, image_tasks, \
    plot_review_tasks, project_key, project_payload

KEY = project_key()


@pytest.fixture
def app(tmp_path):
    forget()  # every test sees its once-per-worker lines
    return create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})


@pytest.fixture
def client(app):
    return app.test_client()


def _backend_lines(caplog, level=logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("labelhub") and r.levelno >= level]


# 3. text data that is no string -----------------------------------------------------------------------------
def test_text_that_is_no_string_gets_an_error_of_its_own_like_a_missing_text(app, client):
    tasks, labels = plot_review_tasks(24)
    project = project_payload(label_config=PLOT_REVIEW_CONFIG)
    for i, (task, label) in enumerate(zip(tasks, labels)):
        answer = client.post("/webhook", json=annotation_event(100 + i, task, label, project=project))
        assert answer.status_code == 200, answer.json
    # a task whose text is no string is left out of the fit, not learned as "5"
    bad_annotated = {"id": 500, "data": {"text": 12345}}
    assert client.post("/webhook", json=annotation_event(99, bad_annotated, "plot", project=project_payload(
        label_config=PLOT_REVIEW_CONFIG))).status_code == 200
    app.extensions["labelhub"].trainer.run_once()
    heads = app.extensions["labelhub"].store.project(KEY).kv()["heads"]
    assert heads["label"]["examples"] == 24
    good = tasks[0]
    odd = [{"id": 901, "data": {"text": 5}}, {"id": 902, "data": {"text": {"a": 1}}},
           {"id": 903, "data": {"text": [1, 2]}}, {"id": 904, "data": {"text": True}},
           {"id": 905, "data": {"text": ""}}, {"id": 906, "data": {"text": None}}]
    answer = client.post("/predict", json={"tasks": [good, *odd], "project": KEY, "label_config": PLOT_REVIEW_CONFIG})
    assert answer.status_code == 200, answer.json
    results = answer.json["results"]
    assert results[0]["result"] and results[0]["result"][0]["value"]["choices"]
    errors = [r.get("error") for r in results[1:]]
    assert all(not r.get("result") for r in results[1:]), results
    assert errors[:4] == [
        "data.text is a number, not text (the label config's <Text name='text' value=\"$text\"> reads a string)",
        "data.text is an object, not text (the label config's <Text name='text' value=\"$text\"> reads a string)",
        "data.text is a list, not text (the label config's <Text name='text' value=\"$text\"> reads a string)",
        "data.text is true (a boolean), not text (the label config's <Text name='text' value=\"$text\"> reads a "
        "string)"]
    assert errors[4:] == ["the task's data has no 'text' (the label config's $text)"] * 2



def test_an_image_value_that_is_no_string_is_named_like_a_text(app, client):
    tasks, labels = image_tasks(12)
    for i, (task, label) in enumerate(zip(tasks, labels)):
        assert client.post("/webhook", json=annotation_event(100 + i, task, label)).status_code == 200
    app.extensions["labelhub"].trainer.run_once()  # a fitted model loads each task's image
    odd = [{"id": 911, "data": {"image": 5}}, {"id": 912, "data": {"image": {"url": "x.png"}}},
           {"id": 913, "data": {"image": ["a.png", "b.png"]}}]
    answer = client.post("/predict", json={"tasks": odd, "project": KEY, "label_config": IMAGE_CONFIG})
    assert answer.status_code == 200, answer.json
    assert [r.get("error") for r in answer.json["results"]] == [
        f"data.image is {kind}, not a URL (the label config's <Image name='image' value=\"$image\"> reads a string)"
        for kind in ("a number", "an object", "a list")]

# 4. the trainer's warning for a project it cannot train -----------------------------------------------------
SPEECH_CONFIG = ('<View><Audio name="audio" value="$audio"/><TextArea name="transcription" toName="audio" '
                 'rows="4" editable="true" maxSubmissions="1"/></View>')  # automatic-speech-recognition


def test_not_trained_is_one_warning_per_cause_then_debug(app, client, caplog):
    project = project_payload(label_config=SPEECH_CONFIG)
    task = {"id": 1, "data": {"audio": "https://example.com/a.wav"}}
    trainer = app.extensions["labelhub"].trainer
    with caplog.at_level(logging.DEBUG, logger="labelhub.backend.events"):
        for ann_id in (1, 2, 3):  # an event batch after each annotation, as an annotator saves
            body = annotation_event(ann_id, task, "hello", project=project, from_name="transcription")
            assert client.post("/webhook", json=body).status_code == 200
            trainer.run_once()
    said = [r for r in caplog.records if r.name == "labelhub.backend.events" and "not trained" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "<TextArea name='transcription'> over <Audio>" in said[0].getMessage()
    assert said[0].getMessage().endswith("(said once per worker and cause; again at DEBUG)")
    last_error = app.extensions["labelhub"].store.project(KEY).kv()["last_error"]
    assert last_error.startswith("LabelConfigError: no control tag of this label config can be answered")


# 2. refusals that named a supported pair ---------------------------------------------------------------------
VISUAL_GENOME_CONFIG = (  # Label Studio's visual-genome template: labels from each task's data, no <Label>
    '<View><RectangleLabels name="regions" toName="image" value="$regions"/>'
    '<RectangleLabels name="attributes" toName="image" value="$attributes"/>'
    '<Image name="image" value="$image"/></View>')


def test_a_dynamic_rectanglelabels_is_refused_for_its_dynamic_labels(client, caplog):
    with caplog.at_level(logging.INFO, logger="labelhub.backend"):
        answer = client.post("/setup", json={"project": KEY, "schema": VISUAL_GENOME_CONFIG})
    assert answer.status_code == 422 and answer.json["code"] == "unsupported_label_config"
    error = answer.json["error"]
    assert error.startswith(
        "no control tag of this label config can be answered: it has <RectangleLabels name='regions'> over <Image> "
        '(dynamic labels from the task data, value="$regions": the boxes head learns only <Label>s written in the '
        "config); <RectangleLabels name='attributes'> over <Image> (dynamic labels from the task data, "
        'value="$attributes": ')
    assert "RectangleLabels and TextArea over Image (RectangleLabels with <Label>s in the config)" in error
    assert any("<RectangleLabels name='regions'> over <Image> is not answered: dynamic labels from the task data, "
               'value="$regions"' in line for line in _backend_lines(caplog))
    # without value="$..." and without <Label>: no label to learn
    bare = '<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image"/></View>'
    error = client.post("/setup", json={"project": KEY, "schema": bare}).json["error"]
    assert "<RectangleLabels name='box'> over <Image> (it has no <Label>: no label to learn)" in error


@pytest.mark.parametrize("config, said", [
    ('<View><Audio name="audio" value="$audio"/><Labels name="labels" toName="audio"><Label value="Speech"/>'
     '</Labels><TextArea name="transcription" toName="audio" perRegion="true"/></View>',
     """<TextArea name='transcription'> over <Audio> (perRegion="true": a <TextArea> per region, not answered)"""),
    ('<View><Audio name="audio" value="$audio"/><Labels name="labels" toName="audio"><Label value="Speech"/>'
     '</Labels><Rating name="rating" toName="audio" perRegion="true"/></View>',
     """<Rating name='rating'> over <Audio> (perRegion="true": a <Rating> per region, not answered)"""),
], ids=["textarea", "rating"])
def test_a_per_region_control_is_named_with_its_own_tag(client, config, said):
    answer = client.post("/setup", json={"project": KEY, "schema": config})
    assert answer.status_code == 422
    assert said in answer.json["error"] and "a choice per region" not in answer.json["error"]
    assert "<Labels name='labels'> over <Audio>;" in answer.json["error"]


# 1. a control over several objects, objects no control names --------------------------------------------------
MAMMOGRAM_CONFIG = (  # breast-cancer-mammogram-classification, trimmed: every control lists the four views
    '<View><Text name="birads_legend" value="BI-RADS: 0 = Incomplete, 1 = Negative"/>'
    '<Image name="left_cc" value="$img1"/><Image name="right_cc" value="$img3"/>'
    '<Image name="left_mlo" value="$img2"/><Image name="right_mlo" value="$img4"/>'
    '<Choices name="birads_left" toName="left_cc,right_cc,left_mlo,right_mlo" choice="single">'
    '<Choice value="0"/><Choice value="1"/><Choice value="2"/></Choices>'
    '<Choices name="birads_right" toName="left_cc,right_cc,left_mlo,right_mlo" choice="single">'
    '<Choice value="0"/><Choice value="1"/><Choice value="2"/></Choices>'
    '<Choices name="density" toName="right_cc,left_cc"><Choice value="A"/><Choice value="B"/></Choices></View>')
SEARCH_CONFIG = (  # content-based-image-search: the choices name image1..3, the control points at the query
    '<View><Image name="query" value="$query_image"/><Image name="image1" value="$image1"/>'
    '<Image name="image2" value="$image2"/><Image name="image3" value="$image3"/>'
    '<Choices name="similar" toName="query" choice="multiple"><Choice value="One"/><Choice value="Two"/>'
    '<Choice value="Three"/></Choices></View>')


def test_the_objects_a_control_over_several_is_not_read_from_are_said_once(client, caplog):
    with caplog.at_level(logging.INFO, logger="labelhub.backend"):
        for _ in range(3):  # Label Studio calls /setup at every Connect and settings page; a worker says it once
            assert client.post("/setup", json={"project": KEY, "schema": MAMMOGRAM_CONFIG}).status_code == 200
    said = [r for r in caplog.records if "several objects in toName" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING, logging.WARNING]
    assert [r.getMessage() for r in said] == [
        f"project {KEY}: <Choices name='birads_left'>, <Choices name='birads_right'> name several objects in toName; "
        "a head reads one object per control, the first with a $value: these 2 are learned and predicted from "
        "<Image name='left_cc'> ($img1) alone, <Image name='right_cc'> ($img3), <Image name='left_mlo'> ($img2), "
        "<Image name='right_mlo'> ($img4) are ignored",
        f"project {KEY}: <Choices name='density'> names several objects in toName; a head reads one object per "
        "control, the first with a $value: it is learned and predicted from <Image name='right_cc'> ($img3) alone, "
        "<Image name='left_cc'> ($img1) is ignored"]
    assert not any("no control tag names" in line for line in _backend_lines(caplog))  # the legend is no $value


def test_objects_no_control_names_are_said_once(client, caplog):
    with caplog.at_level(logging.INFO, logger="labelhub.backend"):
        for _ in range(2):
            assert client.post("/setup", json={"project": KEY, "schema": SEARCH_CONFIG}).status_code == 200
    said = [line for line in _backend_lines(caplog) if "no control tag names" in line]
    assert said == [
        f"project {KEY}: no control tag names <Image name='image1'> ($image1), <Image name='image2'> ($image2), "
        "<Image name='image3'> ($image3) in toName: no head reads them; the answered controls are learned and "
        "predicted from <Image name='query'> ($query_image) alone"]
    assert not any("several objects" in line for line in _backend_lines(caplog))
