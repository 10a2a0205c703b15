"""``labelhub predict``'s messages, from a newcomer's walkthrough, through a real Label Studio 1.23.2: an ``--all`` job
stopped before its first batch says how many tasks it left without a prediction and that the prediction set is
unselected (its last line and ``--status``); the plan line names the version the job writes, and a line says when a
retrain moves it during the job; ``--status`` with a relative ``MODEL_DIR`` that does not exist here says so.
"""
from __future__ import annotations

import json
import logging
from collections import Counter

import pytest

from labelhub.backend import jobs
from labelhub.backend.job_status import JobStatus
from labelhub.backend.jobs import run_here, run_job
from labelhub.backend.labelstudio_api import LabelStudioClient
from tests.test_predict_jobs import _cli, _per_task, _Project
from tests.test_predict_versions import _selected

N = 40


@pytest.fixture()
def fresh(label_studio, tmp_path):
    """A project of ``N`` text tasks, no annotation, no prediction, no prediction set."""
    return _Project(label_studio, tmp_path / "models", n_tasks=N)



def test_ctrl_c_of_all_before_its_first_batch_says_what_it_left_and_the_same_command_writes_it(label_studio, fresh,
                                                                                                monkeypatch):
    """Walkthrough: Ctrl-C of ``--all`` before its first batch said ``interrupted by Ctrl-C after 0 of 220 tasks: run
    the same command again ...``; Label Studio held none of the version's predictions any more and no prediction set
    was selected, which neither the line nor ``--status`` said."""
    version = fresh.train(0, 20)
    assert _cli("predict", "--project", str(fresh.id), env=fresh.env).exit_code == 0
    assert _selected(label_studio, fresh) == version

    def ctrl_c_before_the_first_batch(host, api, project, batches, progress):
        raise KeyboardInterrupt
        yield  # a generator, as run_here is

    with monkeypatch.context() as patched:
        patched.setattr(jobs, "run_here", ctrl_c_before_the_first_batch)
        answer = _cli("predict", "--project", str(fresh.id), "--all", env=fresh.env)
    assert answer.exit_code == 1
    left = (f"{N} tasks have no prediction of {version} now (--all deleted the old ones first, which unselected the "
            "version as the project's prediction set); run the same command to write them")
    assert answer.output.splitlines()[-1] == f"Error: interrupted by Ctrl-C after 0 of {N} tasks: {left}", \
        answer.output
    assert _per_task(label_studio, fresh.id, version) == Counter({0: N}) and _selected(label_studio, fresh) == ""
    status = json.loads(_cli("predict", "--project", str(fresh.id), "--status", env=fresh.env).output)
    assert (status["state"], status["error"]) == ("failed", f"interrupted (Ctrl-C); {left}"), status

    answer = _cli("predict", "--project", str(fresh.id), "--all", env=fresh.env)  # the same command writes them
    assert answer.exit_code == 0 and f"{N} predictions of {version} written" in answer.output, answer.output
    assert _per_task(label_studio, fresh.id, version) == Counter({1: N}) and _selected(label_studio, fresh) == version
    status = json.loads(_cli("predict", "--project", str(fresh.id), "--status", env=fresh.env).output)
    assert status["state"] == "done" and status["error"] is None, status


def test_a_killed_all_job_shows_what_it_left_and_a_missing_job_or_a_finished_one_does_not():
    """``--status`` and ``/health`` of an ``--all`` job killed after its delete (its status still says ``running``,
    its process is gone) say what it left; a ``missing`` job, or one that ended, adds nothing."""
    killed = JobStatus(project="1.x", project_id=1, mode="all", state="running", model_version="labelhub-1-0000aaaa",
                       total=30, done=10, queued=20, cleared=True, unselected="labelhub-1-0000aaaa", pid=2 ** 22 + 7)
    view = killed.view()
    assert view["state"] == "interrupted"
    assert view["error"] == ("20 tasks have no prediction of labelhub-1-0000aaaa now (--all deleted the old ones "
                             "first); run the same command to write them")  # a batch landed: the set is selected
    assert JobStatus(**{**killed.__dict__, "mode": "missing"}).view()["error"] is None
    assert JobStatus(**{**killed.__dict__, "state": "done", "queued": 0, "done": 30}).view()["error"] is None
    assert JobStatus(**{**killed.__dict__, "cleared": False}).view()["error"] is None  # its delete never ran


