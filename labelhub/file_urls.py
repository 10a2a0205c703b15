"""Which URL a task gets for a repo file: the Hub's pinned ``resolve`` URL, or a signed URL of the
backend's file route (:mod:`labelhub.backend.files`), chosen per repo.

=====================  ============================  ==========================================
repo                   ``--file-urls auto``          form
=====================  ============================  ==========================================
public Hub dataset     ``resolve``                   ``{HF_ENDPOINT}/datasets/{repo_id}/resolve/{sha}/{path}``
private Hub dataset    ``proxy``                     ``{LABELHUB_PUBLIC_URL}/files/{owner--name}/{sha}/{path}?sig=...``
local git repository   ``proxy``                     ``{LABELHUB_PUBLIC_URL}/files/{dir name}/{sha}/{path}?sig=...``
=====================  ============================  ==========================================

``--file-urls resolve`` or ``proxy`` forces one form (a local repository has no ``resolve`` URL). The
proxy URLs are signed with ``LABELHUB_SECRET`` (:mod:`labelhub.signing`). Without a secret nothing can
be signed, and a task whose URL never loads is never useful (Label Studio keeps a task's URL as it was
imported), so the commands that make tasks refuse before the first one (:meth:`FileURLs.refusal`,
:func:`log_file_urls`): a local repository (the backend refuses unsigned URLs), and a private Hub repo under
``auto`` (a browser has no Hub token for its ``resolve`` URLs). Decided: an explicit ``--file-urls resolve`` of a
private Hub repo is obeyed with a warning (the person asked for it, e.g. annotators signed in to the Hub).

A URL longer than :data:`MAX_URL_LENGTH` characters does not load through the backend nor through common proxies
(``414``): a deep path of non-ASCII names reaches it (each UTF-8 byte is 3 characters once percent-encoded). The sync
says which files' tasks got one (:mod:`labelhub.sync.files.importer`).

The tasks already made follow a change of the policy (another host, form, secret or lifetime): the sync rewrites
their URLs at its next cycle (:mod:`labelhub.sync.files.importer`, step 7; :meth:`FileURLs.signing_key`).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
from dataclasses import dataclass, field

from labelhub.errors import ConfigurationError
from labelhub.signing import MIN_SECRET_LENGTH, file_url, repo_key, sign_url

__all__ = ["FileURLs", "MODES", "DEFAULT_PUBLIC_URL", "REFUSED", "MAX_REQUEST_LINE", "MAX_URL_LENGTH", "parse_lifetime", "warn_long_urls",
           "log_file_urls"]

MODES = ("auto", "resolve", "proxy")
DEFAULT_PUBLIC_URL = "http://127.0.0.1:9090"
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest HTTP request line (``GET /files/...?sig=... HTTP/1.1``, bytes) ``labelhub backend`` accepts: gunicorn's
#: ``limit_request_line`` (https://docs.gunicorn.org/en/stable/settings.html#limit-request-line; default 4094, at most
#: 8190, 0: unlimited). Decided: 8190, gunicorn's largest bounded value, which is also Apache's ``LimitRequestLine``
#: default and fits nginx's default ``large_client_header_buffers`` (4 x 8k), the common proxies in front of a
#: backend: a URL the backend accepts passes them too. Unlimited would let longer URLs load only without such a
#: proxy, and lets any client (the file route needs no login) make a worker buffer a request line of any length.
MAX_REQUEST_LINE = 8190
#: The longest task file URL (characters, scheme and host included) said to load: :data:`MAX_REQUEST_LINE` less
#: ``GET`` and `` HTTP/1.1`` around the path and query. The sync warns about longer ones.
MAX_URL_LENGTH = MAX_REQUEST_LINE - len("GET  HTTP/1.1")
#: How a :meth:`FileURLs.refusal` line begins: :func:`log_file_urls` raises on it instead of logging it.
REFUSED = "no loadable file URLs for "


def parse_lifetime(value: str | float | int | None) -> int:
    """Parse ``--url-lifetime``: seconds, or a number with ``s``, ``m``, ``h`` or ``d``; ``0``/``never``: no expiry.

    Args:
        value: ``"3600"``, ``"90m"``, ``"12h"``, ``"30d"``, ``"0"``, ``"never"`` or a number.

    Returns:
        The lifetime in whole seconds (``0``: URLs never expire).

    Raises:
        ValueError: When ``value`` does not parse, is negative, or is not finite (``inf``, ``nan``, or more
            seconds than a float holds: ``"9" * 400``).

    Example:
        >>> parse_lifetime("12h"), parse_lifetime("never")
        (43200, 0)
    """
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"not a lifetime: {value!r} (not a finite number of seconds)")
        if value < 0:
            raise ValueError("the URL lifetime cannot be negative")
        return int(value)
    text = value.strip().lower()
    if text in ("", "0", "never", "none"):
        return 0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text)
    if not m:
        raise ValueError(f"not a lifetime: {value!r} (seconds, or a number with s, m, h or d, or 'never')")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(seconds):  # beyond a float's range: int() would raise OverflowError
        raise ValueError(f"not a lifetime: a number of {len(m.group(1))} characters is too large (seconds, or a "
                         "number with s, m, h or d, or 'never')")
    return int(seconds)


@dataclass(frozen=True)
class FileURLs:
    """How the sync writes file URLs (the ``--file-urls``, ``--public-url``, ``--secret`` and
    ``--url-lifetime`` options of ``labelhub sync``).

    Attributes:
        mode: ``"auto"`` (public Hub: resolve; private Hub and local: proxy), ``"resolve"`` or ``"proxy"``.
        public_url: The backend's URL as the annotators' browsers see it (``LABELHUB_PUBLIC_URL``).
        secret: ``LABELHUB_SECRET``; ``None``: proxy URLs are unsigned (and refused by the backend).
        lifetime: Seconds a signed URL stays valid from the moment the task is made; ``0``: no expiry.
    """

    mode: str = "auto"
    public_url: str = DEFAULT_PUBLIC_URL
    secret: str | None = field(default=None, repr=False)
    lifetime: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"--file-urls must be one of {', '.join(MODES)}, not {self.mode!r}")
        object.__setattr__(self, "public_url", (self.public_url or DEFAULT_PUBLIC_URL).rstrip("/"))

    def form(self, local: bool, private: bool | None) -> str:
        """Which form a repo's file URLs take.

        Args:
            local: Whether the repo is a local git repository.
            private: Whether the Hub repo is private (``None``: not known yet, taken as private).

        Returns:
            ``"resolve"`` or ``"proxy"``.

        Raises:
            ValueError: For ``mode="resolve"`` with a local repository (it has no resolve URL).
        """
        if local:
            if self.mode == "resolve":
                raise ValueError("--file-urls resolve: a local git repository has no resolve URL; use proxy or auto")
            return "proxy"
        if self.mode != "auto":
            return self.mode
        if private is False or not self.secret:
            return "resolve"
        return "proxy"

    def proxy_url(self, key: str, sha: str, path: str, now: float | None = None) -> str:
        """The backend's file URL of ``path`` at ``sha`` in the repo named ``key``: signed when a secret
        is set (:func:`labelhub.signing.sign_url`), else unsigned.

        Args:
            key: The repo key (:func:`labelhub.signing.repo_key`).
            sha: The commit sha (40 hex digits).
            path: The ``path_in_repo``.
            now: The signing time (default: now).

        Returns:
            The URL.
        """
        if not self.secret:
            return file_url(self.public_url, key, sha, path)
        return sign_url(self.public_url, self.secret, key, sha, path, lifetime=self.lifetime, now=now)

    def refusal(self, repo_id: str, local: bool, private: bool | None) -> str | None:
        """Why no task should be made of the repo's files under this policy, in one line (no secret in it), or
        ``None`` when its URLs can load: a local repository, or any proxy URL, without a secret (unsigned: the
        backend refuses it), and a private Hub repo under ``--file-urls auto`` without a secret (its ``resolve`` URL
        needs the Hub token a browser lacks). An explicit ``--file-urls resolve`` is not refused.

        Args:
            repo_id: The repo's id or path.
            local, private: As for :meth:`form` (``private=None``, not known yet, is not refused).

        Returns:
            ``None``, or a line that begins with :data:`REFUSED` and says what to set.
        """
        if self.secret:
            return None
        secret = (f"set LABELHUB_SECRET ({MIN_SECRET_LENGTH}+ characters, the same in the backend), the backend's "
                  f"LABELHUB_FILE_REPOS to include {repo_id}, and LABELHUB_PUBLIC_URL to the backend's URL as the "
                  f"annotators' browsers see it (now {self.public_url})")
        if local:
            return (f"{REFUSED}{repo_id}: a local git repository's files reach browsers only as URLs of the backend "
                    f"signed with LABELHUB_SECRET, which is not set: {secret}")
        if self.mode == "proxy":
            return f"{REFUSED}{repo_id}: --file-urls proxy needs LABELHUB_SECRET to sign the URLs: {secret}"
        if private and self.mode == "auto":
            return (f"{REFUSED}{repo_id}: a private Hub repo's resolve URLs need the Hub token, which browsers lack, "
                    f"and LABELHUB_SECRET is not set to serve them signed through the backend: {secret}; or pass "
                    "--file-urls resolve to make resolve URLs anyway")
        return None

    def signing_key(self) -> dict:
        """What a signed URL takes from this policy besides its file, to notice a change (JSON types, no secret):
        ``{"secret": <12 hex digits>, "lifetime": seconds}``, or ``{}`` without a secret. The digest is an HMAC of a
        fixed text with the secret, as each signed URL's ``sig`` is one of its file's: it tells a rotated secret
        and reveals no more than any signed URL does.

        Example:
            >>> FileURLs().signing_key()
            {}
        """
        if not self.secret:
            return {}
        digest = hmac.new(self.secret.encode(), b"labelhub file URL policy", hashlib.sha256).hexdigest()[:12]
        return {"secret": digest, "lifetime": self.lifetime}

    def describe(self, repo_id: str, local: bool, private: bool | None) -> str:
        """One log line saying which form the repo's file URLs take, and why (no secret in it); when no URL of
        them can load, the :meth:`refusal` line instead.

        Args:
            repo_id: The repo's id or path.
            local, private: As for :meth:`form`.

        Returns:
            E.g. ``"file URLs of me/pics: signed proxy URLs http://...:9090/files/me--pics/<sha>/<path>
            (private Hub repo), no expiry"``.
        """
        refused = self.refusal(repo_id, local, private)
        if refused:
            return refused
        form = self.form(local, private)
        kind = "local git repository" if local else ("private Hub repo" if private else
                                                      "public Hub repo" if private is False else "Hub repo")
        why = f"--file-urls {self.mode}" if self.mode != "auto" else kind
        if form == "resolve":
            extra = ""
            if private and not self.secret:  # only an explicit --file-urls resolve (auto is refused)
                extra = ("; WARNING: annotators' browsers cannot load a private repo's resolve URLs unless signed "
                         "in to the Hub with access to it: set LABELHUB_SECRET to serve them signed through the "
                         "backend")
            return f"file URLs of {repo_id}: Hub resolve URLs pinned to the commit ({why}){extra}"
        key = repo_key(repo_id, local=local)
        shape = f"{self.public_url}/files/{key}/<sha>/<path>"
        expiry = f"valid {self.lifetime} s" if self.lifetime else "no expiry"
        return f"file URLs of {repo_id}: signed proxy URLs {shape} ({why}), {expiry}"


def log_file_urls(line: str, logger: logging.Logger) -> None:
    """Log a :meth:`FileURLs.describe` line, or refuse: the commands that make tasks of repo files (``labelhub sync``,
    ``labelhub import-labels --repo``) call it before the first task. At WARNING when the tasks' URLs may not load
    (an explicit ``--file-urls resolve`` of a private repo), else at INFO.

    Args:
        line: The line (``DatasetRepo.describe_file_urls()``).
        logger: Where to log it.

    Raises:
        labelhub.errors.ConfigurationError: The line is a :meth:`FileURLs.refusal` (it begins with :data:`REFUSED`):
            no URL the tasks would get can load (no ``LABELHUB_SECRET``); the message says what to set.
    """
    if line.startswith(REFUSED):
        raise ConfigurationError(f"{line} (no task was made)")
    (logger.warning if "WARNING" in line else logger.info)(line)


def warn_long_urls(paths: list[str], repo_id: str, sha: str, logger: logging.Logger) -> None:
    """Warn once, for a batch of tasks made from ``repo_id``'s files at ``sha``, of the ``paths`` whose task URL is
    longer than :data:`MAX_URL_LENGTH`: the backend (gunicorn's ``limit_request_line``) and common proxies answer
    414, so a browser may not load those files (``labelhub sync`` per cycle, ``labelhub import-labels --repo`` per
    run). Nothing when ``paths`` is empty.

    Args:
        paths: ``path_in_repo`` of each such file (up to 5 are named, then how many more).
        repo_id, sha: The repo and the commit the tasks show.
        logger: Where to warn.
    """
    if not paths:
        return
    names = ", ".join(paths[:5]) + (f", ... (+{len(paths) - 5})" if len(paths) > 5 else "")
    logger.warning("%s@%s: %d files have a task URL longer than %d characters, which the backend and common proxies "
                   "(nginx, Apache) refuse (414 Request-URI Too Long): their tasks are made, but a browser may not "
                   "load their files; shorten their paths in the repo (a task follows its file's git mv): %s",
                   repo_id, sha[:12], len(paths), MAX_URL_LENGTH, names)


def announce_task_files(dataset, field, logger: logging.Logger) -> None:
    """Before the first task of ``dataset``'s files is made (``labelhub sync``, ``labelhub import-labels --repo``):
    log how the tasks' file URLs reach the browsers, or refuse (:func:`log_file_urls`), when the tasks hold URLs
    (``field.as_url``). Tasks that hold the files' texts (a ``<Text>`` without ``valueType="url"``) have no URL to
    load or sign: no ``LABELHUB_SECRET`` is needed, a line says so, and a Hub repo's URL policy is dropped
    (``dataset.file_urls = None``), so that the repo made private mid-run is no reason to stop (the sync reads the
    texts with its token).

    Args:
        dataset: The repo (a :class:`labelhub.repos.DatasetRepo`), its visibility already read (``resolve``).
        field: The project's object tag (:class:`labelhub.label_config.DataField`).
        logger: Where to log.

    Raises:
        labelhub.errors.ConfigurationError: As :func:`log_file_urls`, for tasks that hold URLs.
    """
    if field.as_url:
        log_file_urls(dataset.describe_file_urls(), logger)
        return
    logger.info("file URLs of %s: none, the tasks hold the files' texts ($%s)", dataset.repo_id, field.value_key)
    if not dataset.local:
        dataset.file_urls = None
