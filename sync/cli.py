"""``labelhub sync`` and ``labelhub versions``: parse arguments and call into the stage modules.

- ``labelhub sync``: :mod:`labelhub.sync.files.importer` (files → tasks),
  :mod:`labelhub.sync.annotations` and :mod:`labelhub.sync.versions` (annotations → versions) in the loop
  of :mod:`labelhub.sync.daemon`.
- ``labelhub versions``: :mod:`labelhub.sync.versions.listing` (the annotation versions of a repo).
- ``labelhub diff``: :mod:`labelhub.sync.versions.diff` (what changed between two versions).

``--csv-path`` and ``--tag-prefix`` name the *series* of versions a command writes or reads
(:mod:`labelhub.sync.versions.series`): several projects export into one repo, each with its own.

The group that holds them is :mod:`labelhub.cli`.

Every option can also be set by the environment variable named in its ``--help``.
"""
from __future__ import annotations

import logging
import os
from contextlib import ExitStack

import click

from labelhub.cli_options import Integer
from labelhub.file_urls import announce_task_files
from labelhub.sync.options import (
    file_url_options,
    file_url_policy,
    hub_options,
    label_studio_options,
    log_level_option,
    one_line_errors,
    project_option,
    revision_option,
    host_project_lock,
    series_options,
    state_errors,
    state_lock,
    state_option,
)

log = logging.getLogger("labelhub")


@click.command(context_settings={"show_default": True})
@click.option("--repo", required=True, envvar="LABELHUB_REPO",
              help="A Hub dataset repo_id OWNER/NAME, or the path of a local git repository.")
@project_option
@revision_option
@click.option("--include", multiple=True,
              help="Glob of path_in_repo to import (repeatable; default: the object tag's file types, "
                   "e.g. *.jpg *.png ... for Image, *.txt for Text).")
@click.option("--exclude", multiple=True, help="Glob of path_in_repo to skip (repeatable).")
@click.option("--metadata", "metadata_path", default=None,
              help="path_in_repo of a CSV whose columns are joined into each task's data.")
@click.option("--metadata-key", type=int, default=-3,
              help="Which part of a file's path is its key in the metadata CSV's first column "
                   "(a Python index: -3 is the third part from the end).")
@click.option("--metadata-columns", default=None,
              help="Column names for a metadata CSV without a header, comma-separated (e.g. id,meta).")
@click.option("--once", is_flag=True, help="Run one cycle and exit (0 on success).")
@click.option("--interval", type=click.FloatRange(min=0), default=60.0, envvar="LABELHUB_INTERVAL",
              help="Seconds between polls of the repo.")
@click.option("--batch-size", type=Integer(min=1), default=10000,
              help="Tasks per Label Studio import call, at most (and at most 16 MB of URLs or texts); the first "
                   "call of a cycle carries at most 2,000, so tasks appear early.")
@state_option
@label_studio_options
@hub_options
@file_url_options
@click.option("--repo-moved-from", envvar="LABELHUB_REPO_MOVED_FROM", default=None, show_default=False,
              help="The path a local repository had in the state before it moved (or was mounted elsewhere), or "
                   "the old OWNER/NAME of a renamed Hub dataset: its files keep their tasks instead of being imported "
                   "again. Needed once; refused onto a repository that lacks the commit the state last saw of that "
                   "path or name, and for a state and project with no files of it.")
@click.option("--export/--no-export", default=True,
              help="Write finished annotations back to the repo as tagged versions.")
@click.option("--export-interval", type=click.FloatRange(min=0), default=60.0, envvar="LABELHUB_EXPORT_INTERVAL",
              help="At most one export per this many seconds.")
@series_options
@click.option("--take-over-from", type=Integer(min=1), envvar="LABELHUB_TAKE_OVER_FROM", default=None,
              show_default=False,
              help="The id of the Label Studio project whose series (--csv-path) this project continues, when it "
                   "replaces it (recreated or restored under a new id). Without it, a series whose newest version "
                   "another project exported is refused. Needed once, harmless after.")
@click.option("--reconcile-interval", type=click.FloatRange(min=0), default=30.0,
              help="Seconds between reconciliations with the Label Studio API (webhooks are only hints).")
@click.option("--sweep-interval", type=click.FloatRange(min=0), default=300.0, envvar="LABELHUB_SWEEP_INTERVAL",
              help="Seconds between sweeps of the project's task ids, which find tasks deleted in Label Studio "
                   "whose TASKS_DELETED webhook was lost (their annotations leave the next version).")
