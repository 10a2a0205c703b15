"""A Hugging Face model by id or path as a head: task inference, label mapping, thresholds, Label Studio's formats.

Every model is a tiny random-weight model built offline (:mod:`tests.tiny_models`); random weights give random
outputs, so the checks are on formats and label mapping, with classifiers biased so one label wins where a
test needs a known answer.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelhub.backend.models import pipelines
from labelhub.backend.models.heads import TaskInput
from labelhub.backend.models.pipelines import (LabelMapper, PipelineHead, PipelineParamsError, PipelineSpec,
                                               infer_task, load_pipeline)
from labelhub.label_config import control_specs
from tests import tiny_models

IMAGE = '<Image name="img" value="$image"/>'
TEXT = '<Text name="txt" value="$text"/>'
SENTENCE = "Alice went to Paris with Bob and Acme Corp."


def control(xml: str):
    """The first control of ``<View>{xml}</View>``."""
    return control_specs(f"<View>{xml}</View>")[0]


def choices(*labels: str, to: str = "img", multiple: bool = False, name: str = "c") -> str:
    kind = ' choice="multiple"' if multiple else ""
    return f'<Choices name="{name}" toName="{to}"{kind}>' + "".join(f'<Choice value="{v}"/>' for v in labels) + \
        "</Choices>"


def rectangles(*labels: str, name: str = "box") -> str:
    return f'<RectangleLabels name="{name}" toName="img">' + "".join(f'<Label value="{v}"/>' for v in labels) + \
        "</RectangleLabels>"


def spans(*labels: str) -> str:
    return '<Labels name="ner" toName="txt">' + "".join(f'<Label value="{v}"/>' for v in labels) + "</Labels>"


def images(n: int = 3, size: tuple[int, int] = (60, 40)) -> list[TaskInput]:
    rng = np.random.default_rng(0)
    return [TaskInput({"id": i, "data": {}}, f"img{i}",
                      Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)))
            for i in range(n)]


def texts(*values: str) -> list[TaskInput]:
    return [TaskInput({"id": i, "data": {"text": v}}, v, v) for i, v in enumerate(values)]


def head(xml: str, **params) -> PipelineHead:
    spec = control(xml)
    assert PipelineHead.supports(spec, params), params
    return PipelineHead(spec, None, params, [spec])


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Paths of the tiny models, built once per session."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "vit": str(tiny_models.build_image_classifier(root / "vit", winner="DOG")),
        "vit-multi": str(tiny_models.build_image_classifier(root / "vit-multi", winner="DOG", multi_label=True)),
        "yolos": str(tiny_models.build_object_detector(root / "yolos")),
        "yolos-dog": str(tiny_models.build_object_detector(root / "yolos-dog", winner="DOG")),
        "owlvit": str(tiny_models.build_owlvit(root / "owlvit")),
        "clip": str(tiny_models.build_clip(root / "clip")),
        "ner": str(tiny_models.build_token_classifier(root / "ner", winner="B-PER")),
        "nli": str(tiny_models.build_sequence_classifier(root / "nli")),
        "sentiment": str(tiny_models.build_sequence_classifier(root / "sentiment", labels=("NEGATIVE", "POSITIVE"),
                                                               winner="POSITIVE")),
    }


@pytest.fixture(autouse=True)
def _fresh_caches():
    pipelines.clear_caches()
    yield
    pipelines.clear_caches()


def assert_rectangle(result: dict, labels, size=(60, 40)):
    assert set(result) == {"id", "from_name", "to_name", "type", "value", "score", "original_width",
                           "original_height", "image_rotation"}
    assert (result["from_name"], result["to_name"], result["type"]) == ("box", "img", "rectanglelabels")
    assert (result["original_width"], result["original_height"], result["image_rotation"]) == (*size, 0)
    value = result["value"]
    assert set(value) == {"x", "y", "width", "height", "rotation", "rectanglelabels"} and value["rotation"] == 0
    assert 0 <= value["x"] <= 100 and 0 <= value["y"] <= 100 and value["width"] > 0 and value["height"] > 0
    assert value["x"] + value["width"] <= 100 + 1e-9 and value["y"] + value["height"] <= 100 + 1e-9
    assert len(value["rectanglelabels"]) == 1 and value["rectanglelabels"][0] in labels
    assert 0 <= result["score"] <= 1 and isinstance(result["id"], str) and result["id"]


# --- choosing the head -------------------------------------------------------------------------------
@pytest.mark.parametrize("architectures, id2label, task", [
    (["ViTForImageClassification"], {}, "image-classification"),
    (["DeiTForImageClassificationWithTeacher"], {}, "image-classification"),
    (["DetrForObjectDetection"], {}, "object-detection"),
    (["OwlViTForObjectDetection"], {}, "zero-shot-object-detection"),
    (["Owlv2ForObjectDetection"], {}, "zero-shot-object-detection"),
    (["GroundingDinoForObjectDetection"], {}, "zero-shot-object-detection"),
    (["CLIPModel"], {}, "zero-shot-image-classification"),
    (["SiglipModel"], {}, "zero-shot-image-classification"),
    (["BertForTokenClassification"], {}, "token-classification"),
    (["BartForSequenceClassification"], {"0": "contradiction", "1": "neutral", "2": "entailment"},
     "zero-shot-classification"),
    (["DistilBertForSequenceClassification"], {"0": "NEGATIVE", "1": "POSITIVE"}, "text-classification"),
    (["GPT2LMHeadModel"], {}, None),
    ([], {}, None),
])
def test_the_task_is_inferred_from_config_architectures(architectures, id2label, task):
    assert infer_task({"architectures": architectures, "id2label": id2label}) == task


def test_each_task_answers_only_its_control_and_object_tags(tiny):
    controls = {
        "image-choices": control(IMAGE + choices("cat", "dog")),
        "image-boxes": control(IMAGE + rectangles("cat", "dog")),
        "text-choices": control(TEXT + choices("sports", "politics", to="txt")),
        "text-spans": control(TEXT + spans("PER")),
        "hypertext-choices": control('<HyperText name="txt" value="$html"/>' + choices("a", "b", to="txt")),
        "per-region-choices": control(IMAGE + '<Choices name="c" toName="img" perRegion="true">'
                                      '<Choice value="cat"/></Choices>'),
    }
    answers = {
        "vit": {"image-choices"}, "yolos": {"image-boxes"}, "owlvit": {"image-boxes"}, "clip": {"image-choices"},
        "ner": {"text-spans"}, "nli": {"text-choices"}, "sentiment": {"text-choices"},
    }
    for model, expected in answers.items():
        found = {name for name, spec in controls.items() if PipelineHead.supports(spec, {"model": tiny[model]})}
        assert found == expected, model
    assert not PipelineHead.supports(controls["image-choices"], {})
    # an explicit task overrides config.json (and is checked against the control the same way)
    assert PipelineHead.supports(controls["text-choices"], {"model": tiny["sentiment"], "task": "text-classification"})
    with pytest.raises(PipelineParamsError, match="'task' 'image-classification' does not fit <RectangleLabels "
                       "name='box'> over <Image>: the tasks that fit it are object-detection, "
                       "zero-shot-object-detection"):
        PipelineHead.supports(controls["image-boxes"], {"model": tiny["vit"], "task": "image-classification"})


def test_an_explicit_task_that_does_not_fit_the_control_is_refused_at_setup_and_an_inferred_one_is_logged(
        tiny, tmp_path, caplog):
    """Audit: ``"task": "token-classification"`` on a Choices control was accepted (200), moved the version and
    left every prediction empty, with nothing logged."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import project_key

    caplog.set_level(logging.WARNING, logger="labelhub.backend.models.pipelines")
    client = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False}).test_client()
    config = f"<View>{TEXT}{choices('Good', 'Bad', to='txt', name='sentiment')}</View>"
    key = project_key()
    assert client.post("/setup", json={"project": key, "schema": config}).status_code == 200
    before = client.post("/setup", json={"project": key, "schema": config}).json["model_version"]
    bad = client.post("/setup", json={"project": key, "schema": config, "extra_params": {
        "model": tiny["sentiment"], "task": "token-classification"}})
    assert bad.status_code == 422, bad.json
    assert ("'task' 'token-classification' does not fit <Choices name='sentiment'> over <Text>: the tasks that fit "
            "it are text-classification, zero-shot-classification") in bad.json["error"]
    assert client.post("/setup", json={"project": key, "schema": config}).json["model_version"] == before  # kept
    # inferred from config.json (a NER model on the Choices): not refused, the log names the control
    spec = control(TEXT + choices("Good", "Bad", to="txt", name="sentiment"))
    assert not PipelineHead.supports(spec, {"model": tiny["ner"]})
    warned = [r.getMessage() for r in caplog.records
              if r.name == pipelines.log.name and "does not fit" in r.getMessage()]
    assert len(warned) == 1 and "token-classification" in warned[0] and "name='sentiment'" in warned[0]
    # a control no task fits is left to the other heads quietly, even with a task given
    per_region = control(IMAGE + '<Choices name="c" toName="img" perRegion="true"><Choice value="cat"/></Choices>')
    assert not PipelineHead.supports(per_region, {"model": tiny["vit"], "task": "image-classification"})


