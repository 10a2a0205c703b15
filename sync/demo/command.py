"""``labelhub demo``: the whole loop on one machine, in one folder, with one command.

It starts, each as its own process and in this order:

1. a local git dataset repo ``<dir>/fashion-mnist`` holding ``--images`` real Fashion-MNIST images
   (Debian's ``dataset-fashion-mnist``, :mod:`labelhub.sync.demo.sample_data`) as 28×28 PNGs under ``images/``;
2. Label Studio (:mod:`labelhub.sync.labelstudio.server`: the ``label-studio`` on ``PATH`` or in the cache,
   installed there when missing) on SQLite in ``<dir>/label-studio``, with a user made for this folder;
3. the ML backend (``labelhub backend``) with ``MODEL_DIR=<dir>/models``, serving the repo's files
   through its signed file route (``LABELHUB_FILE_REPOS``, ``LABELHUB_SECRET``);
4. a project with a Choices config of the 10 classes, the backend connected to it
   (``client.ml.create``, which makes Label Studio call ``/health`` and ``/setup``);
5. the sync daemon (``labelhub sync``): files → tasks, its webhook receiver on, an export at most
   every ``--export-interval`` seconds, so each batch of annotations lands as a commit tagged
   ``annotations-vN`` in the repo.

It then prints the URL and the login and waits. Ctrl-C or SIGTERM (or ``--exit-after``) stops the
sync daemon first (it reconciles and pushes the pending export), then the backend, then Label
Studio. A second run in the same folder reuses everything (the repo, the database, the login, the
project, the model state and the sync state) and adds images when ``--images`` grew.

Secrets (the password, Label Studio's legacy token, Django's ``SECRET_KEY``, the webhook and
file-URL secrets) are made once per folder and kept in ``<dir>/demo.json`` (mode 600).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from labelhub.cli_options import Integer
from labelhub.processes import signals_deferred, stop_process_group, wait_until_healthy
from labelhub.repos.git import git

__all__ = ["demo", "Demo", "LABEL_CONFIG", "PROJECT_TITLE"]

PROJECT_TITLE = "Fashion-MNIST (LabelHub demo)"
ML_TITLE = "labelhub"
USERNAME = "demo@example.com"
REPO_DIR = "fashion-mnist"
MAX_IMAGES = 60000  # the training split


def label_config() -> str:
    """The project's label config: one ``Image`` and a ``Choices`` of the 10 Fashion-MNIST classes
    (https://labelstud.io/tags/choices)."""
    from xml.sax.saxutils import quoteattr

    from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES

    choices = "".join(f"<Choice value={quoteattr(c)}/>" for c in FASHION_MNIST_CLASSES)
    return ('<View><Image name="image" value="$image" zoom="true"/>'
            f'<Choices name="label" toName="image" choice="single-radio" showInline="true">{choices}</Choices>'
            "</View>")


LABEL_CONFIG = label_config()


def image_path(index: int) -> str:
    """``path_in_repo`` of training image ``index``: ``images/00042.png``."""
    return f"images/{index:05d}.png"


DATASET_CARD = """---
license: mit
pretty_name: Fashion-MNIST sample (LabelHub demo)
task_categories:
- image-classification
---
# Fashion-MNIST sample

The first images of the Fashion-MNIST training set (Zalando Research, MIT license,
https://github.com/zalandoresearch/fashion-mnist), read from Debian's `dataset-fashion-mnist`
package and stored as 28x28 grayscale PNGs under `images/`. They are labelled in Label Studio; each
export of the labels is a commit tagged `annotations-vN` (`annotations/annotations.csv`).
"""


def _git(repo: Path, *args: str) -> str:
    return git(repo, *args, identity=("LabelHub demo", USERNAME)).decode().strip()


def ensure_dataset_repo(repo: Path, images: int) -> int:
    """Create (or extend) the git repo with the first ``images`` Fashion-MNIST training images.

    Files are written and committed on ``main`` with git's porcelain; a repo that already has them
    is left as it is (the exports move ``main`` without touching the work tree, so the work tree is
    first reset to it).

    Args:
        repo: The repository's directory (created).
        images: How many images it must hold (1 to 60,000).

    Returns:
        How many images the commit added (0: none were missing).

    Raises:
        FileNotFoundError: Debian's ``dataset-fashion-mnist`` is not installed.
    """
    from labelhub.sync.demo.sample_data import fashion_mnist, png_bytes

    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "-q", "-b", "main")
    try:
        has_head = bool(_git(repo, "rev-parse", "--verify", "-q", "HEAD"))
    except subprocess.CalledProcessError:
        has_head = False
    present = set(_git(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines()) if has_head else set()
    missing = [i for i in range(images) if image_path(i) not in present]
    if not missing and "README.md" in present:
        return 0
    if has_head:
        _git(repo, "reset", "-q", "--hard", "HEAD")
    pixels, _ = fashion_mnist("train", limit=images)
    for i in missing:
        target = repo / image_path(i)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png_bytes(pixels[i]))
    if not (repo / "README.md").exists():
        (repo / "README.md").write_text(DATASET_CARD)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"Fashion-MNIST: {len(missing)} images")
    return len(missing)