@click.option("--webhook-url", envvar="LABELHUB_WEBHOOK_URL", default=None,
              help="The URL of this daemon's webhook receiver as Label Studio sees it, e.g. "
                   "http://sync:9091/webhook; registered on the project. Without it: reconciliation only.")
@click.option("--webhook-host", envvar="LABELHUB_WEBHOOK_HOST", default="127.0.0.1",
              help="Interface the webhook receiver listens on (0.0.0.0 in a container).")
@click.option("--webhook-port", envvar="LABELHUB_WEBHOOK_PORT", type=Integer(1, 65535), default=9091,
              help="Port of the webhook receiver.")
@click.option("--webhook-secret", envvar="LABELHUB_WEBHOOK_SECRET", default=None, show_default=False,
              help="Secret that Label Studio sends in the X-LabelHub-Secret header.")
@log_level_option
def sync(repo, project_id, revision, include, exclude, metadata_path, metadata_key, metadata_columns, once,
         interval, batch_size, state_path, label_studio_url, label_studio_api_key, hf_token, hf_endpoint,
         public_url, file_urls, secret, url_lifetime, repo_moved_from, export, export_interval, csv_path, tag_prefix,
         take_over_from, reconcile_interval,
         sweep_interval, webhook_url, webhook_host, webhook_port, webhook_secret, log_level):
    """Turn the files of a dataset repo into Label Studio tasks, new files as they appear, never twice,
    and write finished annotations back to the repo as tagged versions (annotations-vN).

    Several projects can export into one repo, each with its own --csv-path: their versions are apart
    (annotations/test.csv -> tags test-vN, configs test, test-rows, test-consensus).

    \b
    Example:
      LABEL_STUDIO_API_KEY=... HF_TOKEN=... labelhub sync --repo owner/dataset --project 3 --once
      labelhub sync --repo owner/dataset --project 4 --include 'test/**' --csv-path annotations/test.csv
    """
    from labelhub.redaction import setup_logging

    redact = setup_logging(log_level, secrets=[label_studio_api_key, hf_token, webhook_secret, secret])
    url_policy = file_url_policy(file_urls, public_url, secret, url_lifetime)
    with one_line_errors(redact.secrets), ExitStack() as held:
        from labelhub.sync.daemon import run_forever
        from labelhub.sync.versions.exporter import Exporter
        from labelhub.sync.files.importer import FileImporter
        from labelhub.sync.annotations.intake import AnnotationIntake
        from labelhub.sync.service import SyncService
        from labelhub.sync.labelstudio.project import LabelStudioProject
        from labelhub.sync.files.metadata import parse_columns, spec_from_args
        from labelhub.sync.files.selection import with_export_files
        from labelhub.sync.versions.series import series_for
        from labelhub.errors import ConfigurationError
        from labelhub.repos import open_repo
        from labelhub.sync.state import SyncState

        try:
            dataset = open_repo(repo, token=hf_token, endpoint=hf_endpoint, public_url=public_url,
                                file_urls=url_policy)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        revision = revision or dataset.default_revision()
        from labelhub.errors import TransientHubError
        from labelhub.retry import hub_retrying
        sha = hub_retrying(5, f"reading {revision} of {dataset.repo_id}", on=(TransientHubError,))(dataset.resolve,
                                                                                                   revision)
        if export and not dataset.is_branch(revision):
            raise ConfigurationError(
                f"--revision {revision!r} is not a branch of {dataset.repo_id} (a tag or a commit): exports need a "
                "branch to commit to; follow a branch, or pass --no-export to only import")
        project = LabelStudioProject(label_studio_url, label_studio_api_key, project_id)
        held.enter_context(state_lock(state_path, project_id))
        held.enter_context(host_project_lock(project, state_path))
        with state_errors(state_path):
            state = SyncState(state_path, project_id, dataset.repo_id)
        state.bind(project.url, project.key)
        if dataset.local:
            _follow_moved_repo(state, state_path, project, dataset.repo_id, repo_moved_from)
        else:
            _follow_renamed_hub_repo(state, state_path, project, dataset, sha, repo_moved_from)
        # the export's own files are never tasks, wherever --csv-path puts them (with --no-export too: they may be
        # there from an earlier export)
        exclude = with_export_files(include, exclude, series_for(csv_path, tag_prefix).all_paths)
        importer = FileImporter(dataset, project, state, revision=revision, include=include, exclude=exclude,
                                metadata=spec_from_args(metadata_path, metadata_key, parse_columns(metadata_columns)),
                                batch_size=batch_size)
        log.info("syncing %s@%s (%s) into project %d %r: %s files as $%s", dataset.repo_id, revision, sha[:12],
                 project_id, project.title, importer.field.tag, importer.field.value_key)
        announce_task_files(dataset, importer.field, log)
        # a repository moved while the daemon runs: one line and stop, not a failure per retry
        service = SyncService(importer, poll_interval=interval, reconcile_interval=reconcile_interval,
                              export_interval=export_interval, sweep_interval=sweep_interval,
                              local_repo=dataset.repo_id if dataset.local else None)
        if export:
            service.intake = AnnotationIntake(project, state)
            service.exporter = Exporter(dataset, project, state, csv_path=csv_path, revision=revision,
                                        tag_prefix=tag_prefix, take_over_from=take_over_from)
        if once:
            service.run_once()
            return
        if webhook_url and not export:  # decided: said, not refused (a compose file may set it for every service)
            log.warning("--no-export: no webhook receiver is started (annotations are not exported), so --webhook-url "
                        "is not registered and port %d serves neither webhooks nor /health", webhook_port)
        receiver = _start_webhooks(project, state_path, dataset.repo_id, service, webhook_url, webhook_host,
                                   webhook_port, webhook_secret) if export and webhook_url else None
        try:
            run_forever(service)
        finally:
            if receiver:
                receiver.stop()


