"""What the import cycle saw of the repo, kept in the state for the export: the refs of its last poll (head and
tags, one call) and the ``README.md`` blob id at the last commit it listed.

The export (:mod:`labelhub.sync.versions.exporter`) numbers a state's first version from these tags and commits
it on this head, and reuses a card it already holds when the blob id says it is the one at its parent, so that it
makes no call of its own to learn them. They may be stale by a poll interval; that is safe because the commit is a
compare-and-swap on its parent: a branch that moved since is refused (the Hub's 412, a local branch's failed
compare-and-swap), and the export then reads the refs again (:func:`remember_refs` keeps that fresher read too).

Both are cursors of the state (:meth:`labelhub.sync.state.SyncState.cursor`), JSON that names the repo, so that a
state reused with another ``--repo`` never trusts them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from labelhub.sync.state import SyncState

__all__ = ["SeenRefs", "remember_refs", "seen_refs", "remember_card", "seen_card", "git_blob_id"]

#: Cursor prefix of the refs seen per revision (``seen_refs:main``).
REFS = "seen_refs:"
#: Cursor of the ``README.md`` blob id at the last commit listed.
CARD = "seen_card"


@dataclass(frozen=True)
class SeenRefs:
    """The refs of one poll.

    Attributes:
        head: The commit sha the followed revision pointed at.
        tags: ``{tag name: commit sha}`` at the same moment (the same call).
    """

    head: str
    tags: dict[str, str]


def remember_refs(state: SyncState, repo_id: str, revision: str, head: str, tags: dict[str, str]) -> None:
    """Keep what one read of the refs returned (a write only when it differs from what is kept).

    Args:
        state: The sync state.
        repo_id: The repo read (``owner/name`` or a local path).
        revision: The revision followed (a branch, normally).
        head: Its commit sha.
        tags: ``{tag: commit sha}`` from the same read.
    """
    value = json.dumps({"repo": repo_id, "head": head, "tags": tags}, sort_keys=True)
    if state.cursor(REFS + revision) != value:
        state.set_cursor(REFS + revision, value)


def seen_refs(state: SyncState, repo_id: str, revision: str) -> SeenRefs | None:
    """The refs last read for ``revision`` of ``repo_id`` (``None``: never read, or read for another repo)."""
    kept = json.loads(state.cursor(REFS + revision) or "{}")
    if kept.get("repo") != repo_id:
        return None
    return SeenRefs(kept["head"], kept["tags"])


def remember_card(state: SyncState, repo_id: str, sha: str, blob_id: str | None) -> None:
    """Keep the blob id of ``README.md`` at commit ``sha`` (``None``: the commit has no ``README.md``)."""
    state.set_cursor(CARD, json.dumps({"repo": repo_id, "sha": sha, "blob": blob_id or ""}))


def seen_card(state: SyncState, repo_id: str, sha: str) -> str | None:
    """The blob id of ``README.md`` at ``sha`` as last listed: ``""`` when the commit had none, ``None`` when that
    commit was not the last listed (unknown)."""
    kept = json.loads(state.cursor(CARD) or "{}")
    if kept.get("repo") != repo_id or kept.get("sha") != sha:
        return None
    return kept["blob"]


def git_blob_id(data: bytes) -> str:
    """The git blob id (SHA-1 object id) of ``data``: what a listing shows as a file's ``oid`` (the Hub's
    ``blob_id``, https://git-scm.com/book/en/v2/Git-Internals-Git-Objects)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
