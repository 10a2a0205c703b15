"""Which repo a restored task came from, whatever path it was read at (``labelhub restore``'s identity of a repo).

A restore records each task it made under ``"<repo identity>#<task_id of the version>"``
(:func:`labelhub.sync.versions.restore.restore_key`). A Hub repo's identity is its id (``owner/name``). A local
repository's id is its absolute path (:class:`labelhub.repos.git.LocalGitRepo`), which a clone, a moved copy or a
Docker mount of the same repository changes: keyed by it, restoring the same version from another path made every
task and annotation a second time. Decided: a local repository is identified by its **root commit**
(``git:<sha>``, the first commit of the first-parent line of the version's commit: every clone and copy holds the
same one, and every later version of the repo descends from it), so a version restored from another path of the
same repo, or a later version of it, creates nothing twice. Consequences:

- two local repositories are one source exactly when they share that root: a shallow clone (whose oldest commit is
  a graft) is another source, and so is a Hub repo and a local clone of it (the Hub repo keeps its id, which
  restores made before this decision recorded);
- restores made before it recorded the local path (``"/path/to/repo#7"``): a task whose key under the path it is
  read at now is held is restored, too (:func:`legacy_key`), so re-running an older restore from the same path
  creates nothing twice either;
- the task data keep ``hf_repo`` (the path, which the sync of that path looks its files up by) and ``restored_from``
  (``"<path>@<tag>"``, for people), and gain ``restored_repo`` (``git:<root sha>``) for a local repository, the
  identity :func:`labelhub.sync.versions.restore.restore_key` reads back after a crash;
- a file's task made from another path of the repository (the sync of a clone or a mount, whose ``hf_repo`` is that
  path) is one of this repository's when it shows a commit this repository holds (:func:`holds_commit`): the
  restore makes no second task of that file; which other paths the project's tasks name as this repository's is
  :func:`other_paths` (the sync's check of a moved repository, ``import-labels``' adoption of such tasks).
"""
from __future__ import annotations

import functools
import logging
import os
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING

from labelhub.repos.git import git, is_git_repo

if TYPE_CHECKING:
    from labelhub.sync.labelstudio.project import LabelStudioProject

__all__ = ["repo_identity", "repo_identities", "legacy_key", "holds_commit", "other_paths"]

log = logging.getLogger(__name__)


def _local(repo_id: str) -> bool:
    return os.path.isabs(repo_id) and is_git_repo(repo_id)


@functools.lru_cache(maxsize=64)
def repo_identity(repo_id: str, revision: str) -> str:
    """The identity of the repo ``repo_id`` that a restore of its ``revision`` records (see the module docstring).

    Args:
        repo_id: The repo's id (:attr:`labelhub.repos.DatasetRepo.repo_id`): a Hub ``owner/name`` or a local
            repository's absolute path.
        revision: The version's tag or commit (a local repository resolves it, an annotated tag too).

    Returns:
        ``repo_id`` for a Hub repo; ``"git:<root commit sha>"`` for a local repository (one ``git rev-list`` call,
        once per process). ``repo_id`` when git cannot tell (said in a warning).
    """
    if not _local(repo_id):
        return repo_id
    try:
        roots = git(repo_id, "rev-list", "--first-parent", "--max-parents=0", f"{revision}^{{commit}}").split()
    except (subprocess.CalledProcessError, OSError) as exc:
        log.warning("the root commit of %s at %s is unknown (%s): its restored tasks are recorded under its path",
                    repo_id, revision, exc)
        return repo_id
    return f"git:{roots[0].decode()}" if roots else repo_id


@functools.lru_cache(maxsize=64)
def repo_identities(repo_id: str) -> tuple[str, ...]:
    """Every identity a restore of ``repo_id`` may have recorded its tasks under: for a local repository, each of
    its root commits (``git rev-list --max-parents=0 --all``: one for most repositories) and its path (a restore
    made before roots were its identity); for a Hub repo, its id."""
    if not _local(repo_id):
        return (repo_id,)
    try:
        roots = git(repo_id, "rev-list", "--max-parents=0", "--all").split()
    except (subprocess.CalledProcessError, OSError):
        roots = []
    return (*(f"git:{root.decode()}" for root in roots), repo_id)


def legacy_key(data: Mapping) -> str | None:
    """A restored task's key under the path it was read at (``"<repo_id>#<task_id>"``, as restores before the root
    commit identity recorded it); ``None`` for a task that was not restored."""
    origin, task_id = data.get("restored_from"), data.get("source_task_id")
    if not isinstance(origin, str) or "@" not in origin or task_id in (None, ""):
        return None
    return f"{origin.rpartition('@')[0]}#{task_id}"


def holds_commit(repo_id: str, revisions) -> bool:
    """Whether the local repository ``repo_id`` holds one of the commits ``revisions`` (up to 3 are tried, one
    ``git cat-file -e`` each): a commit's sha names its whole history, so tasks of another path that show a commit of
    this repository are of this repository's files (another path of it). ``False`` for a Hub repo."""
    if not _local(repo_id):
        return False
    for revision in [r for r in dict.fromkeys(revisions) if isinstance(r, str) and len(r) == 40][:3]:
        try:
            git(repo_id, "cat-file", "-e", f"{revision}^{{commit}}")
            return True
        except (subprocess.CalledProcessError, OSError):
            continue
    return False


def other_paths(project: LabelStudioProject, repo_id: str) -> list[str]:
    """The other absolute paths the project's file tasks name (``data.hf_repo``) that were paths of the local
    repository ``repo_id`` (it moved from there, or is mounted there too): the first task of each shows a commit it
    holds (:func:`holds_commit`).

    Args:
        project: the Label Studio project whose tasks are asked
            (:meth:`labelhub.sync.labelstudio.project.LabelStudioProject.other_repo_file_tasks`: five sources other
            than ``repo_id`` at most, one query each, none when no task has an ``hf_path``).
        repo_id: the repository's id (:attr:`labelhub.repos.DatasetRepo.repo_id`).

    Returns:
        Those paths, in the order of their first task's id; ``[]`` for a Hub repo (no query).

    Raises:
        labelhub.errors.ProjectNotFound, labelhub.errors.LabelStudioError: the project's tasks cannot be read.
    """
    if not os.path.isabs(repo_id):
        return []
    return [path for path, _, revision in project.other_repo_file_tasks(repo_id)
            if os.path.isabs(path) and holds_commit(repo_id, [revision])]