@dataclass
class Demo:
    """The demo's folder, its settings and its processes.

    Args:
        directory: The folder everything lives in (created).
        images: Fashion-MNIST images in the repo.
        port, backend_port, webhook_port: Label Studio's, the backend's and the sync's webhook
            receiver's ports on 127.0.0.1.
        export_interval: Seconds between two exports at most (``labelhub sync --export-interval``).
        echo: Where progress lines go.
    """

    directory: Path
    images: int = 500
    port: int = 8080
    backend_port: int = 9090
    webhook_port: int = 9091
    export_interval: float = 10.0
    echo: callable = print
    secrets: dict = field(default_factory=dict)
    project_id: int | None = None
    label_studio: object = None
    _children: dict = field(default_factory=dict)
    _logs: list = field(default_factory=list)

    # layout -----------------------------------------------------------------------------------
    @property
    def repo(self) -> Path:
        """The demo's local dataset repo (a git repo under the demo's directory)."""
        return self.directory / REPO_DIR

    @property
    def settings_file(self) -> Path:
        """``demo.json`` (mode 0600): the login, tokens, secrets and project id a later run of the demo reuses."""
        return self.directory / "demo.json"

    @property
    def ls_url(self) -> str:
        """Label Studio's URL, on 127.0.0.1."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend_url(self) -> str:
        """The ML backend's URL, the one Label Studio's Connect Model dialog is given."""
        return f"http://127.0.0.1:{self.backend_port}"

    @property
    def webhook_url(self) -> str:
        """The sync daemon's webhook receiver, the URL of the project's annotation webhook."""
        return f"http://127.0.0.1:{self.webhook_port}/webhook"

    def _load_settings(self) -> None:
        saved = json.loads(self.settings_file.read_text()) if self.settings_file.exists() else {}
        self.secrets = {
            "username": saved.get("username", USERNAME),
            "password": saved.get("password") or secrets.token_urlsafe(12),
            "token": saved.get("token") or secrets.token_hex(20),
            "secret_key": saved.get("secret_key") or secrets.token_urlsafe(40),
            "webhook_secret": saved.get("webhook_secret") or secrets.token_urlsafe(24),
            "file_secret": saved.get("file_secret") or secrets.token_urlsafe(32),
        }
        self.project_id = saved.get("project_id")
        self._save_settings()

    def _save_settings(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.settings_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({**self.secrets, "project_id": self.project_id}, fh, indent=2)
        os.replace(tmp, self.settings_file)

    # steps ------------------------------------------------------------------------------------
    def start(self) -> "Demo":
        """Run steps 1 to 5 of the module docstring; return when the images are tasks and the sync's webhook receiver
        answers (the sync is then past its start: a Ctrl-C flushes its pending export).

        Raises:
            RuntimeError: Some of the three ports are in use (the message names each with its flag: ``port 8080
                (--port) is in use``, ``ports 8080 (--port), 9090 (--backend-port) are in use``), or a process did
                not start (the message names its log).
            FileNotFoundError: ``dataset-fashion-mnist`` is not installed.
        """
        from labelhub.processes import port_in_use

        taken = [f"{port} ({flag})" for port, flag in ((self.port, "--port"), (self.backend_port, "--backend-port"),
                                                       (self.webhook_port, "--webhook-port")) if port_in_use(port)]
        if taken:  # Label Studio would move to the next port by itself, and the demo would wait for it in vain
            ports, verb = ("port", "is") if len(taken) == 1 else ("ports", "are")
            raise RuntimeError(f"{ports} {', '.join(taken)} {verb} in use on 127.0.0.1: stop what listens there, or "
                               "choose another port")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load_settings()
        added = ensure_dataset_repo(self.repo, self.images)
        self.echo(f"dataset repo {self.repo}: {self.images} Fashion-MNIST images"
                  + (f" ({added} added)" if added else ""))
        self._start_label_studio()
        self._start_backend()
        self._ensure_project()
        self._start_sync()
        self._wait_for_tasks()
        # the receiver starts just before the sync's signal handlers: a Ctrl-C once the banner shows then flushes
        # the pending export (on a second run the tasks exist at once, and the banner came while the sync was still
        # starting: its SIGTERM killed it, the last annotations waited for the next run)
        wait_until_healthy(self._children["sync"], f"http://127.0.0.1:{self.webhook_port}/health",
                           "labelhub sync's webhook receiver", lambda: self._log_tail("sync"), timeout=180)
        return self

    def _start_label_studio(self) -> None:
        from labelhub.sync.labelstudio import server as lss

        try:
            exe = lss.find_executable()
        except lss.LabelStudioNotFound:
            self.echo(f"installing Label Studio {lss.LS_VERSION} into {lss.venv_dir()} "
                      "(once; about 2 minutes and 1 GB)")
            exe = lss.install()
        data = self.directory / "label-studio"
        template = None
        if not (data / lss.DB_NAME).exists():
            self.echo("preparing Label Studio's database (once per machine; about 40 s the first time)")
            template = lss.migrated_database(exe)
        self.echo(f"starting Label Studio on {self.ls_url} (log: {data / 'label-studio.log'})")
        self.label_studio = lss.LabelStudioServer(
            data, self.secrets["username"], self.secrets["password"], self.secrets["token"],
            self.secrets["secret_key"], port=self.port, template=template, executable=exe)
        self.label_studio.start(timeout=300)

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        logs = self.directory / "logs"
        logs.mkdir(exist_ok=True)
        log = open(logs / f"{name}.log", "ab")
        self._logs.append(log)
        with signals_deferred():  # a Ctrl-C now is taken once the child is recorded, so that stop() stops it
            proc = self._children[name] = subprocess.Popen(
                [sys.executable, "-m", "labelhub.cli", *args], env={**os.environ, **env}, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.directory, start_new_session=True)
        return proc

    def _log_tail(self, name: str, lines: int = 20) -> str:
        path = self.directory / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _start_backend(self) -> None:

        self.echo(f"starting the ML backend on {self.backend_url} (log: {self.directory / 'logs' / 'backend.log'})")
        env = {
            "LABEL_STUDIO_URL": self.ls_url,
            "LABEL_STUDIO_API_KEY": self.secrets["token"],
            "MODEL_DIR": str(self.directory / "models"),
            "LABELHUB_SECRET": self.secrets["file_secret"],
            "LABELHUB_FILE_REPOS": str(self.repo.resolve()),
            "LABELHUB_PUBLIC_URL": self.backend_url,
        }
        proc = self._spawn("backend", ["backend", "--host", "127.0.0.1", "--port", str(self.backend_port),
                                       "--workers", "1", "--threads", "8"], env)
        wait_until_healthy(proc, self.backend_url + "/health", "labelhub backend", lambda: self._log_tail("backend"),
                           timeout=120)

    def _ensure_project(self) -> None:
        from label_studio_sdk.core.api_error import ApiError

        client = self.label_studio.client()
        project = None
        if self.project_id:
            try:
                project = client.projects.get(id=self.project_id)
            except ApiError:
                project = None
        if project is None:
            project = client.projects.create(title=PROJECT_TITLE, label_config=LABEL_CONFIG,
                                             description="Real Fashion-MNIST images from a local git repo; "
                                                         "annotations become annotations-vN tags.",
                                             show_collab_predictions=True)
            self.project_id = project.id
            self._save_settings()
            self.echo(f"created project {project.id} {PROJECT_TITLE!r}")
        backends = [ml for ml in client.ml.list(project=self.project_id) if ml.url.rstrip("/") == self.backend_url]
        if not backends:
            for ml in client.ml.list(project=self.project_id):  # a backend of an earlier run on another port
                client.ml.delete(id=ml.id)
            ml = client.ml.create(project=self.project_id, url=self.backend_url, title=ML_TITLE, is_interactive=True)
        else:
            ml = backends[0]
        ml = client.ml.get(id=ml.id)
        if ml.state != "CO":
            raise RuntimeError(f"Label Studio could not connect the backend ({ml.state}): {ml.error_message}")
        # Label Studio sets the project's model_version to the backend's title: then the labeling
        # stream asks the backend for a prediction of each task it opens (with its current version)
        self.echo(f"connected the ML backend to project {self.project_id} (model {ml.model_version})")

    def _start_sync(self) -> None:
        self.echo(f"starting the sync daemon (log: {self.directory / 'logs' / 'sync.log'})")
        env = {
            "LABEL_STUDIO_API_KEY": self.secrets["token"],
            "LABELHUB_WEBHOOK_SECRET": self.secrets["webhook_secret"],
            "LABELHUB_SECRET": self.secrets["file_secret"],
            "LABELHUB_PUBLIC_URL": self.backend_url,
        }
        self._spawn("sync", ["sync", "--repo", str(self.repo), "--project", str(self.project_id),
                             "--state", str(self.directory / "sync.sqlite3"), "--label-studio-url", self.ls_url,
                             "--interval", "10", "--reconcile-interval", "10",
                             "--export-interval", str(self.export_interval),
                             "--webhook-url", self.webhook_url, "--webhook-host", "127.0.0.1",
                             "--webhook-port", str(self.webhook_port)], env)

    def _wait_for_tasks(self, timeout: float = 180) -> None:
        client = self.label_studio.client()
        deadline = time.monotonic() + timeout
        count = -1
        while time.monotonic() < deadline:
            proc = self._children["sync"]
            if proc.poll() is not None:
                raise RuntimeError(f"labelhub sync exited with {proc.returncode}:\n{self._log_tail('sync')}")
            count = client.projects.get(id=self.project_id).task_number or 0
            if count >= self.images:
                self.echo(f"{count} tasks in project {self.project_id}")
                return
            time.sleep(0.5)
        raise RuntimeError(f"only {count} of {self.images} images became tasks in {timeout:.0f} s:\n"
                           f"{self._log_tail('sync')}")

    def banner(self) -> str:
        """What the demo prints once it is ready: the URL, the login, where things are."""
        return "\n".join([
            "",
            "LabelHub demo is ready.",
            f"  Label Studio   {self.ls_url}/projects/{self.project_id}/data",
            f"  login          {self.secrets['username']} / {self.secrets['password']}",
            f"  ML backend     {self.backend_url} (connected as {ML_TITLE!r}; predictions once it has seen "
            "two classes)",
            f"  dataset repo   {self.repo}",
            f"  versions       labelhub versions --repo {self.repo}   (an export every "
            f"{self.export_interval:g} s at most)",
            f"  logs           {self.directory / 'logs'}, {self.directory / 'label-studio' / 'label-studio.log'}",
            "Label a few images (Label All Tasks), then press Ctrl-C to stop.",
            "",
        ])

    def wait(self, stop: threading.Event, exit_after: float | None = None) -> None:
        """Block until ``stop`` is set, ``exit_after`` seconds passed, or a process died.

        Raises:
            RuntimeError: A process exited by itself (the message names it and ends with its log).
        """
        deadline = time.monotonic() + exit_after if exit_after is not None else None
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                self.echo(f"--exit-after {exit_after:g} s: stopping")
                return
            for name, proc in self._children.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self._log_tail(name)}")
            if self.label_studio is not None and not self.label_studio.running():
                raise RuntimeError(f"Label Studio exited:\n{self.label_studio.log_tail()}")
            stop.wait(0.5)

    def stop(self) -> list[str]:
        """Stop the sync daemon (it pushes the pending export), the backend, then Label Studio.

        Returns:
            Problems met while stopping (a process that had to be killed or exited non-zero).
        """
        problems = []
        for name, timeout in (("sync", 90), ("backend", 40)):
            proc = self._children.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                self.echo(f"stopping {name}")
                if stop_process_group(proc, timeout):
                    problems.append(f"{name} did not stop within {timeout} s and was killed")
            if proc.returncode not in (0, -signal.SIGTERM):
                problems.append(f"{name} exited with {proc.returncode}")
        if self.label_studio is not None:
            self.echo("stopping Label Studio")
            self.label_studio.stop(timeout=20)
            self.label_studio = None
        for log in self._logs:
            log.close()
        self._logs.clear()
        return problems

    def versions(self) -> list[str]:
        """The repo's ``annotations-vN`` tags, oldest first."""
        tags = _git(self.repo, "tag", "--list", "annotations-v*").split()
        return sorted(tags, key=lambda t: int(t.rsplit("v", 1)[-1]))