@pytest.mark.parametrize("params, key", [
    ({"model": 3}, "'model'"),
    ({"model": "/no/such/dir"}, "no directory"),
    ({"model": "not a/valid id"}, "'model'"),
    ({"model": "google/owlv2-base-patch16", "task": "object-detecton"}, "'task'"),
    ({"model": "google/owlv2-base-patch16", "threshold": 2}, "'threshold'"),
    ({"model": "google/owlv2-base-patch16", "threshold": True}, "'threshold'"),
    ({"model": "google/owlv2-base-patch16", "labels": ["cat"]}, "'labels'"),
    ({"model": "google/owlv2-base-patch16", "labels": {"cat": 1}}, "'labels'"),
    ({"model": "google/owlv2-base-patch16", "revision": ""}, "'revision'"),
    ({"model": "google/owlv2-base-patch16", "nms": -0.1}, "'nms'"),
    ({"model": "google/owlv2-base-patch16", "hypothesis_template": "no placeholder"}, "'hypothesis_template'"),
])
def test_malformed_model_params_are_refused_with_the_key_at_fault(params, key):
    with pytest.raises(PipelineParamsError, match=key) as info:
        PipelineHead.supports(control(IMAGE + rectangles("cat")), params)
    assert info.value.status == 422 and info.value.context == {"field": "extra_params"}


