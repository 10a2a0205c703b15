"""``labelhub predict`` and the prediction set: a job of part of a project leaves the prediction set alone while the
other tasks lack its version; a model that learned nothing writes nothing; a retrain during a job ends with every
task predicted with the newest version, which the summary names. Through a real Label Studio 1.23.2.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest

from labelhub.backend.jobs import last_status, run_here, run_job
from labelhub.backend.labelstudio_api import LabelStudioClient
from tests.backend_fixtures import TEXT_CONFIG
from tests.test_predict_jobs import _api, _cli, _per_task, _predictions, _Project

N = 60


@pytest.fixture()
def fresh(label_studio, tmp_path):
    """A project of ``N`` text tasks, no annotation, no prediction, no prediction set."""
    return _Project(label_studio, tmp_path / "models", n_tasks=N)


def _selected(label_studio, project) -> str:
    return _api(label_studio, "GET", f"/api/projects/{project.id}")["model_version"] or ""


def test_a_job_of_part_of_the_project_selects_its_version_only_when_the_others_hold_it(label_studio, fresh):
    """Audit: ``--all --filter <split=test>`` (100 of 303 tasks) selected its version; sorted by prediction score, the
    other 203 tasks showed blank."""
    version = fresh.train(0, 20)
    ids = sorted(_predictions(label_studio, fresh.id))
    window = json.dumps({"filter": "filter:tasks:id", "operator": "less", "type": "Number", "value": ids[10]})
    answer = _cli("predict", "--project", str(fresh.id), "--filter", window, env=fresh.env)
    assert answer.exit_code == 0, answer.output
    assert f"10 predictions of {version} written" in answer.output, answer.output
    assert _selected(label_studio, fresh) == ""  # before: the version, with 50 tasks blank
    # (tasks 0:20 are annotated only through /webhook here, so Label Studio counts them unlabeled too)
    assert f"the prediction set stays no version: {N - 10} unlabeled task(s) have no prediction of {version}" \
        in answer.output, answer.output
    answer = _cli("predict", "--project", str(fresh.id), "--task-ids", ",".join(map(str, ids[10:])), env=fresh.env)
    assert answer.exit_code == 0, answer.output
    assert _selected(label_studio, fresh) == version  # now every task holds it: the job of the rest selects it
    assert _per_task(label_studio, fresh.id, version) == Counter({1: N})


def test_a_model_that_learned_nothing_writes_no_prediction_and_says_why(label_studio, fresh):
    """Audit: a project without annotations got one empty prediction per task (``result: []``, score 0.0), and the
    version was selected: those tasks sorted first."""
    fresh.app.extensions["labelhub"].store.project(fresh.key).update_project(label_config=TEXT_CONFIG)  # connected
    answer = _cli("predict", "--project", str(fresh.id), env=fresh.env)
    assert answer.exit_code == 0, answer.output
    assert "0 predictions of " in answer.output and f", {N} empty (" in answer.output, answer.output
    assert "the model has not learned yet" in answer.output and "two different choices" in answer.output
    assert not any(_predictions(label_studio, fresh.id).values())
    assert _selected(label_studio, fresh) == ""
    labels = fresh.labels
    fresh.labels = [labels[0]] * len(labels)  # one choice annotated: nothing to learn from yet
    with pytest.raises(KeyError):  # the trainer ran, and set no model_version
        fresh.train(0, 5)
    answer = _cli("predict", "--project", str(fresh.id), env=fresh.env)
    assert answer.exit_code == 0 and f", {N} empty (" in answer.output, answer.output
    assert not any(_predictions(label_studio, fresh.id).values())
    fresh.labels = labels
    version = fresh.train(5, 20)  # once it learned, a run predicts every task
    answer = _cli("predict", "--project", str(fresh.id), env=fresh.env)
    assert answer.exit_code == 0 and f"{N} predictions of {version} written" in answer.output, answer.output


def test_a_retrain_during_a_job_ends_with_every_task_on_the_newest_version(label_studio, fresh):
    """Audit: the first auto-predict job wrote 64 each of four versions and 33 of the last, and its summary said
    ``289 predictions of labelhub-30 written``. Here a retrain runs after the job's first batch."""
    first = fresh.train(0, 20)
    host = fresh.app.extensions["labelhub"]
    api = LabelStudioClient(label_studio.url, fresh.env["LABEL_STUDIO_API_KEY"])
    versions, shown = [], []

    def retrain_after_the_first_batch(host_, api_, project, batches, progress):
        for i, result in enumerate(run_here(host_, api_, project, batches, progress)):
            if i == 2:  # the status saved after the second batch, which wrote the new version, while the job runs
                shown.append(last_status(host_, project.key).model_version)
            yield result
            if not versions:
                versions.append(fresh.train(20, 30))

    status = run_job(host, api, fresh.id, batch_size=20, progress=False, execute=retrain_after_the_first_batch)
    (second,) = versions
    assert second != first
    assert shown == [second]  # /health named the version being written, not the one the job started with
    assert status.model_version == second and status.state == "done"
    assert status.by_version == {first: 20, second: N}, status.by_version  # the first batch's tasks again
    assert _per_task(label_studio, fresh.id, second) == Counter({1: N})
    assert _selected(label_studio, fresh) == second
    summary = json.loads(_cli("predict", "--project", str(fresh.id), "--status", env=fresh.env).output)
    assert summary["by_version"] == {first: 20, second: N} and summary["model_version"] == second


