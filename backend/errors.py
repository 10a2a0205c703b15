"""Exceptions of the ML backend and the Flask error handlers that turn them into JSON answers.

Label Studio reads an error from the ML backend as any non-2xx answer (``raise_for_status`` in
``label_studio/ml/api_connector.py``, ``MLApi._request``) and shows only its status line, so the reason phrase
of each error answer is its message (:func:`_answer`); the JSON body ``{"error": ..., "code": ...}`` is for
people and tools calling the backend directly. A view never builds an error response by
hand: it raises one of these and :func:`register_error_handlers` answers.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from labelhub.errors import LabelConfigError, LabelHubError
from labelhub.redaction import escaped, one_line, redact

log = logging.getLogger(__name__)

__all__ = [
    "BackendError", "BadRequestError", "InvalidPayloadError", "UnknownActionError", "UnauthorizedError",
    "MediaError", "MediaNotAllowedError", "MediaFetchError", "register_error_handlers",
]


class BackendError(LabelHubError):
    """Base class of the errors the backend answers with a JSON body (a :class:`labelhub.errors.LabelHubError`).

    Args:
        message: What went wrong, for a person (never contains a token).
        **context: Extra JSON-serializable fields of the answer (e.g. ``field="tasks"``).

    Attributes:
        status: The HTTP status code of the answer.
        code: A stable machine-readable error code.
        logged: Whether the raiser logs the refusal itself (its own line, once per worker and cause): then the
            handler's line (``POST /webhook → 404: ...``) is at DEBUG, so a refusal is one warning, not two.
    """

    status = 400
    code = "bad_request"
    logged = False

    def __init__(self, message: str, **context: Any):
        super().__init__(message)
        self.message = message
        self.context = context

    def to_dict(self) -> dict:
        """Return the JSON body: ``{"error": message, "code": code, **context}``."""
        return {"error": self.message, "code": self.code, **self.context}


class BadRequestError(BackendError, ValueError):
    """The request body is not valid JSON, or not a JSON object (HTTP 400)."""

    status = 400
    code = "bad_request"


class InvalidPayloadError(BackendError, ValueError):
    """The JSON is well formed but misses a field or has one of the wrong type (HTTP 422)."""

    status = 422
    code = "invalid_payload"


class UnknownActionError(BackendError, ValueError):
    """A ``/webhook`` event whose ``action`` is not a Label Studio webhook action (HTTP 422).

    The actions are listed in https://labelstud.io/guide/webhook_reference.
    """

    status = 422
    code = "unknown_action"


class UnauthorizedError(BackendError, PermissionError):
    """Basic auth or the webhook secret is missing or wrong (HTTP 401)."""

    status = 401
    code = "unauthorized"


class MediaError(LabelHubError):
    """A task's media could not be used; the task gets an empty prediction, others go on.

    Args:
        message: What went wrong; URLs in it carry no query string, so no signed token leaks.
    """

    code = "media_error"


class MediaNotAllowedError(MediaError):
    """The media URL's host is neither Label Studio, the Hub, nor on ``LABELHUB_ALLOWED_HOSTS``."""

    code = "media_not_allowed"


class MediaFetchError(MediaError):
    """The media could not be downloaded or decoded (timeout, HTTP error, too large, not an image)."""

    code = "media_fetch_failed"


#: The longest reason phrase an error answer carries (see :func:`_answer`): a label config's refusal names what the
#: backend answers before what it cannot (some 250 characters), so a shorter cut lost the reason itself.
MAX_REASON_CHARS = 2000


def _answer(body: dict, status: int):
    """A JSON error answer whose status line's reason phrase is the error itself (``422 no control tag of ...``).

    Label Studio keeps only ``str(HTTPError)`` of a failed call (``raise_for_status`` in
    ``label_studio/ml/api_connector.py``), which holds the reason phrase and not the body: so the message reaches
    the Connect Model dialog and the model's error field. A reason phrase is latin-1 text on one line (RFC 9112,
    section 4): other characters become ``?``, and it is cut at :data:`MAX_REASON_CHARS`.
    """
    response = jsonify(body)
    phrase = one_line(body.get("error", ""), MAX_REASON_CHARS)
    phrase = "".join(c if c.isprintable() else "?" for c in phrase).encode("latin-1", "replace").decode("latin-1")
    response.status = f"{status} {phrase}" if phrase else str(status)
    return response


def register_error_handlers(app: Flask) -> None:
    """Register JSON answers for :class:`BackendError`, werkzeug's HTTP errors and anything else.

    Args:
        app: The Flask app.

    Returns:
        None. A body over ``LABELHUB_MAX_BODY_BYTES`` answers 413 ``{"error": ..., "code": "payload_too_large"}``
        with one log line. An unexpected exception answers 500 ``{"error": "internal error", "code": "internal"}``
        and is logged with its traceback (secrets redacted).
    """

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        size = "chunked body" if request.content_length is None else f"body of {request.content_length} bytes"
        log.warning("%s %s → 413: %s over LABELHUB_MAX_BODY_BYTES=%s", request.method,
                    escaped(request.path, 100), size, limit)
        response = jsonify({"error": f"the request body is larger than LABELHUB_MAX_BODY_BYTES ({limit} bytes)",
                            "code": "payload_too_large", "limit": limit})
        response.status_code = 413
        return response

    def _refused(status: int, message: str, level: int = logging.WARNING) -> None:
        """One log line per refused request: Label Studio keeps a refusal's reason only in its dialog (``/setup``) or
        nowhere (a webhook it sends inside an annotator's save), so the backend's log is where a person finds it.
        At DEBUG (``level``) for an error whose raiser logged it (:attr:`BackendError.logged`)."""
        secrets = app.extensions["labelhub"].settings.secrets if "labelhub" in app.extensions else ()
        log.log(level, "%s %s → %d: %s", request.method, escaped(request.path, 100), status,
                one_line(redact(message, secrets), 500))

    @app.errorhandler(BackendError)
    def _backend_error(exc: BackendError):
        _refused(exc.status, str(exc.to_dict().get("error", "")), logging.DEBUG if exc.logged else logging.WARNING)
        response = _answer(exc.to_dict(), exc.status)
        if isinstance(exc, UnauthorizedError):
            response.headers["WWW-Authenticate"] = 'Basic realm="labelhub"'
        return response

    @app.errorhandler(LabelConfigError)
    def _label_config_error(exc: LabelConfigError):
        _refused(422, str(exc))
        return _answer({"error": str(exc), "code": "unsupported_label_config"}, 422)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        response = jsonify({"error": exc.description, "code": (exc.name or "error").lower().replace(" ", "_")})
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # pragma: no cover - a bug; tests assert it never happens
        secrets = app.extensions["labelhub"].settings.secrets if "labelhub" in app.extensions else ()
        log.error("unexpected error: %s", redact(repr(exc), secrets), exc_info=exc)
        response = jsonify({"error": "internal error", "code": "internal"})
        response.status_code = 500
        return response
