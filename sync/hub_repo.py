"""A dataset repo on the Hugging Face Hub, through the ``huggingface_hub`` client.

Calls used (https://huggingface.co/docs/huggingface_hub/package_reference/hf_api):
``repo_info`` (one call: resolves the revision), ``list_repo_tree(recursive=True)`` (paged, 1,000
entries a page), ``hf_hub_download`` (the shared cache) and ``hf_hub_url`` (no call).
"""
from __future__ import annotations

from contextlib import contextmanager

import httpx2
from huggingface_hub import HfApi, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile as HubRepoFile
from tqdm.auto import tqdm

from sync.errors import HubError, RepoNotFound, RevisionNotFound
from sync.repo import RepoFile

REPO_TYPE = "dataset"


@contextmanager
def hub_errors(endpoint: str):
    """Turn the client's transport and HTTP errors that no caller handles into :class:`HubError`."""
    try:
        yield
    except httpx2.TransportError as exc:
        raise HubError(f"cannot reach the Hub at {endpoint}: {type(exc).__name__}: {exc}") from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, GatedRepoError):
        raise
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "no response"
        raise HubError(f"the Hub at {endpoint} answered {status}: {exc.server_message or exc}") from None


class HubRepo:
    """A Hub dataset repo ``owner/name``.

    Args:
        repo_id: ``owner/name``.
        token: a Hub token with read access (write access for exports); ``None`` for public repos.
        endpoint: the Hub URL; ``None`` uses ``HF_ENDPOINT`` or ``https://huggingface.co``.
    """

    def __init__(self, repo_id: str, token: str | None = None, endpoint: str | None = None):
        self.repo_id = repo_id
        self.token = token
        self.api = HfApi(endpoint=endpoint, token=token)
        self.endpoint = self.api.endpoint

    def __repr__(self) -> str:  # never shows the token
        return f"HubRepo({self.repo_id!r}, endpoint={self.endpoint!r})"

    def resolve(self, revision: str) -> str:
        """See :meth:`sync.repo.DatasetRepo.resolve`. One Hub API call."""
        try:
            with hub_errors(self.endpoint):
                return self.api.repo_info(self.repo_id, repo_type=REPO_TYPE, revision=revision).sha
        except RevisionNotFoundError:
            raise RevisionNotFound(f"revision {revision!r} not found in dataset {self.repo_id}") from None
        except (RepositoryNotFoundError, GatedRepoError):
            raise RepoNotFound(f"dataset {self.repo_id} not found at {self.endpoint} "
                               "(or HF_TOKEN cannot read it)") from None

    def list_files(self, sha: str) -> list[RepoFile]:
        """See :meth:`sync.repo.DatasetRepo.list_files`. One Hub call per 1,000 entries."""
        entries = self.api.list_repo_tree(self.repo_id, repo_type=REPO_TYPE, revision=sha, recursive=True)
        files = []
        with hub_errors(self.endpoint):
            for entry in tqdm(entries, desc=f"listing {self.repo_id}", unit=" entries", leave=False):
                if isinstance(entry, HubRepoFile):
                    files.append(RepoFile(entry.path, entry.size, entry.blob_id))
        return files

    def read_file(self, sha: str, path: str) -> bytes:
        """See :meth:`sync.repo.DatasetRepo.read_file`; reads through huggingface_hub's cache.

        Raises:
            FileNotFoundError: ``path`` is not in the repo at ``sha``.
        """
        try:
            with hub_errors(self.endpoint):
                local = hf_hub_download(self.repo_id, path, repo_type=REPO_TYPE, revision=sha,
                                        token=self.token, endpoint=self.endpoint)
        except EntryNotFoundError:
            raise FileNotFoundError(f"{path} not found in dataset {self.repo_id} at {sha}") from None
        with open(local, "rb") as fh:
            return fh.read()

    def file_url(self, sha: str, path: str) -> str:
        """``{endpoint}/datasets/{repo_id}/resolve/{sha}/{path}`` (``hf_hub_url``), no call."""
        return hf_hub_url(self.repo_id, path, repo_type=REPO_TYPE, revision=sha, endpoint=self.endpoint)
