"""The Label Studio protocol through Flask's test client: answers, errors, auth, training, durability."""
from __future__ import annotations

import base64
import json
import time

import pytest

from labelhub.backend.app import create_app
from labelhub.backend.model import LabelStudioMLBase
from tests.backend_fixtures import (IMAGE_CONFIG, PLOT_REVIEW_CONFIG, annotation_event, image_tasks,
                                   plot_review_tasks, project_key, project_payload)

KEY = project_key()


def make_app(tmp_path, **overrides):
    return create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False, **overrides})


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


@pytest.fixture
def client(app):
    return app.test_client()


def train(app):
    return app.extensions["labelhub"].trainer.run_once()


def post_annotations(client, tasks, labels, first_id=1000, config=IMAGE_CONFIG):
    for i, (task, label) in enumerate(zip(tasks, labels)):
        body = annotation_event(first_id + i, task, label, project=project_payload(label_config=config))
        answer = client.post("/webhook", json=body)
        assert answer.status_code == 200, answer.json


def test_health_answers_fast_without_loading_a_model(client):
    started = time.perf_counter()
    answer = client.get("/health")
    assert answer.status_code == 200 and answer.json["status"] == "UP"
    assert time.perf_counter() - started < 0.2


def test_setup_answers_model_version_and_remembers_the_label_config(app, client):
    answer = client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG, "hostname": "http://ls",
                                         "access_token": "tok", "extra_params": None})
    assert answer.status_code == 200 and list(answer.json) == ["model_version"]
    assert answer.json["model_version"].startswith("labelhub-0-")  # nothing learned yet
    stored = app.extensions["labelhub"].store.project(KEY).project()
    assert stored["label_config"] == IMAGE_CONFIG and "tok" not in json.dumps(stored)


def test_extra_params_the_model_refuses_are_not_kept(app, client):
    assert client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).status_code == 200
    refused = client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG, "extra_params": {"learned": False}})
    assert refused.status_code == 422 and refused.json["code"] == "unsupported_label_config"  # nothing would answer
    assert client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).status_code == 200
    assert app.extensions["labelhub"].store.project(KEY).project().get("extra_params") is None


def test_untrained_model_answers_an_empty_result_per_task(client):
    tasks, _ = image_tasks(3)
    answer = client.post("/predict", json={"tasks": tasks, "project": KEY, "label_config": IMAGE_CONFIG,
                                           "params": {"login": None, "password": None, "context": None}})
    assert answer.status_code == 200
    assert answer.json["results"] == [{"result": [], "score": 0.0, "model_version": answer.json["results"][0]["model_version"]}] * 3
    assert answer.json["results"][0]["model_version"].startswith("labelhub-0-")


def test_annotations_train_in_the_background_and_bump_model_version(app, client):
    tasks, labels = image_tasks(120)
    client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG})
    post_annotations(client, tasks[:100], labels[:100])
    assert client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).json["model_version"].startswith("labelhub-0-")
    assert train(app) == 100
    version = client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).json["model_version"]
    assert version.startswith("labelhub-100-")  # learned from 100 annotated tasks
    answer = client.post("/predict", json={"tasks": tasks[100:], "project": KEY, "label_config": IMAGE_CONFIG})
    results = answer.json["results"]
    assert len(results) == 20 and all(r["model_version"] == version for r in results)
    first = results[0]["result"][0]
    assert (first["from_name"], first["to_name"], first["type"]) == ("label", "image", "choices")
    assert all(0 < r["score"] <= 1 for r in results)
    correct = sum(r["result"][0]["value"]["choices"] == [y] for r, y in zip(results, labels[100:]))
    assert correct / 20 >= 0.5  # chance is 0.1
    assert client.get("/versions").json == {"versions": [version]}
    assert client.get("/versions", json={"project": KEY}).json == {"versions": [version]}


def test_duplicate_events_do_not_make_a_new_version(app, client):
    tasks, labels = image_tasks(20)
    post_annotations(client, tasks, labels)
    train(app)
    version = client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).json["model_version"]
    post_annotations(client, tasks, labels)
    client.post("/webhook", json={"action": "START_TRAINING", "project": project_payload()})
    assert train(app) == 21
    assert client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).json["model_version"] == version


def test_one_class_seen_is_not_enough_to_train(app, client):
    tasks, _ = image_tasks(5)
    post_annotations(client, tasks, ["Bag"] * 5)
    train(app)
    answer = client.post("/predict", json={"tasks": tasks, "project": KEY, "label_config": IMAGE_CONFIG})
    assert [r["result"] for r in answer.json["results"]] == [[]] * 5


