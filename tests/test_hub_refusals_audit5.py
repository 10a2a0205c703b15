"""What an audit of the Hub's refusals found (``/tmp/audit-hubperm``), each fixed and checked here:

1. a 429/5xx asking to wait longer than LabelHub's cap (``MAX_RETRY_AFTER``) held the daemon's loop in
   huggingface_hub's own retries (``Retry-After`` + 1 s, 5 times): the call now fails at once
   (:class:`labelhub.repos.hub._OneAttemptWhenStopping`);
2. huggingface_hub's ``HTTP Error 503 thrown while requesting ...`` lines came out at WARNING
   (:class:`labelhub.redaction.RetryLinesAtDebug`);
3. the Hub's 403 storage refusals were said as "HF_TOKEN needs write access" (:meth:`HubRepo._write_refused`);
4. an ``HF_ENDPOINT`` answering 200 with an HTML page ended in a ``JSONDecodeError`` (:func:`hub_errors`);
5. a 413 on a commit was retried every ``--export-interval`` with no advice, on two lines
   (:func:`labelhub.sync.service.is_refusal`, :meth:`HubRepo._too_large`, :func:`_http_error`);
6. the backend's file route and media fetcher said "no such file" or "HTTP 401" per image for a token that cannot read
   the repo or that the Hub refused (:meth:`labelhub.backend.files.RepoFiles.hub_refusal`);
7. a proxy that does not answer was not named (:func:`labelhub.repos.hub._proxy_named`).

The test Hub (``tests/hubserver``, its fault injection) where it can answer as the Hub does, and a stand-in server of a
few lines (:class:`StandIn`, the audit's ``standin.py``) for what it cannot: the Hub's own refusal texts, an HTML page,
rate-limit headers. No real wait: huggingface_hub's sleeps between its attempts are recorded, not slept.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import pytest

import huggingface_hub.utils._http as hf_http
from labelhub import retry as labelhub_retry
from labelhub.errors import HubError, HubUnreachable, TransientHubError
from labelhub.redaction import BACKOFF_LOGGER, RetryLinesAtDebug
from labelhub.repos.hub import HubRepo, hub_errors
from labelhub.signing import repo_key, sign_url
from labelhub.sync.service import REFUSED_FIRST, SyncService, is_refusal
from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub

SECRET = "labelhub-test-secret-0123456789"
FILES_LOGGER = "labelhub.backend.files"


class StandIn:
    """A tiny stand-in "Hub" on loopback answering every request with :attr:`status`, :attr:`ctype`, :attr:`body` and
    :attr:`headers` (set them before the call); :attr:`calls` lists ``(method, path)``."""

    def __init__(self, status=200, ctype="application/json", body="{}", headers=None):
        self.status, self.ctype, self.body, self.headers = status, ctype, body, dict(headers or {})
        self.calls: list[tuple[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                stand_in.calls.append((self.command, self.path))
                body = stand_in.body.encode()
                self.send_response(stand_in.status)
                self.send_header("Content-Type", stand_in.ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in stand_in.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def refuse(self, status: int, error: str) -> None:
        """Answer as the Hub refuses: ``{"error": ...}`` and ``X-Error-Message``."""
        self.status, self.ctype, self.body = status, "application/json", json.dumps({"error": error})
        self.headers = {"X-Error-Message": error}

    def __enter__(self) -> "StandIn":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in():
    with StandIn() as server:
        yield server


@pytest.fixture
def hf_sleeps(monkeypatch):
    """huggingface_hub's waits between its own attempts (``time.sleep`` in ``utils/_http.py``), recorded, not slept."""
    slept: list[float] = []

    class _Time:
        sleep = staticmethod(slept.append)

        def __getattr__(self, name):
            return getattr(time, name)

    monkeypatch.setattr(hf_http, "time", _Time())
    return slept


@pytest.fixture
def hub_repo(hub):
    repo_id = f"labelhub/refusals-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id)
    hub.commit_files(repo_id, sample_repos.image_files(0, 2), message="images")
    return repo_id