def test_a_job_that_catches_up_after_several_retrains_predicts_and_counts_each_task_once(label_studio, fresh,
                                                                                         monkeypatch, caplog):
    """Audit: a 279-task automatic job under six annotators made three passes (retrains during each) and said "957"
    tasks, "427 predictions" of a version Label Studio held 238 of, "551 behind": each pass added the ids it wrote
    again, the listing of those ids answered a task once per query naming it (200 ids a query), and the repeats
    were predicted twice and counted. Here a retrain follows the first batch of the first two passes (25 ids a
    query, so that 60 tasks make several queries); the third pass predicts every task with the newest."""
    import logging

    import labelhub.labelstudio_client as client_module

    monkeypatch.setattr(client_module, "IDS_PER_QUERY", 25)
    caplog.set_level(logging.INFO, logger="labelhub.backend.jobs")
    first = fresh.train(0, 10)
    host = fresh.app.extensions["labelhub"]
    api = LabelStudioClient(label_studio.url, fresh.env["LABEL_STUDIO_API_KEY"])
    versions, passes = [first], []

    def retrain_after_the_first_batch_of_two_passes(host_, api_, project, batches, progress):
        passes.append(sum(map(len, batches)))
        for i, result in enumerate(run_here(host_, api_, project, batches, progress)):
            yield result
            if i == 0 and len(passes) <= 2:
                versions.append(fresh.train(10 * len(versions), 10 * len(versions) + 10))

    status = run_job(host, api, fresh.id, batch_size=20, progress=False,
                     execute=retrain_after_the_first_batch_of_two_passes)
    first, second, third = versions
    assert len(set(versions)) == 3
    # pass 1: the first batch's 20 tasks again (v2); pass 2: every task, once (before: the 20 twice)
    assert passes == [N, 20, N], passes
    assert status.state == "done" and status.model_version == third
    assert (status.total, status.done, status.queued, status.skipped, status.failed, status.behind) == \
        (N, N, 0, 0, 0, 0), status
    assert status.by_version == {first: 20, second: N, third: N}, status.by_version
    for version in (second, third):
        assert _per_task(label_studio, fresh.id, version) == Counter({1: N})
    again = [r.getMessage() for r in caplog.records if "predicting the" in r.getMessage()]
    assert len(again) == 2 and f"predicting the {N} tasks written with an older one again" in again[1], again


def test_a_task_listed_twice_is_planned_once():
    """A listing that moved may hold a task twice (:func:`labelhub.labelstudio_client.list_tasks`); the plan names it
    once, as its last copy says."""
    from labelhub.backend.jobs import plan
    from labelhub.backend.labelstudio_api import PredictionRow, TaskRow
    from labelhub.labelstudio_client import selected_items_queries

    rows = [TaskRow(1, {}), TaskRow(2, {}), TaskRow(1, {}, predictions=(PredictionRow(5, "v2", 0.4),))]
    assert plan(rows, "v1", batch_size=1) == [[1], [2]]
    assert plan(rows, "v2") == [[2]]  # the later copy holds the version
    assert list(selected_items_queries([4, 5, 4, 6])) == ['{"selectedItems": {"all": false, "included": [4, 5, 6]}}']


def test_an_interrupted_whole_project_all_keeps_its_version_selected_and_counts_the_batch_in_flight(label_studio,
                                                                                                     fresh):
    """Audit: a killed ``--all`` left the project with no prediction set (Label Studio unselects the version when
    the job deletes it), and Ctrl-C said ``interrupted after 90 of 300`` while Label Studio held 100."""
    from labelhub.backend.jobs import run_batch

    version = fresh.train(0, 20)
    assert _cli("predict", "--project", str(fresh.id), env=fresh.env).exit_code == 0
    assert _selected(label_studio, fresh) == version
    host = fresh.app.extensions["labelhub"]
    api = LabelStudioClient(label_studio.url, fresh.env["LABEL_STUDIO_API_KEY"])

    def ctrl_c_while_the_second_batch_is_written(host_, api_, project, batches, progress):
        yield run_batch(host_, api_, project, batches[0], progress=progress)
        run_batch(host_, api_, project, batches[1], progress=progress)  # lands; its answer is not waited for
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(host, api, fresh.id, mode="all", batch_size=20, progress=False,
                execute=ctrl_c_while_the_second_batch_is_written)
    assert _selected(label_studio, fresh) == version  # selected again after the first batch (before: none)
    held = _per_task(label_studio, fresh.id, version)[1]
    status = json.loads(_cli("predict", "--project", str(fresh.id), "--status", env=fresh.env).output)
    assert (status["state"], status["done"], held) == ("failed", 40, 40), (status, held)  # before: 20 of 40
    assert status["started_at"].endswith("+00:00") and status["started_at"][:2] == "20"  # ISO 8601, not epoch
    answer = _cli("predict", "--project", str(fresh.id), "--all", env=fresh.env)  # the same job goes on
    assert answer.exit_code == 0 and f"{N - 40} predictions of {version} written" in answer.output, answer.output
    assert _per_task(label_studio, fresh.id, version) == Counter({1: N})


