"""The default model's composition: one head per control tag, per-project parameters, a stable model_version."""
from __future__ import annotations

import logging
import time

import pytest

from labelhub.backend.app import create_app
from labelhub.backend.models.params import params_for, parse_params
from labelhub.backend.settings import Settings
from tests.backend_fixtures import (IMAGE_CONFIG, PLOT_REVIEW_CLASSES, annotation_event, image_tasks,
                                   plot_review_tasks, project_key, project_payload)

KEY = project_key()

#: Two Choices over one Text, and a Rating nothing answers.
TWO_CONTROLS = ("<View><Text name='text' value='$text'/>"
                "<Choices name='kind' toName='text'><Choice value='plot'/><Choice value='review'/></Choices>"
                "<Choices name='size' toName='text'><Choice value='short'/><Choice value='long'/></Choices>"
                "<Rating name='stars' toName='text'/></View>")


def make_app(tmp_path, **overrides):
    return create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False, **overrides})


def _annotate(client, tasks, labels, config):
    for i, (task, label) in enumerate(zip(tasks, labels)):
        body = annotation_event(3000 + i, task, label, project=project_payload(label_config=config), from_name="kind")
        size = "long" if len(task["data"]["text"]) > 150 else "short"
        body["annotation"]["result"].append({"id": f"s{i}", "from_name": "size", "to_name": "text", "type": "choices",
                                             "value": {"choices": [size]}})
        assert client.post("/webhook", json=body).status_code == 200


def test_every_answered_control_is_in_one_prediction_and_the_task_score_is_the_least_certain(tmp_path, caplog):
    app = make_app(tmp_path)
    client = app.test_client()
    caplog.set_level(logging.INFO, logger="labelhub.backend.models.project")
    assert client.post("/setup", json={"project": KEY, "schema": TWO_CONTROLS}).status_code == 200
    tasks, labels = plot_review_tasks(50)
    _annotate(client, tasks[:40], labels[:40], TWO_CONTROLS)
    app.extensions["labelhub"].trainer.run_once()
    results = client.post("/predict", json={"tasks": tasks[40:], "project": KEY, "label_config": TWO_CONTROLS}
                          ).json["results"]
    for pred in results:
        assert sorted(r["from_name"] for r in pred["result"]) == ["kind", "size"]
        assert all(r["type"] == "choices" and r["to_name"] == "text" and 0 <= r["score"] <= 1 for r in pred["result"])
        assert pred["score"] == pytest.approx(min(r["score"] for r in pred["result"]))
    assert {r["value"]["choices"][0] for p in results for r in p["result"] if r["from_name"] == "kind"} <= \
        set(PLOT_REVIEW_CLASSES)
    unanswered = [r.getMessage() for r in caplog.records if "'stars'" in r.getMessage()]
    assert len(unanswered) == 1 and "not answered" in unanswered[0]


def test_a_head_whose_fit_raises_leaves_the_other_heads_learning_and_says_so(tmp_path, monkeypatch, caplog):
    from labelhub.backend.models.choices import ChoicesHead

    fit = ChoicesHead.fit

    def broken_for_size(self, examples):
        if self.control.from_name == "size":
            raise RuntimeError("a bug in one head")
        return fit(self, examples)

    monkeypatch.setattr(ChoicesHead, "fit", broken_for_size)
    app = make_app(tmp_path)
    client = app.test_client()
    tasks, labels = plot_review_tasks(30)
    _annotate(client, tasks[:25], labels[:25], TWO_CONTROLS)
    app.extensions["labelhub"].trainer.run_once()
    kv = app.extensions["labelhub"].store.project(KEY).kv()
    assert kv["model_version"].startswith("labelhub-25-") and list(kv["heads"]) == ["kind"]
    assert kv["last_error"] == "size: RuntimeError: a bug in one head"
    assert any("'size' failed to fit" in r.getMessage() and r.exc_info for r in caplog.records)
    results = client.post("/predict", json={"tasks": tasks[25:], "project": KEY, "label_config": TWO_CONTROLS}
                          ).json["results"]
    assert all([r["from_name"] for r in p["result"]] == ["kind"] for p in results)