# 1. a wait asked over the cap ends huggingface_hub's own retries at once -----------------------------------------


def test_a_429_asking_to_wait_over_the_cap_fails_at_once_instead_of_sleeping_in_huggingface_hub(hub, hub_repo,
                                                                                              hf_sleeps):
    sha = hub.head(hub_repo)
    hub.faults.add(method="GET", path=r"/tree/", kind="429", count=3, retry_after=45)
    hub.reset_calls()
    started = time.monotonic()
    with pytest.raises(TransientHubError) as raised:
        HubRepo(hub_repo, token=HUB_TOKEN).list_files(sha)
    assert time.monotonic() - started < 5
    assert hf_sleeps == []  # before: 46 s, three times (the audit: an export 140 s late)
    assert hub.count_calls("GET", r"/tree/") == 1
    assert raised.value.status == 429 and raised.value.retry_after == 45
    # LabelHub's own retrier gives the attempt up at once too (Retry-After over MAX_RETRY_AFTER)
    tries = []
    with pytest.raises(TransientHubError):
        labelhub_retry.hub_retrying(5, "listing", sleep=tries.append)(lambda: (_ for _ in ()).throw(raised.value))
    assert tries == []


def test_a_wait_under_the_cap_is_still_huggingface_hubs_and_the_cap_is_read_at_each_answer(hub, hub_repo, hf_sleeps,
                                                                                         monkeypatch):
    sha = hub.head(hub_repo)
    hub.faults.add(method="GET", path=r"/tree/", kind="429", count=1, retry_after=2)
    assert len(HubRepo(hub_repo, token=HUB_TOKEN).list_files(sha)) == 3  # .gitattributes and the 2 images
    assert hf_sleeps == [3.0]  # Retry-After + 1 s, as huggingface_hub waits it
    monkeypatch.setattr(labelhub_retry, "MAX_RETRY_AFTER", 1.0)
    hub.faults.add(method="GET", path=r"/tree/", kind="503", count=1, retry_after=2)
    with pytest.raises(TransientHubError) as raised:
        HubRepo(hub_repo, token=HUB_TOKEN).list_files(sha)
    assert raised.value.status == 503 and hf_sleeps == [3.0]


def test_the_hubs_ratelimit_header_over_the_cap_fails_at_once_too(stand_in, hf_sleeps):
    stand_in.refuse(429, "rate limited")
    stand_in.headers.update({"RateLimit": '"api";r=0;t=55', "RateLimit-Policy": '"fixed window";"api";q=500;w=300'})
    with pytest.raises(TransientHubError) as raised:
        HubRepo("owner/ds", token="hf_x", endpoint=stand_in.url).list_files("a" * 40)
    assert raised.value.retry_after == 55
    assert len(stand_in.calls) == 1 and hf_sleeps == []


# 2. huggingface_hub's line about a retried status is at DEBUG ---------------------------------------------------


@pytest.fixture
def retry_lines_filter():
    logger = logging.getLogger(BACKOFF_LOGGER)
    added = RetryLinesAtDebug()
    logger.addFilter(added)
    yield
    logger.removeFilter(added)


def test_huggingface_hubs_http_error_lines_are_at_debug_like_its_connection_error_lines(hub, retry_lines_filter,
                                                                                      caplog):
    def lines():
        return [r for r in caplog.records if r.name == BACKOFF_LOGGER]

    def call_twice():
        hub.faults.add(method="GET", path=r"/refs", kind="503", count=2)
        with pytest.raises(Exception):
            hf_http.http_backoff("GET", f"{hub.url}/api/datasets/o/d/refs", max_retries=1, base_wait_time=0)
        with pytest.raises(httpx2.ConnectError):  # nothing listens there
            hf_http.http_backoff("GET", "http://127.0.0.1:9/api", max_retries=0)

    caplog.set_level(logging.INFO)
    call_twice()
    assert lines() == []  # before: "HTTP Error 503 thrown while requesting GET ..." twice at WARNING
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    call_twice()
    said = [(r.levelname, r.getMessage()) for r in lines()]
    assert [m for level, m in said if "HTTP Error 503 thrown while requesting" in m] and \
        [m for level, m in said if "thrown while requesting GET http://127.0.0.1:9" in m]
    assert {level for level, _ in said} == {"DEBUG"}


