"""``labelhub predict``: a whole project pre-annotated through a real Label Studio 1.23.2, one prediction per task
and model version, also after a SIGKILL in the middle; its status on ``--status`` and ``/health``.

The model state is trained the way the backend trains it (annotation events posted to ``/webhook`` through
Flask's test client, the trainer run once); the job then loads it from the same ``MODEL_DIR``.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager

import pytest
import requests
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from labelhub.backend.app import create_app
from labelhub.backend.job_status import BatchResult, JobStatus, latest_status, read_statuses
from labelhub.backend.jobs import _newest, _write, plan
from labelhub.backend.labelstudio_api import PredictionRow, TaskRow
from labelhub.backend.model import LabelStudioMLBase
from labelhub.backend.retire import superseded
from labelhub.backend.state import Store
from labelhub.cli import main
from tests.backend_fixtures import IMAGE_CONFIG, ROOT, TEXT_CLASSES, TEXT_CONFIG, annotation_event, text_tasks, wait_for

N_TASKS = 300


def _api(label_studio, method, path, **kwargs):
    answer = requests.request(method, label_studio.url + path, timeout=60,
                              headers={"Authorization": f"Token {label_studio.api_key}"}, **kwargs)
    answer.raise_for_status()
    return answer.json() if answer.content else None


def _predictions(label_studio, project_id) -> dict[int, list[dict]]:
    """``{task id: [prediction, ...]}`` of every task of the project, as Label Studio holds them."""
    tasks = _api(label_studio, "GET", f"/api/tasks?project={project_id}&page_size=10000&fields=all"
                                      "&include=id,predictions")["tasks"]
    return {t["id"]: t["predictions"] for t in tasks}


def _per_task(label_studio, project_id, version) -> Counter:
    """How many tasks have 0, 1, 2, ... predictions of ``version``."""
    return Counter(sum(p["model_version"] == version for p in preds)
                   for preds in _predictions(label_studio, project_id).values())


@contextmanager
def _keep_root_logging():
    """The CLI installs its own root log handler (with redaction): give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:], root.level = handlers, level


def _cli(*args, env):
    with _keep_root_logging():
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


class _Project:
    """A Label Studio project of text tasks and a backend ``MODEL_DIR`` trained on some of them."""

    def __init__(self, label_studio, model_dir, n_tasks: int = N_TASKS):
        self.ls, self.model_dir = label_studio, model_dir
        client = label_studio.client()
        self.project = client.projects.create(title="labelhub predict", label_config=TEXT_CONFIG)
        self.id = self.project.id
        source, self.labels = text_tasks(n_tasks)
        client.projects.import_tasks(id=self.id, request=[t["data"] for t in source])
        by_text = {t["data"]["text"]: t["id"] for t in _api(
            label_studio, "GET", f"/api/tasks?project={self.id}&page_size=1000")["tasks"]}
        self.tasks = [{"id": by_text[s["data"]["text"]], "data": s["data"]} for s in source]
        self.app = create_app({"model_dir": model_dir, "start_trainer": False, "warmup": False})
        self.payload = {"id": self.id, "created_at": self.project.created_at.isoformat(), "title": "t",
                        "label_config": TEXT_CONFIG}
        self.key = self.app.extensions["labelhub"].store.resolve_webhook_project(self.payload)
        self.first_version: str | None = None  # trained on 40 tasks, every task predicted with it
        self.env = {"MODEL_DIR": str(model_dir), "LABEL_STUDIO_URL": label_studio.url, "TQDM_DISABLE": "1",
                    "LABEL_STUDIO_API_KEY": label_studio.personal_token or label_studio.api_key}

    def train(self, start: int, stop: int) -> str:
        """Annotate tasks ``start:stop`` through ``/webhook``, run the trainer; return the new version."""
        client = self.app.test_client()
        for i in range(start, stop):
            body = annotation_event(10_000 + i, self.tasks[i], self.labels[i], project=self.payload)
            assert client.post("/webhook", json=body).status_code == 200
        self.app.extensions["labelhub"].trainer.run_once()
        return self.app.extensions["labelhub"].store.project(self.key).kv()["model_version"]

    def wait_until_midway(self, version: str) -> None:
        """Wait until the running job of ``version`` has written 50 predictions (its status file says so)."""
        status_path = self.model_dir / "jobs" / f"{self.key}.json"

        def midway():
            try:
                status = json.loads(status_path.read_bytes())
            except (OSError, ValueError):
                return False
            return status["model_version"] == version and status["state"] == "running" and status["done"] >= 50

        wait_for(midway, timeout=120, interval=0.02, max_interval=0.02, message="the job to write 50 predictions")

    def ensure_trained(self) -> None:
        """Train on tasks 0:40 unless an earlier test did (a test run alone)."""
        if self.first_version is None:
            self.first_version = self.train(0, 40)


