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
from urllib.parse import urlsplit

__all__ = ["MIN_SECRET_CHARS", "redact", "one_line", "escaped", "without_userinfo", "urls_without_userinfo",
           "without_signatures", "check_http_url", "secret_forms",
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


def _userinfo_end(rest: str) -> int:
    """Where the ``user:password`` that begins ``rest`` (a URL after its ``scheme://``) ends: the index of its ``@``,
    ``-1`` when it has none. The rule of :func:`without_userinfo`."""
    at = rest.rfind("@")
    if at < 0:
        return -1
    host_end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0], default=len(rest))
    if "@" not in rest[:host_end] and ":" not in rest[:at]:
        return -1  # an @ in the path, query or fragment of a URL without userinfo: no password comes before it
    return at


def without_userinfo(url: str) -> str:
    """``url`` without the ``user:password@`` part of its host, for a message, a log line or a file written out.

    The ``user:password`` ends at the last ``@`` of ``url``: a password may hold an unencoded ``/``, ``?``, ``#`` or
    ``@`` (``http://u:pa#ss@host:1``, which ``urlsplit`` reads as the host ``u`` and a fragment), and all of it goes.
    The one exception keeps a URL whose ``@`` is in its path, query or fragment as it is: no ``@`` before the first
    ``/``, ``?`` or ``#``, and no ``:`` before the last ``@`` (no password is there: ``http://host/p?x=a@b``). When
    there is a ``:`` (``http://host:8080/p?x=a@b``), what comes before the last ``@`` goes as if it were a
    ``user:password`` (``http://b``): too much gone from a message harms less than a password shown.

    Args:
        url: A URL, also one without its scheme (``me:pw@ls.example:8080``, a mistyped setting), or one ``urlsplit``
            cannot parse (a bad IPv6 literal, a password with a ``#``).

    Example:
        >>> without_userinfo("http://me:pw@ls.example:8080/x")
        'http://ls.example:8080/x'
        >>> without_userinfo("me:pw@ls.example:8080")
        'ls.example:8080'
        >>> without_userinfo("http://me:p/w#x@ls.example:8080")
        'http://ls.example:8080'
        >>> without_userinfo("http://host/path?x=a@b")
        'http://host/path?x=a@b'
    """
    scheme, sep, rest = url.partition("://") if "://" in url else ("", "", url)
    at = _userinfo_end(rest)
    return url if at < 0 else scheme + sep + rest[at + 1:]


#: A URL inside a text: its ``scheme://`` and what follows it up to the next whitespace (a URL setting holds none; a
#: message's URL ends there), whose ``user:password@`` :func:`urls_without_userinfo` removes.
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)(\S*)")