def test_the_plan_line_names_the_version_read_when_it_plans_and_a_line_says_when_a_retrain_moves_it(label_studio,
                                                                                                    fresh, caplog):
    """Walkthrough: ``181 of 219 tasks to predict with labelhub-40-...``, logged after the model had moved to
    labelhub-38-... (read before the task listing), which the job then wrote with no line saying so. Here a retrain
    lands while the job lists its tasks, and another after its first batch."""
    first = fresh.train(0, 10)
    versions: list[str] = []

    class RetrainedWhileListing(LabelStudioClient):  # the real client; a retrain lands during the job's listing
        def tasks(self, *args, **kwargs):
            listed = super().tasks(*args, **kwargs)
            if not versions:
                versions.append(fresh.train(10, 20))
            return listed

    def retrain_after_the_first_batch(host_, api_, project, batches, progress):
        for result in run_here(host_, api_, project, batches, progress):
            yield result
            if len(versions) == 1:
                versions.append(fresh.train(20, 30))

    host = fresh.app.extensions["labelhub"]
    api = RetrainedWhileListing(label_studio.url, fresh.env["LABEL_STUDIO_API_KEY"])
    with caplog.at_level(logging.INFO, logger="labelhub.backend.jobs"):
        status = run_job(host, api, fresh.id, batch_size=20, progress=False, execute=retrain_after_the_first_batch)
    second, third = versions
    assert len({first, second, third}) == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "labelhub.backend.jobs"]
    assert f"project {fresh.id}: {N} of {N} tasks to predict with {second} in 2 batches" in lines, lines  # not first
    assert (f"project {fresh.id}: the model's version moved from {first} to {second} while the job listed its tasks: "
            f"it predicts with {second}") in lines, lines
    moved = [line for line in lines if "its batches now write" in line]
    assert moved == [f"project {fresh.id}: the model's version moved during the job (a retrain): its batches now "
                     f"write {third} (planned with {second})"], lines  # one line, when it happened
    assert status.state == "done" and status.model_version == third
    assert first not in status.by_version, status.by_version  # the plan's version is the one its batches wrote
    assert _per_task(label_studio, fresh.id, third) == Counter({1: N})


def test_status_with_a_relative_model_dir_that_does_not_exist_here_says_so(tmp_path, monkeypatch):
    """Walkthrough: ``labelhub predict --status`` run from another folder than the backend's said only ``no prediction
    job of project 1 in MODEL_DIR='labelhub-models'``."""
    monkeypatch.chdir(tmp_path)
    answer = _cli("predict", "--project", "1", "--status", env={"MODEL_DIR": "labelhub-models"})
    assert answer.exit_code == 1
    assert answer.output.strip() == (
        f"Error: no prediction job of project 1: MODEL_DIR='labelhub-models' does not exist here "
        f"({tmp_path / 'labelhub-models'}): give the backend's MODEL_DIR (--model-dir or MODEL_DIR; a relative one is "
        "read from the current folder; the demo's is .labelhub-demo/models)"), answer.output
    (tmp_path / "labelhub-models").mkdir()  # it exists: no job of the project there, as before
    answer = _cli("predict", "--project", "1", "--status", env={"MODEL_DIR": "labelhub-models"})
    assert answer.output.strip() == "Error: no prediction job of project 1 in MODEL_DIR='labelhub-models'", \
        answer.output


def test_ctrl_c_during_the_delete_of_all_says_label_studio_may_have_finished_it(label_studio, fresh):
    """A whole project's delete can take minutes (3.5 ms a prediction); Ctrl-C meanwhile said ``run the same command
    again`` only, while Label Studio went on and deleted every prediction of the version."""
    version = fresh.train(0, 20)
    assert _cli("predict", "--project", str(fresh.id), env=fresh.env).exit_code == 0

    class CtrlCDuringTheDelete(LabelStudioClient):  # the real client: the delete lands, its answer is not waited for
        def delete_predictions(self, project_id, model_version, prediction_ids=None):
            super().delete_predictions(project_id, model_version, prediction_ids)
            raise KeyboardInterrupt

    host = fresh.app.extensions["labelhub"]
    with pytest.raises(KeyboardInterrupt):
        run_job(host, CtrlCDuringTheDelete(label_studio.url, fresh.env["LABEL_STUDIO_API_KEY"]), fresh.id, mode="all",
                progress=False)
    assert _per_task(label_studio, fresh.id, version) == Counter({0: N})
    from labelhub.backend.cli import _interrupted
    from labelhub.backend.job_status import latest_status

    assert _interrupted(KeyboardInterrupt(), latest_status(fresh.model_dir, fresh.id)) == (
        f"interrupted by Ctrl-C: stopped during --all's delete of the predictions of {version}, "
        "which Label Studio may have finished (the selected tasks then have none, and the version is no longer the "
        "project's prediction set): run the same command to write them")
    status = json.loads(_cli("predict", "--project", str(fresh.id), "--status", env=fresh.env).output)
    assert status["state"] == "failed" and status["error"] == (
        f"interrupted (Ctrl-C); stopped during --all's delete of the predictions of {version}, which Label Studio may "
        "have finished (the selected tasks then have none, and the version is no longer the project's prediction "
        "set): run the same command to write them"), status
    answer = _cli("predict", "--project", str(fresh.id), "--all", env=fresh.env)
    assert answer.exit_code == 0 and f"{N} predictions of {version} written" in answer.output, answer.output
    assert _per_task(label_studio, fresh.id, version) == Counter({1: N}) and _selected(label_studio, fresh) == version