# 3. a 403 for storage is not "needs write access" -----------------------------------------------------------------

STORAGE_REFUSALS = (
    "Private repository storage limit reached, please upgrade your plan to increase your private storage limit.",
    "Your storage patterns tripped our internal systems! Please contact us at website@huggingface.co so we can "
    "verify your account and unlock more storage for your use-case.",
)


@pytest.mark.parametrize("error", STORAGE_REFUSALS)
def test_a_storage_refusal_says_the_storage_limit_not_write_access(stand_in, error):
    stand_in.refuse(403, error)
    repo = HubRepo("owner/ds", token="hf_x", endpoint=stand_in.url)
    for write in (lambda: repo.commit({"annotations/annotations.csv": b"a,b\n1,2\n"}, "v2", "", "0" * 40),
                  lambda: repo.create_tag("annotations-v2", "a" * 40)):
        with pytest.raises(HubError) as raised:
            write()
        message = str(raised.value)
        assert "needs write access" not in message
        assert error.rstrip(".") in message and "owner/ds" in message
        assert "storage limit" in message and "stay pending" in message
        assert "\n" not in message and raised.value.status == 403 and is_refusal(raised.value)
    stand_in.refuse(403, "You don't have the rights to create a commit in this repo")  # a 403 of the token's access
    with pytest.raises(HubError, match="HF_TOKEN needs write access to dataset owner/ds"):
        repo.create_tag("annotations-v2", "a" * 40)


# 4. an HTML page where the Hub answers JSON ---------------------------------------------------------------------


def test_an_endpoint_answering_an_html_page_is_one_hub_error_naming_it_and_the_repo(stand_in, caplog):
    stand_in.status, stand_in.ctype, stand_in.body = 200, "text/html", "<html><body>Sign in to continue</body></html>"
    endpoint = stand_in.url.replace("http://", "http://me:S3cretPw@")
    repo = HubRepo("owner/ds", token="hf_x", endpoint=endpoint)
    for call in (repo.tags, lambda: repo.head_and_tags("main"), lambda: repo.list_files("a" * 40)):
        with pytest.raises(HubError) as raised:
            call()
        message = str(raised.value)
        assert f"the Hub at {stand_in.url} answered a page that is not JSON" in message, message
        assert "owner/ds" in message and "HF_ENDPOINT" in message and "S3cretPw" not in message

    class Importer:  # the daemon's import step: its first Hub call is the poll
        def run(self):
            repo.head_and_tags("main")

    caplog.set_level(logging.INFO, logger="labelhub.sync.service")
    SyncService(Importer(), poll_interval=60).tick()
    said = [r.getMessage() for r in caplog.records if r.name == "labelhub.sync.service"]
    assert len(said) == 1 and stand_in.url in said[0] and "owner/ds" in said[0] and "not JSON" in said[0]


def test_a_one_shot_command_against_an_html_page_ends_in_one_line_not_a_traceback(stand_in):
    stand_in.status, stand_in.ctype, stand_in.body = 200, "text/html", "<html>captive portal</html>"
    done = invoke_labelhub("versions", "--repo", "owner/ds", "--hf-endpoint", stand_in.url)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "answered a page that is not JSON" in done.stderr and stand_in.url in done.stderr


