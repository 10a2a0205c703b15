"""A real Label Studio server for tests, benchmarks and the demo's test bed.

Label Studio (the ``label-studio`` package from PyPI, pinned to :data:`LS_VERSION`) lives in its own
virtual environment under the cache directory, because it pins its own versions of Django and
label-studio-sdk. A cold start runs every migration (35 to 50 s here), so the first start builds a
*template*: a migrated SQLite database with the test user and its legacy token. Every later start
copies the template into a fresh data directory and is ready in about 5 s.

Settings come from Label Studio's docs (https://labelstud.io/guide/start#Environment-variables) and
its source (``label_studio/core/settings/base.py``):

- ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true`` keeps ``Authorization: Token ...`` working (off by
  default from 1.23); a personal access token (a JWT refresh token) is also created per server.
- ``SSRF_PROTECTION_ENABLED=false`` and ``ML_BLOCK_LOCAL_IP=false``: from 1.23.1 Label Studio refuses
  webhooks and ML backends on loopback addresses otherwise.
- ``LATEST_VERSION_CHECK=false``, empty Sentry DSNs, ``COLLECT_ANALYTICS=false``: nothing outside.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

LS_VERSION = "1.23.2"
CACHE_DIR = Path(os.environ.get("LABELHUB_CACHE", Path.home() / ".cache" / "labelhub"))
VENV_DIR = CACHE_DIR / f"ls-{LS_VERSION}"
TEMPLATE_DB = CACHE_DIR / f"ls-{LS_VERSION}-template" / "label_studio.sqlite3"

USERNAME = "admin@labelhub.test"
PASSWORD = "labelhub-test-password"
LEGACY_TOKEN = "labelhub0test0legacy0token0000000000000"
# Personal access tokens are JWTs signed with SECRET_KEY: keep it fixed so that they survive restarts.
SECRET_KEY = "labelhub-test-secret-key-not-for-production"


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_installed() -> Path:
    """Install ``label-studio==LS_VERSION`` into its own venv (about 2 minutes, 1 GB) unless cached.

    Returns:
        The path of the ``label-studio`` executable.

    Raises:
        subprocess.CalledProcessError: when pip fails.
    """
    exe = VENV_DIR / "bin" / "label-studio"
    with _file_lock(CACHE_DIR / "install.lock"):
        if not exe.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV_DIR)], check=True)
            subprocess.run([str(VENV_DIR / "bin" / "pip"), "install", "-q",
                            f"label-studio=={LS_VERSION}"], check=True)
    return exe


def server_env(data_dir: Path) -> dict[str, str]:
    """The environment a test Label Studio runs with (see the module docstring for why)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update({
        "DJANGO_DB": "sqlite",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": USERNAME,
        "LABEL_STUDIO_PASSWORD": PASSWORD,
        "LABEL_STUDIO_USER_TOKEN": LEGACY_TOKEN,
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "SECRET_KEY": SECRET_KEY,
        "SSRF_PROTECTION_ENABLED": "false",
        "ML_BLOCK_LOCAL_IP": "false",
        "LATEST_VERSION_CHECK": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "PYTHONUNBUFFERED": "1",
    })
    return env


class LabelStudioServer:
    """One Label Studio process on 127.0.0.1 with SQLite in ``data_dir``.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        api_key: the legacy token (``Authorization: Token <api_key>``).
        personal_token: a personal access token (JWT refresh token), created on start.
        username, password: the admin user's login.
    """

    username = USERNAME
    password = PASSWORD
    api_key = LEGACY_TOKEN

    def __init__(self, data_dir: Path, port: int | None = None, template: Path | None = TEMPLATE_DB,
                 create_personal_token: bool = True):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.template = template
        self.create_personal_token = create_personal_token
        self.personal_token: str | None = None
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> "LabelStudioServer":
        """Start the server and wait until ``/health`` answers 200.

        Raises:
            RuntimeError: when the process exits or is not ready within ``timeout`` seconds
                (the message ends with the tail of its log).
        """
        exe = ensure_installed()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.template is not None and self.template.exists():
            shutil.copy(self.template, self.data_dir / "label_studio.sqlite3")
        self._log = open(self.data_dir / "label-studio.log", "ab")
        self._proc = subprocess.Popen(
            [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port)],
            env=server_env(self.data_dir), stdout=self._log, stderr=subprocess.STDOUT,
            cwd=self.data_dir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"label-studio exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        else:
            self.stop()
            raise RuntimeError(f"label-studio not ready after {timeout} s:\n{self.log_tail()}")
        if not self.create_personal_token:  # Label Studio allows one per user: not in the template
            return self
        answer = requests.post(self.url + "/api/token/", headers={"Authorization": f"Token {self.api_key}"},
                               timeout=10)
        answer.raise_for_status()
        self.personal_token = answer.json()["token"]
        return self

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server's log."""
        path = self.data_dir / "label-studio.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def client(self, api_key: str | None = None):
        """A ``label_studio_sdk.LabelStudio`` client (legacy token unless ``api_key`` is given)."""
        from label_studio_sdk import LabelStudio

        return LabelStudio(base_url=self.url, api_key=api_key or self.api_key)

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, then SIGKILL after 10 s)."""
        if self._proc and self._proc.poll() is None:
            os.killpg(self._proc.pid, 15)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, 9)
                self._proc.wait()
        self._proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def ensure_template() -> Path:
    """Build the migrated template database once (a cold start, 35 to 50 s), then reuse it.

    Returns:
        The path of the template SQLite file.
    """
    with _file_lock(CACHE_DIR / "template.lock"):
        if not TEMPLATE_DB.exists():
            with tempfile.TemporaryDirectory() as tmp:
                server = LabelStudioServer(Path(tmp), template=None, create_personal_token=False)
                with server:
                    pass
                TEMPLATE_DB.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(Path(tmp) / "label_studio.sqlite3", TEMPLATE_DB.with_suffix(".tmp"))
                os.replace(TEMPLATE_DB.with_suffix(".tmp"), TEMPLATE_DB)
    return TEMPLATE_DB
