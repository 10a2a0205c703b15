"""The file route: repo files for the annotators' browsers, at signed URLs only.

``GET|HEAD /files/<repo key>/<commit sha>/<path_in_repo>?exp=<unix time>&sig=<signature>`` answers the
file's bytes at that commit. The URLs are made by ``labelhub sync`` for private Hub datasets and local
git repositories (:mod:`labelhub.file_urls`), signed with ``LABELHUB_SECRET`` (:mod:`labelhub.signing`), and
reached by the browsers at ``LABELHUB_PUBLIC_URL``.

- Only the repos of ``LABELHUB_FILE_REPOS`` are served (:class:`RepoFiles`): Hub datasets through
  :func:`huggingface_hub.hf_hub_download` with ``HF_TOKEN`` into huggingface_hub's cache (the cache
  :mod:`labelhub.backend.media` reads for predictions, so a file is downloaded once for both), local repositories
  from the pinned commit's objects (:class:`labelhub.repos.git.GitObjects`, never the work tree); a local file
  larger than :data:`BLOB_FILE_BYTES` is written once to ``MODEL_DIR/blobs/<blob id>`` and served from there, so a
  range request (a seek in a long video) reads its range, not the whole blob into the worker's memory.
- Only 40-hex commit shas, so content never changes: strong ``ETag`` (the git blob id, or the Hub's
  blob etag), ``Cache-Control: public|private, max-age=31536000, immutable`` (RFC 8246; ``private`` for
  private Hub repos and local repos), conditional requests (``If-None-Match`` → 304) and single byte
  ranges (RFC 9110 §14: ``Range: bytes=a-b`` → 206, for audio and video seeking), all by werkzeug.
- ``Content-Type`` from the path (:mod:`mimetypes`), ``X-Content-Type-Options: nosniff`` and
  ``Content-Security-Policy: sandbox`` (an HTML or SVG file opened directly cannot run script in the
  backend's origin), ``Access-Control-Allow-Origin: *`` (the URL is the credential; no cookies are
  involved) so Label Studio's audio player and ``valueType="url"`` texts can fetch it.
- Refused without detail: a missing, bad or expired signature → 403; a sha that is not 40 hex digits,
  a path with ``..``/``.``/empty parts or a leading ``/``, a repo that is not configured, a file that is
  not at that commit, a symlink, a submodule, a directory or a git LFS file whose object is not fetched (never its
  pointer, :mod:`labelhub.repos.git`) in a local repo → 404. The reason is logged
  (path only: the query string holding the signature is never logged; escaped, :func:`labelhub.redaction.escaped`).
- A repo that moved: a signed URL of a key ``LABELHUB_FILE_REPOS`` does not name (the tasks of a repo that was
  renamed keep its old key) → 404, and one warning per key every :data:`SAY_AGAIN_AFTER` seconds naming the key and
  how to serve it again (``<key>=<path>``); a configured local repo whose directory is gone (moved, renamed or
  deleted under the running backend) → 503 (:class:`RepoGone`), one warning when it goes and one line when it is
  back (each worker says it: the state is per process), and the repository is opened anew then.
- A Hub repo ``HF_TOKEN`` cannot read (the Hub says no such repo: a token without access to it, or the repo deleted
  or renamed) or a token the Hub refuses (401: invalid, expired, revoked) → 502, the cause said once per repo and
  cause at WARNING every :data:`SAY_AGAIN_AFTER` seconds (:meth:`RepoFiles.hub_refusal`), each request at DEBUG:
  a page of 50 images is one line naming ``HF_TOKEN``, not 50 saying "no such file" or "HTTP 401".
"""
from __future__ import annotations

import io
import logging
import mimetypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cachetools import TTLCache
from flask import Blueprint, Response, current_app, jsonify, request, send_file