def test_a_commit_without_the_card_answered_with_an_html_page_is_not_blamed_on_the_cards_check(stand_in):
    """A commit that does not hold README.md has no check of it: an endpoint answering HTML is said as any call's."""
    stand_in.status, stand_in.ctype, stand_in.body = 200, "text/html", "<html>captive portal</html>"
    repo = HubRepo("owner/ds", token="hf_x", endpoint=stand_in.url)
    with pytest.raises(HubError) as raised:
        repo.commit({"annotations/annotations.csv": b"a,b\n1,2\n"}, "annotations v1", "", "a" * 40, revision="main")
    assert "answered a page that is not JSON" in str(raised.value) and "README.md" not in str(raised.value)


# 5. a 413 backs off as a refusal, with advice, on one line -------------------------------------------------------


def test_every_4xx_but_408_409_412_and_429_backs_the_export_off():
    refusals = {status: is_refusal(HubError("refused", status))
                for status in (400, 401, 403, 404, 408, 409, 412, 413, 422, 429, 500, 503, None)}
    assert [status for status, refused in refusals.items() if refused] == [400, 401, 403, 404, 413, 422]


def test_a_413_export_is_said_once_and_retried_after_a_minute_not_every_export_interval(caplog):
    class Importer:
        def run(self):
            pass

    class Exporter:
        attempts = 0

        def pending(self):
            return True

        def export(self):
            Exporter.attempts += 1
            raise HubError("the Hub at http://hub answered 413: too large", 413)

    service = SyncService(Importer(), exporter=Exporter(), export_interval=3)
    caplog.set_level(logging.DEBUG, logger="labelhub.sync.service")
    service.tick()
    assert service._due["export"] - time.monotonic() > REFUSED_FIRST - 5  # before: 3 s, forever
    service._due["export"] = 0.0
    service.tick()
    assert service._due["export"] - time.monotonic() > 2 * REFUSED_FIRST - 5 and Exporter.attempts == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "retried in 60 s" in errors[0]


def test_a_413_on_a_commit_says_how_large_it_was_and_what_to_do(hub, hub_repo):
    hub.faults.add(method="POST", path=r"/commit/", kind="413")
    files = {"annotations/annotations.csv": b"path,label\n" * 1000, "annotations/manifest.json": b"{}"}
    with pytest.raises(HubError) as raised:
        HubRepo(hub_repo, token=HUB_TOKEN).commit(files, "annotations v1", "", hub.head(hub_repo))
    message = str(raised.value)
    assert raised.value.status == 413 and is_refusal(raised.value)
    assert f"the commit of 2 files (0.0 MB, annotations/annotations.csv 0.0 MB of it) to dataset {hub_repo}" in message
    assert "larger than the Hub" in message and "--csv-path" in message and "client_max_body_size" in message


def test_a_413_page_of_a_proxy_is_said_on_one_line(stand_in):
    stand_in.status, stand_in.ctype = 413, "text/html"
    stand_in.body = "<html><head><title>413 Request Entity Too Large</title></head><body>nginx</body></html>"
    with pytest.raises(HubError) as raised:
        HubRepo("owner/ds", token="hf_x", endpoint=stand_in.url).commit({"a.csv": b"a\n"}, "v1", "", "0" * 40)
    assert "\n" not in str(raised.value)  # before: huggingface_hub's "For more information check: ..." line
    assert "413" in str(raised.value) and "larger than the Hub" in str(raised.value)


# 6. the backend says once that HF_TOKEN cannot read the repo ----------------------------------------------------


def _files_client(tmp_path, repo_id, token):
    from labelhub.backend.app import create_app

    return create_app({"model_dir": tmp_path / "models", "start_trainer": False, "warmup": False, "secret": SECRET,
                       "file_repos": (repo_id,), "hf_token": token}).test_client()


