"""Fault injection and request recording for the test Hub.

`Faults.add(method="POST", path=r"/commit/", kind="500", count=1)` makes the next matching
request(s) fail. Rules are tried in the order they were added; the first one that matches a
request and has uses left is consumed (its count goes down by one) and applied.

Kinds:
- an HTTP status as a string (`"429"`, `"500"`, `"412"`, `"503"`, ...): answered at once with that
  status and a JSON `{"error": ...}`, nothing processed; `Retry-After: <retry_after>` when given.
  (`huggingface_hub.utils.http_backoff` retries 429/5xx, sleeping `Retry-After + 1` s or 1, 2, 4 s.)
- `"drop"`: the request IS processed (a commit lands) then the connection is closed without an
  answer: the client sees `httpx2.RemoteProtocolError` (an ambiguous failure).
- `"drop_before"`: the body is read, then the connection is closed without processing anything.
- `"502_after"`: the request IS processed (a commit lands), then answered 502, as a gateway that timed out while
  the Hub wrote the commit would answer: the client sees a 5xx although the commit landed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import NamedTuple

KINDS = ("drop", "drop_before", "502_after")


@dataclass
class Fault:
    """One rule: `method` (None = any), `path` (regex searched in the URL-decoded path),
    `kind`, `count` uses left, `retry_after` seconds (header on status kinds, or None)."""

    method: str | None
    path: str
    kind: str
    count: int
    retry_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request (`method` upper-case, `path` URL-decoded)."""
        return (self.method is None or self.method.upper() == method) and re.search(self.path, path) is not None


class Faults:
    """The ordered, consumable fault rules of one server (thread-safe)."""

    def __init__(self):
        self._rules: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, method: str | None = None, path: str = ".*", kind: str = "500", count: int = 1,
            retry_after: int | None = None) -> Fault:
        """Add a rule (see module doc for `kind`); returns it."""
        kind = str(kind)
        if kind not in KINDS and not (kind.isdigit() and 400 <= int(kind) <= 599):
            raise ValueError(f"unknown fault kind {kind!r}: use an HTTP status, 'drop', 'drop_before' or '502_after'")
        fault = Fault(method, path, kind, count, retry_after)
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """Consume and return the first rule matching this request, or None."""
        with self._lock:
            for fault in self._rules:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._rules.remove(fault)
                    return fault
        return None

    def __len__(self) -> int:
        """Number of rules with uses left."""
        with self._lock:
            return len(self._rules)


class Call(NamedTuple):
    """One request seen by the server: `(method, path)`; `path` is URL-decoded, without query."""

    method: str
    path: str


class CallLog:
    """Every request the server received, in arrival order (thread-safe)."""

    def __init__(self):
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    def record(self, method: str, path: str) -> None:
        """Append one call."""
        with self._lock:
            self._calls.append(Call(method, path))

    def snapshot(self) -> list[Call]:
        """A copy of the calls so far."""
        with self._lock:
            return list(self._calls)

    def reset(self) -> None:
        """Forget all calls."""
        with self._lock:
            self._calls.clear()

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many calls match `method` (None = any) and regex `path` (None = any)."""
        return sum(
            1 for c in self.snapshot()
            if (method is None or c.method == method.upper()) and (path is None or re.search(path, c.path))
        )
