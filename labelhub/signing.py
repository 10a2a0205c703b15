"""Signed file URLs: pure functions shared by the sync (which signs) and the backend (which verifies).

A file of a dataset repo at one commit is served by the backend's file route
(:mod:`labelhub.backend.files`) at::

    {LABELHUB_PUBLIC_URL}/files/{repo key}/{commit sha}/{path_in_repo}?exp={unix time}&sig={signature}

- ``repo key`` names the repo in the URL (:func:`repo_key`): ``owner--name`` for the Hub dataset
  ``owner/name`` (the Hub forbids ``--`` in repo ids, so the mapping cannot collide, and it is the
  form of huggingface_hub's cache folders, ``datasets--owner--name``); the directory's name for a
  local git repository.
- ``commit sha`` is always 40 hex digits (never a branch or tag name), so what a URL points to never
  changes.
- ``exp`` is the Unix time after which the URL is refused; absent (or ``0``) when the URL does not
  expire.
- ``sig`` is HMAC-SHA256 (RFC 2104, :mod:`hmac`) keyed with ``LABELHUB_SECRET`` over
  ``"labelhub-file-v1" NUL key NUL sha NUL path NUL exp``, base64url without padding (RFC 4648 §5).
  NUL cannot occur in any of the fields (git forbids it in paths), so the message is unambiguous.
  Verification compares with :func:`hmac.compare_digest`.

Rotating ``LABELHUB_SECRET`` invalidates every URL signed before (revocation); see the README's
"Private datasets and local repos: signed file URLs".
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from pathlib import PurePosixPath
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = [
    "SignatureError", "ExpiredSignature", "MIN_SECRET_LENGTH", "ROUTE_PREFIX", "signature", "sign_url", "file_url", "verify",
    "repo_key", "is_commit_sha", "is_safe_path", "parse_file_url", "FileRef",
]

#: The shortest ``LABELHUB_SECRET`` accepted (``python -c "import secrets; print(secrets.token_urlsafe(32))"``).
MIN_SECRET_LENGTH = 16
#: The path segment of the backend's file route.
ROUTE_PREFIX = "/files"
_DOMAIN = b"labelhub-file-v1"
_SHA = re.compile(r"^[0-9a-f]{40}$")
_ROUTE = re.compile(r"^(?P<prefix>.*)/files/(?P<key>[^/]+)/(?P<sha>[0-9a-f]{40})/(?P<path>.+)$")


class SignatureError(ValueError):
    """A file URL's signature is missing, malformed or does not match (the URL was not issued with
    this secret, or was altered)."""


class ExpiredSignature(SignatureError):
    """A file URL's signature is valid but its ``exp`` time has passed."""


def is_commit_sha(value: str) -> bool:
    """Whether ``value`` is a full commit sha: 40 lowercase hex digits (SHA-1, what the Hub and git use).

    Args:
        value: A revision from a URL.

    Returns:
        ``True`` for ``"0123...cdef"`` (40 characters), ``False`` for branch and tag names and short shas.
    """
    return isinstance(value, str) and bool(_SHA.match(value))


def is_safe_path(path: str) -> bool:
    """Whether ``path`` is a plain ``path_in_repo``: relative, ``/``-separated, no ``.``/``..``/empty parts.

    Args:
        path: The decoded path from a URL.

    Returns:
        ``False`` for absolute paths (``/etc/passwd``), any ``..`` or ``.`` part, empty parts (``a//b``),
        backslashes, NUL and other control characters; ``True`` otherwise.
    """
    if not path or path.startswith("/") or "\\" in path or any(ord(c) < 32 for c in path):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def repo_key(repo: str, local: bool = False) -> str:
    """The name of a repo in file URLs.

    Args:
        repo: A Hub dataset repo_id ``owner/name``, or the path of a local git repository.
        local: ``True`` when ``repo`` is a local repository's path.

    Returns:
        ``owner--name`` for a repo_id; the directory's name for a path (``/srv/data/fmnist`` → ``fmnist``).

    Raises:
        ValueError: When the key would be empty, ``.`` or ``..``.

    Example:
        >>> repo_key("me/pics"), repo_key("/srv/repos/pics/", local=True)
        ('me--pics', 'pics')
    """
    key = PurePosixPath(str(repo).rstrip("/")).name if local else str(repo).replace("/", "--")
    if key in ("", ".", "..") or "/" in key or "\0" in key:
        raise ValueError(f"cannot make a file URL key for {repo!r}")
    return key


def _message(key: str, sha: str, path: str, expires: int) -> bytes:
    return b"\0".join([_DOMAIN, key.encode(), sha.encode(), path.encode(), str(int(expires)).encode()])


