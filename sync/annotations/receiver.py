"""The webhook receiver: Label Studio → ``POST /webhook`` on the sync daemon.

Label Studio calls it inside the annotator's save with a 1 s timeout, so it only checks the secret
header, parses and applies the event to the SQLite store (milliseconds), wakes the daemon and
answers. Events of another project answer 400: the project's id and ``created_at`` must be this project's, as the sync
read them from Label Studio when it started (:func:`labelhub.sync.annotations.intake.parse_event`), so a Label Studio
instance or project that shares the secret and the URL cannot write into this one's versions. Label Studio's actions
the sync does not read (``PROJECT_UPDATED``, ``ANNOTATIONS_CREATED``, ...: a webhook made by hand may send every action)
answer 200 ``{"status": "ignored"}`` with one DEBUG line, as the backend's ``/webhook`` does; an action that is not
Label Studio's answers 400. Bad bodies answer 400, wrong secrets 403, bodies over :data:`MAX_BODY_BYTES` 413 (by their
``Content-Length`` before anything is read, or as soon as a chunked body passes the limit), and a state
that cannot be written 503, each with one log line saying why; the daemon keeps running. Events are
hints: reconciliation finds whatever they miss.

The secret travels in the header :data:`labelhub.webhooks.SECRET_HEADER`, which :func:`register` puts on the
project's webhook (https://labelstud.io/guide/webhooks#Add-a-webhook-in-Label-Studio).
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from labelhub.errors import InvalidEventError
from labelhub.redaction import escaped
from labelhub.sync.annotations.intake import ACTIONS, AnnotationIntake
from labelhub.webhooks import SECRET_HEADER, event_action, parse_json, secret_is_latin1, secret_matches

log = logging.getLogger(__name__)

__all__ = ["MAX_BODY_BYTES", "webhook_app", "WebhookServer", "register"]

#: The largest webhook body accepted: 16 MiB. Label Studio's annotation events carry one task and its
#: annotation (kilobytes; a task with an inlined image, a few MB); ``TASKS_DELETED`` of a whole project lists
#: ids (~20 bytes each: 16 MiB holds ~800,000).
MAX_BODY_BYTES = 16 * 1024 * 1024


def webhook_app(intake: AnnotationIntake, secret: str | None, on_change: Callable[[], None],
                max_body_bytes: int = MAX_BODY_BYTES, on_deferred: Callable[[], None] | None = None):
    """The WSGI app: ``POST /webhook`` (and ``GET /health``).

    Args:
        intake: Applies the events to the sync state.
        secret: The ``X-LabelHub-Secret`` every event must carry, or ``None``.
        on_change: Called after an event changed the stored annotations (wakes the daemon).
        max_body_bytes: The largest body accepted (default :data:`MAX_BODY_BYTES`).
        on_deferred: Called after an event was left to reconciliation (``deferred``: its ``task.data`` is not the
            state's), so that the daemon reconciles at its next turn instead of after ``--reconcile-interval``.

    Returns:
        The WSGI application. It answers JSON: 200 ``{"status": "ok", "action": ...}``, ``{"status": "ignored"}``
        for a Label Studio action the sync does not read (one DEBUG line), ``{"status": "deferred"}`` for an
        annotation event whose ``task.data`` is not the data the state holds (left to reconciliation:
        :meth:`AnnotationIntake.apply_event`); 400 (not JSON, not a Label Studio action, not an event of this project:
        another id or ``created_at``, or a ``project`` that is not an object with an integer id), 403 (wrong secret),
        404, 413 (body over ``max_body_bytes``) and 503 (the state cannot be written) with ``{"error": ...}`` and one
        log line; it never raises.

    A ``secret`` with a character outside latin-1 is one Label Studio cannot send (see
    :func:`labelhub.webhooks.secret_matches`): one warning says so when the app is made, without the secret.

    Events are applied one at a time: :class:`WebhookServer` answers each request in its own thread, and the intake's
    state is one SQLite connection, on which two transactions at once fail or roll each other back (8 annotators
    saving together had events answered 503, or 200 and not stored). An event is applied in about a millisecond.
    """
    if secret and not secret_is_latin1(secret):
        log.warning("the webhook secret has characters outside latin-1: Label Studio cannot send it in the %s header "
                    "(it sends header values as latin-1), so its events will be refused; use an ASCII secret",
                    SECRET_HEADER)
    one_at_a_time = threading.Lock()

    @Request.application
    def app(request: Request) -> Response:
        request.max_content_length = max_body_bytes
        if request.path == "/health":
            return _json({"status": "UP"})
        if request.path != "/webhook" or request.method != "POST":
            return _json({"error": "not found"}, 404)
        if secret and not secret_matches(request.headers, secret):
            log.warning("webhook refused from %s: missing or wrong %s header", request.remote_addr, SECRET_HEADER)
            return _json({"error": f"missing or wrong {SECRET_HEADER}"}, 403)
        try:
            raw = request.get_data()
            if request.content_length is None and len(raw) >= max_body_bytes and request.environ["wsgi.input"].read(1):
                raise RequestEntityTooLarge()  # werkzeug stops a chunked body at the limit without an error
            body = parse_json(raw or b"null")
            if event_action(body) not in ACTIONS:  # a Label Studio action (an unknown one raised)
                log.debug("webhook %s ignored: the sync reads only %s", body["action"], ", ".join(ACTIONS))
                return _json({"status": "ignored", "action": body["action"]})
            action, body = intake.parse_event(body)
        except RequestEntityTooLarge:
            size = "chunked body" if request.content_length is None else f"body of {request.content_length} bytes"
            log.warning("webhook refused from %s: %s over the limit of %d bytes", request.remote_addr, size,
                        max_body_bytes)
            return _json({"error": f"the body is larger than {max_body_bytes} bytes"}, 413)
        except InvalidEventError as exc:
            log.warning("webhook rejected: %s", escaped(str(exc)))
            return _json({"error": str(exc)}, 400)
        try:
            with one_at_a_time:
                changed = intake.apply_event(action, body)
        except (sqlite3.Error, OSError) as exc:  # a locked or full state: Label Studio logs the 503
            log.error("webhook %s not stored: %s: %s", action, type(exc).__name__, escaped(str(exc)))
            return _json({"error": "the sync state cannot be written now"}, 503)
        if changed is None:
            if on_deferred is not None:
                on_deferred()
            return _json({"status": "deferred", "action": action})
        if changed:
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
