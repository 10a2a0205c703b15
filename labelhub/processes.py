"""Child servers (Label Studio, the backend): wait until one answers, stop its process group.

Used by :mod:`labelhub.sync.labelstudio.server`, :mod:`labelhub.sync.demo.command` and the test fixtures, which start their
servers with ``start_new_session=True`` so that a whole process group (gunicorn and its workers,
Label Studio and its children) stops together.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

import requests


def wait_until_healthy(proc: subprocess.Popen, url: str, name: str, log_tail: Callable[[], str],
                       timeout: float = 60, interval: float = 0.3) -> None:
    """Poll ``GET url`` until it answers 200.

    Args:
        proc: the server's process.
        url: its health URL (e.g. ``http://127.0.0.1:9090/health``).
        name: the server's name, for messages.
        log_tail: returns the end of its log, appended to error messages.
        timeout: seconds to wait at most.
        interval: seconds between polls.

    Raises:
        RuntimeError: the process exited, or ``url`` did not answer 200 within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_tail()}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(interval)
    raise RuntimeError(f"{name} not ready after {timeout:g} s:\n{log_tail()}")


def stop_process_group(proc: subprocess.Popen, timeout: float) -> bool:
    """SIGTERM ``proc``'s process group, SIGKILL it after ``timeout`` seconds.

    Returns:
        ``True`` when the group had to be killed.
    """
    if proc.poll() is not None:
        return False
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True
    except ProcessLookupError:
        return False
