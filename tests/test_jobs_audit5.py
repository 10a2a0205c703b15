"""What a fifth audit of the single-host prediction jobs found, against the real Label Studio 1.23.2: Extra params or
the label config changed during a job, a task deleted while its batch is predicted, a job killed under another host
name (a ``docker compose run`` container), a killed ``--filter`` job resumed as a whole-project one, and an ``--all``
re-run that failed while listing its tasks.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

import pytest

from labelhub.backend.job_status import BatchResult, JobStatus, latest_status, read_statuses
from labelhub.backend.jobs import _write, run_here, run_job, running_job
from labelhub.backend.labelstudio_api import LabelStudioClient, TaskRow
from labelhub.errors import LabelStudioError
from tests.backend_fixtures import ROOT, TEXT_CLASSES, TEXT_CONFIG, choices_config
from tests.test_jobs_audit2 import _interrupting, _key
from tests.test_predict_jobs import _api, _per_task, _predictions, _Project

N = 30


def _selected(label_studio, project) -> str:
    return _api(label_studio, "GET", f"/api/projects/{project.id}")["model_version"] or ""


def _changing_after_first_batch(change):
    """An :data:`~labelhub.backend.jobs.Executor` that runs the batches here and calls ``change()`` once, after the
    job's first batch is written: something moves the version the batches write, with no retrain."""
    done = []

    def execute(host, api, project, batches, progress):
        for result in run_here(host, api, project, batches, progress):
            yield result
            if not done:
                done.append(change())

    return execute


def _served(project) -> str:
    host = project.app.extensions["labelhub"]
    model = host.models.get(project.key, None)  # the stored label config and Extra params, as a batch builds it
    model.refresh()
    return model.model_version


def _adds_up(status) -> bool:
    return status.done + status.skipped + status.failed + status.empty == status.total and status.done >= 0


# A ---------------------------------------------------------------------------------------------------------------
def test_extra_params_changed_during_a_job_end_it_with_every_task_on_the_version_served(label_studio, tmp_path):
    """Audit: Extra params changed after 60 of 200 tasks: the job's catch-up compared against the version of the
    model it built at its start, said done, left 140 tasks on the old version and selected it, and its summary
    called the newer version older. Now the catch-up predicts the first batch again with the version served, which
    the status names and the project selects."""
    project = _Project(label_studio, tmp_path, n_tasks=N)
    first = project.train(0, 8)
    host = project.app.extensions["labelhub"]
    setup = project.app.test_client()

    def new_params():  # what Label Studio's /setup does when the model's Extra params are saved
        answer = setup.post("/setup", json={"project": project.key, "schema": TEXT_CONFIG,
                                            "extra_params": {"threshold": 0.3}})
        assert answer.status_code == 200, answer.json
        return answer.json["model_version"]

    api = LabelStudioClient(label_studio.url, _key(label_studio))
    status = run_job(host, api, project.id, batch_size=10, progress=False,
                     execute=_changing_after_first_batch(new_params))
    moved = _served(project)
    assert moved != first
    assert status.state == "done" and status.model_version == moved, status
    assert status.by_version == {first: 10, moved: N}, status.by_version  # the first batch predicted again
    assert (status.total, status.done, status.skipped, status.failed) == (N, N, 0, 0), status
    assert _per_task(label_studio, project.id, moved) == Counter({1: N})
    assert _selected(label_studio, project) == moved
    assert latest_status(project.model_dir, project.id).view()["model_version"] == moved  # --status


def test_a_label_config_changed_during_a_job_ends_it_on_the_version_served_with_counts_that_add_up(label_studio,
                                                                                                   tmp_path):
    """Audit: a choice added to the label config during a job (Label Studio's settings, then the PROJECT_UPDATED the
    trainer applies): the job's catch-up planned against the version of the config it started with, which no batch
    writes any more, skipped the same tasks pass after pass and said done=-130, skipped=330 of 200."""
    project = _Project(label_studio, tmp_path, n_tasks=N)
    first = project.train(0, 8)
    host = project.app.extensions["labelhub"]
    changed = choices_config(list(TEXT_CLASSES) + ["mixed"], object_tag="Text", value="text")

    def new_labels():
        _api(label_studio, "PATCH", f"/api/projects/{project.id}/", json={"label_config": changed})
        answer = project.app.test_client().post("/webhook", json={
            "action": "PROJECT_UPDATED", "project": {**project.payload, "label_config": changed}})
        assert answer.status_code == 200, answer.json
        host.trainer.run_once()
        return _served(project)

    api = LabelStudioClient(label_studio.url, _key(label_studio))
    status = run_job(host, api, project.id, batch_size=10, progress=False,
                     execute=_changing_after_first_batch(new_labels))
    moved = _served(project)
    assert moved != first
    assert _adds_up(status) and status.total == N and status.behind == 0, status
    assert status.state == "done" and status.model_version == moved and status.by_version.get(moved) == N, status
    assert _per_task(label_studio, project.id, moved) == Counter({1: N})
    assert _selected(label_studio, project) == moved


