"""What ``labelhub backend`` checks before gunicorn starts a worker, the import of ``LABELHUB_MODEL``, and the modules
gunicorn's master imports for its workers.

:func:`check_settings` runs in the CLI process (:mod:`labelhub.backend.cli`), so a configuration error ends the
command once, in one line, rather than in every worker with a traceback. This module imports neither the app
nor ``prometheus_client`` at import time: the latter chooses its multiprocess mode when first imported, which must
happen after the CLI has set ``PROMETHEUS_MULTIPROC_DIR`` (:func:`preimport` runs after that).
"""
from __future__ import annotations

import importlib
import logging
import os

from labelhub.backend.files import RepoFiles
from labelhub.backend.model import LabelStudioMLBase
from labelhub.backend.settings import Settings, check_http_url
from labelhub.errors import ConfigurationError
from labelhub.redaction import one_line

__all__ = ["check_settings", "check_model_dir", "check_redis", "load_model_class", "preimport", "PREIMPORTS"]

log = logging.getLogger(__name__)

#: The modules a fresh worker's first requests and its trainer import, imported once by :func:`preimport` in gunicorn's
#: master. Label Studio gives Connect Model's ``/setup`` 3 s, and a fresh worker imported them inside it: the label
#: config parser of label-studio-sdk (``label_studio_sdk.label_interface``, which pulls in boto3 and faker: 0.5 s on
#: an idle core), while its trainer and its project check imported the SDK's client (``label_studio_sdk.client``,
#: 684 modules) and scikit-learn beside it (on
#: Redis with ``LABELHUB_AUTO_PREDICT``: 0.94 to 1.11 s for the first ``/setup`` on 2 idle cores, about three times
#: that under load; one test run in five missed the 3 s). None of them starts a thread when imported; the
#: embedders' runtimes (ONNX Runtime, tokenizers) are left to the worker's background warm-up, and torch is never
#: imported here.
PREIMPORTS = (
    "labelhub.backend.app",
    "labelhub.backend.routes",
    "label_studio_sdk.label_interface",
    "label_studio_sdk.client",
    "label_studio_sdk.core.api_error",
    "labelhub.labelstudio_client",
    "labelhub.backend.project_check",
    "labelhub.backend.labelstudio_api",
    "labelhub.backend.models.choices",
    "labelhub.backend.jobs",
    "sklearn.linear_model",
)


def load_model_class(path: str) -> type[LabelStudioMLBase]:
    """Import ``"module:Class"`` (the ``LABELHUB_MODEL`` setting).

    Args:
        path: ``"package.module:ClassName"``.

    Returns:
        The class.

    Raises:
        ValueError: When ``path`` is malformed or the class is not a :class:`LabelStudioMLBase`.
        ImportError: When the module cannot be imported.
    """
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"LABELHUB_MODEL must be 'module:Class', not {path!r}")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, LabelStudioMLBase)):
        raise ValueError(f"LABELHUB_MODEL={path!r} is not a subclass of labelhub.backend.model.LabelStudioMLBase")
    return cls


def preimport(modules: tuple[str, ...] = PREIMPORTS) -> None:
    """Import ``modules`` in this process: ``labelhub backend`` calls it in gunicorn's master, after the metrics'
    ``PROMETHEUS_MULTIPROC_DIR`` is set and before the workers are forked, so each worker (and each worker gunicorn
    starts again later) begins with them imported and shares their memory until it writes to it.

    Decision: only modules that start no thread when imported (a forked child has none of its parent's threads;
    OpenBLAS, which numpy and SciPy load, takes care of fork itself) and only the backend's own imports; a
    ``LABELHUB_MODEL`` of your own is imported here already (:func:`check_settings`). ``gunicorn
    'labelhub.backend.app:create_app()'`` run by hand skips this: each worker imports them at its first requests.

    Args:
        modules: Dotted module names (:data:`PREIMPORTS`).

    Raises:
        ImportError: When one cannot be imported (an installation that lacks a dependency of the backend).
    """
    for name in modules:
        importlib.import_module(name)