def test_a_hub_model_whose_config_cannot_be_read_is_not_used_and_the_log_says_to_set_task(caplog):
    caplog.set_level(logging.WARNING, logger="labelhub.backend.models.pipelines")
    spec = control(IMAGE + rectangles("cat"))
    assert not PipelineHead.supports(spec, {"model": "nobody/no-such-model"})
    assert not PipelineHead.supports(spec, {"model": "nobody/no-such-model"})  # remembered: no second request
    messages = [r.getMessage() for r in caplog.records if "no-such-model" in r.getMessage()]
    assert len(messages) == 1 and 'set "task"' in messages[0]
    # with the task given, nothing is read at setup (the model is loaded when it predicts)
    assert PipelineHead.supports(spec, {"model": "nobody/no-such-model", "task": "zero-shot-object-detection"})


# --- label mapping --------------------------------------------------------------------------------
def test_label_mapper_tries_the_explicit_map_then_exact_then_case_insensitive(caplog):
    caplog.set_level(logging.WARNING, logger="labelhub.backend.models.pipelines")
    mapper = LabelMapper(["Cat", "dog", "DOG"], [("tabby", "cat"), ("car", None), ("bus", "Vehicle")], "m")
    assert [mapper(x) for x in ("tabby", "car", "Cat", "cat", "dog", "DOG", "Dog", "bird", "bird")] == \
        ["Cat", None, "Cat", "Cat", "dog", "DOG", "dog", None, None]
    mapper.report()
    mapper("bird")
    mapper.report()
    logged = [r.getMessage() for r in caplog.records]
    assert sum("'bird'" in m for m in logged) == 1  # an unmapped label is named once
    assert sum("'Vehicle'" in m for m in logged) == 1  # a map target the control lacks is named and ignored
    assert mapper.queries() == ["tabby", "dog", "DOG"]


def test_image_classification_maps_labels_case_insensitively_and_drops_unmapped_ones(tiny, caplog):
    caplog.set_level(logging.WARNING, logger="labelhub.backend.models.pipelines")
    h = head(IMAGE + choices("Cat", "dog"), model=tiny["vit"])
    for _ in range(2):
        out = h.predict(images(3), None)
        assert len(out) == 3
        for regions in out:
            assert regions == [{"from_name": "c", "to_name": "img", "type": "choices",
                                "value": {"choices": ["dog"]}, "score": pytest.approx(1.0, abs=1e-3)}]
    dropped = [r.getMessage() for r in caplog.records if "'bird'" in r.getMessage()]
    assert len(dropped) == 1 and "dropped" in dropped[0]


def test_the_explicit_label_map_wins_over_the_exact_match(tiny):
    out = head(IMAGE + choices("Cat", "dog"), model=tiny["vit"], labels={"DOG": "Cat"}).predict(images(1), None)
    assert out[0][0]["value"] == {"choices": ["Cat"]}
    # several model labels on one choice add up (softmax)
    out = head(IMAGE + choices("Cat", "dog"), model=tiny["vit"], labels={"bird": "Cat"}).predict(images(1), None)
    assert out[0][0]["value"] == {"choices": ["dog"]}


def test_single_choice_below_the_threshold_gives_no_result(tiny):
    h = head(IMAGE + choices("Cat", "dog"), model=tiny["vit"], labels={"DOG": None}, threshold=0.5)
    assert h.predict(images(2), None) == [[], []]
    h = head(IMAGE + choices("Cat", "dog"), model=tiny["vit"], labels={"DOG": None})  # default 0: the best mapped
    assert [r[0]["value"]["choices"] for r in h.predict(images(1), None)] == [["Cat"]]