# B ---------------------------------------------------------------------------------------------------------------
def test_a_task_deleted_while_its_batch_is_predicted_is_skipped_and_the_others_are_written(label_studio, tmp_path):
    """Audit: one task deleted during a batch's predict window made Label Studio refuse the batch's write (400,
    "task ID ... not found in project"), and the job failed every task of the batch: 49 live tasks got nothing. Now
    the tasks gone count as skipped and the rest is written again."""
    project = _Project(label_studio, tmp_path, n_tasks=20)
    version = project.train(0, 6)
    host = project.app.extensions["labelhub"]
    deleted = []

    class DeletingOne(LabelStudioClient):
        def import_predictions(self, project_id, predictions):
            if not deleted:  # deleted by someone between the batch's read and its write
                deleted.append(predictions[-1]["task"])
                _api(label_studio, "DELETE", f"/api/tasks/{deleted[0]}/")
            return super().import_predictions(project_id, predictions)

    status = run_job(host, DeletingOne(label_studio.url, _key(label_studio)), project.id, progress=False)
    assert (status.state, status.total, status.done, status.skipped, status.failed) == ("done", 20, 19, 1, 0), status
    assert status.error is None, status.error
    held = _predictions(label_studio, project.id)
    assert deleted[0] not in held and len(held) == 19
    assert _per_task(label_studio, project.id, version) == Counter({1: 19})


class _RefusingLabelStudio:
    """Refuses every write (400) while it lists task 2 no more (deleted): the write without it is refused too."""

    def __init__(self):
        self.writes = []

    def import_predictions(self, project_id, predictions):
        self.writes.append([p["task"] for p in predictions])
        error = LabelStudioError("Label Studio answered 400: task ID 2 not found in project")
        error.status = 400
        raise error

    def tasks(self, project_id, task_ids):
        return [TaskRow(tid, {}) for tid in task_ids if tid != 2]


def test_a_write_refused_again_after_the_deleted_tasks_are_left_out_is_final():
    api, result = _RefusingLabelStudio(), BatchResult()
    _write(api, 7, [{"task": t, "result": [], "score": 0.5, "model_version": "v1"} for t in (1, 2, 3)], result,
           sleep=lambda _: pytest.fail("a refusal is not waited for"))
    assert api.writes == [[1, 2, 3], [1, 3]]  # once again, without the task gone
    assert result.skipped == [2] and sorted(result.failed) == [1, 3] and not result.written
    assert "400" in result.failed[1]


# E ---------------------------------------------------------------------------------------------------------------
def _running_status(model_dir, key="5.1700000000", **fields) -> JobStatus:
    status = JobStatus(project=key, project_id=5, state="running", model_version="labelhub-3-0000aaaa", total=40,
                       done=10, queued=30, origin="labelhub predict", **fields)
    status.save(model_dir)
    return status


_HOLD = """
import sys, time
from labelhub.locks import file_lock
with file_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_job_killed_under_another_host_name_shows_interrupted_by_its_lock_and_predict_answers(tmp_path):
    """Audit: a job killed in a ``docker compose run`` container (another host name, the same ``MODEL_DIR``) showed
    ``running`` for ever: ``/health``, ``--status``, ``/predict`` left its tasks to it, and nothing resumed it. The
    job's ``flock`` says whether a process runs it: held, ``running``; free, ``interrupted``."""
    from labelhub.backend.app import create_app

    model_dir = tmp_path / "models"
    key = "5.1700000000"
    lock = model_dir / "jobs" / f"{key}.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(lock)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        _running_status(model_dir, key, host="job-container", pid=holder.pid + 100_000)
        host = SimpleNamespace(settings=SimpleNamespace(model_dir=model_dir, redis_url=None))
        assert read_statuses(model_dir)[key]["state"] == "running"  # its lock is held: it runs
        assert running_job(host, key) is not None
    finally:
        holder.kill()
        holder.wait()
    assert read_statuses(model_dir)[key]["state"] == "interrupted"  # /health
    assert latest_status(model_dir, 5).view()["state"] == "interrupted"  # labelhub predict --status
    assert running_job(host, key) is None  # /predict answers its tasks
    app = create_app({"model_dir": str(model_dir), "start_trainer": False, "warmup": False})
    assert app.test_client().get("/health").get_json()["jobs"][key]["state"] == "interrupted"


