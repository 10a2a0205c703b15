"""Tokens that cannot work are said plainly, and lose nothing: a ``LABEL_STUDIO_API_KEY`` shaped like a personal
access token (a JWT) that has expired or has no expiry, which label-studio-sdk refuses itself when its client is made
(``labelhub sync --once``, ``labelhub predict``, the backend's webhook and its automatic prediction's key check),
and an ``HF_TOKEN`` that is not set (or set empty, as compose's ``.env.example`` leaves it) when the Hub answers 401.

Real parts: a real Label Studio (``tests/labelstudio.py``), the ``labelhub`` CLI in a subprocess, the backend
in-process (``create_app``, as ``tests/test_backend_unknown_projects.py``) and the Hub test server through the real
``huggingface_hub`` client (``tests/hubserver``, whose writes need :data:`tests.conftest.HUB_TOKEN`).
"""
from __future__ import annotations

import base64
import json
import logging
import time

import pytest

from labelhub.errors import HubError
from labelhub.repos.hub import HubRepo
from tests import sample_repos
from tests.backend_fixtures import PLOT_REVIEW_CONFIG, annotation_event
from tests.conftest import HUB_TOKEN, run_labelhub
from tests.in_process import invoke_labelhub
from tests.test_cli_errors import CONFIG, assert_one_line


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict) -> str:
    """A JWT ``header.payload.signature`` with ``claims`` (label-studio-sdk decodes it without checking the
    signature: ``TokensClientExt._is_valid_jwt_token``)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(b'labelhub-test-signature-0000000')}"


#: A personal access token that expired in 2001, and a JWT with no ``exp`` at all.
EXPIRED = jwt({"exp": 1_000_000_000, "token_type": "refresh", "jti": "labelhubexpired"})
NO_EXPIRY = jwt({"token_type": "refresh", "jti": "labelhubnoexpiry"})
SAID = {EXPIRED: "is a personal access token that has expired",
        NO_EXPIRY: "is not a valid personal access token (a JWT with no expiry)"}
ADVICE = "make a new one in Label Studio (Account & Settings → Personal Access Token) and set LABEL_STUDIO_API_KEY"


# ---- LABEL_STUDIO_API_KEY: an expired personal access token -------------------------------------------------------

@pytest.mark.parametrize("key", [EXPIRED, NO_EXPIRY], ids=["expired", "no-exp"])
def test_sync_once_with_an_expired_personal_access_token_is_one_line_never_the_token(label_studio, make_project,
                                                                                     tmp_path, key):
    project = make_project("expired key", CONFIG)
    repo = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 2))
    proc = invoke_labelhub("sync", "--repo", str(repo), "--project", str(project.id), "--once", "--state",
                           str(tmp_path / "s.sqlite3"),
                           env={"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": key})
    assert_one_line(proc, 1, f"LABEL_STUDIO_API_KEY (for Label Studio at {label_studio.url}) {SAID[key]}: {ADVICE}")
    assert key not in proc.stderr + proc.stdout and key.split(".")[1] not in proc.stderr + proc.stdout


def test_predict_with_an_expired_personal_access_token_is_one_line_never_the_token(label_studio, tmp_path):
    answer = invoke_labelhub("predict", "--project", "1", "--api-key", EXPIRED, "--model-dir", str(tmp_path),
                             "--label-studio-url", label_studio.url, env={"TQDM_DISABLE": "1"})
    assert answer.returncode == 1, answer.stderr
    assert "Traceback" not in answer.stderr, answer.stderr
    assert answer.stderr.splitlines()[-1] == (f"Error: LABEL_STUDIO_API_KEY (for Label Studio at {label_studio.url}) "
                                              f"{SAID[EXPIRED]}: {ADVICE} to it")
    assert EXPIRED not in answer.stderr + answer.stdout


def test_the_webhook_keeps_events_when_the_key_is_an_expired_token_and_warns_once(label_studio, make_project,
                                                                                   tmp_path, caplog):
    """The unknown-project check (``check_project_exists``) cannot ask Label Studio with such a key: the event is
    kept (Label Studio never sends a webhook again), as when Label Studio is down, and the log says why once."""
    from labelhub.backend import project_check
    from labelhub.backend.app import create_app

    project_check._key_refusal_said.clear()  # once per process: another test may have said it
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False,
                      "label_studio_url": label_studio.url, "label_studio_api_key": EXPIRED})
    http = app.test_client()
    real = make_project("expired key webhook", PLOT_REVIEW_CONFIG)
    project = {"id": real.id, "created_at": "2024-06-10T08:00:00Z", "label_config": PLOT_REVIEW_CONFIG}
    with caplog.at_level(logging.DEBUG):
        for ann_id in (1, 2):
            task = {"id": ann_id, "data": {"text": f"a plot {ann_id}"}}
            answer = http.post("/webhook", json=annotation_event(ann_id, task, "plot", project=project))
            assert answer.status_code == 200, answer.get_json()
            assert answer.get_json()["status"] == "queued"
    assert len(list((tmp_path / "events" / "pending").iterdir())) == 2
    said = [r.getMessage() for r in caplog.records if r.name == "labelhub.backend.project_check" and r.levelname == "WARNING"]
    assert len(said) == 1 and SAID[EXPIRED] in said[0] and "their events are kept" in said[0], said
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert EXPIRED not in logged and EXPIRED.split(".")[1] not in logged


def test_the_auto_predict_key_check_says_an_expired_token_and_does_not_raise(label_studio):
    from labelhub.backend.auto_predict import check_key

    said = check_key(label_studio.url, EXPIRED)
    assert said == (f"LABELHUB_AUTO_PREDICT is on but LABEL_STUDIO_API_KEY (for Label Studio at {label_studio.url}) "
                    f"{SAID[EXPIRED]}: {ADVICE} to it; no automatic prediction job can run until it is fixed")
    assert check_key(label_studio.url, label_studio.personal_token) is None  # a valid token still passes


# ---- HF_TOKEN not set ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
def test_a_write_without_hf_token_says_it_is_not_set_not_that_it_was_refused(hub, token):
    """The test Hub answers 401 to a write without a token, as the Hub does; ``""`` is an empty ``HF_TOKEN``."""
    repo_id = f"labelhub/no-token-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id)
    head = hub.commit_files(repo_id, sample_repos.image_files(0, 1), message="images")
    repo = HubRepo(repo_id, token=token)
    assert repo.resolve("main") == head  # a public repo reads without a token
    for write in (lambda: repo.commit({"a.txt": b"a"}, "a", "", head), lambda: repo.create_tag("v1", head)):
        with pytest.raises(HubError) as err:
            write()
        assert err.value.status == 401
        message = str(err.value)
        assert "HF_TOKEN is not set" in message and "write access to export versions" in message, message
        assert "refused HF_TOKEN" not in message and "expired" not in message
    # a token that is sent and refused is still said as such
    with pytest.raises(HubError) as err:
        HubRepo(repo_id, token="hf_wrong0000000000000000000000").create_tag("v1", head)
    assert "refused HF_TOKEN" in str(err.value) and "hf_wrong" not in str(err.value)
    assert [t for t in HubRepo(repo_id, token=HUB_TOKEN).api.list_repo_refs(repo_id, repo_type="dataset").tags] == []


def test_sync_with_an_empty_hf_token_says_it_is_not_set_when_it_exports(label_studio, make_project, hub, tmp_path):
    """compose's ``.env.example`` leaves ``HF_TOKEN=`` empty: the export's 401 says no token was set."""
    from tests.test_sync_export import CONFIG as EXPORT_CONFIG, choice

    repo_id = sample_repos.hub_repo_with(hub, f"labelhub/empty-token-{time.monotonic_ns() % 10**9}",
                                         sample_repos.image_files(0, 2), private=False)
    project = make_project("empty HF_TOKEN", EXPORT_CONFIG)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token, "HF_TOKEN": ""}
    args = ["sync", "--repo", repo_id, "--project", str(project.id), "--once", "--state", str(tmp_path / "s.sqlite3")]
    run_labelhub(*args, "--no-export", env=env, check=True)  # a public repo imports without a token
    client = label_studio.client()
    for task in client.tasks.list(project=project.id, page_size=100):
        client.annotations.create(task.id, result=[choice("illustrated")])
    proc = run_labelhub(*args, env=env)
    assert proc.returncode == 1, proc.stderr  # --once ends on the refused export, in one line
    said = [line for line in proc.stderr.splitlines() if "answered 401" in line]
    assert said and "HF_TOKEN is not set" in said[0] and "write access to export versions" in said[0], proc.stderr
    assert "refused HF_TOKEN" not in proc.stderr and "Traceback" not in proc.stderr


def test_an_automatic_prediction_job_with_an_expired_key_fails_saying_why_and_is_kept(tmp_path):
    """The automatic jobs' thread made its Label Studio client before its loop, outside any try: an expired personal
    access token ended the thread at its first job and every later request waited for nothing. The job now fails
    like any other (its status says why, never the key) and the request stays for the next try."""
    from types import SimpleNamespace

    from labelhub.backend.auto_predict import AutoPredictor
    from labelhub.backend.job_status import JobStatus
    from labelhub.backend.settings import Settings

    settings = Settings(model_dir=tmp_path, auto_predict=True, label_studio_url="http://127.0.0.1:9",
                        label_studio_api_key=EXPIRED)
    auto = AutoPredictor(SimpleNamespace(settings=settings, name="one"))
    auto.request("3.100", unlabeled=True)
    deadline = time.monotonic() + 20
    while (status := JobStatus.load(tmp_path, "3.100")) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status is not None and status.state == "failed", status
    assert SAID[EXPIRED] in status.error and EXPIRED not in status.error
    assert auto._pending.get("3.100") == (True, set())  # kept, tried again after the backoff
    with auto._cond:  # the request dropped: the loop ends within 30 s instead of retrying (and logging) for ever
        auto._pending.clear()
        auto._cond.notify_all()


def test_every_label_studio_client_shares_one_ssl_context_that_still_verifies_certificates():
    """httpx made an SSL context per client (30 ms of CPU each, the CA bundle loaded again): now one per process,
    shared; it must still verify certificates and host names."""
    import ssl

    from labelhub.labelstudio_client import label_studio_client, shared_ssl_context

    context = shared_ssl_context()
    assert context is shared_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    clients = [label_studio_client(url, "k" * 40) for url in ("https://ls.example:8443", "http://127.0.0.1:1")]
    pools = [c._client_wrapper.httpx_client.httpx_client._transport._pool for c in clients]
    assert all(pool._ssl_context is context for pool in pools)