def test_multiple_choice_gives_every_label_at_or_above_the_threshold_in_config_order(tiny):
    xml = IMAGE + choices("dog", "Cat", "bird", multiple=True)
    out = head(xml, model=tiny["vit-multi"]).predict(images(2), None)  # default threshold 0.5 for multiple
    assert [r[0]["value"]["choices"] for r in out] == [["dog"], ["dog"]]
    out = head(xml, model=tiny["vit-multi"], threshold=0).predict(images(1), None)
    assert out[0][0]["value"]["choices"] == ["dog", "Cat", "bird"]
    assert out[0][0]["score"] == pytest.approx(np.mean([1, 0, 0]), abs=1e-2)


def test_a_sequence_classifier_without_entailment_answers_text_choices(tiny):
    out = head(TEXT + choices("Negative", "Positive", to="txt"), model=tiny["sentiment"]).predict(
        texts(SENTENCE, "x" * 2000), None)
    assert [r[0]["value"] for r in out] == [{"choices": ["Positive"]}] * 2
    assert out[0][0]["to_name"] == "txt"


# --- zero-shot --------------------------------------------------------------------------------------
def test_zero_shot_classification_uses_the_config_choices_as_candidate_labels(tiny):
    labels = ("sports", "politics", "cooking")
    out = head(TEXT + choices(*labels, to="txt"), model=tiny["nli"]).predict(texts(SENTENCE, "sports"), None)
    assert all(len(r) == 1 and r[0]["value"]["choices"][0] in labels and 0 <= r[0]["score"] <= 1 for r in out)
    out = head(TEXT + choices(*labels, to="txt", multiple=True), model=tiny["nli"], threshold=0,
               hypothesis_template="The topic is {}.").predict(texts(SENTENCE), None)
    assert out[0][0]["value"]["choices"] == list(labels)


def test_zero_shot_image_classification_uses_the_config_choices_as_queries(tiny):
    h = head(IMAGE + choices("cat", "dog"), model=tiny["clip"], labels={"a photo of a kitten": "cat"})
    queries = []
    pipe = load_pipeline("zero-shot-image-classification", tiny["clip"])
    original = pipe.preprocess

    def spy(inputs, candidate_labels=None, **kwargs):
        queries.append(list(candidate_labels))
        return original(inputs, candidate_labels=candidate_labels, **kwargs)

    pipe.preprocess = spy
    out = h.predict(images(2), None)
    assert queries and all(q == ["a photo of a kitten", "dog"] for q in queries)
    assert all(r[0]["value"]["choices"][0] in ("cat", "dog") for r in out)


def test_owl_detects_every_config_label_in_one_forward_pass_per_batch(tiny):
    h = head(IMAGE + rectangles("cat", "dog"), model=tiny["owlvit"], threshold=0, nms=False)
    pipe = load_pipeline("zero-shot-object-detection", tiny["owlvit"])
    calls = []
    hook = pipe.model.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    try:
        out = h.predict(images(2), None)
    finally:
        hook.remove()
    assert len(calls) == 1  # two images, two queries: one forward
    assert all(regions for regions in out)
    for regions in out:
        for r in regions:
            assert_rectangle(r, {"cat", "dog"})
    assert len({r["id"] for regions in out for r in regions}) == sum(len(r) for r in out)


