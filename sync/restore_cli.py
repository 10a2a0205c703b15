"""``labelhub restore``: a version of the repo (``annotations-vN``) → a Label Studio project's tasks and annotations.

Reads the version (:func:`labelhub.sync.versions.restore.read_version`), plans its tasks
(:func:`~labelhub.sync.versions.restore.plan_tasks`), prints each row it cannot read, restores the rest through the
import ledger (:class:`~labelhub.sync.versions.restore.Restorer`) and prints a summary. Exit code 1 when a row
was rejected, when tasks of the version were not restored because the project already has tasks of their files
(the version is then not wholly in the project: restore into a new project; nothing is lost, and a re-run does the
same), or when the restore failed (one line, no traceback); 0 otherwise.
"""
from __future__ import annotations

import click

from labelhub.cli_options import Integer
from labelhub.sync.options import (
    hub_options,
    label_studio_options,
    log_level_option,
    one_line_errors,
    project_option,
    series_options,
    state_errors,
    host_project_lock,
    state_lock,
    state_option,
)


@click.command("restore", context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--repo", required=True, envvar="LABELHUB_REPO", help="Hub dataset OWNER/NAME or local git repo path.")
@click.option("--tag", required=True, help="The version to restore: an annotations-vN tag (another series': "
              "PREFIX-vN, its CSV read from its manifest unless --csv-path is given) or a commit sha (a version's: "
              "7 digits or more, as labelhub versions prints; another commit of a Hub repo: all 40).")
@project_option
@series_options
@click.option("--batch-size", type=Integer(min=1), default=1000, help="Tasks per Label Studio import call.")
@state_option
@label_studio_options
@hub_options
@log_level_option
@click.pass_context
def restore(ctx, repo, tag, project_id, csv_path, tag_prefix, batch_size, state_path, label_studio_url,
            label_studio_api_key, hf_token, hf_endpoint, log_level):
    """Rebuild a Label Studio project's tasks and annotations from a version of the repo: one task per task of
    the version with all its annotations, annotators matched by email to Label Studio users (the others, and
    every original email, kept in the task's meta), never twice (re-running continues an interrupted restore).

    \b
    Example:
      LABEL_STUDIO_API_KEY=... labelhub restore --repo owner/dataset --tag annotations-v3 --project 7
      LABEL_STUDIO_API_KEY=... labelhub restore --repo owner/dataset --tag test-v2 --csv-path annotations/test.csv \\
          --project 8
    """
    from labelhub.redaction import setup_logging

    from click.core import ParameterSource

    redact = setup_logging(log_level, secrets=[label_studio_api_key, hf_token])
    if ctx.get_parameter_source("csv_path") is ParameterSource.DEFAULT:
        csv_path = None  # the version's manifest names its CSV
    with one_line_errors(redact.secrets, resumable=True):
        report = _run(repo, tag, project_id, csv_path, tag_prefix, batch_size, state_path, label_studio_url,
                      label_studio_api_key, hf_token, hf_endpoint)
    for error in report.errors:
        click.echo(str(error))
    click.echo(report.summary())
    if report.errors or report.held:
        ctx.exit(1)


def _run(repo, tag, project_id, csv_path, tag_prefix, batch_size, state_path, label_studio_url, label_studio_api_key,
         hf_token, hf_endpoint):
    from labelhub.repos import open_repo
    from labelhub.sync.labelstudio.project import LabelStudioProject
    from labelhub.sync.ledger import ImportLedger
    from labelhub.sync.state import bind_project, connect
    from labelhub.sync.versions.restore import RESTORE_SOURCE, Restorer, plan_tasks, read_version, without_restored

    dataset = open_repo(repo, token=hf_token, endpoint=hf_endpoint)
    _, frame, manifest, rejected = read_version(dataset, tag, csv_path, tag_prefix)
    project = LabelStudioProject(label_studio_url, label_studio_api_key, project_id)
    with state_lock(state_path, project_id), host_project_lock(project, state_path):
        with state_errors(state_path):
            db = connect(state_path)
        try:
            bind_project(db, project_id, project.url, project.key)
            ledger = ImportLedger(db, project_id, RESTORE_SOURCE)
            # a re-run plans only the rows of tasks not restored yet (no repeated warnings, no planning time)
            frame, left_out = without_restored(frame, ledger.known(), dataset.repo_id)
            tasks, errors = plan_tasks(frame, manifest, project.label_config, dataset.repo_id, tag)
            errors = sorted([*rejected, *errors], key=lambda e: e.row)
            return Restorer(project, ledger, batch_size).run(tasks, errors, left_out)
        finally:
            db.close()
