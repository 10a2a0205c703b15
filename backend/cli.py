"""``labelhub backend``: serve the ML backend with gunicorn; ``labelhub predict``: pre-annotate a whole project.

Only click is imported at import time; gunicorn and the app are imported when the command runs, so
``labelhub --help`` stays fast. Each gunicorn worker builds its own app with
``labelhub.backend.app:create_app()`` (gthread workers: ``--threads`` requests at once per worker).

``labelhub predict`` runs a prediction job (:mod:`labelhub.backend.jobs`) in this process, with the model state
of ``MODEL_DIR`` the backend's workers share (with ``LABELHUB_REDIS_URL``: from Redis, its batches on
``labelhub worker`` processes, :mod:`labelhub.backend.worker`). Errors: :func:`labelhub.cli_errors.one_line_errors`.

The settings are checked (:meth:`Settings.from_env`, :func:`labelhub.backend.startup.check_settings`) before gunicorn
starts, and so are ``--host`` and ``--port`` (:func:`check_address`) and ``PROMETHEUS_MULTIPROC_DIR``
(:func:`prepare_metrics_dir`): a configuration error ends the command once,
with exit code 1 and one line on stderr (secrets replaced by ``***``), instead of every worker failing with a
traceback (or gunicorn retrying a taken port for seconds).

gunicorn accepts request lines of up to 8190 bytes (``limit_request_line``; its default 4094 refused the signed file
URL of a deep path of non-ASCII names with ``414``): :data:`labelhub.file_urls.MAX_REQUEST_LINE` says why not
unlimited.

``labelhub predict`` takes SIGTERM as Ctrl-C: the job's status says ``failed``, ``interrupted (SIGTERM)``, and the
command ends with one line saying that running it again goes on where it stopped.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import click

from labelhub.cli_errors import one_line_errors
from labelhub.cli_options import LOG_LEVEL_HELP, Integer, log_level_option
from labelhub.redaction import one_line

log = logging.getLogger(__name__)

__all__ = ["backend", "predict", "worker", "check_configuration", "check_address"]

#: The environment variables whose values are secrets (never printed).
SECRET_VARIABLES = ("BASIC_AUTH_PASS", "LABELHUB_WEBHOOK_SECRET", "LABEL_STUDIO_API_KEY", "HF_TOKEN", "LABELHUB_SECRET",
                    "LABELHUB_REDIS_URL")


def check_address(host: str, port: int) -> None:
    """Check that ``labelhub backend`` can listen on ``host:port``, before gunicorn tries (it retries a taken port
    for seconds and prints a dozen lines).

    Args:
        host: ``--host``: an address of this machine or a name that resolves to one (``0.0.0.0``: all).
        port: ``--port``.

    Raises:
        click.BadParameter: ``host`` does not resolve, or is no address of this machine (exit code 2).
        click.ClickException: A server listens on ``host:port`` already, or the port is not this user's to take
            (:func:`labelhub.processes.bind_error`; exit code 1).
    """
    import errno
    import socket

    from labelhub.processes import bind_error

    error = bind_error(port, host)
    hint = "'--host' / LABELHUB_HOST"
    if error is None:
        return
    reason = getattr(error, "strerror", None) or error
    if isinstance(error, (socket.gaierror, UnicodeError)):
        raise click.BadParameter(f"{host!r} is neither an IP address nor a name this machine resolves ({reason}): "
                                 "give an address of this machine, 127.0.0.1 or 0.0.0.0 (all)", param_hint=hint)
    if error.errno == errno.EADDRNOTAVAIL:
        raise click.BadParameter(f"{host!r} is not an address of this machine ({reason}): give one of its addresses, "
                                 "127.0.0.1 or 0.0.0.0 (all)", param_hint=hint)
    if error.errno == errno.EADDRINUSE:
        raise click.ClickException(f"port {port} (--port / LABELHUB_PORT) is in use on {host}: stop what listens "
                                   "there, or choose another port")
    raise click.ClickException(f"cannot listen on {host}:{port} (--host / LABELHUB_HOST, --port / LABELHUB_PORT): "
                               f"{reason}")


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
        raise click.ClickException(redact(one_line(exc), secrets)) from None


def prepare_metrics_dir(path: str) -> None:
    """Make ``PROMETHEUS_MULTIPROC_DIR`` ready for the workers' metrics: created when missing, the ``.db`` files of a
    previous run removed (prometheus-client's advice), and checked writable (each worker writes its own files there).

    Raises:
        click.ClickException: It cannot be: one line naming the variable, the path and the system's reason
            (``PROMETHEUS_MULTIPROC_DIR='/data/x': cannot use it for the metrics (Not a directory): ...``), exit
            status 1, as for every other setting (:func:`check_configuration`); before, a traceback.
    """
    import tempfile

    try:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
        fd, probe = tempfile.mkstemp(dir=path, prefix=".labelhub-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise click.ClickException(
            f"PROMETHEUS_MULTIPROC_DIR={one_line(path, 200)!r}: cannot use it for the metrics "
            f"({exc.strerror or type(exc).__name__}): name a folder the backend can create and write, or unset it "
            "for a temporary one") from None


@click.command("backend", context_settings={"show_default": True})
@click.option("--host", default="127.0.0.1", envvar="LABELHUB_HOST",
              help="Address to listen on; 0.0.0.0 to be reachable from other machines or containers.")
@click.option("--port", default=9090, type=Integer(1, 65535), envvar="LABELHUB_PORT",
              help="Port to listen on; connect Label Studio to http://HOST:PORT.")
@click.option("--workers", default=2, type=Integer(1, 64), envvar="LABELHUB_WORKERS",
              help="gunicorn worker processes (each loads the embedders once, ~0.3-0.4 GB, and the models its "
                   "projects use: ~1 GB with OCR, spans, boxes and a Hub pipeline).")
@click.option("--threads", default=8, type=Integer(1, 256), envvar="LABELHUB_THREADS",
              help="Threads per worker.")
@click.option("--model-dir", default=None, envvar="MODEL_DIR", show_default="./labelhub-models",
              help="Where per-project model state and the event queue live (shared by the workers).")
@click.option("--timeout", default=120, type=Integer(10), envvar="LABELHUB_WORKER_TIMEOUT",
              help="Seconds before gunicorn restarts a silent worker (keep above ML_TIMEOUT_PREDICT's needs).")
@log_level_option()
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
    import tempfile

    from gunicorn.app.base import BaseApplication
    from gunicorn.errors import AppImportError

    from labelhub.backend.startup import preimport
    from labelhub.file_urls import MAX_REQUEST_LINE
    from labelhub.redaction import setup_logging

    check_address(host, port)  # before anything starts: one line, not gunicorn retrying for seconds
    if model_dir:
        os.environ["MODEL_DIR"] = model_dir
    os.environ["LABELHUB_LOG_LEVEL"] = log_level.upper()
    check_configuration()  # before gunicorn: one line and exit code 1, not a crash loop of workers
    prom_dir, made_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR"), False
    if not prom_dir:
        prom_dir, made_dir = tempfile.mkdtemp(prefix="labelhub-prometheus-"), True
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    else:
        prepare_metrics_dir(prom_dir)
    # before gunicorn forks: every worker inherits the handler and its filter of the secrets
    setup_logging(log_level.upper(), [os.environ.get(name) for name in SECRET_VARIABLES],
                  fmt="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    preimport()  # once, before gunicorn forks: a fresh worker answers Connect Model's /setup within its 3 s

    def child_exit(server, worker):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    def worker_exit(server, worker):  # a worker stopping gracefully (SIGTERM, a reload): its trainer lets go now
        backend = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("labelhub")
        if backend is not None:  # with Redis, another host's trainer takes over at once, not after the lease
            backend.trainer.stop()

    def on_exit(server):  # the master, as it ends: the metrics folder it made goes with it
        if made_dir:
            shutil.rmtree(prom_dir, ignore_errors=True)

    options = {
        "bind": f"{host}:{port}", "workers": workers, "threads": threads, "worker_class": "gthread",
        "timeout": timeout, "graceful_timeout": 30, "keepalive": 5, "loglevel": log_level.lower(),
        "accesslog": None, "child_exit": child_exit, "worker_exit": worker_exit, "on_exit": on_exit,
        # a signed file URL of a deep path of non-ASCII names passes gunicorn's default 4094 (414): 8190, its most
        # without lifting the bound (labelhub.file_urls.MAX_REQUEST_LINE says why, and the sync warns above it)
        "limit_request_line": MAX_REQUEST_LINE,
        # gunicorn 24+ opens a control socket at one path for every instance (~/.gunicorn/gunicorn.ctl): another
        # backend on the machine removed ours; nothing here uses it
        "control_socket_disable": True,
    }

    class _Server(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                if key in self.cfg.settings:  # control_socket_disable: not in gunicorn 23
                    self.cfg.set(key, value)

        def load(self):
            from labelhub.backend.app import create_app
            from labelhub.redaction import redact

            try:
                return create_app()
            except (ValueError, OSError, ImportError) as exc:  # checked above; a change since ends here
                secrets = [os.environ.get(name) for name in SECRET_VARIABLES]
                # gunicorn prints an AppImportError in one line and stops the master ("App failed to load")
                raise AppImportError(redact(one_line(exc), secrets)) from None

    click.echo(f"labelhub backend on http://{host}:{port} ({workers} worker{'s' if workers != 1 else ''} x "
               f"{threads} thread{'s' if threads != 1 else ''}, "
               f"MODEL_DIR={os.path.abspath(os.environ.get('MODEL_DIR') or 'labelhub-models')})", err=True)
    _Server().run()


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """While the block runs, the first SIGTERM raises ``KeyboardInterrupt("SIGTERM")`` in the main thread, as Ctrl-C
    does, so that a job ends as it does on Ctrl-C (its status saved); a second SIGTERM kills at once."""
    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, previous)
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(exc: KeyboardInterrupt, status) -> str:
    """The one line ``labelhub predict`` ends with on Ctrl-C or SIGTERM (``status``: the job's, if it got one). An
    ``--all`` job stopped after its delete says what it left: how many tasks have no prediction of the version now,
    and whether the project's prediction set is unselected (:func:`labelhub.backend.job_status.left_unwritten`); one
    stopped during the delete, that Label Studio may finish it (what :func:`labelhub.backend.jobs.run_job` adds to the
    status's ``error`` after ``"; "``)."""
    from labelhub.backend.job_status import left_unwritten
    from labelhub.backend.jobs import interrupt_reason

    done, left = "", None
    if status is not None and status.pid == os.getpid():
        done = f" after {status.done} of {status.total} tasks"
        left = left_unwritten(status)
        if status.mode == "all" and not status.cleared:  # stopped during the delete (nothing planned yet): what
            left = (status.error or "").partition("; ")[2] or None  # run_job's error adds
            done = "" if left else done
    if left:
        return f"interrupted by {interrupt_reason(exc)}{done}: {left}"
    return (f"interrupted by {interrupt_reason(exc)}{done}: run the same command again to go on where it stopped "
            "(tasks that have a prediction of the version are skipped)")


def _task_ids(value: str | None) -> list[int] | None:
    """``--task-ids 1,2,3`` as ints (``None`` when not given).

    Raises:
        click.BadParameter: When a part is not a positive integer.
    """
    if value is None:
        return None
    try:
        ids = [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of task ids", param_hint="--task-ids") \
            from None
    if not ids or min(ids) < 1:
        raise click.BadParameter("give task ids above 0, e.g. 1,2,3", param_hint="--task-ids")
    return ids


#: The Data Manager filter operators Label Studio 1.23 knows: ``_Operator`` in ``label_studio/data_manager/managers.py``
#: (what ``apply_filters`` applies) and ``Operator`` in ``label_studio/data_manager/prepare_params.py`` (what its API
#: documents). It lists every task for an operator it does not know (``"equals"``), as if there were no filter.
FILTER_OPERATORS = ("equal", "not_equal", "less", "greater", "less_or_equal", "greater_or_equal", "in", "not_in",
                    "in_list", "not_in_list", "empty", "contains", "not_contains", "regex", "exists", "not_exists",
                    "starts_with", "ends_with")


def _filters(value: str | None) -> dict | None:
    """``--filter JSON`` checked (:func:`labelhub.backend.labelstudio_api.data_manager_filters`, and each item's
    operator one of :data:`FILTER_OPERATORS`, its ``child_filter``'s too; ``None`` when not given).

    Raises:
        click.BadParameter: Saying where and why the JSON is not Data Manager filters.
    """
    if value is None:
        return None
    from labelhub.backend.labelstudio_api import data_manager_filters

    try:
        filters = data_manager_filters(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--filter").lstrip(" ,:"), param_hint="--filter") from None
    for n, item in enumerate(filters["items"], 1):
        child = item.get("child_filter")
        for operator in (item["operator"], *([child.get("operator")] if isinstance(child, dict) else [])):
            if operator not in FILTER_OPERATORS:
                known = ", ".join(FILTER_OPERATORS)
                raise click.BadParameter(f"item {n}: {one_line(json.dumps(operator), 40)} is not an operator Label "
                                         f"Studio knows (it would keep every task); one of {known}",
                                         param_hint="--filter")
    return filters


def _readable(view: dict) -> dict:
    """A status as ``--status`` prints it: its Unix times in ISO 8601, UTC, as ``/health`` shows them
    (:func:`labelhub.backend.job_status.iso_times`), and its ``selection`` as the JSON object it is (every task id;
    ``/health`` gives their count), not that object's JSON text."""
    from labelhub.backend.job_status import iso_times

    view = iso_times(view)
    try:
        selection = json.loads(view.get("selection") or "null")
    except (TypeError, ValueError):
        return view
    return {**view, "selection": selection} if isinstance(selection, dict) else view


def _summary(project_id: int, status, seconds: float) -> str:
    """The summary line of a finished job: the predictions written of the job's (newest) version, and those of older
    versions a retrain during the job left (:func:`labelhub.backend.job_status.written_summary`, which the automatic
    jobs' log line shares)."""
    from labelhub.backend.job_status import written_summary

    empty = f", {status.empty} empty" if status.empty else ""
    return (f"project {project_id}: {written_summary(status)}, {status.skipped} skipped, "
            f"{status.failed} failed{empty} ({status.total} tasks planned, {seconds:.1f} s, "
            f"{status.total / seconds if seconds else 0:.1f} tasks/s)")


def _with_failures(view: dict, secrets) -> dict:
    """A status as ``--status`` prints it, with an ``error`` that sums up the failed tasks of a job whose state is
    ``done`` (:func:`labelhub.backend.job_status.failure_summary`, which :func:`labelhub.backend.jobs.run_job` also
    saves, so ``/health`` says the same), redacted. The ``state`` is left as the job wrote it (``done``: the job ran
    to its end)."""
    from labelhub.backend.job_status import failure_summary
    from labelhub.redaction import redact

    if view.get("state") != "done" or view.get("error") or not view.get("failed"):
        return {**view, "error": redact(view["error"], secrets)} if view.get("error") else view
    summary = failure_summary(view.get("failed") or 0, view.get("total") or 0, view.get("failures") or {},
                              view.get("origin") or "", view.get("project_id"), view.get("mode") or "missing")
    return {**view, "error": redact(summary, secrets)}


def _why_empty(host, status) -> str:
    """Why the model answered no region: nothing learned yet (no head's fit in its state), or nothing found. Not
    learned yet may also be a project annotated before the backend was connected: Label Studio sends the backend
    no event of those annotations, and only a training run asked for (Settings → Model → Start training, which
    calls the backend's ``/train``) reads them (found by a walkthrough)."""
    try:
        heads = host.store.project(status.project).kv().get("heads") or {}
    except Exception:  # noqa: BLE001 (a hint only)
        heads = None
    if heads is not None and not any(isinstance(h, dict) and h.get("file") for h in heads.values()):
        return ("the model has not learned yet: no head is fitted; annotate some tasks first (a Choices fit needs two "
                "different choices) and let the backend retrain, or, if the project has annotations, Settings → "
                "Model → Start training (annotations made before the backend was connected never reached it)")
    return "it found nothing to label in them"


@click.command("predict", context_settings={"show_default": True})
@click.option("--project", "project_id", required=True, type=Integer(1), envvar="LABELHUB_PROJECT",
              help="The Label Studio project id.")
@click.option("--missing", "mode", flag_value="missing", default=True, show_default=False,
              help="Predict the tasks that have no prediction of the model's current version (default).")
@click.option("--all", "mode", flag_value="all",
              help="Predict every task again; a prediction of the current version is replaced, older versions stay.")
@click.option("--task-ids", default=None, help="Only these tasks: comma-separated ids, e.g. 1,2,3.")
@click.option("--unlabeled", is_flag=True, help="Only the tasks Label Studio does not count as labeled.")
@click.option("--filter", "filter_json", default=None, metavar="JSON",
              help="Only the tasks these Data Manager filters keep, as a tab saves them: "
                   '{"conjunction": "and", "items": [{"filter": "filter:tasks:data.split", "operator": "equal", '
                   '"type": "String", "value": "test"}]} (a list of items, or one item, joins them by and).')
@click.option("--view", "view_id", default=None, type=Integer(1),
              help="Only the tasks of this Data Manager tab (its filters when the job plans; the tab's id is the "
                   "tab= of the Data Manager's URL).")
@click.option("--batch-size", default=500, type=Integer(1, 500),
              help="Tasks per batch: one write to Label Studio, which lands whole or not at all (Label Studio "
                   "recounts the project's tasks on each write, so large batches are faster).")
@click.option("--select-version/--no-select-version", default=None, show_default=False,
              help="Afterwards make the version the project's prediction set (Settings > Annotation > "
                   "Prelabeling), whose scores the Data Manager's 'Prediction score' column shows [default: "
                   "when the project has none selected or one this model wrote].")
@click.option("--keep-versions", default=0, type=Integer(0), envvar="LABELHUB_KEEP_VERSIONS",
              help="Afterwards, unless --task-ids, --filter or --view is given, delete the predictions of this "
                   "model's older versions but the newest N (never the selected one); 0 keeps them all. Label "
                   "Studio takes about 3.5 ms a deleted prediction and, on SQLite, holds annotation saves "
                   "meanwhile: run it at a quiet hour.")
@click.option("--status", "show_status", is_flag=True,
              help="Print the project's last job status (JSON) and exit; needs only --model-dir (with "
                   "LABELHUB_REDIS_URL: the status any host's job published there).")
@click.option("--label-studio-url", envvar="LABEL_STUDIO_URL", default="http://localhost:8080",
              help="Label Studio's URL.")
@click.option("--api-key", "--label-studio-api-key", "api_key", envvar="LABEL_STUDIO_API_KEY", default=None,
              show_default=False,
              help="A Label Studio personal access token or legacy token.")
@click.option("--model-dir", default=None, envvar="MODEL_DIR", show_default="./labelhub-models",
              help="The backend's MODEL_DIR (the project's model is loaded from it).")
@click.option("--redis-url", envvar="LABELHUB_REDIS_URL", default=None, show_default=False,
              help="The backends' Redis: the model is loaded from it and the batches run "
                   "on `labelhub worker` processes.")
@log_level_option(help=LOG_LEVEL_HELP + " On a terminal its lines print above the progress bar; without one, INFO "
                                        "adds a progress line every 10 s.")
def predict(project_id, mode, task_ids, unlabeled, filter_json, view_id, batch_size, select_version, keep_versions,
            show_status, label_studio_url, api_key, model_dir, redis_url, log_level):
    """Pre-annotate a whole project: predict its tasks in batches and write them to Label Studio.

    The project's model is loaded from MODEL_DIR in this process (the state `labelhub backend` trains;
    give it the backend's settings: for a local or private repo's tasks, LABELHUB_FILE_REPOS and
    LABELHUB_SECRET too), the tasks are listed through Label Studio's API, and each batch of predictions
    is written in one call with the model's current model_version, the most uncertain tasks first. No
    /predict request, so no 100 s limit. Interrupted or killed, run it again: it goes on with the tasks that
    still have no prediction of the version, and a task never gets two predictions of one version from it.

    With the version selected as the project's prediction set (--select-version does it), sorting the
    Data Manager by "Prediction score" ascending shows the tasks the model is least sure of first; after
    a retrain, `--unlabeled` re-predicts the unlabeled tasks, least sure first; `--filter` or `--view` predicts
    the tasks a Data Manager filter or tab keeps (a split, a batch of imports). Progress goes to stderr, a bar on a
    terminal (TQDM_DISABLE=1 hides it), else a log line every 10 s; the summary to stdout; the status is also on the
    backend's /health. Ctrl-C or SIGTERM stops it (run it again to go on). Exit status 1 when a task could not be
    predicted or written (run again to retry those).

    \b
    Example:
      MODEL_DIR=./labelhub-models LABEL_STUDIO_URL=http://localhost:8080 LABEL_STUDIO_API_KEY=... \\
        labelhub predict --project 3
      labelhub predict --project 3 --view 12 --all
      labelhub predict --project 3 --status
    """
    import time

    from labelhub.backend.job_status import latest_status
    from labelhub.backend.settings import Settings
    from labelhub.redaction import redact, setup_logging

    secrets = [api_key, redis_url] + [os.environ.get(name) for name in SECRET_VARIABLES]
    try:
        settings = Settings.from_env(model_dir=model_dir, label_studio_url=label_studio_url,
                                     label_studio_api_key=api_key, start_trainer=False, warmup=False,
                                     log_level=log_level.upper(), redis_url=redis_url)
    except ValueError as exc:
        raise click.ClickException(redact(one_line(exc), secrets)) from None
    if settings.redis_url:  # one line, as `labelhub backend` and `labelhub worker` say it, not redis-py's traceback
        from labelhub.backend.startup import check_redis
        from labelhub.errors import ConfigurationError

        try:
            check_redis(settings.redis_url)
        except ConfigurationError as exc:
            raise click.ClickException(redact(one_line(exc), secrets)) from None
    if show_status:
        if settings.redis_url:  # what every host's jobs published (every replica's /health shows them)
            from labelhub.backend.job_status import latest_of
            from labelhub.backend.redis_state import connect, job_statuses

            status, where = latest_of(job_statuses(connect(settings.redis_url)), project_id), "LABELHUB_REDIS_URL"
        else:
            status, where = latest_status(settings.model_dir, project_id), f"MODEL_DIR={str(settings.model_dir)!r}"
        if status is None and not settings.redis_url and not os.path.isdir(settings.model_dir):
            # a relative MODEL_DIR read from another folder than the backend's: say where it looked
            raise click.ClickException(
                f"no prediction job of project {project_id}: MODEL_DIR={str(settings.model_dir)!r} does not exist "
                f"here ({os.path.abspath(settings.model_dir)}): give the backend's MODEL_DIR (--model-dir or "
                "MODEL_DIR; a relative one is read from the current folder; the demo's is .labelhub-demo/models)")
        if status is None:
            raise click.ClickException(f"no prediction job of project {project_id} in {where}")
        click.echo(json.dumps(_readable(_with_failures(status.view(), secrets)), indent=2))
        return
    if not api_key:
        raise click.UsageError("Label Studio's API key is required: --api-key or LABEL_STUDIO_API_KEY")
    ids = _task_ids(task_ids)
    filters = _filters(filter_json)
    if sum(x is not None for x in (ids, filters, view_id)) > 1:
        raise click.UsageError("give only one of --task-ids, --filter and --view")
    setup_logging(log_level.upper(), secrets)
    started = time.monotonic()
    with one_line_errors(secrets), _sigterm_as_ctrl_c():
        from labelhub.backend.app import Backend
        from labelhub.backend.jobs import run_job
        from labelhub.backend.labelstudio_api import LabelStudioClient
        from labelhub.backend.startup import check_model_dir

        if not settings.redis_url and not os.path.isdir(settings.model_dir):  # no model there: say so, make nothing
            raise click.ClickException(f"--model-dir / MODEL_DIR {str(settings.model_dir)!r} does not exist: point it "
                                       "at the backend's MODEL_DIR (the demo's is .labelhub-demo/models)")
        api = LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key)
        if not settings.redis_url and not os.path.isdir(os.path.join(settings.model_dir, "projects")):
            # another folder (a typo's parent, a home directory): Backend() would make its folders in it. Label
            # Studio's own errors (a refused key, no such project) come first: they are the ones to fix first
            api.project(project_id)
            raise click.ClickException(f"--model-dir / MODEL_DIR {str(settings.model_dir)!r} is no backend's MODEL_DIR "
                                       "(it has no projects/ folder): point it at the backend's MODEL_DIR (the demo's "
                                       "is .labelhub-demo/models)")
        check_model_dir(settings.model_dir)  # one line naming --model-dir / MODEL_DIR, not Backend's OSError
        try:
            host = Backend(settings)
        except (ValueError, ImportError) as exc:  # LABELHUB_MODEL and friends, as check_configuration says
            raise click.ClickException(redact(" ".join(f"{type(exc).__name__}: {exc}".split()), secrets)) from None
        if view_id is not None:
            try:
                filters = api.view_filters(project_id, view_id)
            except ValueError as exc:
                raise click.ClickException(one_line(exc)) from None
            if filters is None:
                log.warning("Data Manager tab %s has no filter: every task of project %s", view_id, project_id)
        execute = None
        if settings.redis_url:  # the batches run on `labelhub worker` processes
            from labelhub.backend.worker import on_workers

            execute = on_workers(host.store.client)
        try:
            status = run_job(host, api, project_id, mode=mode, task_ids=ids, unlabeled=unlabeled,
                             batch_size=batch_size, select_version=select_version, execute=execute,
                             keep_versions=keep_versions, filters=filters, origin="labelhub predict")
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM
            raise click.ClickException(_interrupted(exc, latest_status(settings.model_dir, project_id))) from None
    seconds = time.monotonic() - started
    click.echo(_summary(project_id, status, seconds))
    if status.empty:
        click.echo(f"project {project_id}: {status.empty} task(s) not written: the model answered no region for them "
                   f"({_why_empty(host, status)}); a run after the next fit predicts them")
    if status.retired:
        click.echo(f"project {project_id}: {len(status.retired)} older version(s) retired, "
                   f"{sum(status.retired.values())} predictions deleted: {', '.join(status.retired)}")
    if keep_versions and (ids is not None or filters is not None):
        click.echo(f"project {project_id}: --keep-versions retired nothing: the job covered part of the project "
                   "(older versions still hold the other tasks' predictions)")
    every_task_failed = status.total and status.failed + status.empty == status.total
    if status.missing_elsewhere and status.prediction_set != status.model_version:
        kept = repr(status.prediction_set) if status.prediction_set else "no version"
        click.echo(f"project {project_id}: the prediction set stays {kept}: {status.missing_elsewhere} unlabeled "
                   f"task(s) have no prediction of {status.model_version}, and the Data Manager's sort by 'Prediction "
                   f"score' would show them blank; run `labelhub predict --project {project_id}` to predict them (it "
                   "then selects the version), or run again with --select-version")
    elif status.model_version and status.done and status.prediction_set != status.model_version \
            and not every_task_failed:  # nothing written (an empty project, no fit yet): no version to select
        selected = repr(status.prediction_set) if status.prediction_set else "no version"
        click.echo(f"project {project_id}: the Data Manager's 'Prediction score' shows {selected}; to sort by this "
                   f"job's scores select {status.model_version} in Settings > Annotation > Prelabeling, or run again "
                   "with --select-version")
    if status.failed:
        tid, reason = next(iter(status.failures.items()), ("?", "?"))
        raise click.ClickException(redact(f"{status.failed} task(s) not written (task {tid}: {reason}); run again "
                                          "to retry them", secrets))


@click.command("worker", context_settings={"show_default": True})
@click.option("--redis-url", envvar="LABELHUB_REDIS_URL", required=True, show_default=False,
              help="The backends' Redis.")
@click.option("--queue", "queues", multiple=True, default=["labelhub"], help="RQ queues to take batches from.")
@click.option("--burst", is_flag=True, help="Stop once the queues are empty.")
@log_level_option()
def worker(redis_url, queues, burst, log_level):
    """Run prediction batches from Redis (RQ) on this host, for `labelhub predict` and the backends' own jobs.

    Start one or more on any host that reaches Redis and Label Studio, with the backend's environment
    (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY, MODEL_DIR as this host's cache, LABELHUB_MODEL...). Each loads the
    project's model from Redis, predicts a batch and writes it to Label Studio in one call. SIGTERM or
    Ctrl-C stops it after the batch in hand. At start it checks LABEL_STUDIO_API_KEY against Label Studio
    (a refused key is a warning; it starts anyway). It also runs RQ's scheduler (one across the workers),
    which queues again the automatic jobs that failed, when their backoff is over.

    \b
    Example:
      LABELHUB_REDIS_URL=redis://redis:6379/1 LABEL_STUDIO_URL=http://ls:8080 LABEL_STUDIO_API_KEY=... \\
        labelhub worker
    """
    from labelhub.backend.worker import work
    from labelhub.redaction import setup_logging

    secrets = [redis_url] + [os.environ.get(name) for name in SECRET_VARIABLES]
    setup_logging(log_level.upper(), secrets)
    os.environ["LABELHUB_REDIS_URL"] = redis_url  # the batches build their settings from the environment
    from labelhub.backend.startup import check_redis

    with one_line_errors(secrets):
        check_redis(redis_url)
        _check_worker_key()
        work(redis_url, list(queues), burst=burst, log_level=log_level.upper())


def _check_worker_key() -> None:
    """Log a warning when Label Studio (or label-studio-sdk) refuses this worker's ``LABEL_STUDIO_API_KEY``, or when
    it is not set (:func:`labelhub.backend.auto_predict.check_key`); the worker starts anyway: Label Studio may be
    down now, and the key is tried by each job."""
    import logging

    from labelhub.backend.auto_predict import check_key

    url, key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
    log = logging.getLogger("labelhub.backend.worker")
    if not (url and key):
        log.warning("LABEL_STUDIO_URL or LABEL_STUDIO_API_KEY is not set: every prediction job this worker takes "
                    "fails until they are")
        return
    problem = check_key(url, key, "worker")
    if problem:
        log.warning("%s", problem)
