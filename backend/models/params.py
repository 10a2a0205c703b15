"""A project's model parameters: Label Studio's "Extra params" over ``LABELHUB_MODEL_PARAMS``.

Label Studio's Connect Model dialog (Settings → Model → Connect Model → "Extra params") stores a JSON
object with the ML backend (``MLBackend.extra_params`` in ``label_studio/ml/models.py``) and sends it to
``/setup`` as ``extra_params`` (``label_studio/ml/api_connector.py``); it may arrive as an object or as
the JSON text typed in the dialog. The backend stores it per project, so every worker and the trainer
use the same parameters. ``LABELHUB_MODEL_PARAMS`` (a JSON object) gives the defaults a project's
own parameters override key by key.

Keys read by the default model (:mod:`labelhub.backend.models.project`):

- ``model``: a Hugging Face model id or a local path answering the controls its task fits
  (:mod:`labelhub.backend.models.pipelines`), with ``task``, ``labels``, ``revision``;
- ``threshold``: the lowest score a region or choice is kept with, by every head (the Hub model's, and the
  learned and OCR heads' through :meth:`~labelhub.backend.models.heads.ControlHead.kept`; the Choices head
  compares it with the choice's probability, :mod:`labelhub.backend.models.choices`);
- ``controls``: ``{from_name: {...}}``, parameters for one control tag only (merged over the others),
  e.g. ``{"controls": {"box": {"model": "google/owlv2-base-patch16-ensemble"}}}``;
- ``learned``: ``false`` to turn the learned heads off (only a Hub model or OCR answers);
- the learned Boxes head's (:mod:`labelhub.backend.models.boxes`): ``min_score``, ``alt_score``, ``nms_iou``,
  ``contain``, ``proposals``, ``max_train_crops``, ``flip``, ``crop_cache``;
- the OCR head's (:mod:`labelhub.backend.models.transcription`): ``min_score``, ``use_cls``, ``ocr_engine``.

Every key and value is checked the same way whichever head reads it (:data:`CHECKS`), so a typo is said rather than
ignored by the heads that do not read that key: an unknown key (``treshold``), a value of the wrong type or range
(``"threshold": "high"``, ``1.5``) is refused with the reason (:class:`~labelhub.backend.models.pipelines.
PipelineParamsError`, HTTP 422 at ``/setup``; one line at start for ``LABELHUB_MODEL_PARAMS``). A ``controls`` entry
naming no control tag of the project's label config is refused at ``/setup`` (:func:`check_control_names`); read back
from the store (the label config changed since), it is only logged, so that renaming a control does not stop the
project's predictions. ``LABELHUB_MODEL_PARAMS``'s ``controls`` may name controls of some projects only.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Collection
from typing import Any, Mapping

from labelhub import strict_json
from labelhub.suggest import closest
from labelhub.errors import InvalidJSONError

__all__ = ["parse_params", "params_for", "check_control_names", "CHECKS"]

log = logging.getLogger(__name__)


def _unit(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        return "must be a number between 0 and 1"
    return None


def _count(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or value != int(value):
        return "must be a whole number, 0 or more"
    return None


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty string"


def _nms(value: Any) -> str | None:
    return None if value is False else (_unit(value) and "must be a number between 0 and 1, or false")


def _labels(value: Any) -> str | None:
    if isinstance(value, Mapping) and all(isinstance(k, str) and (v is None or isinstance(v, str))
                                          for k, v in value.items()):
        return None
    return "must map model labels to label config labels (strings, or null to drop a model label)"


def _template(value: Any) -> str | None:
    return None if isinstance(value, str) and "{}" in value else "must be a string with {} where the label goes"


def _ocr_engine(value: Any) -> str | None:
    from labelhub.backend.models.transcription import ENGINES

    names = ("auto", *ENGINES)
    return None if value in names else f"must be one of {', '.join(repr(n) for n in names)}"


#: ``{key: check}`` of every key a control's parameters may have (top level and in a ``controls`` entry): the check
#: answers ``None`` for a valid value, else what the value must be. Which head reads each: ``model``, ``task``,
#: ``nms``, ``labels``, ``revision``, ``hypothesis_template`` the Hub model's
#: (:class:`~labelhub.backend.models.pipelines.PipelineSpec`, which also checks ``model`` and ``task`` further);
#: ``threshold`` every head; ``learned`` every learned head; ``min_score`` the Boxes and OCR heads; the others one
#: head each (module docstring). ``null`` is accepted for every key: the head's default.
CHECKS: dict[str, Callable[[Any], str | None]] = {
    "model": _text, "task": _text, "threshold": _unit, "nms": _nms, "labels": _labels, "revision": _text,
    "hypothesis_template": _template, "learned": _boolean,
    "min_score": _unit, "alt_score": _unit, "nms_iou": _unit, "contain": _unit, "proposals": _count,
    "max_train_crops": _count, "flip": _boolean, "crop_cache": _count,
    "use_cls": _boolean, "ocr_engine": _ocr_engine,
}


def _error(message: str) -> ValueError:
    from labelhub.backend.models.pipelines import PipelineParamsError

    return PipelineParamsError(message)


def _check_keys(params: Mapping[str, Any], source: str, where: str = "") -> None:
    for key, value in params.items():
        check = CHECKS.get(key)
        if check is None:
            close = closest(str(key), [*CHECKS, *([] if where else ["controls"])])
            hint = f" (did you mean {close!r}?)" if close else ""
            raise _error(f"{source}: unknown key {where + str(key)!r}{hint}; the keys read are "
                         f"{', '.join(sorted(CHECKS))}" + ("" if where else " and controls"))
        why = None if value is None else check(value)
        if why:
            raise _error(f"{source}: {where + key!r} {why} (got {json.dumps(value)[:80]})")


def parse_params(value: Any, source: str, check: bool = True) -> dict:
    """Read model parameters sent as a JSON object or as its text, and check every key and value.

    Args:
        value: A dict, a JSON text of an object, or ``None``/``""`` (no parameters).
        source: Where the value came from (``extra_params``, ``LABELHUB_MODEL_PARAMS``), for the message.
        check: ``False`` skips the checks of keys and values (:data:`CHECKS`): for parameters an older LabelHub
            stored, which the heads read as they did then.

    Returns:
        The parameters (a new dict; ``{}`` for none).

    Raises:
        ValueError: When the value is not a JSON object, or ``controls`` is not an object of objects; the
            message names ``source`` and where the JSON fails. A
            :class:`~labelhub.backend.models.pipelines.PipelineParamsError` (a ``ValueError``, HTTP 422) for a key
            not in :data:`CHECKS` (the message suggests the nearest one: ``unknown key 'treshold' (did you mean
            'threshold'?)``) or a value its check refuses (``'threshold' must be a number between 0 and 1 (got
            "high")``), at the top level or in a ``controls`` entry (``'controls.label.threshold' ...``).

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
        parsed = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from None
    if not check:
        return parsed
    _check_keys({k: v for k, v in parsed.items() if k != "controls"}, source)
    for name, entry in (parsed.get("controls") or {}).items():
        _check_keys(entry, source, f"controls.{name}.")
    return parsed


def check_control_names(params: Mapping[str, Any], names: Collection[str], source: str = "extra_params",
                        strict: bool = True) -> None:
    """Check that every ``controls`` entry of a project's parameters names a control tag of its label config.

    Args:
        params: The project's parameters (:func:`parse_params`'s).
        names: The ``name`` of each control tag of the label config.
        source: For the message.
        strict: ``True`` (parameters just sent to ``/setup``): raise; ``False`` (read back from the store, the
            label config may have changed since): log a warning instead.

    Raises:
        PipelineParamsError: ``strict`` and an entry names no control tag (the message lists the config's and
            suggests the nearest: ``'controls' names 'sentimnet', no control tag of the label config (did you mean
            'sentiment'?; it has 'sentiment')``).
    """
    for name in (params.get("controls") or {}):
        if name in names:
            continue
        close = closest(name, names)
        hint = f"did you mean {close!r}?; " if close else ""
        message = (f"{source}: 'controls' names {name!r}, no control tag of the label config ({hint}it has "
                   f"{', '.join(repr(n) for n in sorted(names)) or 'none'})")
        if strict:
            raise _error(message)
        log.warning("%s: its parameters are not used", message)


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
