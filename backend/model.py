"""The model interface: a label-studio-ml compatible base class.

A model written for label-studio-ml (https://github.com/HumanSignal/label-studio-ml-backend,
``label_studio_ml/model.py``) subclasses ``LabelStudioMLBase`` and overrides ``setup()``,
``predict(tasks, context=None, **kwargs)`` and ``fit(event, data, **kwargs)``; it keeps its state with
``self.get(key)`` / ``self.set(key, value)`` and reads ``self.label_config``,
``self.parsed_label_config`` and ``self.model_version``. The same names exist here, so such a model
moves over by changing one import::

    from labelhub.backend.model import LabelStudioMLBase   # was: from label_studio_ml.model import LabelStudioMLBase

and is served with ``LABELHUB_MODEL=my_module:MyModel labelhub backend``.

What differs, on purpose:

- ``self.set`` writes to ``MODEL_DIR/projects/<project>/kv.json`` (atomic, locked), which every
  gunicorn worker reads, so a version bumped by the trainer is seen by all workers at once.
- ``fit`` runs in the background trainer, never inside the request (see :mod:`labelhub.backend.events`).
  Models that can learn from many events at once override :meth:`LabelStudioMLBase.fit_batch`.
- ``get_local_path(url)`` fetches only from trusted sources (see :mod:`labelhub.backend.media`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from labelhub.label_config import parsed_label_config

if TYPE_CHECKING:  # pragma: no cover
    from labelhub.backend.app import Backend
    from labelhub.backend.state import ProjectState

log = logging.getLogger(__name__)

__all__ = ["LabelStudioMLBase", "ModelResponse"]


class ModelResponse:
    """What ``predict`` may return instead of a list, as label-studio-ml 2.x's ``ModelResponse``.

    Args:
        predictions: One prediction per task, in task order: ``{"result": [...], "score": float,
            "model_version": str}`` (https://labelstud.io/guide/predictions).
        model_version: The version every prediction without its own gets.
    """

    def __init__(self, predictions: list[dict] | None = None, model_version: str | None = None, **_: Any):
        self.predictions = list(predictions or [])
        self.model_version = model_version


class LabelStudioMLBase:
    """Base class of the backend's models, one instance per project and worker.

    Args:
        project_id: Label Studio's project key ``"<id>.<created_at>"`` from ``/setup``/``/predict``.
        label_config: The project's label config XML (https://labelstud.io/tags/).
        state: Where :meth:`get`/:meth:`set` keep their values (``None``: in memory, for tests).
        backend: The running backend (settings, media fetcher); ``None`` outside the server.
        **kwargs: Kept as attributes (``extra_params`` from the Connect Model dialog, ...).

    Raises:
        labelhub.errors.LabelConfigError: From :meth:`setup` when the model cannot handle
            the label config (answered 422 by ``/setup`` and ``/predict``).
    """

    #: The model_version before anything was set (label-studio-ml's default).
    INITIAL_MODEL_VERSION = "0.0.1"

    def __init__(self, project_id: str | None = None, label_config: str | None = None, *,
                 state: "ProjectState | None" = None, backend: "Backend | None" = None, **kwargs: Any):
        self.project_id = project_id
        self.label_config = label_config or ""
        self.parsed_label_config = parsed_label_config(self.label_config) if self.label_config else {}
        self.state = state
        self.backend = backend
        self.extra_params = kwargs.pop("extra_params", None)
        for key, value in kwargs.items():
            setattr(self, key, value)
        self._memory: dict[str, Any] = {}
        self._stamp: Any = object()
        self._refresh_lock = threading.Lock()
        self._label_interface = None
        self.setup()

    # the label-studio-ml interface -----------------------------------------------------------------
    def setup(self) -> None:
        """Prepare the model; called once per instance (per project and worker). Keep it fast:
        ``/setup`` must answer within Label Studio's 3 s (``ML_TIMEOUT_SETUP``)."""

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> "list[dict] | ModelResponse":
        """Predict the tasks.

        Args:
            tasks: Label Studio tasks (https://labelstud.io/guide/task_format), each with ``id`` and ``data``.
            context: ``None`` for pre-annotations; ``{"result": [regions drawn by the annotator]}`` for
                interactive pre-annotation (https://labelstud.io/guide/ml#Interactive-pre-annotations).
            **kwargs: ``login``/``password`` of the project's task data, if any.

        Returns:
            One prediction per task, in order: ``{"result": [...], "score": float, "model_version": str}``
            (https://labelstud.io/guide/predictions), or a :class:`ModelResponse`.
        """
        return [{"result": [], "score": 0.0, "model_version": self.model_version} for _ in tasks]

    def fit(self, event: str, data: dict, **kwargs: Any) -> Any:
        """Learn from one webhook event, in the background trainer.

        Args:
            event: The webhook action (``ANNOTATION_CREATED``, ``START_TRAINING``, ...:
                https://labelstud.io/guide/webhook_reference).
            data: The event's payload as Label Studio sent it.
            **kwargs: ``annotations``: the project's training data applied so far (see
                :meth:`labelhub.backend.state.ProjectState.load_annotations`).
        """

    def fit_batch(self, events: list[tuple[str, dict]], **kwargs: Any) -> Any:
        """Learn from several events at once; the default calls :meth:`fit` for each, in order.

        Args:
            events: ``[(action, payload), ...]`` in the order they were received.
            **kwargs: As for :meth:`fit`.
        """
        result = None
        for event, data in events:
            result = self.fit(event, data, **kwargs)
        return result

    # state --------------------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        """The value stored under ``key`` (``None`` if unset); shared by all workers."""
        if self.state is None:
            return self._memory.get(key)
        return self.state.kv().get(key)

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-serializable ``value`` under ``key`` (atomically, for all workers)."""
        if self.state is None:
            self._memory[key] = value
        else:
            self.state.update_kv(**{key: value})

    def has(self, key: str) -> bool:
        """Whether ``key`` is set."""
        return self.get(key) is not None

    @property
    def model_version(self) -> str:
        """The current model version (what ``/setup`` answers and predictions carry)."""
        return str(self.get("model_version") or self.INITIAL_MODEL_VERSION)

    @model_version.setter
    def model_version(self, value: str) -> None:
        self.set("model_version", value)

    def bump_model_version(self) -> str:
        """Set a new model version ``"<n+1>.<time>"`` and return it."""
        import time

        n = int(self.get("model_version_number") or 0) + 1
        version = f"{n}.{int(time.time())}"
        if self.state is not None:
            self.state.update_kv(model_version=version, model_version_number=n)
        else:
            self._memory.update(model_version=version, model_version_number=n)
        return version

    def refresh(self) -> bool:
        """Call :meth:`on_state_change` if another process changed the state since the last call.

        Returns:
            Whether the state changed.
        """
        stamp = self.state.kv_stamp() if self.state is not None else None
        if stamp == self._stamp:
            return False
        with self._refresh_lock:
            if stamp == self._stamp:
                return False
            self.on_state_change()
            self._stamp = stamp
        return True

    def on_state_change(self) -> None:
        """Reload what depends on the state (e.g. a fitted head); called by :meth:`refresh`."""

    # helpers of label-studio-ml --------------------------------------------------------------------
    @property
    def label_interface(self):
        """``label_studio_sdk.label_interface.LabelInterface`` of the label config (lazy)."""
        if self._label_interface is None:
            from label_studio_sdk.label_interface import LabelInterface

            self._label_interface = LabelInterface(self.label_config)
        return self._label_interface

    def get_first_tag_occurence(self, control_type: str | Iterable[str], object_type: str | Iterable[str]
                                ) -> tuple[str, str, str]:
        """``(from_name, to_name, value_key)`` of the first control tag of ``control_type`` over an
        object tag of ``object_type`` (as in label-studio-ml).

        Raises:
            ValueError: When there is none.
        """
        controls = {control_type} if isinstance(control_type, str) else set(control_type)
        objects = {object_type} if isinstance(object_type, str) else set(object_type)
        for from_name, info in self.parsed_label_config.items():
            if info["type"] in controls:
                for to_name, inp in zip(info["to_name"], info["inputs"]):
                    if inp["type"] in objects:
                        return from_name, to_name, inp["value"]
        raise ValueError(f"no {control_type} over {object_type} in the label config")

    def get_local_path(self, url: str, task_id: int | None = None, **_: Any) -> str:
        """Download ``url`` (from a trusted source only) into a local cache file and return its path.

        Raises:
            labelhub.backend.errors.MediaError: When the URL is not allowed or cannot be fetched.
        """
        if self.backend is None:
            raise RuntimeError("get_local_path needs a running backend")
        data = self.backend.fetcher.fetch(url)
        digest = hashlib.sha256(url.encode()).hexdigest()[:32]
        suffix = Path(url.split("?")[0]).suffix[:10]
        directory = Path(tempfile.gettempdir()) / "labelhub-media"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{digest}{suffix}"
        if not path.exists():
            tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return str(path)