def signature(secret: str, key: str, sha: str, path: str, expires: int = 0) -> str:
    """The signature of one file URL.

    Args:
        secret: ``LABELHUB_SECRET`` (never logged).
        key: The repo key (:func:`repo_key`).
        sha: The commit sha (40 hex digits).
        path: The ``path_in_repo``, decoded (not URL-quoted).
        expires: Unix time (seconds) after which the URL is refused; ``0``: never.

    Returns:
        HMAC-SHA256 of the fields, base64url without padding (43 characters).

    Raises:
        ValueError: When ``secret`` is empty.
    """
    if not secret:
        raise ValueError("LABELHUB_SECRET is empty")
    digest = hmac.new(secret.encode(), _message(key, sha, path, expires), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def file_url(base_url: str, key: str, sha: str, path: str) -> str:
    """``{base_url}/files/{key}/{sha}/{path}``, URL-quoted, without signature.

    Args:
        base_url: ``LABELHUB_PUBLIC_URL``, the backend as the annotators' browsers see it.
        key, sha, path: As for :func:`signature`.

    Returns:
        The URL.
    """
    return f"{base_url.rstrip('/')}{ROUTE_PREFIX}/{quote(key, safe='')}/{sha}/{quote(path)}"


def sign_url(base_url: str, secret: str, key: str, sha: str, path: str, lifetime: float = 0,
             now: float | None = None) -> str:
    """A signed file URL (the form of the module docstring).

    Args:
        base_url: ``LABELHUB_PUBLIC_URL``.
        secret: ``LABELHUB_SECRET``.
        key, sha, path: As for :func:`signature`.
        lifetime: Seconds the URL stays valid from ``now``; ``0``: it never expires.
        now: The current Unix time (default: :func:`time.time`).

    Returns:
        ``{base_url}/files/{key}/{sha}/{path}?exp=...&sig=...`` (no ``exp`` when ``lifetime`` is 0).

    Raises:
        ValueError: When ``sha`` is not a commit sha, ``path`` is not a plain relative path, or the
            secret is empty.

    Example:
        >>> sign_url("http://localhost:9090", "s3cret", "me--pics", "a" * 40, "img/0.png")[:60]
        'http://localhost:9090/files/me--pics/aaaaaaaaaaaaaaaaaaaaaaaa'
    """
    if not is_commit_sha(sha):
        raise ValueError("file URLs are pinned to a commit sha (40 hex digits)")
    if not is_safe_path(path):
        raise ValueError(f"not a plain path_in_repo: {path!r}")
    expires = int((time.time() if now is None else now) + lifetime) if lifetime and lifetime > 0 else 0
    sig = signature(secret, key, sha, path, expires)
    query = f"exp={expires}&sig={sig}" if expires else f"sig={sig}"
    return f"{file_url(base_url, key, sha, path)}?{query}"


def verify(secret: str, key: str, sha: str, path: str, expires: str | int | None, sig: str | None,
           now: float | None = None, check_expiry: bool = True) -> None:
    """Check a file URL's signature.

    Args:
        secret: ``LABELHUB_SECRET``; an empty secret verifies nothing.
        key, sha, path: From the URL (``path`` decoded).
        expires: The URL's ``exp`` parameter (``None`` or ``""`` when absent).
        sig: The URL's ``sig`` parameter.
        now: The current Unix time (default: :func:`time.time`).
        check_expiry: ``False`` accepts an expired but otherwise valid signature (the backend reading
            a task's file for a prediction: nothing is sent to a browser).

    Returns:
        None.

    Raises:
        SignatureError: When the secret is empty, ``sig`` is missing or malformed, or does not match.
        ExpiredSignature: When the signature matches but ``exp`` has passed.
    """
    if not secret or not sig or len(sig) > 128:
        raise SignatureError("missing signature")
    try:
        exp = int(expires) if expires not in (None, "") else 0
    except (TypeError, ValueError):
        raise SignatureError("malformed expiry") from None
    if exp < 0:
        raise SignatureError("malformed expiry")
    expected = signature(secret, key, sha, path, exp)
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
        raise SignatureError("bad signature")
    if check_expiry and exp and (time.time() if now is None else now) > exp:
        raise ExpiredSignature("expired signature")


class FileRef(tuple):
    """``(key, sha, path, expires, sig)`` of a file URL (see :func:`parse_file_url`)."""

    __slots__ = ()

    def __new__(cls, key: str, sha: str, path: str, expires: str | None, sig: str | None):
        return super().__new__(cls, (key, sha, path, expires, sig))

    key = property(lambda self: self[0])
    sha = property(lambda self: self[1])
    path = property(lambda self: self[2])
    expires = property(lambda self: self[3])
    sig = property(lambda self: self[4])


def parse_file_url(url: str) -> FileRef | None:
    """Read a file URL of the form in the module docstring (any scheme, host and path prefix).

    Args:
        url: A task's value.

    Returns:
        A :class:`FileRef` (``path`` decoded; ``expires``/``sig`` ``None`` when absent), or ``None``
        when ``url`` does not have that form.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    m = _ROUTE.match(parts.path)
    if not m:
        return None
    query = parse_qs(parts.query)
    return FileRef(unquote(m.group("key")), m.group("sha"), unquote(m.group("path")),
                   (query.get("exp") or [None])[0], (query.get("sig") or [None])[0])
