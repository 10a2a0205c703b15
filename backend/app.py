"""The Flask application factory of the ML backend.

``create_app()`` builds the app and does nothing at import time, so gunicorn serves
``labelhub.backend.app:create_app()`` (one app per worker) and tests make a fresh app per test::

    from labelhub.backend.app import create_app
    app = create_app({"model_dir": tmp_path, "start_trainer": False})
    client = app.test_client()
    client.get("/health").json  # {"status": "UP", ...}

The routes are in :mod:`labelhub.backend.routes` (the Label Studio protocol, https://labelstud.io/guide/ml_create),
the model interface in :mod:`labelhub.backend.model`, the default model in :mod:`labelhub.backend.models.project` (one head per control tag).
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Mapping

from cachetools import LRUCache
from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge

from labelhub.backend.auto_predict import AutoPredictor
from labelhub.backend.errors import register_error_handlers
from labelhub.backend.events import EventQueue, Trainer
from labelhub.backend.media import MediaFetcher
from labelhub.backend.metrics import METRICS, Metrics
from labelhub.backend.model import LabelStudioMLBase
from labelhub.backend.embedding_cache import EmbeddingCache
from labelhub.backend.settings import Settings
from labelhub.backend.startup import check_settings, load_model_class
from labelhub.backend.state import Store
from labelhub.redaction import one_line, redact

log = logging.getLogger(__name__)

__all__ = ["create_app", "check_settings", "Backend", "ModelRegistry", "load_model_class"]


class ModelRegistry:
    """One model instance per project (and label config) in this worker, created on first use.

    The instances live in a ``cachetools.LRUCache`` (https://cachetools.readthedocs.io/), guarded by a
    lock since cachetools' caches are not thread-safe.

    Args:
        backend: The running backend.
        model_class: The model class.
        max_projects: Instances kept (least recently used dropped beyond it; at least one).
    """

    def __init__(self, backend: "Backend", model_class: type[LabelStudioMLBase], max_projects: int = 256):
        self.backend = backend
        self.model_class = model_class
        self.max_projects = max_projects
        self._models: LRUCache[tuple[str, str], LabelStudioMLBase] = LRUCache(maxsize=max(max_projects, 1))
        self._lock = threading.Lock()

    def get(self, key: str, label_config: str | None = None, **kwargs: Any) -> LabelStudioMLBase:
        """The model of project ``key`` for ``label_config`` (stored for the project when new).

        Args:
            key: The project key.
            label_config: The label config XML; ``None`` uses the one stored by an earlier call.
            **kwargs: Passed to the model class. ``extra_params`` (from ``/setup``) is stored with the
                project when given and the model accepts it (with the label config); the stored one is passed
                otherwise, so every worker and the trainer build the project's model with the same parameters.
                Only a call given ``extra_params`` stores them: a model built from the stored ones never writes
                them back, so a build that read them before a concurrent ``/setup`` stored new ones (a cache miss
                of ``/predict``, a job's batch, the trainer) leaves the new ones in place.

        Returns:
            The model instance (its ``setup()`` has run).

        Raises:
            labelhub.backend.errors.InvalidPayloadError: When ``key`` is invalid or no label config is known.
            labelhub.errors.LabelConfigError: When the model refuses the label config.
        """
        from labelhub.backend.errors import InvalidPayloadError

        state = self.backend.store.project(key)
        if label_config is None:
            label_config = state.project().get("label_config")
            if not label_config:
                raise InvalidPayloadError(
                    f"no label config is known for project {key}: send 'label_config' or call /setup first",
                    field="label_config")
        given = kwargs.get("extra_params") is not None  # from /setup: stored below; else read, never written back
        if not given:
            kwargs["extra_params"] = state.project().get("extra_params")
        cache_key = (key, label_config, json.dumps(kwargs["extra_params"], sort_keys=True))
        with self._lock:
            model = self._models.get(cache_key)  # a hit counts as a use
        if model is None:  # raises when the model refuses them: a label config or params refused are not stored
            model = self.model_class(project_id=key, label_config=label_config, state=state, backend=self.backend,
                                     **kwargs)
            with self._lock:  # another thread may have made one meanwhile: keep the first
                model = self._models.setdefault(cache_key, model)
        # every worker and the trainer build the project's model from these
        state.update_project(label_config=label_config, **({"extra_params": kwargs["extra_params"]} if given else {}))
        return model


class Backend:
    """Everything a worker shares between requests: settings, store, queue, fetcher, models, trainer.

    Args:
        settings: The configuration.

    Attributes:
        settings, store (:class:`~labelhub.backend.state.Store`), queue (:class:`~labelhub.backend.events.EventQueue`;
        with ``LABELHUB_REDIS_URL``, :class:`~labelhub.backend.redis_state.RedisStore` and
        :class:`~labelhub.backend.redis_state.RedisEventQueue`),
        fetcher (:class:`~labelhub.backend.media.MediaFetcher`), embeddings (per-worker embedding cache),
        models (:class:`ModelRegistry`), trainer (:class:`~labelhub.backend.events.Trainer`), metrics,
        auto (:class:`~labelhub.backend.auto_predict.AutoPredictor`: the jobs started by themselves).
    """

    def __init__(self, settings: Settings, metrics: Metrics = METRICS):
        self.settings = settings
        self.metrics = metrics
        if settings.redis_url:  # several hosts: state, queue and trainer lease in Redis
            from labelhub.backend.redis_state import RedisEventQueue, RedisStore, connect

            client = connect(settings.redis_url)
            self.store: Store = RedisStore(client, settings.model_dir, settings.trainer_lease)
            self.queue: EventQueue | RedisEventQueue = RedisEventQueue(client, settings.trainer_lease)
        else:
            self.store = Store(settings.model_dir)
            self.queue = EventQueue(settings.model_dir / "events")
        self.fetcher = MediaFetcher(settings)
        self.embeddings = EmbeddingCache(settings.embedding_cache_size, Path(settings.model_dir) / "embeddings",
                                         settings.embedding_store_bytes)
        self.models = ModelRegistry(self, load_model_class(settings.model_class))
        self.trainer = Trainer(self)
        self.auto = AutoPredictor(self)
        self._warmed: set[str] = set()
        self._warm_lock = threading.Lock()

    def warmup(self, model: LabelStudioMLBase) -> None:
        """Run ``model.warmup()`` once per model class and object type in a background thread.

        A warmup that raises is logged as one ERROR line naming the project and the cause (secrets masked), the
        traceback at DEBUG; nothing else happens (the models are loaded again when a prediction asks for them).
        """
        warm = getattr(model, "warmup", None)
        if warm is None or not self.settings.warmup:
            return
        key = f"{type(model).__name__}:{getattr(model, 'warmup_key', '')}"
        with self._warm_lock:
            if key in self._warmed:
                return
            self._warmed.add(key)

        def run():
            try:
                warm()
            except Exception as exc:  # noqa: BLE001 (a background thread: the log is where it is seen)
                cause = redact(f"{type(exc).__name__}: {one_line(exc, 300)}", self.settings.secrets)
                log.error("project %s: warmup of %s failed: %s (the models are loaded again when asked; traceback "
                          "at DEBUG)", getattr(model, "project_id", None), type(model).__name__, cause)
                log.debug("warmup of %s failed", key, exc_info=exc)

        threading.Thread(target=run, name="labelhub-warmup", daemon=True).start()


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """Build the ML backend app.

    Args:
        config: A :class:`~labelhub.backend.settings.Settings`, or a mapping of settings fields that override
            the environment (``{"model_dir": ..., "start_trainer": False}``), or ``None`` for the
            environment alone.

    Returns:
        The Flask app; ``app.extensions["labelhub"]`` is its :class:`Backend`.

    Raises:
        ValueError: When a setting is invalid (e.g. a malformed ``LABELHUB_MODEL``; see :func:`check_settings`).
    """
    settings = config if isinstance(config, Settings) else Settings.from_env(**dict(config or {}))
    logging.getLogger("labelhub.backend").setLevel(settings.log_level_number)
    app = Flask(__name__)
    app.config["JSON_SORT_KEYS"] = False
    # werkzeug answers 413 by the Content-Length before reading, and stops a chunked body at the limit
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    backend = Backend(settings)
    app.extensions["labelhub"] = backend
    register_error_handlers(app)

    from labelhub.backend.files import files_bp
    from labelhub.backend.routes import metrics_bp, protocol_bp

    @app.before_request
    def _refuse_large_bodies() -> None:
        """413 on every route for a declared ``Content-Length`` over the limit, before anything reads it
        (werkzeug refuses a chunked body once it passes the limit, when a view reads it)."""
        if request.content_length is not None and request.content_length > settings.max_body_bytes:
            raise RequestEntityTooLarge()

    app.register_blueprint(protocol_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(files_bp)
    if settings.start_trainer:
        backend.trainer.start()
    return app
