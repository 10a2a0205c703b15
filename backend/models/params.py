"""A project's model parameters: Label Studio's "Extra params" over ``LABELHUB_MODEL_PARAMS``.

Label Studio's Connect Model dialog (Settings → Model → Connect Model → "Extra params") stores a JSON
object with the ML backend (``MLBackend.extra_params`` in ``label_studio/ml/models.py``) and sends it to
``/setup`` as ``extra_params`` (``label_studio/ml/api_connector.py``); it may arrive as an object or as
the JSON text typed in the dialog. The backend stores it per project, so every worker and the trainer
use the same parameters. ``LABELHUB_MODEL_PARAMS`` (a JSON object) gives the defaults a project's
own parameters override key by key.

Keys read by the default model (:mod:`labelhub.backend.models.project`):

- ``model``: a Hugging Face model id or a local path answering the controls its task fits
  (:mod:`labelhub.backend.models.pipelines`), with ``task``, ``threshold``, ``labels``, ``revision``;
- ``controls``: ``{from_name: {...}}``, parameters for one control tag only (merged over the others),
  e.g. ``{"controls": {"box": {"model": "google/owlv2-base-patch16-ensemble"}}}``;
- ``learned``: ``false`` to turn the learned heads off (only a Hub model or OCR answers).
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from labelhub import strict_json
from labelhub.errors import InvalidJSONError

__all__ = ["parse_params", "params_for"]


def parse_params(value: Any, source: str) -> dict:
    """Read model parameters sent as a JSON object or as its text.

    Args:
        value: A dict, a JSON text of an object, or ``None``/``""`` (no parameters).
        source: Where the value came from (``extra_params``, ``LABELHUB_MODEL_PARAMS``), for the message.

    Returns:
        The parameters (a new dict; ``{}`` for none).

    Raises:
        ValueError: When the value is not a JSON object, or ``controls`` is not an object of objects; the
            message names ``source`` and where the JSON fails.

    Example:
        >>> parse_params('{"model": "owlv2", "threshold": 0.3}', "extra_params")["threshold"]
        0.3
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        try:
            value = strict_json.loads(value)
        except InvalidJSONError as exc:
            raise ValueError(f"{source}: {exc}") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"{source} must be a JSON object, not {type(value).__name__}")
    controls = value.get("controls", {})
    if not isinstance(controls, Mapping) or not all(isinstance(v, Mapping) for v in controls.values()):
        raise ValueError(f"{source}: 'controls' must map control tag names to objects")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from None


def params_for(defaults: Mapping[str, Any], project: Mapping[str, Any], from_name: str) -> dict:
    """The parameters one control tag sees.

    Args:
        defaults: ``LABELHUB_MODEL_PARAMS``, parsed.
        project: The project's ``extra_params``, parsed.
        from_name: The control tag's ``name``.

    Returns:
        ``defaults`` overridden by ``project``, then by ``project["controls"][from_name]`` (and the same
        entry of ``defaults`` before it), without the ``controls`` key.
    """
    merged = {k: v for k, v in {**defaults, **project}.items() if k != "controls"}
    for source in (defaults, project):
        merged.update(source.get("controls", {}).get(from_name, {}))
    return merged