def urls_without_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` of every ``scheme://`` URL in it removed (:func:`without_userinfo` of each
    URL of a message, a URL ending at the next whitespace): ``HF_ENDPOINT`` or ``LABEL_STUDIO_URL`` may carry a
    password, and an error of httpx or huggingface_hub may quote the URL it called.

    Example:
        >>> urls_without_userinfo("cannot reach http://u:S3cret@127.0.0.1:1/api: refused")
        'cannot reach http://127.0.0.1:1/api: refused'
        >>> urls_without_userinfo("cannot reach 'http://u:S3c#ret@127.0.0.1:1' (a@b.c): refused")
        "cannot reach 'http://127.0.0.1:1' (a@b.c): refused"
    """
    if "@" not in text:
        return text
    return _URL.sub(lambda m: m.group(1) + m.group(2)[_userinfo_end(m.group(2)) + 1:], text)


def check_http_url(variable: str, value: str) -> None:
    """Check that ``value`` is an ``http(s)://host[:port][/path]`` URL, the form LabelHub and huggingface_hub fetch
    from, in a message that never shows its password.

    Used for ``LABEL_STUDIO_URL`` (:class:`labelhub.backend.settings.Settings`) and ``HF_ENDPOINT``
    (:func:`labelhub.backend.startup.check_settings`, the sync's ``--hf-endpoint`` and :mod:`labelhub.repos` before
    huggingface_hub is imported: it parses ``HF_ENDPOINT`` then, and its ``ValueError`` quotes the port it read, the
    password when the password holds a ``/``, ``?`` or ``#``): a value without a scheme (``localhost:8080``) parses as
    a URL of scheme ``localhost`` and failed only at the first fetch (``InvalidSchema``). A ``user:password@`` part
    is accepted (and never shown).

    Args:
        variable: The environment variable, for the message.
        value: Its value; empty is accepted (unset).

    Raises:
        ValueError: Another scheme or none, no host, a port that is no number from 1 to 65535, a query or a
            fragment, a ``user:password`` with an unencoded ``/``, ``?`` or ``#``; one line naming ``variable``, the
            value without its ``user:password@`` (:func:`without_userinfo`) and the form expected
            (``LABEL_STUDIO_URL='localhost:18300' is not an http(s) URL: write http://localhost:18300``).
    """
    if not value:
        return
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # a port that is no number or out of range, a bad IPv6 literal
        parts, port = None, -1
    if parts is not None and parts.scheme in ("http", "https") and parts.hostname and port != 0 \
            and not parts.query and not parts.fragment:
        return
    shown = without_userinfo(value)[:100]
    if "://" not in value and shown.strip() and shown.isprintable():
        hint = f"write http://{shown}"
    elif without_userinfo(value) != value and "@" not in re.split(r"[/?#]", value.split("://", 1)[-1], maxsplit=1)[0]:
        hint = "its user:password holds a /, ? or # (not shown): write them %2F, %3F and %23 (pa#ss as pa%23ss)"
    elif parts is not None and parts.scheme in ("http", "https") and (parts.query or parts.fragment):
        hint = "without a query or fragment, e.g. http://localhost:8080"
    elif value.partition("://")[0].lower() in ("http", "https") and parts is None or port == 0:
        hint = "its port must be a number from 1 to 65535, e.g. http://localhost:8080"
    else:
        hint = "write it as http://host:port or https://host[:port][/path], e.g. http://localhost:8080"
    raise ValueError(f"{variable}={shown!r} is not an http(s) URL: {hint}")


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


def secret_forms(secret: str) -> set[str]:
    """The texts ``secret`` may be printed as: itself, without the whitespace around it (a token read with the CR of
    a CRLF ``.env`` file), and each of these escaped as ``repr`` writes a ``str`` and a ``bytes`` (httpx's
    ``Illegal header value b'Bearer hf_...\\r'``); those shorter than :data:`MIN_SECRET_CHARS` left out.

    Example:
        >>> sorted(secret_forms("hf_abc1\\r"))
        ['hf_abc1', 'hf_abc1\\r', 'hf_abc1\\\\r']
    """
    forms = set()
    for plain in {secret, secret.strip()}:
        forms |= {plain, escaped(plain, None), repr(plain.encode("utf-8", "backslashreplace"))[2:-1]}
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each secret replaced by ``***``, and without the ``user:password@`` of any URL in it
    (:func:`urls_without_userinfo`).

    Args:
        text: Any text about to be logged, printed or answered.
        secrets: The values to hide, each in every form of :func:`secret_forms` (stripped, escaped); ``None``,
            empty and shorter than :data:`MIN_SECRET_CHARS` ones are ignored. Longer texts are replaced first, so a
            secret that contains another (or its escaped form, its stripped one) is hidden whole.

    Returns:
        The text without the secrets.

    Example:
        >>> redact("token hf_abcdef1234 refused", ["hf_abcdef1234"])
        'token *** refused'
        >>> redact("Illegal header value b'Bearer hf_abcdef1234\\\\r'", ["hf_abcdef1234\\r"])
        "Illegal header value b'Bearer ***'"
    """
    forms = set().union(*(secret_forms(s) for s in secrets if s and len(s) >= MIN_SECRET_CHARS))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
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
#: The functions of :data:`BACKOFF_LOGGER` whose lines are about one attempt of a retried call
#: (:class:`RetryLinesAtDebug`): the loop, and the check of each answer's status nested in it.
RETRY_FUNCTIONS = ("_http_backoff_base", "_should_retry")
#: Libraries that give their logger a handler of their own as they are imported: imported here first (when
#: installed and cheap to import), so that :func:`setup_logging` finds the handler to remove.
SELF_CONFIGURED = ("huggingface_hub.utils.logging",)


class RetryLinesAtDebug(logging.Filter):
    """A filter for huggingface_hub's ``http_backoff`` logger (:data:`BACKOFF_LOGGER`) that puts its lines about each
    attempt at DEBUG (they are dropped unless the root logger is at DEBUG).

    ``http_backoff`` (``_http_backoff_base``) says two WARNING lines per failed attempt, 5 retries a call
    (``'[Errno 111] Connection refused' thrown while requesting GET .../commits/main``, ``Retrying in 1s [Retry
    1/5].``): during a Hub outage, 60 lines a minute. An answer it retries (429, 5xx) is said by the function nested
    in it, ``_should_retry`` (``HTTP Error 503 thrown while requesting GET ...``): its lines are matched by that
    name too (:data:`RETRY_FUNCTIONS`). The call's failure, when it gives up, is LabelHub's to say
    (a step failing again with the same error: at ERROR once, at DEBUG between, :mod:`labelhub.sync.service`).
    Its other lines (``Error closing client``) are left as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """``False`` for an attempt's line unless the root logger is at DEBUG (then made a DEBUG record)."""
        if record.funcName not in RETRY_FUNCTIONS or record.levelno <= logging.DEBUG:
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
