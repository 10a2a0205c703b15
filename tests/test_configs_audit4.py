"""Label configs that ``/setup`` accepted and whose heads could never learn (an audit of label configs): Label Studio
showed the model Connected and every ``/predict`` answered ``"result": []`` forever, however many annotations came,
with a "not enough to learn yet" log line. Each is now refused at ``/setup`` with the reason (422), or, beside a
control the backend answers, left out and named once in the log, as other unanswered controls are:

1. the controls of a ``<Repeater on="$images" indexFlag="{{idx}}">`` (https://labelstud.io/tags/repeater): the editor
   names them ``c_0``, ``c_1``, ..., the parser ``c_{{idx}}`` (:attr:`labelhub.label_config.ControlSpec.repeated`);
2. a ``<Labels value="$labels">`` over ``<Text>`` with no ``<Label>`` (the spans head learns the config's labels);
3. a ``<Choices>`` with one ``<Choice>`` (a flag to tick, single or multiple): a fit needs two different choices.

Through the backend's own app and a Flask test client, as ``tests/test_heads_labels.py`` drives it.
"""
from __future__ import annotations

import logging

import pytest

from labelhub.backend.app import create_app
from labelhub.label_config import control_specs
from tests.backend_fixtures import project_key

KEY = project_key()

#: Label Studio's docs' multi-image pattern (https://labelstud.io/tags/repeater).
REPEATER = ('<View><Repeater on="$images" indexFlag="{{idx}}">'
            '<Image name="image_{{idx}}" value="$images[{{idx}}].url"/>'
            '<Choices name="c_{{idx}}" toName="image_{{idx}}"><Choice value="A"/><Choice value="B"/></Choices>'
            '</Repeater></View>')
#: The same Repeater beside a whole-text Choices the backend answers.
REPEATER_AND_TEXT = ('<View><Text name="text" value="$text"/><Choices name="kind" toName="text"><Choice value="plot"/>'
                     '<Choice value="review"/></Choices><Repeater on="$images" indexFlag="{{idx}}">'
                     '<Image name="image_{{idx}}" value="$images[{{idx}}].url"/><Choices name="c_{{idx}}" '
                     'toName="image_{{idx}}"><Choice value="A"/><Choice value="B"/></Choices></Repeater></View>')
DYNAMIC_LABELS = '<View><Text name="t" value="$text"/><Labels name="l" toName="t" value="$labels"/></View>'


def make_app(tmp_path):
    return create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})


def setup(client, config):
    return client.post("/setup", json={"project": KEY, "schema": config})


def _not_answered(caplog, name):
    return [r.getMessage() for r in caplog.records if f"name={name!r}>" in r.getMessage()
            and "is not answered" in r.getMessage()]


# 1. Repeater ---------------------------------------------------------------------------------------------------
def test_a_control_inside_a_repeater_is_marked_with_its_index_flag_and_others_are_not():
    repeated, = control_specs(REPEATER)
    assert repeated.from_name == "c_{{idx}}" and repeated.repeated == "{{idx}}"
    assert [(c.from_name, c.repeated) for c in control_specs(REPEATER_AND_TEXT)] == [
        ("kind", ""), ("c_{{idx}}", "{{idx}}")]


def test_a_repeater_config_is_refused_at_setup_with_a_reason_naming_the_repeater(tmp_path):
    answer = setup(make_app(tmp_path).test_client(), REPEATER)
    assert answer.status_code == 422 and answer.json["code"] == "unsupported_label_config"
    assert answer.json["error"].startswith(
        "no control tag of this label config can be answered: it has <Choices name='c_{{idx}}'> over <Image> "
        "(inside a <Repeater> (indexFlag {{idx}}): Label Studio's editor makes a copy per item of the task's list "
        "('c_0', 'c_1', ...), which no head answers)")


def test_a_repeaters_controls_are_left_out_and_said_once_when_another_control_is_answered(tmp_path, caplog):
    app = make_app(tmp_path)
    caplog.set_level(logging.INFO, logger="labelhub.backend.models.project")
    key = project_key(41)  # the log says it once per worker and project
    assert app.test_client().post("/setup", json={"project": key, "schema": REPEATER_AND_TEXT}).status_code == 200
    model = app.extensions["labelhub"].models.get(key, REPEATER_AND_TEXT)
    assert [(h.name, h.control.from_name) for h in model.heads] == [("choices", "kind")]
    said = _not_answered(caplog, "c_{{idx}}")
    assert len(said) == 1 and "over <Image> is not answered: inside a <Repeater> (indexFlag {{idx}})" in said[0]


# 2. dynamic Labels over Text -------------------------------------------------------------------------------------
def test_labels_over_text_with_dynamic_labels_only_are_refused_as_the_boxes_head_refuses_them(tmp_path):
    client = make_app(tmp_path).test_client()
    answer = setup(client, DYNAMIC_LABELS)
    assert answer.status_code == 422 and answer.json["code"] == "unsupported_label_config"
    assert ("it has <Labels name='l'> over <Text> (dynamic labels from the task data, value=\"$labels\": the spans "
            "head learns only <Label>s written in the config)") in answer.json["error"]
    bare = '<View><Text name="t" value="$text"/><Labels name="l" toName="t"/></View>'
    answer = setup(client, bare)
    assert answer.status_code == 422
    assert "<Labels name='l'> over <Text> (it has no <Label>: no label to learn)" in answer.json["error"]


def test_dynamic_labels_with_labels_of_their_own_are_answered_by_the_spans_head(tmp_path):
    app = make_app(tmp_path)
    config = ('<View><Text name="t" value="$text"/><Labels name="l" toName="t" value="$labels">'
              '<Label value="PER"/></Labels></View>')
    assert setup(app.test_client(), config).status_code == 200
    assert [h.name for h in app.extensions["labelhub"].models.get(KEY, config).heads] == ["spans"]


# 3. a Choices with one Choice ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["", ' choice="multiple"'], ids=["single", "multiple"])
def test_a_choices_with_one_choice_is_refused_at_setup_single_or_multiple(tmp_path, kind):
    config = (f'<View><Text name="text" value="$text"/><Choices name="flag" toName="text"{kind}>'
              '<Choice value="Plot synopsis"/></Choices></View>')
    answer = setup(make_app(tmp_path).test_client(), config)
    assert answer.status_code == 422 and answer.json["code"] == "unsupported_label_config"
    assert "<Choices name='flag'> over <Text> (needs at least two <Choice> values, it has 1: " in answer.json["error"]


def test_a_one_choice_flag_beside_an_answered_control_is_left_out_and_dynamic_choices_are_kept(tmp_path, caplog):
    app = make_app(tmp_path)
    caplog.set_level(logging.INFO, logger="labelhub.backend.models.project")
    config = ('<View><Text name="text" value="$text"/><Choices name="flag" toName="text"><Choice value="spoiler"/>'
              '</Choices><Choices name="kind" toName="text" value="$options"><Choice value="Other"/></Choices></View>')
    key = project_key(42)  # the log says it once per worker and project
    assert app.test_client().post("/setup", json={"project": key, "schema": config}).status_code == 200
    assert [h.control.from_name for h in app.extensions["labelhub"].models.get(key, config).heads] == ["kind"]
    said = _not_answered(caplog, "flag")
    assert len(said) == 1 and "needs at least two <Choice> values, it has 1" in said[0]