from labelhub.backend.errors import BackendError
from labelhub.redaction import escaped, one_line, redact
from labelhub.errors import FileTooLarge, HubError, NotFoundError, RepoNotFound
from labelhub.repos.git import GitObjects, is_git_repo
from labelhub.repos.hub import download, needs_token
from labelhub.backend.settings import Settings
from labelhub.signing import (MIN_SECRET_LENGTH, ExpiredSignature, FileRef, SignatureError, is_commit_sha,
                          is_safe_path, parse_file_url, repo_key, verify)

log = logging.getLogger(__name__)

__all__ = ["files_bp", "RepoFiles", "FileRepo", "ServedFile", "FileNotServed", "SignatureRefused",
           "FileUnavailable", "RepoGone", "parse_file_repos", "unknown_key_reason", "IMMUTABLE", "SAY_AGAIN_AFTER",
           "ANOTHER_SECRET"]

files_bp = Blueprint("files", __name__)

#: Cache lifetime of a file at a commit sha: a year, the longest RFC 9111 advises; ``immutable`` (RFC 8246).
IMMUTABLE = "max-age=31536000, immutable"
_VISIBILITY_TTL = 600.0  # seconds a Hub repo's public/private answer is kept
#: Seconds before a worker warns again about a signed URL of a key ``LABELHUB_FILE_REPOS`` does not name (each
#: request of it is logged at DEBUG in between: a page of 50 old tasks makes one warning, not 50).
SAY_AGAIN_AFTER = 600.0
#: What a refused file route URL says when its repo is read here but its signature is not this ``LABELHUB_SECRET``'s
#: (the common cause: the sync and the backend each ran the README's ``secrets.token_urlsafe`` in its own shell).
ANOTHER_SECRET = ("it is signed with another LABELHUB_SECRET than this backend's: give the backend and the sync the "
                  "same one")


class _HiddenReason(BackendError):
    """An error whose ``reason`` is logged, never answered: the answer is only :attr:`public`.

    Attributes:
        said: Whether the reason was already logged once, as a warning of its own (:meth:`RepoFiles.check`,
            :class:`RepoGone`): the route then logs the request at DEBUG only.
    """

    public = ""

    def __init__(self, reason: str, said: bool = False):
        super().__init__(self.public)
        self.reason = reason
        self.said = said


class FileNotServed(_HiddenReason):
    """404: not a file this backend serves."""

    status, code, public = 404, "not_found", "not found"


class SignatureRefused(_HiddenReason):
    """403: the URL's signature is missing, bad or expired."""

    status, code, public = 403, "forbidden", "forbidden"


class FileUnavailable(_HiddenReason):
    """502: the Hub could not be reached or answered an error for a configured repo's file."""

    status, code, public = 502, "file_unavailable", "the file could not be read from its repo"


class RepoGone(_HiddenReason):
    """503: a configured local repository is no longer a git repository at its path (moved, renamed or deleted
    under the running backend); answered until it is back there (decided: 503, not 404, since the file is
    configured and may come back; no ``Retry-After``, as no one knows when)."""

    status, code, public = 503, "repo_unavailable", "the file's repo is not available"


@dataclass(frozen=True)
class FileRepo:
    """A repo the file route serves.

    Attributes:
        key: Its name in URLs (:func:`labelhub.signing.repo_key`).
        kind: ``"hub"`` (a Hub dataset) or ``"local"`` (a local git repository).
        source: The Hub ``repo_id``, or the repository's absolute path.
    """

    key: str
    kind: str
    source: str


@dataclass
class ServedFile:
    """One file ready to be answered.

    Attributes:
        etag: The git blob id (local) or the Hub blob's etag: strong, the content never changes.
        private: Whether the answer may only be cached by the browser (``Cache-Control: private``).
        path: The file on disk (Hub: huggingface_hub's cache), or ``None``.
        data: The bytes (local repos), or ``None``.
    """

    etag: str
    private: bool
    path: str | None = None
    data: bytes | None = None

    def read(self, max_bytes: int | None = None) -> bytes:
        """The file's bytes (at most ``max_bytes + 1`` of them when given)."""
        if self.data is not None:
            return self.data
        with open(self.path, "rb") as fh:
            return fh.read(-1 if max_bytes is None else max_bytes + 1)


