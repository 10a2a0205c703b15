"""The one exception type the test Hub raises, and how it becomes an HTTP answer.

The real client maps errors from the `X-Error-Code` header first (see `hf_raise_for_status` in
`huggingface_hub/utils/_http.py`): `RepoNotFound` -> `RepositoryNotFoundError`,
`RevisionNotFound` -> `RevisionNotFoundError`, `EntryNotFound` -> `RemoteEntryNotFoundError`;
any other status becomes an `HfHubHTTPError` carrying the body's `{"error": ...}` message.
"""

from __future__ import annotations

import json

from werkzeug.wrappers import Response


class HubError(Exception):
    """An error answered as `status` with JSON `{"error": message}`, `X-Error-Message: message`
    and, when `code` is given, `X-Error-Code: code`. `headers` are added as they are (e.g.
    `X-Repo-Commit` on an `EntryNotFound` from `/resolve`, `Retry-After` on a 429)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The werkzeug `Response` for this error."""
        headers = {"X-Error-Message": self.message.replace("\n", " "), **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return Response(
            json.dumps({"error": self.message}), status=self.status, headers=headers, mimetype="application/json"
        )


def repo_not_found(status: int = 404) -> HubError:
    """404 (or 401 for a private repo read without a valid token, as the Hub does) + `RepoNotFound`."""
    return HubError(status, "Repository not found", "RepoNotFound")


def revision_not_found(rev: str) -> HubError:
    """404 + `RevisionNotFound` (client raises `RevisionNotFoundError`)."""
    return HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")


def entry_not_found(path: str, commit: str | None = None) -> HubError:
    """404 + `EntryNotFound`; `commit` goes in `X-Repo-Commit` like the Hub's `/resolve` answer."""
    headers = {"X-Repo-Commit": commit} if commit else {}
    return HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound", headers)


def bad_request(message: str) -> HubError:
    """400 (client raises `BadRequestError`)."""
    return HubError(400, message)
