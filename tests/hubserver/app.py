"""The WSGI app: Hugging Face Hub HTTP routes answered from a `GitStore`.

Shapes follow what `huggingface_hub` 2.x parses (paths relative to its package):
- `hf_api.py`: `create_repo`/`delete_repo` (`/api/repos/create|delete`), `repo_info`
  (`/api/{type}s/{id}[/revision/{rev}]` -> `ModelInfo`/`DatasetInfo` keys), `list_repo_tree`
  (`/tree/{rev}/{path}` -> `RepoFile`/`RepoFolder` keys), `get_paths_info` (`/paths-info/{rev}`),
  `list_repo_refs` (`/refs`), `list_repo_commits` (`/commits/{rev}`), `create_tag`/`delete_tag`
  (`/tag/...`), `create_branch`/`delete_branch` (`/branch/...`), `update_repo_settings`
  (`/settings`), `_validate_yaml` (`/api/validate-yaml`), `whoami` (`/api/whoami-v2`).
- `_commit_api.py`: `_fetch_upload_modes` (`/preupload/{rev}`) and `_send_commit` (NDJSON
  `/commit/{rev}`).
- `file_download.py`: `get_hf_file_metadata`/`http_get` (`HEAD`/`GET /[{type}s/]{id}/resolve/{rev}/{path}`).
- `utils/_pagination.py`: pages are followed through `Link: <url>; rel="next"`.
Hub API docs: https://huggingface.co/docs/hub/api

Routing is done on the raw (still percent-encoded) path split on `/`, so a revision sent as
`refs%2Fpr%2F1` stays one segment. Paging cursors are `<commit sha>:<offset>`, so the pages of
one listing all come from the same commit even if the branch moves meanwhile.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import socket
import sys
import traceback
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlencode, urlsplit

from werkzeug.wrappers import Request, Response

from .errors import HubError, bad_request, entry_not_found, repo_not_found, revision_not_found
from .faults import CallLog, Faults
from .gitstore import GitStore, hub_date

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with huggingface_hub
    yaml = None

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
TREE_PAGE = 1000  # Hub: 1000 entries a page ...
TREE_PAGE_EXPAND = 50  # ... 50 with expand=true (see `_iter_repo_tree_pages` docstring)
COMMITS_PAGE = 50  # default page of /commits; `?limit=` up to 1000
WRITE_ACTIONS = {"preupload", "commit", "tag", "branch", "settings"}
INVALID_TOKEN = "Invalid credentials in Authorization header"


class Repo(NamedTuple):
    """A repo a request may use: `type` (`"dataset"`...), `id` (`ns/name`), `gd` (git dir), `private`."""

    type: str
    id: str
    gd: Path
    private: bool
    created_at: str


def _truthy(value) -> bool:
    return str(value).lower() in ("1", "true", "yes") if value is not None else False


def _json(obj, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(obj), status=status, headers=headers, mimetype="application/json")


def _split_rev(args: list[str]) -> tuple[str, list[str]]:
    """`[rev, *path]`; keeps an unencoded special ref (`refs/pr/1`, `refs/convert/parquet`) whole."""
    if not args or not args[0]:
        raise HubError(404, "Missing revision")
    if args[0] == "refs" and len(args) >= 3 and args[1] in ("pr", "convert"):
        return "/".join(args[:3]), args[3:]
    return args[0], args[1:]


def _front_matter(text: str):
    """The YAML block between leading `---` lines of a README, parsed (None if absent)."""
    match = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.S)
    if not match or yaml is None:
        return None
    return yaml.safe_load(match.group(1))


def _drop_connection(environ) -> None:
    """Close the client connection without an answer (werkzeug dev server exposes the socket)."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionAbortedError("hubserver: injected connection drop")