@pytest.mark.parametrize("case", ["revoked token", "token without access"])
def test_the_file_route_says_once_that_hf_token_cannot_read_the_repo(hub, tmp_path, caplog, case):
    repo_id = f"labelhub/private-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id, private=True)
    hub.commit_files(repo_id, sample_repos.image_files(0, 3), message="images")
    sha = hub.head(repo_id)
    if case == "revoked token":
        client, expected = _files_client(tmp_path, repo_id, "hf_revokedToken00000000000000000000"), "refused HF_TOKEN"
    else:  # a repo the token cannot see answers as one that does not exist
        repo_id = f"{repo_id}-unseen"
        client, expected = _files_client(tmp_path, repo_id, HUB_TOKEN), f"HF_TOKEN cannot read dataset {repo_id}"
    caplog.set_level(logging.DEBUG, logger=FILES_LOGGER)
    paths = sorted(p for p in sample_repos.image_files(0, 3))
    answers = [client.get(sign_url("", SECRET, repo_key(repo_id), sha, p)) for p in paths]
    assert [a.status_code for a in answers] == [502, 502, 502]  # before: 404 for the unseen repo
    warnings = [r.getMessage() for r in caplog.records if r.name == FILES_LOGGER and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings  # before: one per image, "Hub download failed (HTTP 401)"
    assert expected in warnings[0] and repo_id in warnings[0] and "hf_revoked" not in warnings[0]
    debug = [r.getMessage() for r in caplog.records if r.name == FILES_LOGGER and r.levelno == logging.DEBUG]
    assert len(debug) == 3 and all(expected in line for line in debug)


def test_the_media_fetcher_says_the_token_was_refused_once_per_repo(hub, tmp_path, caplog):
    from labelhub.backend.errors import MediaFetchError
    from labelhub.backend.media import MediaFetcher
    from labelhub.backend.settings import Settings

    repo_id = f"labelhub/private-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id, private=True)
    hub.commit_files(repo_id, sample_repos.image_files(0, 2), message="images")
    sha = hub.head(repo_id)
    fetcher = MediaFetcher(Settings(model_dir=tmp_path, hf_token="hf_revokedToken00000000000000000000"))
    caplog.set_level(logging.DEBUG, logger=FILES_LOGGER)
    for path in sorted(sample_repos.image_files(0, 2)):
        with pytest.raises(MediaFetchError) as raised:
            fetcher.fetch(f"hf://datasets/{repo_id}@{sha}/{path}")
        assert "refused HF_TOKEN" in str(raised.value) and repo_id in str(raised.value)  # before: "(HTTP 401)"
    warnings = [r.getMessage() for r in caplog.records if r.name == FILES_LOGGER and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "refused HF_TOKEN" in warnings[0]


# 7. a proxy that does not answer is named --------------------------------------------------------------------------


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_no_answer_through_a_proxy_names_the_proxy_without_its_password(no_proxy_env):
    no_proxy_env.setenv("HTTPS_PROXY", "http://me:Pr0xyPw@127.0.0.1:9")
    with pytest.raises(HubUnreachable) as raised:
        with hub_errors("https://hub.example", "owner/ds"):
            raise httpx2.ConnectError("[Errno 111] Connection refused")
    message = str(raised.value)
    assert "cannot reach the Hub at https://hub.example through the proxy http://127.0.0.1:9 (HTTPS_PROXY)" in message
    assert "Pr0xyPw" not in message
    no_proxy_env.setenv("NO_PROXY", "hub.example")
    with pytest.raises(HubUnreachable) as raised:
        with hub_errors("https://hub.example", "owner/ds"):
            raise httpx2.ConnectError("[Errno 111] Connection refused")
    assert "proxy" not in str(raised.value)


def test_a_closed_proxy_port_is_named_by_a_real_call(hub, hub_repo, no_proxy_env):
    from huggingface_hub.utils._http import close_session

    no_proxy_env.setenv("HTTP_PROXY", "http://me:Pr0xyPw@127.0.0.1:9")  # nothing listens there
    close_session()  # the shared client reads the environment when it is made
    try:
        with pytest.raises(HubUnreachable) as raised:
            HubRepo(hub_repo, token=HUB_TOKEN).tags()
    finally:
        no_proxy_env.delenv("HTTP_PROXY")
        close_session()
    assert "through the proxy http://127.0.0.1:9 (HTTP_PROXY)" in str(raised.value)
    assert "Pr0xyPw" not in str(raised.value)
