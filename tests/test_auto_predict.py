"""Prediction jobs the backend starts by itself (``LABELHUB_AUTO_PREDICT=true``), through the real Label Studio:
annotations saved → a retrain → every unlabeled task predicted with the new version, and the older versions
deleted (``LABELHUB_KEEP_VERSIONS=1``); tasks imported → Label Studio's ``TASKS_CREATED`` webhook → the new tasks
predicted. No "Retrieve predictions", no CLI.
"""
from __future__ import annotations

from collections import Counter

import pytest
import requests

from tests.backend_fixtures import TEXT_CONFIG, BackendServer, text_tasks, wait_for
from tests.test_backend_labelstudio import _api, _connect


@pytest.fixture(scope="module")
def backend(label_studio, tmp_path_factory):
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token
           or label_studio.api_key, "LABELHUB_AUTO_PREDICT": "true", "LABELHUB_KEEP_VERSIONS": "1",
           "LABELHUB_AUTO_PREDICT_INTERVAL": "5"}  # the floor between whole-project jobs, shorter than the default
    with BackendServer(tmp_path_factory.mktemp("backend-auto"), workers=2, threads=4, env=env) as srv:
        yield srv


def _state(label_studio, project_id) -> dict[int, tuple[bool, Counter]]:
    """``{task id: (is_labeled, Counter of its predictions' model versions)}``; only those fields are listed (polled:
    the whole of ``fields=all`` costs Label Studio five times the CPU)."""
    tasks = _api(label_studio, "GET", f"/api/tasks/?project={project_id}&page_size=1000&fields=all"
                                      "&include=id,is_labeled,predictions")["tasks"]
    return {t["id"]: (t["is_labeled"], Counter(p["model_version"] for p in t["predictions"])) for t in tasks}


def _current(backend) -> str | None:
    """The backend's newest trained version (``None`` before the first fit, which waits for a cold ONNX export)."""
    versions = requests.get(backend.url + "/versions", timeout=10).json()["versions"]
    return versions[-1] if versions else None


def _all_predicted(label_studio, project_id, backend, expected_tasks: int):
    """The current version when every unlabeled task has exactly one prediction of it (else ``None``)."""
    version = _current(backend)
    if version is None:
        return None
    state = _state(label_studio, project_id)
    unlabeled = [versions for labeled, versions in state.values() if not labeled]
    if len(state) != expected_tasks or not all(v[version] == 1 for v in unlabeled):
        return None
    return version


def annotated_text_project(label_studio, backend, title: str, n_tasks: int, annotated: int, imported=None):
    """A Choices-over-Text project connected to ``backend``, with the first ``imported`` (default: all) of ``n_tasks``
    text tasks, the first ``annotated`` of them by id annotated with their own label (Label Studio sends
    ANNOTATION_CREATED: the backend retrains). Returns ``(project, tasks)``: ``tasks`` all ``n_tasks``, imported or
    not."""
    client = label_studio.client()
    project = client.projects.create(title=title, label_config=TEXT_CONFIG)
    tasks, labels = text_tasks(n_tasks)
    client.projects.import_tasks(id=project.id, request=[t["data"] for t in tasks[:imported]])
    _connect(label_studio, backend, project.id)
    for tid, label in list(zip(sorted(_state(label_studio, project.id)), labels))[:annotated]:
        client.annotations.create(id=tid, result=[{"from_name": "label", "to_name": "text", "type": "choices",
                                                   "value": {"choices": [label]}}])
    return project, tasks


