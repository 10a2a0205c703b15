"""Options, types and the progress bar every ``labelhub`` command shares, whichever side defines it (the backend's commands,
:mod:`labelhub.backend.cli`, and the sync's, :mod:`labelhub.sync.options`, do not import each other).
"""
from __future__ import annotations

import os

import click
from tqdm.auto import tqdm

__all__ = ["Integer", "LogLevel", "LOG_LEVELS", "LOG_LEVEL_HELP", "log_level_option", "progress_bar"]

#: ``--log-level``'s choices.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

#: ``--log-level``'s help.
LOG_LEVEL_HELP = ("How much the log (stderr) says: DEBUG adds LabelHub's details, INFO what each step did (counts, "
                  "tasks made, versions, jobs), WARNING only what a person should act on, ERROR only failures.")


class Integer(click.IntRange):
    """``click.IntRange`` whose refusal of a non-number reads ``'abc' is not a valid integer.`` (click's own says "a
    valid integer range") and whose ``--help`` metavar is ``INTEGER``; the range shows as ``[x>=1]``.

    Example:
        >>> Integer(min=1).convert("7", None, None)
        7
    """

    name = "integer"


class LogLevel(click.Choice):
    """``--log-level``'s type: :data:`LOG_LEVELS`, given in any case, shown and returned in upper case as the README
    writes them (a case-insensitive ``click.Choice`` shows its choices casefolded since click 8.2:
    ``[debug|info|warning|error]`` beside ``[default: INFO]``).

    Example:
        >>> LogLevel().convert("warning", None, None)
        'WARNING'
    """

    def __init__(self):
        super().__init__(LOG_LEVELS, case_sensitive=False)

    def normalize_choice(self, choice, ctx) -> str:
        """A level's name in upper case (click 8.2+ matches and shows the choices by this form)."""
        return str(choice).upper()


def log_level_option(default: str = "INFO", help: str = LOG_LEVEL_HELP):
    """The ``--log-level`` option (env ``LABELHUB_LOG_LEVEL``, any case) of a command.

    Args:
        default: The level when neither the flag nor the variable is given.
        help: Its ``--help`` sentence.

    Returns:
        The click decorator.
    """
    return click.option("--log-level", default=default, envvar="LABELHUB_LOG_LEVEL", help=help, type=LogLevel())


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """A tqdm progress bar shown on a terminal only: on a log file's or a container's stderr a bar's redraws run
    into the log lines (tqdm's ``disable=None``, https://tqdm.github.io/docs/tqdm/). ``TQDM_DISABLE``, when set,
    still decides, as tqdm's environment defaults do.

    Args:
        iterable: What to iterate, as for ``tqdm``.
        **kwargs: ``tqdm``'s other arguments (``total``, ``desc``, ``unit``, ``leave``...).
    """
    if "TQDM_DISABLE" not in os.environ:
        kwargs.setdefault("disable", None)
    return tqdm(iterable, **kwargs)

