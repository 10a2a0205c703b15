"""``LABELHUB_AUTO_PREDICT`` with a job that fails: the request is kept, shown as failed (no secret) and tried again;
a refused key is said when the trainer starts. Against the real Label Studio (its 401 for a wrong key).

Audit: with a wrong LABEL_STUDIO_API_KEY, after a retrain the log said ``auto-predict failed: ... (401)``, the
pending requests file became ``{}``, ``/health`` still showed the previous job ``done``, and after fixing the key and
restarting nothing was predicted again.
"""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace

from labelhub.backend import auto_predict, jobs
from labelhub.backend.auto_predict import PENDING_FILE, AutoPredictor, check_key
from labelhub.backend.job_status import read_statuses
from labelhub.backend.settings import Settings
from labelhub.backend.state import Store
from tests.backend_fixtures import wait_for

WRONG = "wrong-key-0123456789abcdef"


def test_a_failed_request_is_kept_shown_as_failed_and_tried_again(label_studio, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(auto_predict, "RETRY_SECONDS", 0.5)
    caplog.set_level(logging.INFO, logger="labelhub")
    settings = Settings(model_dir=tmp_path, auto_predict=True, label_studio_url=label_studio.url,
                        label_studio_api_key=WRONG)
    auto = AutoPredictor(SimpleNamespace(settings=settings, store=Store(tmp_path)))
    auto.resume_interrupted()  # the trainer starts: the key is checked once
    assert "refused LABEL_STUDIO_API_KEY (401)" in caplog.text and WRONG not in caplog.text

    auto.request("7.100", [3, 4])
    shown = wait_for(lambda: read_statuses(tmp_path).get("7.100"), timeout=30, message="the failure on /health")
    assert shown["state"] == "failed" and "refused LABEL_STUDIO_API_KEY (401)" in shown["error"], shown
    assert "tried again in 0 s" in shown["error"] or "tried again in 1 s" in shown["error"], shown
    assert WRONG not in json.dumps(shown)
    saved = json.loads((tmp_path / PENDING_FILE).read_text())
    assert saved == {"7.100": {"unlabeled": False, "task_ids": [3, 4]}}  # before: {}
    # tried again, after a longer wait each time
    wait_for(lambda: "tried again in 2 s" in (read_statuses(tmp_path).get("7.100") or {}).get("error", ""),
             timeout=30, message="the third try")
    assert json.loads((tmp_path / PENDING_FILE).read_text()) == saved

    # the key fixed, the backend restarted: the next trainer asks for the request again
    with auto._cond:  # the first process is gone: once its try has ended and saved (a clear between the failure's
        # status and that save wrote the file empty: the test's race, seen once in a full run), it asks for nothing more
        assert auto._cond.wait_for(lambda: not auto._running, timeout=30)
        auto._pending.clear()
    calls = []

    def recorded(host, api, project_id, *, task_ids=None, unlabeled=False, **_):
        calls.append((project_id, task_ids, unlabeled))
        return SimpleNamespace(done=2, model_version="v", failed=0)

    monkeypatch.setattr(jobs, "run_job", recorded)
    fixed = Settings(model_dir=tmp_path, auto_predict=True, label_studio_url=label_studio.url,
                     label_studio_api_key=label_studio.personal_token or label_studio.api_key)
    caplog.clear()
    second = AutoPredictor(SimpleNamespace(settings=fixed, store=Store(tmp_path)))
    second.resume_interrupted()
    assert "LABEL_STUDIO_API_KEY" not in caplog.text  # the key check passed: no warning
    assert second.wait_idle(10) and calls == [(7, [3, 4], False)]
    assert json.loads((tmp_path / PENDING_FILE).read_text()) == {}


def test_the_key_check_warns_when_label_studio_is_down_without_calling_the_key_wrong():
    problem = check_key("http://127.0.0.1:9", WRONG)
    assert problem.startswith("cannot check LABEL_STUDIO_API_KEY: no answer from Label Studio at http://127.0.0.1:9")
    assert "refused" not in problem and WRONG not in problem


def test_a_request_of_a_project_label_studio_does_not_have_is_dropped_not_retried(label_studio, tmp_path, caplog):
    settings = Settings(model_dir=tmp_path, auto_predict=True, label_studio_url=label_studio.url,
                        label_studio_api_key=label_studio.personal_token or label_studio.api_key)
    auto = AutoPredictor(SimpleNamespace(settings=settings, store=Store(tmp_path)))
    auto.request("987654.100", [1])
    assert auto.wait_idle(30)
    assert json.loads((tmp_path / PENDING_FILE).read_text()) == {}
    assert "project 987654.100: auto-predict dropped its request: project 987654: not found" in caplog.text