def test_a_label_config_with_no_answerable_control_is_refused_with_what_it_has(tmp_path):
    client = make_app(tmp_path).test_client()
    config = "<View><Text name='text' value='$text'/><Rating name='stars' toName='text'/></View>"
    answer = client.post("/setup", json={"project": KEY, "schema": config})
    assert answer.status_code == 422
    assert "<Rating name='stars'> over <Text>" in answer.json["error"]
    dangling = "<View><Image name='img' value='$image'/><Choices name='kind' toName='imgg'><Choice value='a'/></Choices></View>"
    answer = client.post("/setup", json={"project": KEY, "schema": dangling})
    assert answer.status_code == 422
    assert "<Choices name='kind' toName='imgg'> over no object tag with a $value" in answer.json["error"]
    per_region = ("<View><Image name='img' value='$image'/><Choices name='size' toName='img' perRegion='true'>"
                  "<Choice value='big'/></Choices></View>")
    answer = client.post("/setup", json={"project": KEY, "schema": per_region})
    assert answer.status_code == 422  # "it has Choices over Image" read as a contradiction without the reason
    assert """<Choices name='size'> over <Image> (perRegion="true": a choice per region, not answered)""" in \
        answer.json["error"]
    text = "<View><Text name='text' value='$text'/><Choices name='c' toName='text'><Choice value='a'/></Choices></View>"
    answer = client.post("/setup", json={"project": KEY, "schema": text, "extra_params": {"learned": False}})
    assert answer.status_code == 422 and answer.json["error"].startswith(
        'no control tag of this label config can be answered (with "learned": false in the Extra params')
    assert len(answer.json["error"]) > 300 and answer.status.endswith(answer.json["error"])  # whole, in the phrase


def test_extra_params_from_the_connect_model_dialog_are_kept_per_project_and_bad_ones_refused(tmp_path):
    app = make_app(tmp_path)
    client = app.test_client()
    config = TWO_CONTROLS
    ok = client.post("/setup", json={"project": KEY, "schema": config, "extra_params": '{"threshold": 0.5}'})
    assert ok.status_code == 200
    assert app.extensions["labelhub"].store.project(KEY).project()["extra_params"] == {"threshold": 0.5}
    model = app.extensions["labelhub"].models.get(KEY, config)  # another worker or the trainer: no extra_params
    assert model.params == {"threshold": 0.5}
    for bad in ("{not json", "[1, 2]", {"controls": {"kind": 3}}):
        answer = client.post("/setup", json={"project": KEY, "schema": config, "extra_params": bad})
        assert answer.status_code == 422 and "extra_params" in answer.json["error"], bad


def test_params_merge_environment_defaults_project_and_control_entries():
    defaults = parse_params('{"threshold": 0.3, "controls": {"box": {"model": "a"}}}', "LABELHUB_MODEL_PARAMS")
    project = parse_params({"threshold": 0.5, "controls": {"box": {"threshold": 0.9}}}, "extra_params")
    assert params_for(defaults, project, "box") == {"threshold": 0.9, "model": "a"}
    assert params_for(defaults, project, "other") == {"threshold": 0.5}
    with pytest.raises(ValueError, match="LABELHUB_MODEL_PARAMS"):
        Settings.from_env({"LABELHUB_MODEL_PARAMS": "nope"})


def test_model_version_is_the_same_after_a_restart_and_changes_only_with_what_was_learned(tmp_path):
    config = TWO_CONTROLS
    first = make_app(tmp_path)
    client = first.test_client()
    before = client.post("/setup", json={"project": KEY, "schema": config}).json["model_version"]
    assert before == make_app(tmp_path).test_client().post(
        "/setup", json={"project": KEY, "schema": config}).json["model_version"]
    tasks, labels = plot_review_tasks(20)
    _annotate(client, tasks, labels, config)
    first.extensions["labelhub"].trainer.run_once()
    trained = client.post("/setup", json={"project": KEY, "schema": config}).json["model_version"]
    assert trained.startswith("labelhub-20-") and trained != before
    restarted = make_app(tmp_path)
    assert restarted.test_client().post("/setup", json={"project": KEY, "schema": config}).json["model_version"] == trained
    _annotate(client, tasks, labels, config)  # the same annotations again: nothing new to learn
    restarted.extensions["labelhub"].trainer.run_once()
    assert restarted.test_client().post("/setup", json={"project": KEY, "schema": config}
                                        ).json["model_version"] == trained


