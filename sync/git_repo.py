"""A local git repository as a dataset repo, read with the ``git`` command at a pinned commit.

Files are always read from commits (``git ls-tree``, ``git cat-file``), never from the working
tree, so what a task shows is exactly what the commit holds.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from sync.errors import CommitConflict, RepoNotFound, RevisionNotFound, TagExists
from sync.file_urls import DEFAULT_PUBLIC_URL, FileURLs
from sync.repo import RepoFile
from sync.signing import repo_key


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
            route (:mod:`backend.files`). Default ``http://127.0.0.1:9090``.
        file_urls: how file URLs are made (:class:`sync.file_urls.FileURLs`: signed with
            ``LABELHUB_SECRET`` when it has a secret); its ``public_url`` wins over ``public_url``.
            ``None``: unsigned URLs at ``public_url``.

    Raises:
        sync.errors.RepoNotFound: ``path`` is not a git repository.
    """

    def __init__(self, path: str | os.PathLike, public_url: str | None = None, file_urls: FileURLs | None = None):
        self.path = Path(path).resolve()
        try:
            git(self.path, "rev-parse", "--git-dir")
        except (subprocess.CalledProcessError, FileNotFoundError, NotADirectoryError):
            raise RepoNotFound(f"{self.path} is not a git repository") from None
        self.repo_id = str(self.path)
        self.name = self.path.name
        self.key = repo_key(str(self.path), local=True)
        self.file_urls = file_urls or FileURLs(public_url=public_url or DEFAULT_PUBLIC_URL)
        self.public_url = self.file_urls.public_url
        self.private = True  # no one but the backend can serve its files

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
        """``{public_url}/files/{repo name}/{sha}/{path}?sig=...`` (served by the backend's file route,
        signed as in :mod:`sync.signing` when ``file_urls`` has a secret), no call."""
        return self.file_urls.proxy_url(self.key, sha, path)

    def describe_file_urls(self) -> str:
        """One log line: which form this repo's file URLs take (:meth:`sync.file_urls.FileURLs.describe`)."""
        return self.file_urls.describe(self.repo_id, local=True, private=True)

    # writing (the export)
    def commit(self, files: dict[str, bytes], message: str, description: str, parent_commit: str,
               revision: str = "main") -> str:
        """One atomic commit on branch ``revision`` made with git plumbing (a temporary index,
        ``commit-tree``) and a compare-and-swap of the branch (``update-ref NEW OLD``): the work tree
        is not touched (run ``git reset --hard`` in a non-bare repo to see the exported files).

        Raises:
            CommitConflict: the branch is no longer at ``parent_commit``.
        """
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
            git(self.path, "read-tree", parent_commit, env=env)
            for path, data in files.items():
                blob = git(self.path, "hash-object", "-w", "--stdin", input=data).decode().strip()
                git(self.path, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            tree = git(self.path, "write-tree", env=env).decode().strip()
        identity = {"GIT_AUTHOR_NAME": "LabelHub", "GIT_AUTHOR_EMAIL": "labelhub@localhost",
                    "GIT_COMMITTER_NAME": "LabelHub", "GIT_COMMITTER_EMAIL": "labelhub@localhost"}
        full_message = f"{message}\n\n{description}\n" if description else f"{message}\n"
        sha = git(self.path, "commit-tree", tree, "-p", parent_commit, input=full_message.encode(),
                  env=identity).decode().strip()
        try:
            git(self.path, "update-ref", f"refs/heads/{revision}", sha, parent_commit)
        except subprocess.CalledProcessError:
            raise CommitConflict(f"branch {revision} of {self.path} moved since {parent_commit[:12]}") from None
        return sha

    def find_commit(self, marker: str, revision: str = "main", depth: int = 50) -> str | None:
        """The newest of the last ``depth`` commits of ``revision`` whose message contains ``marker``."""
        out = git(self.path, "log", f"-{depth}", "--format=%H", "--fixed-strings", f"--grep={marker}", revision)
        shas = out.decode().split()
        return shas[0] if shas else None

    def create_tag(self, tag: str, sha: str, message: str = "") -> None:
        """Tag commit ``sha`` (an annotated tag when ``message`` is given).

        Raises:
            TagExists: the tag exists.
        """
        if self.tags().get(tag):
            raise TagExists(f"tag {tag} exists in {self.path}")
        args = ["-a", "-m", message] if message else []
        git(self.path, "-c", "user.name=LabelHub", "-c", "user.email=labelhub@localhost", "tag", *args, tag, sha)

    def tags(self) -> dict[str, str]:
        """``{tag name: commit sha}``."""
        out = git(self.path, "for-each-ref", "--format=%(refname:short) %(objectname) %(*objectname)", "refs/tags")
        tags = {}
        for line in out.decode().splitlines():
            name, obj, peeled = (line.split() + [""])[:3]
            tags[name] = peeled or obj
        return tags

    def commit_info(self, sha: str) -> tuple[str, str]:
        """``(date ISO 8601, title)`` of commit ``sha``."""
        date, title = git(self.path, "log", "-1", "--format=%cI%n%s", sha).decode().split("\n", 1)
        return date, title.strip()