def test_events_survive_a_crash_before_the_trainer_ran(tmp_path):
    first = make_app(tmp_path)
    tasks, labels = image_tasks(30)
    post_annotations(first.test_client(), tasks, labels)
    del first  # the worker dies before training: the events are on disk
    second = make_app(tmp_path)
    assert train(second) == 30
    version = second.test_client().post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).json
    assert version["model_version"].startswith("labelhub-30-")


def test_an_event_that_cannot_be_applied_is_moved_aside_and_every_other_event_is_applied(app, client, tmp_path):
    backend = app.extensions["labelhub"]
    tasks, labels = image_tasks(12)
    other = project_key(2)
    backend.queue.put("ANNOTATION_CREATED", ["a body an older version queued"], KEY)  # apply_event cannot read it
    post_annotations(client, tasks[:6], labels[:6])
    for i, (task, label) in enumerate(zip(tasks[6:], labels[6:])):
        body = annotation_event(2000 + i, task, label, project=project_payload(pid=2))
        assert client.post("/webhook", json=body).status_code == 200
    assert train(app) == 13 and backend.queue.count() == 0
    assert len(backend.store.project(KEY).load_annotations()["annotations"]) == 6
    assert len(backend.store.project(other).load_annotations()["annotations"]) == 6
    assert len(list((tmp_path / "events" / "failed").iterdir())) == 1


def test_tasks_created_needs_integer_task_ids(tmp_path):
    client = make_app(tmp_path, auto_predict=True, label_studio_url="http://127.0.0.1:9",
                      label_studio_api_key="k" * 20).test_client()
    answer = client.post("/webhook", json={"action": "TASKS_CREATED", "tasks": [{"id": "\u00b2"}],
                                           "project": project_payload()})
    assert answer.status_code == 422 and answer.json["field"] == "tasks"


def test_a_task_whose_media_fails_gets_no_result_while_others_succeed_and_the_log_names_each_reason(app, client,
                                                                                                     caplog):
    tasks, labels = image_tasks(40)
    post_annotations(client, tasks[:30], labels[:30])
    train(app)
    bad = [
        {"id": 901, "data": {"image": "http://not-allowed.example/cat.png?token=SECRET"}},
        {"id": 902, "data": {"image": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}},
        {"id": 903, "data": {"other": "x"}},
        {"id": 904},
        {"id": 905, "data": {"image": "/data/upload/1/x.png"}},
    ]
    answer = client.post("/predict", json={"tasks": [tasks[35], *bad, tasks[36]], "project": KEY,
                                           "label_config": IMAGE_CONFIG})
    assert answer.status_code == 200
    results = answer.json["results"]
    assert len(results) == 7
    assert results[0]["result"] and results[-1]["result"]
    for r in results[1:-1]:
        assert "result" not in r and r["error"] and r["model_version"] == results[0]["model_version"]
    logged = [r.getMessage() for r in caplog.records if "got no prediction" in r.getMessage()]
    assert len(logged) == 1 and "5 of 7 tasks" in logged[0] and "SECRET" not in logged[0]
    for task_id in (901, 902, 903, 904, 905):
        assert f"task {task_id}: " in logged[0]
    assert "not allowed" in results[1]["error"] and "SECRET" not in results[1]["error"]
    assert "not a readable image" in results[2]["error"]
    assert "LABEL_STUDIO_URL" in results[5]["error"]


