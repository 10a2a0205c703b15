"""Logging for the daemon: one line per event, secrets redacted.

:func:`setup_logging` installs a filter on the root handlers that replaces every configured secret
(HF and Label Studio tokens) by ``***`` in messages and their arguments, so that a token never
reaches a log even when a library prints a URL or a header that holds it.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable


class RedactSecrets(logging.Filter):
    """Replace each of ``secrets`` (strings of 8+ characters) by ``***`` in a log record."""

    def __init__(self, secrets: Iterable[str | None]):
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 8]

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.redact(record.getMessage())
            record.args = None
        return True


def setup_logging(level: str = "INFO", secrets: Iterable[str | None] = ()) -> RedactSecrets:
    """Log to stderr as ``time level name: message``, with :class:`RedactSecrets` on the handler.

    Returns:
        The filter (its :meth:`RedactSecrets.redact` cleans error messages printed elsewhere).
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redact = RedactSecrets(secrets)
    handler.addFilter(redact)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redact
