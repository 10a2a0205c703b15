"""What ``labelhub backend`` checks before gunicorn starts a worker, and the import of ``LABELHUB_MODEL``.

:func:`check_settings` runs in the CLI process (:mod:`labelhub.backend.cli`), so a configuration error ends the
command once, in one line, rather than in every worker with a traceback. This module imports neither the app
nor ``prometheus_client``: the latter chooses its multiprocess mode when first imported, which must happen
after the CLI has set ``PROMETHEUS_MULTIPROC_DIR``.
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

__all__ = ["check_settings", "check_model_dir", "check_redis", "load_model_class"]

log = logging.getLogger(__name__)


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
