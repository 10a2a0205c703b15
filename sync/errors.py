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
    """The Hub cannot be reached, or answered an error (status and reason in the message)."""
