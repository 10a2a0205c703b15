"""The sync's Label Studio client never sends an import call twice: a second POST after a lost answer or a 5xx
would create every task again (the import ledger recovers a lost answer instead). Against a loopback stand-in
that answers the import with a 503, as a proxy in front of a busy Label Studio does."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

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
