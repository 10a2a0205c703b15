"""Fail any connection off loopback: no test may reach the internet.

:func:`install` patches :meth:`socket.socket.connect` (and ``connect_ex``) so that connecting an
``AF_INET``/``AF_INET6`` socket to an address outside ``127.0.0.0/8`` and ``::1`` raises
:class:`OffLoopbackConnection`, and records the attempt in :data:`attempts` so that the pytest
fixture can fail the test even when the code under test swallowed the error. Subprocesses that
run LabelHub's own CLI install it through ``python -m tests.guarded``.
"""
from __future__ import annotations

import ipaddress
import socket

attempts: list[str] = []
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


class OffLoopbackConnection(OSError):
    """Raised when a test tries to connect outside loopback."""


def _check(sock: socket.socket, address) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        attempts.append(f"{host}:{address[1]}")
        raise OffLoopbackConnection(f"test tried to connect off loopback to {host}:{address[1]}")


def _connect(self, address):
    _check(self, address)
    return _original_connect(self, address)


def _connect_ex(self, address):
    _check(self, address)
    return _original_connect_ex(self, address)


def install() -> None:
    """Patch the socket module (idempotent)."""
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
