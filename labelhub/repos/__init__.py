"""Repo access: one small interface, two implementations.

- :class:`labelhub.repos.hub.HubRepo`: a dataset repo on the Hugging Face Hub (``owner/name``), through
  the ``huggingface_hub`` client (token from ``HF_TOKEN``, endpoint from ``HF_ENDPOINT``).
- :class:`labelhub.repos.git.LocalGitRepo`: a local git repository given by its path, the embedded
  default that needs no Hub account.

:func:`open_repo` picks one from the ``--repo`` argument: an existing directory is a local repo,
anything else is a Hub ``repo_id``. What URL a task gets for a file (the Hub's ``resolve`` URL or a
signed URL of the backend's file route) is chosen per repo by :class:`labelhub.file_urls.FileURLs`.
"""
from __future__ import annotations

import os

from labelhub.errors import RepoNotFound
from labelhub.file_urls import FileURLs
from labelhub.repos.base import DatasetRepo, RepoFile
from labelhub.repos.git import LocalGitRepo
from labelhub.repos.hub import HubRepo

__all__ = ["RepoFile", "DatasetRepo", "HubRepo", "LocalGitRepo", "open_repo"]


def open_repo(repo: str, token: str | None = None, endpoint: str | None = None,
              public_url: str | None = None, file_urls: FileURLs | None = None) -> DatasetRepo:
    """Open ``repo``: a local git repository when it is an existing directory, else a Hub repo_id.

    Args:
        repo: a path (``./data``, ``/srv/repo``) or a Hub dataset ``owner/name``.
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
        labelhub.errors.RepoNotFound: ``repo`` is neither a directory nor a valid ``owner/name``.
        ValueError: ``file_urls`` asks for ``resolve`` URLs of a local repository.
    """
    if os.path.isdir(repo):
        if file_urls is not None:
            file_urls.form(local=True, private=True)  # raises for --file-urls resolve
        return LocalGitRepo(repo, public_url=public_url, file_urls=file_urls)
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts):
        raise RepoNotFound(f"--repo {repo!r} is neither a directory nor a Hub repo_id 'owner/name'")
    return HubRepo(repo, token=token, endpoint=endpoint, file_urls=file_urls)
