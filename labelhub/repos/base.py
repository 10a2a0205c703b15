"""What every dataset repo offers: :class:`RepoFile` (a file at a commit) and the :class:`DatasetRepo`
interface that :class:`labelhub.repos.hub.HubRepo` and :class:`labelhub.repos.git.LocalGitRepo` implement.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["RepoFile", "DatasetRepo", "resolving_the_rest"]


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
    """What the sync needs from a repo. ``repo_id`` names it in task data (``hf_repo``); ``local`` tells a local
    git repository from a Hub repo."""

    repo_id: str
    local: bool

    def default_revision(self) -> str:
        """The branch followed when no ``--revision`` is given: ``main`` for a Hub repo, the checked-out
        branch (``HEAD``) of a local repository.

        Raises:
            labelhub.errors.RevisionNotFound: a local repository whose ``HEAD`` is detached.
        """

    def head_and_tags(self, revision: str) -> tuple[str, dict[str, str]]:
        """``(commit sha of revision, {tag: commit sha})``: one call for a branch or a tag (a branch wins over a
        tag of the same name, as on the Hub), one more for anything else (a sha, ``refs/pr/1``). The import
        cycle's poll, which keeps them for the export (:mod:`labelhub.sync.files.seen`).

        Raises:
            labelhub.errors.RepoNotFound: the repo does not exist or cannot be read.
            labelhub.errors.RevisionNotFound: the revision does not exist.
        """

    def resolve(self, revision: str) -> str:
        """Resolve a branch, tag or sha to a commit sha (40 hex digits).

        Raises:
            labelhub.errors.RepoNotFound: the repo does not exist or cannot be read.
            labelhub.errors.RevisionNotFound: the revision does not exist.
        """

    def held_commits(self, shas: Iterable[str], head: str) -> set[str]:
        """Those of ``shas`` that :meth:`resolve` finds (the commits the repo still holds), in one or a few calls
        rather than one each: the hourly re-pin sweep's look-up of the commits the tasks show
        (:meth:`labelhub.sync.files.importer.FileImporter._sweep`). ``head``: the commit the sync follows (a Hub repo
        reads its history first: the shas found there need no call of their own).

        Raises:
            labelhub.errors.RepoNotFound: as for :meth:`resolve` (a sha not found is left out, never an error).
        """

    def iter_files(self, sha: str) -> Iterator[RepoFile]:
        """Every file of the repo at commit ``sha``, as they are listed (a Hub listing arrives 1,000 per page)."""

    def list_files(self, sha: str) -> list[RepoFile]:
        """Every file of the repo at commit ``sha``, recursively."""

    def blob_ids(self, sha: str, paths: Sequence[str]) -> dict[str, str]:
        """``{path: git blob id}`` of those of ``paths`` that are files of the repo at commit ``sha`` (the others are
        left out), without listing the whole repo: what a task recorded without its blob id showed.

        Raises:
            labelhub.errors.RepoNotFound, labelhub.errors.RevisionNotFound: as for :meth:`resolve`.
        """

    def read_file(self, sha: str, path: str) -> bytes:
        """The bytes of ``path`` at commit ``sha``."""

    def file_url(self, sha: str, path: str) -> str:
        """A URL of ``path`` pinned to commit ``sha``, for the task data (a Hub ``resolve`` URL or a
        signed URL of the backend's file route, see :mod:`labelhub.file_urls`)."""

    def describe_file_urls(self) -> str:
        """One log line saying which form :meth:`file_url` returns, and why."""


def resolving_the_rest(repo: DatasetRepo, wanted: Sequence[str], held: set[str]) -> set[str]:
    """``held`` with those of ``wanted`` not in it that ``repo.resolve`` finds, one call each: the end of each
    repo's :meth:`DatasetRepo.held_commits` for the shas its batch could not answer.

    Raises:
        labelhub.errors.RepoNotFound: as :meth:`DatasetRepo.resolve` (a sha not found is left out).
    """
    from labelhub.errors import RevisionNotFound

    for sha in wanted:
        if sha not in held:
            try:
                repo.resolve(sha)
            except RevisionNotFound:
                continue
            held.add(sha)
    return held
