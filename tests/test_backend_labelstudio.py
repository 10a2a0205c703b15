"""Integration with a real Label Studio 1.23.2: connect, predict, annotate, learn, predict better.

Label Studio calls the backend itself: ``client.ml.create`` makes it call ``/health`` and ``/setup``
(and create the project webhook to ``/webhook``), the Data Manager action ``retrieve_tasks_predictions``
(the "Retrieve predictions" button) makes it call ``/predict``, and each annotation saved through its API
makes it send ``ANNOTATION_CREATED`` to ``/webhook``. Images are uploaded into Label Studio and fetched
back by the backend from ``/data/upload/...`` with ``LABEL_STUDIO_API_KEY``.
"""
from __future__ import annotations

import pytest
import requests

from labelhub.sync.demo.sample_data import fashion_mnist, png_bytes
from tests.backend_fixtures import (IMAGE_CLASSES, PLOT_REVIEW_CLASSES, PLOT_REVIEW_CONFIG, BackendServer,
                                    choices_config, plot_review_tasks, wait_for)
from tests.in_process import invoke_labelhub

CLASSES = ["Trouser", "Sneaker", "Bag", "Pullover"]  # four Fashion-MNIST classes: chance is 0.25


@pytest.fixture(scope="module")
def backend(label_studio, tmp_path_factory):
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token
           or label_studio.api_key}
    with BackendServer(tmp_path_factory.mktemp("backend-ls"), workers=2, threads=4, env=env) as srv:
        yield srv


def _api(label_studio, method, path, **kwargs):
    answer = requests.request(method, label_studio.url + path, timeout=60,
                              headers={"Authorization": f"Token {label_studio.api_key}"}, **kwargs)
    answer.raise_for_status()
    return answer.json() if answer.content else None


def _tasks(label_studio, project_id):
    tasks = _api(label_studio, "GET", f"/api/tasks?project={project_id}&page_size=1000&fields=all")
    return sorted(tasks["tasks"] if isinstance(tasks, dict) else tasks, key=lambda t: t["id"])


def _predictions(label_studio, task_id):
    return _api(label_studio, "GET", f"/api/predictions/?task={task_id}")


def _connect(label_studio, backend, project_id):
    client = label_studio.client()
    ml = client.ml.create(project=project_id, url=backend.url, title="labelhub", is_interactive=True)
    ml = client.ml.get(id=ml.id)
    assert ml.state == "CO", ml.error_message
    assert ml.model_version.startswith("labelhub-0-")
    webhooks = _api(label_studio, "GET", f"/api/webhooks/?project={project_id}")
    assert [w["url"] for w in webhooks] == [backend.url + "/webhook"]
    return ml


def _retrieve(label_studio, project_id, task_ids):
    label_studio.client().actions.create(id="retrieve_tasks_predictions", project=project_id,
                                         selected_items={"all": False, "included": list(task_ids)})


def _retrieve_version(label_studio, project_id, task_ids, version):
    """Retrieve predictions until every task has one of ``version``, asking again for those still without, as a
    user clicks it again: Label Studio answers the action with nothing when its health check of a busy backend times
    out, and skips the tasks that already have a prediction of the version (so each still gets exactly one)."""
    def missing():
        return [i for i in task_ids if not any(p["model_version"] == version for p in _predictions(label_studio, i))]

    def retrieved():
        if ids := missing():
            _retrieve(label_studio, project_id, ids)
        return not ids

    wait_for(retrieved, timeout=120, interval=1, message=f"predictions of {version}")


def _learn_and_check(label_studio, backend, project_id, ml, train, held_out, from_name, to_name, chance):
    client = label_studio.client()
    # before any annotation: Label Studio stores the backend's empty predictions with a labelhub-0-... version
    _retrieve(label_studio, project_id, [t["id"] for t, _ in held_out])
    first = _predictions(label_studio, held_out[0][0]["id"])
    assert [(p["model_version"][:11], p["result"]) for p in first] == [("labelhub-0-", [])]

    for task, label in train:  # each save makes Label Studio POST ANNOTATION_CREATED to /webhook
        client.annotations.create(id=task["id"], result=[{"from_name": from_name, "to_name": to_name,
                                                          "type": "choices", "value": {"choices": [label]}}])
    pending = backend.model_dir / "events" / "pending"
    wait_for(lambda: not list(pending.iterdir()), timeout=120, message="the trainer to apply the events")
    version = wait_for(lambda: (v := requests.get(backend.url + "/versions", timeout=5).json()["versions"])
                       and v[-1], timeout=60, message="a new model version")

    _retrieve_version(label_studio, project_id, [t["id"] for t, _ in held_out], version)
    assert client.ml.get(id=ml.id).model_version == version
    correct = 0
    for task, label in held_out:
        preds = [p for p in _predictions(label_studio, task["id"]) if p["model_version"] == version]
        assert len(preds) == 1, _predictions(label_studio, task["id"])
        assert preds[0]["score"] is not None
        correct += preds[0]["result"][0]["value"]["choices"] == [label]
    accuracy = correct / len(held_out)
    assert accuracy >= chance + 0.35, accuracy
    return version


