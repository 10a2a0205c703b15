"""A dataset repo on the Hugging Face Hub, through the ``huggingface_hub`` client.

Every error the client raises is converted into :mod:`labelhub.errors` here (:func:`hub_errors`).
Calls used (https://huggingface.co/docs/huggingface_hub/package_reference/hf_api):
``list_repo_refs`` (one call: the poll's head and tags), ``repo_info`` (one call: resolves a revision and
tells the repo's visibility), ``list_repo_tree(recursive=True)`` (paged, 1,000 entries a page),
``hf_hub_download`` (the shared cache) and ``hf_hub_url`` (no call); for the export ``create_commit``
(``validate-yaml`` when ``README.md`` is committed, ``preupload`` unless every file's upload mode is already
known, see :meth:`HubRepo.commit`, and ``commit``), ``create_tag`` and, only after a lost answer or a conflict,
``list_repo_commits`` and ``list_repo_refs``.

huggingface_hub's shared HTTP client is set here (:func:`hub_client`, at import): the same as its default, but once
the daemon is stopping (:func:`labelhub.retry.request_shutdown`) its own retries end (:class:`_OneAttemptWhenStopping`,
:func:`cut_backoff_wait`), and so do they at once when a 429 or 5xx asks to wait longer than LabelHub waits
(:data:`labelhub.retry.MAX_RETRY_AFTER`).
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote

import httpx2
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    set_client_factory,
    try_to_load_from_cache,
)
from huggingface_hub.utils import hf_raise_for_status
from huggingface_hub.errors import (
    EntryNotFoundError,
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile as HubRepoFile

from labelhub.cli_options import progress_bar
from labelhub.redaction import one_line, urls_without_userinfo, without_userinfo
from labelhub.errors import (
    AmbiguousCommit,
    CommitConflict,
    EntryNotFound,
    FileTooLarge,
    HubError,
    HubUnreachable,
    PrivateRepoRefused,
    RepoNotFound,
    RevisionNotFound,
    TagExists,
    TransientHubError,
)
from labelhub.file_urls import FileURLs
from labelhub.repos.base import RepoFile, resolving_the_rest
from labelhub import retry as labelhub_retry
from labelhub.retry import shutdown_requested
from labelhub.signing import repo_key

REPO_TYPE = "dataset"
#: Paths per ``get_paths_info`` call of :meth:`HubRepo.blob_ids` (the size of a tree listing's page: a request body of
#: some tens of kB).
PATHS_PER_CALL = 1000
#: A file this large or larger is stored with LFS whatever its name or content, so its upload mode is
#: always asked of the Hub (https://huggingface.co/docs/hub/storage-limits: "files larger than 10 MB").
REGULAR_SIZE_LIMIT = 10 * 1024 * 1024
#: git's own test for binary content: a NUL byte among the first 8,000 (``buffer_is_binary`` in git's
#: xdiff-interface.c). The Hub also stores binary files with LFS, so their mode is always asked too.
BINARY_PROBE = 8000
#: A full commit sha, the revision a cached file is found by with no call (huggingface_hub's ``REGEX_COMMIT_HASH``).
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
#: Seconds a commit request may wait for the Hub's answer before a log line says so (then again every as many).
COMMIT_PATIENCE = 30.0
#: What a 403's message says when the Hub refused a write for its storage, not for the token's access
#: (:meth:`HubRepo._write_refused`).
STORAGE_REFUSAL = re.compile(r"(?i)\b(storage|limits?|quotas?)\b")
log = logging.getLogger(__name__)


@contextmanager
def said_when_slow(what: str):
    """Log a warning every :data:`COMMIT_PATIENCE` seconds while the block runs (a request the Hub holds long).

    huggingface_hub 2.x gives ``create_commit`` no timeout (no parameter; its HTTP client's read timeout is not set
    for it), and a commit of a large version may rightly take minutes to upload: the wait is not cut, it is said
    (``<what> has waited 30 s for the Hub's answer; still waiting``). A daemon's SIGTERM is honoured once it
    returns (:mod:`labelhub.sync.daemon`).

    Args:
        what: What is waited for, in the log line.
    """
    done, start = threading.Event(), time.monotonic()

    def watch() -> None:
        while not done.wait(COMMIT_PATIENCE):
            log.warning("%s has waited %.0f s for the Hub's answer; still waiting (no timeout: a large upload may take "
                        "minutes)", what, time.monotonic() - start)

    threading.Thread(target=watch, name="labelhub-commit-wait", daemon=True).start()
    try:
        yield
    finally:
        done.set()


class HubCallStopped(httpx2.TransportError):
    """A Hub request that got no answer once the daemon is stopping (:func:`labelhub.retry.request_shutdown`), or a
    wait between two of huggingface_hub's own attempts cut by the signal (:func:`cut_backoff_wait`): not one of the
    failures ``http_backoff`` retries, and :func:`hub_errors` makes it a :class:`~labelhub.errors.HubUnreachable`."""


#: The statuses huggingface_hub's ``http_backoff`` answers with another attempt (``_DEFAULT_RETRY_ON_STATUS_CODES``).
BACKOFF_STATUSES = (408, 429, 500, 502, 503, 504)


class _OneAttemptWhenStopping(httpx2.Client):
    """huggingface_hub's shared HTTP client (:func:`hub_client`), whose failures are final once the daemon is stopping.

    huggingface_hub 2.x retries a call made through ``http_backoff`` (``list_repo_commits`` and ``list_repo_tree``
    through ``paginate``, ``preupload``, the LFS uploads; ``utils/_http.py``) 5 times, 1, 2, 4, 8 and 8 s apart
    (``Retry-After`` + 1 s after a 429 or 5xx that carries one), and no parameter of the ``HfApi`` methods nor any
    setting bounds it. After :func:`labelhub.retry.request_shutdown`, a request that gets no answer raises
    :class:`HubCallStopped` and one answered with a status ``http_backoff`` retries (:data:`BACKOFF_STATUSES`) raises
    huggingface_hub's own ``HfHubHTTPError`` at once: neither is retried, so the shutdown's flush makes one attempt
    per call and a retry loop under way ends at its next attempt. Before it, nothing differs from huggingface_hub's
    default client (the same event hooks, redirects and timeouts), but for one answer: a status of
    :data:`BACKOFF_STATUSES` whose asked wait (:func:`_wait_asked`: ``RateLimit``, ``Retry-After``) is over
    :data:`labelhub.retry.MAX_RETRY_AFTER` raises huggingface_hub's ``HfHubHTTPError`` at once too
    (:func:`_asks_too_long`). Decided: give up, not wait: ``http_backoff`` sleeps ``Retry-After`` + 1 s up to 5 times
    (three answers of ``Retry-After: 45`` held the daemon's one loop 140 s, imports and reconciliation included), so
    the call fails as a 429 that huggingface_hub does not retry would, and LabelHub's own handling applies (its
    :class:`~labelhub.errors.TransientHubError` carries the wait, and :func:`labelhub.retry.hub_retrying` gives the
    attempt up; the step is retried at its next turn).
    """

    def send(self, request: httpx2.Request, **kwargs) -> httpx2.Response:
        """Send ``request`` as ``httpx2.Client`` does.

        Raises:
            HubCallStopped: No answer once the daemon is stopping.
            huggingface_hub.errors.HfHubHTTPError: A status of :data:`BACKOFF_STATUSES` once the daemon is stopping,
                or one asking to wait longer than :data:`labelhub.retry.MAX_RETRY_AFTER` (see the class).
        """
        try:
            response = super().send(request, **kwargs)
        except (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError) as exc:
            if shutdown_requested():
                raise HubCallStopped(f"{type(exc).__name__}: {exc} (not retried: stopping)", request=request) \
                    from exc
            raise
        if response.status_code in BACKOFF_STATUSES and (shutdown_requested() or _asks_too_long(response)):
            response.read()
            hf_raise_for_status(response)
        return response


def _asks_too_long(response: httpx2.Response) -> bool:
    """Whether ``response`` asks to wait longer than :data:`labelhub.retry.MAX_RETRY_AFTER` (read at each call) before
    the next attempt (:func:`_wait_asked`)."""
    wait = _wait_asked(response.headers)
    return wait is not None and wait > labelhub_retry.MAX_RETRY_AFTER


def hub_client() -> httpx2.Client:
    """The ``httpx2.Client`` huggingface_hub shares between its calls, installed at import with its documented
    ``set_client_factory``
    (https://huggingface.co/docs/huggingface_hub/package_reference/utilities#configure-http-backend):
    its default client's settings (``default_client_factory``: event hooks, ``follow_redirects``, ``timeout=None``)
    in a :class:`_OneAttemptWhenStopping`. ``default_client_factory`` is not exported by huggingface_hub 2.x: should a
    release drop it, the client is made with the settings it has in 2.4 but its event hook (a request id header)."""
    try:
        from huggingface_hub.utils._http import default_client_factory
    except ImportError:  # pragma: no cover - a huggingface_hub release without it
        return _OneAttemptWhenStopping(follow_redirects=True, timeout=None)
    default = default_client_factory()
    try:
        return _OneAttemptWhenStopping(event_hooks=default.event_hooks, follow_redirects=default.follow_redirects,
                                       timeout=default.timeout)
    finally:
        default.close()


set_client_factory(hub_client)


def cut_backoff_wait(frame) -> None:
    """End a wait between two of huggingface_hub's own attempts now: the daemon's SIGTERM/SIGINT handler calls it
    with the frame the signal interrupted (:func:`signal.signal`).

    ``http_backoff`` sleeps with ``time.sleep`` (up to 8 s, or a 429's or 5xx's ``Retry-After`` + 1 s) in its
    generator ``_http_backoff_base`` (huggingface_hub 2.x, ``utils/_http.py``), which no setting shortens. When the
    signal interrupted that frame (the sleep, or the loop between two attempts: no request is under way there and
    nothing is half written), this raises :class:`HubCallStopped` from the handler, which Python raises where the
    frame is (a sleep interrupted by a signal whose handler raises ends at once, PEP 475); the call fails as a Hub
    that did not answer does. Anywhere else (a request under way, LabelHub's own code) it does nothing: the request
    ends as it would, and :class:`_OneAttemptWhenStopping` retries it no more.

    Args:
        frame: The frame the signal handler was given (``None``: nothing to cut).

    Raises:
        HubCallStopped: ``frame`` is huggingface_hub's retry loop.
    """
    if frame is not None and frame.f_code.co_name == "_http_backoff_base" \
            and frame.f_globals.get("__name__") == "huggingface_hub.utils._http":
        raise HubCallStopped("the wait between two attempts of a Hub request was cut: stopping")


@contextmanager
def hub_errors(endpoint: str, repo_id: str = "", revision: str = "", path: str = ""):
    """Convert every error the ``huggingface_hub`` client raises inside the block into LabelHub's tree.

    Args:
        endpoint: The Hub URL (in messages without its ``user:password@``: ``HF_ENDPOINT`` may carry one, and the
            errors of httpx and huggingface_hub that the messages quote lose theirs too,
            :func:`labelhub.redaction.urls_without_userinfo`).
        repo_id, revision, path: What the block reads (in messages; never a token).

    Raises:
        RepoNotFound: The repo does not exist, is gated, or the token cannot read it.
        RevisionNotFound: The revision does not exist.
        EntryNotFound: The file does not exist at that revision (also a ``FileNotFoundError``): the Hub said so
            (``RemoteEntryNotFoundError``).
        TransientHubError: 429 or 5xx (with ``Retry-After`` when the Hub sent one).
        HubUnreachable: No answer (refused, timeout, dropped, a name that does not resolve, ``HF_HUB_OFFLINE``;
            through a proxy, the message names it: :func:`_proxy_named`), or
            a request httpx refuses to send (``LocalProtocolError``, an illegal header value: its message, which
            quotes the header and so the token, is not shown),
            also when ``hf_hub_download`` says so with its ``LocalEntryNotFoundError``: that one subclasses
            ``EntryNotFoundError`` but means "the Hub could not be asked and the file is not in the cache", not
            "no such file" (huggingface_hub 2.x, ``file_download._raise_on_head_call_error``).
        HubError: Any other HTTP error, or an answer that is not a Hub's (no ``X-Repo-Commit`` or ``ETag``:
            ``HF_ENDPOINT`` is not a Hub; or a page that is no JSON where the Hub answers JSON, a ``JSONDecodeError``
            of huggingface_hub's: a proxy's sign-in page, a captive portal or a mirror at a wrong path answering 200,
            said naming the endpoint and the repo, no traceback).
    """
    endpoint = without_userinfo(endpoint)
    try:
        yield
    except LocalEntryNotFoundError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, HfHubHTTPError):
            raise _http_error(cause, endpoint) from None
        if isinstance(cause, FileMetadataError):
            raise HubError(f"the Hub at {endpoint} answered without a file's metadata "
                           f"({urls_without_userinfo(str(cause))}): is HF_ENDPOINT a "
                           "Hub?") from None
        why = f"{type(cause).__name__}: {urls_without_userinfo(str(cause))}" if cause is not None else "no answer"
        if isinstance(cause, httpx2.LocalProtocolError):  # its message quotes the header, the token
            why = f"{type(cause).__name__}: a header or the URL is not valid HTTP"
        raise HubUnreachable(f"cannot reach the Hub at {endpoint}{_proxy_named(endpoint)} ({why}), and {path} of "
                             f"{repo_id} at {revision} is not in the local cache") from None
    except httpx2.LocalProtocolError as exc:  # refused by httpx before sending: the Hub was not asked
        raise HubUnreachable(f"cannot send a request to the Hub at {endpoint}: a header or the URL is not valid HTTP "
                             f"({type(exc).__name__}; check HF_TOKEN (--hf-token) and HF_ENDPOINT for a space or a "
                             "line break)") from None
    except (httpx2.TransportError, OfflineModeIsEnabled) as exc:
        raise HubUnreachable(f"cannot reach the Hub at {endpoint}{_proxy_named(endpoint)}: {type(exc).__name__}: "
                             f"{urls_without_userinfo(str(exc))}") from None
    except json.JSONDecodeError:
        what = f" to a request about dataset {repo_id}" if repo_id else ""
        raise HubError(f"the Hub at {endpoint} answered a page that is not JSON{what}: is HF_ENDPOINT a Hub, or is a "
                       "proxy (a sign-in page, a captive portal) answering in its place?") from None
    except FileMetadataError as exc:
        raise HubError(f"the Hub at {endpoint} answered without a file's metadata ({urls_without_userinfo(str(exc))}): "
                       "is HF_ENDPOINT a Hub?") \
            from None
    except RevisionNotFoundError:
        raise RevisionNotFound(f"revision {revision!r} not found in dataset {repo_id}") from None
    except EntryNotFoundError:
        raise EntryNotFound(f"{path} not found in dataset {repo_id} at {revision}") from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise RepoNotFound(f"dataset {repo_id} not found at {endpoint} (or HF_TOKEN cannot read it)") from None
    except HfHubHTTPError as exc:
        raise _http_error(exc, endpoint) from None


def _proxy_named(endpoint: str) -> str:
    """`` through the proxy http://proxy:3128 (HTTPS_PROXY)`` when the environment sends requests to ``endpoint``
    through a proxy, else ``""``: a :class:`~labelhub.errors.HubUnreachable`'s message names it, without its
    ``user:password@`` (a proxy on a closed port said only that the Hub could not be reached).

    The proxy is found as httpx (``trust_env``) and urllib find it: ``<scheme>_proxy`` of the endpoint's scheme, else
    ``all_proxy``, lower case first, unless ``no_proxy`` covers the endpoint's host
    (:func:`urllib.request.getproxies_environment`, :func:`urllib.request.proxy_bypass_environment`).
    """
    from urllib.parse import urlsplit
    from urllib.request import getproxies_environment, proxy_bypass_environment

    try:
        parts = urlsplit(endpoint)
        proxies = getproxies_environment()
        if not parts.hostname or proxy_bypass_environment(parts.hostname, proxies):
            return ""
    except ValueError:
        return ""
    for name in (parts.scheme, "all"):
        if proxies.get(name):
            variable = next((v for v in (f"{name}_proxy", f"{name.upper()}_PROXY") if os.environ.get(v)),
                            f"{name.upper()}_PROXY")
            return f" through the proxy {without_userinfo(proxies[name])} ({variable})"
    return ""


def _http_error(exc: HfHubHTTPError, endpoint: str) -> HubError:
    """A :class:`~labelhub.errors.TransientHubError` for 429 and 5xx, else a :class:`~labelhub.errors.HubError`;
    never the token itself.

    A 401 (a private repo read without a token is :class:`~labelhub.errors.RepoNotFound` before this) says HF_TOKEN
    was refused when the request carried a token, and that HF_TOKEN is not set when it carried none (a write, or a
    Hub that wants a token for every call). Whether a token was sent is read from the request itself (its
    ``Authorization`` header, :func:`_sent_auth`), not from a setting: huggingface_hub sends the token it was given,
    else the one it finds (``HF_TOKEN``, ``hf auth login``'s), and an empty ``HF_TOKEN`` (the compose
    ``.env.example`` leaves it so) is none. An ``HF_ENDPOINT`` with a ``user:password@`` (for a proxy) is another
    case: huggingface_hub's HTTP client (``httpx2``, as ``httpx``) sends a URL's user and password as Basic
    authentication in place of any ``Authorization`` header (``Client._build_request_auth``), so no token reaches
    the Hub; a 401 then names that user and password (never their values), not HF_TOKEN. The message is one line
    (:func:`labelhub.redaction.one_line`: huggingface_hub's own adds ``For more information check: ...`` on a second).
    """
    status = exc.response.status_code if exc.response is not None else None
    endpoint = without_userinfo(endpoint)
    message = f"the Hub at {endpoint} answered {status}: {urls_without_userinfo(one_line(exc.server_message or exc))}"
    sent = _sent_auth(exc) if status == 401 else None
    if sent == "basic":
        message = (f"the Hub at {endpoint} answered 401 ({exc.server_message or 'unauthorized'}) to the user and "
                   "password in HF_ENDPOINT: huggingface_hub sends a URL's user:password as Basic authentication in "
                   "place of HF_TOKEN, so no token reached the Hub; remove the user:password from HF_ENDPOINT, or "
                   "correct it if a proxy in front of the Hub asks for it")
    elif sent == "token":
        message = (f"the Hub at {endpoint} refused HF_TOKEN (401: {exc.server_message or 'unauthorized'}): it is "
                   "invalid, expired or revoked; set a valid one (https://huggingface.co/settings/tokens)")
    elif sent == "none":
        message = (f"the Hub at {endpoint} answered 401 ({exc.server_message or 'unauthorized'}) to a request "
                   "without a token: HF_TOKEN is not set, and this repo or operation needs one (read access for a "
                   "private repo, write access to export versions); set HF_TOKEN (--hf-token) to a token "
                   "(https://huggingface.co/settings/tokens)")
    if status == 429 or (status or 0) >= 500:
        return TransientHubError(message, status, _wait_asked(exc.response.headers))
    return HubError(message, status)


def _card_refused(exc: ValueError, endpoint: str, card: bool = True) -> Exception:
    """What ``create_commit``'s check of ``README.md`` (``/api/validate-yaml``, run whenever the card is committed)
    raised, as LabelHub's errors: its 400 (the Hub's rules refused the card's metadata: ``ValueError("Invalid metadata
    in README.md ...")`` from a ``BadRequestError``) a :class:`HubError` naming the card, an answer that was no JSON (a
    gateway's HTML 5xx page: ``JSONDecodeError``) a :class:`TransientHubError`, retried as other 5xx; any other
    ``ValueError`` as it is. Both escaped the export's error handling before, logged as a bare ``JSONDecodeError``.
    ``card``: whether the commit holds ``README.md``; without it there is no such check, and the error is returned as
    it is (:func:`hub_errors` says a page that is not JSON in its own words)."""
    import json as json_module

    from huggingface_hub.errors import BadRequestError

    if not card:
        return exc
    if isinstance(exc, json_module.JSONDecodeError):
        return TransientHubError(f"the Hub at {endpoint} answered the check of README.md with no JSON (a gateway's "
                                 "error page?)", 502)
    if isinstance(exc.__cause__, BadRequestError):
        return HubError(f"the Hub at {endpoint} refused the metadata of README.md (the dataset card): "
                        f"{one_line(str(exc), 300)}; fix or remove the YAML block a person added to it", 400)
    return exc


def _wait_asked(headers) -> float | None:
    """The seconds a 429 or 5xx asks to wait: the Hub's rate-limit header (``RateLimit: "api";r=0;t=55``, read by
    huggingface_hub's ``parse_ratelimit_headers``; https://huggingface.co/docs/hub/rate-limits) when no request is
    left in the window, else ``Retry-After`` in seconds or as an HTTP date (RFC 9110, 10.2.3), else ``None``. A
    ``Retry-After`` date raised ``ValueError`` from inside the error handler, and the ``RateLimit`` header the Hub
    sends was not read: the calls without a retry of their own retried every 2 to 16 s inside the window."""
    from datetime import datetime, timezone
    from email.utils import parsedate_to_datetime

    from huggingface_hub.utils import parse_ratelimit_headers

    limit = parse_ratelimit_headers(headers)
    if limit is not None and limit.remaining == 0:
        return float(limit.reset_in_seconds)
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(when.tzinfo or timezone.utc)).total_seconds(), 0.0)


def _sent_auth(exc: HfHubHTTPError) -> str:
    """What the request ``exc`` answered authenticated with: ``"token"`` (a non-empty ``Authorization: Bearer``
    value, as huggingface_hub's ``build_hf_headers`` sends it), ``"basic"`` (``Basic``: the ``user:password@`` of the
    endpoint URL, which ``httpx2`` sends in place of the token) or ``"none"`` (no header, or ``Bearer`` with nothing
    after it). An error with no request to read (made by hand) is taken as one with a token."""
    try:  # httpx's ``request`` properties raise RuntimeError when unset
        value = exc.response.request.headers.get("authorization", "")
    except (AttributeError, RuntimeError):
        return "token"
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() == "basic":
        return "basic"
    if scheme.lower() == "bearer":
        return "token" if credentials.strip() else "none"
    return "token" if value.strip() else "none"


def needs_token(info) -> bool:
    """Whether a browser, which sends no token, is refused the resolve URLs of the repo ``info`` describes
    (``HfApi.repo_info``'s answer): a private repo, or a gated one, whose ``repo_info`` says ``private: false`` and
    ``gated: "auto"`` or ``"manual"`` (https://huggingface.co/docs/hub/datasets-gated). Such a repo's files are
    served as a private one's: signed URLs of the backend's file route, ``Cache-Control: private``."""
    return bool(info.private) or bool(getattr(info, "gated", False))


def download(repo_id: str, path: str, revision: str, token: str | None = None, endpoint: str | None = None,
             etag_timeout: float = 10, repo_type: str = REPO_TYPE, max_bytes: int | None = None,
             patient: bool = False) -> str:
    """A repo file at ``revision`` in huggingface_hub's cache (``hf_hub_download``, one download per blob).

    A file already in the cache at a commit sha ``revision`` is taken with no call. Otherwise (unless ``patient``)
    the file's metadata is asked first, by one ``HEAD`` (``get_hf_file_metadata``, no retry) that waits at most
    ``etag_timeout`` seconds for each of connecting and reading its answer. It tells the commit ``revision`` is at and
    the file's size (``X-Linked-Size`` or ``Content-Length``), so that a file larger than ``max_bytes`` is refused
    before any of it is downloaded and a file already in the cache at that commit is taken with no other call. A
    new one is then downloaded by ``hf_hub_download`` at ``revision``, which asks its own ``HEAD`` again (it takes
    no metadata from its caller) and keeps ``refs/<revision>``, by which a branch's cached file is found when the Hub
    does not answer. The downloaded file is measured too: for a Hub that did not tell the size, or a branch that
    moved between the two ``HEAD`` calls.

    Why the first ``HEAD`` is LabelHub's (huggingface_hub 2.x, pinned in ``pyproject.toml``;
    ``file_download.py``, ``utils/_http.py``): when ``hf_hub_download``'s ``HEAD`` gets no answer (a refused
    connection, a name that does not resolve, or ``etag_timeout`` passing) and the file is not cached, it asks
    again with a fixed 60 s timeout (``_ETAG_RETRY_TIMEOUT``, no setting changes it) and ``http_backoff``'s retries:
    6 ``HEAD`` calls 1, 2, 4, 8 and 8 s apart. Against a Hub that never answers that was ``etag_timeout`` + 6 × 60
    + 23 s, 6.5 minutes (measured: 393 s); with a name that does not resolve, 23 s. Without ``patient``, no answer
    is one :class:`~labelhub.errors.HubUnreachable` after at most ``etag_timeout`` (and a refused connection or a
    name that does not resolve at once), unless ``revision``'s file is in the cache (``refs/<revision>``), which is
    then taken as huggingface_hub takes it. ``HF_HUB_ETAG_TIMEOUT``, when set, replaces ``etag_timeout`` in
    ``hf_hub_download``'s own ``HEAD`` (not in the first).

    What bounds the ``GET`` is huggingface_hub's: ``HF_HUB_DOWNLOAD_TIMEOUT`` seconds (10 by default) for
    each read, with up to 5 resumes, and no limit on the whole download's duration; an answer longer than the
    ``HEAD``'s size is written whole, then refused by its consistency check (an ``OSError``). The Hub at
    ``HF_ENDPOINT`` is trusted to answer at its own pace once it answered the first ``HEAD``; should it stop
    answering between the two ``HEAD`` calls, the second retries as above.

    Args:
        repo_id: ``owner/name``.
        repo_type: ``"dataset"`` (default), ``"model"`` or ``"space"``.
        path: The ``path_in_repo``.
        revision: A commit sha (or a branch or tag).
        token: A Hub token that can read the repo; ``None`` for public repos.
        endpoint: The Hub URL; ``None``: ``HF_ENDPOINT`` or ``https://huggingface.co``.
        etag_timeout: Seconds to wait for the Hub's metadata answer (to connect, then to read the answer).
        max_bytes: The largest file accepted, in bytes; ``None``: any size.
        patient: ``True``: no first ``HEAD`` of LabelHub's; ``hf_hub_download`` alone, with its retries (one call
            fewer for a file not in the cache: the sync's reads, where a Hub that stops answering for a while is
            better waited for). Ignored with ``max_bytes``.

    Returns:
        The local path of the file (a symlink into the cache's ``blobs/``).

    Raises:
        FileTooLarge: The file is larger than ``max_bytes`` (as the Hub declared it, or as downloaded).
        HubUnreachable: No answer to the ``HEAD`` and the file is not in the cache.
        As :func:`hub_errors`.
    """
    from huggingface_hub import constants

    with hub_errors(endpoint or constants.ENDPOINT, repo_id, revision, path):  # the URL huggingface_hub calls
        local = _cached(repo_id, path, revision, repo_type) if _COMMIT_SHA.fullmatch(revision) else None
        if local is None and patient and max_bytes is None:
            local = hf_hub_download(repo_id, path, repo_type=repo_type, revision=revision, token=token,
                                    endpoint=endpoint, etag_timeout=etag_timeout)
        elif local is None:
            url = hf_hub_url(repo_id, path, repo_type=repo_type, revision=revision, endpoint=endpoint)
            try:
                metadata = get_hf_file_metadata(url, token=token, timeout=etag_timeout, endpoint=endpoint)
            except (httpx2.TransportError, OfflineModeIsEnabled, HfHubHTTPError) as exc:
                status = exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None \
                    else None
                if isinstance(exc, HfHubHTTPError) and status != 429 and (status or 0) < 500:
                    raise  # the Hub answered: no such repo, revision or file, or a refused token
                local = _cached(repo_id, path, revision, repo_type)  # as hf_hub_download falls back to its cache
                if local is None:
                    raise
            else:
                if max_bytes is not None:
                    _check_size(repo_id, path, metadata.size, max_bytes)
                local = _cached(repo_id, path, metadata.commit_hash, repo_type) if metadata.commit_hash else None
                if local is None:
                    local = hf_hub_download(repo_id, path, repo_type=repo_type, revision=revision, token=token,
                                            endpoint=endpoint, etag_timeout=etag_timeout)
    if max_bytes is not None:
        _check_size(repo_id, path, os.path.getsize(local), max_bytes)
    return local


def _cached(repo_id: str, path: str, revision: str, repo_type: str) -> str | None:
    """The cached file of ``revision`` (a commit sha, or a branch or tag through ``refs/``), or ``None``: no call
    (``try_to_load_from_cache``, in ``HF_HUB_CACHE``; a file cached as missing is ``None`` too)."""
    found = try_to_load_from_cache(repo_id, path, revision=revision, repo_type=repo_type)
    return found if isinstance(found, str) else None


def _check_size(repo_id: str, path: str, size: int | None, max_bytes: int) -> None:
    """Raise :class:`~labelhub.errors.FileTooLarge` when ``size`` (bytes; ``None``: unknown) is over ``max_bytes``."""
    if size is not None and size > max_bytes:
        raise FileTooLarge(f"{path} of {repo_id} has {size} bytes, more than the {max_bytes} accepted", size,
                           max_bytes)


class HubRepo:
    """A Hub dataset repo ``owner/name``.

    Args:
        repo_id: ``owner/name``.
        token: a Hub token with read access (write access for exports), without the whitespace around it (dropped
            here: httpx refuses a header ending in the CR of a CRLF ``.env`` file, in an error quoting it); ``None``
            (or ``""``, an empty ``HF_TOKEN``) for public repos: huggingface_hub then sends the token it finds
            itself, if any (``hf auth login``'s).
        endpoint: the Hub URL; ``None`` uses ``HF_ENDPOINT`` or ``https://huggingface.co``.
        file_urls: how file URLs are made (:class:`labelhub.file_urls.FileURLs`); ``None``: always the
            pinned ``resolve`` URL.

    Attributes:
        private: whether the repo is private, as the last :meth:`resolve` saw it (``None`` before).
    """

    def __init__(self, repo_id: str, token: str | None = None, endpoint: str | None = None,
                 file_urls: FileURLs | None = None):
        self.repo_id = repo_id
        self.token = (token or "").strip() or None  # an empty HF_TOKEN is no token, not "Bearer " with nothing
        self.api = HfApi(endpoint=endpoint, token=self.token)
        self.endpoint = self.api.endpoint
        self.key = repo_key(repo_id)
        self.file_urls = file_urls
        self.private: bool | None = None
        self.local = False  # a Hub repo (see labelhub.repos.DatasetRepo)
        self._resolve_prefix = ("", "")  # (sha, hf_hub_url of the commit's root), see file_url
        self._regular_paths: set[str] = set()  # paths the Hub's preupload answered "regular" for, see commit

    def __repr__(self) -> str:  # never shows the token
        return f"HubRepo({self.repo_id!r}, endpoint={without_userinfo(self.endpoint)!r})"

    def default_revision(self) -> str:
        """``main``, the Hub's default branch (see :meth:`labelhub.repos.DatasetRepo.default_revision`)."""
        return "main"

    def resolve(self, revision: str) -> str:
        """See :meth:`labelhub.repos.DatasetRepo.resolve`. One Hub API call (``repo_info``), which also
        tells whether the repo is private (:attr:`private`, for :meth:`file_url`): a gated dataset counts as private
        (:func:`needs_token`), so its tasks get the backend's signed URLs as a private one's."""
        with hub_errors(self.endpoint, self.repo_id, revision):
            info = self.api.repo_info(self.repo_id, repo_type=REPO_TYPE, revision=revision)
        private = needs_token(info) if info.private is not None else None
        if self.private is not None and private != self.private and self.file_urls is not None:
            refused = self.file_urls.refusal(self.repo_id, False, private)
            log.warning("dataset %s is now %s: %s", self.repo_id, "private" if private else "public",
                        f"{refused}; no task is made of its files meanwhile" if refused else
                        f"new tasks get {self.describe_file_urls(private)}")
        self.private = private
        return info.sha

    def iter_files(self, sha: str) -> Iterator[RepoFile]:
        """See :meth:`labelhub.repos.DatasetRepo.iter_files`: ``list_repo_tree(recursive=True)``, one Hub call per
        1,000 entries, made as the files are consumed. When the repo's visibility decides the form of
        :meth:`file_url` (``--file-urls auto`` with a secret) or whether its files' URLs can load at all
        (``auto`` without a secret: a private repo's resolve URLs cannot), one ``repo_info`` call first refreshes
        :attr:`private`: the poll (:meth:`head_and_tags`) does not tell it, and a listing comes before new
        tasks' URLs are made.

        Raises:
            PrivateRepoRefused: the repo is private now and no URL of its files could load under the policy
                (:meth:`labelhub.file_urls.FileURLs.refusal`: no ``LABELHUB_SECRET``), raised before the first
                entry, so no task is made; the start's refusal, in a running sync.
        """
        policy = self.file_urls
        if policy is not None and (policy.form(local=False, private=True) != policy.form(local=False, private=False)
                                   or policy.refusal(self.repo_id, False, True) !=
                                   policy.refusal(self.repo_id, False, False)):
            self.resolve(sha)
            refused = policy.refusal(self.repo_id, False, self.private)
            if refused:
                raise PrivateRepoRefused(f"{refused} (no task was made)")
        entries = self.api.list_repo_tree(self.repo_id, repo_type=REPO_TYPE, revision=sha, recursive=True)
        with hub_errors(self.endpoint, self.repo_id, sha):
            for entry in progress_bar(entries, desc=f"listing {self.repo_id}", unit=" entries", leave=False):
                if isinstance(entry, HubRepoFile):
                    yield RepoFile(entry.path, entry.size, entry.blob_id)

    def list_files(self, sha: str) -> list[RepoFile]:
        """See :meth:`labelhub.repos.DatasetRepo.list_files`. One Hub call per 1,000 entries."""
        return list(self.iter_files(sha))

    def blob_ids(self, sha: str, paths: Sequence[str]) -> dict[str, str]:
        """See :meth:`labelhub.repos.DatasetRepo.blob_ids`: ``get_paths_info`` (``POST
        /api/datasets/{repo_id}/paths-info/{sha}``, https://huggingface.co/docs/hub/api), one call per
        :data:`PATHS_PER_CALL` paths.

        Raises:
            RepoNotFound, RevisionNotFound, TransientHubError, HubUnreachable, HubError: see :func:`hub_errors`.
        """
        ordered, found = sorted(set(paths)), {}
        with hub_errors(self.endpoint, self.repo_id, sha):
            for start in range(0, len(ordered), PATHS_PER_CALL):
                for entry in self.api.get_paths_info(self.repo_id, ordered[start:start + PATHS_PER_CALL],
                                                     repo_type=REPO_TYPE, revision=sha):
                    if isinstance(entry, HubRepoFile):
                        found[entry.path] = entry.blob_id
        return found

    def read_file(self, sha: str, path: str) -> bytes:
        """See :meth:`labelhub.repos.DatasetRepo.read_file`; reads through huggingface_hub's cache.

        Raises:
            EntryNotFound: ``path`` is not in the repo at ``sha`` (a ``FileNotFoundError``).
        """
        local = download(self.repo_id, path, sha, token=self.token, endpoint=self.endpoint, patient=True)
        with open(local, "rb") as fh:
            return fh.read()

    def file_url(self, sha: str, path: str) -> str:
        """The file's URL pinned to ``sha``, no call: ``{endpoint}/datasets/{repo_id}/resolve/{sha}/{path}``
        (``hf_hub_url``'s, its commit part made once per commit) for a public repo, or the backend's signed URL
        ``{public_url}/files/{owner--name}/{sha}/{path}?sig=...`` for a private one (the choice:
        :meth:`labelhub.file_urls.FileURLs.form`, with :attr:`private` from the last :meth:`resolve`). A
        ``user:password@`` of ``HF_ENDPOINT`` is left out of the resolve URL: it would be in every task's data, shown
        to every annotator, and browsers do not send credentials written in an image's URL anyway."""
        if self.file_urls is not None and self.file_urls.form(local=False, private=self.private) == "proxy":
            return self.file_urls.proxy_url(self.key, sha, path)
        if self._resolve_prefix[0] != sha:  # hf_hub_url once per commit: it costs 30 µs, a third of a task's making
            root = without_userinfo(hf_hub_url(self.repo_id, "", repo_type=REPO_TYPE, revision=sha,
                                               endpoint=self.endpoint))
            self._resolve_prefix = (sha, root)
        return self._resolve_prefix[1] + quote(path)  # the path quoted as hf_hub_url quotes it

    def describe_file_urls(self, private: bool | None = None) -> str:
        """One log line: which form this repo's file URLs take (:meth:`labelhub.file_urls.FileURLs.describe`)."""
        private = self.private if private is None else private
        if self.file_urls is None:
            return f"file URLs of {self.repo_id}: Hub resolve URLs pinned to the commit"
        return self.file_urls.describe(self.repo_id, local=False, private=private)

    # writing (the export)
    def commit(self, files: dict[str, bytes], message: str, description: str, parent_commit: str,
               revision: str = "main") -> str:
        """One atomic commit adding or replacing ``files`` on branch ``revision``.

        The Hub refuses it with 412 when ``parent_commit`` is no longer the branch head
        (https://huggingface.co/docs/huggingface_hub/package_reference/hf_api#huggingface_hub.HfApi.create_commit).
        Operations are built here on every call: a commit consumes them. Hub calls: ``validate-yaml`` when
        ``README.md`` is among ``files``, ``preupload`` unless this process already knows every path's upload
        mode (:meth:`_reuse_upload_modes`), then ``commit``: three for a repo's first export, two after.

        Returns:
            The new commit's sha.

        Raises:
            CommitConflict: the branch moved (412) or the commit conflicts (409).
            TransientHubError: 429 or 5xx; nothing was committed.
            AmbiguousCommit: no answer; the commit may have landed (look for it with :meth:`find_commit`).
            HubError: any other failure; a 403 says HF_TOKEN needs write access to the repo, or that the repo or
                account hit a Hub storage limit (:meth:`_write_refused`), a 401 that HF_TOKEN was refused
                (:func:`_http_error`), a 413 that the commit is larger than the Hub (or a proxy) accepts
                (:meth:`_too_large`).
        """
        def create_commit(operations: list[CommitOperationAdd]) -> str:
            size = sum(len(data) for data in files.values())
            what = f"the commit of {len(files)} files ({size / 1e6:.1f} MB) to dataset {self.repo_id}"
            try:
                with hub_errors(self.endpoint, self.repo_id, revision), said_when_slow(what):
                    try:
                        return self.api.create_commit(self.repo_id, operations, commit_message=message,
                                                      commit_description=description, repo_type=REPO_TYPE,
                                                      revision=revision, parent_commit=parent_commit).oid
                    except ValueError as exc:
                        raise _card_refused(exc, self.endpoint, "README.md" in files) from None
            finally:
                self._regular_paths.update(op.path_in_repo for op in operations
                                           if op._upload_mode == "regular" and not op._should_ignore)

        operations = self._operations(files)
        reused = self._reuse_upload_modes(operations)
        try:
            try:
                return create_commit(operations)
            except HubError as exc:
                if not (reused and exc.status in (400, 422)):
                    raise
                # the Hub wants another mode for a path than last time (a new .gitattributes rule): ask it
                log.info("the Hub refused the remembered upload modes of %s; asking it again", self.repo_id)
                self._regular_paths.clear()
                return create_commit(self._operations(files))
        except HubUnreachable as exc:
            raise AmbiguousCommit(str(exc)) from None
        except HubError as exc:
            if exc.status in (409, 412):
                raise CommitConflict(str(exc)) from None
            if exc.status == 403:
                raise self._write_refused(exc) from None
            if exc.status == 413:
                raise self._too_large(exc, files) from None
            raise

    def _too_large(self, exc: HubError, files: dict[str, bytes]) -> HubError:
        """The error for a commit the Hub (or a proxy in front of it) refused with 413: its size, and what to do. The
        files of a commit under :data:`REGULAR_SIZE_LIMIT` that are text go inline in its one request (larger ones
        to LFS storage, in requests of their own), so the annotations CSV is most of it."""
        size = sum(len(data) for data in files.values())
        largest = max(files, key=lambda path: len(files[path]), default="")
        of_it = f", {largest} {len(files[largest]) / 1e6:.1f} MB of it" if largest else ""
        return HubError(f"{exc}: the commit of {len(files)} files ({size / 1e6:.1f} MB{of_it}) to dataset "
                        f"{self.repo_id} is larger than the Hub, or a proxy in front of it (HF_ENDPOINT), accepts in "
                        "one request: raise the proxy's request size limit (nginx: client_max_body_size), or make the "
                        "CSV smaller (split the project into series, each with its own --include and --csv-path); the "
                        "version stays pending", exc.status)

    @staticmethod
    def _operations(files: dict[str, bytes]) -> list[CommitOperationAdd]:
        return [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in files.items()]

    def _reuse_upload_modes(self, operations: list[CommitOperationAdd]) -> bool:
        """Give each operation the upload mode the Hub answered for its path at an earlier commit of this
        process, so that ``create_commit`` skips its ``preupload`` call when every mode is known; ``True``
        when all were.

        huggingface_hub asks ``preupload`` only for operations whose ``_upload_mode`` is unset (its
        ``HfApi.preupload_lfs_files`` sets them the same way for a later ``create_commit``). A mode is reused
        only for "regular" (inline) files that stay small and text (:data:`REGULAR_SIZE_LIMIT`,
        :data:`BINARY_PROBE`): the Hub's other reason to want LFS is a ``.gitattributes`` rule, and a commit
        the Hub refuses for it is sent again after asking (see :meth:`commit`). These attributes are
        private to huggingface_hub 2.x (pinned in ``pyproject.toml``); ``tests/test_sync_export_calls.py``
        fails if a release stops honouring them.
        """
        known = 0
        for op in operations:
            data = op.path_or_fileobj
            if (op.path_in_repo in self._regular_paths and isinstance(data, bytes)
                    and 0 < len(data) < REGULAR_SIZE_LIMIT and b"\0" not in data[:BINARY_PROBE]):
                op._upload_mode, op._should_ignore = "regular", False
                known += 1
        return known == len(operations)

    def find_commit(self, marker: str, revision: str = "main") -> str | None:
        """The sha of the newest commit of ``revision``'s history whose message contains ``marker`` (``None`` when
        none does): ``list_repo_commits``, which reads the whole history (one Hub call per page of commits). A
        commit that landed before a crash may have any number of commits after it by the time the sync starts
        again, so no shorter look back is safe."""
        with hub_errors(self.endpoint, self.repo_id, revision):
            commits = self.api.list_repo_commits(self.repo_id, repo_type=REPO_TYPE, revision=revision)
            for commit in commits:
                if marker in f"{commit.title}\n{commit.message}":
                    return commit.commit_id
        return None

    def create_tag(self, tag: str, sha: str, message: str = "") -> None:
        """Tag commit ``sha`` (never a branch name).

        Raises:
            TagExists: the tag exists (409); see :meth:`tags` for where it points.
            TransientHubError, HubError: as for :meth:`commit`.
        """
        try:
            with hub_errors(self.endpoint, self.repo_id, sha):
                self.api.create_tag(self.repo_id, tag=tag, tag_message=message or None, revision=sha,
                                    repo_type=REPO_TYPE)
        except HubError as exc:
            if exc.status == 409:
                raise TagExists(f"tag {tag} exists in {self.repo_id}") from None
            if exc.status == 403:
                raise self._write_refused(exc) from None
            raise

    def _write_refused(self, exc: HubError) -> HubError:
        """The error for a write (commit, tag) the Hub refused with 403: the token can read the repo, not write it;
        but when the Hub's message is about storage, a limit or a quota (:data:`STORAGE_REFUSAL`: "Private repository
        storage limit reached, please upgrade your plan ...", "Your storage patterns tripped our internal
        systems! ..."), the repo or its owner's account hit a Hub storage limit, and write access is not the cause:
        the message quotes the Hub's (one line) and says the versions stay pending."""
        if STORAGE_REFUSAL.search(str(exc)):
            return HubError(f"{one_line(exc).rstrip('.')}: dataset {self.repo_id} or its owner's account hit a Hub "
                            "storage limit (https://huggingface.co/docs/hub/storage-limits): free storage or upgrade "
                            "the plan; the versions stay pending and are exported once the Hub accepts them",
                            exc.status)
        return HubError(f"{exc}: HF_TOKEN needs write access to dataset {self.repo_id} to export versions (a "
                        "fine-grained token: write access to that repo); labelhub sync --no-export only imports",
                        exc.status)

    def is_branch(self, revision: str) -> bool:
        """Whether ``revision`` names a branch of the repo (or a pull request's ``refs/pr/N``), which an export can
        commit to; a tag or a sha cannot be. One ``list_repo_refs`` call."""
        with hub_errors(self.endpoint, self.repo_id, revision):
            refs = self.api.list_repo_refs(self.repo_id, repo_type=REPO_TYPE, include_pull_requests=True)
        return revision in {ref.name for ref in refs.branches} | {ref.ref for ref in refs.pull_requests or []}

    def tags(self) -> dict[str, str]:
        """``{tag name: commit sha}`` of the repo. One Hub call."""
        with hub_errors(self.endpoint, self.repo_id):
            refs = self.api.list_repo_refs(self.repo_id, repo_type=REPO_TYPE)
        return {ref.name: ref.target_commit for ref in refs.tags}

    def head_and_tags(self, revision: str) -> tuple[str, dict[str, str]]:
        """See :meth:`labelhub.repos.DatasetRepo.head_and_tags`: one ``list_repo_refs`` call, and one
        ``repo_info`` (:meth:`resolve`) when ``revision`` is neither a branch nor a tag.

        Raises:
            RevisionNotFound: ``revision`` is no branch, tag or commit of the repo; the message names its branches
                (``main`` first, up to 5), as a local repo's does.
        """
        with hub_errors(self.endpoint, self.repo_id, revision):
            refs = self.api.list_repo_refs(self.repo_id, repo_type=REPO_TYPE)
        heads = {ref.name: ref.target_commit for ref in refs.branches}
        tags = {ref.name: ref.target_commit for ref in refs.tags}
        try:
            sha = heads.get(revision) or tags.get(revision) or self.resolve(revision)
        except RevisionNotFound as exc:  # a branch misspelt, deleted or renamed: name the ones there are
            branches = sorted(heads, key=lambda name: (name != "main", name))
            more = f", +{len(branches) - 5} more" if len(branches) > 5 else ""
            raise RevisionNotFound(f"{exc}: its branches: {', '.join(branches[:5])}{more} (pass one as --revision or "
                                   "LABELHUB_REVISION)") from None
        return sha, tags

    def commit_info(self, sha: str) -> tuple[str, str]:
        """``(date ISO 8601, title)`` of commit ``sha``. One Hub call."""
        with hub_errors(self.endpoint, self.repo_id, sha):
            commit = self.api.list_repo_commits(self.repo_id, repo_type=REPO_TYPE, revision=sha)[0]
        return commit.created_at.isoformat(), commit.title

    #: Commits a page of the Hub's ``/commits/{revision}`` holds (its default), for :meth:`held_commits`'s budget.
    COMMITS_PAGE = 50

    def held_commits(self, shas: Iterable[str], head: str) -> set[str]:
        """See :meth:`labelhub.repos.DatasetRepo.held_commits`: the history of ``head`` is read newest first (the
        ``/commits`` route of ``list_repo_commits``, one call per :attr:`COMMITS_PAGE` commits), and each sha found
        there is held (a commit of the head's history is one the Hub resolves); the others get :meth:`resolve` (one
        ``repo_info`` each), as every sha did before. The reading stops once every sha is found, or once it has made
        as many calls as shas are left to find (going on would cost more than resolving them): never more than twice
        the calls of one :meth:`resolve` per sha, and one call per 50 commits when the tasks show the recent
        history's commits. A single sha (or a head the Hub no longer has): :meth:`resolve` alone. 502 commits among
        1,000 (tests' Hub server): 22 calls (20 pages, 2 ``repo_info``) and 0.33 s, against 503 calls and 12.6 s;
        5 of the oldest of 1,000 and one the repo lacks: 12 calls against 6 (the worst case: the reading finds none).
        """
        from huggingface_hub.utils import paginate

        wanted = list(dict.fromkeys(shas))
        left = set(wanted) if len(wanted) > 1 else set()
        if left:
            url = f"{self.endpoint}/api/{REPO_TYPE}s/{self.repo_id}/commits/{quote(head, safe='')}"
            try:
                with hub_errors(self.endpoint, self.repo_id, head):
                    for read, item in enumerate(paginate(url, params={}, headers=self.api._build_hf_headers()), 1):
                        left.discard(item.get("id"))
                        if not left or (read % self.COMMITS_PAGE == 0 and read // self.COMMITS_PAGE >= len(left)):
                            break
            except RevisionNotFound:  # the head itself gone meanwhile: every sha is asked alone
                left = set(wanted)
        held = set(wanted) - left if len(wanted) > 1 else set()
        return resolving_the_rest(self, wanted, held)
