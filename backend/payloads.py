"""Parse and validate the request bodies Label Studio sends (the edge of the app).

Shapes come from Label Studio's client, ``label_studio/ml/api_connector.py`` (``MLApi.setup``,
``MLApi._prep_prediction_req``, ``MLApi.train``) and its webhooks (``label_studio/webhooks/utils.py``
``run_webhook_sync``: ``{"action": ..., **payload}``); see also https://labelstud.io/guide/ml_create.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Request

from labelhub.backend.errors import BadRequestError, InvalidPayloadError
from labelhub.backend.state import project_key

__all__ = ["json_body", "SetupRequest", "PredictRequest", "TrainRequest"]


def json_body(request: Request, required: bool = True) -> dict:
    """The request's JSON object.

    Args:
        request: The Flask request.
        required: When ``False``, an empty body gives ``{}`` (``GET /versions``).

    Returns:
        The parsed object.

    Raises:
        BadRequestError: When the body is not JSON, or not a JSON object.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise BadRequestError("the request body is empty; send a JSON object")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}"[:300]) from None
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

    The ``access_token`` is never kept or logged.
    """

    project: str
    label_config: str
    extra_params: Any = None

    @classmethod
    def parse(cls, body: dict) -> "SetupRequest":
        """Validate a ``/setup`` body.

        Raises:
            InvalidPayloadError: When ``project`` or ``schema`` is missing or malformed.
        """
        return cls(project=project_key(body.get("project")), label_config=_label_config(body, "schema", True),
                   extra_params=body.get("extra_params"))


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
            InvalidPayloadError: When ``annotations`` is not a list or ``project`` is malformed.
        """
        annotations = body.get("annotations")
        if not isinstance(annotations, list):
            raise InvalidPayloadError("'annotations' must be a list of tasks with their annotations",
                                      field="annotations")
        return cls(project=project_key(body.get("project")),
                   label_config=_label_config(body, "label_config", False), annotations=annotations)
