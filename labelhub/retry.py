"""Retries of Hub calls that failed for a moment (429, 5xx, no answer), on ``tenacity``; and the one rule for
Label Studio writes: never retried by its SDK (:data:`NO_SDK_RETRY`).

The wait honours the Hub's ``Retry-After`` (seconds, carried by :class:`labelhub.errors.TransientHubError`
as ``retry_after``) and is otherwise exponential: 2, 4, 8, ... seconds, at most 60. What to do about a 412
(rebuild on the new head) or a lost answer (look the commit up) stays with the caller: the block retried
raises :class:`labelhub.errors.AmbiguousCommit` only when the lookup found nothing.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from labelhub.errors import AmbiguousCommit, TransientHubError

__all__ = ["MAX_WAIT", "NO_SDK_RETRY", "retry_after_or_backoff", "hub_retrying"]

log = logging.getLogger(__name__)
#: The longest wait between two attempts, in seconds.
MAX_WAIT = 60.0
#: ``request_options`` of every label-studio-sdk call that creates something (tasks, annotations, predictions):
#: the SDK's client would send the POST again after a dropped answer, a 5xx, 408, 409 or 429
#: (``label_studio_sdk/core/http_client.py``), and a create that had landed would land twice. The callers find
#: out what landed instead (the sync's import ledger, the backend's prediction jobs).
NO_SDK_RETRY = {"max_retries": 0}


def retry_after_or_backoff(state: RetryCallState) -> float:
    """Seconds to wait before the next attempt: the failure's ``retry_after``, else ``2 ** attempt`` (≤ 60)."""
    exc = state.outcome.exception() if state.outcome else None
    retry_after = getattr(exc, "retry_after", None)
    return float(retry_after) if retry_after else min(2.0 ** state.attempt_number, MAX_WAIT)


def hub_retrying(max_attempts: int, what: str, sleep: Callable[[float], None] = time.sleep,
                 on: tuple[type[BaseException], ...] = (TransientHubError, AmbiguousCommit)) -> Retrying:
    """A ``tenacity.Retrying`` for Hub calls: ``for attempt in hub_retrying(...): with attempt: call()``.

    Args:
        max_attempts: Attempts in all (the last failure is raised as it is).
        what: What is retried, for the log line before each wait (``"commit of v3"``).
        sleep: How to wait (tests pass a no-op).
        on: The exceptions worth another attempt.

    Returns:
        The ``Retrying`` object (also callable: ``hub_retrying(...)(fn, *args)``).
    """
    def before_sleep(state: RetryCallState) -> None:
        log.warning("%s failed (%s); retrying in %.0f s", what, state.outcome.exception(),
                    state.next_action.sleep if state.next_action else 0)

    return Retrying(retry=retry_if_exception_type(on), stop=stop_after_attempt(max_attempts),
                    wait=retry_after_or_backoff, sleep=sleep, reraise=True, before_sleep=before_sleep)
