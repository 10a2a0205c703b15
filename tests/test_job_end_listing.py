"""The end of a prediction job: a second prediction of its version saved by another writer meanwhile is removed
(``tests/test_jobs_audit2.py``), but the job no longer lists every task it wrote again to find none (a bench audit:
that listing was a third of a re-prediction job's time). Label Studio's count of each version
(``GET /api/projects/<id>/model-versions/``) against what the job's listing held plus what it wrote decides.

Real Label Studio 1.23.2; the backend in-process (``tests.test_predict_jobs._Project``).
"""
from __future__ import annotations

from collections import Counter

from labelhub.backend.jobs import run_job
from labelhub.backend.labelstudio_api import LabelStudioClient
from tests.test_predict_jobs import _Project, _api, _per_task


class _Counting(LabelStudioClient):
    """Label Studio's client, keeping how many task ids each task listing of a job asked for (``None``: all)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.listings: list[int | None] = []

    def tasks(self, project_id, task_ids=None, filters=None):
        self.listings.append(None if task_ids is None else len(task_ids))
        return super().tasks(project_id, task_ids=task_ids, filters=filters)


def test_a_job_lists_its_tasks_again_only_when_label_studio_counts_more_than_it_wrote(label_studio, tmp_path):
    project = _Project(label_studio, tmp_path / "models", n_tasks=30)
    version = project.train(0, 10)
    host = project.app.extensions["labelhub"]
    key = label_studio.personal_token or label_studio.api_key

    api = _Counting(label_studio.url, key)
    status = run_job(host, api, project.id, batch_size=10, progress=False)
    assert status.state == "done" and status.done == 30
    assert api.listings == [None, 10, 10, 10], api.listings  # the plan's, and each batch's of its tasks: no more
    assert _per_task(label_studio, project.id, version) == Counter({1: 30})

    # another writer saves a second prediction of the next version on a task while the job runs: listed, removed
    newer = project.train(10, 20)
    api = _Counting(label_studio.url, key)

    def second_writer(batch, version):
        _api(label_studio, "POST", "/api/predictions/", json={
            "task": batch[0], "model_version": version, "score": 0.5,
            "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["x"]}}]})

    def execute(host_, api_, project_, batches, progress):
        from labelhub.backend.jobs import run_here

        for n, result in enumerate(run_here(host_, api_, project_, batches, progress)):
            if n == 0:
                second_writer(result.written, newer)
            yield result

    status = run_job(host, api, project.id, batch_size=10, progress=False, execute=execute)
    assert status.state == "done" and status.done == 30
    assert api.listings == [None, 10, 10, 10, 30], api.listings  # the 30 written, listed again
    assert _per_task(label_studio, project.id, newer) == Counter({1: 30})

    # a task the job wrote is deleted and another's second prediction saved during the job: the version's count is
    # what the job wrote (one prediction gone with its task, one more), but the project lost a task, so the tasks
    # written are listed again and the second prediction removed
    again = project.train(20, 25)
    api = _Counting(label_studio.url, key)

    deleted = []

    def delete_and_duplicate(batch):
        deleted.append(batch[1])
        label_studio.client().tasks.delete(id=batch[1])
        second_writer(batch, again)

    def execute_deleting(host_, api_, project_, batches, progress):
        from labelhub.backend.jobs import run_here

        for n, result in enumerate(run_here(host_, api_, project_, batches, progress)):
            if n == 0:
                delete_and_duplicate(result.written)
            yield result

    status = run_job(host, api, project.id, batch_size=10, progress=False, execute=execute_deleting)
    assert api.listings[-1] == status.done, api.listings  # listed again
    assert _per_task(label_studio, project.id, again) == Counter({1: 29})  # the second one removed

    # the same with a task created as well: the project's task count is what the listing held (one gone, one new),
    # but not every listed task is left, so the tasks written are listed again
    another = project.train(20, 27)
    api = _Counting(label_studio.url, key)

    def execute_replacing(host_, api_, project_, batches, progress):
        from labelhub.backend.jobs import run_here

        for n, result in enumerate(run_here(host_, api_, project_, batches, progress)):
            if n == 0:
                deleted.append(result.written[1])
                label_studio.client().tasks.delete(id=result.written[1])
                label_studio.client().projects.import_tasks(id=project.id, request=[{"text": "a task made meanwhile"}])
                second_writer(result.written, another)  # the version's count is even again, and the task count too
            yield result

    status = run_job(host, api, project.id, batch_size=10, progress=False, execute=execute_replacing)
    assert api.listings[-1] == status.done, api.listings  # listed again
    assert _per_task(label_studio, project.id, another) == Counter({1: 28, 0: 1})  # the second one removed; the new
    # task came after the listing

    # a job of some tasks: the plan's listing is not the whole project, so the end lists the tasks written
    newest = project.train(20, 30)
    api = _Counting(label_studio.url, key)
    some = sorted(t["id"] for t in project.tasks if t["id"] not in deleted)[:5]
    status = run_job(host, api, project.id, task_ids=some, batch_size=10, progress=False)
    assert status.done == 5 and api.listings == [5, 5, 5, None], api.listings  # and who else lacks the version
    assert _per_task(label_studio, project.id, newest) == Counter({0: 24, 1: 5})  # 30 made, 2 deleted, 1 new


def test_a_signal_inside_a_codec_is_named_as_the_signal():
    """CI saw ``Error: interrupted by encoding with 'idna' codec failed (KeyboardInterrupt: SIGTERM) after 50 of 300
    tasks``: SIGTERM landed while httpx encoded a host name, and CPython's codec registry re-raised it in its words."""
    import codecs

    from labelhub.backend.jobs import interrupt_reason

    def interrupted(text, errors="strict"):
        raise KeyboardInterrupt("SIGTERM")

    codecs.register(lambda name: codecs.CodecInfo(interrupted, interrupted, name=name)
                    if name == "labelhub_test_interrupted" else None)
    try:
        "host".encode("labelhub_test_interrupted")
    except KeyboardInterrupt as exc:
        assert "codec failed" in str(exc) and interrupt_reason(exc) == "SIGTERM"
    assert interrupt_reason(KeyboardInterrupt()) == "Ctrl-C"
