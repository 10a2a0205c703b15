"""The options that several ``labelhub`` commands share, declared once, and how a command reports an error.

Each is a click option with its environment variable; :func:`options` stacks several. The README's
settings tables list them. ``one_line_errors`` (:mod:`labelhub.cli_errors`, re-exported) turns what a command
raises into one line, no traceback, no secret.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click

from labelhub.cli_errors import one_line_errors
from labelhub.cli_options import log_level_option as shared_log_level_option
from labelhub.redaction import check_http_url

#: ``one_line_errors`` is re-exported for the sync's commands.
__all__ = ["one_line_errors", "options", "file_url_policy", "state_lock", "state_errors", "project_option",
           "revision_option", "state_option", "csv_path_option", "tag_prefix_option", "log_level_option"]


def options(*decorators):
    """Apply click option ``decorators`` in the order given (the first shows first in ``--help``)."""
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


project_option = click.option("--project", "project_id", required=True, type=int, envvar="LABELHUB_PROJECT",
                              help="The Label Studio project id.")

revision_option = click.option(
    "--revision", default=None, envvar="LABELHUB_REVISION", show_default=False,
    help="The branch, tag or commit sha to follow [default: main for a Hub repo, the checked-out branch of a "
         "local repository].")

state_option = click.option(
    "--state", "state_path", default=".labelhub/sync.sqlite3", envvar="LABELHUB_STATE",
    type=click.Path(dir_okay=False), help="The SQLite file of the sync state.")

csv_path_option = click.option(
    "--csv-path", default="annotations/annotations.csv", envvar="LABELHUB_CSV_PATH",
    help="path_in_repo of the project's annotations CSV. Another path than the default makes the project's own "
         "series of versions in the repo (tags, manifest, training files and configs named after its tag prefix), "
         "so several projects can export into one repo.")

tag_prefix_option = click.option(
    "--tag-prefix", default=None, envvar="LABELHUB_TAG_PREFIX", show_default=False,
    help="The versions' tag prefix: tags PREFIX-vN, files and datasets configs named after it [default: derived "
         "from --csv-path: annotations for annotations/annotations.csv, test for annotations/test.csv or "
         "test/annotations.csv].")

#: ``--csv-path`` and ``--tag-prefix``: which series of versions a command writes or reads
#: (:mod:`labelhub.sync.versions.series`).
series_options = options(csv_path_option, tag_prefix_option)


def stripped(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A key or token option's value without the whitespace around it (a paste's trailing newline, the CR of a CRLF
    ``.env`` file), which httpx refuses in a header, in an error that quotes the header."""
    return value.strip() if isinstance(value, str) else value


label_studio_options = options(
    click.option("--label-studio-url", envvar="LABEL_STUDIO_URL", default="http://localhost:8080",
                 help="Label Studio's URL."),
    click.option("--label-studio-api-key", envvar="LABEL_STUDIO_API_KEY", required=True, show_default=False,
                 callback=stripped,
                 help="A Label Studio personal access token or legacy token (the whitespace around it is dropped)."),
)

#: The commands that write to the dataset repo (the versions), whose ``--hf-token`` needs write access.
WRITES_TO_REPO = frozenset({"sync"})


class HubTokenOption(click.Option):
    """``--hf-token``, whose ``--help`` says what the command needs it for: read access to a private repo, and for
    the commands of :data:`WRITES_TO_REPO` write access too (``versions``, ``diff``, ``restore`` and
    ``import-labels`` only read the repo). The environment variable shows in click's own ``[env var: ...]``; the
    whitespace around the token is dropped (:func:`stripped`)."""

    def get_help_record(self, ctx: click.Context):
        writes = ctx.command.name in WRITES_TO_REPO
        self.help = ("A Hugging Face token: read access for a private repo" +
                     ("; write access for the versions it writes (exports)." if writes else "."))
        return super().get_help_record(ctx)


