"""The ``labelhub`` command line: parses arguments and calls into the stage modules.

- ``labelhub sync``: :mod:`sync.importer` (files → tasks) in the loop of :mod:`sync.daemon`.
- ``labelhub backend``: the ML backend (:mod:`backend.cli`).

Every option can also be set by the environment variable named in its ``--help``.
"""
from __future__ import annotations

import logging
import sys

import click

from sync.errors import SyncError

log = logging.getLogger("labelhub")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main():
    """LabelHub: a Label Studio ML backend and a Hugging Face Hub sync daemon."""


@main.command()
@click.option("--repo", required=True, envvar="LABELHUB_REPO",
              help="A Hub dataset repo_id OWNER/NAME, or the path of a local git repository.")
@click.option("--project", "project_id", required=True, type=int, envvar="LABELHUB_PROJECT",
              help="The Label Studio project id.")
@click.option("--revision", default="main", envvar="LABELHUB_REVISION",
              help="The branch, tag or commit sha to follow.")
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
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, help="Tasks per Label Studio import call.")
@click.option("--state", "state_path", default=".labelhub/sync.sqlite3", envvar="LABELHUB_STATE",
              type=click.Path(dir_okay=False), help="The SQLite file of the sync state.")
@click.option("--label-studio-url", envvar="LABEL_STUDIO_URL", default="http://localhost:8080",
              help="Label Studio's URL.")
@click.option("--label-studio-api-key", envvar="LABEL_STUDIO_API_KEY", required=True, show_default=False,
              help="A Label Studio personal access token or legacy token (env LABEL_STUDIO_API_KEY).")
@click.option("--hf-token", envvar="HF_TOKEN", default=None, show_default=False,
              help="A Hugging Face token (env HF_TOKEN); needed for private repos and exports.")
@click.option("--hf-endpoint", envvar="HF_ENDPOINT", default=None, help="The Hub URL (env HF_ENDPOINT).")
@click.option("--public-url", envvar="LABELHUB_PUBLIC_URL", default=None,
              help="The backend's URL as annotators' browsers see it; file URLs of a local repo use it "
                   "[default: http://127.0.0.1:9090].")
@click.option("--log-level", default="INFO", envvar="LABELHUB_LOG_LEVEL",
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def sync(repo, project_id, revision, include, exclude, metadata_path, metadata_key, metadata_columns, once,
         interval, batch_size, state_path, label_studio_url, label_studio_api_key, hf_token, hf_endpoint,
         public_url, log_level):
    """Turn the files of a dataset repo into Label Studio tasks, new files as they appear, never twice.

    \b
    Example:
      LABEL_STUDIO_API_KEY=... HF_TOKEN=... labelhub sync --repo owner/dataset --project 3 --once
    """
    from sync.logs import setup_logging

    redact = setup_logging(log_level, secrets=[label_studio_api_key, hf_token])
    try:
        from sync.daemon import run_forever
        from sync.importer import FileImporter
        from sync.ls_project import LabelStudioProject
        from sync.metadata import parse_columns, spec_from_args
        from sync.repo import open_repo
        from sync.state import SyncState

        dataset = open_repo(repo, token=hf_token, endpoint=hf_endpoint, public_url=public_url)
        sha = dataset.resolve(revision)
        project = LabelStudioProject(label_studio_url, label_studio_api_key, project_id)
        state = SyncState(state_path, project_id, dataset.repo_id)
        importer = FileImporter(dataset, project, state, revision=revision, include=include, exclude=exclude,
                                metadata=spec_from_args(metadata_path, metadata_key, parse_columns(metadata_columns)),
                                batch_size=batch_size)
        log.info("syncing %s@%s (%s) into project %d %r: %s files as $%s", dataset.repo_id, revision, sha[:12],
                 project_id, project.title, importer.field.tag, importer.field.value_key)
        if once:
            importer.run()
        else:
            run_forever(importer.run, interval)
    except SyncError as exc:
        raise click.ClickException(redact.redact(str(exc))) from None
    except OSError as exc:  # unreachable Hub, full disk, ...
        raise click.ClickException(redact.redact(f"{type(exc).__name__}: {exc}")) from None


def _add_backend_command() -> None:
    try:
        from backend.cli import backend
    except ImportError:  # the backend is optional for a sync-only install
        return
    main.add_command(backend)


_add_backend_command()

if __name__ == "__main__":
    sys.exit(main())