@click.command("demo", context_settings={"show_default": True})
@click.option("--dir", "directory", default=".labelhub-demo", type=click.Path(file_okay=False),
              help="Folder of the demo: the dataset repo, Label Studio's data, the model and the sync state "
                   "(reused by the next run).")
@click.option("--images", default=500, type=Integer(1, MAX_IMAGES),
              help="Fashion-MNIST images in the dataset repo.")
@click.option("--port", default=8080, type=Integer(1, 65535), help="Label Studio's port on 127.0.0.1.")
@click.option("--backend-port", default=9090, type=Integer(1, 65535),
              help="The ML backend's port on 127.0.0.1.")
@click.option("--webhook-port", default=9091, type=Integer(1, 65535),
              help="The sync daemon's webhook receiver's port on 127.0.0.1.")
@click.option("--export-interval", default=10.0, type=click.FloatRange(min=0),
              help="At most one annotation version per this many seconds.")
@click.option("--no-browser", is_flag=True, help="Do not open Label Studio in a browser.")
@click.option("--exit-after", type=click.FloatRange(min=0), default=None,
              help="Stop by itself this many seconds after it is ready (for tests and CI).")
def demo(directory, images, port, backend_port, webhook_port, export_interval, no_browser, exit_after):
    """Run the whole loop locally: Label Studio, the ML backend and the sync daemon on a git repo of
    real Fashion-MNIST images; annotations land as annotations-vN tags in the repo.

    Needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) and Label Studio
    1.23.2 (on PATH, or installed into ~/.cache/labelhub on the first run). Ctrl-C stops everything.

    \b
    Example:
      labelhub demo                      # then open the printed URL and log in
      labelhub demo --no-browser --exit-after 60
    """
    stop, ready = threading.Event(), threading.Event()

    def on_signal(signum, _frame):
        stop.set()
        click.echo("stopping...", err=True)
        if not ready.is_set():  # still starting: interrupt the step under way (what started is stopped below)
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    run = Demo(Path(directory).resolve(), images=images, port=port, backend_port=backend_port,
               webhook_port=webhook_port, export_interval=export_interval,
               echo=lambda line: click.echo(line, err=True))
    error, started = None, False
    try:
        run.start()
        started = True
        ready.set()
        click.echo(run.banner())
        if not no_browser:
            import webbrowser

            webbrowser.open(f"{run.ls_url}/projects/{run.project_id}/data")
        run.wait(stop, exit_after)
    except (RuntimeError, FileNotFoundError, OSError) as exc:
        error = str(exc)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while starting
        pass
    finally:
        ready.set()  # a signal from here on only asks again: the stop below runs to its end
        problems = run.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if started:  # a demo that never got ready made no version: the line would only hide the error below it
        tags = run.versions()
        click.echo(f"annotation versions in {run.repo}: {', '.join(tags) if tags else 'none yet'}", err=True)
    if error:
        raise click.ClickException(error)
    if problems:
        raise click.ClickException("; ".join(problems))
    click.echo("stopped", err=True)