def check_redis(url: str) -> None:
    """Ping the Redis of ``LABELHUB_REDIS_URL``.

    Args:
        url: ``redis://[:password@]host:port/db`` (``rediss://``, ``unix://``).

    Raises:
        ConfigurationError: When redis-py cannot read the URL (:func:`labelhub.backend.redis_state.connect`) or Redis
            does not answer. The message names the URL's host and port (or socket path), never its password:
            ``LABELHUB_REDIS_URL: Redis at 127.0.0.1:6379 does not answer (ConnectionError: Connection refused)``; a
            Redis that answers but refuses the URL's password, or its lack of one, is said to refuse to authenticate,
            with Redis's reason (``AuthenticationError: ...``).
    """
    import redis

    from labelhub.backend.redis_state import connect

    client = connect(url, timeout=5)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        kwargs = client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        if isinstance(exc, (redis.exceptions.AuthenticationError,
                            redis.exceptions.AuthenticationWrongNumberOfArgsError)):
            # Redis's own text says which (no password set, wrong password, one needed); it never holds the password
            raise ConfigurationError(f"LABELHUB_REDIS_URL: Redis at {where} answers but refused to authenticate "
                                     f"({type(exc).__name__}: {one_line(exc, 200)}): put the user:password@ Redis "
                                     "expects in the URL (requirepass / ACL), or none if it needs none") from None
        cause = exc.__cause__ or exc.__context__  # redis-py raises its error while handling the socket's OSError
        reason = f": {cause.strerror}" if isinstance(cause, OSError) and cause.strerror else ""
        raise ConfigurationError(f"LABELHUB_REDIS_URL: Redis at {where} does not answer ({type(exc).__name__}{reason})"
                                 ": start it, or correct the URL's host and port") from None


def check_model_dir(model_dir: str | os.PathLike) -> None:
    """Create ``MODEL_DIR`` when it is missing and check that it can be written.

    Args:
        model_dir: The ``--model-dir`` / ``MODEL_DIR`` setting.

    Raises:
        ConfigurationError: It cannot be created or written; the message names the option and the variable:
            ``--model-dir / MODEL_DIR '/proc/md': cannot create it (No such file or directory)``.
    """
    try:
        os.makedirs(model_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"--model-dir / MODEL_DIR {str(model_dir)!r}: cannot create it "
                                 f"({exc.strerror or exc})") from None
    if not os.access(model_dir, os.W_OK | os.X_OK):
        raise ConfigurationError(f"--model-dir / MODEL_DIR {str(model_dir)!r}: cannot write to it (it is not "
                                 "writable for this user)")


def check_settings(settings: Settings) -> None:
    """Check, before any worker starts, the settings that would make every worker fail to start.

    ``labelhub backend`` calls it in the CLI process so a configuration error ends the command once, in one
    line, rather than in each gunicorn worker with a traceback.

    Last, when the chosen embedders run on ONNX Runtime and their ONNX files are not cached yet, starts
    their one-time export in the background (:func:`labelhub.backend.embedders.start_onnx_exports`, about
    15 s on 2 cores), so it runs while gunicorn starts its workers instead of in the first request.

    Args:
        settings: The parsed settings (:meth:`Settings.from_env` has checked each value on its own).

    Returns:
        None when the workers can start (``MODEL_DIR`` exists then).

    Raises:
        ValueError: ``LABELHUB_FILE_REPOS`` names a path that is not a git repository or is malformed,
            ``LABELHUB_SECRET`` is too short (:class:`labelhub.backend.files.RepoFiles`), ``LABELHUB_MODEL`` is
            malformed, cannot be imported or is not a model class, ``HF_ENDPOINT`` (read by huggingface_hub, whose
            ``hf://`` fetches go there) is set and is no http(s) URL (:func:`labelhub.backend.settings.check_http_url`),
            or ``MODEL_DIR`` cannot be created or
            written, or ``LABELHUB_REDIS_URL`` is set and Redis does not answer (a
            :class:`labelhub.errors.ConfigurationError` for the last three). Every message names the variable
            and fits on one line, without the Redis URL's password (:func:`check_redis`).
    """
    check_http_url("HF_ENDPOINT", os.environ.get("HF_ENDPOINT", "").strip())
    RepoFiles(settings)
    try:
        load_model_class(settings.model_class)
    except ValueError:
        raise
    except Exception as exc:  # ImportError, or whatever the model's module raises when imported
        raise ConfigurationError(f"LABELHUB_MODEL={settings.model_class!r} cannot be imported "
                                 f"({type(exc).__name__}: {exc})") from None
    check_model_dir(settings.model_dir)
    if settings.redis_url:
        check_redis(settings.redis_url)
    if settings.auto_predict and not (settings.label_studio_url and settings.label_studio_api_key):
        log.warning("LABELHUB_AUTO_PREDICT is on but LABEL_STUDIO_URL or LABEL_STUDIO_API_KEY is not set: no automatic "
                    "prediction jobs (the jobs write through Label Studio's API)")
    from labelhub.backend.embedders import start_onnx_exports

    try:
        start_onnx_exports(settings.image_embedder, settings.text_embedder, settings.image_size)
    except OSError as exc:  # the first worker that needs the file exports it then
        log.warning("could not start the ONNX export in the background: %s", exc)
