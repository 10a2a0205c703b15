"""``labelhub import-labels`` (alias ``import-csv``): labels made elsewhere (a CSV or COCO JSON) → Label Studio tasks with
predictions or annotations.

Reads the file (:mod:`labelhub.sync.labels.csv_file` or :mod:`labelhub.sync.labels.coco_file`), checks every row against the
project's label config (:class:`labelhub.sync.labels.parsed.ProjectLabels`), prints each rejected row, imports
the good ones (:mod:`labelhub.sync.labels.importer`) and prints a summary. The exit code is 1 when a row was
rejected, the import failed, another import running at the same time made second tasks of its urls, or a url's file
had a sync task deleted in Label Studio (not imported), 0 otherwise.
"""
from __future__ import annotations

import logging
from pathlib import Path

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
    state_errors,
    host_project_lock,
    state_lock,
    state_option,
)

log = logging.getLogger("labelhub")


@click.command("import-labels", context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@project_option
@click.option("--as", "target", type=click.Choice(["predictions", "annotations"]), default="predictions",
              help="Import the labels as predictions (pre-annotations to review) or as annotations.")
@click.option("--ground-truth", is_flag=True,
              help="Mark imported annotations as ground truth (Label Studio keeps one per task) [default: not].")
@click.option("--model-version", default=None,
              help="The predictions' model_version [default: the file's name].")
@click.option("--strict", is_flag=True, help="Import nothing when any row is rejected.")
@click.option("--batch-size", type=Integer(min=1), default=1000, help="Tasks per Label Studio import call.")
@click.option("--format", "file_format", type=click.Choice(["csv", "coco"]), default=None,
              help="The file's format [default: coco for a .json file, else csv].")
@click.option("--repo", default=None, envvar="LABELHUB_REPO",
              help="The dataset repo (Hub repo_id OWNER/NAME or a local git repository) whose paths the "
                   "file's urls may be; such tasks get the repo's file URL, like the sync's.")
@revision_option
@state_option
@label_studio_options
@hub_options
@file_url_options
@log_level_option
@click.pass_context
def import_labels(ctx, file, project_id, target, ground_truth, model_version, strict, batch_size, file_format, repo,
               revision, state_path, label_studio_url, label_studio_api_key, hf_token, hf_endpoint, public_url,
               file_urls, secret, url_lifetime, log_level):
    """Import labels made elsewhere into a Label Studio project: one task per url, with the labels as
    predictions or annotations, never twice (re-running continues an interrupted import).

    FILE is a CSV with a url column and optional pos_concepts, neg_concepts (names separated by |),
    metadata (a JSON object) and left_col, top_row, right_col, bottom_row (a box as fractions 0 to 1),
    or a COCO JSON file (--format coco). Every row is checked; each rejected row is printed with its
    line number and reason, the good rows are imported (none with --strict), and the exit code is 1
    when a row was rejected (or another import with another --state made second tasks meanwhile, or a url's
    file had a sync task deleted in Label Studio: not imported).

    \b
    Examples:
      LABEL_STUDIO_API_KEY=... labelhub import-labels labels.csv --project 3
      labelhub import-labels labels.csv --project 3 --as annotations --strict
      labelhub import-labels instances.json --project 3 --repo owner/dataset --model-version detector-v2
    """
    from labelhub.redaction import setup_logging

    redact = setup_logging(log_level, secrets=[label_studio_api_key, hf_token, secret])
    url_policy = file_url_policy(file_urls, public_url, secret, url_lifetime)
    with one_line_errors(redact.secrets, resumable=True):
        failed = _run(file, project_id, target, ground_truth, model_version or file.name, strict, batch_size,
                        file_format or ("coco" if file.suffix.lower() == ".json" else "csv"), repo, revision,
                        state_path, label_studio_url, label_studio_api_key, hf_token, hf_endpoint, public_url,
                        url_policy)
    if failed:
        ctx.exit(1)


def _run(file, project_id, target, ground_truth, model_version, strict, batch_size, file_format, repo, revision,
         state_path, label_studio_url, label_studio_api_key, hf_token, hf_endpoint, public_url, url_policy) -> int:
    """Parse, report, import, summarise; return how many rows were rejected plus the second tasks a concurrent
    import made and the urls whose sync task was deleted (any: exit code 1).

    The state lock (:func:`labelhub.sync.options.state_lock`) is taken first, before the file is read: beside a
    sync daemon (or another import) of the project with the same ``--state``, the refusal is the only output, not
    the last line after every rejected row and the parse summary (found by a walkthrough). A ``--strict`` run that
    would import nothing is refused the same way: decided, it is the same command."""
    from labelhub.sync.labelstudio.project import LabelStudioProject

    project = LabelStudioProject(label_studio_url, label_studio_api_key, project_id)  # its key names the host lock
    with state_lock(state_path, project_id), host_project_lock(project, state_path):
        return _run_locked(file, project, target, ground_truth, model_version, strict, batch_size, file_format,
                           repo, revision, state_path, hf_token, hf_endpoint, public_url, url_policy)


def _warn_long_urls(urls, parsed) -> None:
    """Warn, as ``labelhub sync`` does for its cycle (:func:`labelhub.file_urls.warn_long_urls`), of the tasks to
    import whose repo file URL is too long to load (:attr:`labelhub.sync.labels.parsed.UrlResolver.long_urls`)."""
    from labelhub.file_urls import warn_long_urls

    long = set(urls.long_urls)
    if long:
        warn_long_urls([t.hf[1] for t in parsed.tasks if t.hf and t.hf[1] in long], urls.repo.repo_id, urls.sha, log)


def _run_locked(file, project, target, ground_truth, model_version, strict, batch_size, file_format, repo,
                revision, state_path, hf_token, hf_endpoint, public_url, url_policy) -> int:
    """:func:`_run` once the state lock is held, for ``project``
    (:class:`~labelhub.sync.labelstudio.project.LabelStudioProject`)."""
    from labelhub.sync.labels.coco_file import read_coco
    from labelhub.sync.labels.csv_file import read_labels_csv
    from labelhub.sync.labels.parsed import ProjectLabels, UrlResolver
    from labelhub.sync.ledger import LABELS_SOURCE, ImportLedger
    from labelhub.sync.state import bind_project, connect
    from labelhub.sync.labels.importer import LabelImporter, summary_lines
    project_id = project.project_id
    labels = ProjectLabels.from_config(project.label_config)
    urls = UrlResolver(endpoint=hf_endpoint)
    if repo:
        from labelhub.repos import open_repo

        try:
            dataset = open_repo(repo, token=hf_token, endpoint=hf_endpoint, public_url=public_url,
                                file_urls=url_policy)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        if dataset.local:  # before any output: the refusal is the only line
            with state_errors(state_path):
                db = connect(state_path)
            try:
                _refuse_before_the_move(db, project_id, dataset.repo_id, state_path)
            finally:
                db.close()
        sha = dataset.resolve(revision or dataset.default_revision())
        # after resolve(), which learns whether a Hub repo is private (the form depends on it), as the sync does;
        # found by a walkthrough: unsigned URLs went unsaid
        announce_task_files(dataset, labels.field, log)
        urls = UrlResolver(dataset, sha, (f.path for f in dataset.list_files(sha)), endpoint=hf_endpoint,
                           field=labels.field)
    read = read_coco if file_format == "coco" else read_labels_csv
    parsed = read(file, labels, urls)
    log.info("%s: %d rows, %d tasks, %d regions, %d rows rejected → project %d %r (%s $%s)", file.name,
             parsed.rows, len(parsed.tasks), parsed.regions, parsed.rejected_rows, project_id, project.title,
             labels.field.tag, labels.field.value_key)
    for error in parsed.errors:
        click.echo(str(error))
    _warn_long_urls(urls, parsed)
    report = None
    if not (strict and parsed.rejected_rows):
        with state_errors(state_path):
            db = connect(state_path)
        bind_project(db, project_id, project.url, project.key)
        try:
            report = LabelImporter(project, ImportLedger(db, project_id, LABELS_SOURCE), labels, target=target,
                                   model_version=model_version, batch_size=batch_size,
                                   ground_truth=ground_truth).run(parsed.tasks)
        finally:
            db.close()
    for line in summary_lines(parsed, report, target, strict):
        click.echo(line)
    return parsed.rejected_rows + (len(report.second_tasks) + len(report.deleted_tasks) if report else 0)


def _refuse_before_the_move(db, project_id: int, repo_id: str, state_path: str) -> None:
    """Refuse an import of a local repository's files that moved (or is mounted at another path) before the sync made
    the move: the state holds more files of the project from an earlier path of it
    (:func:`labelhub.sync.state.earlier_paths`) than from ``repo_id``. Its rows under the new path would make second
    tasks of the files whose tasks name the old path (they are the old path's in the state until
    ``labelhub sync --repo-moved-from``).

    Raises:
        labelhub.errors.ConfigurationError: so (one line, nothing imported).
    """
    from labelhub.errors import ConfigurationError
    from labelhub.sync.ledger import ImportLedger
    from labelhub.sync.state import earlier_paths

    here = ImportLedger(db, project_id, repo_id).count()
    earlier = {path: files for path, files in earlier_paths(db, project_id, repo_id).items() if files > here}
    if earlier:
        old, files = max(earlier.items(), key=lambda item: item[1])
        raise ConfigurationError(
            f"--state {state_path} holds {files} files of project {project_id} from {old}, a path this repository "
            f"had: run labelhub sync --repo {repo_id} --repo-moved-from {old} first (its files keep their tasks), "
            "then import; nothing was imported")
