"""The one way LabelHub makes a label-studio-sdk client: :func:`label_studio_client`.

**A new connection per request over plain HTTP.** ``label-studio start`` serves with Django's development server
(``WSGIServer/0.2``, from the standard library's ``wsgiref``), which writes a response's headers and its body in
two writes without ``TCP_NODELAY``. On a connection kept alive, the body then waits for the client's delayed ACK
of the headers: 40 ms on Linux (its minimum delayed-ACK time), on every request but the first few of a
connection (a new connection starts in quick-ACK mode). Measured against Label Studio 1.23.2 on 127.0.0.1
(``GET /api/projects/{id}/summary/``, seven requests): 56 to 71 ms a request on a kept-alive httpx or requests
connection, 14 to 19 ms on a new connection each; ``TCP_NODELAY`` on the client's side does not help, the
delay is the server's. A new TCP connection costs one round trip (about 0.1 ms on loopback, well under 1 ms on a
LAN), so over ``http://`` LabelHub opens one per request. Over ``https://`` a new connection would cost a TLS
handshake, and a Label Studio served over TLS is behind a proxy (nginx sets ``TCP_NODELAY`` on its kept-alive
connections), so connections are kept alive there.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from labelhub.redaction import one_line, without_signatures

if TYPE_CHECKING:
    import ssl

    from label_studio_sdk import LabelStudio

__all__ = ["label_studio_client", "shared_ssl_context", "api_key_value", "api_error_text", "KEY_ADVICE",
           "EXPIRED_KEY_ADVICE", "TASK_PAGE_SIZE", "IDS_PER_QUERY", "LISTING_ATTEMPTS", "selected_items_queries",
           "Listing", "list_tasks"]

T = TypeVar("T")

#: What to do about a ``LABEL_STUDIO_API_KEY`` Label Studio refuses (401/403), the README's "Label Studio API keys":
#: what follows "Label Studio at URL refused LABEL_STUDIO_API_KEY (401): " in LabelHub's messages.
KEY_ADVICE = ("use a personal access token (Account & Settings → Personal Access Token) or a legacy token with "
              "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true")
#: What to do about a ``LABEL_STUDIO_API_KEY`` that is an expired personal access token (or a JWT with no expiry):
#: what follows "LABEL_STUDIO_API_KEY (for Label Studio at URL) is a personal access token that has expired: ".
EXPIRED_KEY_ADVICE = ("make a new one in Label Studio (Account & Settings → Personal Access Token) and set "
                      "LABEL_STUDIO_API_KEY to it")

#: Tasks per page when LabelHub lists a project's tasks (``GET /api/tasks``). Label Studio 1.23.2 on SQLite answers
#: 500 "Expression tree is too large (maximum depth 1000)" for a page of 999 or more tasks made from uploaded files
#: (its Data Manager prefetches each task's ``file_upload`` row in one query, past SQLite's expression depth of
#: 1000); 998 still works. Measured with 1,000 and 3,000 uploaded images; tasks imported as JSON have no such row.
TASK_PAGE_SIZE = 500
#: Task ids per Data Manager ``selectedItems`` query (:func:`selected_items_queries`): they travel in the URL.
IDS_PER_QUERY = 200
#: Readings of a paged task listing before :func:`list_tasks` gives up on one that holds still.
LISTING_ATTEMPTS = 3


def selected_items_queries(task_ids: Iterable[int]) -> Iterator[str]:
    """The ``query`` values of ``GET /api/tasks`` that select ``task_ids``, :data:`IDS_PER_QUERY` at a time (the Data
    Manager's ``{"selectedItems": {"all": false, "included": [...]}}``); tasks that do not exist are not listed.
    Each id is named once, where it first comes: an id given twice, 200 ids apart, would be in two queries, and Label
    Studio lists a task once per query that names it (an audit: a prediction job that listed the tasks it wrote, some
    ids given twice, predicted those tasks twice and counted them twice).

    Example:
        >>> list(selected_items_queries([3, 5, 3]))
        ['{"selectedItems": {"all": false, "included": [3, 5]}}']
    """
    ids = list(dict.fromkeys(int(i) for i in task_ids))
    for start in range(0, len(ids), IDS_PER_QUERY):
        yield json.dumps({"selectedItems": {"all": False, "included": ids[start:start + IDS_PER_QUERY]}})


class Listing(NamedTuple):
    """What :func:`list_tasks` read."""

    #: The tasks of the last reading, in Label Studio's order (the SDK's task models, or what ``convert`` made of them).
    tasks: list
    #: No task read twice and one ``total`` on every page; when ``False``, a task missing from ``tasks`` may exist.
    held_still: bool
    #: How many of ``tasks`` the first page held (fetched before anything moved, that page is whole).
    first_page: int


def _next_page(page):
    """The SDK pager's next page, or ``None`` past the last one (Label Studio answers that page 404, which the
    SDK's own item iterator takes for the end too: ``label_studio_sdk.tasks.client_ext.SyncPagerExt``)."""
    from label_studio_sdk.core.api_error import ApiError

    try:
        return page.get_next()
    except ApiError as exc:
        if exc.status_code == 404:
            return None
        raise


def list_tasks(client: "LabelStudio", call: Callable[[Callable[[], T]], T], attempts: int = LISTING_ATTEMPTS,
               convert: Callable[[Any], Any] | None = None, **params: Any) -> Listing:
    """Every task of a paged ``GET /api/tasks`` query (``client.tasks.list(**params)``, then its pager's next pages:
    https://api.labelstud.io/api-reference/api-reference/tasks/list), and whether the list held still meanwhile.

    Label Studio pages by page number (Django REST framework's ``PageNumberPagination``, ``TaskPagination`` in
    ``label_studio/data_manager/api.py``): a task deleted from a page already read shifts every later task back one
    place, and a task saved meanwhile moves to the end of an ``updated_at`` ordering, so one task of a later page is
    never read. Either shows: a task read twice, or another ``total`` on the last page than on the first. Such a
    listing is read again, up to ``attempts`` times in all.

    Args:
        client: The SDK's client (:func:`label_studio_client`).
        call: Runs one SDK call, ``call(fn) -> fn()``, turning its errors into the caller's.
        attempts: Readings at most (default :data:`LISTING_ATTEMPTS`).
        convert: Applied to each task as its page comes in; the page (its SDK models and the response body) is
            dropped before the next one is read, so a listing holds one page of SDK models at a time, not all of
            them (a project's listing with every prediction grows with every prediction job: 11.9 MB of JSON).
        **params: ``client.tasks.list``'s arguments: ``project``, ``page_size`` (the caller's, so a test can make it
            small), ``query``, ``fields``, ``include``.

    Returns:
        The :class:`Listing` of the last reading, each task once: a reading that did not hold still may have read a
        task twice (it moved a page), of which the later copy is kept, at the place of the first.

    Raises:
        Whatever ``call`` raises for a failed call (a page past the last, 404, ends the list).
    """
    for _ in range(attempts):
        page = call(lambda: client.tasks.list(**params))
        tasks: list = []
        totals, first = set(), len(page.items or [])
        while True:
            items = page.items or []
            tasks += [convert(task) for task in items] if convert is not None else items
            totals.add(getattr(page.response, "total", None))
            if not (items and page.has_next and page.get_next is not None) or _last(page, len(tasks)):
                break
            page = call(lambda: _next_page(page))  # the page before is dropped once the next one arrives
            if page is None:
                break
        held_still = len({task.id for task in tasks}) == len(tasks) and len(totals) == 1
        if held_still:
            break
    if not held_still:  # a task read twice is still one task (its later copy is the fresher)
        tasks = list({task.id: task for task in tasks}.values())
    return Listing(tasks, held_still, first)


def _last(page: Any, read: int) -> bool:
    """Whether the pages read so far (``read`` tasks, ``page`` the last) hold the whole list: as many tasks as the
    last page's ``total`` (Label Studio's count of the query's tasks, on every page). The SDK's pager says there is
    a next page after every page that has tasks, and the page past the last answers 404, which Label Studio logs as
    an error with its traceback (at every listing of the sync and the jobs): the ``total`` ends the list one call
    earlier. Without a ``total`` (not Label Studio 1.23's answer) the list ends at an empty page or that 404.

    A page shorter than the ``page_size`` asked is not the last: Label Studio caps the page size at its
    ``TASK_API_PAGE_SIZE_MAX`` setting (``TaskPagination.max_page_size`` in ``label_studio/data_manager/api.py``;
    Django REST framework's ``PageNumberPagination.get_page_size`` takes the smaller), and each page then holds that
    many tasks, the next page number the next ones. Taking a short page for the last listed 100 tasks of 250 with
    ``TASK_API_PAGE_SIZE_MAX=100`` and said the listing held still (an audit). Uncapped, the last page is the one
    that reaches the ``total``: as many calls as before."""
    total = getattr(page.response, "total", None)
    return isinstance(total, int) and not isinstance(total, bool) and read >= total


def api_key_value(api_key: str, url: str = "") -> str:
    """``LABEL_STUDIO_API_KEY`` as it is sent: without the whitespace around it (a key pasted with a trailing space or
    newline, ``LABEL_STUDIO_API_KEY="$PAT "``), checked to be one word of printable ASCII.

    Both kinds of key are such a word (a legacy token is 40 hex digits, a personal access token a JWT: base64url
    parts joined by dots, https://labelstud.io/guide/access_tokens). Unstripped, a trailing space made a personal
    access token look like no JWT to label-studio-sdk (sent as a legacy ``Token``), and made the header value one
    httpx refuses to send (``LocalProtocolError: Illegal header value``), which was reported as Label Studio being
    unreachable. Decided: the surrounding whitespace is dropped wherever the key is read (this function, called by
    :func:`label_studio_client`; the sync's option and the backend's settings strip it too); a key that still holds a
    space, a control character or a non-ASCII character is refused with one line that names the variable and what
    to fix, never the key.

    Args:
        api_key: The key as given.
        url: Label Studio's URL, for the message (its ``user:password@`` is not shown).

    Returns:
        The key stripped.

    Raises:
        LabelStudioError: ``status`` 401 (as a refused key has it): the key is empty once stripped, begins with the
            ``Token``/``Bearer`` prefix of the header (``drop the 'Token ' prefix``), or holds a space, a control or
            a non-ASCII character inside.

    Example:
        >>> api_key_value(" 0123456789abcdef\\n")
        '0123456789abcdef'
    """
    from labelhub.errors import LabelStudioError
    from labelhub.redaction import without_userinfo

    key = api_key.strip()
    where = f" (for Label Studio at {without_userinfo(url.rstrip('/'))})" if url else ""
    first, _, rest = key.partition(" ")
    if not key:
        problem = "is empty: set it to a personal access token (Account & Settings → Personal Access Token)"
    elif first.lower() in ("token", "bearer") and rest.strip():
        problem = (f"begins with '{first} ', the prefix of the Authorization header: drop the '{first} ' prefix and "
                   "give the key alone")
    elif any(c.isspace() for c in key):
        problem = ("holds a space or a line break inside: a key is one word (a personal access token or a legacy "
                   "token); copy it again, alone")
    elif not (key.isascii() and key.isprintable()):
        problem = ("holds a control or non-ASCII character: a key is printable ASCII (a personal access token or a "
                   "legacy token); copy it again")
    else:
        return key
    error = LabelStudioError(f"LABEL_STUDIO_API_KEY{where} {problem}")
    error.status = 401
    raise error


def api_error_text(body: object, limit: int = 300) -> str:
    """An error body of Label Studio's API (``ApiError.body`` of label-studio-sdk) in one line, at most ``limit``
    characters: the messages of a ``validation_errors`` object (a refused import:
    ``Error at item 0: "question" key is expected in task data [assume: ...]``) without the task Label Studio
    echoes after ``" :: "`` (``label_studio/tasks/validation.py``), else its ``detail``, else the body; the ``sig``
    of any signed file URL left in it shortened (:func:`labelhub.redaction.without_signatures`)."""
    text = ""
    if isinstance(body, dict):
        errors = body.get("validation_errors")
        if isinstance(errors, dict):
            text = "; ".join(str(m).split(" :: ", 1)[0] for ms in errors.values()
                             for m in (ms if isinstance(ms, list) else [ms]))
        text = text or str(body.get("detail") or "")
    return one_line(without_signatures(text or str(body)), limit)


@lru_cache(maxsize=1)
def shared_ssl_context() -> "ssl.SSLContext":
    """The SSL context of every client :func:`label_studio_client` makes, made once per process with httpx's defaults
    (``httpx.create_ssl_context()``: certifi's CA bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set).

    Decided: an ``httpx.Client`` left to itself builds its own context, loading the CA bundle each time: 30 ms of CPU
    per client on these machines, paid by every ``labelhub`` command, every check of the backend's that makes a
    client, and 80 s of the test suite's CPU (py-spy, 2026-12-07); one context shared read-only is what httpx's
    guide advises (https://www.python-httpx.org/advanced/ssl/). Nothing changes it after it is made."""
    import httpx

    return httpx.create_ssl_context()


def label_studio_client(url: str, api_key: str, timeout: float = 120.0) -> "LabelStudio":
    """A label-studio-sdk client of the Label Studio at ``url`` (``LabelStudio(base_url=url, api_key=api_key)``).

    Args:
        url: Label Studio's base URL (``http://host:8080``); ``http://`` gets a new connection per request, other
            schemes keep connections alive (module docstring).
        api_key: A legacy token or a personal access token (the SDK exchanges the latter); the whitespace around it
            is dropped (:func:`api_key_value`).
        timeout: Seconds per HTTP call.

    Returns:
        The SDK's client; the SDK's own retries stay as the SDK sets them (creates pass
        :data:`labelhub.retry.NO_SDK_RETRY`).

    Raises:
        LabelStudioError: ``api_key`` is shaped like a personal access token (a JWT) that has expired or has no
            expiry (``status`` 401, as the backend's refused keys have it): the SDK checks that itself, with no
            call, when the client is made (``TokensClientExt._is_valid_jwt_token`` of label-studio-sdk 2.x, which
            decodes the token without checking its signature and raises its ``ApiError`` 401). The message says
            where a new token comes from, never the key (:data:`EXPIRED_KEY_ADVICE`). A key Label Studio itself
            refuses (a wrong legacy token, a revoked personal access token) is said at its first call instead.
            Also (``status`` 401) a key that cannot be a header value once stripped (:func:`api_key_value`).
    """
    import httpx
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    from labelhub.errors import LabelStudioError
    from labelhub.redaction import without_userinfo

    api_key = api_key_value(api_key, url)
    limits = httpx.Limits(max_keepalive_connections=0) if url.lower().startswith("http://") else httpx.Limits()
    http = httpx.Client(timeout=timeout, follow_redirects=True, limits=limits, verify=shared_ssl_context())
    try:
        return LabelStudio(base_url=url, api_key=api_key, timeout=timeout, httpx_client=http)
    except ApiError as exc:
        http.close()
        detail = exc.body.get("detail") if isinstance(exc.body, dict) else None
        what = ("is a personal access token that has expired" if "expired" in str(detail).lower() else
                "is not a valid personal access token (a JWT with no expiry)")
        error = LabelStudioError(f"LABEL_STUDIO_API_KEY (for Label Studio at {without_userinfo(url.rstrip('/'))}) "
                                 f"{what}: {EXPIRED_KEY_ADVICE}")
        error.status = exc.status_code
        raise error from None