def _follow_moved_repo(state, state_path: str, project, repo_id: str, moved_from: str | None) -> None:
    """A local repository is named by its absolute path in the state (the import ledger's source, its versions) and
    in its tasks (``data.hf_repo``): one that moved, or is mounted at another path, would have every file imported a
    second time. Refuse that, unless ``--repo-moved-from`` names the old path; with it, the state's rows follow the
    repository (:func:`labelhub.sync.state.move_local_repo`).

    Decided (README, "Local git repositories"):

    - *Another path of this repository* is one whose last commits the state saw (its heads, its newest version's
      commit) this repository holds (:func:`labelhub.sync.state.earlier_paths`). The sync is refused while such a
      path has more files in the state than this one: a few rows under the new path (an ``import-labels --repo <new>`` run before
      the move was made) do not make the move look done. Another path whose commits this repository lacks is
      refused only while this path has no files (it may be another repository synced into the project).
    - ``--repo-moved-from`` moves the rows only onto a repository that holds every commit the state last saw of the
      old path: an unrelated repository, or an older copy that lacks the last versions' commits, is refused and
      nothing changes (exporting on top of it would skip versions, its files would replace the tasks' texts).
    - The old path is compared as written, made absolute, its last part not resolved: ``LocalGitRepo`` resolves
      symlinks, so a symlink left at the old path names the new one.
    - With no files of the project in the state (a lost state, another ``--state``), the project's tasks tell: a
      task of another absolute path showing a commit this repository holds is of its files
      (:func:`labelhub.sync.versions.restore_identity.other_paths`, one query per such path,
      five at most). Without ``--repo-moved-from`` the sync is refused; with it, the old path's tasks are adopted
      into the state (:meth:`labelhub.sync.ledger.ImportLedger.recover`) and then moved.

    Raises:
        labelhub.errors.ConfigurationError: the repository looks moved and no ``--repo-moved-from`` says so, or
            ``--repo-moved-from`` names a path neither the state nor the project has files of, or a repository that
            lacks the commits the state last saw of it, or the move cannot be made (an import from the old path was
            interrupted).
        labelhub.errors.LabelStudioError: the project's tasks cannot be read (a state with no files of it).
    """
    from labelhub.errors import ConfigurationError
    from labelhub.sync.state import earlier_paths, move_local_repo, other_local_repos
    from labelhub.sync.versions.restore_identity import other_paths

    project_id = project.project_id
    others = other_local_repos(state)
    here = state.ledger.count()
    if moved_from is not None:
        old = _path_as_written(moved_from, others)
        if old == repo_id or (old not in others and here):
            return  # moved already (the option left in place)
        _take_rows_of(state, state_path, project, moved_from, old, repo_id, others, None, "repository")
        try:
            moved = move_local_repo(state, old)
        except ValueError as exc:
            raise ConfigurationError(f"--repo-moved-from {moved_from}: {exc}") from None
        served = "" if _key(old) == _key(repo_id) else (
            f"; their file URLs name the old directory ({_key(old)!r}): the backend's LABELHUB_FILE_REPOS needs "
            f"{_key(old)}={repo_id} beside {repo_id}")
        log.warning("the repository moved from %s to %s: its %d files keep their tasks and its versions go on%s",
                    old, repo_id, moved, served)
        return
    same = {path: files for path, files in earlier_paths(state.db, project_id, repo_id).items() if files > here}
    if same or (others and not here):
        old, files = max((same or others).items(), key=lambda item: item[1])
        raise ConfigurationError(
            f"--state {state_path} holds {files} files of project {project_id} from the local repository {old}, "
            f"{here or 'none'} from {repo_id}: if the repository moved there (or is mounted at another path), pass "
            f"--repo-moved-from {old} once so that its files keep their tasks (without it every file would become a "
            "second task)" + ("" if same else "; if it is another repository, sync it with its own --state"))
    tasks_from = other_paths(project, repo_id) if not here and not others else []
    if tasks_from:
        path = tasks_from[0]
        raise ConfigurationError(
            f"project {project_id} has tasks of this repository's files from {path} (a commit of it), and "
            f"--state {state_path} holds none of them (a lost state, or another --state): if the repository "
            f"moved from there, pass --repo-moved-from {path} (without it every file would become a second "
            "task); else use the state that synced it")


