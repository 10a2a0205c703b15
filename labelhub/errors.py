"""LabelHub's one error tree: each class names what is wrong (never a token) and also subclasses the
standard type that fits, as huggingface_hub's errors do (``HfHubHTTPError(HTTPError, OSError)``), so a
caller catches either.

::

    LabelHubError(Exception)                  a problem the user can fix; the CLI prints it in one line
    ├── ConfigurationError(ValueError)        a setting or argument that cannot work
    ├── LabelConfigError(ValueError)          a label config LabelHub cannot use (https://labelstud.io/tags/)
    ├── InvalidEventError(ValueError)         a webhook body that is not a Label Studio event
    │   └── UnknownEventAction                an action the receiver does not take
    ├── NotFoundError(LookupError)
    │   ├── RepoNotFound                      the dataset repo does not exist, or the token cannot read it
    │   ├── RevisionNotFound                  no such branch, tag or commit
    │   ├── EntryNotFound(FileNotFoundError)  no such file at that revision
    │   └── ProjectNotFound                   no such Label Studio project, or the key cannot see it
    ├── LabelStudioError(RuntimeError)        Label Studio answered an error
    ├── HubError(OSError)                     the Hub answered an error (``status``)
    │   ├── HubUnreachable(ConnectionError)   no answer (refused, timeout, dropped)
    │   ├── TransientHubError                 429 or 5xx: try again after ``retry_after``
    │   └── AmbiguousCommit                   a commit got no answer: it may have landed
    ├── FileTooLarge(ValueError)              a repo file larger than the caller's limit (not downloaded)
    ├── CommitConflict(RuntimeError)          the branch moved since ``parent_commit`` (412)
    └── TagExists(RuntimeError)               the tag exists (409)

Hub errors raised by the ``huggingface_hub`` client are converted at the repo boundary
(:func:`labelhub.repos.hub.hub_errors`); the backend's HTTP errors (:mod:`labelhub.backend.errors`)
derive from :class:`LabelHubError` too.
"""
from __future__ import annotations

__all__ = [
    "LabelHubError", "ConfigurationError", "LabelConfigError", "InvalidJSONError", "InvalidEventError", "UnknownEventAction", "NotFoundError",
    "RepoNotFound", "RevisionNotFound", "EntryNotFound", "ProjectNotFound", "LabelStudioError", "HubError", "HubUnreachable",
    "TransientHubError", "AmbiguousCommit", "FileTooLarge", "CommitConflict", "TagExists",
]


class LabelHubError(Exception):
    """Base class: a problem the user can fix (bad argument, missing repo, bad label config)."""


class ConfigurationError(LabelHubError, ValueError):
    """A setting, flag or environment variable that cannot work (the message names it)."""


class LabelConfigError(LabelHubError, ValueError):
    """The label config does not parse, or lacks the tags the caller needs (the message says what it has)."""


class InvalidJSONError(LabelHubError, ValueError):
    """Text that is not strict JSON (:func:`labelhub.strict_json.loads`: the message says why and where)."""


class InvalidEventError(LabelHubError, ValueError):
    """A webhook body that is not a Label Studio event LabelHub reads (the message says why).

    Attributes:
        field: The body's field at fault (``"action"``, ``"annotation"``, ...), or ``None``.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class UnknownEventAction(InvalidEventError):
    """A webhook body whose ``action`` is not one the receiver takes (https://labelstud.io/guide/webhook_reference)."""


class NotFoundError(LabelHubError, LookupError):
    """Something named by the user does not exist (or the credentials cannot see it)."""


class RepoNotFound(NotFoundError):
    """The dataset repo does not exist, or the token cannot read it."""


class RevisionNotFound(NotFoundError):
    """The revision (branch, tag or commit sha) does not exist in the repo."""


class EntryNotFound(NotFoundError, FileNotFoundError):
    """The file (``path_in_repo``) is not in the repo at that revision."""

    def __str__(self) -> str:  # FileNotFoundError's own __str__ would show the args tuple
        return str(self.args[0]) if self.args else ""


class ProjectNotFound(NotFoundError):
    """The Label Studio project does not exist or the API key cannot see it."""


class LabelStudioError(LabelHubError, RuntimeError):
    """Label Studio answered an error (the message has the status code and the reason, no token)."""


class HubError(LabelHubError, OSError):
    """The Hub answered an error (``status``: its HTTP status; the reason is in the message)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    def __str__(self) -> str:  # OSError's own __str__ would show the args tuple
        return str(self.args[0]) if self.args else ""


class HubUnreachable(HubError, ConnectionError):
    """No answer from the Hub (connection refused, timeout, connection dropped)."""


class TransientHubError(HubError):
    """A 429 or 5xx answer: try again after ``retry_after`` seconds (from ``Retry-After``, or ``None``)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, status)
        self.retry_after = retry_after


class AmbiguousCommit(HubError):
    """A commit request got no answer: it may or may not have landed."""


class FileTooLarge(LabelHubError, ValueError):
    """A repo file is larger than the caller's limit; it was not downloaded.

    Attributes:
        size: The file's size in bytes, as the Hub declared it.
        limit: The limit in bytes.
    """

    def __init__(self, message: str, size: int, limit: int):
        super().__init__(message)
        self.size, self.limit = size, limit


class CommitConflict(LabelHubError, RuntimeError):
    """The branch moved since ``parent_commit`` (HTTP 412 on the Hub, a failed ref update locally)."""


class TagExists(LabelHubError, RuntimeError):
    """The tag already exists (HTTP 409 on the Hub)."""


class ForeignTag(LabelHubError):
    """A tag named like a version of the series (``annotations-v4``) that LabelHub did not make: its commit holds no
    manifest naming it and is no version commit of that number (a tag made by hand, e.g. ``create_tag(repo,
    tag="annotations-v4", revision=<an older commit>)``). Not a :class:`labelhub.errors.ConfigurationError`: the
    user deletes or moves the tag and the next export goes on, while the daemon keeps importing meanwhile
    (:class:`labelhub.sync.service.SyncService` logs it and retries the export at its next turn). A version we
    committed whose tag name was taken so stays ``committed`` and is tagged once the name is free: no second
    commit."""


class PrivateRepoRefused(LabelHubError):
    """A repo made private while the sync runs, whose files' URLs no browser could load under the sync's policy (no
    ``LABELHUB_SECRET``): the import cycle makes no task (:meth:`labelhub.repos.hub.HubRepo.iter_files`). Not a
    :class:`labelhub.errors.ConfigurationError`: the daemon goes on (reconciliation and exports of the tasks made
    before) and its next cycle tries again, so the repo made public again resumes the imports."""
