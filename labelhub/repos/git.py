"""Local git repositories: :func:`git`, :class:`LocalGitRepo` (a dataset repo for the sync) and
:class:`GitObjects` (files at a commit, read in-process: the sync's texts and the backend's file route).

Files are always read from commits (``git ls-tree``, :class:`GitObjects`), never from the working tree, so
what a task shows is exactly what the commit holds. Every git command runs with ``safe.directory`` set to
the repository, so a repository owned by another user (a volume in a container) is read all the same.

An export's writes (its commit, its tag) are made in-process with dulwich (https://www.dulwich.io), the
pure-Python implementation of git's object store and refs: no git process on the annotation → tagged commit
path, each costing 5 to 8 ms to start beside a busy Label Studio (but every :attr:`LocalGitRepo.PACK_EVERY`-th
commit's ``git repack``, :meth:`LocalGitRepo.pack_loose_objects`). Files are read with dulwich too
(:class:`GitObjects`: an export may read thousands of files' texts, :mod:`labelhub.repos.texts`, and the backend
serves every image of a local repository).

Git LFS (a ``git clone`` of a Hub dataset: its ``.gitattributes`` says ``filter=lfs``): git's objects hold a pointer
(``version https://git-lfs.github.com/spec/v1``, the object's ``oid sha256:...`` and ``size``,
https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md) and git-lfs keeps the file's bytes in its storage,
``.git/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>``. Decided: a pointer's file is read from there (:class:`GitObjects`,
checked against the pointer's size and sha256), never shown as its pointer; one whose object is not there (a clone
made with ``GIT_LFS_SKIP_SMUDGE=1`` or without git-lfs, ``git lfs fetch`` not run) is left out of the listing with
one warning saying how many and to run ``git lfs fetch`` (:meth:`LocalGitRepo.list_files`), and is no regular file to
its readers (``None``, :class:`labelhub.errors.EntryNotFound`, the backend's 404). A pointer is told from its tree
entry's size first (:data:`LFS_POINTER_SIZES`), so a listing reads only the blobs of that size.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cachetools
from cachetools import LRUCache

from labelhub.errors import CommitConflict, EntryNotFound, RepoNotFound, RevisionNotFound, TagExists
from labelhub.file_urls import DEFAULT_PUBLIC_URL, FileURLs
from labelhub.repos.base import RepoFile, resolving_the_rest
from labelhub.signing import repo_key


__all__ = ["git", "is_git_repo", "GitObjects", "LocalGitRepo"]

log = logging.getLogger(__name__)

#: Paths per ``git ls-tree`` of :meth:`LocalGitRepo.blob_ids` (far under any system's command line limit).
PATHS_PER_CALL = 1000
#: A whole commit id (SHA-1 or SHA-256), which :meth:`LocalGitRepo.held_commits` looks up in one ``git cat-file``.
_FULL_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
#: A git LFS pointer as the spec writes it (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md): the version
#: line, then ``oid sha256:<64 hex>`` and ``size <bytes>``, each line ending in a line feed. Decided: exactly that; a
#: pointer with extension lines (``ext-0-...``, whose object is not the file's bytes) is read as a file like any other.
_LFS_POINTER = re.compile(rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize ([0-9]+)\n")
#: The sizes of a blob that can be such a pointer: 125 bytes and the size's digits (the spec keeps pointers under 200
#: bytes). Only the blobs of these sizes are read to tell a pointer (:meth:`LocalGitRepo.list_files`).
LFS_POINTER_SIZES = range(126, 200)


def lfs_pointer(data: bytes) -> tuple[str, int] | None:
    """``(oid, size)`` of the git LFS object ``data`` points to (:data:`_LFS_POINTER`), or ``None`` when ``data`` is
    no such pointer."""
    found = _LFS_POINTER.fullmatch(data) if len(data) in LFS_POINTER_SIZES else None
    return (found[1].decode(), int(found[2])) if found else None


def git(repo_dir: str | os.PathLike, *args: str, input: bytes | None = None, env: dict | None = None,
        identity: tuple[str, str] | None = None) -> bytes:
    """Run ``git ARGS`` in ``repo_dir`` and return its stdout.

    Args:
        repo_dir: The repository (or the folder to run in).
        *args: git's arguments, e.g. ``"ls-tree", "-r", sha``.
        input: Bytes for git's stdin.
        env: Extra environment variables (``GIT_INDEX_FILE``, ...).
        identity: ``(name, email)`` of the author and committer of commits and tags made by the command.

    Returns:
        git's stdout (bytes).

    Raises:
        subprocess.CalledProcessError: git failed (``stderr`` holds its message).
        FileNotFoundError, NotADirectoryError: ``repo_dir`` does not exist (or git is not installed).
    """
    extra = dict(env or {})
    if identity:
        name, email = identity
        extra.update(GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email)
    return subprocess.run(["git", "-c", f"safe.directory={Path(repo_dir).resolve()}", *args], cwd=repo_dir,
                          input=input, capture_output=True, check=True, env={**os.environ, **extra}).stdout


def is_git_repo(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a git repository (bare or with a work tree)."""
    try:
        git(path, "rev-parse", "--git-dir")
    except (subprocess.CalledProcessError, FileNotFoundError, NotADirectoryError):
        return False
    return True


#: The author and committer of what LabelHub writes into a local repository.
IDENTITY = ("LabelHub", "labelhub@localhost")


def _identity() -> bytes:
    """:data:`IDENTITY` as git writes a person in an object: ``Name <email>``."""
    return f"{IDENTITY[0]} <{IDENTITY[1]}>".encode()


def _utc_offset() -> int:
    """This machine's offset from UTC now, in seconds (what git records beside a commit's or tag's time)."""
    return time.localtime().tm_gmtoff


def _compress_loose_objects_as_git_does(repo) -> None:
    """Compress the loose objects ``repo`` (a dulwich ``Repo``) writes at git's level: ``core.looseCompression``,
    else ``core.compression``, else 1 (zlib's best speed), as git documents it
    (https://git-scm.com/docs/git-config#Documentation/git-config.txt-corelooseCompression). dulwich reads only the
    repository's own config and falls back to zlib's default level (6), which took 2.5 times as long on an
    export's CSV of 10,000 rows (79 against 31 ms for 1.7 MB) for objects 9 % smaller."""
    config = repo.get_config_stack()
    for key in (b"looseCompression", b"compression"):
        try:
            repo.object_store.loose_compression_level = int(config.get((b"core",), key))
            return
        except (KeyError, ValueError):
            continue
    repo.object_store.loose_compression_level = 1