def _take_rows_of(state, state_path: str, project, moved_from: str, old: str, repo_id: str, others, holds,
                  what: str) -> None:
    """Check that ``--repo-moved-from OLD`` can move the state's rows of ``old`` onto ``repo_id`` (a moved local
    repository, ``what="repository"``, or a renamed Hub dataset, ``"dataset"``): a state without files of ``old``
    adopts the project's tasks of it first (:func:`_adopt_tasks_of`), and ``repo_id`` must hold every commit the state
    last saw of ``old``. ``holds``: :func:`_adopt_tasks_of`'s (``None``: the local repository ``repo_id``'s).

    Raises:
        labelhub.errors.ConfigurationError: neither the state nor the project has files of ``old``, or ``repo_id``
            lacks one of those commits (nothing was changed).
    """
    from labelhub.errors import ConfigurationError
    from labelhub.sync.state import last_seen_commits
    from labelhub.sync.versions.restore_identity import holds_commit

    project_id = project.project_id
    if old not in others:
        adopted = _adopt_tasks_of(state, project, old, repo_id, holds)
        if not adopted:
            raise ConfigurationError(
                f"--repo-moved-from {moved_from}: neither --state {state_path} nor project {project_id}'s tasks "
                f"hold files of this {what} from {old}" + (f" (the state holds {', '.join(others)})" if others else ""))
        log.warning("--state %s held no files of project %d: adopted the %d tasks of %s's files", state_path,
                    project_id, adopted, old)
    holds = holds or (lambda revisions: holds_commit(repo_id, revisions))
    missing = [sha for sha in last_seen_commits(state.db, project_id, old) if not holds([sha])]
    if missing:
        raise ConfigurationError(
            f"--repo-moved-from {moved_from}: {repo_id} lacks commit {missing[0][:12]}, which the state last saw "
            f"of {old}: it is another {what}, or an older copy of it without the last syncs and versions; "
            f"nothing was changed (sync the {what} that holds it)")


def _path_as_written(moved_from: str, recorded) -> str:
    """``--repo-moved-from`` as the state may have recorded it: as written when it is a recorded path, else made
    absolute without resolving its last part (a symlink left there names the new path), its parents resolved as
    :class:`labelhub.repos.git.LocalGitRepo` resolved them when it recorded the old path."""
    if moved_from in recorded:
        return moved_from
    written = os.path.abspath(os.path.expanduser(moved_from))
    if written in recorded:
        return written
    return os.path.join(os.path.realpath(os.path.dirname(written)), os.path.basename(written))


def _key(path: str) -> str:
    """The key the backend serves a local repository's files under (:func:`labelhub.repos.repo_key`)."""
    from labelhub.signing import repo_key

    return repo_key(path, local=True)


