"""The sync loop: run a cycle, sleep ``--interval`` seconds, again, until SIGTERM or SIGINT.

A cycle that fails because the Hub or Label Studio is unreachable or answers 5xx is logged and
retried at the next tick; the daemon keeps running. SIGTERM and SIGINT end the loop after the
cycle under way (a cycle is made of steps that each leave the state consistent).
"""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def run_forever(cycle: Callable[[], object], interval: float, stop: threading.Event | None = None) -> None:
    """Call ``cycle()`` every ``interval`` seconds until ``stop`` is set or a signal arrives.

    Args:
        cycle: one sync cycle; its exceptions are logged (with their message only) and the loop goes on.
        interval: seconds between the start of one cycle and the next (at least 0).
        stop: an event that ends the loop (``None``: a new one, set by SIGTERM/SIGINT).
    """
    stop = stop or threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        try:
            cycle()
        except Exception as exc:  # keep the daemon alive; the next tick retries
            log.error("sync cycle failed, retrying in %ss: %s: %s", interval, type(exc).__name__, exc)
        stop.wait(interval)
    log.info("stopped")
