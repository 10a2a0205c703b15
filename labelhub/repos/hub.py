"""A dataset repo on the Hugging Face Hub, through the ``huggingface_hub`` client.

Every error the client raises is converted into :mod:`labelhub.errors` here (:func:`hub_errors`).
Calls used (https://huggingface.co/docs/huggingface_hub/package_reference/hf_api):
``list_repo_refs`` (one call: the poll's head and tags), ``repo_info`` (one call: resolves a revision and
tells the repo's visibility), ``list_repo_tree(recursive=True)`` (paged, 1,000 entries a page),
``hf_hub_download`` (the shared cache) and ``hf_hub_url`` (no call); for the export ``create_commit``
(``validate-yaml`` when ``README.md`` is committed, ``preupload`` unless every file's upload mode is already
known, see :meth:`HubRepo.commit`, and ``commit``), ``create_tag`` and, only after a lost answer or a conflict,
``list_repo_commits`` and ``list_repo_refs``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile as HubRepoFile

from labelhub.cli_options import progress_bar
from labelhub.errors import (
    AmbiguousCommit,
    CommitConflict,
    EntryNotFound,
    FileTooLarge,
    HubError,
    HubUnreachable,
    RepoNotFound,
    RevisionNotFound,
    TagExists,
    TransientHubError,
)
from labelhub.file_urls import FileURLs
from labelhub.repos.base import RepoFile
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
log = logging.getLogger(__name__)


@contextmanager
def hub_errors(endpoint: str, repo_id: str = "", revision: str = "", path: str = ""):
    """Convert every error the ``huggingface_hub`` client raises inside the block into LabelHub's tree.

    Args:
        endpoint: The Hub URL (in messages).
        repo_id, revision, path: What the block reads (in messages; never a token).

    Raises:
        RepoNotFound: The repo does not exist, is gated, or the token cannot read it.
        RevisionNotFound: The revision does not exist.
        EntryNotFound: The file does not exist at that revision (also a ``FileNotFoundError``).
        TransientHubError: 429 or 5xx (with ``Retry-After`` when the Hub sent one).
        HubUnreachable: No answer (refused, timeout, dropped).
        HubError: Any other HTTP error.
    """
    try:
        yield
    except httpx2.TransportError as exc:
        raise HubUnreachable(f"cannot reach the Hub at {endpoint}: {type(exc).__name__}: {exc}") from None
    except RevisionNotFoundError:
        raise RevisionNotFound(f"revision {revision!r} not found in dataset {repo_id}") from None
    except EntryNotFoundError:
        raise EntryNotFound(f"{path} not found in dataset {repo_id} at {revision}") from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise RepoNotFound(f"dataset {repo_id} not found at {endpoint} (or HF_TOKEN cannot read it)") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        message = f"the Hub at {endpoint} answered {status}: {exc.server_message or exc}"
        if status == 429 or (status or 0) >= 500:
            retry_after = exc.response.headers.get("Retry-After")
            raise TransientHubError(message, status, float(retry_after) if retry_after else None) from None
        raise HubError(message, status) from None


def download(repo_id: str, path: str, revision: str, token: str | None = None, endpoint: str | None = None,
             etag_timeout: float = 10, repo_type: str = REPO_TYPE, max_bytes: int | None = None) -> str:
    """A repo file at ``revision`` in huggingface_hub's cache (``hf_hub_download``, one download per blob).

    With ``max_bytes``, the file's size is asked first and a larger file is refused before any of it is
    downloaded: ``hf_hub_download(dry_run=True)`` (huggingface_hub 2.x, pinned in ``pyproject.toml``) answers
    ``DryRunFileInfo.file_size``, ``get_hf_file_metadata``'s size from the ``HEAD`` answer's ``X-Linked-Size``
    or ``Content-Length``
    (https://huggingface.co/docs/huggingface_hub/package_reference/file_download#huggingface_hub.hf_hub_download).
    A file already in the cache is then taken at the commit that ``HEAD`` answered, with no other call (none at
    all when ``revision`` is a commit sha); a new one is downloaded at ``revision``, which costs one ``HEAD``
    more than without ``max_bytes`` (``hf_hub_download`` takes no metadata from its caller, so it asks again)
    and keeps ``refs/<revision>``, by which huggingface_hub finds a branch's cached files when the Hub does not
    answer. The downloaded file is measured too: for a Hub that did not tell the size, or a branch that moved
    between the two ``HEAD`` calls.

    What bounds the ``GET`` is huggingface_hub's: ``HF_HUB_DOWNLOAD_TIMEOUT`` seconds (10 by default) for
    each read, with up to 5 resumes, and no limit on the whole download's duration; an answer longer than the
    ``HEAD``'s size is written whole, then refused by its consistency check (an ``OSError``). The Hub at
    ``HF_ENDPOINT`` is trusted to answer at its own pace.

    Args:
        repo_id: ``owner/name``.
        repo_type: ``"dataset"`` (default), ``"model"`` or ``"space"``.
        path: The ``path_in_repo``.
        revision: A commit sha (or a branch or tag).
        token: A Hub token that can read the repo; ``None`` for public repos.
        endpoint: The Hub URL; ``None``: ``HF_ENDPOINT`` or ``https://huggingface.co``.
        etag_timeout: Seconds to wait for the Hub's metadata answer.
        max_bytes: The largest file accepted, in bytes; ``None``: any size, no extra call.

    Returns:
        The local path of the file (a symlink into the cache's ``blobs/``).

    Raises:
        FileTooLarge: The file is larger than ``max_bytes`` (as the Hub declared it, or as downloaded).
        As :func:`hub_errors`.
    """
    with hub_errors(endpoint or "the Hub", repo_id, revision, path):
        if max_bytes is None:
            return hf_hub_download(repo_id, path, repo_type=repo_type, revision=revision, token=token,
                                   endpoint=endpoint, etag_timeout=etag_timeout)
        info = hf_hub_download(repo_id, path, repo_type=repo_type, revision=revision, token=token,
                               endpoint=endpoint, etag_timeout=etag_timeout, dry_run=True)
        _check_size(repo_id, path, info.file_size, max_bytes)
        local = hf_hub_download(repo_id, path, repo_type=repo_type, token=token, endpoint=endpoint,
                                revision=info.commit_hash if info.is_cached else revision, etag_timeout=etag_timeout)
    _check_size(repo_id, path, os.path.getsize(local), max_bytes)
    return local


def _check_size(repo_id: str, path: str, size: int | None, max_bytes: int) -> None:
    """Raise :class:`~labelhub.errors.FileTooLarge` when ``size`` (bytes; ``None``: unknown) is over ``max_bytes``."""
    if size is not None and size > max_bytes:
        raise FileTooLarge(f"{path} of {repo_id} has {size} bytes, more than the {max_bytes} accepted", size,
                           max_bytes)


class HubRepo:
    """A Hub dataset repo ``owner/name``.

    Args:
        repo_id: ``owner/name``.
        token: a Hub token with read access (write access for exports); ``None`` for public repos.
        endpoint: the Hub URL; ``None`` uses ``HF_ENDPOINT`` or ``https://huggingface.co``.
        file_urls: how file URLs are made (:class:`labelhub.file_urls.FileURLs`); ``None``: always the
            pinned ``resolve`` URL.

    Attributes:
        private: whether the repo is private, as the last :meth:`resolve` saw it (``None`` before).
    """

    def __init__(self, repo_id: str, token: str | None = None, endpoint: str | None = None,
                 file_urls: FileURLs | None = None):
        self.repo_id = repo_id
        self.token = token
        self.api = HfApi(endpoint=endpoint, token=token)
        self.endpoint = self.api.endpoint
        self.key = repo_key(repo_id)
        self.file_urls = file_urls
        self.private: bool | None = None
        self.local = False  # a Hub repo (see labelhub.repos.DatasetRepo)
        self._resolve_prefix = ("", "")  # (sha, hf_hub_url of the commit's root), see file_url
        self._regular_paths: set[str] = set()  # paths the Hub's preupload answered "regular" for, see commit

    def __repr__(self) -> str:  # never shows the token
        return f"HubRepo({self.repo_id!r}, endpoint={self.endpoint!r})"

    def default_revision(self) -> str:
        """``main``, the Hub's default branch (see :meth:`labelhub.repos.DatasetRepo.default_revision`)."""
        return "main"

    def resolve(self, revision: str) -> str:
        """See :meth:`labelhub.repos.DatasetRepo.resolve`. One Hub API call (``repo_info``), which also
        tells whether the repo is private (:attr:`private`, for :meth:`file_url`)."""
        with hub_errors(self.endpoint, self.repo_id, revision):
            info = self.api.repo_info(self.repo_id, repo_type=REPO_TYPE, revision=revision)
        private = bool(info.private) if info.private is not None else None
        if self.private is not None and private != self.private and self.file_urls is not None:
            log.warning("dataset %s is now %s: new tasks get %s", self.repo_id,
                        "private" if private else "public", self.describe_file_urls(private))
        self.private = private
        return info.sha

    def iter_files(self, sha: str) -> Iterator[RepoFile]:
        """See :meth:`labelhub.repos.DatasetRepo.iter_files`: ``list_repo_tree(recursive=True)``, one Hub call per
        1,000 entries, made as the files are consumed. When the repo's visibility decides the form of
        :meth:`file_url` (``--file-urls auto`` with a secret), one ``repo_info`` call first refreshes
        :attr:`private`: the poll (:meth:`head_and_tags`) does not tell it, and a listing comes before new
        tasks' URLs are made."""
        if self.file_urls is not None and (self.file_urls.form(local=False, private=True)
                                           != self.file_urls.form(local=False, private=False)):
            self.resolve(sha)
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
        local = download(self.repo_id, path, sha, token=self.token, endpoint=self.endpoint)
        with open(local, "rb") as fh:
            return fh.read()

    def file_url(self, sha: str, path: str) -> str:
        """The file's URL pinned to ``sha``, no call: ``{endpoint}/datasets/{repo_id}/resolve/{sha}/{path}``
        (``hf_hub_url``'s, its commit part made once per commit) for a public repo, or the backend's signed URL
        ``{public_url}/files/{owner--name}/{sha}/{path}?sig=...`` for a private one (the choice:
        :meth:`labelhub.file_urls.FileURLs.form`, with :attr:`private` from the last :meth:`resolve`)."""
        if self.file_urls is not None and self.file_urls.form(local=False, private=self.private) == "proxy":
            return self.file_urls.proxy_url(self.key, sha, path)
        if self._resolve_prefix[0] != sha:  # hf_hub_url once per commit: it costs 30 µs, a third of a task's making
            root = hf_hub_url(self.repo_id, "", repo_type=REPO_TYPE, revision=sha, endpoint=self.endpoint)
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
            HubError: any other failure.
        """
        def create_commit(operations: list[CommitOperationAdd]) -> str:
            try:
                with hub_errors(self.endpoint, self.repo_id, revision):
                    return self.api.create_commit(self.repo_id, operations, commit_message=message,
                                                  commit_description=description, repo_type=REPO_TYPE,
                                                  revision=revision, parent_commit=parent_commit).oid
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
            raise

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
        with hub_errors(self.endpoint):
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
            with hub_errors(self.endpoint):
                self.api.create_tag(self.repo_id, tag=tag, tag_message=message or None, revision=sha,
                                    repo_type=REPO_TYPE)
        except HubError as exc:
            if exc.status == 409:
                raise TagExists(f"tag {tag} exists in {self.repo_id}") from None
            raise

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
        ``repo_info`` (:meth:`resolve`) when ``revision`` is neither a branch nor a tag."""
        with hub_errors(self.endpoint, self.repo_id, revision):
            refs = self.api.list_repo_refs(self.repo_id, repo_type=REPO_TYPE)
        heads = {ref.name: ref.target_commit for ref in refs.branches}
        tags = {ref.name: ref.target_commit for ref in refs.tags}
        sha = heads.get(revision) or tags.get(revision) or self.resolve(revision)
        return sha, tags

    def commit_info(self, sha: str) -> tuple[str, str]:
        """``(date ISO 8601, title)`` of commit ``sha``. One Hub call."""
        with hub_errors(self.endpoint):
            commit = self.api.list_repo_commits(self.repo_id, repo_type=REPO_TYPE, revision=sha)[0]
        return commit.created_at.isoformat(), commit.title