def test_the_trainer_refits_on_takeover_a_head_whose_identity_an_upgrade_changed(tmp_path, monkeypatch, caplog):
    """A fit stored by an earlier version is redone when the trainer starts, not at the next annotation, and its log
    line says why (an upgrade audit saw the version move at start with no word why)."""
    from labelhub.backend.models.choices import ChoicesHead

    config = TWO_CONTROLS
    first = make_app(tmp_path)
    client = first.test_client()
    client.post("/setup", json={"project": KEY, "schema": config})
    tasks, labels = plot_review_tasks(20)
    _annotate(client, tasks, labels, config)
    first.extensions["labelhub"].trainer.run_once()
    trained = client.post("/setup", json={"project": KEY, "schema": config}).json["model_version"]
    same = make_app(tmp_path).extensions["labelhub"]
    same.trainer.refit_changed()  # the same code: nothing to refit, the version stays
    assert same.store.project(KEY).kv()["model_version"] == trained

    monkeypatch.setattr(ChoicesHead, "OTHERS", ("standardized", 0.1))  # "the upgrade": another regression
    files = {name: entry["file"] for name, entry in same.store.project(KEY).kv()["heads"].items()}
    caplog.set_level(logging.INFO, logger="labelhub.backend.models.project")
    caplog.clear()
    upgraded = make_app(tmp_path, start_trainer=True)  # its trainer takes over at once
    backend = upgraded.extensions["labelhub"]
    try:
        deadline = time.monotonic() + 60
        while backend.store.project(KEY).kv()["model_version"] == trained and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        backend.trainer.stop()
    said = [r.getMessage() for r in caplog.records if "head of 'kind'" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("; refit: how the head learns changed since the stored fit (LabelHub "
                                               "upgraded, or its parameters)"), said
    kv = backend.store.project(KEY).kv()
    assert kv["model_version"].startswith("labelhub-20-") and kv["model_version"] != trained
    assert all(kv["heads"][name]["file"] != file for name, file in files.items())
    predicted = upgraded.test_client().post("/predict", json={"tasks": tasks[:2], "project": KEY,
                                                              "label_config": config}).json["results"]
    assert {p["model_version"] for p in predicted} == {kv["model_version"]}
    assert all({r["from_name"] for r in p["result"]} == {"kind", "size"} for p in predicted)

    # a fit stored before the rule was recorded: refit once, saying it cannot tell which changed
    state = backend.store.project(KEY)
    kv = state.kv()
    for entry in kv["heads"].values():
        del entry["rule"]
        entry["digest"] = "0" * 16
    state.update_kv(heads=kv["heads"])
    caplog.clear()
    older = make_app(tmp_path).extensions["labelhub"]
    older.trainer.refit_changed()
    said = [r.getMessage() for r in caplog.records if "head of 'kind'" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("; refit: the stored fit was made by an earlier LabelHub, which did not "
                                               "record how the head learns (its rule or its examples changed)"), said


def _counting_fetches(app) -> list[str]:
    """Spy on the app's media fetcher: the list grows by each value it fetches."""
    fetcher, seen = app.extensions["labelhub"].fetcher, []
    fetch = fetcher.fetch
    fetcher.fetch = lambda value, *a, **kw: (seen.append(value), fetch(value, *a, **kw))[1]
    return seen


def test_a_new_worker_predicts_and_refits_choices_from_the_stored_embeddings_without_loading_images(tmp_path):
    tasks, labels = image_tasks(60)
    first = make_app(tmp_path)
    client = first.test_client()
    for i, (task, label) in enumerate(zip(tasks[:30], labels[:30])):
        assert client.post("/webhook", json=annotation_event(5000 + i, task, label)).status_code == 200
    first.extensions["labelhub"].trainer.run_once()
    body = {"tasks": tasks[30:], "project": KEY, "label_config": IMAGE_CONFIG}
    fetched = _counting_fetches(first)
    before = client.post("/predict", json=body).json["results"]
    assert len(fetched) == 30 and all(p["result"] for p in before)

    second = make_app(tmp_path)  # another worker, or a restart: an empty LRU, the same MODEL_DIR
    fetched = _counting_fetches(second)
    after = second.test_client().post("/predict", json=body).json["results"]
    assert fetched == [] and after == before  # every embedding came from MODEL_DIR/embeddings

    without = make_app(tmp_path, embedding_store_bytes=0)  # LABELHUB_EMBEDDING_STORE_BYTES=0: no store
    fetched = _counting_fetches(without)
    assert without.test_client().post("/predict", json=body).json["results"] == before and len(fetched) == 30

    backend, web = second.extensions["labelhub"], second.test_client()
    assert backend.models.get(KEY, IMAGE_CONFIG).model_version.startswith("labelhub-30-")
    fetched = _counting_fetches(second)
    for i in range(30, 35):  # five of the predicted tasks annotated: the refit on 35 loads no image either
        assert web.post("/webhook", json=annotation_event(5000 + i, tasks[i], labels[i])).status_code == 200
    backend.trainer.run_once()
    assert backend.models.get(KEY, IMAGE_CONFIG).model_version.startswith("labelhub-35-") and fetched == []


def test_a_predict_during_a_fit_leaves_the_fits_embedding_file_to_the_training_tasks(tmp_path, monkeypatch):
    import threading

    import numpy as np

    from labelhub.backend.models.choices import ChoicesHead
    from tests.backend_fixtures import PLOT_REVIEW_CONFIG

    fit, fitting, release = ChoicesHead.fit, threading.Event(), threading.Event()

    def slow_fit(self, examples):
        fitting.set()
        release.wait(30)
        return fit(self, examples)

    app = make_app(tmp_path)
    client, backend = app.test_client(), app.extensions["labelhub"]
    tasks, labels = plot_review_tasks(70)
    for i, (task, label) in enumerate(zip(tasks[:20], labels[:20])):
        body = annotation_event(4000 + i, task, label, project=project_payload(label_config=PLOT_REVIEW_CONFIG))
        assert client.post("/webhook", json=body).status_code == 200
        if i == 9:
            backend.trainer.run_once()  # a first fit: the model predicts (and embeds) from now on
    monkeypatch.setattr(ChoicesHead, "fit", slow_fit)
    trainer = threading.Thread(target=backend.trainer.run_once)
    trainer.start()
    assert fitting.wait(30)
    answer = client.post("/predict", json={"tasks": tasks[20:], "project": KEY, "label_config": PLOT_REVIEW_CONFIG})
    assert answer.status_code == 200
    release.set()
    trainer.join(60)
    [npz] = (tmp_path / "projects" / KEY / "files").glob("embeddings-*.npz")
    with np.load(npz) as saved:
        assert len(saved["keys"]) == 20  # the 50 tasks predicted meanwhile are not in it


def test_learned_false_keeps_ocr_and_a_per_region_choices_is_not_answered_as_a_whole_image_choice(tmp_path):
    client = make_app(tmp_path).test_client()
    ocr_and_choices = ("<View><Image name='image' value='$image'/><TextArea name='text' toName='image'/>"
                       "<Choices name='kind' toName='image'><Choice value='a'/><Choice value='b'/></Choices></View>")
    answer = client.post("/setup", json={"project": KEY, "schema": ocr_and_choices, "extra_params": {"learned": False}})
    assert answer.status_code == 200, answer.json  # OCR learns nothing: "learned": false leaves it on
    per_region = ("<View><Image name='image' value='$image'/><RectangleLabels name='box' toName='image'>"
                  "<Label value='x'/></RectangleLabels><Choices name='attr' toName='image' perRegion='true'>"
                  "<Choice value='a'/><Choice value='b'/></Choices></View>")
    other = project_key(2)
    assert client.post("/setup", json={"project": other, "schema": per_region}).status_code == 200
    model = make_app(tmp_path).extensions["labelhub"].models.get(other)
    assert [head.control.from_name for head in model.heads] == ["box"]


def test_a_refit_whose_media_cannot_be_loaded_keeps_the_previous_fit_and_is_tried_again(tmp_path, monkeypatch):
    """The trainer starts while the images cannot be fetched (Label Studio or the Hub not up yet) and an upgrade
    changed the head: the fit that serves stays, and the refit is done at the next start (it was replaced by an
    empty head, every prediction empty until the next annotation)."""
    from labelhub.backend.errors import MediaError
    from labelhub.backend.models.choices import ChoicesHead

    tasks, labels = image_tasks(20)
    app = make_app(tmp_path, embedding_store_bytes=0, embedding_cache_size=0)
    backend, client = app.extensions["labelhub"], app.test_client()
    for i, (task, label) in enumerate(zip(tasks, labels)):
        assert client.post("/webhook", json=annotation_event(7000 + i, task, label)).status_code == 200
    backend.trainer.run_once()
    trained = backend.store.project(KEY).kv()
    assert trained["heads"]["label"]["file"]

    identity = ChoicesHead.identity
    monkeypatch.setattr(ChoicesHead, "identity", lambda self: [*identity(self), "upgraded"])
    fetch = backend.fetcher.fetch

    def down(value, *args, **kwargs):
        raise MediaError(f"cannot fetch {str(value)[:20]}: refused")

    backend.fetcher.fetch = down
    backend.trainer.refit_changed()
    kept = backend.store.project(KEY).kv()
    assert (kept["model_version"], kept["heads"]) == (trained["model_version"], trained["heads"])

    backend.fetcher.fetch = fetch  # back up: the next start refits
    backend.trainer.refit_changed()
    refit = backend.store.project(KEY).kv()
    assert refit["model_version"] != trained["model_version"] and refit["heads"]["label"]["examples"] == 20


def test_a_prediction_carries_the_version_of_the_fits_it_used_when_a_new_fit_lands_meanwhile(tmp_path):
    """``/predict`` read the fits at its refresh and the ``model_version`` a moment later: a fit another process
    recorded in between was named on predictions the older fits made (and a fit of this process served before its
    version was recorded)."""
    config = TWO_CONTROLS
    predictor, trainer = make_app(tmp_path), make_app(tmp_path)
    tasks, labels = plot_review_tasks(40)
    client = trainer.test_client()
    assert client.post("/setup", json={"project": KEY, "schema": config}).status_code == 200
    _annotate(client, tasks[:20], labels[:20], config)
    trainer.extensions["labelhub"].trainer.run_once()
    ask = {"tasks": tasks[30:32], "project": KEY, "label_config": config}
    first = predictor.test_client().post("/predict", json=ask).json["results"]
    old = first[0]["model_version"]
    assert old.startswith("labelhub-20-")
    _annotate(client, tasks[:30], labels[:30], config)  # ten more (the first twenty again, unchanged)
    trainer.extensions["labelhub"].trainer.run_once()
    model = predictor.extensions["labelhub"].models.get(KEY, config)
    refresh = model.refresh
    model.refresh = lambda: False  # the new fit lands just after this request's refresh
    again = predictor.test_client().post("/predict", json=ask).json["results"]
    assert [p["model_version"] for p in again] == [old, old] and again == first
    model.refresh = refresh
    new = predictor.test_client().post("/predict", json=ask).json["results"]
    assert {p["model_version"] for p in new} == {trainer.extensions["labelhub"].models.get(KEY, config).model_version}
    assert new[0]["model_version"].startswith("labelhub-30-")
