"""Request body limits (413) under real servers, and configuration errors at ``labelhub backend`` start.

- The backend under gunicorn with ``LABELHUB_MAX_BODY_BYTES=1 MiB``: a body declared larger by its
  ``Content-Length`` is answered 413 before a byte of it is sent (so the worker cannot have read it); a
  chunked body is answered 413 once it passes the limit, long before the client has sent it all, and the
  worker's memory does not grow by the body's size.
- The sync's webhook receiver (werkzeug's server): the same, with its own limit.
- ``labelhub backend`` with a bad setting exits 1 within seconds with one line on stderr, no traceback, no
  secret, and never starts gunicorn.
"""
from __future__ import annotations

import json
import logging
import select
import socket
import time

import pytest
import requests

from labelhub.backend.app import create_app
from tests.backend_fixtures import BackendServer, annotation_event
from tests.conftest import run_labelhub

LIMIT = 1024 * 1024


def _headers(path: str, port: int, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"{extra}\r\n").encode()


def _read_answer(sock: socket.socket, timeout: float = 10) -> tuple[int, dict]:
    """The status and JSON body of the HTTP answer on ``sock`` (read until the body is complete)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        while len(body) < int(headers["content-length"]):
            chunk = sock.recv(65536)
            assert chunk, "connection closed in the answer's body"
            body += chunk
        body = body[:int(headers["content-length"])]
    else:  # chunked answer: read until the last chunk
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, "connection closed in the answer's body"
            body += chunk
        raw, body = body, b""
        while True:
            size, _, raw = raw.partition(b"\r\n")
            if not int(size, 16):
                break
            body, raw = body + raw[:int(size, 16)], raw[int(size, 16) + 2:]
    return int(lines[0].split()[1]), json.loads(body)


def declared_too_large(port: int, path: str, length: int) -> tuple[int, dict, float]:
    """Send only the headers of a body of ``length`` bytes; the answer must come without the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(_headers(path, port, f"Content-Length: {length}\r\n"))
        status, body = _read_answer(sock)
        return status, body, time.monotonic() - started


def chunked_too_large(port: int, path: str, give_up_after: int) -> tuple[int, dict, int]:
    """Stream a chunked body until the server answers; returns the status, the answer and the bytes sent."""
    chunk = b"[" + b"0," * 32767 + b"0"  # 64 KiB of a JSON array that never ends
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_headers(path, port, "Transfer-Encoding: chunked\r\n"))
        while sent < give_up_after:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is there
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        status, body = _read_answer(sock)
        return status, body, sent


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# the backend -------------------------------------------------------------------------------------------
def test_flask_app_answers_413_json_over_the_limit(tmp_path):
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False, "max_body_bytes": 4096})
    client = app.test_client()
    for path in ("/webhook", "/predict", "/setup", "/train", "/health"):
        answer = client.post(path, data=b"{" + b" " * 5000 + b"}", content_type="application/json")
        assert answer.status_code == 413 and answer.json["code"] == "payload_too_large", (path, answer.json)
        assert "LABELHUB_MAX_BODY_BYTES" in answer.json["error"] and answer.json["limit"] == 4096
    assert client.post("/webhook", json={"action": "TASKS_CREATED", "pad": " " * 3000}).status_code == 200


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"LABELHUB_MAX_BODY_BYTES": str(LIMIT), "LABELHUB_TRAINER": "false"}
    with BackendServer(tmp_path_factory.mktemp("limits"), workers=1, threads=4, env=env) as srv:
        yield srv


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(server):
    status, body, seconds = declared_too_large(server.port, "/webhook", 300 * 1024 * 1024)
    assert status == 413 and body["code"] == "payload_too_large" and body["limit"] == LIMIT
    assert seconds < 5  # nothing of the body was sent: a worker reading it would still be waiting
    for path in ("/predict", "/setup", "/train"):
        assert declared_too_large(server.port, path, LIMIT + 1)[0] == 413


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(server):
    worker = server.worker_pids()[0]
    before = rss_bytes(worker)
    status, body, sent = chunked_too_large(server.port, "/webhook", give_up_after=256 * 1024 * 1024)
    assert status == 413 and body["code"] == "payload_too_large"
    assert sent < 64 * 1024 * 1024  # answered long before the client's 256 MB were sent
    assert rss_bytes(worker) - before < 32 * 1024 * 1024
    assert "Traceback" not in server.log_tail(200)


