"""The webhook receiver: Label Studio → ``POST /webhook`` on the sync daemon.

Label Studio calls it inside the annotator's save with a 1 s timeout, so it only checks the secret
header, parses and applies the event to the SQLite store (milliseconds), wakes the daemon and
answers. Bad bodies answer 400 and wrong secrets 403, each with one log line saying why; the
daemon keeps running. Events are hints: reconciliation finds whatever they miss.

The secret travels in the header :data:`labelhub.webhooks.SECRET_HEADER`, which :func:`register` puts on the
project's webhook (https://labelstud.io/guide/webhooks#Add-a-webhook-in-Label-Studio).
"""
from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from labelhub.errors import InvalidEventError
from labelhub.sync.annotations.intake import ACTIONS, AnnotationIntake, parse_event
from labelhub.webhooks import SECRET_HEADER

log = logging.getLogger(__name__)


def webhook_app(intake: AnnotationIntake, secret: str | None, on_change: Callable[[], None]):
    """The WSGI app: ``POST /webhook`` (and ``GET /health``)."""

    @Request.application
    def app(request: Request) -> Response:
        if request.path == "/health":
            return _json({"status": "UP"})
        if request.path != "/webhook" or request.method != "POST":
            return _json({"error": "not found"}, 404)
        if secret and not hmac.compare_digest(request.headers.get(SECRET_HEADER, ""), secret):
            log.warning("webhook refused from %s: missing or wrong %s header", request.remote_addr, SECRET_HEADER)
            return _json({"error": f"missing or wrong {SECRET_HEADER}"}, 403)
        try:
            action, body = parse_event(json.loads(request.get_data(as_text=True) or "null"),
                                       intake.project.project_id)
        except (ValueError, InvalidEventError) as exc:
            reason = f"not JSON: {exc}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            log.warning("webhook rejected: %s", reason)
            return _json({"error": reason}, 400)
        if intake.apply_event(action, body):
            on_change()
        return _json({"status": "ok", "action": action})

    return app


def _json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


class WebhookServer:
    """Serves :func:`webhook_app` on ``host:port`` in a daemon thread (``port=0``: a free one)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self._server = make_server(host, port, app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhooks", daemon=True)

    def start(self) -> "WebhookServer":
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()


def register(project, url: str, secret: str | None) -> int:
    """Create or update the project's webhook to ``url`` (``send_payload=True``, the annotation
    actions of :data:`labelhub.sync.annotations.intake.ACTIONS`, the secret header); returns its id."""
    headers = {SECRET_HEADER: secret} if secret else {}
    return project.ensure_webhook(url, headers, ACTIONS)
