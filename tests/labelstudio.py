"""A real Label Studio server for tests, benchmarks and the demo's test bed.

The start logic is the package's (:mod:`labelhub.sync.labelstudio.server`, also used by ``labelhub demo``);
this module adds the test user and the test template. Label Studio (the ``label-studio`` package
from PyPI, pinned to :data:`LS_VERSION`) lives in its own virtual environment under the cache
directory, because it pins its own versions of Django and label-studio-sdk. A cold start runs every
migration (35 to 50 s), so the first start builds a *template*: the package's migrated database
(:func:`labelhub.sync.labelstudio.server.migrated_database`) started once with the test user and its legacy
token. Every later start copies the template into a fresh data directory and is ready in about 5 s.

See :mod:`labelhub.sync.labelstudio.server` for the settings and why each one.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from labelhub.sync.labelstudio import server as labelstudio_server
from labelhub.locks import file_lock
from labelhub.sync.labelstudio.server import LS_VERSION, free_port  # noqa: F401  (re-exported)

CACHE_DIR = labelstudio_server.cache_dir()
VENV_DIR = labelstudio_server.venv_dir()
TEMPLATE_DB = CACHE_DIR / f"ls-{LS_VERSION}-template" / "label_studio.sqlite3"

USERNAME = "admin@labelhub.test"
PASSWORD = "labelhub-test-password"
LEGACY_TOKEN = "labelhub0test0legacy0token0000000000000"
# Personal access tokens are JWTs signed with SECRET_KEY: keep it fixed so that they survive restarts.
SECRET_KEY = "labelhub-test-secret-key-not-for-production"
#: Label Studio gives an ML backend 1 s to answer ``/health`` (``ML_TIMEOUT_HEALTH``, ``ML_CONNECTION_TIMEOUT`` in
#: ``label_studio/ml/api_connector.py``) before it marks it disconnected or retrieves nothing. The suite runs a test
#: file per core, each with its own Label Studio, backends and embedders, so on 2 cores a ``/health`` request can
#: wait over a second for a core (a CI run lost a connect to it). Test servers allow 10 s; the demo's Label Studio,
#: which ``tests/test_ship_demo.py`` and ``tests/test_browser_demo.py`` connect to, keeps the 1 s defaults.
ML_TIMEOUTS = {"ML_TIMEOUT_HEALTH": "10", "ML_CONNECTION_TIMEOUT": "10"}


def ensure_installed() -> Path:
    """Install ``label-studio==LS_VERSION`` into the cached venv (about 2 minutes, 1 GB) unless there.

    Returns:
        The path of the ``label-studio`` executable.

    Raises:
        subprocess.CalledProcessError: when pip fails.
    """
    return labelstudio_server.install(VENV_DIR)


class LabelStudioServer(labelstudio_server.LabelStudioServer):
    """One test Label Studio on 127.0.0.1 with SQLite in ``data_dir``, logged in as the test user.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        api_key: the legacy token (``Authorization: Token <api_key>``).
        personal_token: a personal access token (JWT refresh token), created on start.
        username, password: the admin user's login.
    """

    def __init__(self, data_dir: Path, port: int | None = None, template: Path | None = TEMPLATE_DB,
                 create_personal_token: bool = True, settings: dict[str, str] | None = None):
        """``settings``: more environment variables for Label Studio, over :data:`ML_TIMEOUTS` (a bench starts it
        with its default prediction import: ``{EFFICIENT_IMPORT_FLAG: "false"}``)."""
        super().__init__(data_dir, USERNAME, PASSWORD, LEGACY_TOKEN, SECRET_KEY, port=port, template=template,
                         create_personal_token=create_personal_token, settings={**ML_TIMEOUTS, **(settings or {})})

    def start(self, timeout: float = 180) -> "LabelStudioServer":
        """Start the server (installing Label Studio first if needed; a new folder's database from the template, its
        project ids numbered from :func:`first_project_id`); see the base class."""
        self.executable = ensure_installed()
        database = self.data_dir / labelstudio_server.DB_NAME
        if self.template is not None and self.template.exists() and not database.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.template, database)
            with contextlib.closing(sqlite3.connect(database)) as db, db:
                db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'project'", (first_project_id(self.port) - 1,))
        return super().start(timeout)


def first_project_id(port: int) -> int:
    """The first project id of a test Label Studio listening on ``port``: ``port * 1000 + 1``.

    Decided: the servers that run at once on this host (three xdist workers, other sessions' suites) each number
    their projects apart (their ports differ), because a ``labelhub sync`` holds a host-wide lock per project
    keyed by ``<id>.<created_at in seconds>`` (:func:`labelhub.locks.project_lock_path`): two servers numbering
    from 1 made projects of one key in the same second, and one test's sync was refused while the other's ran."""
    return port * 1000 + 1


def ensure_template() -> Path:
    """Build the template database once (the migrated database plus the test user), then reuse it.

    Returns:
        The path of the template SQLite file.
    """
    with file_lock(CACHE_DIR / "template.lock"):
        if not TEMPLATE_DB.exists():
            migrated = labelstudio_server.migrated_database(ensure_installed())
            with tempfile.TemporaryDirectory() as tmp:
                # Label Studio allows one personal token per user: none in the template
                with LabelStudioServer(Path(tmp), template=migrated, create_personal_token=False):
                    pass
                TEMPLATE_DB.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(Path(tmp) / "label_studio.sqlite3", TEMPLATE_DB.with_suffix(".tmp"))
                os.replace(TEMPLATE_DB.with_suffix(".tmp"), TEMPLATE_DB)
    return TEMPLATE_DB


def import_annotated(client, project_id: int, data: list[dict], result: list[dict]) -> list[int]:
    """Import a task of each ``data`` into the project and annotate each with ``result`` (the SDK ``client``);
    returns the tasks' ids, sorted."""
    client.projects.import_tasks(project_id, request=data)
    ids = sorted(t.id for t in client.tasks.list(project=project_id, page_size=len(data) + 1))
    for task_id in ids:
        client.annotations.create(task_id, result=result)
    return ids


def on_second_page(client, action) -> list:
    """Run ``action`` once, just before the label-studio-sdk ``client`` fetches a second page of tasks
    (``client.tasks.list`` and its pager's next pages go through ``client.tasks._raw_client.list``).

    Returns:
        A list that holds ``action``'s result once it ran (empty before).
    """
    raw = client.tasks._raw_client
    fetch = raw.list

    def list_(*args, **kwargs):
        if kwargs.get("page") == 2 and not done:
            done.append(action())
        return fetch(*args, **kwargs)

    done = []
    raw.list = list_
    return done
