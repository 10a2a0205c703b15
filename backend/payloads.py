"""Parse and validate the request bodies Label Studio sends (the edge of the app).

Shapes come from Label Studio's client, ``label_studio/ml/api_connector.py`` (``MLApi.setup``,
``MLApi._prep_prediction_req``, ``MLApi.train``) and its webhooks (``label_studio/webhooks/utils.py``
``run_webhook_sync``: ``{"action": ..., **payload}``); see also https://labelstud.io/guide/ml_create.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from labelhub.backend.errors import BadRequestError, InvalidPayloadError
from labelhub.backend.state import project_key
from labelhub.errors import InvalidEventError
from labelhub.webhooks import check_training_tasks, parse_json

__all__ = ["read_body", "json_body", "SetupRequest", "PredictRequest", "TrainRequest"]


def read_body(request: Request) -> bytes:
    """The request's body, at most ``request.max_content_length`` (``LABELHUB_MAX_BODY_BYTES``) bytes of it.

    werkzeug refuses a body whose ``Content-Length`` is over the limit before reading it, but stops reading a
    chunked body at the limit without an error (``LimitedStream.readall``); a body that goes on past the limit
    is refused here, so it is never answered as if it were its first ``limit`` bytes.

    Args:
        request: The Flask request.

    Returns:
        The whole body.

    Raises:
        werkzeug.exceptions.RequestEntityTooLarge: When the body is over the limit (HTTP 413).
    """
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(raw) >= limit \
            and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return raw


def json_body(request: Request, required: bool = True) -> dict:
    """The request's JSON object.

    Args:
        request: The Flask request.
        required: When ``False``, an empty body gives ``{}`` (``GET /versions``).

    Returns:
        The parsed object.

    Raises:
        BadRequestError: When the body is not strict JSON (:func:`labelhub.webhooks.parse_json`: no ``NaN``, at
            most :data:`labelhub.webhooks.MAX_JSON_DEPTH` levels deep), or not a JSON object.
        werkzeug.exceptions.RequestEntityTooLarge: When the body is over ``LABELHUB_MAX_BODY_BYTES`` (413).
    """
    raw = read_body(request)
    if not raw.strip():
        if required:
            raise BadRequestError("the request body is empty; send a JSON object")
        return {}
    try:
        body = parse_json(raw)
    except InvalidEventError as exc:
        raise BadRequestError(f"the request body is {exc}"[:300]) from None
    if not isinstance(body, dict):
        raise BadRequestError(f"the request body must be a JSON object, not {type(body).__name__}")
    return body


def _label_config(body: dict, field: str, required: bool) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidPayloadError(f"'{field}' must be the label config XML", field=field)
    return value


@dataclass(frozen=True)
class SetupRequest:
    """``POST /setup``: ``{project, schema, hostname, access_token, extra_params}`` (``MLApi.setup``).

    The ``access_token`` is never kept or logged. ``extra_params`` is ``None`` when the body has no such key (the
    project's stored params stay); Label Studio always sends it, ``null`` when the Connect Model dialog's "Extra
    params" are empty, which is ``{}``: params removed in the dialog are removed here too.
    """

    project: str
    label_config: str
    extra_params: Any = None

    @classmethod
    def parse(cls, body: dict) -> "SetupRequest":
        """Validate a ``/setup`` body.

        Raises:
            InvalidPayloadError: When ``project`` or ``schema`` is missing or malformed, or ``extra_params``
                is not a JSON object (or its text).
        """
        from labelhub.backend.models.params import parse_params

        try:
            extra_params = parse_params(body["extra_params"], "extra_params") if "extra_params" in body else None
        except ValueError as exc:
            raise InvalidPayloadError(str(exc), field="extra_params") from None
        return cls(project=project_key(body.get("project")), label_config=_label_config(body, "schema", True),
                   extra_params=extra_params)


@dataclass(frozen=True)
class PredictRequest:
    """``POST /predict``: ``{tasks, project, label_config, params: {login, password, context}}``.

    ``context`` is ``None`` for pre-annotations and ``{"result": [...]}`` for interactive
    pre-annotation (``MLBackend.interactive_annotating`` in ``label_studio/ml/models.py``).
    """

    tasks: list
    project: str
    label_config: str | None
    context: Any = None
    login: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, body: dict) -> "PredictRequest":
        """Validate a ``/predict`` body.

        Raises:
            InvalidPayloadError: When ``tasks`` is not a list, ``project`` is malformed, or ``params``
                / ``label_config`` have the wrong type.
        """
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise InvalidPayloadError("'tasks' must be a list of Label Studio tasks", field="tasks")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise InvalidPayloadError("'params' must be an object", field="params")
        context = params.get("context")
        if context is not None and not isinstance(context, dict):
            raise InvalidPayloadError("'params.context' must be an object or null", field="params.context")
        return cls(tasks=tasks, project=project_key(body.get("project")),
                   label_config=_label_config(body, "label_config", False), context=context,
                   login=params.get("login"), password=params.get("password"))


@dataclass(frozen=True)
class TrainRequest:
    """Legacy ``POST /train``: ``{annotations: [tasks with annotations], project, label_config}``."""

    project: str
    label_config: str | None
    annotations: list

    @classmethod
    def parse(cls, body: dict) -> "TrainRequest":
        """Validate a ``/train`` body.

        Raises:
            InvalidPayloadError: When ``project`` is malformed, or ``annotations`` is not a list of tasks with their
                annotations as Label Studio sends them (:func:`labelhub.webhooks.check_training_tasks`; ``field``
                names the first item at fault).
        """
        annotations = body.get("annotations")
        try:
            check_training_tasks(annotations)
        except InvalidEventError as exc:
            raise InvalidPayloadError(str(exc), field=exc.field or "annotations") from None
        return cls(project=project_key(body.get("project")),
                   label_config=_label_config(body, "label_config", False), annotations=annotations)
