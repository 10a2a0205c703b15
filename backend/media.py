"""Fetch the media a task's data points to, from the few places the backend trusts.

Accepted URLs (anything else raises :class:`~labelhub.backend.errors.MediaNotAllowedError`; the backend never
fetches an arbitrary URL found in a task):

- Hub files: ``hf://datasets/<owner>/<name>[@<revision>]/<path>`` (the ``hf://`` paths of
  https://huggingface.co/docs/huggingface_hub/guides/hf_file_system), ``hf://<owner>/<name>/...`` for
  models and ``hf://spaces/...``, and ``<HF_ENDPOINT>/[datasets/|spaces/]<owner>/<name>/resolve/<revision>/<path>``
  (https://huggingface.co/docs/hub/api#get-reporepo_idresolverevisionfilename). They go through
  :func:`huggingface_hub.hf_hub_download`, so they land in the Hub cache once, with ``HF_TOKEN``.
- Label Studio files: ``/data/upload/...``, ``/data/local-files/?d=...``, ``/storage-data/...`` and
  ``/tasks/<id>/resolve/...`` (relative, or absolute on ``LABEL_STUDIO_URL``), fetched from
  ``LABEL_STUDIO_URL`` with ``LABEL_STUDIO_API_KEY``. A personal access token (a JWT refresh token) is
  exchanged at ``POST /api/token/refresh/`` for an access token that lives 5 minutes
  (https://labelstud.io/guide/access_tokens); a legacy token is sent as ``Authorization: Token ...``.
- Signed file URLs of the backend's own file route (``.../files/<repo key>/<sha>/<path>?sig=...``,
  :mod:`labelhub.backend.files`) for a repo of ``LABELHUB_FILE_REPOS``: read directly from huggingface_hub's
  cache or the local git repository, never over HTTP (whatever the URL's host: the signature proves
  the sync issued it). An expired signature is accepted here: nothing reaches a browser.
- ``data:`` URIs (RFC 2397), decoded in place.
- http(s) URLs whose host is on ``LABELHUB_ALLOWED_HOSTS``, fetched without credentials.

Redirects are not followed (a redirect could lead off the allowlist). Messages and logs name a URL
without its query string, so a signed URL's token never leaks. Label Studio and the allowed hosts are
fetched with one :class:`MediaSession`, which keeps no cookie and reads no ``~/.netrc`` (see there).
Limits (``LABELHUB_MEDIA_MAX_BYTES``, ``LABELHUB_MEDIA_TIMEOUT``): see :meth:`MediaFetcher.fetch`.
"""
from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import threading
import time
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import parse_qs, unquote, urlsplit

import requests
import urllib3
from cachetools import LRUCache, TTLCache

from labelhub.backend.errors import BackendError, MediaFetchError, MediaNotAllowedError
from labelhub.errors import FileTooLarge
from labelhub.redaction import escaped, redact
from labelhub.signing import SignatureError, is_safe_path, parse_file_url, verify
from labelhub.repos.hub import download
from labelhub.repos.texts import decode_text
from labelhub.backend.files import ANOTHER_SECRET, RepoFiles, unknown_key_reason
from labelhub.backend.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["MediaFetcher", "MediaSession", "HubFile", "parse_hub_url", "safe_url"]

