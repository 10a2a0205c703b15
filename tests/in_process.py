"""Run a ``labelhub`` command in the test's own process, answered as :func:`tests.conftest.run_labelhub` answers.

A subprocess costs an interpreter and LabelHub's imports (about a second and a half on the CI machine) for each
command; a test that is not about a process (a signal, a kill, a second daemon at once) runs the command here: the
same click command (:data:`labelhub.cli.main`), the same environment variables, the same working directory
(:data:`tests.conftest.ROOT`, where relative paths resolve), stdout and stderr apart, the exit code. The loopback
guard is this process's own (:mod:`tests.conftest` installs it).
"""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess

from click.testing import CliRunner

from tests.conftest import FILE_SECRET, MAKE_TASKS, ROOT

__all__ = ["invoke_labelhub"]


def invoke_labelhub(*args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``labelhub ARGS...`` in-process (click's ``CliRunner``) with ``env`` added to the environment, from
    :data:`~tests.conftest.ROOT`; return its exit code and output as ``run_labelhub``'s ``CompletedProcess``.

    The commands of :data:`~tests.conftest.MAKE_TASKS` get :data:`~tests.conftest.FILE_SECRET` unless ``env`` (or this
    process) sets ``LABELHUB_SECRET``, as ``run_labelhub`` gives them. An exception the command does not turn into an
    exit code (a crash: a traceback and exit code 1 in a subprocess) is raised here. The root logger's handlers and
    level, which the command sets up (:func:`labelhub.redaction.setup_logging`), are put back after.

    Raises:
        AssertionError: ``check`` and the command exited non-zero (with its stderr, as ``run_labelhub``).
    """
    from labelhub.cli import main

    full_env = dict(env or {})
    if args[:1] and args[0] in MAKE_TASKS and "LABELHUB_SECRET" not in full_env:
        full_env.setdefault("LABELHUB_SECRET", os.environ.get("LABELHUB_SECRET", FILE_SECRET))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with contextlib.chdir(ROOT):
            result = CliRunner().invoke(main, list(args), env=full_env, prog_name="labelhub", catch_exceptions=False)
    finally:
        root.handlers[:], root.level = handlers, level
    proc = subprocess.CompletedProcess(["labelhub", *args], result.exit_code, result.stdout, result.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"labelhub {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc
