"""Bare git repositories on disk, driven through the `git` CLI, holding the test Hub's repos.

Layout: `<root>/<repo_type>s/<namespace>/<name>.git` (a bare repo) with `hubserver.json`
(`{"private": bool, "createdAt": iso}`) inside it. A new repo gets an "initial commit" by `system`
holding a `.gitattributes`, as on the Hub.

Commits are built with plumbing on a throw-away index (`GIT_INDEX_FILE`, `read-tree`,
`hash-object -w`, `update-index`, `write-tree`, `commit-tree`) and the branch moves with a
compare-and-swap `git update-ref refs/heads/B NEW OLD`, so concurrent commits never lose one.

Tree listings (`git ls-tree -r -t -l -z <sha>`) and commit headers are cached per commit sha:
a sha never changes, so every page of a 100,000-file listing reuses one `ls-tree`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import HubError, bad_request, entry_not_found, repo_not_found, revision_not_found

REPO_TYPES = ("model", "dataset", "space")
ZERO_OID = "0" * 40
HEX40 = re.compile(r"[0-9a-f]{40}")
_NAME = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
REPO_ID = re.compile(rf"{_NAME}/{_NAME}")
REF_NAME = re.compile(rf"{_NAME}(/{_NAME})*")
DEFAULT_GITATTRIBUTES = b"".join(
    f"*.{ext} filter=lfs diff=lfs merge=lfs -text\n".encode()
    for ext in ("arrow", "bin", "gz", "h5", "npy", "parquet", "pt", "safetensors", "tar", "zip")
)


def hub_date(epoch: int) -> str:
    """Epoch seconds -> the Hub's date format `2024-02-19T10:57:45.000Z` (what `parse_datetime` reads)."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def valid_ref_name(name: str) -> bool:
    """A branch/tag name safe to put after `refs/heads/` or `refs/tags/` (no `..`, no `.lock`)."""
    return bool(REF_NAME.fullmatch(name)) and ".." not in name and not name.endswith((".lock", "."))


def check_path(path: str) -> str:
    """Validate a path in repo (`a/b.txt`): no leading `/`, no `.`/`..`/`.git` part, no NUL/newline."""
    parts = path.split("/")
    if (
        not path
        or "\n" in path
        or "\0" in path
        or any(p in ("", ".", "..", ".git") for p in parts)
    ):
        raise bad_request(f"Invalid path in repo: {path!r}")
    return path


@dataclass(frozen=True)
class CommitMeta:
    """One commit's header: `id`, `tree`, `parents`, `author` (name), `epoch`, `title`, `message` (body)."""

    id: str
    tree: str
    parents: tuple[str, ...]
    author: str
    epoch: int
    title: str
    message: str

    _FORMAT = "%H%x00%T%x00%P%x00%an%x00%ct%x00%s%x00%b%x1e"

    @classmethod
    def parse_many(cls, out: bytes) -> list["CommitMeta"]:
        """Parse `git log --format=CommitMeta._FORMAT` output."""
        metas = []
        for record in out.decode("utf-8", "replace").split("\x1e"):
            record = record.lstrip("\n")
            if not record:
                continue
            sha, tree, parents, author, epoch, title, body = record.split("\x00", 6)
            metas.append(cls(sha, tree, tuple(parents.split()), author, int(epoch), title, body.rstrip("\n")))
        return metas