_LS_PREFIXES = ("/data/upload/", "/data/local-files/", "/storage-data/", "/data/", "/tasks/", "/projects/")
_RESOLVE = re.compile(r"^/(?:(?P<type>datasets|spaces|models)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_HF_PATH = re.compile(r"^(?:(?P<type>datasets|spaces|models)/)?(?P<repo>[^/@]+/[^/@]+)(?:@(?P<rev>[^/]+))?/(?P<path>.+)$")


class HubFile(tuple):
    """``(repo_id, repo_type, revision, path_in_repo)`` of a Hub URL."""

    __slots__ = ()

    def __new__(cls, repo_id: str, repo_type: str, revision: str, path_in_repo: str):
        return super().__new__(cls, (repo_id, repo_type, revision, path_in_repo))

    repo_id = property(lambda self: self[0])
    repo_type = property(lambda self: self[1])
    revision = property(lambda self: self[2])
    path_in_repo = property(lambda self: self[3])


def safe_url(url: str) -> str:
    """``url`` without query string and fragment, for messages (keeps ``?d=`` of local files).

    Args:
        url: Any URL.

    Returns:
        A string safe to log: no signature or token from a query string, no ``user:password@`` before the host.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    host = parts.netloc.rpartition("@")[2]  # credentials in the URL are a secret too
    out = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path
    if parts.path.startswith("/data/local-files") and "d" in parse_qs(parts.query):
        out += "?d=" + parse_qs(parts.query)["d"][0]
    return out[:300]


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _same_loopback_server(parts, ls) -> bool:
    """Whether two parsed URLs name one server on this machine under two names (``localhost`` and ``127.0.0.1``, as
    a browser's address bar and ``LABEL_STUDIO_URL`` often differ): both hosts loopback, same scheme and port."""
    try:
        return (parts.scheme == ls.scheme and (parts.hostname or "").lower() in _LOOPBACK
                and (ls.hostname or "").lower() in _LOOPBACK and parts.port == ls.port)
    except ValueError:  # a port that is not a number
        return False


def parse_hub_url(url: str, endpoint: str) -> HubFile | None:
    """Read a Hub file reference from an ``hf://`` URL or a ``.../resolve/<revision>/...`` URL.

    Args:
        url: The task's value.
        endpoint: The Hub's base URL (``huggingface_hub.constants.ENDPOINT``, from ``HF_ENDPOINT``).

    Returns:
        A :class:`HubFile`, or ``None`` when ``url`` is not a Hub file URL.

    Raises:
        MediaNotAllowedError: When the revision or the path (both percent-decoded) has a ``..``, ``.`` or
            empty ``/``-part, a leading ``/``, a backslash or a control character
            (:func:`labelhub.signing.is_safe_path`): huggingface_hub writes a branch's or tag's commit to
            ``refs/<revision>`` in its cache, so such a revision could name a file outside it.

    Example:
        >>> parse_hub_url("hf://datasets/me/pics@v1/img/0.png", "https://huggingface.co")
        ('me/pics', 'dataset', 'v1', 'img/0.png')
    """
    if url.startswith("hf://"):
        m = _HF_PATH.match(url[len("hf://"):])
        if not m:
            return None
        return _hub_file(url, m.group("type"), m.group("repo"), m.group("rev") or "main", m.group("path"))
    parts, base = urlsplit(url), urlsplit(endpoint)
    if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
        return None
    path = parts.path[len(base.path.rstrip("/")):] if base.path.strip("/") else parts.path
    m = _RESOLVE.match(path)
    if not m:
        return None
    return _hub_file(url, m.group("type"), m.group("repo"), m.group("rev"), m.group("path"))


def _hub_file(url: str, kind: str | None, repo_id: str, revision: str, path: str) -> HubFile:
    """The :class:`HubFile` of ``url``'s matched parts (``revision`` and ``path`` still percent-encoded), checked
    as :func:`parse_hub_url` says."""
    revision, path = unquote(revision), unquote(path)
    for name, value in (("revision", revision), ("path", path)):
        if not is_safe_path(value):
            raise MediaNotAllowedError(f"{safe_url(url)}: the Hub {name} {value[:100]!r} has a '..', '.' or empty "
                                       "part, a leading '/' or a control character")
    repo_type = {"datasets": "dataset", "spaces": "space"}.get(kind or "", "model")
    return HubFile(repo_id, repo_type, revision, path)


class MediaSession(requests.Session):
    """The ``requests.Session`` media is fetched with: no cookie kept, no ``~/.netrc`` read, proxies and CA
    bundle still from the environment.

    - Cookies: the jar's policy refuses every cookie (``http.cookiejar.DefaultCookiePolicy(allowed_domains=[])``,
      https://docs.python.org/3/library/http.cookiejar.html#http.cookiejar.DefaultCookiePolicy). Cookies are
      kept per host, not per port, so one an allowed host set on ``127.0.0.1:8081`` went to Label Studio on
      ``127.0.0.1:8080`` with the API key, and Label Studio's session cookie to the allowed host.
    - ``trust_env = False``: requests then reads no ``~/.netrc`` (or ``$NETRC``), whose entry for a host replaced
      the ``Authorization`` header sent to Label Studio and sent its password to allowed hosts. ``trust_env``
      also turns off what requests takes from the environment for each request
      (``Session.merge_environment_settings``, https://requests.readthedocs.io/en/latest/user/advanced/#proxies):
      a backend behind a proxy needs those, so they are kept explicitly: ``HTTP_PROXY``, ``HTTPS_PROXY``,
      ``ALL_PROXY`` and ``NO_PROXY`` through ``requests.utils.get_environ_proxies`` for each URL, and
      ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (read once, here) as :attr:`verify`.
    """

    def __init__(self):
        super().__init__()
        self.trust_env = False
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.headers["User-Agent"] = "labelhub-backend"

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        """``requests.Session.request`` with the environment's proxies for ``url`` unless ``proxies`` is given."""
        if kwargs.get("proxies") is None:
            kwargs["proxies"] = requests.utils.get_environ_proxies(url)
        return super().request(method, url, **kwargs)


class _LabelStudioAuth:
    """The ``Authorization`` header for Label Studio, refreshing a personal access token's access token.

    The access token is kept in a one-entry ``cachetools.TTLCache`` for :attr:`ACCESS_TTL` seconds.
    """

    ACCESS_TTL = 240.0  # Label Studio's access tokens live 5 minutes; renew a minute early.

    def __init__(self, url: str, api_key: str, session: requests.Session, timeout: float):
        self.url, self.api_key, self.session, self.timeout = url, api_key, session, timeout
        self._access: TTLCache[str, str] = TTLCache(maxsize=1, ttl=self.ACCESS_TTL)
        self._lock = threading.Lock()

    @property
    def is_personal_token(self) -> bool:
        return self.api_key.count(".") == 2 and self.api_key.startswith("eyJ")

    def header(self, force_refresh: bool = False) -> dict:
        if not self.api_key:
            return {}
        if not self.is_personal_token:
            return {"Authorization": f"Token {self.api_key}"}
        with self._lock:
            access = None if force_refresh else self._access.get("access")
            if access is None:
                try:
                    answer = self.session.post(self.url + "/api/token/refresh/", json={"refresh": self.api_key},
                                               timeout=self.timeout, allow_redirects=False)
                    answer.raise_for_status()
                    access = answer.json()["access"]
                except (requests.RequestException, ValueError, KeyError) as exc:
                    status = getattr(getattr(exc, "response", None), "status_code", None)
                    raise MediaFetchError(
                        f"Label Studio refused the personal access token in LABEL_STUDIO_API_KEY "
                        f"(POST /api/token/refresh/: {status or type(exc).__name__})") from None
                self._access["access"] = access
            return {"Authorization": f"Bearer {access}"}


class MediaFetcher:
    """Fetch task media from the Hub, Label Studio, ``data:`` URIs and allowlisted hosts.

    One fetcher per worker; it keeps a bounded in-memory cache of fetched bytes (Hub files are also
    cached on disk by ``huggingface_hub``).

    Args:
        settings: The backend settings (``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY``, ``HF_TOKEN``,
            ``LABELHUB_ALLOWED_HOSTS``, ``LABELHUB_FILE_REPOS``, ``LABELHUB_SECRET``, timeouts and size limits).

    Attributes:
        repo_files: The repos of ``LABELHUB_FILE_REPOS`` (:class:`labelhub.backend.files.RepoFiles`), shared with
            the file route.

    Raises:
        ValueError: When ``LABELHUB_FILE_REPOS`` or ``LABELHUB_SECRET`` is invalid.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.session = MediaSession()
        self.ls_url = settings.label_studio_url.rstrip("/")
        self._ls_auth = _LabelStudioAuth(self.ls_url, settings.label_studio_api_key, self.session,
                                         settings.media_timeout)
        # bounded by total size; one file may take at most a quarter of it
        self.cache: LRUCache[str, bytes] = LRUCache(maxsize=settings.media_cache_bytes, getsizeof=len)
        self._cache_lock = threading.Lock()
        self.repo_files = RepoFiles(settings)
        self.hits = 0
        self.misses = 0

    def _hub_endpoint(self) -> str:
        from huggingface_hub import constants

        return constants.ENDPOINT

    def classify(self, url: str) -> str:
        """Which source ``url`` comes from.

        Args:
            url: A task's value.

        Returns:
            ``"data"``, ``"repo_file"`` (a signed URL of the file route, read locally), ``"hub"``,
            ``"label_studio"`` or ``"allowed"``.

        Raises:
            MediaNotAllowedError: For any other URL (including relative paths when ``LABEL_STUDIO_URL``
                is not set, local file paths, and file route URLs of a repo not in ``LABELHUB_FILE_REPOS`` or
                signed with another ``LABELHUB_SECRET``: the message names both; when the URL's repo key is in
                ``LABELHUB_FILE_REPOS`` and this ``LABELHUB_SECRET`` is set but does not verify its signature, it says
                :data:`labelhub.backend.files.ANOTHER_SECRET` instead (the sync and the backend started with different
                secrets); when ``LABELHUB_FILE_REPOS`` is set and the URL is signed with this ``LABELHUB_SECRET`` but
                its repo key is missing, that key and ``add <key>=<its path> to LABELHUB_FILE_REPOS``: the tasks of a
                renamed or moved repo keep its old key, :func:`labelhub.backend.files.unknown_key_reason`).
        """
        if not isinstance(url, str) or not url:
            raise MediaNotAllowedError("the task's value is not a URL")
        if url.startswith("data:"):
            return "data"
        if self.repo_files.owns(url) is not None:
            return "repo_file"
        ref = parse_file_url(url)
        if ref is not None and self.repo_files.repos and ref.key not in self.repo_files.repos \
                and self._signed_here(ref):  # both set, the signature good: the repo's key changed (renamed, moved)
            raise MediaNotAllowedError(f"{safe_url(url)} is a signed URL of LabelHub's file route, but its "
                                       + unknown_key_reason(ref.key, self.repo_files.repos))
        if ref is not None and ref.key in self.repo_files.repos and self.settings.secret and ref.sig \
                and not self._signed_here(ref):  # the repo is read here, the signature is not this secret's
            raise MediaNotAllowedError(
                f"{safe_url(url)} is a signed URL of LabelHub's file route of repo '{escaped(ref.key, 100)}' (in "
                f"LABELHUB_FILE_REPOS), but {ANOTHER_SECRET}")
        if ref is not None:  # the file route's URL, but not one of a repo read here
            raise MediaNotAllowedError(
                f"{safe_url(url)} is a signed URL of LabelHub's file route: to read it from its repo, set "
                "LABELHUB_FILE_REPOS (the repo) and LABELHUB_SECRET (the one the sync signed it with) here, as for "
                "the backend")
        if url.startswith("hf://") or parse_hub_url(url, self._hub_endpoint()) is not None:
            return "hub"
        if url.startswith(_LS_PREFIXES) or self._under_ls_path(url):
            if not self.ls_url:
                raise MediaNotAllowedError(
                    f"{safe_url(url)} is a Label Studio URL, but LABEL_STUDIO_URL is not set")
            return "label_studio"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise MediaNotAllowedError("the task's value is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MediaNotAllowedError(f"{safe_url(url)}: only http(s), hf:// and data: URLs are fetched")
        host = parts.hostname.lower()
        if self.ls_url:
            ls = urlsplit(self.ls_url)
            if (parts.scheme, parts.netloc) == (ls.scheme, ls.netloc) or _same_loopback_server(parts, ls):
                return "label_studio"
        if host in self.settings.allowed_hosts or (port and f"{host}:{port}" in self.settings.allowed_hosts):
            return "allowed"
        if self.ls_url and parts.path.startswith(_LS_PREFIXES[:3]):
            raise MediaNotAllowedError(
                f"{safe_url(url)} looks like a Label Studio media URL, but LABEL_STUDIO_URL names another host "
                f"({safe_url(self.ls_url)}): set LABEL_STUDIO_URL to the address the tasks' URLs use (Label Studio's "
                "media need its API key, which only a Label Studio URL gets)")
        raise MediaNotAllowedError(
            f"host {host!r} is not allowed: add it to LABELHUB_ALLOWED_HOSTS to fetch {safe_url(url)}")

    def _under_ls_path(self, url: str) -> bool:
        """Whether ``url`` is a path of Label Studio's media under the path ``LABEL_STUDIO_URL`` has (a Label Studio
        served under a subpath, ``LABEL_STUDIO_HOST=http://h:8080/ls``, stores an upload's URL as
        ``/ls/data/upload/1/a.jpg``: ``FileUpload.url`` in ``label_studio/data_import/models.py`` adds its
        ``FORCE_SCRIPT_NAME``; before, such a path was refused, found by an audit)."""
        prefix = urlsplit(self.ls_url).path.rstrip("/") if self.ls_url else ""
        return bool(prefix) and url.startswith(prefix + "/") and url[len(prefix):].startswith(_LS_PREFIXES)

    def _ls_absolute(self, path: str) -> str:
        """The URL of a Label Studio path: on its server when the path holds ``LABEL_STUDIO_URL``'s own path
        (:meth:`_under_ls_path`), else under ``LABEL_STUDIO_URL``."""
        if self._under_ls_path(path):
            parts = urlsplit(self.ls_url)
            return f"{parts.scheme}://{parts.netloc}{path}"
        return self.ls_url + path

    def _signed_here(self, ref) -> bool:
        """Whether a file URL's parts (:func:`labelhub.signing.parse_file_url`) carry a signature made with this
        ``LABELHUB_SECRET`` (expired or not); ``False`` without a secret."""
        try:
            verify(self.settings.secret, ref.key, ref.sha, ref.path, ref.expires, ref.sig, check_expiry=False)
        except SignatureError:
            return False
        return True

    def fetch(self, url: str) -> bytes:
        """Return the bytes ``url`` points to.

        Args:
            url: A task's value (see the module docstring for what is accepted).

        Returns:
            The file's content.

        Limits: a file over ``LABELHUB_MEDIA_MAX_BYTES`` is refused: a Hub file (also one of a signed file URL)
        from the size the Hub's ``HEAD`` declares, before it is downloaded (:func:`labelhub.repos.hub.download`);
        other downloads once that many bytes came. ``LABELHUB_MEDIA_TIMEOUT`` seconds bound the whole download from
        Label Studio or an allowed host, from sending the request to the body's last byte (:meth:`_read_body`; the
        connection has 3 s more, and the status line and headers are read with ``LABELHUB_MEDIA_TIMEOUT`` per read:
        a server sending those a byte at a time is stopped only when its body begins); a Hub download is bounded
        by huggingface_hub's limits only (its ``HEAD`` waits ``LABELHUB_MEDIA_TIMEOUT`` s, each read of the ``GET``
        ``HF_HUB_DOWNLOAD_TIMEOUT`` s; see :func:`labelhub.repos.hub.download`).

        Raises:
            MediaNotAllowedError: When the URL is not from a trusted source.
            MediaFetchError: When the download fails (HTTP error, timeout, redirect, too large, over
                ``LABELHUB_MEDIA_TIMEOUT``).
        """
        kind = self.classify(url)
        if kind == "data":
            return self._decode_data_uri(url)
        with self._cache_lock:
            cached = self.cache.get(url)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        if kind == "repo_file":
            data = self._read_repo_file(url)
        elif kind == "hub":
            data = self._fetch_hub(url)
        elif kind == "label_studio":
            full = url if "://" in url else self._ls_absolute(url)
            data = self._get(full, label_studio=True)
        else:
            data = self._get(url, label_studio=False)
        self._keep(url, data)
        return data

    def _keep(self, url: str, data: bytes) -> None:
        """Cache ``data`` unless it is over a quarter of ``LABELHUB_MEDIA_CACHE_BYTES`` (or over all of it:
        cachetools raises ``ValueError`` for a value larger than the cache) or ``url`` is cached already."""
        if len(data) > self.cache.maxsize // 4:
            return
        with self._cache_lock:
            if url not in self.cache:
                try:
                    self.cache[url] = data
                except ValueError:
                    pass

    def fetch_text(self, url: str) -> str:
        """Like :meth:`fetch`, decoded as Label Studio's editor decodes a ``<Text valueType="url">`` (the browser's
        ``Response.text()``: UTF-8, a byte order mark dropped, each undecodable sequence U+FFFD;
        :func:`labelhub.repos.texts.decode_text`), so predicted span offsets index the text the annotator sees
        (a file starting with a BOM, as Notepad writes, had every span one character late: found by an audit)."""
        return decode_text(self.fetch(url))[0]

    # ------------------------------------------------------------------------------------------------
    def _decode_data_uri(self, url: str) -> bytes:
        header, _, payload = url.partition(",")
        try:
            if header.endswith(";base64"):
                data = base64.b64decode(payload, validate=False)
            else:
                data = unquote(payload).encode()
        except (binascii.Error, ValueError):
            raise MediaFetchError("the data: URI does not decode") from None
        if len(data) > self.settings.media_max_bytes:
            raise self._too_large("the data: URI")
        return data

    def _too_large(self, what: str) -> MediaFetchError:
        """The error for media over ``LABELHUB_MEDIA_MAX_BYTES``; ``what`` names it (a :func:`safe_url`)."""
        return MediaFetchError(f"{what} is larger than LABELHUB_MEDIA_MAX_BYTES "
                               f"({self.settings.media_max_bytes} bytes)")

    def _read_repo_file(self, url: str) -> bytes:
        try:
            data = self.repo_files.read(self.repo_files.owns(url))
        except FileTooLarge:
            raise self._too_large(safe_url(url)) from None
        except BackendError as exc:
            raise MediaFetchError(f"could not read {safe_url(url)} from its repo "
                                  f"({getattr(exc, 'reason', exc.message)})") from None
        if len(data) > self.settings.media_max_bytes:
            raise self._too_large(safe_url(url))
        return data

    def _fetch_hub(self, url: str) -> bytes:
        """A Hub file's bytes through huggingface_hub's cache; over ``LABELHUB_MEDIA_MAX_BYTES`` it is refused
        before it is downloaded (:func:`labelhub.repos.hub.download` with ``max_bytes``: one more ``HEAD`` for a
        file not in the cache yet). Bounded in time by huggingface_hub's per-read timeouts only.

        Raises:
            MediaFetchError: Over ``LABELHUB_MEDIA_MAX_BYTES``, or the download failed: when ``HF_TOKEN`` cannot read
                the repo or the Hub refused it, the message says so and the cause is said once per repo and cause at
                WARNING (:meth:`labelhub.backend.files.RepoFiles.hub_refusal`), not "HTTP 401" for each file.
        """
        ref = parse_hub_url(url, self._hub_endpoint())
        if ref is None:
            raise MediaFetchError(f"{safe_url(url)} is not a Hub file URL")
        try:
            path = download(ref.repo_id, ref.path_in_repo, ref.revision, token=self.settings.hf_token or None,
                            etag_timeout=self.settings.media_timeout, repo_type=ref.repo_type,
                            max_bytes=self.settings.media_max_bytes)
            with open(path, "rb") as fh:
                data = fh.read(self.settings.media_max_bytes + 1)
        except FileTooLarge:
            raise self._too_large(safe_url(url)) from None
        except Exception as exc:  # labelhub.errors.HubError (with .status), NotFoundError, OSError, ...
            status = getattr(exc, "status", None)
            why = self.repo_files.hub_refusal(exc, ref.repo_id, ref.repo_type) or \
                (f"HTTP {status}" if status else type(exc).__name__)
            raise MediaFetchError(redact(f"could not download {safe_url(url)} from the Hub ({why})",
                                         self.settings.secrets)) from None
        if len(data) > self.settings.media_max_bytes:
            raise self._too_large(safe_url(url))
        return data

    def _get(self, url: str, label_studio: bool) -> bytes:
        """GET ``url`` from Label Studio (with its ``Authorization``) or an allowed host (with nothing), within
        ``LABELHUB_MEDIA_TIMEOUT`` seconds from now in all (both tries of a refreshed access token included)."""
        deadline = time.monotonic() + self.settings.media_timeout
        for attempt in (0, 1):
            headers = self._ls_auth.header(force_refresh=attempt == 1) if label_studio else {}
            try:
                with self.session.get(url, headers=headers, timeout=(3.0, self.settings.media_timeout),
                                      allow_redirects=False, stream=True) as answer:
                    if label_studio and answer.status_code == 401 and attempt == 0 and self._ls_auth.is_personal_token:
                        continue
                    if 300 <= answer.status_code < 400:
                        raise MediaFetchError(f"{safe_url(url)} redirects (HTTP {answer.status_code}); "
                                              "redirects are not followed")
                    if answer.status_code != 200:
                        raise MediaFetchError(f"could not fetch {safe_url(url)} (HTTP {answer.status_code})")
                    return self._read_body(answer, url, deadline)
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                if time.monotonic() >= deadline:
                    raise self._too_slow(url) from None
                raise MediaFetchError(f"could not fetch {safe_url(url)} ({type(exc).__name__})") from None
        raise MediaFetchError(f"could not fetch {safe_url(url)} (HTTP 401: check LABEL_STUDIO_API_KEY)")

    def _read_body(self, answer: requests.Response, url: str, deadline: float) -> bytes:
        """The body of a streamed answer, decoded (``Content-Encoding``), by the end of ``deadline``
        (``time.monotonic()`` seconds).

        Each read is urllib3's ``HTTPResponse.read1`` (it returns as soon as any bytes came, where
        ``iter_content`` waits for a whole chunk), after the socket's timeout was cut to the time left, so a
        server sending a byte now and then is stopped at the deadline, not one read timeout after it.

        Raises:
            MediaFetchError: Past the deadline, or over ``LABELHUB_MEDIA_MAX_BYTES``.
            urllib3.exceptions.HTTPError: A read timed out or the connection broke (the caller tells which).
        """
        sock = getattr(answer.raw.connection, "sock", None)
        chunks, size = [], 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._too_slow(url)
            if sock is not None:
                sock.settimeout(left)  # urllib3 sets it again for the connection's next request
            chunk = answer.raw.read1(64 * 1024, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.settings.media_max_bytes:
                raise self._too_large(safe_url(url))
            chunks.append(chunk)

    def _too_slow(self, url: str) -> MediaFetchError:
        """The error for a download still going after ``LABELHUB_MEDIA_TIMEOUT``."""
        return MediaFetchError(f"{safe_url(url)} took longer than LABELHUB_MEDIA_TIMEOUT "
                               f"({self.settings.media_timeout:g} s)")
