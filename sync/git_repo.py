"""A local git repository as a dataset repo, read with the ``git`` command at a pinned commit.

Files are always read from commits (``git ls-tree``, ``git cat-file``), never from the working
tree, so what a task shows is exactly what the commit holds.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import quote

from sync.errors import RepoNotFound, RevisionNotFound
from sync.repo import RepoFile

DEFAULT_PUBLIC_URL = "http://127.0.0.1:9090"


def git(repo_dir: Path, *args: str, input: bytes | None = None, env: dict | None = None) -> bytes:
    """Run ``git ARGS`` in ``repo_dir`` and return its stdout.

    Raises:
        subprocess.CalledProcessError: git failed (``stderr`` holds its message).
    """
    return subprocess.run(["git", *args], cwd=repo_dir, input=input, capture_output=True, check=True,
                          env={**os.environ, **(env or {})}).stdout


class LocalGitRepo:
    """A git repository on disk (bare or with a work tree).

    Args:
        path: the repository's directory.
        public_url: the backend's URL as the browser sees it (``LABELHUB_PUBLIC_URL``); file URLs
            are ``{public_url}/files/{repo name}/{sha}/{path}``, served by the backend's file
            route. Default ``http://127.0.0.1:9090``.

    Raises:
        sync.errors.RepoNotFound: ``path`` is not a git repository.
    """

    def __init__(self, path: str | os.PathLike, public_url: str | None = None):
        self.path = Path(path).resolve()
        try:
            git(self.path, "rev-parse", "--git-dir")
        except (subprocess.CalledProcessError, FileNotFoundError, NotADirectoryError):
            raise RepoNotFound(f"{self.path} is not a git repository") from None
        self.repo_id = str(self.path)
        self.name = self.path.name
        self.public_url = (public_url or DEFAULT_PUBLIC_URL).rstrip("/")

    def __repr__(self) -> str:
        return f"LocalGitRepo({str(self.path)!r})"

    def resolve(self, revision: str) -> str:
        """See :meth:`sync.repo.DatasetRepo.resolve` (``git rev-parse --verify REV^{commit}``)."""
        try:
            return git(self.path, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").decode().strip()
        except subprocess.CalledProcessError:
            raise RevisionNotFound(f"revision {revision!r} not found in {self.path}") from None

    def list_files(self, sha: str) -> list[RepoFile]:
        """See :meth:`sync.repo.DatasetRepo.list_files` (``git ls-tree -r -l -z``)."""
        out = git(self.path, "ls-tree", "-r", "-l", "-z", sha)
        files = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, path = record.split(b"\t", 1)
            _mode, kind, oid, size = meta.split()
            if kind == b"blob":
                files.append(RepoFile(path.decode(), int(size), oid.decode()))
        return files

    def read_file(self, sha: str, path: str) -> bytes:
        """See :meth:`sync.repo.DatasetRepo.read_file`.

        Raises:
            FileNotFoundError: ``path`` is not in the repo at ``sha``.
        """
        try:
            return git(self.path, "cat-file", "blob", f"{sha}:{path}")
        except subprocess.CalledProcessError:
            raise FileNotFoundError(f"{path} not found in {self.path} at {sha}") from None

    def file_url(self, sha: str, path: str) -> str:
        """``{public_url}/files/{repo name}/{sha}/{path}`` (served by the backend), no call."""
        return f"{self.public_url}/files/{quote(self.name)}/{sha}/{quote(path)}"
