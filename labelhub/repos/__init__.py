"""Repo access: one small interface, two implementations.

- :class:`labelhub.repos.hub.HubRepo`: a dataset repo on the Hugging Face Hub (``owner/name``), through
  the ``huggingface_hub`` client (token from ``HF_TOKEN``, endpoint from ``HF_ENDPOINT``).
- :class:`labelhub.repos.git.LocalGitRepo`: a local git repository given by its path, the embedded
  default that needs no Hub account.

:func:`open_repo` picks one from the ``--repo`` argument: an existing directory is a local repo; a value
starting with ``.``, ``/`` or ``~`` is always a path; anything else is a Hub ``repo_id``. What URL a task gets
for a file (the Hub's ``resolve`` URL or a signed URL of the backend's file route) is chosen per repo by
:class:`labelhub.file_urls.FileURLs`.

Importing this package reads ``HF_ENDPOINT`` first, as huggingface_hub's import then parses it: one that import would
fail on (a port that is no number) raises a :class:`labelhub.errors.ConfigurationError` in one line without the URL's
``user:password@`` (:func:`labelhub.redaction.check_http_url`), where huggingface_hub's ``ValueError`` quoted the port
it read (the password, when the password holds a ``/``, ``?`` or ``#``). Any other form is left to the commands'
checks (the backend's at start, the sync's as it reads ``--hf-endpoint``, before this import).
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit

from labelhub.errors import ConfigurationError, RepoNotFound
from labelhub.redaction import check_http_url

try:  # HF_ENDPOINT as huggingface_hub's import parses it (_url_origin), before that import
    urlsplit(os.environ.get("HF_ENDPOINT", "")).port
except ValueError:  # that import would fail, quoting what it read as the port: a password holding a / ? or #
    try:
        check_http_url("HF_ENDPOINT", os.environ["HF_ENDPOINT"])
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None

from huggingface_hub.utils import validate_repo_id  # noqa: E402

from labelhub.file_urls import FileURLs  # noqa: E402
from labelhub.repos.base import DatasetRepo, RepoFile  # noqa: E402
from labelhub.repos.git import LocalGitRepo  # noqa: E402
from labelhub.repos.hub import HubRepo  # noqa: E402

__all__ = ["RepoFile", "DatasetRepo", "HubRepo", "LocalGitRepo", "open_repo"]


def open_repo(repo: str, token: str | None = None, endpoint: str | None = None,
              public_url: str | None = None, file_urls: FileURLs | None = None) -> DatasetRepo:
    """Open ``repo``: a local git repository when it is an existing directory, else a Hub repo_id.

    A value starting with ``.``, ``/`` or ``~`` is a path (``~`` expanded), never a repo_id; any other value that is
    not a directory must pass ``huggingface_hub``'s own ``validate_repo_id`` and be ``owner/name``.

    Args:
        repo: a path (``./data``, ``/srv/repo``, ``~/data``) or a Hub dataset ``owner/name``.
        token: the Hub token (``HF_TOKEN``); never logged.
        endpoint: the Hub endpoint (``HF_ENDPOINT``; default ``https://huggingface.co``).
        public_url: the backend's URL as the annotators' browsers see it
            (``LABELHUB_PUBLIC_URL``), used for the file URLs of a local repo when ``file_urls``
            is not given.
        file_urls: how file URLs are made (:class:`labelhub.file_urls.FileURLs`: ``--file-urls``,
            ``LABELHUB_PUBLIC_URL``, ``LABELHUB_SECRET``, ``--url-lifetime``); ``None``: Hub repos get
            ``resolve`` URLs and local repos unsigned URLs at ``public_url``.

    Returns:
        A :class:`labelhub.repos.git.LocalGitRepo` or a :class:`labelhub.repos.hub.HubRepo`.

    Raises:
        labelhub.errors.RepoNotFound: ``repo`` is neither a directory nor a valid ``owner/name`` (the message names
            ``--repo``, and ``huggingface_hub``'s reason when it has one).
        ValueError: ``file_urls`` asks for ``resolve`` URLs of a local repository.

    Example:
        >>> open_repo("./nope")  # doctest: +SKIP
        RepoNotFound: --repo './nope': no such directory (a local git repository), and not a Hub repo_id owner/name
    """
    path = os.path.expanduser(repo)
    if os.path.isdir(path):
        if file_urls is not None:
            file_urls.form(local=True, private=True)  # raises for --file-urls resolve
        return LocalGitRepo(path, public_url=public_url, file_urls=file_urls)
    missing = f"--repo {repo!r}: no such directory (a local git repository), and not a Hub repo_id owner/name"
    if repo.startswith((".", "/", "~")):
        raise RepoNotFound(missing)
    try:
        validate_repo_id(repo)
    except ValueError as exc:  # huggingface_hub's HFValidationError
        raise RepoNotFound(f"{missing} ({exc})") from None
    if repo.count("/") != 1:
        raise RepoNotFound(missing)
    return HubRepo(repo, token=token, endpoint=endpoint, file_urls=file_urls)