@pytest.mark.parametrize("path, kwargs, status, code", [
    ("/predict", {"data": "{not json", "content_type": "application/json"}, 400, "bad_request"),
    ("/predict", {"data": "[1, 2]", "content_type": "application/json"}, 400, "bad_request"),
    ("/predict", {"data": "", "content_type": "application/json"}, 400, "bad_request"),
    ("/predict", {"json": {"tasks": "nope", "project": KEY}}, 422, "invalid_payload"),
    ("/predict", {"json": {"tasks": [], "project": "../../x"}}, 422, "invalid_payload"),
    ("/predict", {"json": {"tasks": [{"id": 1}], "project": "99.1"}}, 422, "invalid_payload"),
    ("/predict", {"json": {"tasks": [], "project": KEY, "params": {"context": "x"}}}, 422, "invalid_payload"),
    ("/predict", {"data": '{"tasks": [{"id": 1, "data": {"image": "\\ud800"}}], "project": "%s"}' % KEY,
                  "content_type": "application/json"}, 400, "bad_request"),  # a lone surrogate: not Unicode text
    ("/setup", {"json": {"project": KEY}}, 422, "invalid_payload"),
    ("/setup", {"json": {"project": KEY, "schema": "<View><Image"}}, 422, "unsupported_label_config"),
    ("/setup", {"json": {"project": KEY, "schema": '<View><Image name="i" value="$i"/>'
                         '<Rating name="r" toName="i"/></View>'}},  # no head answers a Rating
     422, "unsupported_label_config"),
    ("/setup", {"json": {"project": KEY, "schema": IMAGE_CONFIG, "extra_params": "[" * 100_000}}, 422,
     "invalid_payload"),  # nested within a string: the body's depth check does not see it
    ("/webhook", {"json": {"action": "SOMETHING_ELSE", "project": {"id": 1}}}, 422, "unknown_action"),
    ("/webhook", {"json": {"no": "action"}}, 422, "invalid_payload"),
    ("/webhook", {"json": {"action": "ANNOTATION_CREATED", "project": {"id": 1}}}, 422, "invalid_payload"),
    ("/webhook", {"json": {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}]}}, 422, "invalid_payload"),
    ("/train", {"json": {"project": KEY}}, 422, "invalid_payload"),
    ("/train", {"json": {"project": KEY, "annotations": [{"id": 1, "annotations": [{"result": []}]}]}}, 422,
     "invalid_payload"),  # an annotation without an id: it would overwrite every other one without an id
    ("/train", {"json": {"project": KEY, "annotations": [{"id": 1, "annotations": [
        {"id": 2, "result": [{"from_name": "label", "value": [1]}]}]}]}}, 422, "invalid_payload"),
    ("/webhook", {"json": {"action": "ANNOTATIONS_CREATED", "project": {"id": 1},
                           "task": [{"id": 4}, {"id": 5}], "annotation": [{"id": 14, "result": []}]}},
     422, "invalid_payload"),  # which of the two tasks is the annotation's?
    ("/nowhere", {"json": {}}, 404, "not_found"),
])
def test_bad_input_gets_a_clear_json_error_never_a_500(client, path, kwargs, status, code):
    answer = client.post(path, **kwargs)
    assert answer.status_code == status, answer.json
    assert answer.json["code"] == code and answer.json["error"]


def test_wrong_method_is_a_json_405(client):
    answer = client.get("/predict")
    assert answer.status_code == 405 and answer.json["code"] == "method_not_allowed"


def test_ignored_label_studio_actions_are_accepted(client):
    answer = client.post("/webhook", json={"action": "TASKS_CREATED", "tasks": [{"id": 1}], "project": {"id": 1}})
    assert answer.status_code == 200 and answer.json["status"] == "ignored"


def test_basic_auth_protects_the_protocol_and_the_secret_opens_the_webhook(tmp_path, caplog):
    app = make_app(tmp_path, basic_auth_user="ls", basic_auth_pass="pass-123456", webhook_secret="hook-secret")
    client = app.test_client()
    good = {"Authorization": "Basic " + base64.b64encode(b"ls:pass-123456").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"ls:wrong").decode()}
    assert client.get("/health").status_code == 200
    body = {"project": KEY, "schema": IMAGE_CONFIG}
    assert client.post("/setup", json=body).status_code == 401
    assert client.post("/setup", json=body, headers=bad).status_code == 401
    assert client.post("/setup", json=body, headers=good).status_code == 200
    event = {"action": "START_TRAINING", "project": project_payload()}
    denied = client.post("/webhook", json=event)
    assert denied.status_code == 401 and "X-LabelHub-Secret" in denied.json["error"]
    assert "hook-secret" not in denied.get_data(as_text=True)
    refused = [r.getMessage() for r in caplog.records if "POST /webhook → 401" in r.getMessage()]
    assert len(refused) == 1 and "X-LabelHub-Secret" in refused[0]  # Label Studio logs nothing: the backend does
    assert client.post("/webhook", json=event, headers={"X-LabelHub-Secret": "pass-123456"}).status_code == 401
    assert "pass-123456" not in caplog.text and "hook-secret" not in caplog.text
    assert client.post("/webhook", json=event, headers={"X-LabelHub-Secret": "hook-secret"}).status_code == 200
    assert client.post("/webhook", json=event, headers=good).status_code == 200  # START_TRAINING has basic auth


@pytest.mark.parametrize("header", [
    "Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic " + base64.b64encode(b"ls:\xff\xfe").decode(), "Bearer pass-123456", "Basic", "ls:pass-123456",
    "Basic " + base64.b64encode("ls:pass-123456\u00e9".encode()).decode(),
])
def test_malformed_or_wrong_basic_auth_is_a_json_401(tmp_path, header):
    client = make_app(tmp_path, basic_auth_user="ls", basic_auth_pass="pass-123456").test_client()
    answer = client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}, headers={"Authorization": header})
    assert answer.status_code == 401 and answer.json["code"] == "unauthorized"
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="labelhub"'