#: How an entry of ``LABELHUB_FILE_REPOS`` that is a path begins (:func:`parse_file_repos`).
_PATH_STARTS = ("/", "./", "../", "~")


def parse_file_repos(entries: tuple[str, ...] | list[str]) -> dict[str, FileRepo]:
    """Read ``LABELHUB_FILE_REPOS``.

    Args:
        entries: Items of the comma-separated variable: ``owner/name`` (a Hub dataset), a path (an
            existing directory: a local git repository), each optionally prefixed ``key=``.

    An entry that is an existing directory, or that begins with ``/``, ``./``, ``../`` or ``~`` (a path meant, even
    a missing one), is a path as a whole, before any ``key=`` is looked for: a directory ``run=3/ds`` is a local
    repository, not the Hub dataset ``3/ds`` named ``run``. Else the text before the first ``=`` is the key. Decided:
    an existing directory wins over a ``key=`` reading of the same text (name such a repo with ``key=`` and a
    path that begins with ``./`` or ``/``: ``run=./run=3/ds``). A comma cannot be told apart from the separator
    (:meth:`labelhub.backend.settings.Settings._parse` splits the variable on it): a path holding one is given
    through a symlink whose path holds none (the key, the directory's real name, is the one the sync uses).

    Returns:
        ``{key: FileRepo}``.

    Raises:
        ValueError: When an entry is neither an existing directory nor ``owner/name``, a path is not a directory,
            a directory is not a git repository, or two entries have the same key.

    Example:
        >>> parse_file_repos(["me/pics"])
        {'me--pics': FileRepo(key='me--pics', kind='hub', source='me/pics')}
    """
    repos: dict[str, FileRepo] = {}
    for entry in entries:
        entry = entry.strip()
        key, sep, source = entry.partition("=")
        if not sep or os.path.isdir(entry) or entry.startswith(_PATH_STARTS):  # a path as a whole
            key, source = "", entry
        key, source = key.strip(), os.path.expanduser(source.strip())
        if source.startswith(_PATH_STARTS) and not os.path.isdir(source):
            raise ValueError(f"LABELHUB_FILE_REPOS: {source!r} is not a directory (a local git repository)")
        if os.path.isdir(source):
            path = Path(source).resolve()
            if not is_git_repo(path):
                raise ValueError(f"LABELHUB_FILE_REPOS: {path} is not a git repository")
            repo = FileRepo(key or repo_key(str(path), local=True), "local", str(path))
        elif len(source.split("/")) == 2 and all(source.split("/")) and not source.startswith("."):
            repo = FileRepo(key or repo_key(source), "hub", source)
        else:
            raise ValueError(f"LABELHUB_FILE_REPOS: {source!r} is neither a directory nor a Hub dataset owner/name")
        if "/" in repo.key or not repo.key:
            raise ValueError(f"LABELHUB_FILE_REPOS: bad key {repo.key!r}")
        if repo.key in repos:
            raise ValueError(f"LABELHUB_FILE_REPOS: two repos named {repo.key!r}; name one with key=...")
        repos[repo.key] = repo
    return repos


_warned_without_secret: set[tuple[str, ...]] = set()  # repo sources already warned about in this process
_warned_lock = threading.Lock()


def _warn_without_secret(repos: dict[str, FileRepo]) -> None:
    """Say once per process that ``LABELHUB_FILE_REPOS`` is set without ``LABELHUB_SECRET``, and when that matters.

    ``labelhub backend`` checks its settings (:func:`labelhub.backend.startup.check_settings`) before gunicorn forks
    its workers, which inherit this module and so the note that it was said: the command says it once, not once
    more per worker (nor per test app). It matters only to tasks whose file URLs point at the backend's file route:
    a local repo's, and a private Hub dataset's when the sync signs them; a public Hub dataset's tasks keep the Hub's
    ``resolve`` URLs (README "Private datasets and local repos"), so the docker-compose stack, which names its
    ``LABELHUB_REPO`` here whatever it is, says it for a public one too.
    """
    sources = tuple(sorted(repo.source for repo in repos.values()))
    with _warned_lock:
        if sources in _warned_without_secret:
            return
        _warned_without_secret.add(sources)
    log.warning("LABELHUB_FILE_REPOS is set (%s) but LABELHUB_SECRET is not: the file route refuses every file URL, "
                "so a task whose file is at the backend's /files/ URL (a local repo's, a private Hub dataset's) shows "
                "no file and gets no prediction. Set the sync's LABELHUB_SECRET here too; a public Hub dataset's "
                "tasks keep the Hub's URLs and need none", ", ".join(sources))