def _adopt_tasks_of(state, project, old: str, repo_id: str, holds=None) -> int:
    """Record the project's tasks of ``old``'s files (``data.hf_repo``) in the state's ledger of ``old``, when one of
    them shows a commit ``repo_id`` holds (``--repo-moved-from`` with a lost or new state); returns how many (0: none,
    or of another repository). ``holds``: whether the repository holds one of a list of commits (default: the local
    repository ``repo_id``'s, and ``old`` must then be an absolute path; :func:`_hub_holds` for a Hub dataset)."""
    from labelhub.sync.ledger import Entry, ImportLedger
    from labelhub.sync.versions.restore_identity import holds_commit

    if holds is None:
        if not os.path.isabs(old):
            return 0
        holds = lambda revisions: holds_commit(repo_id, revisions)  # noqa: E731
    tasks = project.repo_file_tasks(old)
    if not holds([revision for _, _, revision in tasks[:1] + tasks[-1:]]):
        return 0
    entries = [Entry(path, task_id, revision) for task_id, path, revision in tasks]
    return ImportLedger(state.db, project.project_id, old).recover(
        lambda after: [e for e in entries if e.task_id > after])


def _follow_renamed_hub_repo(state, state_path: str, project, dataset, head: str, moved_from: str | None) -> None:
    """A Hub dataset is named by its id (``owner/name``) in the state (the import ledger's source, its versions) and in
    its tasks (``data.hf_repo``): one renamed (or moved to another owner) keeps its history, and ``--repo`` at the new
    id would have every file imported a second time. Refuse that, unless ``--repo-moved-from`` names the old id; with
    it, the state's rows follow the dataset as a moved local repository's do
    (:func:`labelhub.sync.state.move_local_repo`: the same rows, whatever names the source).

    Decided (README, "Local git repositories", as :func:`_follow_moved_repo` decides for a local repository):

    - *An earlier name of this dataset* is another Hub id whose files the state holds for the project and whose last
      commits the state saw (its heads, its newest version's commit: :func:`labelhub.sync.state.last_seen_commits`)
      this dataset holds (:func:`_hub_holds`). The sync is refused while that id has more files in the state than this
      one. Another Hub dataset (whose commits this one lacks) is not refused: it may be a second dataset synced into
      the project. A duplicate (``duplicate_repo`` copies the history) looks renamed: the refusal says to give it its
      own ``--state``.
    - With no files of the project in the state (a lost state, another ``--state``), the project's tasks tell: a task
      of another Hub id showing a commit this dataset holds (one query per such id, five at most). Without
      ``--repo-moved-from`` the sync is refused; with it, the old id's tasks are adopted into the state
      (:meth:`labelhub.sync.ledger.ImportLedger.recover`) and then moved.
    - ``--repo-moved-from OLD`` moves the rows only onto a dataset that holds every commit the state last saw of
      ``OLD``; ``OLD`` is taken as written. The tasks keep ``hf_repo`` and their URLs with the old id until their
      file changes (a private dataset's signed URLs then need ``owner--old=owner/new`` in the backend's
      ``LABELHUB_FILE_REPOS``: said in the move's line, :func:`_old_key_served`).
    - Cost: nothing more at a start whose state holds files of this id and of no other Hub id; a first sync into a
      state asks the project for other sources' tasks (``LabelStudioProject.other_repo_file_tasks``: one query when
      there is none), and each other Hub id found costs a look-up of its commits (one Hub call for one commit).

    Raises:
        labelhub.errors.ConfigurationError: the dataset looks renamed and no ``--repo-moved-from`` says so, or
            ``--repo-moved-from`` names an id neither the state nor the project has files of, or one whose last seen
            commits this dataset lacks, or the move cannot be made (an import from the old id was interrupted).
        labelhub.errors.LabelStudioError: the project's tasks cannot be read (a state with no files of it).
        labelhub.errors.HubError: the dataset's history cannot be read.
    """
    from labelhub.errors import ConfigurationError
    from labelhub.sync.state import last_seen_commits, move_local_repo

    project_id, repo_id = project.project_id, dataset.repo_id
    holds = _hub_holds(dataset, head)
    others, here = _other_hub_repos(state), state.ledger.count()
    if moved_from is not None:
        old = moved_from.strip()
        if old == repo_id or (old not in others and here):
            return  # renamed already (the option left in place)
        _take_rows_of(state, state_path, project, moved_from, old, repo_id, others, holds, "dataset")
        try:
            moved = move_local_repo(state, old)
        except ValueError:
            raise ConfigurationError(
                f"--repo-moved-from {moved_from}: an import from {old} was interrupted: finish it with labelhub sync "
                f"--once --repo {old} while that id can be read (rename the dataset back for a moment), then pass "
                "--repo-moved-from; nothing was changed") from None
        log.warning("the Hub dataset %s is now %s: its %d files keep their tasks (whose hf_repo and URLs name %s "
                    "until their file changes) and its versions go on%s", old, repo_id, moved, old,
                    _old_key_served(dataset, head, old))
        return
    same = {old: files for old, files in others.items()
            if files > here and holds(last_seen_commits(state.db, project_id, old))}
    if same:
        old, files = max(same.items(), key=lambda item: item[1])
        raise ConfigurationError(
            f"--state {state_path} holds {files} files of project {project_id} from the Hub dataset {old}, "
            f"{here or 'none'} from {repo_id}, which holds its commits: if the dataset was renamed (or moved to "
            f"another owner), pass --repo-moved-from {old} once so that its files keep their tasks (without it every "
            "file would become a second task); if it is a copy of it, sync it with its own --state")
    tasks_from = [] if here or others else [
        old for old, _, revision in project.other_repo_file_tasks(repo_id)
        if _is_hub_id(old) and holds([revision])]
    if tasks_from:
        old = tasks_from[0]
        raise ConfigurationError(
            f"project {project_id} has tasks of this dataset's files from {old} (a commit of it), and --state "
            f"{state_path} holds none of them (a lost state, or another --state): if the dataset was renamed from "
            f"there, pass --repo-moved-from {old} (without it every file would become a second task); else use the "
            "state that synced it")


