"""Shared test fixtures: the loopback guard, a real Label Studio, the Hub test server.

``HF_ENDPOINT`` must be set before ``huggingface_hub`` is imported (its constants read it at import),
so the Hub test server's port is chosen here, at import time, and the server is started on it.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from tests.labelstudio import free_port

HUB_PORT = free_port()
HUB_TOKEN = "hf_labelhubTestToken000000000000000000"
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.pop("HF_TOKEN", None)

import pytest  # noqa: E402

from tests import netguard  # noqa: E402
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402

netguard.install()
ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_finish(session):
    """Move what collection built (every test module and the libraries they import) out of the garbage
    collector's sight (:func:`gc.freeze`): a worker holds half a million such objects, and each full
    collection walked them all, about 0.6 s, some 25 times a worker and 5 more at its end (pytest's
    unraisable-exception check). Objects made by the tests themselves are collected as before."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _no_connection_off_loopback():
    """Fail the test when it tried to connect off loopback, even if the error was swallowed."""
    netguard.attempts.clear()
    yield
    assert not netguard.attempts, f"connections off loopback: {netguard.attempts}"


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio, shared by the whole session (tests create their own projects)."""
    ensure_template()
    with LabelStudioServer(tmp_path_factory.mktemp("label-studio")) as server:
        yield server


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    """The Hub-compatible test server at ``HF_ENDPOINT``; write access needs :data:`HUB_TOKEN`."""
    from tests.hubserver import HubServer

    with HubServer(root=tmp_path_factory.mktemp("hub"), port=HUB_PORT, token=HUB_TOKEN) as server:
        yield server


@pytest.fixture
def hub(hub_server):
    """The Hub test server with its faults cleared and its call log reset."""
    hub_server.faults.clear()
    hub_server.reset_calls()
    yield hub_server
    hub_server.faults.clear()


@pytest.fixture
def make_project(label_studio):
    """``make_project(title, label_config)`` creates a Label Studio project, deleted after the test."""
    client, made = label_studio.client(), []

    def make(title: str, label_config: str):
        project = client.projects.create(title=title, label_config=label_config)
        made.append(project.id)
        return project

    yield make
    for project_id in made:
        client.projects.delete(project_id)


#: The ``LABELHUB_SECRET`` that ``run_labelhub`` gives the commands that make tasks of repo files (:data:`MAKE_TASKS`)
#: when ``env`` has none, as the README's examples set it (without one a local repository is refused:
#: :meth:`labelhub.file_urls.FileURLs.refusal`).
#: A test of the refusal passes ``LABELHUB_SECRET=""`` (click reads an empty variable as unset).
FILE_SECRET = "labelhub-test-file-secret-0123456789"
#: ``labelhub`` commands that make tasks of repo files (``import-csv`` is ``import-labels``'s other name).
MAKE_TASKS = ("sync", "import-labels", "import-csv")


def run_labelhub(*args: str, env: dict | None = None, timeout: float = 300,
                 check: bool = False) -> subprocess.CompletedProcess:
    """Run ``labelhub ARGS...`` in a subprocess with the loopback guard; capture its output. The commands of
    :data:`MAKE_TASKS` get :data:`FILE_SECRET` unless ``env`` (or this process) sets ``LABELHUB_SECRET``."""
    full_env = {**os.environ, **(env or {})}
    if args[:1] and args[0] in MAKE_TASKS:
        full_env.setdefault("LABELHUB_SECRET", FILE_SECRET)
    proc = subprocess.run([sys.executable, "-m", "tests.guarded", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"labelhub {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def sigterm_timed(daemon: subprocess.Popen, timeout: float) -> tuple[int, float]:
    """Send SIGTERM to ``daemon`` and wait for it: ``(its exit code, seconds from the signal to the exit)``.

    Raises:
        subprocess.TimeoutExpired: it did not exit within ``timeout`` seconds (the caller kills it).
    """
    import signal
    import time

    daemon.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    code = daemon.wait(timeout=timeout)
    return code, time.monotonic() - signalled
