"""The errors of the sync daemon: each names what is wrong, never a token.

The CLI turns every :class:`SyncError` into a one-line message and a non-zero exit code.
"""


class SyncError(Exception):
    """Base class: a problem the user can fix (bad argument, missing repo, bad label config)."""


class RepoNotFound(SyncError):
    """The dataset repo does not exist, or the token cannot read it."""


class RevisionNotFound(SyncError):
    """The revision (branch, tag or commit sha) does not exist in the repo."""


class ProjectNotFound(SyncError):
    """The Label Studio project does not exist or the API key cannot see it."""


class LabelConfigError(SyncError):
    """The project's label config has no object tag LabelHub can fill (Image, Text, Audio, ...)."""


class LabelStudioError(SyncError):
    """Label Studio answered an error (the message has the status code and the reason, no token)."""


class HubError(SyncError):
    """The Hub answered an error (``status``: its HTTP status; the reason is in the message)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class HubUnreachable(HubError):
    """No answer from the Hub (connection refused, timeout, connection dropped)."""


class TransientHubError(HubError):
    """A 429 or 5xx answer: try again after ``retry_after`` seconds (from ``Retry-After``, or ``None``)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, status)
        self.retry_after = retry_after


class AmbiguousCommit(HubError):
    """A commit request got no answer: it may or may not have landed."""


class CommitConflict(SyncError):
    """The branch moved since ``parent_commit`` (HTTP 412 on the Hub, a failed ref update locally)."""


class TagExists(SyncError):
    """The tag already exists (HTTP 409 on the Hub)."""
