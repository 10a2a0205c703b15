"""Strict JSON: the one decoder of the JSON that people and Label Studio hand LabelHub.

Request and webhook bodies (:func:`labelhub.webhooks.parse_json`), a labels CSV's ``metadata`` cells
(:mod:`labelhub.sync.labels.csv_file`) and model params (``extra_params``, ``LABELHUB_MODEL_PARAMS``:
:mod:`labelhub.backend.models.params`) are all decoded by :func:`loads`, which accepts what RFC 8259
(https://www.rfc-editor.org/rfc/rfc8259) calls JSON *text* and refuses, with a one-line message, what Python's
:func:`json.loads` lets through but nothing later can store or send:

- ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON; SQLite's and PostgreSQL's JSON refuse them, and so does
  every ``json.dumps(..., allow_nan=False)`` after);
- a number beyond a float's range (``1e999``): RFC 8259 section 6 lets it be JSON, but Python reads it as
  ``inf``, which nothing later can store or send (Label Studio's client encodes with ``allow_nan=False``); the
  message names where it is (``metadata.x``). Decided: refused rather than clamped, since any stand-in would be
  a value the sender did not write;
- integers of more than 4,300 digits (Python's ``int`` conversion limit);
- nesting deeper than :data:`MAX_JSON_DEPTH` (every later ``json.dumps`` recurses);
- a string holding an unpaired UTF-16 surrogate (an escape ``\\ud800``..``\\udfff`` without its pair, which RFC
  8259 section 8.2 leaves "unpredictable"): it is not Unicode text, so it cannot be encoded as UTF-8 into a
  file, a hash, Redis or a request; the message names where it is (``tasks[1].data.text``).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from labelhub.errors import InvalidJSONError
from labelhub.redaction import one_line

__all__ = ["MAX_JSON_DEPTH", "loads", "non_finite", "unpaired_surrogate"]

#: How deeply a value may nest. Label Studio's deepest (a result's value in an annotation in a list) is under 10;
#: the limit keeps every later ``json.dumps`` far from Python's recursion limit.
MAX_JSON_DEPTH = 100
#: What an unpaired surrogate can come from: a ``\uD800``..``\uDFFF`` escape in the JSON text, or one in a ``str``
#: given (an environment variable's undecodable byte, under Python's ``surrogateescape``). Only then is the
#: decoded value walked.
_MAY_HOLD_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_MAY_HOLD_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def non_finite(value: Any) -> tuple[str, float] | None:
    """Where ``value`` (decoded JSON) holds a float that is not finite (``inf``, ``-inf``, ``nan``), or ``None``.

    Args:
        value: Dicts, lists and scalars as :func:`json.loads` gives them.

    Returns:
        ``(path, number)`` of the first such float (``"metadata.x"``; ``"<top>"`` for ``value`` itself, paths
        as :func:`unpaired_surrogate` gives them), or ``None``.

    Example:
        >>> non_finite({"a": [1.5, float("inf")]})
        ('a[1]', inf)
    """
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return path or "<top>", item
        elif isinstance(item, dict):
            stack.extend((child, f"{path}.{key}" if path else str(key)) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (iteratively: no recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _is_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unpaired_surrogate(value: Any) -> str | None:
    """Where ``value`` (decoded JSON) holds a string that is not Unicode text, or ``None``.

    Args:
        value: Dicts, lists and scalars as :func:`json.loads` gives them.

    Returns:
        The path of the first such string (``"tasks[1].data.text"``; ``"<top>"`` for ``value`` itself; a key that
        is not text is named by its path followed by ``" (a key)"``), or ``None`` when every string encodes
        as UTF-8.

    Example:
        >>> unpaired_surrogate({"tasks": [{"data": {"text": "ok"}}, {"data": {"text": "\\ud800"}}]})
        'tasks[1].data.text'
    """
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not _is_text(item):
                return path or "<top>"
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                where = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and not _is_text(key):
                    return f"{path or '<top>'} (a key)"
                stack.append((child, where))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


def loads(raw: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode strict JSON (see the module docstring for what is refused).

    Args:
        raw: The text (``bytes`` in UTF-8, or UTF-16/32 as :func:`json.loads` detects them; or ``str``).
        max_depth: The deepest nesting accepted.

    Returns:
        The decoded value.

    Raises:
        InvalidJSONError: Not JSON or not decodable (the message gives :mod:`json`'s line and column), ``NaN``
            or ``Infinity``, a number beyond a float's range (``1e999``; the message gives its path), an integer
            of more than 4,300 digits, nesting deeper than ``max_depth``, or a string with an unpaired surrogate
            (the message gives its path). The message is one line.

    Example:
        >>> loads(b'{"action": "START_TRAINING"}')
        {'action': 'START_TRAINING'}
    """
    try:
        overflowed: list[str] = []

        def parse_float(text: str) -> float:
            number = float(text)
            if not math.isfinite(number):
                overflowed.append(text)
            return number

        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=parse_float)
    except RecursionError:
        raise InvalidJSONError(f"too deep: the JSON nests more than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, encodings, the int digits limit
        raise InvalidJSONError(one_line(f"not JSON: {exc}", 300)) from None
    if _too_deep(value, max_depth):
        raise InvalidJSONError(f"too deep: the JSON nests more than {max_depth} levels")
    if overflowed:
        where = non_finite(value)
        raise InvalidJSONError(f"out of range: the number {overflowed[0][:40]} at {(where or ('<top>',))[0][:120]} "
                               "is beyond a float's range (about 1.8e308), which nothing can store or send")
    pattern = _MAY_HOLD_SURROGATE_BYTES if isinstance(raw, (bytes, bytearray)) else _MAY_HOLD_SURROGATE
    if pattern.search(raw):
        where = unpaired_surrogate(value)
        if where is not None:
            raise InvalidJSONError(f"not Unicode text: the string at {where[:120]} holds an unpaired UTF-16 "
                                   "surrogate (a \\ud800..\\udfff escape without its pair)")
    return value
