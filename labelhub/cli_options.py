"""Options and types every ``labelhub`` command shares, whichever side defines it (the backend's commands,
:mod:`labelhub.backend.cli`, and the sync's, :mod:`labelhub.sync.options`, do not import each other).
"""
from __future__ import annotations

import click

__all__ = ["Integer", "LOG_LEVELS", "LOG_LEVEL_HELP", "log_level_option"]

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


def log_level_option(default: str = "INFO", help: str = LOG_LEVEL_HELP):
    """The ``--log-level`` option (env ``LABELHUB_LOG_LEVEL``, any case) of a command.

    Args:
        default: The level when neither the flag nor the variable is given.
        help: Its ``--help`` sentence.

    Returns:
        The click decorator.
    """
    return click.option("--log-level", default=default, envvar="LABELHUB_LOG_LEVEL", help=help,
                        type=click.Choice(LOG_LEVELS, case_sensitive=False))