class HubApp:
    """WSGI callable. `token`: when set, writes need `Authorization: Bearer <token>` and any other
    bearer value gets 401; when None, writes are open and any bearer value counts as logged in.
    Private repos always need a (valid) bearer token to be read: 401 + `RepoNotFound` otherwise."""

    def __init__(self, store: GitStore, token: str | None = None, faults: Faults | None = None,
                 calls: CallLog | None = None, username: str = "user"):
        self.store, self.token, self.username = store, token, username
        self.faults = faults if faults is not None else Faults()
        self.calls = calls if calls is not None else CallLog()
        self._cards: dict[str, object] = {}

    # ---- entry point -------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.calls.record(request.method, request.path)
        fault = self.faults.take(request.method, request.path)
        if fault is not None and fault.kind == "drop_before":
            request.get_data()
            _drop_connection(environ)
        if fault is not None and fault.kind == "502_after":
            self.handle(request)  # processed; the answer is lost behind a gateway's
            response = HubError(502, "Injected fault: HTTP 502 after processing").response()
        elif fault is not None and fault.kind != "drop":
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            response = HubError(int(fault.kind), f"Injected fault: HTTP {fault.kind}", headers=headers).response()
        else:
            response = self.handle(request)
            if fault is not None:  # "drop": processed, but the client never hears back
                _drop_connection(environ)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        """Route one request; `HubError` -> its JSON answer, anything else -> logged 500."""
        try:
            return self.route(request)
        except HubError as err:
            return err.response()
        except Exception as err:  # noqa: BLE001 - a test server should say what broke
            traceback.print_exc(file=sys.stderr)
            return HubError(500, f"hubserver internal error: {err!r}").response()

    @staticmethod
    def _raw_path(request: Request) -> str:
        raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
        raw = raw.split("?", 1)[0]
        return urlsplit(raw).path if "://" in raw else raw

    def route(self, request: Request) -> Response:
        """Dispatch `/api/...` and `/[{type}s/]{ns}/{name}/resolve/...`; 404 for anything else."""
        segs = [unquote(s) for s in self._raw_path(request).split("/")[1:]]
        if segs[:1] == ["api"]:
            return self.route_api(request, segs[1:])
        if segs[0] in ("datasets", "spaces") and len(segs) >= 6 and segs[3] == "resolve":
            return self.resolve_file(request, TYPES[segs[0]], f"{segs[1]}/{segs[2]}", segs[4:])
        if len(segs) >= 5 and segs[2] == "resolve":
            return self.resolve_file(request, "model", f"{segs[0]}/{segs[1]}", segs[3:])
        raise HubError(404, f"No route for {request.method} {request.path}")

    def route_api(self, request: Request, segs: list[str]) -> Response:
        """Dispatch `/api/<segs>`: global endpoints, then `ROUTES[(method, action)]` for
        `/api/{type}s/{ns}/{name}/{action}/...` after the auth/existence checks."""
        method = request.method
        if segs == ["repos", "create"] and method == "POST":
            return self.create_repo(request)
        if segs == ["repos", "delete"] and method == "DELETE":
            return self.delete_repo(request)
        if segs == ["validate-yaml"] and method == "POST":
            return self.validate_yaml(request)
        if segs == ["whoami-v2"] and method == "GET":
            return self.whoami(request)
        if len(segs) >= 3 and segs[0] in TYPES:
            action = segs[3] if len(segs) > 3 else ""
            handler = self.ROUTES.get((method, action))
            if handler is not None:
                repo = self.open_repo(request, TYPES[segs[0]], f"{segs[1]}/{segs[2]}", action in WRITE_ACTIONS)
                return handler(self, request, repo, segs[4:])
        raise HubError(404, f"No route for {method} {request.path}")

    # ---- auth & lookups ----------------------------------------------------------------------

    def auth(self, request: Request) -> bool:
        """True if the request carries a valid bearer token; 401 if it carries a wrong one."""
        header = request.headers.get("Authorization", "")
        if not header:
            return False
        given = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if self.token is None:
            return bool(given)
        if given == self.token:
            return True
        raise HubError(401, INVALID_TOKEN)

    def require_write(self, request: Request) -> None:
        """401 unless the request may write (always true when the server has no token)."""
        if not self.auth(request) and self.token is not None:
            raise HubError(401, INVALID_TOKEN)

    def open_repo(self, request: Request, repo_type: str, repo_id: str, write: bool) -> Repo:
        """Check auth and existence: 401 (write without token), 404/401 `RepoNotFound`."""
        logged_in = self.auth(request)
        if write and self.token is not None and not logged_in:
            raise HubError(401, INVALID_TOKEN)
        gd = self.store.git_dir(repo_type, repo_id)
        meta = self.store.meta(repo_type, repo_id)
        if meta["private"] and not logged_in:
            raise repo_not_found(401)
        return Repo(repo_type, repo_id, gd, meta["private"], meta["createdAt"])

    def resolve(self, repo: Repo, rev: str) -> str:
        """Commit sha for `rev`; 404 `RevisionNotFound` if unknown."""
        sha = self.store.resolve(repo.gd, rev)
        if sha is None:
            raise revision_not_found(rev)
        return sha

    def repo_url(self, request: Request, repo_type: str, repo_id: str) -> str:
        """`http://host:port/[datasets/|spaces/]ns/name`, as `RepoUrl` parses it."""
        return f"{request.host_url.rstrip('/')}/{URL_PREFIX[repo_type]}{repo_id}"

    def cursor(self, request: Request, repo: Repo, rev: str) -> tuple[str, int]:
        """`(sha, offset)` from `?cursor=<sha>:<offset>`, else `(resolve(rev), 0)`."""
        match = re.fullmatch(r"([0-9a-f]{40}):(\d+)", request.args.get("cursor", ""))
        if match:
            return self.resolve(repo, match.group(1)), int(match.group(2))
        return self.resolve(repo, rev), 0

    def next_link(self, request: Request, sha: str, offset: int) -> dict:
        """`Link` header pointing to the same URL with `cursor=<sha>:<offset>`."""
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
        args.append(("cursor", f"{sha}:{offset}"))
        url = f"{request.host_url.rstrip('/')}{self._raw_path(request)}?{urlencode(args)}"
        return {"Link": f'<{url}>; rel="next"'}

    def entry(self, repo: Repo, sha: str, kind: str, oid: str, size: int, path: str, expand: bool) -> dict:
        """A tree / paths-info item: `{"type": "file"|"directory", "oid", "size", "path"}`
        (+ `lastCommit: {id, title, date}` when `expand`). No `lfs`: everything is a plain git blob."""
        item = {"type": kind, "oid": oid, "size": size, "path": path}
        if expand:
            last = self.store.last_commit(repo.gd, sha, path)
            item["lastCommit"] = {"id": last.id, "title": last.title, "date": hub_date(last.epoch)}
        return item

    def card_data(self, repo: Repo, sha: str):
        """Parsed front matter of `README.md` at `sha` (cached by blob oid), or None."""
        found = self.store.lookup(repo.gd, sha, ["README.md"]).get("README.md")
        if not found or found[0] != "blob":
            return None
        oid = found[1]
        if oid not in self._cards:
            try:
                card = _front_matter(self.store.read_blob(repo.gd, oid).decode("utf-8", "replace"))
            except Exception:  # noqa: BLE001 - a broken card is just no card
                card = None
            self._cards[oid] = card if isinstance(card, dict) else None
        return self._cards[oid]

    # ---- global endpoints --------------------------------------------------------------------

    def create_repo(self, request: Request) -> Response:
        """`POST /api/repos/create` `{name, organization, type, visibility|private}` -> `{"url"}`;
        409 (with `url`, which `exist_ok=True` reads) if it exists."""
        self.require_write(request)
        body = request.get_json(silent=True) or {}
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or self.username}/{body.get('name')}"
        private = bool(body.get("private")) or body.get("visibility") == "private"
        url = self.repo_url(request, repo_type, repo_id)
        try:
            self.store.create(repo_type, repo_id, private=private)
        except HubError as err:
            if err.status != 409:
                raise
            return _json({"error": f"You already created this {repo_type} repo", "url": url}, 409)
        return _json({"url": url, "name": repo_id, "id": hashlib.md5(url.encode()).hexdigest()[:24]})

    def delete_repo(self, request: Request) -> Response:
        """`DELETE /api/repos/delete` `{name, organization, type}`; 404 `RepoNotFound` if missing."""
        self.require_write(request)
        body = request.get_json(silent=True) or {}
        repo_id = f"{body.get('organization') or self.username}/{body.get('name')}"
        repo_type = body.get("type") or "model"
        if self.store.meta(repo_type, repo_id)["private"] and not self.auth(request):
            raise repo_not_found(401)
        self.store.delete(repo_type, repo_id)
        return _json({})

    def validate_yaml(self, request: Request) -> Response:
        """`POST /api/validate-yaml` `{content, repoType}` -> `{"errors": [], "warnings": []}`,
        or 400 with `errors: [{"message"}]` when the README front matter is not YAML."""
        content = (request.get_json(silent=True) or {}).get("content") or ""
        try:
            _front_matter(content)
        except Exception as err:  # noqa: BLE001 - any YAML error
            return _json({"errors": [{"message": f"Invalid YAML: {err}"}], "warnings": []}, 400)
        return _json({"errors": [], "warnings": []})

    def whoami(self, request: Request) -> Response:
        """`GET /api/whoami-v2` -> `{"type": "user", "name", ...}`; 401 without a valid token."""
        if not self.auth(request):
            raise HubError(401, INVALID_TOKEN)
        return _json({
            "type": "user", "id": hashlib.md5(self.username.encode()).hexdigest()[:24],
            "name": self.username, "fullname": self.username, "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "hubserver", "role": "write"}},
        })

    # ---- repo endpoints ----------------------------------------------------------------------

    def repo_info(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`GET /api/{type}s/{id}[/revision/{rev}]` -> `{_id, id, author, sha, lastModified,
        createdAt, private, gated, disabled, downloads, likes, tags, cardData?, siblings:
        [{rfilename, size?, blobId?}], usedStorage}`; `?blobs=true` adds sizes, `?expand=` filters."""
        sha = self.resolve(repo, "/".join(args) if args else "main")
        files = self.store.snapshot(repo.gd, sha).files()
        blobs = _truthy(request.args.get("blobs"))
        info = {
            "_id": hashlib.md5(f"{repo.type}/{repo.id}".encode()).hexdigest()[:24],
            "id": repo.id,
            "author": repo.id.split("/")[0],
            "sha": sha,
            "lastModified": hub_date(self.store.commit_meta(repo.gd, sha).epoch),
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": self.store.meta(repo.type, repo.id).get("gated", False),
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [
                {"rfilename": p, **({"size": s, "blobId": o} if blobs else {})} for _k, o, s, p in files
            ],
            "usedStorage": sum(s for _k, _o, s, _p in files),
        }
        card = self.card_data(repo, sha)
        if card is not None:
            info["cardData"] = card
        expand = request.args.getlist("expand") + request.args.getlist("expand[]")
        if expand:
            info = {k: v for k, v in info.items() if k in {"_id", "id", *expand}}
        return _json(info)

    def tree(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`GET /api/{type}s/{id}/tree/{rev}[/{path}]?recursive=&expand=&cursor=` -> a page of
        entries (1000, or 50 with expand) + `Link` to the next page. 404 `EntryNotFound` if
        `path` is not a directory."""
        rev, rest = _split_rev(args)
        path = "/".join(rest).strip("/")
        expand = _truthy(request.args.get("expand"))
        sha, offset = self.cursor(request, repo, rev)
        snap = self.store.snapshot(repo.gd, sha)
        listing = snap.listing(path, _truthy(request.args.get("recursive")))
        if listing is None:
            raise entry_not_found(path, sha)
        limit = TREE_PAGE_EXPAND if expand else TREE_PAGE
        page = [self.entry(repo, sha, *snap.entries[i], expand) for i in listing[offset:offset + limit]]
        more = offset + limit < len(listing)
        return _json(page, headers=self.next_link(request, sha, offset + limit) if more else None)

    def paths_info(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`POST /api/{type}s/{id}/paths-info/{rev}` with form or JSON `paths` (+ `expand`) ->
        entries for the paths that exist (missing ones are skipped, as on the Hub)."""
        sha = self.resolve(repo, "/".join(args) or "main")
        if request.is_json:
            body = request.get_json(silent=True) or {}
            paths, expand = body.get("paths") or [], body.get("expand")
        else:
            paths, expand = request.form.getlist("paths"), request.form.get("expand")
        paths = [p.strip("/") for p in ([paths] if isinstance(paths, str) else paths)]
        found = self.store.lookup(repo.gd, sha, paths)
        out = []
        for p in dict.fromkeys(paths):
            if p in found:
                kind, oid, size = found[p]
                typ, size = ("file", size) if kind == "blob" else ("directory", 0)
                out.append(self.entry(repo, sha, typ, oid, size, p, _truthy(expand)))
        return _json(out)

    def refs(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`GET /api/{type}s/{id}/refs[?include_prs=1]` -> `{branches, tags, converts,
        pullRequests?}`, each item `{name, ref, targetCommit}` (tags peeled to the commit)."""
        refs = self.store.refs(repo.gd)
        kinds = ["branches", "tags", "converts"] + (["pullRequests"] if _truthy(request.args.get("include_prs")) else [])
        return _json({
            k: [{"name": n, "ref": ref, "targetCommit": sha} for n, ref, sha in refs[k]] for k in kinds
        })

    def commits(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`GET /api/{type}s/{id}/commits/{rev}[?limit=&expand[]=formatted]` -> newest first
        `[{id, title, message, authors: [{user, avatar}], date}]`, paged with `Link`."""
        sha, offset = self.cursor(request, repo, "/".join(args) or "main")
        limit = max(1, min(int(request.args.get("limit") or COMMITS_PAGE), 1000))
        metas = self.store.log(repo.gd, sha, offset, limit + 1)
        formatted = "formatted" in request.args.getlist("expand[]") + request.args.getlist("expand")
        items = []
        for m in metas[:limit]:
            item = {"id": m.id, "title": m.title, "message": m.message,
                    "authors": [{"user": m.author, "avatar": None}], "date": hub_date(m.epoch)}
            if formatted:
                item["formatted"] = {"title": html.escape(m.title), "message": html.escape(m.message)}
            items.append(item)
        more = len(metas) > limit
        return _json(items, headers=self.next_link(request, sha, offset + limit) if more else None)

    def preupload(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`POST /api/{type}s/{id}/preupload/{rev}` `{files: [{path, sample, size}]}` ->
        `{files: [{path, uploadMode: "regular", shouldIgnore: false, oid?}], commitOid}`; `oid` is
        the current git blob sha so the client can skip unchanged files. Never LFS/xet."""
        files = (request.get_json(silent=True) or {}).get("files")
        if not isinstance(files, list):
            raise bad_request("Expected {'files': [...]}")
        sha = self.store.resolve(repo.gd, "/".join(args) or "main")
        paths = [str(f.get("path", "")) for f in files]
        found = self.store.lookup(repo.gd, sha, paths) if sha else {}
        return _json({
            "files": [
                {"path": p, "uploadMode": "regular", "shouldIgnore": False,
                 **({"oid": found[p][1]} if found.get(p, ("",))[0] == "blob" else {})}
                for p in paths
            ],
            "commitOid": sha,
        })

    def commit(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`POST /api/{type}s/{id}/commit/{branch}` NDJSON: `header {summary, description,
        parentCommit?}`, `file {path, content, encoding}`, `deletedFile {path}`, `deletedFolder
        {path}` (`lfsFile` -> 400) -> `{commitUrl, commitOid, success, pullRequestUrl}`.
        Stale `parentCommit` -> 412; nothing changed -> the current head, no new commit."""
        if _truthy(request.args.get("create_pr")):
            raise bad_request("create_pr is not supported by hubserver")
        header, adds, deletes, folders = None, {}, [], []
        try:
            for line in request.get_data().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item.get("key"), item.get("value") or {}
                if key == "header":
                    header = value
                elif key == "file":
                    content = value.get("content") or ""
                    data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    adds[value["path"]] = data
                elif key == "deletedFile":
                    adds.pop(value["path"], None)
                    deletes.append(value["path"])
                elif key == "deletedFolder":
                    folders.append(value["path"])
                elif key == "lfsFile":
                    raise bad_request("LFS files are not supported by hubserver (preupload answers 'regular')")
                else:
                    raise bad_request(f"Unknown commit operation key: {key!r}")
        except (ValueError, KeyError, TypeError) as err:
            raise bad_request(f"Malformed NDJSON commit payload: {err}") from None
        if not header or not header.get("summary"):
            raise bad_request("Missing commit header / summary")
        oid, _created = self.store.commit(
            repo.gd, "/".join(args) or "main", adds=adds, deletes=deletes, delete_folders=folders,
            summary=header["summary"], description=header.get("description") or "",
            parent_commit=header.get("parentCommit"), author=self.username,
        )
        return _json({"commitUrl": f"{self.repo_url(request, repo.type, repo.id)}/commit/{oid}",
                      "commitOid": oid, "success": True, "pullRequestUrl": None})

    def create_tag(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`POST /api/{type}s/{id}/tag/{rev}` `{tag, message?}`; 409 if the tag exists."""
        body = request.get_json(silent=True) or {}
        if not body.get("tag"):
            raise bad_request("Missing 'tag'")
        sha = self.resolve(repo, "/".join(args) or "main")
        self.store.create_tag(repo.gd, body["tag"], sha, body.get("message"), tagger=self.username)
        return _json({})

    def delete_tag(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`DELETE /api/{type}s/{id}/tag/{tag}`; 404 `RevisionNotFound` if missing."""
        self.store.delete_tag(repo.gd, "/".join(args))
        return _json({})

    def create_branch(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`POST /api/{type}s/{id}/branch/{branch}` `{startingPoint?}`; 409 if it exists."""
        start = (request.get_json(silent=True) or {}).get("startingPoint") or "main"
        self.store.create_branch(repo.gd, "/".join(args), self.resolve(repo, start))
        return _json({})

    def delete_branch(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`DELETE /api/{type}s/{id}/branch/{branch}`."""
        self.store.delete_branch(repo.gd, "/".join(args))
        return _json({})

    def settings(self, request: Request, repo: Repo, args: list[str]) -> Response:
        """`PUT /api/{type}s/{id}/settings` `{visibility: "private"|"public"}` (or `{private}`), and `{gated: "auto"|
        "manual"|false}` (a gated repo's `repo_info` says so; its files still answer a token holder here)."""
        body = request.get_json(silent=True) or {}
        if "visibility" in body or "private" in body or "gated" in body:
            private = (body["visibility"] == "private" if "visibility" in body else
                       bool(body["private"]) if "private" in body else repo.private)
            self.store.set_private(repo.type, repo.id, private, body.get("gated"))
        return _json({})

    def resolve_file(self, request: Request, repo_type: str, repo_id: str, segs: list[str]) -> Response:
        """`GET|HEAD /[{type}s/]{id}/resolve/{rev}/{path}` -> the bytes, with `X-Repo-Commit`,
        quoted `ETag` (git blob sha, as the Hub for non-LFS files), `Content-Length`,
        `Accept-Ranges`; a single `Range: bytes=a-b` gets 206 (416 past the end).
        404 `EntryNotFound` (with `X-Repo-Commit`) if there is no such file."""
        if request.method not in ("GET", "HEAD"):
            raise HubError(405, "Method not allowed")
        repo = self.open_repo(request, repo_type, repo_id, write=False)
        rev, rest = _split_rev(segs)
        path = "/".join(rest)
        sha = self.resolve(repo, rev)
        found = self.store.lookup(repo.gd, sha, [path]).get(path)
        if not found or found[0] != "blob":
            raise entry_not_found(path, sha)
        _kind, oid, size = found
        headers = {"X-Repo-Commit": sha, "ETag": f'"{oid}"', "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            response = Response(b"", headers=headers, mimetype="application/octet-stream")
            response.headers["Content-Length"] = str(size)
            return response
        data = self.store.read_blob(repo.gd, oid)
        match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", request.headers.get("Range", ""))
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start, end = max(size - int(match.group(2)), 0), size - 1
            if start >= size or start > end:
                raise HubError(416, "Range Not Satisfiable", headers={**headers, "Content-Range": f"bytes */{size}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return Response(data[start:end + 1], status=206, headers=headers, mimetype="application/octet-stream")
        return Response(data, headers=headers, mimetype="application/octet-stream")

    ROUTES = {
        ("GET", ""): repo_info,
        ("GET", "revision"): repo_info,
        ("GET", "tree"): tree,
        ("POST", "paths-info"): paths_info,
        ("GET", "refs"): refs,
        ("GET", "commits"): commits,
        ("POST", "preupload"): preupload,
        ("POST", "commit"): commit,
        ("POST", "tag"): create_tag,
        ("DELETE", "tag"): delete_tag,
        ("POST", "branch"): create_branch,
        ("DELETE", "branch"): delete_branch,
        ("PUT", "settings"): settings,
    }
