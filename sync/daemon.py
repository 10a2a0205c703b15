"""The daemon loop: tick the service until SIGTERM or SIGINT, then flush.

A tick that fails is logged by :class:`labelhub.sync.service.SyncService` and retried; the daemon keeps
running, except after a :class:`labelhub.errors.ConfigurationError` (the options contradict the repo, e.g. a series
another project exports), which cannot fix itself and ends it with exit code 1. SIGTERM and SIGINT end the loop after the tick under way, and the pending export is pushed
before the exit (:meth:`labelhub.sync.service.SyncService.flush`).
"""
from __future__ import annotations

import logging
import signal
import threading

from labelhub.sync.service import SyncService

log = logging.getLogger(__name__)


def run_forever(service: SyncService, stop: threading.Event | None = None) -> None:
    """Tick ``service`` until ``stop`` is set (SIGTERM and SIGINT set it), waking early on
    ``service.wake`` (set by webhooks), then flush."""
    stop = stop or threading.Event()

    def on_signal(*_):
        stop.set()
        service.wake.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    while not stop.is_set():
        delay = service.tick()
        service.wake.wait(delay)
        service.wake.clear()
    log.info("stopping: flushing the pending export")
    service.flush()
    log.info("stopped")