class TreeSnapshot:
    """The full recursive tree of one commit, from one `git ls-tree -r -t -l -z`.

    `entries[i] = (type, oid, size, path)` with type `"file"`/`"directory"`, in git's depth-first
    order, so a directory's descendants are the contiguous slice `entries[i+1:end[i]]`.
    `children[parent]` lists the indexes of direct children (`""` is the root).
    """

    def __init__(self, ls_tree_output: bytes):
        self.entries: list[tuple[str, str, int, str]] = []
        self.index: dict[str, int] = {}
        self.end: dict[int, int] = {}
        self.children: dict[str, list[int]] = {"": []}
        stack: list[int] = []
        for record in ls_tree_output.split(b"\0"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            _mode, kind, oid, size = meta.decode().split()
            if kind not in ("blob", "tree"):
                continue  # submodules never happen here
            path = raw_path.decode("utf-8", "surrogateescape")
            i = len(self.entries)
            while stack and not path.startswith(self.entries[stack[-1]][3] + "/"):
                self.end[stack.pop()] = i
            if kind == "tree":
                self.entries.append(("directory", oid, 0, path))
                stack.append(i)
                self.children[path] = []
            else:
                self.entries.append(("file", oid, int(size), path))
            self.index[path] = i
            self.children[path.rpartition("/")[0]].append(i)
        for i in stack:
            self.end[i] = len(self.entries)

    def listing(self, path: str, recursive: bool) -> list[int] | range | None:
        """Indexes of the entries below directory `path` (`""` = root), or None if it is no directory."""
        if path and (path not in self.index or self.entries[self.index[path]][0] != "directory"):
            return None
        if not recursive:
            return self.children[path]
        if not path:
            return range(len(self.entries))
        i = self.index[path]
        return range(i + 1, self.end[i])

    def files(self) -> list[tuple[str, str, int, str]]:
        """All file entries."""
        return [e for e in self.entries if e[0] == "file"]


class _LRU:
    """A small thread-safe LRU dict (values are immutable, so a racing double build is harmless)."""

    def __init__(self, size: int):
        self.size, self.data, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        return None

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value

    def drop_prefix(self, prefix: str):
        with self.lock:
            for key in [k for k in self.data if k[0] == prefix]:
                del self.data[key]


class GitStore:
    """All repos under `root`; every method takes `(repo_type, repo_id)` or a git dir from `git_dir()`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.tmp = self.root / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._env = {
            **os.environ,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
        }
        for var in ("GIT_DIR", "GIT_INDEX_FILE", "GIT_WORK_TREE", "GIT_OBJECT_DIRECTORY"):
            self._env.pop(var, None)
        self._trees = _LRU(4)
        self._commits = _LRU(20_000)
        self._last = _LRU(50_000)

    # ---- low level -------------------------------------------------------------------------

    def git(self, git_dir: Path, *args: str, input: bytes | None = None, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run `git --git-dir=<git_dir> -c core.filesRefLockTimeout=2000 <args>`; raise on failure if `check`."""
        proc = subprocess.run(
            ["git", f"--git-dir={git_dir}", "-c", "core.filesRefLockTimeout=2000", *args],
            input=input, capture_output=True, env={**self._env, **(env or {})},
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"git {' '.join(args[:3])} failed: {proc.stderr.decode(errors='replace')}")
        return proc

    def _out(self, git_dir: Path, *args: str, **kw) -> str:
        return self.git(git_dir, *args, **kw).stdout.decode().strip()

    @staticmethod
    def _identity(name: str) -> dict:
        email = f"{name}@users.noreply.hubserver"
        return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
                "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}

    # ---- repos -------------------------------------------------------------------------------

    def git_dir(self, repo_type: str, repo_id: str) -> Path:
        """`<root>/<repo_type>s/<ns>/<name>.git` (may not exist). 400 on a bad type or id."""
        if repo_type not in REPO_TYPES or not REPO_ID.fullmatch(repo_id) or ".." in repo_id:
            raise bad_request(f"Invalid repo: {repo_type} {repo_id!r} (expected 'namespace/name')")
        return self.root / f"{repo_type}s" / f"{repo_id}.git"

    def meta(self, repo_type: str, repo_id: str) -> dict:
        """`{"private": bool, "createdAt": str}` of an existing repo; 404 `RepoNotFound` otherwise."""
        try:
            return json.loads((self.git_dir(repo_type, repo_id) / "hubserver.json").read_text())
        except FileNotFoundError:
            raise repo_not_found() from None

    def set_private(self, repo_type: str, repo_id: str, private: bool, gated: str | bool | None = None) -> None:
        """Change a repo's visibility, and with ``gated`` its gating (``"auto"``, ``"manual"`` or ``False``)."""
        meta = self.meta(repo_type, repo_id)
        meta["private"] = bool(private)
        if gated is not None:
            meta["gated"] = gated
        path = self.git_dir(repo_type, repo_id) / "hubserver.json"
        tmp = path.with_suffix(f".{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, path)

    def create(self, repo_type: str, repo_id: str, private: bool = False) -> None:
        """Create the bare repo with its initial commit; 409 if it exists. Atomic: built in a temp
        dir then renamed into place."""
        final = self.git_dir(repo_type, repo_id)
        if final.exists():
            raise HubError(409, "You already created this repo")
        tmp = Path(tempfile.mkdtemp(dir=self.tmp, suffix=".git"))
        try:
            self.git(tmp, "init", "-q", "--bare", "-b", "main")
            (tmp / "hubserver.json").write_text(
                json.dumps({"private": bool(private), "createdAt": hub_date(int(time.time()))})
            )
            blob = self._out(tmp, "hash-object", "-w", "--no-filters", "--stdin", input=DEFAULT_GITATTRIBUTES)
            tree = self._out(tmp, "mktree", input=f"100644 blob {blob}\t.gitattributes\n".encode())
            commit = self._out(tmp, "commit-tree", tree, "-m", "initial commit", env=self._identity("system"))
            self.git(tmp, "update-ref", "refs/heads/main", commit, "")
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                raise HubError(409, "You already created this repo") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def delete(self, repo_type: str, repo_id: str) -> None:
        """Delete a repo (renamed away first, so it vanishes atomically); 404 if missing."""
        gd = self.git_dir(repo_type, repo_id)
        trash = self.tmp / f"deleted-{uuid.uuid4().hex}"
        try:
            os.rename(gd, trash)
        except FileNotFoundError:
            raise repo_not_found() from None
        for cache in (self._trees, self._commits, self._last):
            cache.drop_prefix(str(gd))
        shutil.rmtree(trash, ignore_errors=True)

    # ---- refs --------------------------------------------------------------------------------

    def _for_each_ref(self, gd: Path, *patterns: str) -> list[tuple[str, str]]:
        """`[(refname, commit_sha)]`, annotated tags peeled to their commit."""
        out = self._out(gd, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)", *patterns)
        refs = []
        for line in out.splitlines():
            name, oid, peeled = line.split("\0")
            refs.append((name, peeled or oid))
        return refs

    def refs(self, gd: Path) -> dict[str, list[tuple[str, str, str]]]:
        """`{"branches"|"tags"|"converts"|"pullRequests": [(name, full_ref, commit)]}`."""
        kinds = {"refs/heads/": "branches", "refs/tags/": "tags", "refs/convert/": "converts", "refs/pr/": "pullRequests"}
        result: dict[str, list] = {k: [] for k in kinds.values()}
        for ref, sha in self._for_each_ref(gd, *kinds):
            for prefix, kind in kinds.items():
                if ref.startswith(prefix):
                    result[kind].append((ref[len(prefix):], ref, sha))
        return result

    def branch_head(self, gd: Path, branch: str) -> str | None:
        """Commit sha of `refs/heads/<branch>`, or None."""
        if not valid_ref_name(branch):
            return None
        ref = f"refs/heads/{branch}"
        return next((sha for name, sha in self._for_each_ref(gd, ref) if name == ref), None)

    def resolve(self, gd: Path, rev: str) -> str | None:
        """Commit sha for a branch, tag, full ref (`refs/...`) or full commit sha; None if unknown.
        Branches win over tags, as `git` does."""
        if HEX40.fullmatch(rev):
            if self._commits.get((str(gd), rev)) is not None:
                return rev
            proc = self.git(gd, "cat-file", "-t", rev, check=False)
            return rev if proc.stdout.strip() == b"commit" else None
        if not valid_ref_name(rev):
            return None
        wanted = [rev] if rev.startswith("refs/") else [f"refs/heads/{rev}", f"refs/tags/{rev}"]
        found = dict(self._for_each_ref(gd, *wanted))
        return next((found[r] for r in wanted if r in found), None)

    def _create_ref(self, gd: Path, ref: str, oid: str) -> None:
        if self.git(gd, "update-ref", ref, oid, "", check=False).returncode != 0:
            raise HubError(409, f"Reference already exists: {ref}")

    def _delete_ref(self, gd: Path, ref: str) -> None:
        sha = next((s for name, s in self._for_each_ref(gd, ref) if name == ref), None)
        if sha is None:
            raise revision_not_found(ref)
        self.git(gd, "update-ref", "-d", ref)

    def create_tag(self, gd: Path, tag: str, commit: str, message: str | None, tagger: str) -> None:
        """Tag `commit` (annotated when `message`); 409 if the tag exists (atomic: `update-ref` with
        an empty old value)."""
        if not valid_ref_name(tag):
            raise bad_request(f"Invalid tag name: {tag!r}")
        target = commit
        if message:
            ident = self._identity(tagger)
            text = (f"object {commit}\ntype commit\ntag {tag}\n"
                    f"tagger {tagger} <{ident['GIT_COMMITTER_EMAIL']}> {int(time.time())} +0000\n\n{message}\n")
            target = self._out(gd, "mktag", input=text.encode())
        self._create_ref(gd, f"refs/tags/{tag}", target)

    def delete_tag(self, gd: Path, tag: str) -> None:
        """Delete a tag; 404 `RevisionNotFound` if missing."""
        self._delete_ref(gd, f"refs/tags/{tag}")

    def create_branch(self, gd: Path, branch: str, commit: str) -> None:
        """Create a branch at `commit`; 409 if it exists."""
        if not valid_ref_name(branch):
            raise bad_request(f"Invalid branch name: {branch!r}")
        self._create_ref(gd, f"refs/heads/{branch}", commit)

    def delete_branch(self, gd: Path, branch: str) -> None:
        """Delete a branch (not `main`); 404 `RevisionNotFound` if missing."""
        if branch == "main":
            raise HubError(403, "Cannot delete the default branch")
        self._delete_ref(gd, f"refs/heads/{branch}")

    # ---- reading -----------------------------------------------------------------------------

    def commit_meta(self, gd: Path, sha: str) -> CommitMeta:
        """Header of commit `sha` (cached)."""
        cached = self._commits.get((str(gd), sha))
        if cached is None:
            out = self.git(gd, "log", "-1", f"--format={CommitMeta._FORMAT}", sha).stdout
            cached = self._commits.put((str(gd), sha), CommitMeta.parse_many(out)[0])
        return cached

    def log(self, gd: Path, sha: str, skip: int, limit: int) -> list[CommitMeta]:
        """Up to `limit` commits reachable from `sha`, newest first, after skipping `skip`."""
        out = self.git(gd, "log", f"--format={CommitMeta._FORMAT}", f"--skip={skip}", f"-n{limit}", sha).stdout
        metas = CommitMeta.parse_many(out)
        for m in metas:
            self._commits.put((str(gd), m.id), m)
        return metas

    def snapshot(self, gd: Path, sha: str) -> TreeSnapshot:
        """The recursive tree of commit `sha` (one `ls-tree` per sha, LRU-cached)."""
        key = (str(gd), sha)
        snap = self._trees.get(key)
        if snap is None:
            snap = self._trees.put(key, TreeSnapshot(self.git(gd, "ls-tree", "-r", "-t", "-l", "-z", sha).stdout))
        return snap

    def last_commit(self, gd: Path, sha: str, path: str) -> CommitMeta:
        """Last commit at or before `sha` touching `path` (for `expand=true`; cached)."""
        key = (str(gd), sha, path)
        cached = self._last.get(key)
        if cached is None:
            out = self.git(gd, "log", "-1", f"--format={CommitMeta._FORMAT}", sha, "--", path).stdout
            metas = CommitMeta.parse_many(out)
            cached = self._last.put(key, metas[0] if metas else self.commit_meta(gd, sha))
        return cached

    def lookup(self, gd: Path, sha: str, paths: list[str]) -> dict[str, tuple[str, str, int]]:
        """`{path: (git_type, oid, size)}` for the paths that exist at `sha` (one `cat-file --batch-check`)."""
        paths = [p for p in paths if p and "\n" not in p]
        if not paths:
            return {}
        out = self.git(gd, "cat-file", "--batch-check",
                       input="".join(f"{sha}:{p}\n" for p in paths).encode()).stdout.decode().splitlines()
        found = {}
        for path, line in zip(paths, out):
            parts = line.split()
            if len(parts) == 3 and parts[1] in ("blob", "tree") and HEX40.fullmatch(parts[0]):
                found[path] = (parts[1], parts[0], int(parts[2]))
        return found

    def read_blob(self, gd: Path, oid: str) -> bytes:
        """Raw bytes of blob `oid`."""
        return self.git(gd, "cat-file", "blob", oid).stdout

    # ---- writing -----------------------------------------------------------------------------

    def commit(self, gd: Path, branch: str, *, adds: dict[str, bytes], deletes: list[str] = (),
               delete_folders: list[str] = (), summary: str, description: str = "",
               parent_commit: str | None = None, author: str = "user") -> tuple[str, bool]:
        """Commit onto `branch`: returns `(commit_sha, created)`; `created` is False when the tree
        did not change (the branch head is returned, nothing is written).

        Errors (`HubError`): 404 `RevisionNotFound` if the branch is missing, 412 if `parent_commit`
        is not the branch head (now or at the compare-and-swap), 404 `EntryNotFound` for a
        `deletes` path that is not a file, 400 for a bad path. Without `parent_commit` a lost
        compare-and-swap is retried on the new head, so concurrent commits both land.
        """
        for p in [*adds, *deletes, *delete_folders]:
            check_path(p.rstrip("/") if p in delete_folders else p)
        head = self.branch_head(gd, branch)
        if head is None:
            raise revision_not_found(branch)
        stale = HubError(412, "A commit has happened since. Please refresh and try again.")
        if parent_commit is not None and parent_commit != head:
            raise stale
        work = Path(tempfile.mkdtemp(dir=self.tmp))
        try:
            blob_lines = self._write_blobs(gd, adds)
            message = summary if not description else f"{summary}\n\n{description}"
            for attempt in range(50):
                base = head
                index_env = {"GIT_INDEX_FILE": str(work / f"index{attempt}")}
                remove = self._removals(gd, base, deletes, delete_folders)
                self.git(gd, "read-tree", base, env=index_env)
                records = [f"0 {ZERO_OID}\t{p}" for p in remove] + blob_lines
                if records:
                    self.git(gd, "update-index", "--replace", "-z", "--index-info",
                             input="".join(r + "\0" for r in records).encode(), env=index_env)
                tree = self._out(gd, "write-tree", env=index_env)
                if tree == self.commit_meta(gd, base).tree:
                    return base, False
                new = self._out(gd, "commit-tree", tree, "-p", base, "-F", "-", input=message.encode(),
                                env=self._identity(author))
                for _ in range(500):
                    proc = self.git(gd, "update-ref", "-m", summary[:200], f"refs/heads/{branch}", new, base,
                                    check=False)
                    if proc.returncode == 0:
                        return new, True
                    head = self.branch_head(gd, branch)
                    if head != base:
                        break  # lost the race
                    time.sleep(0.01)  # ref lock held by another writer's failed attempt: try again
                else:
                    raise RuntimeError(f"git update-ref keeps failing: {proc.stderr.decode(errors='replace')}")
                if parent_commit is not None:
                    raise stale
                if head is None:
                    raise revision_not_found(branch)
            raise HubError(409, "Too much contention on this branch, try again")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _write_blobs(self, gd: Path, adds: dict[str, bytes]) -> list[str]:
        """Write all added contents with one `git fast-import` (small batches end up as loose
        objects, big ones as a single pack: `fastimport.unpackLimit`); returns index-info lines.
        The blob ids are computed here: sha1 of `b"blob <size>\\0" + content`, as git does."""
        if not adds:
            return []
        stream, lines = [], []
        for path, content in adds.items():
            stream += [b"blob\ndata %d\n" % len(content), content, b"\n"]
            oid = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
            lines.append(f"100644 {oid}\t{path}")
        self.git(gd, "fast-import", "--quiet", input=b"".join(stream))
        return lines

    def _removals(self, gd: Path, base: str, deletes, delete_folders) -> list[str]:
        """Files to drop from the index: `deletes` must be files at `base` (404 otherwise); a
        folder expands to every file below it."""
        remove = []
        if deletes:
            found = self.lookup(gd, base, list(deletes))
            for p in deletes:
                if found.get(p, ("",))[0] != "blob":
                    raise entry_not_found(p)
                remove.append(p)
        for folder in delete_folders:
            folder = folder.rstrip("/")
            out = self.git(gd, "ls-tree", "-r", "--name-only", "-z", base, "--", folder).stdout
            names = [n.decode("utf-8", "surrogateescape") for n in out.split(b"\0") if n]
            if not names:
                raise entry_not_found(folder)
            remove.extend(names)
        return remove
