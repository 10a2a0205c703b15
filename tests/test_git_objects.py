"""Files at a commit of a local git repository (:class:`labelhub.repos.git.GitObjects`), the one reader of the sync's
texts (:meth:`LocalGitRepo.read_file`) and the backend's file route, against repositories made by the real git."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from labelhub.errors import EntryNotFound
from labelhub.repos.git import GitObjects, LocalGitRepo, git

IDENTITY = ("Test", "test@localhost")


def commit_all(repo, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, identity=IDENTITY)
    return git(repo, "rev-parse", "HEAD").decode().strip()


@pytest.fixture(params=["sha1", "sha256"])
def repo(tmp_path, request):
    path = tmp_path / "repo"
    git(tmp_path, "init", "-q", f"--object-format={request.param}", str(path))
    (path / "a" / "b").mkdir(parents=True)
    (path / "a" / "b" / "deep text.txt").write_text("déjà vu\n")
    (path / "top.bin").write_bytes(bytes(range(256)))
    (path / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(path / "run.sh", 0o755)
    os.symlink("top.bin", path / "link.bin")
    os.symlink("a", path / "dirlink")
    return path


def test_regular_files_read_and_everything_else_is_none(repo):
    sha = commit_all(repo, "files")
    objects = GitObjects(repo)
    oid, data = objects.blob(sha, "a/b/deep text.txt")
    assert data == "déjà vu\n".encode()
    assert oid == git(repo, "rev-parse", f"{sha}:a/b/deep text.txt").decode().strip()
    assert objects.blob(sha, "top.bin")[1] == bytes(range(256))
    assert objects.blob(sha, "run.sh")[1] == b"#!/bin/sh\n"  # executable
    for path in ("link.bin", "dirlink/b/deep text.txt", "a", "a/b", "missing.txt", "a/missing", "top.bin/x", ""):
        assert objects.blob(sha, path) is None, path
    assert objects.blob("0" * len(sha), "top.bin") is None  # not an object of the repository
    assert objects.blob("not-a-sha", "top.bin") is None


def test_read_file_raises_entry_not_found_for_what_is_not_a_regular_file(repo):
    sha = commit_all(repo, "files")
    dataset = LocalGitRepo(repo)
    assert dataset.read_file(sha, "a/b/deep text.txt") == "déjà vu\n".encode()
    for path in ("link.bin", "a", "missing.txt"):
        with pytest.raises(EntryNotFound, match="not a regular file"):
            dataset.read_file(sha, path)


def test_an_open_reader_sees_commits_made_by_git_after_it_and_old_commits_stay(repo):
    first = commit_all(repo, "first")
    objects = GitObjects(repo)
    assert objects.blob(first, "top.bin")[1] == bytes(range(256))
    (repo / "top.bin").write_bytes(b"new")
    (repo / "added.txt").write_text("added")
    second = commit_all(repo, "second")
    git(repo, "gc", "-q")  # the loose objects go into a pack the reader has not seen
    assert objects.blob(second, "top.bin")[1] == b"new"
    assert objects.blob(second, "added.txt")[1] == b"added"
    assert objects.blob(first, "top.bin")[1] == bytes(range(256))
    assert objects.blob(first, "added.txt") is None


def test_threads_read_one_reader_at_once(repo):
    for i in range(200):
        (repo / "many" / f"{i % 7}").mkdir(parents=True, exist_ok=True)
        (repo / "many" / f"{i % 7}" / f"{i}.txt").write_text(str(i) * (i + 1))
    sha = commit_all(repo, "many")
    git(repo, "gc", "-q")  # read from a pack: dulwich's pack readers seek one file, a repository object per thread
    objects = GitObjects(repo)
    with ThreadPoolExecutor(8) as pool:
        read = list(pool.map(lambda i: objects.blob(sha, f"many/{i % 7}/{i}.txt")[1], list(range(200)) * 3))
    assert read == [(str(i) * (i + 1)).encode() for i in range(200)] * 3


def test_the_listing_leaves_symlinks_out_with_a_warning(repo, caplog):
    sha = commit_all(repo, "files")
    listed = {f.path for f in LocalGitRepo(repo).list_files(sha)}
    assert listed == {"a/b/deep text.txt", "top.bin", "run.sh"}
    assert "2 symlinks of" in caplog.text and "link.bin" in caplog.text
