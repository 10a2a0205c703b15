"""Run a local Label Studio: find or install it, start it on SQLite in a folder, stop it cleanly.

Used by ``labelhub demo`` (and by the test fixtures of ``tests/labelstudio.py``). Label Studio
(the ``label-studio`` package, pinned to :data:`LS_VERSION`) pins its own Django and
label-studio-sdk, so it lives in its own virtual environment: the ``label-studio`` on ``PATH`` when
there is one, else ``~/.cache/labelhub/ls-<version>/`` (``LABELHUB_CACHE`` moves the cache), which
:func:`install` creates.

A first start runs every Django migration (35 to 50 s). :func:`migrated_database` does that once
(``label-studio version`` migrates and exits) and keeps the empty, user-less database in the cache;
every new data folder starts from a copy and is ready in about 5 s. The user and its legacy token
are created at the first start from ``LABEL_STUDIO_USERNAME``, ``LABEL_STUDIO_PASSWORD`` and
``LABEL_STUDIO_USER_TOKEN``.

Settings (https://labelstud.io/guide/start#Environment-variables and Label Studio's
``label_studio/core/settings/base.py``):

- ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``: ``Authorization: Token ...`` is off by default
  (1.18 and later, at least); it is read when the organization is created (the first start).
- ``SSRF_PROTECTION_ENABLED=false`` and ``ML_BLOCK_LOCAL_IP=false``: from 1.23.1 Label Studio
  refuses webhooks and ML backends on loopback and private addresses otherwise.
- ``LATEST_VERSION_CHECK=false``, empty Sentry DSNs, ``COLLECT_ANALYTICS=false``: nothing outside.
- ``fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short=true`` (:data:`EFFICIENT_IMPORT_FLAG`;
  Label Studio reads a feature flag from an environment variable of its name first,
  ``label_studio/core/feature_flags/base.py``): each ``POST /api/projects/<id>/import/predictions`` then recounts
  the counters of the tasks it wrote, where 1.23's default path (``ImportPredictionsAPI._create_legacy``) recounts
  every task of the project, so a call costs more the larger the project. 5,000 predictions in calls of 500 into
  a project of 5,000 text tasks cost Label Studio 7.6 s of CPU with it against 37.3 s without (62.2 s for a second
  version), and calls of 100 8.4 against 167 s (measured 2026-12-07). That path stores predictions without checking
  them against the label config, so the backend checks each before it writes
  (:func:`labelhub.label_config.prediction_errors`).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from labelhub.cache import cache_root
from labelhub.locks import file_lock
from labelhub.processes import signals_deferred, stop_process_group, wait_until_healthy

__all__ = ["EFFICIENT_IMPORT_FLAG", "LS_VERSION", "LabelStudioNotFound", "LabelStudioServer", "cache_dir",
           "find_executable", "free_port", "install", "migrated_database", "server_env"]

LS_VERSION = "1.23.2"
DB_NAME = "label_studio.sqlite3"
#: Label Studio's feature flag for its memory-efficient prediction import (see the module docstring).
EFFICIENT_IMPORT_FLAG = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"


class LabelStudioNotFound(RuntimeError):
    """No ``label-studio`` executable on ``PATH`` nor in the cache."""


def cache_dir() -> Path:
    """``LABELHUB_CACHE``, default ``~/.cache/labelhub`` (:func:`labelhub.cache.cache_root`)."""
    return cache_root()


def venv_dir() -> Path:
    """The cached virtual environment of Label Studio :data:`LS_VERSION`."""
    return cache_dir() / f"ls-{LS_VERSION}"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_executable() -> Path:
    """The ``label-studio`` executable: on ``PATH``, else in the cached venv.

    Raises:
        LabelStudioNotFound: neither exists (the message says how to install it).
    """
    on_path = shutil.which("label-studio")
    if on_path:
        return Path(on_path)
    cached = venv_dir() / "bin" / "label-studio"
    if cached.exists():
        return cached
    raise LabelStudioNotFound(f"label-studio not found on PATH nor in {venv_dir()}: install it with "
                              f"`python -m tests.testbed install` or `pip install label-studio=={LS_VERSION}` "
                              "in its own virtual environment")


def install(venv: Path | None = None) -> Path:
    """Install ``label-studio==LS_VERSION`` into its own venv (about 2 minutes, 1 GB) unless there.

    Args:
        venv: The virtual environment's directory (default :func:`venv_dir`).

    Returns:
        The path of its ``label-studio`` executable.

    Raises:
        subprocess.CalledProcessError: when venv or pip fails.
    """
    venv = venv or venv_dir()
    exe = venv / "bin" / "label-studio"
    with file_lock(cache_dir() / "install.lock"):
        if not exe.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"label-studio=={LS_VERSION}"], check=True)
    return exe


def _quiet_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update({"DJANGO_DB": "sqlite", "LATEST_VERSION_CHECK": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
                "COLLECT_ANALYTICS": "false", "PYTHONUNBUFFERED": "1"})
    return env


def migrated_database(executable: Path | None = None, timeout: float = 600) -> Path:
    """An empty, fully migrated Label Studio SQLite database without users, built once and cached.

    Args:
        executable: ``label-studio`` (default :func:`find_executable`).
        timeout: Seconds the migrations may take.

    Returns:
        The cached file ``<cache>/ls-<version>-migrated/label_studio.sqlite3``; copy it, never open it.

    Raises:
        RuntimeError: ``label-studio version`` failed (the message ends with its output).
    """
    target = cache_dir() / f"ls-{LS_VERSION}-migrated" / DB_NAME
    with file_lock(cache_dir() / "migrated.lock"):
        if target.exists():
            return target
        exe = executable or find_executable()
        with tempfile.TemporaryDirectory() as tmp:
            env = {**_quiet_env(), "LABEL_STUDIO_BASE_DATA_DIR": tmp}
            proc = subprocess.run([str(exe), "version"], env=env, cwd=tmp, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
            if proc.returncode != 0 or not (Path(tmp) / DB_NAME).exists():
                raise RuntimeError(f"label-studio version exited {proc.returncode}:\n{proc.stdout[-2000:]}"
                                   f"{proc.stderr[-2000:]}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(tmp) / DB_NAME, target.with_suffix(".tmp"))
            os.replace(target.with_suffix(".tmp"), target)
    return target


def server_env(data_dir: Path, username: str, password: str, token: str, secret_key: str) -> dict[str, str]:
    """The environment Label Studio runs with (see the module docstring for why each setting).

    Args:
        data_dir: ``LABEL_STUDIO_BASE_DATA_DIR``: the SQLite file, uploads, exports.
        username, password: the admin user (an email) created at the first start.
        token: its legacy API token (``LABEL_STUDIO_USER_TOKEN``, more than 5 characters).
        secret_key: Django's ``SECRET_KEY``; personal access tokens are JWTs signed with it, so keep
            it across restarts.
    """
    env = _quiet_env()
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "SECRET_KEY": secret_key,
        "SSRF_PROTECTION_ENABLED": "false",
        "ML_BLOCK_LOCAL_IP": "false",
        EFFICIENT_IMPORT_FLAG: "true",
    })
    return env


class LabelStudioServer:
    """One Label Studio process on ``host:port`` with SQLite in ``data_dir``.

    Args:
        data_dir: Label Studio's data folder (created). A new folder starts from a copy of
            ``template`` when given; a folder that has a database keeps it.
        username, password, token, secret_key: see :func:`server_env`.
        port: TCP port (default: a free one).
        host: interface to listen on (default ``127.0.0.1``).
        template: a database to start a new folder from (:func:`migrated_database`), or ``None``.
        executable: ``label-studio`` (default :func:`find_executable`, resolved at :meth:`start`).
        create_personal_token: create a personal access token after the start (Label Studio allows
            one per user, so only when the user has none yet).
        settings: more environment variables for Label Studio (its settings, e.g. ``ML_TIMEOUT_HEALTH``), over
            those of :func:`server_env`.

    Attributes:
        url: ``http://HOST:PORT``.
        api_key: the legacy token (``Authorization: Token <api_key>``).
        personal_token: the personal access token when one was created.

    Example:
        >>> with LabelStudioServer(Path("ls-data"), "me@example.com", "pw", "t" * 40, "k" * 50) as ls:
        ...     ls.client().projects.list()
    """

    def __init__(self, data_dir: Path, username: str, password: str, token: str, secret_key: str,
                 port: int | None = None, host: str = "127.0.0.1", template: Path | None = None,
                 executable: Path | None = None, create_personal_token: bool = False,
                 settings: dict[str, str] | None = None):
        self.data_dir = Path(data_dir)
        self.settings = dict(settings or {})
        self.username, self.password, self.api_key, self.secret_key = username, password, token, secret_key
        self.host = host
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.template = template
        self.executable = executable
        self.create_personal_token = create_personal_token
        self.personal_token: str | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def log_path(self) -> Path:
        """Label Studio's output (appended across starts)."""
        return self.data_dir / "label-studio.log"

    def start(self, timeout: float = 180) -> "LabelStudioServer":
        """Start the server and wait until ``/health`` answers 200.

        Raises:
            LabelStudioNotFound: no executable was given nor found.
            RuntimeError: the process exited or was not ready within ``timeout`` seconds (the
                message ends with the tail of its log).
        """
        exe = self.executable or find_executable()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.template is not None and self.template.exists() and not (self.data_dir / DB_NAME).exists():
            shutil.copy(self.template, self.data_dir / DB_NAME)
        self._log = open(self.log_path, "ab")
        with signals_deferred():  # recorded before a Ctrl-C is taken, so that stop() stops it
            self._proc = subprocess.Popen(
                [str(exe), "start", "--no-browser", "--internal-host", self.host, "--port", str(self.port)],
                env={**server_env(self.data_dir, self.username, self.password, self.api_key, self.secret_key),
                     **self.settings},
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.data_dir,
                start_new_session=True)
        try:
            wait_until_healthy(self._proc, self.url + "/health", "label-studio", self.log_tail, timeout)
        except RuntimeError:
            self.stop()
            raise
        if self.create_personal_token:
            answer = requests.post(self.url + "/api/token/", headers={"Authorization": f"Token {self.api_key}"},
                                   timeout=10)
            answer.raise_for_status()
            self.personal_token = answer.json()["token"]
        return self

    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server's log."""
        path = self.log_path
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def client(self, api_key: str | None = None):
        """A ``label_studio_sdk.LabelStudio`` client (legacy token unless ``api_key`` is given;
        :func:`labelhub.labelstudio_client.label_studio_client`)."""
        from labelhub.labelstudio_client import label_studio_client

        return label_studio_client(self.url, api_key or self.api_key)

    def stop(self, timeout: float = 10) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL after ``timeout`` seconds."""
        if self._proc:
            stop_process_group(self._proc, timeout)
        self._proc = None
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