def test_a_reused_pid_does_not_keep_a_dead_job_running_and_without_a_lock_file_the_pid_decides(tmp_path):
    model_dir = tmp_path / "models"
    _running_status(model_dir, host=socket.gethostname(), pid=os.getpid())  # a live process, not the job's
    (model_dir / "jobs" / "5.1700000000.lock").touch()  # the job's lock, which no process holds
    assert read_statuses(model_dir)["5.1700000000"]["state"] == "interrupted"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _running_status(model_dir, key="6.1700000000", host=socket.gethostname(), pid=int(dead.stdout))
    _running_status(model_dir, key="7.1700000000", host="elsewhere", pid=int(dead.stdout))
    statuses = read_statuses(model_dir)  # no lock file (a job of a Redis-mode host, an older version): host and pid
    assert statuses["6.1700000000"]["state"] == "interrupted" and statuses["7.1700000000"]["state"] == "running"
    assert not (model_dir / "jobs" / "6.1700000000.lock").exists()  # the check made no lock file


# C ---------------------------------------------------------------------------------------------------------------
def test_the_backend_resumes_its_own_interrupted_jobs_only_never_a_filtered_predict(tmp_path, monkeypatch, caplog):
    """Audit: a ``labelhub predict --filter`` killed midway (80 of 200 tasks, a held-out split left out) was resumed
    by the backend's next start as a job of every unlabeled task: predictions landed on the split. Now only the
    automatic jobs are resumed; a ``labelhub predict`` is left to whoever ran it, and a line says to run it again."""
    import logging

    from labelhub.backend import jobs
    from labelhub.backend.auto_predict import AutoPredictor
    from labelhub.backend.settings import Settings

    model_dir = tmp_path / "models"
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    here = socket.gethostname()
    flt = {"conjunction": "and", "items": [{"filter": "filter:tasks:id", "operator": "less_or_equal",
                                            "type": "Number", "value": 80}]}
    _running_status(model_dir, "3.100", host=here, pid=dead,
                    selection=json.dumps({"task_ids": None, "unlabeled": False, "filters": flt}, sort_keys=True))
    auto = JobStatus(project="4.100", project_id=4, state="running", origin="auto-predict", host=here, pid=dead,
                     selection=json.dumps({"task_ids": None, "unlabeled": True}, sort_keys=True))
    auto.save(model_dir)
    calls = []

    def recorded(host, api, project_id, *, task_ids=None, unlabeled=False, **_):
        calls.append((project_id, task_ids, unlabeled))
        return SimpleNamespace(done=0, model_version="v", failed=0)

    monkeypatch.setattr(jobs, "run_job", recorded)
    settings = Settings(model_dir=model_dir, auto_predict=True, label_studio_url="http://127.0.0.1:9",
                        label_studio_api_key="key")
    predictor = AutoPredictor(SimpleNamespace(settings=settings))
    with caplog.at_level(logging.INFO, logger="labelhub.backend.auto_predict"):
        predictor.resume_interrupted()
        assert predictor.wait_idle(10)
    assert calls == [(4, None, True)], calls  # before: project 3 too, as every unlabeled task
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("project 3.100:")]
    assert said == ["project 3.100: the labelhub predict job interrupted at 10 of 40 tasks is not resumed (the "
                    "backend resumes only its automatic jobs; its selection is its caller's): run the same command "
                    "again"]


# F ---------------------------------------------------------------------------------------------------------------
def test_an_all_rerun_failing_while_it_lists_keeps_the_delete_done_for_the_next(label_studio, tmp_path):
    """Audit: an ``--all`` stopped after its delete is continued by the same command, unless one re-run failed while
    listing the tasks (a 502): that one saved ``cleared=false``, and the next deleted the version's predictions again,
    those written since included, and started over."""
    project = _Project(label_studio, tmp_path, n_tasks=N)
    version = project.train(0, 6)
    host = project.app.extensions["labelhub"]
    api = LabelStudioClient(label_studio.url, _key(label_studio))
    run_job(host, api, project.id, progress=False)
    with pytest.raises(KeyboardInterrupt):  # deleted, then one batch of 10 written
        run_job(host, api, project.id, mode="all", batch_size=10, progress=False, execute=_interrupting(1))
    first_run = {p["id"] for preds in _predictions(label_studio, project.id).values() for p in preds}
    assert len(first_run) == 10

    class FailingListing(LabelStudioClient):
        def tasks(self, *args, **kwargs):
            error = LabelStudioError("tasks of project: Label Studio answered 502")
            error.status = 502
            raise error

    with pytest.raises(LabelStudioError):
        run_job(host, FailingListing(label_studio.url, _key(label_studio)), project.id, mode="all", batch_size=10,
                progress=False)
    failed = latest_status(project.model_dir, project.id)
    assert failed.state == "failed" and failed.cleared, failed  # before: cleared=False
    status = run_job(host, api, project.id, mode="all", batch_size=10, progress=False)
    assert status.state == "done" and status.done == N - 10 and status.skipped == 0, status
    held = {p["id"] for preds in _predictions(label_studio, project.id).values() for p in preds}
    assert first_run <= held  # not deleted again
    assert _per_task(label_studio, project.id, version) == Counter({1: N})
    assert _selected(label_studio, project) == version