def test_basic_auth_scheme_is_case_insensitive(tmp_path):
    # RFC 7235 §2.1: the scheme is case-insensitive (werkzeug's request.authorization reads it so)
    client = make_app(tmp_path, basic_auth_user="ls", basic_auth_pass="pass-123456").test_client()
    header = {"Authorization": "basic " + base64.b64encode(b"ls:pass-123456").decode()}
    assert client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}, headers=header).status_code == 200


def test_legacy_train_endpoint_queues_the_annotated_tasks(app, client):
    tasks, labels = image_tasks(20)
    body = {"project": KEY, "label_config": IMAGE_CONFIG, "annotations": [
        {**t, "annotations": [annotation_event(500 + i, t, y)["annotation"]]} for i, (t, y) in enumerate(zip(tasks, labels))]}
    assert client.post("/train", json=body).status_code == 200
    train(app)
    assert client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).json["model_version"].startswith("labelhub-0-") is False


def test_multiple_choice_text_project(app, client):
    from tests.backend_fixtures import choices_config

    config = choices_config(["plot", "review", "long"], object_tag="Text", value="text", multiple=True)
    tasks, labels = plot_review_tasks(40)
    multi = [[y] + (["long"] if len(t["data"]["text"]) > 200 else []) for t, y in zip(tasks, labels)]
    post_annotations(client, tasks[:30], multi[:30], config=config)
    train(app)
    answer = client.post("/predict", json={"tasks": tasks[30:], "project": KEY, "label_config": config})
    results = answer.json["results"]
    assert all(r["model_version"].startswith("labelhub-30-") for r in results)
    hits = sum(set(r["result"][0]["value"]["choices"]) >= {y[0]} for r, y in zip(results, multi[30:]) if r["result"])
    assert hits >= 7


def test_text_project_learns_plot_versus_review(app, client):
    tasks, labels = plot_review_tasks(60)
    post_annotations(client, tasks[:40], labels[:40], config=PLOT_REVIEW_CONFIG)
    train(app)
    results = client.post("/predict", json={"tasks": tasks[40:], "project": KEY,
                                            "label_config": PLOT_REVIEW_CONFIG}).json["results"]
    correct = sum(r["result"][0]["value"]["choices"] == [y] for r, y in zip(results, labels[40:]))
    assert correct / 20 >= 0.8


class EchoModel(LabelStudioMLBase):
    """A label-studio-ml style model: setup/predict/fit with self.get/self.set."""

    def setup(self):
        self.from_name, self.to_name, self.value = self.get_first_tag_occurence("Choices", "Image")
        if not self.has("model_version"):
            self.set("model_version", "echo-1")

    def predict(self, tasks, context=None, **kwargs):
        label = self.get("last_label") or "Bag"
        return [{"result": [{"from_name": self.from_name, "to_name": self.to_name, "type": "choices",
                             "value": {"choices": [label]}}], "score": 0.5} for _ in tasks]

    def fit(self, event, data, **kwargs):
        if event == "ANNOTATION_CREATED":
            self.set("last_label", data["annotation"]["result"][0]["value"]["choices"][0])
            self.bump_model_version()


def test_a_label_studio_ml_model_moves_over_by_changing_its_import(tmp_path):
    app = make_app(tmp_path, model_class="tests.test_backend_protocol:EchoModel")
    client = app.test_client()
    assert client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).json == {"model_version": "echo-1"}
    tasks, _ = image_tasks(2)
    post_annotations(client, tasks, ["Coat", "Dress"])
    train(app)
    version = client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).json["model_version"]
    assert version.startswith("2.")
    results = client.post("/predict", json={"tasks": tasks, "project": KEY, "label_config": IMAGE_CONFIG}).json
    assert [r["result"][0]["value"]["choices"] for r in results["results"]] == [["Dress"], ["Dress"]]
    assert all(r["model_version"] == version for r in results["results"])


def test_metrics_are_prometheus_text(client):
    client.get("/health")
    client.post("/webhook", json={"action": "TASKS_CREATED", "project": {"id": 1}})
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    text = answer.get_data(as_text=True)
    assert "labelhub_requests_total" in text and "labelhub_webhook_events_total" in text


def test_extra_params_emptied_in_label_studio_are_emptied_here(app, client):
    """Label Studio sends ``"extra_params": null`` once the dialog's Extra params are cleared; a body without the key
    (another client) keeps the stored ones."""
    store = app.extensions["labelhub"].store
    params = {"controls": {"label": {"learned": True}}}
    assert client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG, "extra_params": params}).status_code == 200
    assert client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG}).status_code == 200
    assert store.project(KEY).project()["extra_params"] == params
    assert client.post("/setup", json={"project": KEY, "schema": IMAGE_CONFIG, "extra_params": None}).status_code == 200
    assert store.project(KEY).project()["extra_params"] == {}