@pytest.fixture(scope="module")
def project(label_studio, tmp_path_factory):
    return _Project(label_studio, tmp_path_factory.mktemp("predict-jobs-models"))


def test_plan_puts_known_low_scores_first_then_unscored_tasks_and_skips_the_current_version():
    tasks = [TaskRow(1, {}), TaskRow(2, {}, predictions=(PredictionRow(10, "v1", 0.9),)),
             TaskRow(3, {}, predictions=(PredictionRow(11, "v1", 0.2), PredictionRow(15, "v1b", 0.6))),
             TaskRow(4, {}, predictions=(PredictionRow(12, "v2", 0.1),)),  # has the current version
             TaskRow(5, {}, is_labeled=True, predictions=(PredictionRow(13, "v1", 0.3),)), TaskRow(6, {})]
    assert plan(tasks, "v2", batch_size=2) == [[5, 3], [2, 1], [6]]  # 3's newest score is 0.6
    assert plan(tasks, "v2", unlabeled=True, batch_size=10) == [[3, 2, 1, 6]]
    assert plan(tasks, "v2", task_ids=[6, 4, 2], batch_size=10) == [[2, 6]]
    with pytest.raises(ValueError):
        plan(tasks, "v2", batch_size=0)


def test_predict_gives_every_task_one_prediction_of_the_current_version_and_reports_it(label_studio, project):
    version = project.train(0, 40)
    assert version.startswith("labelhub-40-")
    answer = _cli("predict", "--project", str(project.id), "--batch-size", "64", env=project.env)
    assert answer.exit_code == 0, answer.output
    project.first_version = version
    assert f"{N_TASKS} predictions of {version} written, 0 skipped, 0 failed" in answer.output
    assert "Prelabeling" not in answer.output  # the job selected its version: no hint
    assert _per_task(label_studio, project.id, version) == Counter({1: N_TASKS})
    preds = [p for ps in _predictions(label_studio, project.id).values() for p in ps]
    assert all(p["result"][0]["value"]["choices"][0] in TEXT_CLASSES and 0 <= p["score"] <= 1 for p in preds)
    # the Data Manager's "Prediction score" averages the project's selected version: the job selected it
    assert _api(label_studio, "GET", f"/api/projects/{project.id}")["model_version"] == version

    status = json.loads(_cli("predict", "--project", str(project.id), "--status", env=project.env).output)
    assert (status["state"], status["total"], status["done"], status["queued"], status["running"], status["failed"]) \
        == ("done", N_TASKS, N_TASKS, 0, 0, 0)
    health = project.app.test_client().get("/health").json
    assert health["jobs"][project.key]["state"] == "done" and health["jobs"][project.key]["done"] == N_TASKS
    metrics = project.app.test_client().get("/metrics").get_data(as_text=True)
    assert "labelhub_predictions_written_total" in metrics and 'labelhub_job_tasks_total{outcome="written"}' in metrics

    again = _cli("predict", "--project", str(project.id), env=project.env)  # nothing left to do
    assert again.exit_code == 0 and "0 predictions" in again.output and "(0 tasks planned" in again.output
    assert _per_task(label_studio, project.id, version) == Counter({1: N_TASKS})