class LocalGitRepo:
    """A git repository on disk (bare or with a work tree).

    Args:
        path: the repository's directory.
        public_url: the backend's URL as the browser sees it (``LABELHUB_PUBLIC_URL``); file URLs
            are ``{public_url}/files/{repo name}/{sha}/{path}``, served by the backend's file
            route (:mod:`labelhub.backend.files`). Default ``http://127.0.0.1:9090``.
        file_urls: how file URLs are made (:class:`labelhub.file_urls.FileURLs`: signed with
            ``LABELHUB_SECRET`` when it has a secret); its ``public_url`` wins over ``public_url``.
            ``None``: unsigned URLs at ``public_url``.

    Raises:
        labelhub.errors.RepoNotFound: ``path`` is not a git repository.
    """

    def __init__(self, path: str | os.PathLike, public_url: str | None = None, file_urls: FileURLs | None = None):
        self.path = Path(path).resolve()
        if not is_git_repo(self.path):
            raise RepoNotFound(f"{self.path} is not a git repository")
        self.repo_id = str(self.path)
        self.name = self.path.name
        self.key = repo_key(str(self.path), local=True)
        self.file_urls = file_urls or FileURLs(public_url=public_url or DEFAULT_PUBLIC_URL)
        self.public_url = self.file_urls.public_url
        self.private = True  # no one but the backend can serve its files
        self.local = True
        self._commits = 0  # by this object: every PACK_EVERY-th packs the loose objects
        self.objects = GitObjects(self.path)  # read_file's reader, and the dulwich repository the export writes with

    #: Every this many commits (:meth:`commit`), the repository's loose objects go into one pack: each export writes
    #: a few dozen loose objects (and a rebuilt export's first attempt leaves its own), which nothing else packs.
    PACK_EVERY = 50

    def __repr__(self) -> str:
        return f"LocalGitRepo({str(self.path)!r})"

    def default_revision(self) -> str:
        """The checked-out branch (``git symbolic-ref --short HEAD``): ``master`` after a plain ``git init`` on
        many systems, ``main`` on others (see :meth:`labelhub.repos.DatasetRepo.default_revision`).

        Raises:
            RevisionNotFound: ``HEAD`` is detached (no branch to follow and to write versions to).
        """
        try:
            return git(self.path, "symbolic-ref", "--short", "-q", "HEAD").decode().strip()
        except subprocess.CalledProcessError:
            raise RevisionNotFound(f"HEAD of {self.path} is detached: pass --revision BRANCH") from None

    def resolve(self, revision: str) -> str:
        """See :meth:`labelhub.repos.DatasetRepo.resolve` (``git rev-parse --verify REV^{commit}``).

        Raises:
            RevisionNotFound: ``revision`` is no commit of the repo; the message names up to 5 of its branches, the
                checked-out one first (``--revision main`` on a repo whose branch is ``master``), or says it has
                none (no commit yet).
        """
        try:
            return git(self.path, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").decode().strip()
        except subprocess.CalledProcessError:
            raise RevisionNotFound(f"revision {revision!r} not found in {self.path}: {self._branches_hint()}") from None

    def held_commits(self, shas: Iterable[str], head: str) -> set[str]:
        """See :meth:`labelhub.repos.DatasetRepo.held_commits`: one ``git cat-file --batch-check`` of ``SHA^{commit}``
        for every whole commit id, which answers as :meth:`resolve`'s ``git rev-parse --verify SHA^{commit}`` does
        (found: a commit, or a tag of one; else ``missing``); :meth:`resolve` for anything else (a branch name, an
        abbreviated sha), for a single sha (one git process either way), and for all of them should ``cat-file``
        fail. ``head`` is not needed here. 5,000 commits and 3 missing ones (2 busy cores): 0.08 s and one git
        process, against 8.0 s and 5,009 git processes for a :meth:`resolve` each.
        """
        wanted = list(dict.fromkeys(shas))
        batch = [sha for sha in wanted if _FULL_SHA.fullmatch(sha)] if len(wanted) > 1 else []
        held: set[str] = set()
        if batch:
            try:
                out = git(self.path, "cat-file", "--batch-check",
                          input="".join(f"{sha}^{{commit}}\n" for sha in batch).encode()).decode().splitlines()
            except subprocess.CalledProcessError:
                out = []
            # one line per sha, in order: "<commit> commit <size>", or "<sha>^{commit} missing"
            if len(out) == len(batch):
                held.update(sha for sha, line in zip(batch, out) if line.split()[1:2] == ["commit"])
            else:
                batch = []
        asked = set(batch)
        return resolving_the_rest(self, [sha for sha in wanted if sha not in asked], held)

    def _branches_hint(self, most: int = 5) -> str:
        """``"its branches: master (checked out), dev"`` (up to ``most``, then ``+N more``), or that it has none."""
        branches = sorted(self._refs("refs/heads")[0])
        if not branches:
            return "it has no branch yet (commit something first)"
        try:
            current = self.default_revision()
        except RevisionNotFound:
            current = None
        if current in branches:
            branches.remove(current)
            branches.insert(0, current)
        shown = [f"{b} (checked out)" if b == current else b for b in branches[:most]]
        more = f", +{len(branches) - most} more" if len(branches) > most else ""
        return f"its branches: {', '.join(shown)}{more} (pass one as --revision or LABELHUB_REVISION)"

    def iter_files(self, sha: str) -> Iterator[RepoFile]:
        """See :meth:`labelhub.repos.DatasetRepo.iter_files` (one ``git ls-tree``)."""
        return iter(self.list_files(sha))

    def list_files(self, sha: str) -> list[RepoFile]:
        """See :meth:`labelhub.repos.DatasetRepo.list_files` (``git ls-tree -r -l -z``).

        A file whose name is not UTF-8 (git stores names as bytes) is left out with a warning: a task's URL and data
        are text, and one such name must not stop the others from becoming tasks. A symlink (mode 120000) is left
        out with a warning too: the backend's file route serves regular files only (:class:`GitObjects`), so its task
        would never load. A git LFS file has its object's size (:meth:`_with_lfs_objects`), or is left out with one
        warning when its object is not in the repository (its task would show the pointer, or never load); how many
        were left out is kept in :attr:`lfs_unfetched` (``0``: none), so that the import cycle lists the same head
        again once they may be fetched (:data:`labelhub.sync.files.importer.LFS_RELIST_SECONDS`).
        """
        out = git(self.path, "ls-tree", "-r", "-l", "-z", sha)
        files, not_text, links = [], [], []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, path = record.split(b"\t", 1)
            mode, kind, oid, size = meta.split()
            if kind != b"blob":
                continue
            if mode == b"120000":
                links.append(path)
                continue
            try:
                files.append(RepoFile(path.decode(), int(size), oid.decode()))
            except UnicodeDecodeError:
                not_text.append(path)
        if not_text:
            log.warning("%d files of %s at %s are left out: their names are not UTF-8 (%s)", len(not_text),
                        self.repo_id, sha[:12], ", ".join(repr(p)[2:-1] for p in not_text[:5]))
        if links:
            log.warning("%d symlinks of %s at %s are left out: the backend serves regular files only (%s)", len(links),
                        self.repo_id, sha[:12], ", ".join(repr(p)[2:-1] for p in links[:5]))
        files, unfetched = self._with_lfs_objects(files)
        self.lfs_unfetched = len(unfetched)  # of this listing: the import cycle lists the head again while > 0
        if unfetched:
            log.warning("%d git LFS files of %s at %s are left out: their objects are not in %s (a clone made with "
                        "GIT_LFS_SKIP_SMUDGE=1 or without git-lfs): run `git lfs fetch` (or `git lfs pull`) in the "
                        "repository; the sync lists the branch again every few minutes while files are left out, and "
                        "they become tasks once fetched (%s)", len(unfetched), self.repo_id, sha[:12],
                        self.objects.lfs_objects(), ", ".join(repr(p)[1:-1] for p in unfetched[:5]))
        return files

    def _with_lfs_objects(self, files: list[RepoFile]) -> tuple[list[RepoFile], list[str]]:
        """``(files, left out)``: ``files`` with each git LFS pointer among them given its object's size, and the paths
        of the pointers whose object is not in the repository's LFS storage (missing, or not of the pointer's size)
        taken out. Only the blobs of a pointer's size (:data:`LFS_POINTER_SIZES`) are read, all in one
        ``git cat-file --batch`` (:meth:`_lfs_pointers`), and each object's file is looked at once (a ``stat``)."""
        pointers = self._lfs_pointers({file.oid for file in files if file.size in LFS_POINTER_SIZES})
        if not pointers:
            return files, []
        present = {pointer: self.objects.lfs_object_size(pointer[0]) == pointer[1]
                   for pointer in set(pointers.values())}
        kept, unfetched = [], []
        for file in files:
            pointer = pointers.get(file.oid)
            if pointer is None:
                kept.append(file)
            elif present[pointer]:
                kept.append(RepoFile(file.path, pointer[1], file.oid))
            else:
                unfetched.append(file.path)
        return kept, unfetched

    def _lfs_pointers(self, oids: set[str]) -> dict[str, tuple[str, int]]:
        """``{blob id: (LFS oid, size)}`` of those of the blobs ``oids`` that are git LFS pointers
        (:func:`lfs_pointer`), read in one ``git cat-file --batch --buffer`` (none for no blob; without ``--buffer``
        git flushes its output after each blob)."""
        if not oids:
            return {}
        out = git(self.path, "cat-file", "--batch", "--buffer", input="".join(f"{oid}\n" for oid in oids).encode())
        found, at = {}, 0
        while at < len(out):  # "<oid> blob <size>\n<content>\n" per blob, "<oid> missing\n" for none
            end = out.index(b"\n", at)
            header = out[at:end].split()
            at = end + 1
            if len(header) != 3:
                continue
            size = int(header[2])
            pointer = lfs_pointer(out[at:at + size])
            at += size + 1
            if pointer:
                found[header[0].decode()] = pointer
        return found

    def blob_ids(self, sha: str, paths: Sequence[str]) -> dict[str, str]:
        """See :meth:`labelhub.repos.DatasetRepo.blob_ids`: ``git ls-tree -z sha -- PATHS`` per
        :data:`PATHS_PER_CALL` paths, read as literal paths (``GIT_LITERAL_PATHSPECS``: no glob in a name matches
        another file).

        Raises:
            RevisionNotFound: ``sha`` is not a commit of the repository.
        """
        wanted, found = set(paths), {}
        ordered = sorted(wanted)
        for start in range(0, len(ordered), PATHS_PER_CALL):
            try:
                out = git(self.path, "ls-tree", "-z", sha, "--", *ordered[start:start + PATHS_PER_CALL],
                          env={"GIT_LITERAL_PATHSPECS": "1"})
            except subprocess.CalledProcessError:
                raise RevisionNotFound(f"revision {sha!r} not found in {self.path}") from None
            for record in out.split(b"\0"):
                meta, _, name = record.partition(b"\t")
                path = name.decode(errors="replace")
                if meta.split()[1:2] == [b"blob"] and path in wanted:
                    found[path] = meta.split()[2].decode()
        return found

    def read_file(self, sha: str, path: str) -> bytes:
        """See :meth:`labelhub.repos.DatasetRepo.read_file`: read in-process by :class:`GitObjects` (dulwich, no git
        process; 0.1 to 0.4 ms a 2 kB file), which counts when an export reads the texts of thousands of files
        (:mod:`labelhub.repos.texts`).

        A git LFS file reads as its object's bytes (:meth:`GitObjects.blob`), never as its pointer.

        Raises:
            EntryNotFound: ``path`` is not a regular file of the repo at ``sha`` (missing, a directory, a symlink or a
                submodule: the backend's file route does not serve those either, so no task showed it), or ``sha``
                is not a commit of it (a ``FileNotFoundError``), or it is a git LFS file whose object is not in the
                repository (``git lfs fetch`` not run).
        """
        found = self.objects.blob(sha, path)
        if found is None:
            if self.objects.lfs_pointer_at(sha, path):
                raise EntryNotFound(f"{path} of {self.path} at {sha} is a git LFS file whose object is not in "
                                    f"{self.objects.lfs_objects()}: run git lfs fetch in the repository")
            raise EntryNotFound(f"{path} is not a regular file of {self.path} at {sha}")
        return found[1]

    def file_url(self, sha: str, path: str) -> str:
        """``{public_url}/files/{repo name}/{sha}/{path}?sig=...`` (served by the backend's file route,
        signed as in :mod:`labelhub.signing` when ``file_urls`` has a secret), no call."""
        return self.file_urls.proxy_url(self.key, sha, path)

    def describe_file_urls(self) -> str:
        """One log line: which form this repo's file URLs take (:meth:`labelhub.file_urls.FileURLs.describe`)."""
        return self.file_urls.describe(self.repo_id, local=True, private=True)

    # writing (the export)
    def commit(self, files: dict[str, bytes], message: str, description: str, parent_commit: str,
               revision: str = "main") -> str:
        """One atomic commit on branch ``revision``, written in-process with dulwich
        (https://www.dulwich.io/docs/api/dulwich.object_store.html, ``commit_tree_changes``): the files' blobs,
        the trees on their paths and the commit are added to the object store as loose objects, then the branch
        moves by compare-and-swap (``set_if_equals``: it takes the ref's lock file, as ``git update-ref NEW OLD``
        does). The work tree is not touched (run ``git reset --hard`` in a non-bare repo to see the exported
        files). No git process: the six of the plumbing this replaced took 40 ms of an export on 2 busy cores.

        Args:
            files: ``{path_in_repo: content}``, added or replaced.
            message: The commit's title.
            description: Its body (``""``: none).
            parent_commit: The commit the branch must still be at (40 hex digits).
            revision: The branch.

        Returns:
            The new commit's sha.

        Raises:
            CommitConflict: the branch is no longer at ``parent_commit``, or another writer holds its lock.
            RevisionNotFound: ``parent_commit`` is not a commit of the repository.
        """
        from dulwich.file import FileLocked
        from dulwich.objects import Blob, Commit
        from dulwich.object_store import commit_tree_changes

        repo = self._dulwich()
        store = repo.object_store
        parent = store[parent_commit.encode()] if parent_commit.encode() in store else None
        if not isinstance(parent, Commit):
            raise RevisionNotFound(f"{parent_commit[:12]} is not a commit of {self.path}")
        changes = []
        for path, data in files.items():
            blob = Blob.from_string(data)
            store.add_object(blob)
            changes.append((path.encode(), 0o100644, blob.id))
        commit = Commit()
        commit.tree = commit_tree_changes(store, parent.tree, changes)
        commit.parents = [parent.id]
        commit.author = commit.committer = _identity()
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = _utc_offset()
        commit.message = (f"{message}\n\n{description}\n" if description else f"{message}\n").encode()
        store.add_object(commit)
        try:
            moved = repo.refs.set_if_equals(f"refs/heads/{revision}".encode(), parent.id, commit.id)
        except FileLocked:
            moved = False
        if not moved:
            raise CommitConflict(f"branch {revision} of {self.path} moved since {parent_commit[:12]}")
        self._commits += 1
        if self._commits % self.PACK_EVERY == 0:
            self.pack_loose_objects()
        return commit.id.decode()

    def pack_loose_objects(self) -> None:
        """Pack the repository's loose objects into one new pack with deltas: ``git repack -d -q`` (incremental:
        only the loose objects, the packs there are stay as they are; ``-d`` then removes the loose objects it packed,
        ``git prune-packed``). Run by :meth:`commit` every :attr:`PACK_EVERY` commits, as git's ``gc --auto`` would
        (no git process here runs one).

        Each export rewrites the trees on its files' paths up to the root, which holds every file of a flat
        repository: each commit of 100,000 files at the root writes a root tree of some 2.3 MB compressed. dulwich's
        ``pack_loose_objects``, used before, packs without deltas, so every export kept its whole root tree; git
        stores each pack's 50 trees as one and 49 deltas against it. 100 exports into such a repository (2 busy
        cores, 2026-12-08): +2.39 MB an export before (3.4 GB a day at an export a minute), +0.10 MB after; the
        commits that pack took 26.9 and 32.3 s before (dulwich, in Python), 9.3 and 11.7 s after. The cost is
        bounded by the objects of the last :attr:`PACK_EVERY` exports (never the whole repository: its packs are not
        rewritten, so there is still one more pack per 50 exports, as before).
        Readers are safe: only loose objects now in a pack are removed, never a pack, and :class:`GitObjects`
        rescans the packs when an object is missing. A failure is a warning: the commit stands, and the next
        :attr:`PACK_EVERY`-th commit packs them all.
        """
        t = time.perf_counter()
        try:
            git(self.path, "repack", "-d", "-q")
        except (subprocess.CalledProcessError, OSError) as exc:
            why = (exc.stderr or b"").decode(errors="replace").strip() \
                if isinstance(exc, subprocess.CalledProcessError) else exc
            log.warning("%s: packing the loose objects failed (git repack -d: %s); the commit stands, the next %d-th "
                        "tries again", self.path, why, self.PACK_EVERY)
            return
        log.debug("%s: loose objects packed with deltas (git repack -d) in %.2f s", self.path, time.perf_counter() - t)

    def is_ancestor(self, old: str, new: str) -> bool:
        """Whether commit ``old`` is in the history of ``new`` (``git merge-base --is-ancestor``; ``False`` when
        either is not a commit of the repository). The export asks it after a failed compare-and-swap, to tell a
        branch that moved on from one whose history was rewritten."""
        try:
            git(self.path, "merge-base", "--is-ancestor", old, new)
        except subprocess.CalledProcessError:
            return False
        return True

    def find_commit(self, marker: str, revision: str = "main") -> str | None:
        """The newest commit of ``revision``'s history whose message contains ``marker`` (``None`` when none does):
        one ``git log --fixed-strings --grep``, over the whole history (a commit that landed before a crash may have
        any number of commits after it by the time the sync starts again)."""
        out = git(self.path, "log", "-1", "--format=%H", "--fixed-strings", f"--grep={marker}", revision)
        shas = out.decode().split()
        return shas[0] if shas else None

    def create_tag(self, tag: str, sha: str, message: str = "") -> None:
        """Tag commit ``sha``: an annotated tag object when ``message`` is given, as ``git tag -a -m`` makes it,
        else a lightweight tag; the ref is created only if it does not exist (dulwich's ``add_if_new``, under
        the ref's lock file), in-process.

        Raises:
            TagExists: the tag exists (see :meth:`tags` for where it points), or another writer holds its lock.
            RevisionNotFound: ``sha`` is not an object of the repository.
        """
        from dulwich.file import FileLocked
        from dulwich.objects import Commit, Tag

        repo = self._dulwich()
        if sha.encode() not in repo.object_store:
            raise RevisionNotFound(f"{sha[:12]} is not an object of {self.path}")
        target = sha.encode()
        if message:
            obj = Tag()
            obj.object = (Commit, target)
            obj.name = tag.encode()
            obj.tagger = _identity()
            obj.tag_time, obj.tag_timezone = int(time.time()), _utc_offset()
            obj.message = f"{message}\n".encode()
            repo.object_store.add_object(obj)
            target = obj.id
        try:
            created = repo.refs.add_if_new(f"refs/tags/{tag}".encode(), target)
        except FileLocked:
            created = False
        if not created:
            raise TagExists(f"tag {tag} exists in {self.path}")

    def _dulwich(self):
        """This thread's dulwich repository (:meth:`GitObjects.repo`), which the export writes with."""
        return self.objects.repo()

    def head_and_tags(self, revision: str) -> tuple[str, dict[str, str]]:
        """See :meth:`labelhub.repos.DatasetRepo.head_and_tags`: one ``git for-each-ref`` of the branches and
        tags, and a ``git rev-parse`` (:meth:`resolve`) when ``revision`` is neither."""
        heads, tags = self._refs("refs/heads", "refs/tags")
        return heads.get(revision) or tags.get(revision) or self.resolve(revision), tags

    def is_branch(self, revision: str) -> bool:
        """Whether ``revision`` names a branch (``refs/heads/<revision>``), which an export can commit to; a tag or
        a sha cannot be (one ``git for-each-ref``)."""
        return revision in self._refs("refs/heads")[0]

    def tags(self) -> dict[str, str]:
        """``{tag name: commit sha}``."""
        return self._refs("refs/tags")[1]

    def _refs(self, *patterns: str) -> tuple[dict[str, str], dict[str, str]]:
        """``({branch: commit sha}, {tag: commit sha})`` of the refs under ``patterns``, one ``git for-each-ref``
        (an annotated tag peeled to its commit)."""
        out = git(self.path, "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)", *patterns)
        heads: dict[str, str] = {}
        tags: dict[str, str] = {}
        for line in out.decode().splitlines():
            ref, obj, peeled = (line.split() + [""])[:3]
            if ref.startswith("refs/tags/"):
                tags[ref[len("refs/tags/"):]] = peeled or obj
            elif ref.startswith("refs/heads/"):
                heads[ref[len("refs/heads/"):]] = obj
        return heads, tags

    def commit_info(self, sha: str) -> tuple[str, str]:
        """``(date ISO 8601, title)`` of commit ``sha``."""
        date, title = git(self.path, "log", "-1", "--format=%cI%n%s", sha).decode().split("\n", 1)
        return date, title.strip()


class GitObjects:
    """Files at a commit of a local git repository, read in-process with dulwich (https://www.dulwich.io): no git
    process, the commit's tree walked to the path (``dulwich.object_store.tree_lookup_path``). The sync's
    :meth:`LocalGitRepo.read_file` and the backend's file route (:mod:`labelhub.backend.files`) both read through it.

    Each thread opens the repository once (:meth:`repo`: dulwich's pack readers seek a shared file, so a repository
    object is not shared between threads); the commits and trees read last are parsed once and kept in an LRU of
    :data:`TREES` shared by the threads (an object never changes), so the files of one folder at one commit cost one
    object read each: 0.1 to 0.4 ms a 2 kB file of 3,000 in 30 folders (loose objects, 2 busy cores) against 1.4 ms
    without the LRU and 2.3 ms for a ``git cat-file blob``. An open repository still sees other writers: dulwich reads
    the refs from disk at each access and rescans the packs when an object is missing. SHA-1 and SHA-256 repositories
    both read.

    Args:
        path: The repository's directory (bare or with a work tree).
    """

    #: Commits and trees kept parsed (a tree of 1,000 entries is some 100 kB).
    TREES = 256

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._opened = threading.local()
        self._lfs: Path | None = None  # lfs_objects()
        self._cached = cachetools.cached(LRUCache(maxsize=self.TREES), lock=threading.Lock())(self._object)

    def repo(self):
        """This thread's dulwich ``Repo`` of :attr:`path` (opened at the thread's first call; opening reads the
        repository's config, about a millisecond), its loose objects compressed as git compresses them
        (:func:`_compress_loose_objects_as_git_does`)."""
        from dulwich.repo import Repo

        if getattr(self._opened, "repo", None) is None:
            self._opened.repo = Repo.discover(self.path)
            _compress_loose_objects_as_git_does(self._opened.repo)
        return self._opened.repo

    def _object(self, oid: bytes):
        """The object ``oid`` (hex, bytes) parsed; commits and trees are read through ``self._cached``, its LRU.

        A miss is read once more: ``git repack -d`` (:meth:`LocalGitRepo.pack_loose_objects`) packs the loose objects
        then deletes them, and dulwich, having rescanned the packs before the new one was in place, then found the
        loose file gone and raised ``KeyError`` for an object the repository holds (a 404 of an existing image, 1 in
        some 300,000 reads during repacks); the second read rescans the packs again, as git does.

        Raises:
            KeyError: The repository does not hold ``oid``.
        """
        repo = self.repo()
        try:
            return repo[oid]
        except KeyError:
            return repo[oid]

    def entry(self, sha: str, path: str) -> tuple[int, bytes] | None:
        """``(mode, object id as hex bytes)`` of ``path`` in commit ``sha``'s tree, or ``None`` when ``sha`` is not a
        commit of the repository or ``path`` is not in its tree. The mode is git's: ``0o100644``/``0o100755`` a
        regular file, ``0o120000`` a symlink, ``0o160000`` a submodule, ``0o40000`` a directory."""
        from dulwich.errors import NotTreeError
        from dulwich.object_store import tree_lookup_path

        try:
            return tree_lookup_path(self._cached, self._cached(sha.encode()).tree,
                                    path.encode("utf-8", "surrogateescape"))
        except (KeyError, ValueError, AttributeError, NotTreeError):
            return None

    def has_commit(self, sha: str) -> bool:
        """Whether ``sha`` (40 or 64 hex digits) names a commit the repository holds (``False`` after a rewritten
        history's old commits were pruned, or for a sha it never had)."""
        try:
            return self._cached(sha.encode()).type_name == b"commit"
        except (KeyError, ValueError):
            return False

    def blob(self, sha: str, path: str) -> tuple[str, bytes] | None:
        """``(blob id as hex, bytes)`` of the regular file ``path`` at commit ``sha``, or ``None`` when ``sha`` is not
        a commit of the repository, or ``path`` is missing, a directory, a symlink (mode 120000) or a submodule
        (160000) at that commit. A git LFS pointer (:func:`lfs_pointer`) answers its object's bytes, read from the
        LFS storage (:meth:`lfs_object`), with the pointer's blob id; ``None`` when the object is not there, or is not
        of the pointer's size and sha256 (never the pointer: :meth:`lfs_pointer_at` tells that case)."""
        found = self._blob(sha, path)
        pointer = lfs_pointer(found[1]) if found else None
        if pointer is None:
            return found
        data = self._lfs_content(*pointer)
        return None if data is None else (found[0], data)

    def lfs_pointer_at(self, sha: str, path: str) -> tuple[str, int] | None:
        """``(LFS oid, size)`` when the regular file ``path`` at commit ``sha`` is a git LFS pointer, else ``None``:
        why :meth:`blob` answers ``None`` for a file the commit has (its object not fetched)."""
        found = self._blob(sha, path)
        return lfs_pointer(found[1]) if found else None

    def _blob(self, sha: str, path: str) -> tuple[str, bytes] | None:
        """:meth:`blob` as git holds it: a pointer's own bytes."""
        from dulwich.objects import Blob

        found = self.entry(sha, path)
        if found is None or found[0] not in (0o100644, 0o100755):
            return None
        try:
            blob = self._object(found[1])
        except KeyError:
            return None
        return (found[1].decode(), blob.as_raw_string()) if isinstance(blob, Blob) else None

    def lfs_objects(self) -> Path:
        """The folder git-lfs keeps this repository's objects in: ``<git dir>/lfs/objects`` (the common git dir of a
        work tree), or ``objects`` under ``lfs.storage`` when git's config sets it (relative to the git dir, as
        git-lfs reads it). Read at the first call, then kept."""
        if self._lfs is None:
            repo = self.repo()
            try:
                storage = os.fsdecode(repo.get_config_stack().get((b"lfs",), b"storage"))
            except KeyError:
                storage = "lfs"
            self._lfs = Path(repo.commondir(), os.path.expanduser(storage), "objects")
        return self._lfs

    def lfs_object(self, oid: str) -> str:
        """Where git-lfs keeps the object ``oid`` (64 hex digits): ``<lfs objects>/<oid[0:2]>/<oid[2:4]>/<oid>`` (a
        ``str``: a listing asks it of every pointer, and three ``pathlib`` joins cost more than the ``stat``)."""
        return f"{self.lfs_objects()}{os.sep}{oid[:2]}{os.sep}{oid[2:4]}{os.sep}{oid}"

    def lfs_object_size(self, oid: str) -> int | None:
        """The size of git-lfs's object ``oid`` in this repository, ``None`` when it is not there (one ``stat``)."""
        try:
            return os.stat(self.lfs_object(oid)).st_size
        except OSError:
            return None

    def _lfs_content(self, oid: str, size: int) -> bytes | None:
        """The bytes of git-lfs's object ``oid``, or ``None`` when it is not there or not ``size`` bytes of sha256
        ``oid`` (a partial or damaged file: a pointer's object never changes, so it is checked as read)."""
        try:
            with open(self.lfs_object(oid), "rb") as fh:
                data = fh.read(size + 1)
        except OSError:
            return None
        return data if len(data) == size and hashlib.sha256(data).hexdigest() == oid else None
