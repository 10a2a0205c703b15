"""``labelhub backend``: serve the ML backend with gunicorn.

Only click is imported at import time; gunicorn and the app are imported when the command runs, so
``labelhub --help`` stays fast. Each gunicorn worker builds its own app with
``labelhub.backend.app:create_app()`` (gthread workers: ``--threads`` requests at once per worker).

The settings are checked (:meth:`Settings.from_env`, :func:`labelhub.backend.startup.check_settings`) before gunicorn
starts: a configuration error ends the command once, with exit code 1 and one line on stderr (secrets
replaced by ``***``), instead of every worker failing with a traceback.
"""
from __future__ import annotations

import os

import click

__all__ = ["backend", "check_configuration"]

#: The environment variables whose values are secrets (never printed).
SECRET_VARIABLES = ("BASIC_AUTH_PASS", "LABELHUB_WEBHOOK_SECRET", "LABEL_STUDIO_API_KEY", "HF_TOKEN", "LABELHUB_SECRET")


def check_configuration() -> None:
    """Check the backend's settings as every worker will read them from the environment.

    Returns:
        None when the workers can start.

    Raises:
        click.ClickException: A setting does not parse or cannot work (a ``LABELHUB_FILE_REPOS`` path that is
            not a git repository, a short ``LABELHUB_SECRET``, a ``LABELHUB_MODEL`` that does not import, a
            ``MODEL_DIR`` that cannot be written, ``LABELHUB_IMAGE_SIZE=big``, ...): click prints
            ``Error: <one line>`` on stderr and exits with status 1. Secrets are replaced by ``***``.
    """
    from labelhub.backend.settings import Settings
    from labelhub.backend.startup import check_settings
    from labelhub.redaction import redact

    secrets = [os.environ.get(name) for name in SECRET_VARIABLES]
    try:
        check_settings(Settings.from_env())
    except (ValueError, OSError) as exc:
        raise click.ClickException(redact(" ".join(str(exc).split()), secrets)) from None


@click.command("backend", context_settings={"show_default": True})
@click.option("--host", default="127.0.0.1", envvar="LABELHUB_HOST",
              help="Address to listen on; 0.0.0.0 to be reachable from other machines or containers.")
@click.option("--port", default=9090, type=click.IntRange(1, 65535), envvar="LABELHUB_PORT",
              help="Port to listen on; connect Label Studio to http://HOST:PORT.")
@click.option("--workers", default=2, type=click.IntRange(1, 64), envvar="LABELHUB_WORKERS",
              help="gunicorn worker processes (each loads the embedder once, ~300 MB).")
@click.option("--threads", default=8, type=click.IntRange(1, 256), envvar="LABELHUB_THREADS",
              help="Threads per worker.")
@click.option("--model-dir", default=None, envvar="MODEL_DIR", show_default="./labelhub-models",
              help="Where per-project model state and the event queue live (shared by the workers).")
@click.option("--timeout", default=120, type=click.IntRange(10), envvar="LABELHUB_WORKER_TIMEOUT",
              help="Seconds before gunicorn restarts a silent worker (keep above ML_TIMEOUT_PREDICT's needs).")
@click.option("--log-level", default="INFO", envvar="LABELHUB_LOG_LEVEL",
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def backend(host, port, workers, threads, model_dir, timeout, log_level):
    """Serve the Label Studio ML backend: /health, /setup, /predict, /webhook, /versions, /train, /metrics.

    Every other setting is an environment variable (see the "ML backend" section of README.md): LABEL_STUDIO_URL,
    LABEL_STUDIO_API_KEY, HF_TOKEN, BASIC_AUTH_USER, BASIC_AUTH_PASS, LABELHUB_WEBHOOK_SECRET,
    LABELHUB_ALLOWED_HOSTS, LABELHUB_IMAGE_EMBEDDER, LABELHUB_TEXT_EMBEDDER, LABELHUB_MODEL, ...

    \b
    Example:
      LABEL_STUDIO_URL=http://localhost:8080 LABEL_STUDIO_API_KEY=... labelhub backend --port 9090
      # then in Label Studio: Project > Settings > Model > Connect Model > http://localhost:9090
    """
    import logging
    import tempfile

    from gunicorn.app.base import BaseApplication
    from gunicorn.errors import AppImportError

    if model_dir:
        os.environ["MODEL_DIR"] = model_dir
    os.environ["LABELHUB_LOG_LEVEL"] = log_level.upper()
    check_configuration()  # before gunicorn: one line and exit code 1, not a crash loop of workers
    prom_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not prom_dir:
        prom_dir = tempfile.mkdtemp(prefix="labelhub-prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    else:
        os.makedirs(prom_dir, exist_ok=True)
        for name in os.listdir(prom_dir):  # stale values of a previous run (prometheus-client's advice)
            if name.endswith(".db"):
                os.unlink(os.path.join(prom_dir, name))
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")

    def child_exit(server, worker):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    options = {
        "bind": f"{host}:{port}", "workers": workers, "threads": threads, "worker_class": "gthread",
        "timeout": timeout, "graceful_timeout": 30, "keepalive": 5, "loglevel": log_level.lower(),
        "accesslog": None, "child_exit": child_exit,
    }

    class _Server(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from labelhub.backend.app import create_app
            from labelhub.redaction import redact

            try:
                return create_app()
            except (ValueError, OSError, ImportError) as exc:  # checked above; a change since ends here
                secrets = [os.environ.get(name) for name in SECRET_VARIABLES]
                # gunicorn prints an AppImportError in one line and stops the master ("App failed to load")
                raise AppImportError(redact(" ".join(str(exc).split()), secrets)) from None

    click.echo(f"labelhub backend on http://{host}:{port} ({workers} workers x {threads} threads, "
               f"MODEL_DIR={os.environ.get('MODEL_DIR', 'labelhub-models')})", err=True)
    _Server().run()