#: A local repository's file larger than this (bytes) is kept in ``MODEL_DIR/blobs/<git blob id>`` after its first
#: request and served from that file (:meth:`RepoFiles.open`): dulwich hands a blob over whole, so a 150 MB video read
#: for each 100-byte ``Range`` request took 1 s and 1.2 GB for four at once (an audit). Blob ids are content
#: addresses, so a kept file never goes stale; the folder holds at most one copy of each such file served (it is
#: not trimmed: delete it to reclaim the space).
BLOB_FILE_BYTES = 8 * 1024 * 1024
#: The folder under ``MODEL_DIR`` of the kept blobs.
BLOB_DIR = "blobs"


class RepoFiles:
    """The repos of ``LABELHUB_FILE_REPOS`` and how to read their files (one per worker, shared by the
    file route and :class:`labelhub.backend.media.MediaFetcher`).

    Args:
        settings: The backend settings (``LABELHUB_FILE_REPOS``, ``LABELHUB_SECRET``, ``HF_TOKEN``,
            ``LABELHUB_MEDIA_TIMEOUT``).

    Raises:
        ValueError: When ``LABELHUB_FILE_REPOS`` is invalid (see :func:`parse_file_repos`) or
            ``LABELHUB_SECRET`` is shorter than 16 characters.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        if settings.secret and len(settings.secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"LABELHUB_SECRET must have at least {MIN_SECRET_LENGTH} characters")
        self.repos = parse_file_repos(settings.file_repos)
        if self.repos and not settings.secret:
            _warn_without_secret(self.repos)
        self._git: dict[str, GitObjects] = {}
        self._gone: set[str] = set()  # keys of local repos whose directory was found gone (said once)
        # (what, key) -> True while a warning about it is not to be repeated (SAY_AGAIN_AFTER seconds)
        self._said: TTLCache[tuple[str, str], bool] = TTLCache(maxsize=1024, ttl=SAY_AGAIN_AFTER)
        # repo key -> whether the Hub repo is private, for _VISIBILITY_TTL seconds
        self._visibility: TTLCache[str, bool] = TTLCache(maxsize=max(len(self.repos), 1), ttl=_VISIBILITY_TTL)
        self._lock = threading.Lock()

    # ---- signatures ------------------------------------------------------------------------------
    def check(self, key: str, sha: str, path: str, expires: str | None, sig: str | None,
              check_expiry: bool = True, say_unknown: bool = True) -> FileRepo:
        """Check a file URL's parts; return its repo.

        Args:
            key, sha, path: From the URL (``path`` decoded).
            expires, sig: The ``exp`` and ``sig`` query parameters (``None`` when absent).
            check_expiry: ``False`` accepts an expired signature (reads for predictions).
            say_unknown: Whether a validly signed URL of a key that is not configured is warned about (once per key
                every :data:`SAY_AGAIN_AFTER` seconds; the signature is checked first, so only URLs the sync issued
                get there): the key and ``add <key>=<path> to LABELHUB_FILE_REPOS``, the usual cause being a local
                repo renamed or moved after its tasks were made (its key is its directory's name).

        Returns:
            The configured :class:`FileRepo`.

        Raises:
            FileNotServed: A sha that is not 40 hex digits, an unsafe path, or a repo that is not configured.
            SignatureRefused: A missing, bad or expired signature. A bad one of a repo read here, with this
                ``LABELHUB_SECRET`` set, is warned about once per key every :data:`SAY_AGAIN_AFTER` seconds as
                :data:`ANOTHER_SECRET` (a page of images signed with another secret is one line, not one 403 each).
        """
        if not is_commit_sha(sha):
            raise FileNotServed("revision is not a commit sha")
        if not is_safe_path(path):
            raise FileNotServed("path outside the repo")
        try:
            verify(self.settings.secret, key, sha, path, expires, sig, check_expiry=check_expiry)
        except ExpiredSignature:
            raise SignatureRefused("expired signature") from None
        except SignatureError as exc:
            if key in self.repos and self.settings.secret and sig:  # the browser's 403s of a whole page: one warning
                self._say_once("signature", key, "signed file URLs of repo %r are refused (%s): if the sync made them, "
                               "%s", escaped(key, 100), exc, ANOTHER_SECRET)
            raise SignatureRefused(str(exc)) from None
        repo = self.repos.get(key)
        if repo is None:
            reason = unknown_key_reason(key, self.repos)
            if say_unknown:
                self._say_once("unknown", key, "a signed file URL was refused: %s", reason)
            raise FileNotServed(reason, said=say_unknown)
        return repo

    def _say_once(self, what: str, key: str, message: str, *args) -> None:
        """Log ``message % args`` as a warning unless it was said of ``(what, key)`` in the last
        :data:`SAY_AGAIN_AFTER` seconds (in this worker)."""
        with self._lock:
            if self._said.get((what, key)):
                return
            self._said[(what, key)] = True
        log.warning(message, *args)

    def owns(self, url: str) -> FileRef | None:
        """The parts of ``url`` when it is a signed file URL of a configured repo (any host: the signature
        proves it was issued with this secret), else ``None``. Expired signatures count (for predictions)."""
        if not self.repos or not self.settings.secret:
            return None
        ref = parse_file_url(url)
        if ref is None:
            return None
        try:
            self.check(ref.key, ref.sha, ref.path, ref.expires, ref.sig, check_expiry=False, say_unknown=False)
        except BackendError:
            return None
        return ref

    # ---- reading ---------------------------------------------------------------------------------
    def open(self, repo: FileRepo, sha: str, path: str, visibility: bool = True,
             max_bytes: int | None = None) -> ServedFile:
        """Get ``path`` of ``repo`` at commit ``sha``.

        Args:
            repo: A configured repo (from :meth:`check`).
            sha: A commit sha (40 hex digits).
            path: A safe ``path_in_repo``.
            visibility: Whether to find out if a Hub repo is public (one ``repo_info`` call per worker
                every 10 minutes; ``False``: answered as private, no call).
            max_bytes: A Hub file larger than this (bytes) is refused before it is downloaded
                (:func:`labelhub.repos.hub.download`); ``None``: any size.

        Returns:
            A :class:`ServedFile`.

        Raises:
            FileNotServed: The file is not at that commit (or is a symlink, submodule or directory).
            RepoGone: A local repo's directory is no longer a git repository (:meth:`_local_file`).
            FileUnavailable: The Hub could not be reached or answered another error.
            FileTooLarge: A Hub file is larger than ``max_bytes``.
        """
        if repo.kind == "local":
            return self._local_file(repo, sha, path)
        local = self._hub_download(repo, sha, path, max_bytes)
        real = os.path.realpath(local)
        etag = os.path.basename(real) if os.path.basename(os.path.dirname(real)) == "blobs" else f"{sha}-{path}"
        private = self._hub_private(repo) if visibility else True
        return ServedFile(etag=etag, private=private, path=local)

    def read(self, ref: FileRef) -> bytes:
        """The bytes a signed file URL points to (:meth:`owns` returned ``ref``), read locally.

        Raises:
            FileNotServed, RepoGone, FileUnavailable: As for :meth:`open`.
            FileTooLarge: A Hub file over ``LABELHUB_MEDIA_MAX_BYTES`` (not downloaded).
        """
        repo = self.check(ref.key, ref.sha, ref.path, ref.expires, ref.sig, check_expiry=False)
        served = self.open(repo, ref.sha, ref.path, visibility=False, max_bytes=self.settings.media_max_bytes)
        return served.read(self.settings.media_max_bytes)

    def _git_objects(self, repo: FileRepo) -> GitObjects:
        """The reader of a local repo, made anew after its directory was gone (never a handle of the old one).

        Raises:
            RepoGone: Its directory is missing (one ``stat`` a request).
        """
        if not os.path.isdir(repo.source):
            raise self._gone_now(repo, "the directory is missing")
        with self._lock:
            objects = self._git.get(repo.key)
            if objects is None:
                objects = self._git[repo.key] = GitObjects(repo.source)
            return objects

    def _opened(self, repo: FileRepo) -> None:
        """Say once that ``repo``, found gone before, was opened again as a git repository."""
        with self._lock:
            if repo.key not in self._gone:
                return
            self._gone.discard(repo.key)
        log.info("the local repo %s of LABELHUB_FILE_REPOS key %r is back: its files are served again",
                 repo.source, repo.key)

    def _gone_now(self, repo: FileRepo, why: str) -> RepoGone:
        """Forget ``repo``'s reader (its open packs are the old directory's), say once that it is gone, and return
        the :class:`RepoGone` to raise."""
        with self._lock:
            self._git.pop(repo.key, None)
            first = repo.key not in self._gone
            self._gone.add(repo.key)
        reason = (f"the local repo of LABELHUB_FILE_REPOS key {repo.key!r} is gone from {repo.source} ({why}): "
                  f"moved, renamed or deleted? Its files answer 503 until it is back there; if it moved, set "
                  f"LABELHUB_FILE_REPOS to {repo.key}=<its new path> and restart the backend")
        if first:
            log.warning("%s", reason)
        return RepoGone(reason, said=True)

    def _local_file(self, repo: FileRepo, sha: str, path: str) -> ServedFile:
        """A local repository's regular file: from ``MODEL_DIR/blobs`` when kept there (no blob read), else read
        with dulwich, and kept there when larger than :data:`BLOB_FILE_BYTES` (written atomically; a disk that refuses
        it leaves the file served from memory, said in the log).

        Raises:
            FileNotServed: The file is not at that commit (or is a symlink, submodule or directory, or a git LFS
                pointer whose object is not fetched).
            RepoGone: Its directory is missing or no longer a git repository (also when it goes while being read).
        """
        from dulwich.errors import NotGitRepository

        objects = self._git_objects(repo)
        try:
            objects.repo()  # this thread's repository: raises NotGitRepository when it is not one any more
            self._opened(repo)
            return self._read_local(repo, objects, sha, path)
        except NotGitRepository:
            raise self._gone_now(repo, "not a git repository any more") from None
        except FileNotFoundError:  # went between the check and the read
            raise self._gone_now(repo, "the directory is missing") from None

    def _read_local(self, repo: FileRepo, objects: GitObjects, sha: str, path: str) -> ServedFile:
        """:meth:`_local_file`'s reading, with ``objects`` (which raise dulwich's ``NotGitRepository``)."""
        entry = objects.entry(sha, path)
        if entry is not None and entry[0] in (0o100644, 0o100755):
            kept = Path(self.settings.model_dir) / BLOB_DIR / entry[1].decode()
            if kept.is_file():
                return ServedFile(etag=entry[1].decode(), private=True, path=str(kept))
        found = objects.blob(sha, path)
        if found is None:
            if not objects.has_commit(sha):
                raise FileNotServed(f"commit {sha[:12]} is not in the repository (a rewritten history whose old "
                                    "commits were pruned): the sync re-pins the tasks whose file is the same at the "
                                    "head")
            if objects.lfs_pointer_at(sha, path):
                raise FileNotServed(f"a git LFS file whose object is not in {objects.lfs_objects()} (run git lfs fetch "
                                    "in the repository), never served as its pointer")
            raise FileNotServed("no such regular file at that commit")
        blob_id, data = found
        if len(data) > BLOB_FILE_BYTES:
            from labelhub.backend.state import atomic_write_bytes

            kept = Path(self.settings.model_dir) / BLOB_DIR / blob_id
            try:
                atomic_write_bytes(kept, data)
                return ServedFile(etag=blob_id, private=True, path=str(kept))
            except OSError as exc:
                log.warning("a %d-byte file of %s is served from memory: it could not be kept in %s (%s)", len(data),
                            repo.key, kept.parent, one_line(exc, 200))
        return ServedFile(etag=blob_id, private=True, data=data)

    def _hub_download(self, repo: FileRepo, sha: str, path: str, max_bytes: int | None = None) -> str:
        """The local path of a Hub repo's file (:func:`labelhub.repos.hub.download`, with ``HF_TOKEN``).

        Raises:
            FileTooLarge: Larger than ``max_bytes``.
            FileUnavailable: ``HF_TOKEN`` cannot read the repo, or the Hub refused it (:meth:`hub_refusal`: said once,
                the request at DEBUG); or the Hub could not be reached or answered another error.
            FileNotServed: No such file or revision in the repo.
        """
        try:
            return download(repo.source, path, sha, token=self.settings.hf_token or None,
                            etag_timeout=self.settings.media_timeout, max_bytes=max_bytes)
        except FileTooLarge:
            raise
        except Exception as exc:  # HubError (5xx, unreachable), NotFoundError, OSError (disk) ...
            refused = self.hub_refusal(exc, repo.source)
            if refused is not None:
                raise FileUnavailable(refused, said=True) from None
            if isinstance(exc, NotFoundError):
                raise FileNotServed(f"the Hub has no such file ({type(exc).__name__})") from None
            status = getattr(exc, "status", None)
            raise FileUnavailable(f"Hub download failed ({f'HTTP {status}' if status else type(exc).__name__})") \
                from None

    def hub_refusal(self, exc: BaseException, repo_id: str, repo_type: str = "dataset") -> str | None:
        """Why ``HF_TOKEN`` cannot read Hub repo ``repo_id``, when ``exc`` (raised by
        :func:`labelhub.repos.hub.download`) says so, else ``None``; said at WARNING once per repo and cause every
        :data:`SAY_AGAIN_AFTER` seconds in this worker (:meth:`_say_once`), the callers' lines at DEBUG.

        A :class:`~labelhub.errors.RepoNotFound` is the Hub's answer to a token that cannot see the repo (a
        fine-grained one without it, none for a private repo) as much as to a repo deleted or renamed: not "no such
        file". A 401 is the Hub refusing the token itself (invalid, expired, revoked; its message says so). Decided:
        both answer as unavailable (502), not 404: the file is there for a token that can read it.
        """
        if isinstance(exc, RepoNotFound):
            cause = "repo"
            token = "HF_TOKEN" if self.settings.hf_token else "HF_TOKEN (not set)"
            reason = (f"{token} cannot read {repo_type} {repo_id}: the Hub answers that it has no such repo (a token "
                      "without access to it, e.g. a fine-grained one, or the repo was deleted or renamed); give "
                      f"HF_TOKEN read access to {repo_id}")
        elif isinstance(exc, HubError) and exc.status == 401:
            cause = "token"
            reason = f"the files of {repo_type} {repo_id} cannot be read: {one_line(exc, 400)}"
        else:
            return None
        self._say_once(f"hub-{cause}", f"{repo_type}:{repo_id}", "%s", reason)
        return reason

    def _hub_private(self, repo: FileRepo) -> bool:
        with self._lock:
            known = self._visibility.get(repo.key)
        if known is not None:
            return known
        try:
            from huggingface_hub import HfApi

            info = HfApi(token=self.settings.hf_token or None).repo_info(
                repo.source, repo_type="dataset", timeout=self.settings.media_timeout)
            private = needs_token(info)  # a gated repo too: no browser may load its resolve URLs
        except Exception as exc:  # unknown: answer as private
            log.warning("could not tell whether dataset %s is public (%s): files are answered as private",
                        repo.source, type(exc).__name__)
            private = True
        with self._lock:
            self._visibility[repo.key] = private
        return private


def unknown_key_reason(key: str, repos: dict[str, FileRepo]) -> str:
    """Why a signed file URL of ``key`` is not read: the key (escaped: it comes from a URL), the keys configured,
    and what to add to ``LABELHUB_FILE_REPOS`` when the repo was renamed or moved (its tasks keep the old key).

    Example:
        >>> unknown_key_reason("images", {})
        "repo key 'images' is not in LABELHUB_FILE_REPOS (it names none): if that repo was renamed or moved, add images=<its path> to LABELHUB_FILE_REPOS (the old key beside the new path keeps its tasks loading)"
    """
    named = ", ".join(sorted(repos)) or "none"
    shown = escaped(key, 100)
    return (f"repo key '{shown}' is not in LABELHUB_FILE_REPOS (it names {named}): if that repo was renamed or moved, "
            f"add {shown}=<its path> to LABELHUB_FILE_REPOS (the old key beside the new path keeps its tasks loading)")


def _repo_files() -> RepoFiles:
    return current_app.extensions["labelhub"].fetcher.repo_files


@files_bp.route("/files/<key>/<sha>/<path:path>", methods=["GET"], merge_slashes=False)
def serve_file(key: str, sha: str, path: str):
    """``GET|HEAD /files/<key>/<sha>/<path>?exp=...&sig=...``: the file (see the module docstring).

    Answers 200 with the bytes, 206 for a satisfiable ``Range``, 304 for a matching ``If-None-Match``,
    416 for an unsatisfiable range; refusals raise :class:`SignatureRefused` (403) or
    :class:`FileNotServed` (404), which the error handlers answer as ``{"error": "forbidden"|"not found"}``.
    """
    files = _repo_files()
    repo = files.check(key, sha, path, request.args.get("exp"), request.args.get("sig"))
    served = files.open(repo, sha, path)
    mimetype = mimetypes.guess_type(path)[0] or "application/octet-stream"
    source = served.path if served.path is not None else io.BytesIO(served.data)
    response = send_file(source, mimetype=mimetype, conditional=True, etag=served.etag, max_age=None)
    response.headers["Cache-Control"] = f"{'private' if served.private else 'public'}, {IMMUTABLE}"
    response.headers.pop("Expires", None)
    return response


@files_bp.after_request
def _headers(response: Response) -> Response:
    """Security and CORS headers on every answer of the file route, and the request counter."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Headers"] = "Range, If-None-Match"
    response.headers["Access-Control-Expose-Headers"] = "Content-Length, Content-Range, Accept-Ranges, ETag"
    if response.status_code >= 400:
        response.headers["Cache-Control"] = "no-store"
    backend = current_app.extensions["labelhub"]
    backend.metrics.requests.labels(endpoint="files", status=str(response.status_code)).inc()
    return response


@files_bp.errorhandler(FileNotServed)
@files_bp.errorhandler(SignatureRefused)
@files_bp.errorhandler(FileUnavailable)
@files_bp.errorhandler(RepoGone)
def _refused(exc: BackendError):
    """Log the reason of a refusal (the path, escaped, never the query string) and answer without it; at DEBUG when
    the reason was warned about already (``said``: a moved repo, said once, not per request)."""
    secrets = current_app.extensions["labelhub"].settings.secrets
    level = logging.WARNING if isinstance(exc, FileUnavailable) else logging.INFO
    if getattr(exc, "said", False):
        level = logging.DEBUG
    log.log(level, "%s %s → %d: %s", request.method, escaped(redact(request.path, secrets)), exc.status,
            getattr(exc, "reason", ""))
    response = jsonify(exc.to_dict())
    response.status_code = exc.status
    return response
