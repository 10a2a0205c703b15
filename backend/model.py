"""The model interface: a label-studio-ml compatible base class.

A model written for label-studio-ml (https://github.com/HumanSignal/label-studio-ml-backend,
``label_studio_ml/model.py``) subclasses ``LabelStudioMLBase`` and overrides ``setup()``,
``predict(tasks, context=None, **kwargs)`` and ``fit(event, data, **kwargs)``; it keeps its state with
``self.get(key)`` / ``self.set(key, value)`` and reads ``self.label_config``,
``self.parsed_label_config``, ``self.label_interface`` and ``self.model_version``. The same names exist
here, and ``predict`` may return what label-studio-ml 2.x accepts (a list of dicts, a list of
label-studio-sdk ``PredictionValue``, a ``ModelResponse``: see :func:`normalize_predictions`), so such a
model moves over by changing one import::

    from labelhub.backend.model import LabelStudioMLBase, ModelResponse
    # was: from label_studio_ml.model import LabelStudioMLBase
    #      from label_studio_ml.response import ModelResponse

and is served with ``LABELHUB_MODEL=my_module:MyModel labelhub backend`` (``tests/ls_ml_style_model.py`` is
such a model).

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
import math
import numbers
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from labelhub.label_config import parsed_label_config

if TYPE_CHECKING:  # pragma: no cover
    from labelhub.backend.media import MediaFetcher
    from labelhub.backend.settings import Settings
    from labelhub.backend.state import ProjectState

log = logging.getLogger(__name__)

__all__ = ["LabelStudioMLBase", "ModelResponse", "ModelHost", "normalize_predictions"]


class ModelHost(Protocol):
    """What a model may use of the running backend (:class:`labelhub.backend.app.Backend` is one).

    Described here rather than imported so that this module does not import the app (which imports it).

    Attributes:
        settings: The backend's :class:`~labelhub.backend.settings.Settings`.
        fetcher: The worker's :class:`~labelhub.backend.media.MediaFetcher` (task media from trusted sources).
        embeddings: The worker's embedding cache (:class:`labelhub.backend.embedding_cache.EmbeddingCache`).
    """

    settings: "Settings"
    fetcher: "MediaFetcher"
    embeddings: Any


class ModelResponse:
    """What ``predict`` may return instead of a list, like label-studio-ml 2.x's ``ModelResponse``.

    label-studio-ml 2.x defines ``ModelResponse`` as a pydantic model in ``label_studio_ml/response.py``
    (https://github.com/HumanSignal/label-studio-ml-backend/blob/master/label_studio_ml/response.py) with the
    fields ``model_version`` and ``predictions`` and the methods :meth:`has_model_version`,
    :meth:`update_predictions_version` and :meth:`set_version`. This class has the same keywords,
    attributes and methods (without pydantic's validation: :func:`normalize_predictions` checks the
    shapes when ``/predict`` answers), so model code written for the original runs unchanged.

    Args:
        predictions: One item per task, in task order: a dict ``{"result": [...], "score": float,
            "model_version": str}`` (https://labelstud.io/guide/predictions), a label-studio-sdk
            ``PredictionValue`` (``label_studio_sdk.label_interface.objects``), or a list of those for the
            task (the first is answered, see :func:`normalize_predictions`).
        model_version: The version every prediction without its own gets; ``None``: the model's.

    Example:
        >>> r = ModelResponse(predictions=[{"result": [], "score": 0.5}])
        >>> r.has_model_version(), r.set_version("v2"), r.predictions[0]["model_version"]
        (False, None, 'v2')
    """

    def __init__(self, predictions: list | None = None, model_version: str | None = None, **_: Any):
        self.predictions = list(predictions or [])
        self.model_version = model_version

    def has_model_version(self) -> bool:
        """Whether the response names a version.

        Returns:
            ``True`` when :attr:`model_version` is set (not ``None`` nor empty).
        """
        return bool(self.model_version)

    def update_predictions_version(self) -> None:
        """Give every prediction without a ``model_version`` the response's, in place.

        Dicts get the key, objects (``PredictionValue``) the attribute; nested per-task lists are
        walked. Does nothing while the response has no version.

        Returns:
            None.
        """
        if not self.has_model_version():
            return
        for item in self.predictions:
            for pred in item if isinstance(item, (list, tuple)) else (item,):
                if isinstance(pred, dict):
                    if not pred.get("model_version"):
                        pred["model_version"] = self.model_version
                elif hasattr(pred, "model_version") and not pred.model_version:
                    pred.model_version = self.model_version

    def set_version(self, version: str) -> None:
        """Set the response's version and give it to every prediction without one.

        Args:
            version: The model version.

        Returns:
            None.
        """
        self.model_version = version
        self.update_predictions_version()


def _empty(version: str) -> dict:
    return {"result": [], "score": 0.0, "model_version": version}


def _score(value: Any) -> float:
    """``value`` as a finite float score; ``0.0`` for anything else (``None``, text, NaN, too large)."""
    if isinstance(value, numbers.Real):
        try:
            score = float(value)
        except (OverflowError, ValueError):
            return 0.0
        return score if math.isfinite(score) else 0.0
    return 0.0


def _as_prediction_dict(item: Any) -> dict | None:
    """``item`` as a prediction dict: a dict itself, else what its ``model_dump()`` returns; ``None`` if neither."""
    if isinstance(item, Mapping):
        return dict(item)
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        try:
            dumped = dump()
        except Exception:  # a model_dump that fails is as unusable as no model_dump
            return None
        if isinstance(dumped, Mapping):
            return dict(dumped)
    return None


def _unpack(response: Any) -> tuple[Any, Any]:
    """``(per-task items, the response's model_version)`` of what ``predict`` returned."""
    if isinstance(response, (list, tuple)):
        return response, None
    if isinstance(response, Mapping):
        items = response["results"] if "results" in response else response.get("predictions", response)
        return items, response.get("model_version")
    try:
        if hasattr(response, "predictions"):  # ModelResponse: ours, label-studio-ml's, look-alikes
            return response.predictions, getattr(response, "model_version", None)
    except Exception:  # a property that raises: treat the object as unusable
        return response, None
    dumped = _as_prediction_dict(response)  # a pydantic model dumping {"predictions": [...], ...}
    if dumped is not None and ("predictions" in dumped or "results" in dumped):
        return _unpack(dumped)
    return response, None


def normalize_predictions(response: Any, n_tasks: int, model_version: str) -> list[dict]:
    """Turn what a model's ``predict`` returned into Label Studio predictions, one per task, in order.

    Each answer is Label Studio's prediction format (https://labelstud.io/guide/predictions)::

        {"result": [region, ...], "score": float, "model_version": str}

    plus ``"error": str`` when the model put one on the task (e.g. its media could not be fetched).
    ``response`` may have any shape label-studio-ml 2.x's ``/predict`` accepts (``label_studio_ml/api.py``
    and ``label_studio_ml/response.py`` of https://github.com/HumanSignal/label-studio-ml-backend):

    - a list (or tuple) of one item per task, each item being

      - a dict as above (a ``result`` that is not a list becomes ``[]``, a ``score`` that is not a
        finite real number ``0.0``);
      - a label-studio-sdk ``PredictionValue`` (``label_studio_sdk.label_interface.objects``) or any
        object whose ``model_dump()`` returns such a dict (pydantic models);
      - a list of such predictions for the task: the first is answered. label-studio-ml 2.x types
        ``ModelResponse.predictions`` as ``List[Union[List[PredictionValue], PredictionValue]]``; Label
        Studio 1.23's batch path (``MLBackend._get_predictions_from_ml_backend`` in
        ``label_studio/ml/models.py``) would store each of them, but its interactive pre-annotation
        path (``interactive_annotating``) reads each answer as one dict, and ``/predict`` answers one
        dict per task for both. The alternatives dropped are logged (info, once per call);
      - ``None``: no prediction for the task (an empty one);

    - a :class:`ModelResponse`, label-studio-ml's ``ModelResponse``, or any object with ``predictions``
      (and ``model_version``) attributes;
    - a dict ``{"predictions" or "results": [...], "model_version": ...}``, or an object whose
      ``model_dump()`` returns one;
    - ``None``: no predictions (an empty one per task).

    Versions: a prediction without ``model_version`` gets the response's (``ModelResponse.model_version``,
    what label-studio-ml's ``update_predictions_version`` does), else ``model_version``.

    Anything unusable (an item of another type, a ``model_dump`` that fails or returns no dict) becomes
    an empty prediction for its task, and one warning per call names the items (by position) and
    their types. A
    response that is not a list, or a list of another length than ``n_tasks``, cannot be matched to
    the tasks: every task gets an empty prediction with an ``"error"``, logged as an error.

    Args:
        response: What ``predict`` returned.
        n_tasks: How many tasks were predicted.
        model_version: The model's current version (the default of every prediction).

    Returns:
        Exactly ``n_tasks`` new dicts (the model's objects are not changed).

    Raises:
        Nothing: a model's odd answer never fails the request.

    Example:
        >>> normalize_predictions([{"result": [], "score": 1}, None], 2, "v1")
        [{'result': [], 'score': 1.0, 'model_version': 'v1'}, {'result': [], 'score': 0.0, 'model_version': 'v1'}]
    """
    if response is None:
        return [_empty(model_version) for _ in range(n_tasks)]
    items, response_version = _unpack(response)
    default = str(response_version) if response_version else model_version
    if items is None:
        return [_empty(default) for _ in range(n_tasks)]
    if not isinstance(items, (list, tuple)) or len(items) != n_tasks:
        got = len(items) if isinstance(items, (list, tuple)) else f"a {type(items).__name__}, not a list of"
        log.error("the model answered %s predictions for %d tasks", got, n_tasks)
        return [{**_empty(default), "error": f"the model answered {got} predictions for {n_tasks} tasks"}
                for _ in range(n_tasks)]
    out: list[dict] = []
    unusable: dict[int, str] = {}
    dropped = 0
    for i, item in enumerate(items):
        if isinstance(item, (list, tuple)):
            dropped += max(len(item) - 1, 0)
            item = item[0] if item else None
        if item is None:
            out.append(_empty(default))
            continue
        pred = _as_prediction_dict(item)
        if pred is None:
            unusable[i] = type(item).__name__
            out.append(_empty(default))
            continue
        result, version = pred.get("result"), pred.get("model_version")
        clean = {"result": result if isinstance(result, list) else [], "score": _score(pred.get("score")),
                 "model_version": str(version) if version else default}
        if pred.get("error"):
            clean["error"] = str(pred["error"])
        out.append(clean)
    if unusable:
        shown = ", ".join(f"#{i}: {name}" for i, name in list(unusable.items())[:10])
        log.warning("the model answered %d unusable prediction(s), answered as empty (%s%s); expected dicts, "
                    "PredictionValue or lists of them", len(unusable), shown, ", ..." if len(unusable) > 10 else "")
    if dropped:
        log.info("kept the first prediction of each task, dropped %d alternative(s)", dropped)
    return out


class LabelStudioMLBase:
    """Base class of the backend's models, one instance per project and worker.

    Args:
        project_id: Label Studio's project key ``"<id>.<created_at>"`` from ``/setup``/``/predict``.
        label_config: The project's label config XML (https://labelstud.io/tags/).
        state: Where :meth:`get`/:meth:`set` keep their values (``None``: in memory, for tests).
        backend: The running backend (settings, media fetcher: a :class:`ModelHost`); ``None`` outside the server.
        **kwargs: Kept as attributes (``extra_params`` from the Connect Model dialog, ...).

    Raises:
        labelhub.errors.LabelConfigError: From :meth:`setup` when the model cannot handle
            the label config (answered 422 by ``/setup`` and ``/predict``).
    """

    #: The model_version before anything was set (label-studio-ml's default).
    INITIAL_MODEL_VERSION = "0.0.1"

    def __init__(self, project_id: str | None = None, label_config: str | None = None, *,
                 state: "ProjectState | None" = None, backend: "ModelHost | None" = None, **kwargs: Any):
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
            (https://labelstud.io/guide/predictions), or a label-studio-sdk ``PredictionValue`` per task,
            or a :class:`ModelResponse` of those, or ``None``; any shape label-studio-ml 2.x accepts
            (:func:`normalize_predictions` lists them).
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
        """Call :meth:`on_state_change` if another process changed the state since the last call, or the last call
        could not load all of it.

        Decided: when :meth:`on_state_change` returns ``False`` (a file the state names did not load: damaged, or
        deleted by later fits while this worker read the state before them), the state is not recorded as seen, so
        the next call tries again; the model bounds how often it reads such a file again
        (:meth:`labelhub.backend.models.project.ProjectModel._serve`). Before, the failed load was never retried.

        Returns:
            Whether :meth:`on_state_change` was called.
        """
        stamp = self.state.kv_stamp() if self.state is not None else None
        if stamp == self._stamp:
            return False
        with self._refresh_lock:
            if stamp == self._stamp:
                return False
            if self.on_state_change() is not False:
                self._stamp = stamp
        return True

    def on_state_change(self) -> bool | None:
        """Reload what depends on the state (e.g. a fitted head); called by :meth:`refresh`.

        Returns:
            ``False`` when part of it could not be loaded (:meth:`refresh` then calls it again); ``None`` or ``True``
            otherwise.
        """

    # helpers of label-studio-ml --------------------------------------------------------------------
    @property
    def label_interface(self):
        """``label_studio_sdk.label_interface.LabelInterface`` of the label config, built on first use.

        label-studio-ml 2.x models read the config through it (``self.label_interface =
        LabelInterface(config)`` in ``label_studio_ml/model.py``), e.g.
        ``self.label_interface.get_first_tag_occurence("Choices", "Text")``.

        Returns:
            The ``LabelInterface``.

        Raises:
            Whatever label-studio-sdk raises for a label config it cannot parse.
        """
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
        if not path.exists():  # a temporary file of its own per call: threads may fetch the same URL at once
            from labelhub.backend.state import atomic_write_bytes

            atomic_write_bytes(path, data)
        return str(path)