def test_zero_shot_detection_threshold_and_label_map_keys_as_queries(tiny):
    everything = head(IMAGE + rectangles("Cat", "dog"), model=tiny["owlvit"], threshold=0, nms=False,
                      labels={"a photo of a cat": "Cat"}).predict(images(1), None)[0]
    assert len(everything) > 2
    assert {r["value"]["rectanglelabels"][0] for r in everything} <= {"Cat", "dog"} and everything
    cut = sorted(r["score"] for r in everything)[len(everything) // 2]
    kept = head(IMAGE + rectangles("Cat", "dog"), model=tiny["owlvit"], threshold=cut, nms=False,
                labels={"a photo of a cat": "Cat"}).predict(images(1), None)[0]
    assert kept and all(r["score"] >= cut for r in kept) and len(kept) < len(everything)


def test_other_zero_shot_detectors_go_through_the_pipeline(tiny, tmp_path):
    copy = shutil.copytree(tiny["owlvit"], tmp_path / "other-detector")
    h = head(IMAGE + rectangles("cat", "dog"), model=str(copy), threshold=0)
    pipe = load_pipeline("zero-shot-object-detection", str(copy.resolve()))
    pipe.model.config.model_type = "some-detector"  # not OWL: one pipeline call per query
    for regions in h.predict(images(2), None):
        for r in regions:
            assert_rectangle(r, {"cat", "dog"})


def test_nms_drops_the_lower_scored_overlapping_box_of_a_label(tmp_path):
    h = PipelineHead(control(IMAGE + rectangles("cat", "dog")), None,
                     {"model": str(tmp_path), "task": "zero-shot-object-detection"})
    detections = [("cat", 0.9, (0, 0, 30, 20)), ("cat", 0.8, (1, 1, 30, 20)), ("dog", 0.7, (1, 1, 30, 20)),
                  ("cat", 0.6, (40, 20, 60, 40))]
    boxes = h._boxes((60, 40), detections)
    assert [(r["value"]["rectanglelabels"][0], r["score"]) for r in boxes] == [("cat", 0.9), ("dog", 0.7),
                                                                               ("cat", 0.6)]
    h = PipelineHead(h.control, None, {"model": str(tmp_path), "task": "zero-shot-object-detection", "nms": False})
    assert len(h._boxes((60, 40), detections)) == 4


# --- object detection -------------------------------------------------------------------------------
def test_object_detection_regions_are_rectanglelabels_in_percent_with_the_image_size(tiny):
    out = head(IMAGE + rectangles("dog", "Cat"), model=tiny["yolos-dog"], threshold=0).predict(images(3), None)
    assert len(out) == 3
    for regions in out:
        assert len(regions) == 4  # YOLOS proposes 4 boxes per image here, all "DOG"
        for r in regions:
            assert_rectangle(r, {"dog"})


def test_object_detection_threshold_keeps_only_boxes_scored_at_or_above_it(tiny):
    everything = head(IMAGE + rectangles("cat", "DOG", "bird"), model=tiny["yolos"], threshold=0).predict(
        images(2), None)
    scores = sorted(r["score"] for regions in everything for r in regions)
    assert scores
    cut = scores[len(scores) // 2]
    kept = head(IMAGE + rectangles("cat", "DOG", "bird"), model=tiny["yolos"], threshold=cut).predict(images(2), None)
    assert all(r["score"] >= cut for regions in kept for r in regions)
    assert sum(map(len, kept)) < len(scores)
    # unmapped labels are dropped: a control with only "bird"
    only_bird = head(IMAGE + rectangles("bird"), model=tiny["yolos"], threshold=0).predict(images(2), None)
    assert {r["value"]["rectanglelabels"][0] for regions in only_bird for r in regions} <= {"bird"}


# --- token classification ---------------------------------------------------------------------------
def test_token_classification_offsets_are_exact_even_past_the_model_window(tiny):
    words = ["Alice", "went", "to", "Paris", "with", "Bob", "and", "Acme", "Corp"]
    long_text = " ".join(words * 12)  # > 64 tokens: read in overlapping windows
    out = head(TEXT + spans("per", "ORG"), model=tiny["ner"]).predict(texts(SENTENCE, long_text), None)
    for text, regions in zip((SENTENCE, long_text), out):
        found = [(r["value"]["start"], r["value"]["end"]) for r in regions]
        expected = [(m.start(), m.end()) for m in re.finditer(r"\w+|[^\w\s]", text)]
        assert found == expected
        for r in regions:
            assert (r["from_name"], r["to_name"], r["type"]) == ("ner", "txt", "labels")
            assert set(r["value"]) == {"start", "end", "text", "labels"} and r["value"]["labels"] == ["per"]
            assert r["value"]["text"] == text[r["value"]["start"]:r["value"]["end"]] and 0 <= r["score"] <= 1
            assert r["id"]


def test_token_classification_drops_entities_whose_label_is_not_in_the_config(tiny):
    assert head(TEXT + spans("ORG"), model=tiny["ner"]).predict(texts(SENTENCE), None) == [[]]
    out = head(TEXT + spans("Person"), model=tiny["ner"], labels={"PER": "Person"}).predict(texts(SENTENCE), None)
    assert {r["value"]["labels"][0] for r in out[0]} == {"Person"}


# --- loading --------------------------------------------------------------------------------------
def test_a_pipeline_is_loaded_once_per_process_for_concurrent_callers(tiny, monkeypatch):
    import transformers

    loads = []
    original = transformers.pipeline

    def counting(*args, **kwargs):
        loads.append(kwargs.get("model"))
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers, "pipeline", counting)
    got = []
    threads = [threading.Thread(target=lambda: got.append(load_pipeline("image-classification", tiny["vit"])))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(got) == 4 and all(p is got[0] for p in got)
    h = head(IMAGE + choices("cat", "dog"), model=tiny["vit"])
    h.warmup()
    h.predict(images(1), None)
    assert len(loads) == 1  # a relative or absolute path is one model


def test_identity_names_the_model_task_and_parameters(tiny):
    a = head(IMAGE + choices("cat", "dog"), model=tiny["vit"])
    b = head(IMAGE + choices("cat", "dog"), model=tiny["vit"], threshold=0.2)
    assert a.identity() != b.identity() and json.dumps(a.identity())
    assert "image-classification" in a.identity() and a.learns is False


# --- through the Hub and the backend ------------------------------------------------------------------
def test_a_hub_model_is_read_by_id_and_revision(tiny, hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    repo = "acme/tiny-vit"
    hub.create_repo(repo, repo_type="model")
    dog = Path(tiny["vit"])
    first = hub.commit_files(repo, {p.name: p.read_bytes() for p in dog.iterdir()}, repo_type="model")
    cat = tiny_models.build_image_classifier(tmp_path / "cat", winner="cat")
    hub.commit_files(repo, {p.name: p.read_bytes() for p in cat.iterdir()}, repo_type="model")
    xml = IMAGE + choices("Cat", "dog")
    assert [r[0]["value"]["choices"] for r in head(xml, model=repo).predict(images(1), None)] == [["Cat"]]
    pinned = head(xml, model=repo, revision=first)
    assert pinned.task == "image-classification"
    assert [r[0]["value"]["choices"] for r in pinned.predict(images(1), None)] == [["dog"]]


def _png(size=(48, 32)) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_the_backend_answers_controls_with_the_models_named_in_extra_params(tiny, tmp_path):
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import project_key

    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    client = app.test_client()
    config = f"<View>{IMAGE}{choices('Cat', 'dog', name='animal')}{rectangles('cat', 'dog')}</View>"
    extra = {"controls": {"animal": {"model": tiny["vit"]}, "box": {"model": tiny["owlvit"], "threshold": 0}}}
    key = project_key()
    answer = client.post("/setup", json={"project": key, "schema": config, "extra_params": extra})
    assert answer.status_code == 200, answer.json
    tasks = [{"id": i, "data": {"image": _png()}} for i in range(2)]
    results = client.post("/predict", json={"tasks": tasks, "project": key, "label_config": config}).json["results"]
    assert len(results) == 2
    for pred in results:
        animal = [r for r in pred["result"] if r["from_name"] == "animal"]
        assert [r["value"] for r in animal] == [{"choices": ["dog"]}]
        boxes = [r for r in pred["result"] if r["from_name"] == "box"]
        assert boxes
        for r in boxes:
            assert_rectangle(r, {"cat", "dog"}, size=(48, 32))
    bad = client.post("/setup", json={"project": key, "schema": config,
                                      "extra_params": {"model": tiny["vit"], "threshold": "high"}})
    assert bad.status_code == 422 and "'threshold'" in bad.json["error"]


def test_pipeline_spec_reads_the_documented_keys():
    spec = PipelineSpec.from_params({"model": "google/owlv2-base-patch16-ensemble", "threshold": 0.2,
                                     "labels": {"a cat": "Cat"}, "revision": "main", "nms": 0.4,
                                     "task": "zero-shot-object-detection", "learned": False})
    assert (spec.threshold, spec.labels, spec.revision, spec.nms, spec.local) == \
        (0.2, (("a cat", "Cat"),), "main", 0.4, False)


def test_the_labels_map_gives_one_identity_and_one_model_version_whatever_its_key_order(tiny, tmp_path):
    """Audit: ``{"POSITIVE": "Good", "NEGATIVE": "Bad"}`` in the dialog's order and in ``project.json``'s sorted
    order gave two identities, so the worker that handled ``/setup`` and another worker served two versions."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import project_key

    xml = TEXT + choices("Good", "Bad", to="txt")
    forward = {"POSITIVE": "Good", "NEGATIVE": "Bad"}
    backward = dict(reversed(forward.items()))
    a, b = (head(xml, model=tiny["sentiment"], labels=m) for m in (forward, backward))
    assert a.identity() == b.identity() and a.spec.labels == (("NEGATIVE", "Bad"), ("POSITIVE", "Good"))
    versions = []
    for n, labels in enumerate((forward, backward)):
        client = create_app({"model_dir": tmp_path / str(n), "start_trainer": False, "warmup": False}).test_client()
        answer = client.post("/setup", json={"project": project_key(), "schema": f"<View>{xml}</View>",
                                             "extra_params": {"model": tiny["sentiment"], "labels": labels}})
        assert answer.status_code == 200, answer.json
        versions.append(answer.json["model_version"])
    assert versions[0] == versions[1]


def test_a_labels_value_that_is_not_a_label_of_the_control_is_refused_at_setup(tiny, tmp_path):
    """Audit: ``{"POSITIVE": "Great"}`` on Good/Bad was only logged, and with the single-choice threshold 0 every
    task got "Bad" at ~1e-7 although the model said POSITIVE at ~1.0."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import project_key

    client = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False}).test_client()
    config = f"<View>{TEXT}{choices('Good', 'Bad', to='txt', name='sentiment')}</View>"
    key = project_key()
    good = {"model": tiny["sentiment"], "labels": {"POSITIVE": "good", "NEGATIVE": None}}  # ignoring case; null
    answer = client.post("/setup", json={"project": key, "schema": config, "extra_params": good})
    assert answer.status_code == 200, answer.json
    bad = client.post("/setup", json={"project": key, "schema": config, "extra_params": {
        "model": tiny["sentiment"], "labels": {"POSITIVE": "Great", "NEGATIVE": "Bad"}}})
    assert bad.status_code == 422, bad.json
    assert ("'labels' maps 'POSITIVE' to 'Great', which is not a label of <Choices name='sentiment'> (it has 'Good', "
            "'Bad')") in bad.json["error"]
    assert client.post("/setup", json={"project": key, "schema": config}).json["model_version"] == \
        answer.json["model_version"]  # the earlier parameters stay
    # zero-shot: the keys are the queries, the values the control's labels; a map the other way round is named
    spec = control(IMAGE + choices("cat", "dog"))
    with pytest.raises(PipelineParamsError, match=r'did you mean \{"a photo of a cat": "cat"\}'):
        PipelineHead(spec, None, {"model": tiny["clip"], "labels": {"cat": "a photo of a cat"}}, [spec])
    assert head(IMAGE + choices("cat", "dog"), model=tiny["clip"], labels={"a photo of a cat": "cat"})


def test_a_relative_model_path_is_refused_and_an_absolute_or_home_one_is_read_from_any_directory(
        tiny, tmp_path, monkeypatch):
    """Audit: ``./models/sentiment`` was read from each process's working directory (``labelhub predict`` run
    elsewhere said there was no such directory) and the version hashed the raw string."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import project_key

    shutil.copytree(tiny["sentiment"], tmp_path / "models" / "sentiment")
    monkeypatch.chdir(tmp_path)
    xml = TEXT + choices("Negative", "Positive", to="txt")
    for relative in ("./models/sentiment", "models/sentiment", "models/../models/sentiment", "."):
        with pytest.raises(PipelineParamsError, match="is a relative path.*absolute.*home directory") as info:
            PipelineHead.supports(control(xml), {"model": relative})
        assert info.value.status == 422
    client = create_app({"model_dir": tmp_path / "state", "start_trainer": False, "warmup": False}).test_client()
    bad = client.post("/setup", json={"project": project_key(), "schema": f"<View>{xml}</View>",
                                      "extra_params": {"model": "./models/sentiment"}})
    assert bad.status_code == 422 and "'./models/sentiment' is a relative path" in bad.json["error"]
    # with ~ it is the same directory from any working directory
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir("/")
    h = head(xml, model="~/models/sentiment")
    assert h.model == str((tmp_path / "models" / "sentiment").resolve()) and h.task == "text-classification"
    assert [r[0]["value"] for r in h.predict(texts(SENTENCE), None)] == [{"choices": ["Positive"]}]


def test_a_head_whose_model_cannot_load_fails_its_tasks_with_an_error_and_no_result(tiny, tmp_path, caplog):
    """A Hub model that cannot be loaded (here: no such repository, and no network in tests) is no empty
    prediction: every task gets ``error`` and no ``result`` (even the heads that answered are left out), so Label
    Studio stores nothing and a later run predicts it again; the failure is logged once per worker and cause."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import project_key

    caplog.set_level(logging.DEBUG, logger="labelhub.backend.models.project")
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    client = app.test_client()
    config = f"<View>{IMAGE}{choices('Cat', 'dog', name='animal')}{rectangles('cat', 'dog')}</View>"
    extra = {"controls": {"animal": {"model": tiny["vit"]},
                          "box": {"model": "nobody/no-such-model", "task": "zero-shot-object-detection"}}}
    key = project_key()
    assert client.post("/setup", json={"project": key, "schema": config, "extra_params": extra}).status_code == 200
    tasks = [{"id": i, "data": {"image": _png()}} for i in range(2)]
    for _ in range(2):
        results = client.post("/predict", json={"tasks": tasks, "project": key, "label_config": config}).json["results"]
        assert len(results) == 2
        for pred in results:
            assert "result" not in pred and "score" not in pred and pred["model_version"], pred
            assert "'box'" in pred["error"] and "no-such-model" in pred["error"], pred
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.endswith("models.project")]
    assert len(errors) == 1 and key in errors[0].getMessage() and "no-such-model" in errors[0].getMessage()
    assert errors[0].exc_info is None and "\n" not in errors[0].getMessage()
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)