def _old_key_served(dataset, head: str, old: str) -> str:
    """What the backend needs to serve the file URLs of a renamed Hub dataset's tasks when they are the backend's
    (a private dataset's): ``; their file URLs name 'owner--old': ...``; ``""`` for Hub ``resolve`` URLs."""
    from labelhub.signing import repo_key

    key = repo_key(old, local=False)
    if f"/files/{repo_key(dataset.repo_id, local=False)}/" not in dataset.file_url(head, "x"):
        return ""
    return (f"; their file URLs name {key!r}: the backend's LABELHUB_FILE_REPOS needs {key}={dataset.repo_id} beside "
            f"{dataset.repo_id}")


def _is_hub_id(source: str) -> bool:
    """Whether an import ledger's source (a task's ``hf_repo``) names a Hub dataset (``owner/name``): not a local
    repository's absolute path, nor ``labels:...``/``restore:...`` (``import-labels``' and ``restore``'s sources)."""
    return "/" in source and not os.path.isabs(source) and ":" not in source


def _other_hub_repos(state) -> dict[str, int]:
    """``{Hub id: files}`` of the Hub datasets other than ``state``'s own whose files the import ledger holds for its
    project (:func:`labelhub.sync.state.other_sources`; :func:`~labelhub.sync.state.other_local_repos` for local
    repositories)."""
    from labelhub.sync.state import other_sources

    return {source: files for source, files in other_sources(state).items() if _is_hub_id(source)}


def _hub_holds(dataset, head: str):
    """``holds(shas) -> bool``: whether the Hub dataset holds one of the commits ``shas`` (up to 3, whole shas only),
    asked with :meth:`labelhub.repos.DatasetRepo.held_commits` from ``head`` (its history read first, 50 commits a
    call)."""
    def holds(shas) -> bool:
        wanted = [sha for sha in dict.fromkeys(shas) if isinstance(sha, str) and len(sha) == 40][:3]
        return bool(wanted) and bool(dataset.held_commits(wanted, head))

    return holds


