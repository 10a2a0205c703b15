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
import threading

from click.testing import CliRunner

from tests.conftest import FILE_SECRET, MAKE_TASKS, ROOT

__all__ = ["invoke_labelhub"]

_one_at_a_time = threading.Lock()  # CliRunner's isolation is per process, not per thread


def invoke_labelhub(*args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``labelhub ARGS...`` in-process (click's ``CliRunner``) with ``env`` added to the environment, from
    :data:`~tests.conftest.ROOT`; return its exit code and output as ``run_labelhub``'s ``CompletedProcess``.

    The commands of :data:`~tests.conftest.MAKE_TASKS` get :data:`~tests.conftest.FILE_SECRET` unless ``env`` (or this
    process) sets ``LABELHUB_SECRET``, as ``run_labelhub`` gives them. An exception the command does not turn into an
    exit code (a crash: a traceback and exit code 1 in a subprocess) is raised here. The root logger's handlers and
    level, which the command sets up (:func:`labelhub.redaction.setup_logging`), are put back after.

    Raises:
        AssertionError: ``check`` and the command exited non-zero (with its stderr, as ``run_labelhub``).
        RuntimeError: another thread runs a command here now (click's ``CliRunner`` replaces ``os.environ`` entries
            and ``sys.stdout``/``sys.stderr`` for the whole process: commands run side by side need
            :func:`tests.conftest.run_labelhub`).
    """
    from labelhub.cli import main

    if not _one_at_a_time.acquire(blocking=False):
        raise RuntimeError("invoke_labelhub is already running in another thread: CliRunner swaps this process's "
                           "os.environ and standard streams, so two at once leak each other's environment (one test's "
                           "LABEL_STUDIO_URL was left for the next); run concurrent commands with run_labelhub")
    try:
        return _invoke(main, args, env, check)
    finally:
        _one_at_a_time.release()


def _invoke(main, args: tuple, env: dict | None, check: bool) -> subprocess.CompletedProcess:
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
