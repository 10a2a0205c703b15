"""Secrets out of logs and error messages: one :func:`redact` for every text LabelHub prints or answers.

Secrets are the HF token, the Label Studio API key, ``LABELHUB_SECRET``, the webhook secret and the
basic-auth password; and the ``user:password@`` of any URL (``HF_ENDPOINT``, ``LABEL_STUDIO_URL``), which
:func:`redact` removes from every text whatever secrets it is given. :func:`setup_logging` installs
:class:`RedactSecrets` on the root handler, so a token never reaches a log even when a library prints a URL or a
header that holds it; the CLIs and the backend's error handlers pass their messages through :func:`redact` too.
"""
from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterable

__all__ = ["MIN_SECRET_CHARS", "redact", "one_line", "escaped", "without_userinfo", "urls_without_userinfo",
           "without_signatures",
           "RedactSecrets", "RetryLinesAtDebug", "setup_logging", "library_logs_through_root"]

#: Values shorter than this are not treated as secrets (replacing ``"a"`` everywhere would garble every
#: message, and no token, key or password LabelHub accepts is that short).
MIN_SECRET_CHARS = 4
#: What a secret becomes.
MASK = "***"


def one_line(value: object, limit: int | None = None) -> str:
    """``str(value)`` as one line for a log line, a status or an HTTP reason phrase: every run of whitespace
    (newlines of a traceback or of lxml's and Label Studio's messages included) becomes one space.

    Args:
        value: An exception or any text.
        limit: At most this many characters (``None``: all).

    Example:
        >>> one_line(ValueError("bad\\n  value"), 8)
        'bad valu'
    """
    return " ".join(str(value).split())[:limit]


def escaped(text: str, limit: int | None = 300) -> str:
    """``text`` for a log line when it comes from a request (a URL path, a header): its first ``limit``
    characters with CR, LF, ESC, every other unprintable character and backslashes written as Python escapes
    (``repr`` without the quotes), so it cannot end the line or forge another one, nor colour a terminal.

    Args:
        text: Text from outside.
        limit: At most this many of its characters (``None``: all); the escapes make the result longer.

    Example:
        >>> escaped("/files/a\\r2026 INFO forged\\x1b[31m")
        '/files/a\\\\r2026 INFO forged\\\\x1b[31m'
    """
    return repr(text[:limit])[1:-1]


def without_userinfo(url: str) -> str:
    """``url`` without the ``user:password@`` part of its host, for a message, a log line or a file written out.

    Args:
        url: A URL, also one without its scheme (``me:pw@ls.example:8080``, a mistyped setting: what comes before the
            first ``/`` is taken as its host part), or one ``urlsplit`` cannot parse (a bad IPv6 literal).

    Example:
        >>> without_userinfo("http://me:pw@ls.example:8080/x")
        'http://ls.example:8080/x'
        >>> without_userinfo("me:pw@ls.example:8080")
        'ls.example:8080'
    """
    scheme, sep, rest = url.partition("://") if "://" in url else ("", "", url)
    end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0], default=len(rest))  # the host part's end
    if "@" not in rest[:end]:
        return url
    return scheme + sep + rest[:end].rpartition("@")[2] + rest[end:]


#: The ``user:password@`` of a URL inside a text (``scheme://`` then everything up to the last ``@`` before the host's
#: end: a ``/``, ``?``, ``#`` or whitespace).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#]*@")


def urls_without_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` of every ``scheme://`` URL in it removed (:func:`without_userinfo` of each
    URL of a message): ``HF_ENDPOINT`` or ``LABEL_STUDIO_URL`` may carry a password, and an error of httpx or
    huggingface_hub may quote the URL it called.

    Example:
        >>> urls_without_userinfo("cannot reach http://u:S3cret@127.0.0.1:1/api: refused")
        'cannot reach http://127.0.0.1:1/api: refused'
    """
    return _USERINFO.sub(r"\1", text) if "@" in text else text


#: The value of a signed file URL's ``sig`` query parameter (:mod:`labelhub.signing`).
_SIGNATURE = re.compile(r"([?&]sig=)[^&'\"\s]+")


def without_signatures(text: str) -> str:
    """``text`` with the ``sig`` of every signed file URL in it shortened to ``…``: such a URL opens its file until
    it expires (``--url-lifetime``, ``never`` by default), so an error quoting a task (Label Studio echoes the task
    it refused) must not carry it.

    Example:
        >>> without_signatures("{'img': 'http://h/files/k/0a/x.png?exp=9&sig=QUJD-_x'}")
        "{'img': 'http://h/files/k/0a/x.png?exp=9&sig=…'}"
    """
    return _SIGNATURE.sub(r"\1…", text) if "sig=" in text else text


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each secret replaced by ``***``, and without the ``user:password@`` of any URL in it
    (:func:`urls_without_userinfo`).

    Args:
        text: Any text about to be logged, printed or answered.
        secrets: The values to hide; ``None``, empty and shorter than :data:`MIN_SECRET_CHARS` ones are
            ignored. Longer secrets are replaced first, so one that contains another is hidden whole.

    Returns:
        The text without the secrets.

    Example:
        >>> redact("token hf_abcdef1234 refused", ["hf_abcdef1234"])
        'token *** refused'
    """
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return urls_without_userinfo(text)


class RedactSecrets(logging.Filter):
    """A logging filter that applies :func:`redact` to a record's message and its arguments.

    Args:
        secrets: The values to hide (see :func:`redact`).
    """

    def __init__(self, secrets: Iterable[str | None]):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= MIN_SECRET_CHARS)

    def redact(self, text: str) -> str:
        """``text`` with every secret of this filter replaced by ``***`` (see :func:`redact`)."""
        return redact(text, self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's message and traceback in place (a URL's ``user:password@`` too, with no secret
        given); always ``True`` (no record is dropped)."""
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


#: The logger of huggingface_hub's ``http_backoff`` (2.x, ``utils/_http.py``).
BACKOFF_LOGGER = "huggingface_hub.utils._http"
#: Libraries that give their logger a handler of their own as they are imported: imported here first (when
#: installed and cheap to import), so that :func:`setup_logging` finds the handler to remove.
SELF_CONFIGURED = ("huggingface_hub.utils.logging",)


class RetryLinesAtDebug(logging.Filter):
    """A filter for huggingface_hub's ``http_backoff`` logger (:data:`BACKOFF_LOGGER`) that puts its lines about each
    attempt at DEBUG (they are dropped unless the root logger is at DEBUG).

    ``http_backoff`` (``_http_backoff_base``) says two WARNING lines per failed attempt, 5 retries a call
    (``'[Errno 111] Connection refused' thrown while requesting GET .../commits/main``, ``Retrying in 1s [Retry
    1/5].``): during a Hub outage, 60 lines a minute. The call's failure, when it gives up, is LabelHub's to say
    (a step failing again with the same error: at ERROR once, at DEBUG between, :mod:`labelhub.sync.service`).
    Its other lines (``Error closing client``) are left as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """``False`` for an attempt's line unless the root logger is at DEBUG (then made a DEBUG record)."""
        if record.funcName != "_http_backoff_base" or record.levelno <= logging.DEBUG:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def library_logs_through_root() -> None:
    """Remove every non-root logger's own plain ``StreamHandler`` (stderr or stdout: huggingface_hub's), and make
    that logger propagate, so that its lines reach the root handler (:class:`RedactSecrets`, the time) once; the
    libraries of :data:`SELF_CONFIGURED` are imported first. :func:`setup_logging` calls it; a library imported
    later that adds its own handler is covered by calling it again after the import (transformers does:
    ``transformers/utils/logging.py`` gives its logger a ``StreamHandler`` and stops its propagation; the backend's
    imports of it do).
    """
    for module in SELF_CONFIGURED:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if not isinstance(logger, logging.Logger):
            continue
        printing = [h for h in logger.handlers if type(h) is logging.StreamHandler]  # not a file's, not a test's
        for handler in printing:
            logger.removeHandler(handler)
        if printing:
            logger.propagate = True


def setup_logging(level: str = "INFO", secrets: Iterable[str | None] = (),
                  fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> RedactSecrets:
    """Log to stderr as ``time level name: message``, with :class:`RedactSecrets` on the handler.

    Args:
        level: ``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``.
        secrets: The values to hide.
        fmt: The :class:`logging.Formatter` format (``labelhub backend`` adds the process id: several workers log).

    Every other logger's own handler that prints to stderr or stdout is removed and the logger made to propagate
    (:func:`library_logs_through_root`): huggingface_hub adds a bare ``StreamHandler`` to its logger as it is imported
    (``huggingface_hub/utils/logging.py``, ``_configure_library_root_logger``), which printed each of its lines a
    second time, with no time and past the redaction. huggingface_hub's lines about its own retries
    (:class:`RetryLinesAtDebug`) are at DEBUG: LabelHub says the failure once the call gave up.

    Returns:
        The filter (its :meth:`RedactSecrets.redact` cleans error messages printed elsewhere).
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(fmt))
    redactor = RedactSecrets(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    library_logs_through_root()
    backoff = logging.getLogger(BACKOFF_LOGGER)
    if not any(isinstance(f, RetryLinesAtDebug) for f in backoff.filters):
        backoff.addFilter(RetryLinesAtDebug())
    # httpx2/httpcore2: huggingface_hub 2.x's HTTP client logs each request at INFO; faker logs its locale lookups;
    # werkzeug: the sync's webhook receiver logged an access line per webhook (9 of 10 of its log lines)
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "urllib3", "filelock", "faker", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redactor