def test_sigkill_in_the_middle_then_rerun_leaves_exactly_one_prediction_per_task(label_studio, project):
    old = project.first_version
    if old is None:  # run alone
        old = project.train(0, 40)
        assert _cli("predict", "--project", str(project.id), env=project.env).exit_code == 0
    version = project.train(40, 60)  # a new version: every task lacks it
    assert version != old and version.startswith("labelhub-60-")
    proc = subprocess.Popen([sys.executable, "-m", "tests.guarded", "predict", "--project", str(project.id),
                             "--batch-size", "10"], cwd=ROOT, env={**os.environ, **project.env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        project.wait_until_midway(version)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed = _per_task(label_studio, project.id, version)
    assert 50 <= killed[1] < N_TASKS and set(killed) <= {0, 1}, killed
    assert latest_status(project.model_dir, project.id).view()["state"] == "interrupted"
    assert read_statuses(project.model_dir)[project.key]["state"] == "interrupted"

    answer = _cli("predict", "--project", str(project.id), "--batch-size", "50", env=project.env)
    assert answer.exit_code == 0, answer.output
    assert f"{killed[0]} predictions of {version} written" in answer.output  # it went on where it stopped
    assert _per_task(label_studio, project.id, version) == Counter({1: N_TASKS})
    assert _per_task(label_studio, project.id, old) == Counter({1: N_TASKS})  # the older version is untouched


def test_all_replaces_the_current_version_of_the_selected_tasks_only(label_studio, project):
    version = _api(label_studio, "GET", f"/api/projects/{project.id}")["model_version"]
    before = _predictions(label_studio, project.id)
    picked = sorted(before)[:5]
    answer = _cli("predict", "--project", str(project.id), "--all", "--task-ids", ",".join(map(str, picked)),
                  env=project.env)
    assert answer.exit_code == 0 and "5 predictions" in answer.output, answer.output
    after = _predictions(label_studio, project.id)
    assert _per_task(label_studio, project.id, version) == Counter({1: N_TASKS})
    new_ids = {tid: {p["id"] for p in after[tid] if p["model_version"] == version} for tid in after}
    old_ids = {tid: {p["id"] for p in before[tid] if p["model_version"] == version} for tid in before}
    assert [tid for tid in after if new_ids[tid] != old_ids[tid]] == picked


def test_filter_and_view_predict_the_tasks_a_data_manager_filter_or_tab_keeps(label_studio, project):
    """``--filter`` (Data Manager filters as JSON) and ``--view`` (a tab's filters, here an ``or`` of two ids) plan
    only the tasks Label Studio lists for them; a filter Label Studio would ignore (no ``filter:tasks:``) is refused
    before anything is listed, and so is a tab of another project."""
    project.ensure_trained()
    answer = _cli("predict", "--project", str(project.id), "--select-version", env=project.env)  # every task once
    assert answer.exit_code == 0, answer.output
    version = _api(label_studio, "GET", f"/api/projects/{project.id}")["model_version"]
    ids = sorted(_predictions(label_studio, project.id))

    def replaced(run) -> list[int]:  # the tasks whose prediction of the version the run replaced
        before = _predictions(label_studio, project.id)
        answer = run()
        assert answer.exit_code == 0, answer.output
        after = _predictions(label_studio, project.id)
        assert _per_task(label_studio, project.id, version) == Counter({1: N_TASKS})
        return [t for t in after if {p["id"] for p in after[t] if p["model_version"] == version}
                != {p["id"] for p in before[t] if p["model_version"] == version}]

    def by_id(operator, value):
        return {"filter": "filter:tasks:id", "operator": operator, "type": "Number", "value": value}

    window = json.dumps([by_id("greater", ids[10] - 1), by_id("less", ids[14] + 1)])  # a list: joined by and
    assert replaced(lambda: _cli("predict", "--project", str(project.id), "--all", "--filter", window,
                                 env=project.env)) == ids[10:15]
    view = label_studio.client().views.create(project=project.id, data={"filters": {
        "conjunction": "or", "items": [by_id("equal", ids[3]), by_id("equal", ids[30])]}})
    assert replaced(lambda: _cli("predict", "--project", str(project.id), "--all", "--view", str(view.id),
                                 env=project.env)) == [ids[3], ids[30]]

    nothing = json.dumps({"filter": "filter:tasks:data.no_such_field", "operator": "equal", "type": "String",
                          "value": "x"})
    answer = _cli("predict", "--project", str(project.id), "--filter", nothing, "--keep-versions", "1",
                  env=project.env)
    assert answer.exit_code == 0 and "0 tasks planned" in answer.output, answer.output
    assert "the Data Manager filters keep no task: nothing to predict" in answer.output, answer.output
    assert "--keep-versions retired nothing: the job covered part of the project" in answer.output, answer.output
    ignored = json.dumps({"filter": "tasks:id", "operator": "equal", "type": "Number", "value": ids[0]})
    answer = _cli("predict", "--project", str(project.id), "--filter", ignored, env=project.env)
    assert answer.exit_code == 2 and "Invalid value for --filter: item 1: the filter must start with " \
        "filter:tasks: (e.g. filter:tasks:data.split); Label Studio ignores 'tasks:id'" in answer.output, answer.output
    answer = _cli("predict", "--project", str(project.id), "--filter", window, "--task-ids", "1", env=project.env)
    assert answer.exit_code == 2 and "give only one of --task-ids, --filter and --view" in answer.output, answer.output
    other = label_studio.client().projects.create(title="another", label_config=TEXT_CONFIG)
    theirs = label_studio.client().views.create(project=other.id, data={"filters": {
        "conjunction": "and", "items": [by_id("equal", 1)]}})
    answer = _cli("predict", "--project", str(project.id), "--view", str(theirs.id), env=project.env)
    assert answer.exit_code == 1 and f"Data Manager tab {theirs.id} is not a tab of project {project.id}" in \
        answer.output, answer.output


def test_sigterm_in_the_middle_ends_in_one_line_saying_to_run_again_and_the_rerun_goes_on(label_studio, project):
    project.ensure_trained()
    version = project.train(100, 120)  # a new version: every task lacks it
    proc = subprocess.Popen([sys.executable, "-m", "tests.guarded", "predict", "--project", str(project.id),
                             "--batch-size", "10"], cwd=ROOT, env={**os.environ, **project.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        project.wait_until_midway(version)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 1, err  # not -15: the job's status was saved
    last = err.splitlines()[-1]
    assert last.startswith("Error: interrupted by SIGTERM after ") and "Traceback" not in err, err
    assert last.endswith("run the same command again to go on where it stopped (tasks that have a prediction of the "
                         "version are skipped)")
    status = latest_status(project.model_dir, project.id)
    assert (status.state, status.error) == ("failed", "interrupted (SIGTERM)") and 50 <= status.done < N_TASKS
    assert status.view()["state"] == "failed"

    answer = _cli("predict", "--project", str(project.id), "--batch-size", "50", env=project.env)
    assert answer.exit_code == 0, answer.output
    assert _per_task(label_studio, project.id, version) == Counter({1: N_TASKS})


def test_without_a_terminal_predict_logs_a_progress_line_at_info(label_studio, project, monkeypatch):
    monkeypatch.setattr("labelhub.backend.jobs.PROGRESS_LOG_SECONDS", 0.0)  # every 10 s: each update here
    project.ensure_trained()
    picked = sorted(_predictions(label_studio, project.id))[10:20]
    env = {k: v for k, v in project.env.items() if k != "TQDM_DISABLE"}  # CliRunner's stderr is no terminal
    answer = _cli("predict", "--project", str(project.id), "--all", "--task-ids", ",".join(map(str, picked)),
                  "--batch-size", "5", env=env)
    assert answer.exit_code == 0, answer.output
    lines = [line for line in answer.output.splitlines() if " INFO labelhub.backend.jobs: " in line
             and " tasks predicted, " in line]
    assert len(lines) >= 2 and lines[-1].split(": ", 1)[1].startswith(
        f"project {project.id}: 10 of 10 tasks predicted, 5 written so far (each batch of 5 is written when it ends), "
        "0 failed ("), lines


def test_task_ids_the_project_lacks_are_named_in_a_warning(label_studio, project):
    project.ensure_trained()
    some = sorted(_predictions(label_studio, project.id))[0]
    absent = list(range(990_001, 990_008))
    answer = _cli("predict", "--project", str(project.id), "--task-ids", ",".join(map(str, [some, *absent])),
                  env=project.env)
    assert answer.exit_code == 0, answer.output
    warning = [line for line in answer.output.splitlines() if " WARNING " in line]
    assert len(warning) == 1 and warning[0].endswith(
        f"project {project.id} has no task 990001, 990002, 990003, 990004, 990005, ... (7 of the 8 task ids given): "
        "nothing to predict for them"), answer.output


class _UnknownChoiceModel(LabelStudioMLBase):
    """Answers a choice the label config does not have: Label Studio drops such predictions (or, with its
    memory-efficient import flag, stores them unchecked), so the job does not write them."""

    def predict(self, tasks, context=None, **kwargs):
        return [{"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                             "value": {"choices": ["no such class"]}}], "score": 0.5} for _ in tasks]


def test_predictions_that_do_not_fit_the_label_config_count_as_failed_and_exit_1(label_studio, tmp_path):
    client = label_studio.client()
    project = client.projects.create(title="labelhub predict dropped", label_config=TEXT_CONFIG)
    source, _ = text_tasks(3)
    client.projects.import_tasks(id=project.id, request=[t["data"] for t in source])
    key = f"{project.id}.{int(project.created_at.timestamp())}"
    Store(tmp_path).project(key).update_project(label_config=TEXT_CONFIG)
    env = {"MODEL_DIR": str(tmp_path), "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.api_key,
           "LABELHUB_MODEL": f"{__name__}:_UnknownChoiceModel", "TQDM_DISABLE": "1"}
    answer = _cli("predict", "--project", str(project.id), env=env)
    assert answer.exit_code == 1
    assert "0 predictions of 0.0.1 written, 0 skipped, 3 failed" in answer.output
    assert "Error: 3 task(s) not written" in answer.output, answer.output
    assert ("the prediction does not fit the label config: Region 0: Invalid value for control 'label'. "
            "Got: {'choices': ['no such class']}") in answer.output, answer.output
    # found by a walkthrough: it asked Label Studio to select a version without predictions (a 400 in the log)
    # and advised --select-version, which would fail the same way
    assert "could not select" not in answer.output and "--select-version" not in answer.output, answer.output
    assert "no prediction of 0.0.1 was written" in answer.output, answer.output
    assert not any(_predictions(label_studio, project.id).values())
    status = latest_status(tmp_path, project.id)
    assert (status.state, status.failed, len(status.failures)) == ("done", 3, 3)


class _DroppingLabelStudio:
    """Creates the prediction of task 1 only and answers the short count, as Label Studio's default import does for
    one it drops (the backend's own check, above, now catches a prediction that does not fit before it is sent)."""

    def __init__(self):
        self.calls = []

    def import_predictions(self, project_id, predictions):
        self.calls.append([p["task"] for p in predictions])
        return sum(1 for p in predictions if p["task"] == 1)

    def tasks(self, project_id, task_ids):
        return [TaskRow(tid, {}, predictions=(PredictionRow(tid * 10, "v1", 0.5),) if tid == 1 else ())
                for tid in task_ids]


def test_a_short_count_from_label_studio_fails_the_tasks_without_the_prediction_once_not_retried():
    api, result = _DroppingLabelStudio(), BatchResult()
    _write(api, 7, [{"task": t, "result": [], "score": 0.5, "model_version": "v1"} for t in (1, 2)], result,
           sleep=lambda _: pytest.fail("a dropped prediction is not sent again"))
    assert api.calls == [[1, 2]] and result.written == [1]
    assert list(result.failed) == [2] and "Label Studio dropped the prediction" in result.failed[2]


def test_unknown_project_or_model_dir_is_one_line_error_without_the_key(label_studio, project, tmp_path):
    answer = _cli("predict", "--project", "987654", env=project.env)
    assert answer.exit_code == 1 and answer.output.count("\n") == 1 and "not found" in answer.output
    env = {**project.env, "MODEL_DIR": str(tmp_path)}
    answer = _cli("predict", "--project", str(project.id), env=env)  # no backend's MODEL_DIR: nothing made in it
    assert answer.exit_code == 1 and answer.output.count("\n") == 1 and "is no backend's MODEL_DIR" in answer.output
    assert not any(tmp_path.iterdir())
    (tmp_path / "projects").mkdir()  # a backend's MODEL_DIR without this project
    answer = _cli("predict", "--project", str(project.id), env=env)
    assert answer.exit_code == 1 and answer.output.count("\n") == 1 and "has no model of project" in answer.output
    assert project.env["LABEL_STUDIO_API_KEY"] not in answer.output
    answer = _cli("predict", "--project", str(project.id), "--status", env=env)
    assert answer.exit_code == 1 and "no prediction job" in answer.output
    answer = _cli("predict", "--project", str(project.id), "--task-ids", "1,x", env=env)
    assert answer.exit_code == 2 and "--task-ids" in answer.output
    missing = tmp_path / "no-such-dir"  # found by a walkthrough: it was created, empty, and the error said no model
    answer = _cli("predict", "--project", str(project.id), env={**env, "MODEL_DIR": str(missing)})
    assert answer.exit_code == 1 and answer.output.count("\n") == 1 and "does not exist" in answer.output
    assert not missing.exists()


class _FlakyLabelStudio:
    """A stand-in for :class:`LabelStudioClient` whose first write lands but answers nothing (a lost answer)."""

    def __init__(self, task_ids):
        self.tasks_by_id = {i: TaskRow(i, {"text": f"t{i}"}) for i in task_ids}
        self.writes: list[list[int]] = []

    def tasks(self, project_id, task_ids=None):
        return [self.tasks_by_id[i] for i in (task_ids or self.tasks_by_id) if i in self.tasks_by_id]

    def import_predictions(self, project_id, predictions):
        from labelhub.errors import LabelStudioError

        self.writes.append([p["task"] for p in predictions])
        for p in predictions[:2]:  # the first call commits two of them, then its answer is lost
            task = self.tasks_by_id[p["task"]]
            self.tasks_by_id[p["task"]] = TaskRow(task.id, task.data, predictions=task.predictions + (
                PredictionRow(len(self.writes) * 100 + task.id, p["model_version"], p["score"]),))
        if len(self.writes) == 1:
            error = LabelStudioError("no answer from Label Studio (ReadTimeout)")
            error.status = None
            raise error
        return len(predictions[:2])


def test_a_write_without_answer_is_read_back_and_only_what_did_not_land_is_sent_again(tmp_path, monkeypatch):
    from labelhub.backend import jobs
    from labelhub.backend.app import Backend
    from labelhub.backend.jobs import run_batch
    from labelhub.backend.labelstudio_api import ProjectInfo
    from labelhub.backend.settings import Settings

    monkeypatch.setattr(jobs.time, "sleep", lambda s: None)
    host = Backend(Settings(model_dir=tmp_path, model_class=f"{__name__}:_ConstantModel", warmup=False))
    api = _FlakyLabelStudio([1, 2, 3, 4])
    result = run_batch(host, api, ProjectInfo(1, "1.1700000000", TEXT_CONFIG), [1, 2, 3, 4])
    assert api.writes == [[1, 2, 3, 4], [3, 4]]  # tasks 1 and 2 landed with the lost answer: not sent again
    assert sorted(result.written) == [1, 2, 3, 4] and not result.failed
    assert all(len(api.tasks_by_id[i].predictions_of("v-const")) == 1 for i in (1, 2, 3, 4))


class _ConstantModel(LabelStudioMLBase):
    """Answers the same choice for every task, with version ``v-const``."""

    def predict(self, tasks, context=None, **kwargs):
        return [{"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                             "value": {"choices": [TEXT_CLASSES[0]]}}], "score": 0.7, "model_version": "v-const"}
                for _ in tasks]


def _versions(label_studio, project_id) -> dict[str, int]:
    """``{model version: predictions}`` of the project, as Label Studio counts them."""
    return _api(label_studio, "GET", f"/api/projects/{project_id}/model-versions/")


def test_keep_versions_retires_older_versions_of_this_model_only_never_the_selected_one(label_studio, tmp_path):
    p = _Project(label_studio, tmp_path, n_tasks=60)
    v1 = p.train(0, 20)
    assert _cli("predict", "--project", str(p.id), env=p.env).exit_code == 0
    other = [{"task": t["id"], "model_version": "someone-else", "score": 0.5, "result": [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [TEXT_CLASSES[0]]}}]}
        for t in p.tasks[:3]]
    _api(label_studio, "POST", f"/api/projects/{p.id}/import/predictions", json=other)
    v2 = p.train(20, 30)
    assert _cli("predict", "--project", str(p.id), env=p.env).exit_code == 0
    v3 = p.train(30, 40)
    answer = _cli("predict", "--project", str(p.id), "--keep-versions", "2", env=p.env)
    assert answer.exit_code == 0, answer.output
    assert f"1 older version(s) retired, 60 predictions deleted: {v1}" in answer.output
    assert _versions(label_studio, p.id) == {v3: 60, v2: 60, "someone-else": 3}
    assert latest_status(tmp_path, p.id).retired == {v1: 60}

    # the selected prediction set stays, whatever its age; a --task-ids job retires nothing
    _api(label_studio, "PATCH", f"/api/projects/{p.id}", json={"model_version": v2})
    v4 = p.train(40, 50)
    answer = _cli("predict", "--project", str(p.id), "--task-ids", str(p.tasks[0]["id"]), "--keep-versions", "1",
                  "--no-select-version", env={**p.env})
    assert answer.exit_code == 0 and "older version(s) retired" not in answer.output, answer.output
    assert "--keep-versions retired nothing: the job covered part of the project" in answer.output, answer.output
    answer = _cli("predict", "--project", str(p.id), "--no-select-version",
                  env={**p.env, "LABELHUB_KEEP_VERSIONS": "1"})
    assert answer.exit_code == 0 and f"retired, 60 predictions deleted: {v3}" in answer.output, answer.output
    assert f"'Prediction score' shows {v2!r}; to sort by this job's scores select {v4}" in answer.output
    assert _versions(label_studio, p.id) == {v4: 60, v2: 60, "someone-else": 3}
    assert _per_task(label_studio, p.id, v4) == Counter({1: 60})
    assert _api(label_studio, "GET", f"/api/projects/{p.id}")["model_version"] == v2


@given(ages=st.lists(st.tuples(st.sampled_from("abcdefg"), st.integers(0, 10**6)), max_size=12),
       ours=st.sets(st.sampled_from("abcdefg")), keep=st.integers(1, 5), protected=st.sets(st.sampled_from("abcdefg")))
def test_superseded_names_only_our_versions_past_the_newest_kept_and_never_a_protected_one(ages, ours, keep, protected):
    from datetime import datetime, timezone

    from labelhub.backend.labelstudio_api import VersionRow

    rows = {v: VersionRow(v, 1, datetime.fromtimestamp(t, timezone.utc)) for v, t in ages}.values()
    out = superseded(rows, ours, keep, protected)
    mine = sorted((r for r in rows if r.model_version in ours), key=lambda r: r.latest, reverse=True)
    assert set(out) == {r.model_version for r in mine[keep:]} - protected
    assert not set(out) & ({r.model_version for r in mine[:keep]} | protected)
    with pytest.raises(ValueError):
        superseded(rows, ours, 0)


def test_a_project_of_a_thousand_uploaded_images_lists_in_pages_label_studio_can_answer(label_studio):
    """Label Studio 1.23.2 on SQLite answers 500 for a page of 999 or more tasks made from uploaded files; the jobs'
    and the sync's listings page below that (``labelhub.labelstudio_client.TASK_PAGE_SIZE``)."""
    from labelhub.backend.labelstudio_api import LabelStudioClient
    from labelhub.sync.demo.sample_data import fashion_mnist, png_bytes
    from labelhub.sync.labelstudio.project import LabelStudioProject

    project = label_studio.client().projects.create(title="a thousand uploads", label_config=IMAGE_CONFIG)
    images, _ = fashion_mnist("test", 1000)
    for start in range(0, 1000, 100):  # Django takes at most 100 files a request
        files = [(f"file{i}", (f"img{i:04d}.png", png_bytes(images[i]), "image/png"))
                 for i in range(start, start + 100)]
        requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files, timeout=120,
                      headers={"Authorization": f"Token {label_studio.api_key}"}).raise_for_status()
    with pytest.raises(requests.HTTPError, match="500"):  # what a page of 1,000 gets
        _api(label_studio, "GET", f"/api/tasks?project={project.id}&page_size=1000")
    assert len(LabelStudioClient(label_studio.url, label_studio.api_key).tasks(project.id)) == 1000
    assert len(LabelStudioProject(label_studio.url, label_studio.api_key, project.id).task_ids()) == 1000


def test_a_version_label_studio_fails_to_delete_is_logged_and_the_others_still_retire(caplog):
    from datetime import datetime, timezone

    from labelhub.backend.labelstudio_api import VersionRow
    from labelhub.backend.retire import retire_versions
    from labelhub.errors import LabelStudioError

    class _Api:
        deleted: list[str] = []

        def model_versions(self, project_id):
            return [VersionRow(f"v{i}", 10, datetime.fromtimestamp(1_700_000_000 + i, timezone.utc)) for i in range(4)]

        def delete_predictions(self, project_id, version):
            if version == "v1":
                raise LabelStudioError("predictions of v1 in project 7: no answer from Label Studio (ReadTimeout)")
            self.deleted.append(version)
            return 10

    assert retire_versions(_Api(), 7, {"v0", "v1", "v2", "v3"}, keep=2) == {"v0": 10}
    assert _Api.deleted == ["v0"] and "could not delete the predictions of v1" in caplog.text


def test_the_newest_version_a_job_wrote_wins_whatever_order_its_batches_finish_in():
    """On RQ workers a batch predicted after a retrain (v2) may finish before one predicted before it (v1): the job
    must select and keep v2, never take v1 for the newest and retire v2."""
    status = JobStatus(project="1.1", project_id=1, model_version="v1")
    status.add(BatchResult(model_version="v2", versions=["v2"], written=[1, 2]))
    status.add(BatchResult(model_version="v1", versions=["v1"], written=[3]))
    status.add(BatchResult(model_version="v3", versions=["v2", "v3"], written=[4]))  # a retrain inside one batch
    assert status.versions == ["v2", "v1", "v3"] and status.done == 4
    assert _newest(status.versions, ["v0", "v1", "v2", "v3"]) == "v3"
    assert _newest(["v1", "gone"], ["v1"]) == "v1" and _newest([], ["v1"]) is None


def test_an_automatic_job_on_a_worker_waits_for_the_running_one_and_predicts_its_batches_itself(monkeypatch):
    """A request while a job of the project runs is not dropped (RQ would mark it failed and never retry), and its
    batches are not queued for workers that may all be busy waiting for them (one worker would wait 4 h)."""
    from labelhub.backend import worker

    calls = []

    def run_job(host, api, project_id, **kwargs):
        calls.append(kwargs)
        if len(calls) < 3:
            raise worker.JobAlreadyRunning("a prediction job of project 4 is running")
        return JobStatus(project="4.1", project_id=project_id, state="done", done=7)

    monkeypatch.setattr(worker, "run_job", run_job)
    monkeypatch.setattr(worker, "_worker_host", lambda: (object(), object()))
    monkeypatch.setattr(worker, "LOCK_WAIT_SECONDS", 0.01)
    assert worker.predict_project(4, [1, 2], False, 2)["done"] == 7
    assert len(calls) == 3 and all("execute" not in c and c["keep_versions"] == 2 for c in calls)


def test_ctrl_c_is_named_in_the_last_line_and_the_status():
    """Found by a walkthrough: Ctrl-C (a ``KeyboardInterrupt`` without a message) gave ``interrupted by  after ...``;
    an exception is true whatever its message, so the fallback never applied."""
    from labelhub.backend.cli import _interrupted

    assert _interrupted(KeyboardInterrupt(), None).startswith("interrupted by Ctrl-C: run the same command again")
    assert _interrupted(KeyboardInterrupt("SIGTERM"), None).startswith("interrupted by SIGTERM: ")


def test_a_hub_model_that_cannot_load_writes_nothing_and_a_later_run_predicts_the_tasks(label_studio, hub, tmp_path, monkeypatch):
    """Audit: a model in the Extra params that could not be loaded (offline, gated) made ``labelhub predict`` write
    an empty prediction scored 0.0 for every task, count them as written and select the version; a run after the
    model became reachable planned nothing. Now each task fails with the cause, nothing is written, and the next run
    (the model now there: a Hub repository made after the first run) predicts every task with the same version."""
    from huggingface_hub import constants

    from labelhub.backend.models import pipelines
    from tests import tiny_models

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))

    project = _Project(label_studio, tmp_path / "models", n_tasks=6)
    later = f"acme/model-later-{tmp_path.name}"
    models = project.app.extensions["labelhub"].models
    params = {"model": later, "task": "text-classification"}
    version = models.get(project.key, project.payload["label_config"], extra_params=params).model_version
    answer = _cli("predict", "--project", str(project.id), env=project.env)
    assert answer.exit_code == 1 and "6 task(s) not written" in answer.output and "model-later" in answer.output, \
        answer.output
    assert _per_task(label_studio, project.id, version) == Counter({0: 6})  # nothing written, nothing empty
    built = tiny_models.build_sequence_classifier(tmp_path / "built", labels=TEXT_CLASSES, winner=TEXT_CLASSES[0])
    hub.create_repo(later, repo_type="model")
    hub.commit_files(later, {p.name: p.read_bytes() for p in built.iterdir()}, repo_type="model")
    pipelines.clear_caches()  # the remembered load failure (a later run is another process)
    assert models.get(project.key).model_version == version
    answer = _cli("predict", "--project", str(project.id), env=project.env)
    assert answer.exit_code == 0 and f"6 predictions of {version} written" in answer.output, answer.output
    assert _per_task(label_studio, project.id, version) == Counter({1: 6})