def test_a_retrain_and_new_tasks_start_prediction_jobs_by_themselves(label_studio, backend):
    client = label_studio.client()
    project, tasks = annotated_text_project(label_studio, backend, "auto-predict", 140, 30, imported=100)
    version = wait_for(lambda: _all_predicted(label_studio, project.id, backend, 100), timeout=300,
                       message="every unlabeled task predicted with the retrained version")
    assert version.startswith("labelhub-") and not version.startswith("labelhub-0-")
    state = _state(label_studio, project.id)
    assert sum(1 for labeled, _ in state.values() if not labeled) == 70
    assert all(v[version] <= 1 for _, v in state.values())  # never two of one version

    def last_job_shown():  # the last job's status; a retrain after the check above may have started a newer one
        jobs = requests.get(backend.url + "/health", timeout=10).json()["jobs"].values()
        return any(job["project_id"] == project.id and job["model_version"] in (version, _current(backend))
                   for job in jobs)

    wait_for(last_job_shown, timeout=60, message="the last prediction job's status on /health")

    # new tasks imported: Label Studio sends TASKS_CREATED, the backend predicts them with the current version
    client.projects.import_tasks(id=project.id, request=[t["data"] for t in tasks[100:140]])
    wait_for(lambda: _all_predicted(label_studio, project.id, backend, 140), timeout=300,
             message="the imported tasks predicted")

    # LABELHUB_KEEP_VERSIONS=1: after its last whole-project job, only the newest version has predictions (the
    # listing also names the project's selected set, the connected backend's title, with none)
    def versions_left():
        listed = _api(label_studio, "GET", f"/api/projects/{project.id}/model-versions/")
        return {version for version, count in listed.items() if count}

    wait_for(lambda: versions_left() == {_current(backend)}, timeout=120, message="the older versions retired")

    # the Connect Model dialog's Extra params changed: Label Studio calls /setup, the version served moves without a
    # fit, and the unlabeled tasks are predicted again with it (one prediction each), no annotation needed
    ml_id = _api(label_studio, "GET", f"/api/ml?project={project.id}")[0]["id"]
    _api(label_studio, "PATCH", f"/api/ml/{ml_id}", json={  # the dialog sends the whole form
        "url": backend.url, "project": project.id, "title": "labelhub", "is_interactive": True,
        "extra_params": {"threshold": 0.2}})
    moved = _api(label_studio, "GET", f"/api/ml/{ml_id}")["model_version"]
    assert moved != version and moved.startswith("labelhub-")

    def all_with_new_params():
        state = _state(label_studio, project.id)
        return all(v[moved] == 1 for labeled, v in state.values() if not labeled)

    wait_for(all_with_new_params, timeout=120, message="the unlabeled tasks predicted with the new Extra params")
    # /versions (Label Studio's model version picker) lists the version the new parameters serve, without a fit
    assert moved in requests.get(backend.url + "/versions", params={"project": project.id}, timeout=10).json()["versions"]


def test_requests_not_done_are_asked_again_after_a_restart(tmp_path, monkeypatch):
    """One host: a request waiting behind a running job (and the running one) survives a restart of the backend:
    the next trainer asks for it again (before, it was in memory only, and new tasks waited for the next retrain).
    ``run_job`` is replaced by a recorder: what is under test is which jobs are asked for."""
    import json
    import threading
    from types import SimpleNamespace

    from labelhub.backend import jobs
    from labelhub.backend.auto_predict import PENDING_FILE, AutoPredictor
    from labelhub.backend.settings import Settings

    settings = Settings(model_dir=tmp_path, auto_predict=True, label_studio_url="http://127.0.0.1:9",
                        label_studio_api_key="key")
    release, calls = threading.Event(), []

    def blocking_job(host, api, project_id, *, task_ids=None, unlabeled=False, **_):
        calls.append((host.name, project_id, task_ids, unlabeled))
        release.wait(30)
        return SimpleNamespace(done=0, model_version="v", failed=0)

    monkeypatch.setattr(jobs, "run_job", blocking_job)
    first = AutoPredictor(SimpleNamespace(settings=settings, name="first"))
    first.request("3.100", [6, 5])
    wait_for(lambda: calls, timeout=10)
    first.request("4.100", unlabeled=True)  # waits behind the running job
    first.request("3.100", [7])
    saved = json.loads((tmp_path / PENDING_FILE).read_text())
    assert saved == {"3.100": {"unlabeled": False, "task_ids": [5, 6, 7]},  # the running one and the next, merged
                     "4.100": {"unlabeled": True, "task_ids": []}}

    # the process dies here (the file stays); a new one takes the trainer
    second = AutoPredictor(SimpleNamespace(settings=settings, name="second"))
    second.resume_interrupted()
    release.set()
    assert second.wait_idle(10) and first.wait_idle(10)
    assert sorted(c[1:] for c in calls if c[0] == "second") == [(3, [5, 6, 7], False), (4, None, True)]
    assert json.loads((tmp_path / PENDING_FILE).read_text()) == {}


