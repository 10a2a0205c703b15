"""The sync's Label Studio client never sends an import call twice: a second POST after a lost answer or a 5xx
would create every task again (the import ledger recovers a lost answer instead). Against a loopback stand-in
that answers the import with a 503, as a proxy in front of a busy Label Studio does.

And over plain HTTP it opens a connection per request (:mod:`labelhub.labelstudio_client`: Label Studio's
development server holds every answer on a kept-alive connection for 40 ms), against a stand-in that keeps
connections alive as that server does (HTTP/1.1)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import httpx

from labelhub.errors import LabelStudioError
from labelhub.sync.labelstudio.project import LabelStudioProject


class _Busy(BaseHTTPRequestHandler):
    posts = 0

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        self._answer(200, {"id": 1, "title": "busy", "label_config": "<View/>", "created_at": "2024-06-10T08:00:00Z"})

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts += 1
        self._answer(503, {"detail": "busy"})


def test_an_import_answered_503_is_sent_once_and_reported():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        project = LabelStudioProject(f"http://127.0.0.1:{server.server_port}", "0" * 40, 1)
        with pytest.raises(LabelStudioError, match="503"):
            project.import_tasks([{"data": {"image": "a.png"}}])
        assert _Busy.posts == 1  # the SDK's client alone would have sent it three times
    finally:
        server.shutdown()


class _KeepAlive(_Busy):
    protocol_version = "HTTP/1.1"  # keeps connections alive, as Django's development server does

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/api/users"):
            self._answer(200, [{"id": 7, "email": "a@example.test"}])
        else:
            super().do_GET()


class _CountingServer(ThreadingHTTPServer):
    connections = 0

    def process_request(self, request, client_address):
        type(self).connections += 1
        super().process_request(request, client_address)


def test_over_plain_http_each_request_gets_its_own_connection():
    server = _CountingServer(("127.0.0.1", 0), _KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        project = LabelStudioProject(url, "0" * 40, 1)
        assert [project.users() for _ in range(3)] == [{7: "a@example.test"}] * 3
        assert _CountingServer.connections == 4  # the project's GET and three listings of users
        with httpx.Client() as kept:  # the stand-in does keep connections alive
            before = _CountingServer.connections
            for _ in range(3):
                kept.get(f"{url}/api/users/").raise_for_status()
            assert _CountingServer.connections == before + 1
    finally:
        server.shutdown()
