"""Retries of Hub calls that failed for a moment (429, 5xx, no answer), on ``tenacity``; and the one rule for
Label Studio writes: never retried by its SDK (:data:`NO_SDK_RETRY`).

The wait honours the Hub's ``Retry-After`` (seconds, carried by :class:`labelhub.errors.TransientHubError`
as ``retry_after``) up to :data:`MAX_RETRY_AFTER` seconds, and is otherwise exponential: 2, 4, 8, ... seconds, at
most 60. A ``Retry-After`` longer than :data:`MAX_RETRY_AFTER` gives up at once (said in one warning): waiting it out
in the one daemon loop would hold the imports and the reconciliation too (10 answers of ``Retry-After: 45`` held it
6 minutes); the caller leaves its work pending for a later turn (the export: its next tick).

Every wait is cut short by :func:`request_shutdown` (the daemon's SIGTERM and SIGINT handler): the failure that
the wait followed is raised at once, and from then on a failure is not retried (the shutdown's flush tries once).
What to do about a 412
(rebuild on the new head) or a lost answer (look the commit up) stays with the caller: the block retried
raises :class:`labelhub.errors.AmbiguousCommit` only when the lookup found nothing.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_any

from labelhub.errors import AmbiguousCommit, TransientHubError

__all__ = ["MAX_RETRY_AFTER", "MAX_WAIT", "NO_SDK_RETRY", "retry_after_or_backoff", "hub_retrying", "request_shutdown",
           "shutdown_requested", "clear_shutdown", "interruptible_sleep"]

log = logging.getLogger(__name__)
#: The longest wait between two attempts, in seconds.
MAX_WAIT = 60.0
#: The longest ``Retry-After`` waited, in seconds: a longer one gives up the attempt (the caller retries it later).
MAX_RETRY_AFTER = 30.0
#: Set by :func:`request_shutdown`: waits end at once and failures are no longer retried.
_SHUTDOWN = threading.Event()
#: ``request_options`` of every label-studio-sdk call that creates something (tasks, annotations, predictions):
#: the SDK's client would send the POST again after a dropped answer, a 5xx, 408, 409 or 429
#: (``label_studio_sdk/core/http_client.py``), and a create that had landed would land twice. The callers find
#: out what landed instead (the sync's import ledger, the backend's prediction jobs).
NO_SDK_RETRY = {"max_retries": 0}


def request_shutdown() -> None:
    """End every wait between attempts now and retry no failure from now on (the daemon's SIGTERM/SIGINT handler
    calls it; safe in a signal handler: it sets a ``threading.Event``)."""
    _SHUTDOWN.set()


def shutdown_requested() -> bool:
    """Whether :func:`request_shutdown` was called (and not cleared since)."""
    return _SHUTDOWN.is_set()


def clear_shutdown() -> None:
    """Retry again as usual (the daemon calls it as it starts and once it stopped)."""
    _SHUTDOWN.clear()


def interruptible_sleep(seconds: float) -> None:
    """Sleep ``seconds``, or less when :func:`request_shutdown` is called meanwhile."""
    _SHUTDOWN.wait(seconds)


def retry_after_or_backoff(state: RetryCallState) -> float:
    """Seconds to wait before the next attempt: the failure's ``retry_after``, else ``2 ** attempt`` (≤ 60)."""
    exc = state.outcome.exception() if state.outcome else None
    retry_after = getattr(exc, "retry_after", None)
    return float(retry_after) if retry_after else min(2.0 ** state.attempt_number, MAX_WAIT)


def hub_retrying(max_attempts: int, what: str, sleep: Callable[[float], None] = interruptible_sleep,
                 on: tuple[type[BaseException], ...] = (TransientHubError, AmbiguousCommit)) -> Retrying:
    """A retrier of Hub calls on ``tenacity.Retrying``: ``hub_retrying(...)(fn, *args)`` calls ``fn(*args)`` until it
    succeeds or a stop applies.

    Args:
        max_attempts: Attempts in all (the last failure is raised as it is).
        what: What is retried, for the log line before each wait (``"commit of v3"``).
        sleep: How to wait (tests pass a no-op); the default ends early on :func:`request_shutdown`.
        on: The exceptions worth another attempt.

    Returns:
        The callable. It stops early, raising the last
        failure as it is, when the failure's ``Retry-After`` is over :data:`MAX_RETRY_AFTER` (one warning) or once
        :func:`request_shutdown` was called (also during a wait: the wait ends and the failure is raised).
    """
    def before_sleep(state: RetryCallState) -> None:
        log.warning("%s failed (%s); retrying in %.0f s", what, state.outcome.exception(),
                    state.next_action.sleep if state.next_action else 0)

    def give_up(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if _SHUTDOWN.is_set():
            log.info("%s failed (%s); not retried: stopping", what, exc)
            return True
        retry_after = getattr(exc, "retry_after", None)
        if retry_after and retry_after > MAX_RETRY_AFTER:
            log.warning("%s failed (%s): the Hub asks to wait %.0f s (Retry-After), more than the %.0f s waited here; "
                        "giving up this attempt, retried at a later turn", what, exc, retry_after, MAX_RETRY_AFTER)
            return True
        return False

    def wait_then_check(seconds: float) -> None:
        sleep(seconds)
        if _SHUTDOWN.is_set():  # a signal during the wait: the failure waited after, at once
            raise StopRetrying()

    retrying = Retrying(retry=retry_if_exception_type(on), stop=stop_any(stop_after_attempt(max_attempts), give_up),
                        wait=retry_after_or_backoff, sleep=wait_then_check, reraise=True, before_sleep=before_sleep)
    return _Interruptible(retrying, what)


class StopRetrying(Exception):
    """Raised by a wait that :func:`request_shutdown` ended (internal: :class:`_Interruptible` turns it into the
    failure the wait followed)."""


class _Interruptible:
    """A ``Retrying`` whose wait, cut short by :func:`request_shutdown`, raises the failure it followed."""

    def __init__(self, retrying: Retrying, what: str):
        self.retrying, self.what = retrying, what

    def __call__(self, fn, *args, **kwargs):
        last: list[BaseException] = []

        def attempt(*a, **k):
            try:
                return fn(*a, **k)
            except BaseException as exc:
                last[:] = [exc]
                raise

        try:
            return self.retrying(attempt, *args, **kwargs)
        except StopRetrying:
            log.info("%s failed (%s); not retried: stopping", self.what, last[0] if last else "?")
            raise last[0] from None