def checked_endpoint(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--hf-endpoint`` as given, once ``HF_ENDPOINT`` and it are http(s) URLs
    (:func:`labelhub.redaction.check_http_url`). Checked as the options are read, before a command imports
    huggingface_hub: that import parses ``HF_ENDPOINT``, and a password holding a ``/``, ``?`` or ``#`` failed it
    with a traceback that showed the password.

    Raises:
        click.ClickException: One line (exit 1) naming ``HF_ENDPOINT`` (or ``--hf-endpoint``), the URL without its
            ``user:password@`` and the form expected.
    """
    flag = ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE
    try:
        check_http_url("HF_ENDPOINT", os.environ.get("HF_ENDPOINT", ""))
        check_http_url("--hf-endpoint" if flag else "HF_ENDPOINT", value or "")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    return value


hub_options = options(
    click.option("--hf-token", cls=HubTokenOption, envvar="HF_TOKEN", default=None, show_default=False,
                 callback=stripped),
    click.option("--hf-endpoint", envvar="HF_ENDPOINT", default=None, show_default=False, callback=checked_endpoint,
                 help="The Hub URL [default: https://huggingface.co]."),
)

file_url_options = options(
    click.option("--public-url", envvar="LABELHUB_PUBLIC_URL", default=None,
                 help="The backend's URL as annotators' browsers see it; signed file URLs use it "
                      "[default: http://127.0.0.1:9090]."),
    click.option("--file-urls", type=click.Choice(["auto", "resolve", "proxy"]), default="auto",
                 envvar="LABELHUB_FILE_URLS",
                 help="The URL a task gets for its file: auto = the Hub's pinned resolve URL for a public Hub "
                      "repo, a signed URL of the backend's /files route (at --public-url) for a private Hub repo "
                      "or a local repo; resolve or proxy force one form."),
    click.option("--secret", envvar="LABELHUB_SECRET", default=None, show_default=False,
                 help="The secret that signs file URLs; the backend needs the same one. Needed for a local repo "
                      "or a private Hub repo (refused without it). Rotating it revokes every URL signed before."),
    click.option("--url-lifetime", envvar="LABELHUB_URL_LIFETIME", default="never",
                 help="How long a signed file URL stays valid after its task is made: seconds, or 90m, 12h, "
                      "30d; never = no expiry (tasks outlive any lifetime: see the README)."),
)

log_level_option = shared_log_level_option()


@contextmanager
def state_lock(state_path: str, project_id: int) -> Iterator[None]:
    """Hold ``<state>.<project>.lock`` while a command writes the project's tasks through the state (``sync``,
    ``import-labels``, ``restore``): two at once would both import what has no task yet (a ``--once`` beside the
    daemon, two imports of one file). Other projects may share the state file (each keeps its own rows).

    Raises:
        click.ClickException: Another of these commands of the project holds it (a runtime condition: exit 1), or
            the lock file cannot be created (``--state <path>: cannot create <lock> (<reason>)``).
    """
    from labelhub.locks import file_lock

    lock = Path(f"{state_path}.{project_id}.lock")
    with ExitStack() as stack:
        try:
            held = stack.enter_context(file_lock(lock, blocking=False))
        except OSError as exc:
            raise click.ClickException(f"--state {state_path}: cannot create {lock} ({_reason(exc)})") from None
        if not held:
            raise click.ClickException(f"another labelhub sync, import-labels or restore of project {project_id} "
                                       f"runs with --state {state_path}: wait for it (two at once would import the "
                                       "same tasks twice)")
        yield


@contextmanager
def host_project_lock(project, state_path: str):
    """Hold the host-wide lock of the project (:func:`labelhub.locks.project_lock`) beside the per-state one
    (:func:`state_lock`): a second ``labelhub sync``, ``import-labels`` or ``restore`` of the project on this host,
    whatever its ``--state`` and however it spells Label Studio's URL, is refused in one line naming the first one's.

    Args:
        project: The :class:`~labelhub.sync.labelstudio.project.LabelStudioProject` (its ``url``, ``project_id``
            and ``key``).

    Raises:
        click.ClickException: another process holds it (exit 1), or its lock file cannot be created.
    """
    from labelhub.locks import ProjectLocked, project_lock

    with ExitStack() as stack:
        try:  # only the acquisition: errors of the command itself pass through
            stack.enter_context(project_lock(project.url, project.key, str(Path(state_path).resolve())))
        except ProjectLocked as other:
            raise click.ClickException(
                f"another labelhub sync, import-labels or restore of Label Studio project {project.project_id} runs on this "
                f"host with --state "
                f"{other.holder or '?'}: one at a time per project (two --state files of one project each import "
                "what their own state lacks and export the same annotations); wait for it, or stop it and use its "
                "--state") from None
        except OSError as exc:
            raise click.ClickException(f"cannot create the lock of Label Studio project {project.project_id} "
                                       f"({type(exc).__name__}: {exc})") from None
        yield


@contextmanager
def state_errors(state_path: str) -> Iterator[None]:
    """Name ``--state`` in the error of opening the state file (:func:`labelhub.sync.state.connect`) in the block.

    Raises:
        click.ClickException: ``--state <path>: not a LabelHub state file: move it or choose another --state`` for a
            file that is not SQLite; ``--state <path>: <reason>`` for another ``OSError`` or ``sqlite3.Error`` (a
            parent that is a file, a folder that cannot be written).
    """
    import sqlite3

    try:
        yield
    except sqlite3.Error as exc:
        what = ("not a LabelHub state file: move it or choose another --state" if "not a database" in str(exc)
                else f"{type(exc).__name__}: {exc}")  # SQLITE_NOTADB, or another
        raise click.ClickException(f"--state {state_path}: {what}") from None
    except OSError as exc:
        raise click.ClickException(f"--state {state_path}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    """An ``OSError`` in words, with the path it is about: ``File exists: /etc/passwd``."""
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc)


def file_url_policy(mode: str, public_url: str | None, secret: str | None, lifetime: str):
    """The :class:`labelhub.file_urls.FileURLs` of the :data:`file_url_options`.

    Raises:
        click.BadParameter: a bad ``--url-lifetime`` or a secret shorter than the minimum.
        click.UsageError: ``--file-urls proxy`` without a secret.
    """
    from labelhub.file_urls import FileURLs, parse_lifetime
    from labelhub.signing import MIN_SECRET_LENGTH

    try:
        seconds = parse_lifetime(lifetime)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url-lifetime") from None
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        raise click.BadParameter(f"LABELHUB_SECRET must have at least {MIN_SECRET_LENGTH} characters",
                                 param_hint="--secret")
    if mode == "proxy" and not secret:
        raise click.UsageError("--file-urls proxy needs LABELHUB_SECRET (--secret) to sign the URLs")
    return FileURLs(mode=mode, public_url=public_url, secret=secret or None, lifetime=seconds)
