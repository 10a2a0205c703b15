"""Child servers (Label Studio, the backend): whether a port is taken, start one without losing it to a signal, wait
until one answers, stop its process group.

Used by :mod:`labelhub.sync.labelstudio.server`, :mod:`labelhub.sync.demo.command`, :mod:`labelhub.backend.cli` (the
port ``labelhub backend`` is to listen on) and the test fixtures, which start their servers with
``start_new_session=True`` so that a whole process group (gunicorn and its workers, Label Studio and its children)
stops together.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import requests


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server listens on ``host:port`` now (a port only in TIME_WAIT after a server stopped is free).

    Args:
        port: The TCP port.
        host: An address or host name of this machine.

    Returns:
        ``True`` when :func:`bind_error` finds one (for a ``host`` that may not resolve or not be this machine's,
        ask :func:`bind_error` which).
    """
    return bind_error(port, host) is not None


def bind_error(port: int, host: str = "127.0.0.1") -> OSError | None:
    """Why a server could not listen on ``host:port`` now, or ``None`` when it can (tried with a throwaway socket,
    ``SO_REUSEADDR`` as gunicorn, Werkzeug and Label Studio set it).

    Args:
        port: The TCP port.
        host: An address or host name of this machine (``0.0.0.0``: all of them; IPv6 too).

    Returns:
        ``None``, or the ``OSError`` of the bind: ``errno.EADDRINUSE`` when something listens there,
        ``socket.gaierror`` for a host that does not resolve (``999.1.1.1``), ``errno.EADDRNOTAVAIL`` for an
        address of another machine, ``PermissionError`` for a port below 1024 without the right to it.

    Example:
        >>> bind_error(9090, "999.1.1.1").__class__.__name__
        'gaierror'
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        return exc
    return None


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


@contextlib.contextmanager
def signals_deferred(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them to the handlers they had.

    For starting a child and recording it in one step (``self._proc = subprocess.Popen(...)``): a handler that raises
    ``KeyboardInterrupt`` (the demo's, Python's default for SIGINT) can otherwise fire after the child is forked but
    before it is recorded, and the child outlives its parent, which no longer knows it (CI saw a demo stopped while it
    started leave its backend running, orphaned). Inside the block a signal is only noted; at its end the previous
    handlers are put back and each signal noted is raised again (``signal.raise_signal``), so the handler runs with the
    child recorded and the code that stops children stops it. Outside the main thread (where Python runs signal
    handlers and ``signal.signal`` refuses) it defers nothing: a spawn there is not interrupted by them.

    Args:
        signums: The signals to hold.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)


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