def test_a_task_annotated_while_all_unlabeled_starts_keeps_a_prediction(label_studio, fresh):
    """Audit: ``--all --unlabeled`` deleted the version's predictions of the tasks unlabeled when it listed them, then
    listed again and planned the still-unlabeled ones: a task annotated in between lost its prediction and got none.
    The job now plans from its one listing."""
    version = fresh.train(0, 20)
    assert _cli("predict", "--project", str(fresh.id), env=fresh.env).exit_code == 0
    host = fresh.app.extensions["labelhub"]
    tid = sorted(_predictions(label_studio, fresh.id))[-1]
    label = fresh.labels[[t["id"] for t in fresh.tasks].index(tid)]

    class AnnotatedMeanwhile(LabelStudioClient):  # the real client; an annotator saves right before the delete
        def delete_predictions(self, project_id, model_version, prediction_ids=None):
            label_studio.client().annotations.create(id=tid, result=[{
                "from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}])
            return super().delete_predictions(project_id, model_version, prediction_ids)

    api = AnnotatedMeanwhile(label_studio.url, fresh.env["LABEL_STUDIO_API_KEY"])
    status = run_job(host, api, fresh.id, mode="all", unlabeled=True, progress=False)
    assert status.state == "done" and status.done == N
    held = _predictions(label_studio, fresh.id)[tid]
    assert [p["model_version"] for p in held] == [version]  # before: none


def test_a_version_of_changed_extra_params_is_replaced_by_the_next_ones_without_the_last_jobs_status(label_studio,
                                                                                                     fresh):
    """With Redis each job may run on another worker, whose MODEL_DIR holds no status of the project's last job; the
    version Extra params fold in is in no state's list of fits either: the prediction set stayed on the first
    parameters' version (an audit: the Data Manager sorted by an older threshold's scores). A ``labelhub-<n>-<hash>``
    version is LabelHub's own, replaced by the job's."""
    fresh.train(0, 20)
    setup = fresh.app.test_client()

    def with_params(params: dict) -> str:
        answer = setup.post("/setup", json={"project": fresh.key, "schema": TEXT_CONFIG, "extra_params": params})
        assert answer.status_code == 200, answer.json
        return answer.json["model_version"]

    first = with_params({"threshold": 0.3})
    assert _cli("predict", "--project", str(fresh.id), env=fresh.env).exit_code == 0
    assert _selected(label_studio, fresh) == first
    second = with_params({"threshold": 0.5})
    for status in (fresh.model_dir / "jobs").glob("*.json"):  # the last job ran on another worker
        status.unlink()
    answer = _cli("predict", "--project", str(fresh.id), env=fresh.env)
    assert answer.exit_code == 0, answer.output
    assert second != first and _selected(label_studio, fresh) == second, answer.output


def test_with_redis_the_last_job_status_is_the_shared_one(tmp_path):
    """A worker reads the project's last job status from Redis (whichever worker published it), not from its own
    MODEL_DIR, which holds only the jobs it ran."""
    from dataclasses import asdict
    from types import SimpleNamespace

    from labelhub.backend.job_status import JobStatus
    from labelhub.backend.jobs import last_status
    from labelhub.backend.redis_state import RedisStore, connect
    from tests.backend_fixtures import RedisServer

    with RedisServer(tmp_path / "redis") as server:
        url = server.url + "/3"
        elsewhere = RedisStore(connect(url), tmp_path / "worker-1")
        status = JobStatus(project="5.1700000000", project_id=5, state="done", model_version="labelhub-20-0123abcd")
        elsewhere.save_job_status(status.project, asdict(status))
        here = SimpleNamespace(settings=SimpleNamespace(redis_url=url, model_dir=tmp_path / "worker-2"),
                               store=RedisStore(connect(url), tmp_path / "worker-2"))
        found = last_status(here, "5.1700000000")
        assert found is not None and found.model_version == "labelhub-20-0123abcd"
        assert last_status(here, "6.1700000000") is None