def _start_webhooks(project, state_path, repo_id, service, url, host, port, secret):
    """Register the project's webhook and serve it (its own SQLite connection).

    Raises:
        click.ClickException: The receiver cannot listen on ``host:port`` (the port is in use, the host is not an
            address of this machine); checked before serving, as Werkzeug would print its own lines and exit.
    """
    import errno

    from labelhub.sync.annotations.intake import AnnotationIntake
    from labelhub.sync.state import SyncState
    from labelhub.sync.annotations.receiver import WebhookServer, register, webhook_app
    from labelhub.processes import bind_error

    error = bind_error(port, host)
    if error is not None and error.errno in (errno.EADDRINUSE, errno.EACCES):
        fix = ("stop what listens there, or choose another port" if error.errno == errno.EADDRINUSE
               else "choose a port above 1023")
        raise click.ClickException(f"--webhook-port {port} (LABELHUB_WEBHOOK_PORT): cannot listen on {host}:{port} "
                                   f"({error.strerror}): {fix}")
    if error is not None:
        raise click.ClickException(f"--webhook-host {host!r} (LABELHUB_WEBHOOK_HOST): cannot listen there on port "
                                   f"{port} ({error.strerror or error}): give an address of this machine, e.g. "
                                   "127.0.0.1 or 0.0.0.0")
    intake = AnnotationIntake(project, SyncState(state_path, project.project_id, repo_id))
    app = webhook_app(intake, secret, service.wake.set, on_deferred=service.reconcile_soon)
    server = WebhookServer(app, host, port).start()
    register(project, url, secret)
    log.info("webhook receiver on %s:%d, registered as %s%s", host, server.port, url,
             "" if secret else " (no secret: set LABELHUB_WEBHOOK_SECRET)")
    return server


@click.command(context_settings={"show_default": True})
@click.option("--repo", required=True, envvar="LABELHUB_REPO", help="Hub dataset OWNER/NAME or local git repo path.")
@series_options
@hub_options
def versions(repo, csv_path, tag_prefix, hf_token, hf_endpoint):
    """List the annotation versions (annotations-vN tags) with date, counts and +added ~changed -removed, under a
    header row (on stderr, so that a script reading stdout gets one line per version).

    Another project's versions in the same repo: its --csv-path (and --tag-prefix if it set one).

    \b
    Example:
      labelhub versions --repo owner/dataset
      labelhub versions --repo owner/dataset --csv-path annotations/test.csv    # test-vN
    """
    from labelhub.sync.versions.listing import list_versions, no_versions_text
    from labelhub.repos import open_repo

    with one_line_errors([hf_token]):
        dataset = open_repo(repo, token=hf_token, endpoint=hf_endpoint)
        rows = list_versions(dataset, csv_path, tag_prefix)
        if not rows:
            click.echo(no_versions_text(dataset, csv_path, tag_prefix))
    if rows:  # on stderr: a terminal shows it above the rows, a script reading stdout gets the versions alone
        click.echo(versions_header(), err=True)
    for row in rows:
        click.echo(versions_line(row))


def versions_header() -> str:
    """The header row of ``labelhub versions`` (:func:`versions_line`'s columns)."""
    return (f"{'tag':<18} {'created (UTC)':<26} {'commit':<12}  {'annotations':>11}  {'tasks':>6}  "
            "+added ~changed -removed (since the previous version)")


def versions_line(row: dict) -> str:
    """One version of :func:`labelhub.sync.versions.listing.list_versions` as a row under :func:`versions_header`:
    the counts as numbers under their column's name (``?`` when the manifest lacks them)."""
    return (f"{row['tag']:<18} {row['created_at']:<26} {row['commit'][:12]:<12}  {row['annotations']:>11}  "
            f"{row['tasks']:>6}  +{row['added']} ~{row['changed']} -{row['removed']}")


@click.command("diff", context_settings={"show_default": True})
@click.option("--repo", required=True, envvar="LABELHUB_REPO", help="Hub dataset OWNER/NAME or local git repo path.")
@click.argument("old")
@click.argument("new")
@series_options
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON (for scripts).")
@hub_options
def diff(repo, old, new, csv_path, tag_prefix, as_json, hf_token, hf_endpoint):
    """What changed between two versions (OLD and NEW: annotations-vN tags or commit shas): annotations added,
    removed and relabelled, per label and per annotator, and the from -> to table of relabels.

    \b
    Example:
      labelhub diff --repo owner/dataset annotations-v2 annotations-v3
      labelhub diff --repo ./data annotations-v1 annotations-v4 --json | jq .by_label
      labelhub diff --repo owner/dataset test-v1 test-v2 --csv-path annotations/test.csv
    """
    import json

    from labelhub.repos import open_repo
    from labelhub.sync.versions.diff import diff_table, diff_versions

    with one_line_errors([hf_token]):
        change = diff_versions(open_repo(repo, token=hf_token, endpoint=hf_endpoint), old, new, csv_path, tag_prefix)
    if as_json:
        click.echo(json.dumps(change.to_dict(), indent=2, sort_keys=True))
        return
    click.echo(f"{old} -> {new}")
    for line in diff_table(change):
        click.echo(line)


