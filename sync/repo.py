"""Repo access: one small interface, two implementations.

- :class:`sync.hub_repo.HubRepo`: a dataset repo on the Hugging Face Hub (``owner/name``), through
  the ``huggingface_hub`` client (token from ``HF_TOKEN``, endpoint from ``HF_ENDPOINT``).
- :class:`sync.git_repo.LocalGitRepo`: a local git repository given by its path, the embedded
  default that needs no Hub account.

:func:`open_repo` picks one from the ``--repo`` argument: an existing directory is a local repo,
anything else is a Hub ``repo_id``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RepoFile:
    """A file of a repo at one commit.

    Attributes:
        path: the path in the repo (``path_in_repo``), ``/``-separated.
        size: its size in bytes.
        oid: its git blob id (40 hex digits).
    """

    path: str
    size: int
    oid: str


class DatasetRepo(Protocol):
    """What the sync needs from a repo. ``repo_id`` names it in task data (``hf_repo``)."""

    repo_id: str

    def resolve(self, revision: str) -> str:
        """Resolve a branch, tag or sha to a commit sha (40 hex digits).

        Raises:
            sync.errors.RepoNotFound: the repo does not exist or cannot be read.
            sync.errors.RevisionNotFound: the revision does not exist.
        """

    def list_files(self, sha: str) -> list[RepoFile]:
        """Every file of the repo at commit ``sha``, recursively."""

    def read_file(self, sha: str, path: str) -> bytes:
        """The bytes of ``path`` at commit ``sha``."""

    def file_url(self, sha: str, path: str) -> str:
        """A URL of ``path`` pinned to commit ``sha``, for the task data."""


def open_repo(repo: str, token: str | None = None, endpoint: str | None = None,
              public_url: str | None = None) -> DatasetRepo:
    """Open ``repo``: a local git repository when it is an existing directory, else a Hub repo_id.

    Args:
        repo: a path (``./data``, ``/srv/repo``) or a Hub dataset ``owner/name``.
        token: the Hub token (``HF_TOKEN``); never logged.
        endpoint: the Hub endpoint (``HF_ENDPOINT``; default ``https://huggingface.co``).
        public_url: the backend's URL as the annotators' browsers see it
            (``LABELHUB_PUBLIC_URL``), used for the file URLs of a local repo.

    Raises:
        sync.errors.RepoNotFound: ``repo`` is neither a directory nor a valid ``owner/name``.
    """
    from sync.errors import RepoNotFound

    if os.path.isdir(repo):
        from sync.git_repo import LocalGitRepo

        return LocalGitRepo(repo, public_url=public_url)
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts):
        raise RepoNotFound(f"--repo {repo!r} is neither a directory nor a Hub repo_id 'owner/name'")
    from sync.hub_repo import HubRepo

    return HubRepo(repo, token=token, endpoint=endpoint)
