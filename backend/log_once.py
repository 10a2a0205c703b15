"""Say a thing once per worker process: a head is asked again at every request, so a configuration's fault, a model
that does not fit its control or a label a model keeps answering is logged the first time a worker meets it, not
once per request or per task.

One bounded memory of the causes already said serves every part of the backend (:data:`REMEMBERED` keys, a
``cachetools.LRUCache``): a cause that names something new each time (a URL, an exception's text) cannot grow it
forever; a cause pushed out by :data:`REMEMBERED` newer ones is said again once, which is the price of the bound.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Hashable

from cachetools import LRUCache

__all__ = ["REMEMBERED", "first_time", "log_once", "forget"]

#: How many causes a worker remembers having said (the least recently met are forgotten first).
REMEMBERED = 10_000

_SAID: LRUCache = LRUCache(maxsize=REMEMBERED)
_LOCK = threading.Lock()


def first_time(key: Hashable) -> bool:
    """Whether this process meets ``key`` (any hashable: who says it and what about) for the first time since it
    was last forgotten; it is remembered either way.

    Raises:
        TypeError: ``key`` is not hashable.
    """
    with _LOCK:
        if key in _SAID:
            _SAID[key]  # met again: the least recently met go first
            return False
        _SAID[key] = True
        return True


def log_once(logger: logging.Logger, key: Hashable, message: str, *args: Any, level: int = logging.WARNING) -> None:
    """``logger.log(level, message, *args)`` the first time this process meets ``key`` (:func:`first_time`), nothing
    after. ``message`` and ``args`` are %-style, as the logging module's; ``args`` must be redacted already."""
    if first_time(key):
        logger.log(level, message, *args)


def forget() -> None:
    """Forget every cause said (tests, or after a model or a configuration changed), so each is said again."""
    with _LOCK:
        _SAID.clear()
