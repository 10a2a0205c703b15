"""How every ``labelhub`` command reports an error: one line on stderr, exit code 1, no traceback, no secret.

Shared by the backend's commands (:mod:`labelhub.backend.cli`) and the sync's (:mod:`labelhub.sync.options`
re-exports it), which do not import each other.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import click

from labelhub.errors import LabelHubError
from labelhub.redaction import one_line, redact

__all__ = ["one_line_errors", "RESUMABLE"]


#: What Ctrl-C in a resumable command says (``one_line_errors(..., resumable=True)``) instead of click's ``Aborted!``.
RESUMABLE = ("interrupted: run the same command again to continue where it stopped (the import ledger makes "
             "nothing twice)")


@contextmanager
def one_line_errors(secrets: Iterable[str | None], resumable: bool = False) -> Iterator[None]:
    """Turn a :class:`labelhub.errors.LabelHubError`, an ``OSError`` (an unreachable Hub or Label Studio, a
    full disk) or an ``sqlite3.Error`` (a state file that is not a database) raised in the block into
    ``click.ClickException``: ``Error: <one line>`` on stderr and exit code 1, every secret replaced by ``***``.

    Args:
        secrets: The tokens and secrets the command was given (``None`` items are ignored).
        resumable: The command goes through the import ledger (``import-labels``, ``restore``): Ctrl-C
            (``KeyboardInterrupt``) says that running it again continues (:data:`RESUMABLE`), exit code 1.

    Raises:
        click.ClickException: For each of the errors above (whitespace, newlines included, collapsed).

    Example:
        >>> with one_line_errors([token], resumable=True):  # doctest: +SKIP
        ...     run_import()
    """
    secrets = tuple(secrets)
    try:
        yield
    except KeyboardInterrupt:
        if not resumable:
            raise  # click says Aborted!
        raise click.ClickException(RESUMABLE) from None
    except LabelHubError as exc:
        raise click.ClickException(redact(one_line(exc), secrets)) from None
    except (OSError, sqlite3.Error) as exc:
        raise click.ClickException(redact(" ".join(f"{type(exc).__name__}: {exc}".split()), secrets)) from None