def test_a_projects_whole_project_jobs_start_at_most_once_per_interval(tmp_path, monkeypatch):
    """With a retrain every few labels, every retrain started a whole-project job: a soak of four annotators wrote
    27,638 predictions for 428 tasks in 25 minutes. Requests within LABELHUB_AUTO_PREDICT_INTERVAL of the last
    whole-project start wait and merge into one; new tasks of another project do not wait."""
    import time
    from types import SimpleNamespace

    from labelhub.backend import jobs
    from labelhub.backend.auto_predict import AutoPredictor
    from labelhub.backend.labelstudio_api import LabelStudioClient
    from labelhub.backend.settings import Settings

    LabelStudioClient("http://127.0.0.1:9", "key")  # label-studio-sdk imported (about 1 s) before the clock starts
    settings = Settings(model_dir=tmp_path, auto_predict=True, label_studio_url="http://127.0.0.1:9",
                        label_studio_api_key="key", auto_predict_interval=1.5)
    started = []

    def recorded(host, api, project_id, *, task_ids=None, unlabeled=False, **_):
        started.append((time.monotonic(), project_id, unlabeled))
        return SimpleNamespace(done=0, model_version="v", failed=0)

    monkeypatch.setattr(jobs, "run_job", recorded)
    auto = AutoPredictor(SimpleNamespace(settings=settings, name="one"))
    begin = time.monotonic()
    auto.request("3.100", unlabeled=True)
    wait_for(lambda: started, timeout=10)
    for _ in range(5):  # five retrains in a row
        auto.request("3.100", unlabeled=True)
    auto.request("4.100", [1, 2])  # new tasks of another project
    assert auto.wait_idle(10)
    whole = [at - begin for at, project, unlabeled in started if project == 3]
    other = [at - begin for at, project, _ in started if project == 4]
    assert len(whole) == 2 and whole[1] - whole[0] >= 1.5 and other[0] < 1.0, started
    assert Settings.from_env({"LABELHUB_AUTO_PREDICT_INTERVAL": "0"}).auto_predict_interval == 0


@pytest.fixture(scope="module")
def redis_backend(label_studio, tmp_path_factory):
    """A backend on Redis (``LABELHUB_REDIS_URL``) with auto-predict, and one ``labelhub worker`` taking its jobs."""
    from tests.backend_fixtures import RedisServer, auto_predict_on_redis

    folder = tmp_path_factory.mktemp("backend-auto-redis")
    with RedisServer(folder / "redis") as redis_server, \
            auto_predict_on_redis(label_studio, f"{redis_server.url}/0", folder) as srv:
        yield srv


def test_on_redis_a_retrain_has_a_worker_predict_every_unlabeled_task_once(label_studio, redis_backend):
    """The automatic jobs of a backend on Redis go through its trainer's loop (the interval, the merging) to RQ and a
    ``labelhub worker`` (before, no test ran them end to end: each retrain enqueued one straight away)."""
    project, _ = annotated_text_project(label_studio, redis_backend, "auto-predict on redis", 80, 20)
    version = wait_for(lambda: _all_predicted(label_studio, project.id, redis_backend, 80), timeout=300,
                       message="every unlabeled task predicted by the worker with the retrained version")
    assert not version.startswith("labelhub-0-")
    assert all(v[version] <= 1 for _, v in _state(label_studio, project.id).values())  # never two of one version
    # the worker ran the project's job (Label Studio, listing tasks without a prediction, may also ask /predict)
    wait_for(lambda: f"Successfully completed labelhub auto-predict: project {project.id}."
             in redis_backend.worker_log.read_text(errors="replace"), timeout=120, message="the worker's job done")
