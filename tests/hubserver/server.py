"""`HubServer`: the test Hub served by werkzeug in a background thread, plus seeding helpers.

    srv = HubServer(root=tmp_path, port=0, token="hf_x")   # port 0 = pick a free port
    srv.start(); srv.url                                    # "http://127.0.0.1:PORT"
    srv.create_repo("user/ds"); sha = srv.commit_files("user/ds", {"a.txt": b"hi"})
    srv.faults.add(method="POST", path=r"/commit/", kind="drop")
    srv.calls; srv.reset_calls(); srv.stop()               # or `with HubServer(...) as srv:`
"""

from __future__ import annotations

import threading
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, make_server

from .app import HubApp
from .errors import revision_not_found
from .faults import Call, CallLog, Faults
from .gitstore import GitStore


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (errors are still reported)."""

    def log_request(self, code="-", size="-") -> None:
        pass


class HubServer:
    """A Hub-compatible HTTP server backed by bare git repos under `root`.

    `token`: when set, writes need `Authorization: Bearer <token>` and wrong tokens get 401;
    private repos need a valid token to be read (401 `RepoNotFound` otherwise). `username` is the
    namespace used when `create_repo` gets no organization, and the author of API commits.
    """

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 username: str = "user"):
        self.root, self.host, self.port, self.token = Path(root), host, port, token
        self.store = GitStore(self.root)
        self.faults = Faults()
        self._calls = CallLog()
        self.app = HubApp(self.store, token=token, faults=self.faults, calls=self._calls, username=username)
        self._server = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "HubServer":
        """Bind `host:port` (raises `OSError` if taken) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._server = make_server(self.host, self.port, self.app, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (for `python -m tests.hubserver`)."""
        self.start()
        try:
            self._thread.join()
        finally:
            self.stop()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """`http://HOST:PORT` (the real port once started)."""
        return f"http://{self.host}:{self.port}"

    # ---- call counting -----------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every request so far, as `Call(method, path)` tuples (path URL-decoded, no query)."""
        return self._calls.snapshot()

    def reset_calls(self) -> None:
        """Forget the recorded calls."""
        self._calls.reset()

    def count_calls(self, method: str | None = None, path: str | None = None) -> int:
        """How many recorded calls match `method` (None = any) and regex `path` (None = any)."""
        return self._calls.count(method, path)

    # ---- seeding (no HTTP) -------------------------------------------------------------------

    def git_dir(self, repo_id: str, repo_type: str = "dataset") -> Path:
        """Path of the repo's bare git directory."""
        return self.store.git_dir(repo_type, repo_id)

    def create_repo(self, repo_id: str, private: bool = False, repo_type: str = "dataset") -> str:
        """Create a repo (with the Hub's initial `.gitattributes` commit); returns its URL.
        Raises `HubError` (409) if it exists."""
        self.store.create(repo_type, repo_id, private=private)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"

    def commit_files(self, repo_id: str, files: dict[str, bytes | str] | None = None, message: str = "seed",
                     deletes: list[str] = (), repo_type: str = "dataset", branch: str = "main",
                     parent_commit: str | None = None, author: str = "user") -> str:
        """Commit `files` (path -> bytes/str) and `deletes` (file paths) onto `branch` directly in
        git; returns the new head sha (the old one if nothing changed)."""
        self.store.meta(repo_type, repo_id)  # 404 HubError if the repo does not exist
        adds = {p: (c.encode() if isinstance(c, str) else bytes(c)) for p, c in (files or {}).items()}
        sha, _created = self.store.commit(
            self.git_dir(repo_id, repo_type), branch, adds=adds, deletes=list(deletes), summary=message,
            parent_commit=parent_commit, author=author,
        )
        return sha

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> str:
        """Commit sha a revision (branch, tag, sha) points to. Raises `HubError` 404 if unknown."""
        sha = self.store.resolve(self.git_dir(repo_id, repo_type), revision)
        if sha is None:
            raise revision_not_found(revision)
        return sha