def test_a_task_whose_one_object_cannot_be_loaded_fails_whole_though_another_objects_head_answered(tiny, tmp_path):
    """A task of two objects whose image cannot be fetched while its text's model answers got a partial prediction
    (the text's choice, no error): stored under the version, it kept the image's control from ever being predicted
    once the image was reachable. It fails whole now, as for a head that raised."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import project_key

    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    client = app.test_client()
    config = (f"<View>{IMAGE}{choices('Cat', 'dog', name='animal')}{TEXT}"
              f"{choices('Negative', 'Positive', to='txt', name='sentiment')}</View>")
    extra = {"controls": {"animal": {"model": tiny["vit"]}, "sentiment": {"model": tiny["sentiment"]}}}
    key = project_key()
    assert client.post("/setup", json={"project": key, "schema": config, "extra_params": extra}).status_code == 200
    tasks = [{"id": 1, "data": {"image": _png(), "text": SENTENCE}},
             {"id": 2, "data": {"image": "http://203.0.113.7/gone.png", "text": SENTENCE}}]  # a host not allowed
    whole, partial = client.post("/predict", json={"tasks": tasks, "project": key, "label_config": config}).json[
        "results"]
    assert {r["from_name"] for r in whole["result"]} == {"animal", "sentiment"}, whole
    assert "result" not in partial and "203.0.113.7" in partial["error"], partial

def test_a_project_never_fitted_whose_hub_model_params_change_lists_the_new_version_and_asks_for_a_job(tiny, tmp_path):
    """Audit: a pipeline-only project (it never fits) queued nothing when its Extra params changed, so no automatic
    job predicted the unlabeled tasks again and ``/versions`` stayed empty. Now the change is queued as for a fitted
    project: the trainer lists the version the parameters serve and asks for the job of the unlabeled tasks."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import project_key

    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    backend = app.extensions["labelhub"]
    asked = []
    backend.auto = type("Recorder", (), {"request": lambda self, key, **kw: asked.append((key, kw))})()
    client = app.test_client()
    config = f"<View>{TEXT}{choices('NEGATIVE', 'POSITIVE', to='txt', name='sentiment')}</View>"
    key = project_key()

    def setup(threshold):
        extra = {"controls": {"sentiment": {"model": tiny["sentiment"], "threshold": threshold}}}
        answer = client.post("/setup", json={"project": key, "schema": config, "extra_params": extra})
        assert answer.status_code == 200, answer.json
        backend.trainer.run_once()
        return answer.json["model_version"]

    first = setup(0.1)
    assert client.get("/versions", query_string={"project": key}).json["versions"] == [first]
    assert asked == [(key, {"unlabeled": True})]
    moved = setup(0.2)
    assert moved != first and client.get("/versions", query_string={"project": key}).json["versions"] == [first, moved]
    assert asked[1:] == [(key, {"unlabeled": True})]
    assert setup(0.2) == moved and len(asked) == 2  # the same parameters again: nothing queued
    pred = client.post("/predict", json={"tasks": [{"id": 1, "data": {"text": "good"}}], "project": key,
                                         "label_config": config}).json["results"][0]
    assert pred["model_version"] == moved and pred["result"]