def test_image_project_connects_predicts_learns_from_annotations_and_predicts_better(label_studio, backend):
    client = label_studio.client()
    project = client.projects.create(title="labelhub images", label_config=choices_config(CLASSES))
    images, labels = fashion_mnist("test", 400)
    picked = [i for i in range(len(labels)) if IMAGE_CLASSES[labels[i]] in CLASSES][:60]
    files = [(f"file{i}", (f"img{i:04d}.png", png_bytes(images[i]), "image/png")) for i in picked]
    _api(label_studio, "POST", f"/api/projects/{project.id}/import", files=files)
    tasks = _tasks(label_studio, project.id)
    assert len(tasks) == 60 and tasks[0]["data"]["image"].startswith("/data/upload/")
    by_name = {t["data"]["image"].rsplit("-", 1)[-1]: t for t in tasks}
    rows = [(by_name[f"img{i:04d}.png"], IMAGE_CLASSES[labels[i]]) for i in picked]
    ml = _connect(label_studio, backend, project.id)
    version = _learn_and_check(label_studio, backend, project.id, ml, rows[:40], rows[40:], "label", "image",
                               chance=0.25)

    # interactive pre-annotation: Label Studio sends one task with the annotator's context
    answer = requests.post(f"{label_studio.url}/api/ml/{ml.id}/interactive-annotating",
                           headers={"Authorization": f"Token {label_studio.api_key}"},
                           json={"task": rows[45][0]["id"], "context": {"result": []}}, timeout=60)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["model_version"] == version and data["result"][0]["type"] == "choices"


def test_text_project_connects_predicts_learns_from_annotations_and_predicts_better(label_studio, backend):
    client = label_studio.client()
    project = client.projects.create(title="labelhub texts", label_config=PLOT_REVIEW_CONFIG)
    source, labels = plot_review_tasks(50)
    client.projects.import_tasks(id=project.id, request=[t["data"] for t in source])
    tasks = _tasks(label_studio, project.id)
    by_text = {t["data"]["text"]: t for t in tasks}
    rows = [(by_text[s["data"]["text"]], y) for s, y in zip(source, labels)]
    assert set(labels) == set(PLOT_REVIEW_CLASSES)
    ml = _connect(label_studio, backend, project.id)
    version = _learn_and_check(label_studio, backend, project.id, ml, rows[:30], rows[30:], "label", "text", chance=0.5)
    # connecting selected the backend's title as the prediction set: no stored prediction carries it, so the Data
    # Manager's "Prediction score" column was blank; a prediction job selects its version instead
    assert client.projects.get(id=project.id).model_version == "labelhub"
    env = {"MODEL_DIR": str(backend.model_dir), "LABEL_STUDIO_URL": label_studio.url, "TQDM_DISABLE": "1",
           "LABEL_STUDIO_API_KEY": label_studio.personal_token or label_studio.api_key}
    answer = invoke_labelhub("predict", "--project", str(project.id), env=env, check=True)
    assert f"predictions of {version} written" in answer.stdout + answer.stderr
    assert client.projects.get(id=project.id).model_version == version
    scores = [t["predictions_score"] for t in _api(label_studio, "GET", f"/api/tasks?project={project.id}"
                                                                        "&page_size=100&fields=all")["tasks"]]
    assert len(scores) == 50 and all(score is not None for score in scores)


def test_start_training_learns_from_annotations_made_before_the_backend_was_connected(label_studio, make_project,
                                                                                     tmp_path):
    """No webhook ever brought them: "Start training" reads them from Label Studio."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import plot_review_tasks

    client = label_studio.client()
    created = make_project("annotated before", PLOT_REVIEW_CONFIG)
    tasks, labels = plot_review_tasks(12)
    client.projects.import_tasks(created.id, request=[task["data"] for task in tasks])
    ids = sorted(t.id for t in client.tasks.list(project=created.id))
    for task_id, label in zip(ids[:10], labels[:10]):
        client.annotations.create(task_id, result=[{"from_name": "label", "to_name": "text", "type": "choices",
                                                     "value": {"choices": [label]}}])
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False,
                      "label_studio_url": label_studio.url, "label_studio_api_key": label_studio.api_key})
    project = {"id": created.id, "created_at": created.created_at.isoformat(), "label_config": PLOT_REVIEW_CONFIG}
    answer = app.test_client().post("/webhook", json={"action": "START_TRAINING", "project": project})
    assert answer.status_code == 200
    backend = app.extensions["labelhub"]
    backend.trainer.run_once()
    key = backend.store.resolve_webhook_project(project)
    assert backend.store.project(key).kv()["model_version"].startswith("labelhub-10-")