def test_a_body_under_the_limit_is_served(server):
    task = {"id": 1, "data": {"image": "https://example.test/1.png", "note": "x" * (LIMIT // 2)}}
    answer = requests.post(server.url + "/webhook", json=annotation_event(1, task, "Bag"), timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == "queued"
    chunked = requests.post(server.url + "/webhook", data=iter([b'{"action": ', b'"TASKS_CREATED"}']),
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert chunked.status_code == 200 and chunked.json()["status"] == "ignored"


# the sync's webhook receiver ---------------------------------------------------------------------------------
@pytest.fixture
def receiver(tmp_path):
    from labelhub.sync.annotations.intake import AnnotationIntake
    from labelhub.sync.annotations.receiver import WebhookServer, webhook_app
    from labelhub.sync.state import SyncState

    class Project:
        project_id = 1

    state = SyncState(tmp_path / "s.sqlite3", 1, "o/r")
    server = WebhookServer(webhook_app(AnnotationIntake(Project(), state), None, lambda: None,
                                       max_body_bytes=64 * 1024)).start()
    yield server
    server.stop()
    state.close()


def test_receiver_refuses_bodies_over_its_limit_with_413_and_one_log_line(receiver, caplog):
    with caplog.at_level(logging.WARNING, logger="labelhub.sync.annotations.receiver"):
        status, body, seconds = declared_too_large(receiver.port, "/webhook", 300 * 1024 * 1024)
        assert status == 413 and "larger than 65536 bytes" in body["error"] and seconds < 5
        status, body, sent = chunked_too_large(receiver.port, "/webhook", give_up_after=64 * 1024 * 1024)
        assert status == 413 and sent < 16 * 1024 * 1024
    refusals = [r for r in caplog.records if "over the limit" in r.getMessage()]
    assert len(refusals) == 2 and all("\n" not in r.getMessage() for r in refusals)
    event = {"action": "TASKS_DELETED", "project": {"id": 1}, "tasks": [{"id": 1}]}
    answer = requests.post(f"http://127.0.0.1:{receiver.port}/webhook", json=event, timeout=5)
    assert answer.status_code == 200


def test_receiver_default_limit_is_16_mib():
    from labelhub.sync.annotations.receiver import MAX_BODY_BYTES

    assert MAX_BODY_BYTES == 16 * 1024 * 1024


# configuration errors at start ---------------------------------------------------------------------------
def _bad_settings(tmp_path):
    not_a_repo = tmp_path / "not-a-repo"
    not_a_repo.mkdir()
    secret = "hf_SecretValue0123456789"
    return {
        "a file repo that is not a git repository": ({"LABELHUB_FILE_REPOS": str(not_a_repo)}, "LABELHUB_FILE_REPOS",
                                                      None),
        "an image size that is not a number": ({"LABELHUB_IMAGE_SIZE": "big"}, "LABELHUB_IMAGE_SIZE", None),
        "an image size of zero": ({"LABELHUB_IMAGE_SIZE": "0"}, "LABELHUB_IMAGE_SIZE", None),
        "a short secret": ({"LABELHUB_SECRET": "short-secret"}, "LABELHUB_SECRET", "short-secret"),
        "a model that does not import": ({"LABELHUB_MODEL": "nowhere.models:Model"}, "LABELHUB_MODEL", None),
        "a body limit that is not a number": ({"LABELHUB_MAX_BODY_BYTES": "64MB"}, "LABELHUB_MAX_BODY_BYTES", None),
        "a secret in a bad repo entry": ({"HF_TOKEN": secret, "LABELHUB_FILE_REPOS": f"x{secret}"},
                                         "LABELHUB_FILE_REPOS", secret),
        "a Redis URL with a query parameter redis-py does not know": (
            {"LABELHUB_REDIS_URL": f"redis://:{secret}@127.0.0.1:9/0?foo=bar"}, "LABELHUB_REDIS_URL", secret),
        "a basic auth password without a user": ({"BASIC_AUTH_PASS": secret}, "BASIC_AUTH_USER", secret),
        "a Redis URL whose port is no number": ({"LABELHUB_REDIS_URL": f"redis://:{secret}@127.0.0.1:port/0"},
                                                "LABELHUB_REDIS_URL", secret),
    }


@pytest.mark.parametrize("case", ["a file repo that is not a git repository", "an image size that is not a number",
                                  "an image size of zero", "a short secret", "a model that does not import",
                                  "a body limit that is not a number", "a secret in a bad repo entry",
                                  "a Redis URL with a query parameter redis-py does not know",
                                  "a Redis URL whose port is no number", "a basic auth password without a user"])
def test_a_configuration_error_ends_the_backend_once_with_one_line(tmp_path, case):
    env, variable, secret = _bad_settings(tmp_path)[case]
    env = {**env, "MODEL_DIR": str(tmp_path / "models"), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    started = time.monotonic()
    proc = run_labelhub("backend", "--port", "9", "--workers", "2", env=env, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert time.monotonic() - started < 15
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and variable in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "gunicorn" not in proc.stderr.lower()
    if secret:
        assert secret not in proc.stdout + proc.stderr
    assert not (tmp_path / "prom").exists()  # nothing was started
