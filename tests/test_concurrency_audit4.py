"""Shared state under threads (a concurrency audit, stop 55): a blob read while ``git repack -d`` moves it into a pack,
an automatic prediction request made as the loop thread ends, and an early reconciliation asked for during one.

No servers: the real classes, the interleaving each needs made certain by a stand-in at the right line.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import labelhub.backend.auto_predict as auto_predict
from labelhub.repos.git import GitObjects
from labelhub.sync.service import SyncService
from tests import sample_repos


class _RepoMissingOnce:
    """A dulwich repository whose first read of each object misses it, as dulwich misses an object that ``git repack
    -d`` packed and deleted between its two looks (the packs, then the loose file)."""

    def __init__(self, repo):
        self._repo, self._missed = repo, set()

    def __getitem__(self, oid):
        if oid not in self._missed:
            self._missed.add(oid)
            raise KeyError(oid)
        return self._repo[oid]


def test_a_file_read_while_a_repack_moves_its_objects_is_found(tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", {"img/a.png": b"pixels"})
    sha = sample_repos.git(path, "rev-parse", "HEAD")
    objects = GitObjects(path)
    real = objects.repo()
    objects.repo = lambda: _RepoMissingOnce(real)  # every object: a miss, then found (the second look)
    found = objects.blob(sha, "img/a.png")
    assert found is not None and found[1] == b"pixels"  # was None: the backend answered 404 for an existing file
    assert objects.blob(sha, "img/missing.png") is None


class _EndingCondition(threading.Condition):
    """The loop's condition, its idle wait shortened, and the loop thread held for 50 ms once it released the lock on
    its way out (the preemption that left a request with no thread to run it)."""

    def __init__(self, predictor):
        super().__init__()
        self.predictor, self.ending, self.out = predictor, False, threading.Event()

    def wait(self, timeout=None):
        result = super().wait(0.01)
        if threading.current_thread().name == "labelhub-auto-predict" and not self.predictor._pending:
            self.ending = True
        return result

    def __exit__(self, *exc):
        result = super().__exit__(*exc)
        if self.ending and threading.current_thread().name == "labelhub-auto-predict":
            self.ending = False
            self.out.set()
            time.sleep(0.05)
        return result


def test_a_request_made_as_the_loop_thread_ends_still_runs(tmp_path, monkeypatch):
    import labelhub.backend.jobs as jobs
    import labelhub.backend.labelstudio_api as labelstudio_api

    ran = []
    monkeypatch.setattr(jobs, "run_job", lambda backend, api, project, task_ids=None, **kw: ran.append(task_ids))
    monkeypatch.setattr(labelstudio_api, "LabelStudioClient", lambda *a, **k: object())
    monkeypatch.setattr(auto_predict, "log_job_done", lambda *a, **k: None)
    settings = SimpleNamespace(auto_predict=True, label_studio_url="http://ls.test", label_studio_api_key="k" * 20,
                               redis_url=None, model_dir=Path(tmp_path), auto_predict_interval=0, keep_versions=0)
    predictor = auto_predict.AutoPredictor(SimpleNamespace(settings=settings, store=None))
    predictor._cond = condition = _EndingCondition(predictor)
    predictor.request("1.1700000000", task_ids=[1])
    assert condition.out.wait(10)  # the first job ran, the loop found nothing more and is on its way out
    predictor.request("1.1700000000", task_ids=[2])
    deadline = time.monotonic() + 10
    while [2] not in [sorted(ids or ()) for ids in ran] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [2] in [sorted(ids or ()) for ids in ran], (ran, predictor._pending)  # it waited for the next request


def test_an_early_reconciliation_asked_for_during_one_runs_at_the_next_turn():
    calls = []
    service = None

    def reconcile():
        calls.append(time.monotonic())
        if len(calls) == 1:  # the receiver's thread: an event left to reconciliation while this one reads
            asker = threading.Thread(target=service.reconcile_soon)
            asker.start()
            asker.join()

    service = SyncService(importer=SimpleNamespace(run=lambda: 0),
                          intake=SimpleNamespace(reconcile=reconcile, sweep=lambda: 0), exporter=None,
                          reconcile_interval=30, poll_interval=60)
    assert service.tick() <= 0.05 and service.wake.is_set()  # was: the next reconciliation in 30 s
    service.wake.clear()
    service.tick()
    assert len(calls) == 2