def test_a_warmup_that_fails_is_one_line_naming_the_project_and_the_cause(tiny, tmp_path, caplog):
    """Audit: ``warmup of ProjectModel:[...] failed`` and about 60 lines of traceback, the cause at the bottom. Now
    one ERROR line naming the project, the control, the model and the cause (traceback at DEBUG); the other heads are
    warmed all the same. A model class whose own warmup raises gets one line from the backend too."""
    import threading

    from labelhub.backend.app import create_app
    from tests.backend_fixtures import project_key

    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": True})
    caplog.set_level(logging.DEBUG, logger="labelhub.backend")  # after create_app, which sets LABELHUB_LOG_LEVEL's
    backend = app.extensions["labelhub"]
    config = f"<View>{IMAGE}{rectangles('cat', 'dog')}{choices('Cat', 'dog', name='animal')}</View>"
    extra = {"controls": {"animal": {"model": tiny["vit"]},
                          "box": {"model": "nobody/no-such-model", "task": "zero-shot-object-detection"}}}
    key = project_key()
    model = backend.models.get(key, config, extra_params=extra)
    model.warmup()  # as the background thread does
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None, [r.getMessage() for r in errors]
    line = errors[0].getMessage()
    assert "\n" not in line and key in line and "'box'" in line and "no-such-model" in line and "Error" in line
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)
    assert any(tiny["vit"] in str(k) for k in pipelines._PIPELINES)  # the head after the failed one was warmed

    caplog.clear()

    class Cold:
        project_id = "7.1"
        warmup_key = "k"

        def warmup(self):
            raise RuntimeError("no GPU\nat all")

    done = threading.Event()
    backend.warmup(Cold())
    threading.Thread(target=lambda: ([t.join() for t in threading.enumerate() if t.name == "labelhub-warmup"],
                                     done.set())).start()
    assert done.wait(30)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert errors[0].getMessage().startswith("project 7.1: warmup of Cold failed: RuntimeError: no GPU at all")
