"""A Hugging Face model chosen by id (or local path) answers a control tag: :class:`PipelineHead`.

A project names the model in Label Studio's Connect Model dialog, "Extra params" (sent to ``/setup`` as
``extra_params``, :mod:`labelhub.backend.models.params`), over the ``LABELHUB_MODEL_PARAMS`` default, for all
controls or for one (``{"controls": {"box": {...}}}``). Keys:

===========================  ==============================================================================
key                          meaning
===========================  ==============================================================================
``model`` (required)         A Hub model id (``google/owlv2-base-patch16-ensemble``) or a local directory
                             written by ``save_pretrained``, absolute or from the home directory
                             (``/models/my-detector``, ``~/m``). A relative path (``./m``, ``models/m``) is
                             refused: every process (each backend worker, the trainer, ``labelhub predict``)
                             would read it from its own working directory.
``task``                     One of :data:`TASKS`. When absent it is read from the model's ``config.json``
                             ``architectures`` (:func:`infer_task`).
``threshold``                Minimum score in [0, 1] of a region or choice. Default: 0.3 for
                             ``object-detection``, 0.1 for ``zero-shot-object-detection``, 0 for
                             ``token-classification`` and single choice, 0.5 for ``choice="multiple"``.
``labels``                   ``{model label: config label}``: explicit mapping, tried before the exact and the
                             case-insensitive match; ``null`` drops a model label. For zero-shot tasks the keys
                             are the text queries (``{"a photo of a tabby cat": "Cat"}``). Each value must be
                             ``null`` or a label of the control (ignoring case), else it is refused (422).
``revision``                 A branch, tag or commit of a Hub model (default ``main``).
``nms``                      IoU above which the lower-scored of two boxes of one label is dropped; default
                             0.5 for ``zero-shot-object-detection``, none for ``object-detection``;
                             ``false`` turns it off.
``hypothesis_template``      Zero-shot classification's prompt (``"This example is {}."``, CLIP's
                             ``"This is a photo of {}."``).
===========================  ==============================================================================

A token for gated or private models comes from ``HF_TOKEN`` in the environment only (huggingface_hub reads
it); it is never a parameter and never logged. Remote code is never run (``trust_remote_code=False``).

**Which controls.** ``image-classification`` and ``zero-shot-image-classification`` answer ``<Choices>`` over
``<Image>``; ``text-classification`` and ``zero-shot-classification`` ``<Choices>`` over ``<Text>``;
``object-detection`` and ``zero-shot-object-detection`` ``<RectangleLabels>`` over ``<Image>``;
``token-classification`` ``<Labels>`` over ``<Text>`` (:func:`task_fits`); not ``perRegion`` controls. Other
controls of the config keep their learned heads. A ``task`` given explicitly that does not fit a control some task
fits is refused at ``/setup`` (422 naming the control, the task and the tasks that fit it: a top-level ``task``
applies to every control, so a config with controls of several kinds gives it in a ``controls`` entry); a task read
from ``config.json`` that does not fit a control is logged once, naming the control (:meth:`PipelineHead.supports`).

**Reading the task without loading the model.** :meth:`PipelineHead.supports` runs in ``/setup``, which Label
Studio gives 3 s. With ``task`` set it does no I/O. Without it, it reads ``config.json`` only: from the
directory of a local model, or for a Hub id from the huggingface_hub cache and else with one GET of that
file (a few KB, at most :data:`CONFIG_TIMEOUT` seconds, no retries; ``HF_HUB_OFFLINE=1`` forbids it). When
the file cannot be read (offline and not cached, no such repo, gated without a token) the control is not
answered by the model and the log says to set ``task``; a failure is retried after :data:`RETRY_SECONDS`, by the
next build of a project's model that reads it (at most :data:`CONFIG_TIMEOUT`, once: the model is kept per worker).

**Labels.** The model's labels are mapped onto the control's labels (:class:`LabelMapper`): the explicit
``labels`` map, else the same string, else the same string ignoring case; a model label with no match is
dropped, and named once in the log. For the zero-shot tasks the control's labels are the text queries (or
the ``labels`` keys that map to them). When several model labels map to one choice, their scores add up
(softmax models, clipped to 1) or the highest counts (sigmoid / multi-label models).

**Results** are Label Studio's formats (https://labelstud.io/guide/predictions), each with a ``score``:

- Choices (https://labelstud.io/tags/choices): ``{"type": "choices", "value": {"choices": [label]}}``; single
  choice: the best mapped label when its score reaches the threshold; ``choice="multiple"``: every mapped
  label whose score reaches it, in config order, scored by their mean.
- RectangleLabels (https://labelstud.io/tags/rectanglelabels): ``{"id", "type": "rectanglelabels",
  "value": {"x", "y", "width", "height", "rotation": 0, "rectanglelabels": [label]}, "original_width",
  "original_height", "image_rotation": 0}``, percent of the image, one result per box (boxes clipped to the
  image; a box with no area left is dropped).
- Labels over Text (https://labelstud.io/tags/labels): ``{"id", "type": "labels", "value": {"start", "end",
  "text", "labels": [label]}}``, character offsets into the task's text (the pipeline's
  ``aggregation_strategy="simple"`` entities; long texts are read in overlapping windows).

**Task score of a single choice** (decision, 2026-12): the task's ``score`` counts a single Choices answered by a
model as the margin between the two most probable of the control's labels (after the ``labels`` map; a label the
model does not name counts 0) times :data:`~labelhub.backend.models.heads.TYPICAL` (0.25), the learned single
choice's scale (its margin times a novelty factor of 1/4 at the median distance): 0 at even odds, 0.25 when sure
(:meth:`PipelineHead.control_score`). The pipelines give every label's probability (``top_k``), so the margin is known,
where ``p ** 2 / 4`` of the top probability (:mod:`labelhub.backend.models.heads`, **Task score**) only bounded it and
put a 2-class model at even odds at 0.0625, the score of a learned choice with a margin of 0.25: in a project of one
learned and one Hub-model Choices, a task the model could not tell apart sorted after the learned head's unsure ones.
The result's own ``score`` stays the probability; multiple choice and regions keep ``p ** 2 / 4``. The identity
names the rule (:data:`CHOICE_MARGIN`), so a single Choices' ``model_version`` moved with it.

**Loading.** A pipeline is loaded once per process per ``(task, model, revision)`` (:func:`load_pipeline`:
an LRU of :data:`MAX_PIPELINES`, thread-safe, one load at a time per key) on the CPU in float32, on first
predict or in :meth:`PipelineHead.warmup` (the backend's background warmup after ``/setup``, which is where a
Hub model is downloaded into the huggingface_hub cache), with ``LABELHUB_TORCH_THREADS`` torch threads; calls
to one pipeline are serialized. A load that failed (an unreachable Hub, a gated model without access: 401) is not
tried again by a request (decision): its error is raised again at once, and after :data:`RETRY_SECONDS` the first
call that finds it starts one background reload (a daemon thread) and raises the error too, as every call does while
the reload runs; once it succeeds the calls get the pipeline, and when it fails its error and time replace the
previous ones (one INFO line per reload; the project logs one ERROR line per worker, control and cause). A request
used to load the model itself after :data:`RETRY_SECONDS`, waiting for it (23 s against a closed port, huggingface_hub's
retries), and the project's other requests waited behind it. :func:`model_config`'s retry stays in the caller: it is
one GET of at most :data:`CONFIG_TIMEOUT` when a worker builds a project's model (``/setup``, or the first request of
a project in a worker), not one per request, and the model built then must know its answer.

OWL-ViT and OWLv2 read all the queries in one forward pass per image batch (the ``zero-shot-object-detection``
pipeline runs one per query); other zero-shot detectors go through the pipeline.

Example ``extra_params``::

    {"model": "google/owlv2-base-patch16-ensemble", "threshold": 0.2}
    {"controls": {"sentiment": {"model": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
                                "labels": {"POSITIVE": "Good", "NEGATIVE": "Bad"}}}}
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from cachetools import LRUCache

from labelhub.backend.errors import InvalidPayloadError
from labelhub.backend.log_once import first_time, forget, log_once
from labelhub.backend.models.heads import TASK_SCALE, TYPICAL, ControlHead, TaskInput, image_region, region_id
from labelhub.redaction import library_logs_through_root, one_line

if TYPE_CHECKING:  # pragma: no cover
    from labelhub.label_config import ControlSpec

log = logging.getLogger(__name__)

__all__ = ["PipelineHead", "PipelineSpec", "PipelineParamsError", "LabelMapper", "TASKS", "DEFAULT_THRESHOLDS",
           "infer_task", "model_config", "resolve_task", "task_fits", "load_pipeline", "clear_caches",
           "MAX_PIPELINES", "RETRY_SECONDS", "CONFIG_TIMEOUT", "CHOICE_MARGIN"]

#: The pipeline tasks a head serves: ``task -> (control tag, object tags)`` it answers.
TASKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "image-classification": ("Choices", ("Image",)),
    "zero-shot-image-classification": ("Choices", ("Image",)),
    "text-classification": ("Choices", ("Text",)),
    "zero-shot-classification": ("Choices", ("Text",)),
    "object-detection": ("RectangleLabels", ("Image",)),
    "zero-shot-object-detection": ("RectangleLabels", ("Image",)),
    "token-classification": ("Labels", ("Text",)),
}
#: Default ``threshold`` per task (Choices tasks: single choice; ``choice="multiple"`` uses 0.5).
DEFAULT_THRESHOLDS = {"object-detection": 0.3, "zero-shot-object-detection": 0.1, "token-classification": 0.0,
                      "image-classification": 0.0, "zero-shot-image-classification": 0.0,
                      "text-classification": 0.0, "zero-shot-classification": 0.0}
#: Default ``threshold`` of a ``choice="multiple"`` Choices control.
MULTIPLE_CHOICE_THRESHOLD = 0.5
#: Default ``nms`` IoU per task (absent: no suppression).
DEFAULT_NMS = {"zero-shot-object-detection": 0.5}
#: Pipelines kept loaded per process (least recently used dropped first).
MAX_PIPELINES = 4
#: Seconds before a model whose config or weights could not be read is tried again.
RETRY_SECONDS = 60.0
#: In the :meth:`PipelineHead.identity` of a single Choices since its task score became the margin between its two most
#: probable labels times :data:`~labelhub.backend.models.heads.TYPICAL` (it was ``p ** 2 / 4``): its ``model_version``
#: moves, so Label Studio never sorts predictions of the two rules as one version.
CHOICE_MARGIN = "single choice task score margin*0.25"
#: Seconds :func:`model_config` waits for a Hub model's ``config.json`` (``/setup`` has 3 s).
CONFIG_TIMEOUT = 2.0
#: Inputs per forward pass (images or texts); OWL detectors at 768-960 px use :data:`DETECTION_BATCH`.
BATCH_SIZE = 8
DETECTION_BATCH = 2
#: Prefixes of ``architectures`` entries of open-vocabulary detectors (``zero-shot-object-detection``).
_ZERO_SHOT_DETECTORS = ("OwlViT", "Owlv2", "GroundingDino", "MMGroundingDino", "OmDetTurbo")
#: ``architectures`` of image-text models (``zero-shot-image-classification``).
_ZERO_SHOT_IMAGE = re.compile(r"(CLIP|Clip2?|Siglip2?)Model$")


class PipelineParamsError(InvalidPayloadError):
    """A model parameter of ``extra_params`` / ``LABELHUB_MODEL_PARAMS`` has a wrong value (HTTP 422 at ``/setup``).

    The message names the key and what it must be; ``field`` is ``"extra_params"``.
    """

    code = "invalid_model_params"

    def __init__(self, message: str):
        super().__init__(message, field="extra_params")


@dataclass(frozen=True)
class PipelineSpec:
    """The model parameters of one control, checked (see the module docstring for each key).

    Attributes:
        model: Hub id or local directory.
        task: One of :data:`TASKS`, or ``None`` to read it from ``config.json``.
        threshold: Minimum score in [0, 1], or ``None`` for the task's default.
        labels: The explicit ``(model label, config label or None)`` pairs, sorted by model label: the order the
            ``labels`` object arrived in (the Connect Model dialog's, or ``project.json``'s sorted keys) changes
            neither the mapping nor :meth:`PipelineHead.identity` (so not the ``model_version``).
        revision: Branch, tag or commit of a Hub model, or ``None`` (``main``); ``None`` for a local model.
        nms: IoU threshold in (0, 1] of the box suppression, ``None`` for the task's default, ``False`` for none.
        hypothesis_template: Zero-shot prompt with ``{}``, or ``None`` for the pipeline's.
    """

    model: str
    task: str | None = None
    threshold: float | None = None
    labels: tuple[tuple[str, str | None], ...] = field(default=())
    revision: str | None = None
    nms: float | bool | None = None
    hypothesis_template: str | None = None

    @property
    def local(self) -> bool:
        """``True`` when :attr:`model` is a directory on this machine."""
        return _is_local(self.model)

    @property
    def source(self) -> tuple[str, str | None]:
        """``(model, revision)`` as loaded: an absolute directory and ``None`` for a local model."""
        if self.local:
            return str(Path(self.model).expanduser().resolve()), None
        return self.model, self.revision

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "PipelineSpec":
        """Check the model parameters of a control.

        Args:
            params: The control's parameters (``extra_params`` over ``LABELHUB_MODEL_PARAMS``); other keys are
                ignored.

        Returns:
            A :class:`PipelineSpec`.

        Raises:
            PipelineParamsError: When ``model`` is missing, not a string, a path that does not exist, a relative
                path (``./m``, ``../m``, or a directory relative to the working directory such as ``models/m``:
                write it absolute or with ``~``), or not a valid Hub id; ``task`` is not in :data:`TASKS`;
                ``threshold`` or ``nms`` is not a number in [0, 1]; ``labels`` is not an object of strings (or
                nulls); ``revision`` or ``hypothesis_template`` is not a string (the template must contain ``{}``).

        Example:
            >>> PipelineSpec.from_params({"model": "google/owlv2-base-patch16-ensemble", "threshold": 0.2}).threshold
            0.2
        """
        model = params.get("model")
        if not isinstance(model, str) or not model.strip():
            raise PipelineParamsError("'model' must be a Hugging Face model id or a local directory")
        model = model.strip()
        if (_looks_like_path(model) or os.path.isdir(model)) and not _is_absolute(model):
            raise PipelineParamsError(
                f"'model' {model!r} is a relative path, which each process (every backend worker, the trainer, "
                f"labelhub predict) would read from its own working directory: write the directory absolute "
                f"(/...) or from the home directory (~/...)")
        if _looks_like_path(model):
            if not _is_local(model):
                raise PipelineParamsError(f"'model': no directory {model!r} on the backend's machine")
        elif not _is_local(model):
            from huggingface_hub.utils import HFValidationError, validate_repo_id

            try:
                validate_repo_id(model)
            except HFValidationError as exc:
                raise PipelineParamsError(f"'model' is neither a local directory nor a Hub model id: {exc}") from None
        task = params.get("task")
        if task is not None and task not in TASKS:
            raise PipelineParamsError(f"'task' must be one of {', '.join(TASKS)} (got {task!r})")
        threshold = _unit_interval(params.get("threshold"), "threshold")
        nms = params.get("nms")
        if nms is not False:
            nms = _unit_interval(nms, "nms")
        labels = params.get("labels") or {}
        if not isinstance(labels, Mapping) or not all(
                isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in labels.items()):
            raise PipelineParamsError("'labels' must map model labels to label config labels (strings, or null "
                                      "to drop a model label)")
        revision = params.get("revision")
        if revision is not None and (not isinstance(revision, str) or not revision.strip()):
            raise PipelineParamsError("'revision' must be a branch, tag or commit of the Hub model")
        template = params.get("hypothesis_template")
        if template is not None and (not isinstance(template, str) or "{}" not in template):
            raise PipelineParamsError("'hypothesis_template' must be a string with {} where the label goes")
        return cls(model=model, task=task, threshold=threshold, labels=tuple(sorted(labels.items())),
                   revision=revision.strip() if isinstance(revision, str) else None, nms=nms,
                   hypothesis_template=template)


def _unit_interval(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise PipelineParamsError(f"'{key}' must be a number between 0 and 1 (got {value!r})")
    return float(value)


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", "\\")) or os.path.isabs(model)


def _is_absolute(model: str) -> bool:
    return os.path.isabs(os.path.expanduser(model))


def _is_local(model: str) -> bool:
    """An existing directory given absolute or with ``~`` (a relative name is a Hub id, or refused)."""
    return _is_absolute(model) and os.path.isdir(os.path.expanduser(model))


# --- reading the task -------------------------------------------------------------------------------
_CONFIGS: LRUCache = LRUCache(maxsize=256)
_CONFIG_FAILURES: dict[tuple[str, str | None], float] = {}
_CONFIG_LOCK = threading.Lock()


def model_config(model: str, revision: str | None = None) -> dict | None:
    """The model's ``config.json``, without loading the model.

    A local directory is read directly; a Hub id from the huggingface_hub cache, else with one GET of
    ``config.json`` (:data:`CONFIG_TIMEOUT`, no retries; honouring ``HF_ENDPOINT``, ``HF_TOKEN``,
    ``HF_HUB_OFFLINE``).
    Answers are cached per process; a failure is retried after :data:`RETRY_SECONDS` by the next call, which waits
    for it (at most :data:`CONFIG_TIMEOUT`: it is called when a worker builds a project's model, not per request; see
    the module docstring, **Loading**).

    Args:
        model: Hub id or local directory.
        revision: Branch, tag or commit of a Hub model (``None``: ``main``).

    Returns:
        The parsed JSON object, or ``None`` when it cannot be read (logged as a warning with the reason).
    """
    key = (model, revision)
    with _CONFIG_LOCK:
        if key in _CONFIGS:
            return _CONFIGS[key]
        failed = _CONFIG_FAILURES.get(key)
        if failed is not None and time.monotonic() - failed < RETRY_SECONDS:
            return None
    try:
        if _is_local(model):
            path = Path(model).expanduser() / "config.json"
            config = json.loads(path.read_text(encoding="utf-8"))
        else:
            config = _hub_config(model, revision)
        if not isinstance(config, dict):
            raise ValueError("config.json is not a JSON object")
    except Exception as exc:  # no file, offline, no such repo, gated, bad JSON: the head is not used
        log.warning("cannot read config.json of model %r%s (%s: %s); set \"task\" in the extra params to use it",
                    model, f" at revision {revision!r}" if revision else "", type(exc).__name__, str(exc)[:200])
        with _CONFIG_LOCK:
            _CONFIG_FAILURES[key] = time.monotonic()
        return None
    with _CONFIG_LOCK:
        _CONFIGS[key] = config
        _CONFIG_FAILURES.pop(key, None)
    return config


def _hub_config(model: str, revision: str | None) -> Any:
    """``config.json`` of a Hub model: from the huggingface_hub cache, else one GET without retries (so that
    ``/setup`` is not held by huggingface_hub's backoff when the Hub is unreachable)."""
    from huggingface_hub import hf_hub_url, is_offline_mode, try_to_load_from_cache
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    cached = try_to_load_from_cache(model, "config.json", revision=revision)
    if isinstance(cached, str):
        return json.loads(Path(cached).read_text(encoding="utf-8"))
    if is_offline_mode():
        raise OSError("HF_HUB_OFFLINE is set and config.json is not in the huggingface_hub cache")
    response = get_session().get(hf_hub_url(model, "config.json", revision=revision), headers=build_hf_headers(),
                                 timeout=CONFIG_TIMEOUT, follow_redirects=True)
    hf_raise_for_status(response)
    return response.json()


def infer_task(config: Mapping[str, Any]) -> str | None:
    """The pipeline task of a model, from its ``config.json``.

    Args:
        config: The parsed ``config.json``.

    Returns:
        From the ``architectures`` entries: ``OwlViTForObjectDetection``, ``Owlv2...``, ``GroundingDino...``,
        ``OmDetTurbo...`` → ``zero-shot-object-detection``; other ``*ForObjectDetection`` → ``object-detection``;
        ``*ForImageClassification*`` → ``image-classification``; ``CLIPModel``/``SiglipModel``... →
        ``zero-shot-image-classification``; ``*ForTokenClassification`` → ``token-classification``;
        ``*ForSequenceClassification`` → ``zero-shot-classification`` when a label starts with ``entail``
        (an NLI model, as the pipeline requires), else ``text-classification``. ``None`` otherwise.

    Example:
        >>> infer_task({"architectures": ["DetrForObjectDetection"]})
        'object-detection'
    """
    for arch in config.get("architectures") or ():
        if not isinstance(arch, str):
            continue
        if arch.endswith("ForObjectDetection"):
            return "zero-shot-object-detection" if arch.startswith(_ZERO_SHOT_DETECTORS) else "object-detection"
        if "ForImageClassification" in arch:
            return "image-classification"
        if _ZERO_SHOT_IMAGE.search(arch):
            return "zero-shot-image-classification"
        if arch.endswith("ForTokenClassification"):
            return "token-classification"
        if arch.endswith("ForSequenceClassification"):
            labels = (config.get("id2label") or {}).values()
            if any(str(label).lower().startswith("entail") for label in labels):
                return "zero-shot-classification"
            return "text-classification"
    return None


def resolve_task(spec: PipelineSpec) -> str | None:
    """The task of ``spec``: its ``task``, else :func:`infer_task` of :func:`model_config`.

    Args:
        spec: The control's model parameters.

    Returns:
        A key of :data:`TASKS`, or ``None`` when ``config.json`` cannot be read or names no supported
        architecture (logged once).
    """
    if spec.task:
        return spec.task
    model, revision = spec.source
    config = model_config(model, revision)
    if config is None:
        return None
    task = infer_task(config)
    if task is None:
        log_once(log, ("pipelines: task", model, revision), "model %r: its architectures %s are none of the supported "
                 "tasks (%s); set \"task\" if one fits", model, config.get("architectures"), ", ".join(TASKS))
    return task


def task_fits(task: str, control: "ControlSpec") -> bool:
    """Whether a pipeline task answers a control tag.

    Args:
        task: A key of :data:`TASKS`.
        control: The control tag and its object tag.

    Returns:
        ``True`` when the control and object tags are the task's (:data:`TASKS`), the control has labels, and
        it is not a per-region control (``perRegion="true"``, which classifies regions, not the whole object).
    """
    tag, objects = TASKS.get(task, ("", ()))
    return (control.tag == tag and control.object_tag in objects and bool(control.labels)
            and not control.per_region)


# --- loading --------------------------------------------------------------------------------------
@dataclass
class _Loaded:
    pipe: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


_PIPELINES: LRUCache = LRUCache(maxsize=MAX_PIPELINES)
_LOAD_FAILURES: dict[tuple, tuple[float, Exception]] = {}
_LOADING: dict[tuple, threading.Lock] = {}
#: Keys whose background reload runs (:func:`_reload`).
_RELOADING: set[tuple] = set()
_PIPELINES_LOCK = threading.Lock()
#: Held while ``transformers`` is first imported: two projects' pipelines loading at once (a warm-up of two Hub-model
#: projects) made one thread's ``from transformers import pipeline`` fail with an ``ImportError`` (seen once in a
#: walkthrough), which then counted as that pipeline's load failure for ``RETRY_SECONDS``.
_IMPORT_LOCK = threading.Lock()


def load_pipeline(task: str, model: str, revision: str | None = None) -> Any:
    """The ``transformers`` pipeline of ``(task, model, revision)``, loaded once per process.

    Loaded on the CPU in float32, without remote code; a Hub model is downloaded into the huggingface_hub
    cache (``HF_TOKEN`` from the environment). Concurrent callers of one key wait for a single first load. A load
    that failed raises the same error again at once, without loading: for :data:`RETRY_SECONDS`, and after them
    while the one background reload that the first call after them starts (a daemon thread) runs; when that reload
    succeeds, later calls get the pipeline; when it fails, its error replaces the previous one and the
    :data:`RETRY_SECONDS` count again from then. So a retry never holds a caller (a ``/predict`` waited for the load,
    about 23 s against an unreachable Hub, and every request of the project queued behind it).

    Args:
        task: A key of :data:`TASKS`.
        model: Hub id or local directory.
        revision: Branch, tag or commit of a Hub model, or ``None``.

    Returns:
        The ``transformers.Pipeline``.

    Raises:
        OSError: When the model cannot be downloaded or read (transformers' and huggingface_hub's errors), now or at
            the last try.
        ValueError: When the model does not fit the task.
    """
    return _loaded(task, model, revision).pipe


def _loaded(task: str, model: str, revision: str | None, threads: int = 0) -> _Loaded:
    if threads > 0:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    key = (task, model, revision)
    with _PIPELINES_LOCK:
        entry = _PIPELINES.get(key)
        if entry is not None:
            return entry
        _raise_failure(key)
        lock = _LOADING.setdefault(key, threading.Lock())
    with lock:  # the first load of a key: its callers wait for the one load
        with _PIPELINES_LOCK:
            entry = _PIPELINES.get(key)
            if entry is not None:
                return entry
            _raise_failure(key)
        return _load(key)


def _raise_failure(key: tuple) -> None:
    """Raise the remembered load failure of ``key``, if any, after starting its background reload when
    :data:`RETRY_SECONDS` have passed and none runs. Called with ``_PIPELINES_LOCK`` held."""
    failed = _LOAD_FAILURES.get(key)
    if failed is None:
        return
    when, exc = failed
    if time.monotonic() - when >= RETRY_SECONDS and key not in _RELOADING:
        _RELOADING.add(key)
        threading.Thread(target=_reload, args=(key,), name=f"labelhub-reload-{key[1]}"[:60], daemon=True).start()
    raise exc.with_traceback(None)  # raised again and again: its traceback would grow by each caller's frames


def _reload(key: tuple) -> None:
    """The background reload of a key whose load failed (see :func:`load_pipeline`)."""
    try:
        with _PIPELINES_LOCK:
            lock = _LOADING.setdefault(key, threading.Lock())
        with lock:
            with _PIPELINES_LOCK:
                if key in _PIPELINES or key not in _LOAD_FAILURES:  # loaded, or the caches cleared, meanwhile
                    return
            try:
                _load(key)
            except Exception as exc:  # noqa: BLE001 (remembered by _load; the callers raise it, the project logs it)
                log.info("the %s pipeline of %r%s still cannot be loaded (%s: %s); tried again after %.0f s",
                         key[0], key[1], f"@{key[2]}" if key[2] else "", type(exc).__name__, one_line(exc, 200),
                         RETRY_SECONDS)
    finally:
        with _PIPELINES_LOCK:
            _RELOADING.discard(key)


def _load(key: tuple) -> _Loaded:
    """Load the pipeline of ``key`` (the caller holds its ``_LOADING`` lock); a failure is remembered and raised."""
    task, model, revision = key
    started = time.monotonic()
    try:
        with _IMPORT_LOCK:  # transformers' lazy module is not safe to import from two threads at once
            import torch
            from transformers import pipeline

            library_logs_through_root()  # transformers' own stderr handler would skip the redaction

        pipe = pipeline(task, model=model, revision=revision, device="cpu", dtype=torch.float32,
                        trust_remote_code=False)
    except Exception as exc:
        with _PIPELINES_LOCK:
            _LOAD_FAILURES[key] = (time.monotonic(), exc)
        raise
    entry = _Loaded(pipe)
    with _PIPELINES_LOCK:
        _PIPELINES[key] = entry
        _LOAD_FAILURES.pop(key, None)
        _LOADING.pop(key, None)
    log.info("loaded the %s pipeline of %r%s in %.1f s", task, model, f"@{revision}" if revision else "",
             time.monotonic() - started)
    return entry


def clear_caches() -> None:
    """Forget loaded pipelines, read configs and remembered failures (for tests, or after a model changed)."""
    with _PIPELINES_LOCK:
        _PIPELINES.clear()
        _LOAD_FAILURES.clear()
    with _CONFIG_LOCK:
        _CONFIGS.clear()
        _CONFIG_FAILURES.clear()
    forget()


# --- labels ---------------------------------------------------------------------------------------
class LabelMapper:
    """Maps a model's labels onto a control's labels: explicit map, then exact, then case-insensitive.

    Args:
        labels: The control's labels (https://labelstud.io/tags/choices, .../labels), in config order.
        explicit: ``(model label, config label or None)`` pairs (``labels`` in the parameters). A target that is
            not a label of the control (nor one ignoring case) is logged once and ignored (:class:`PipelineHead`
            refuses such a map before it builds its mapper).
        context: Names the model and control in the log (``"model 'x' → <Choices name='label'>"``).

    Example:
        >>> m = LabelMapper(["Cat", "Dog"], [("tabby, tabby cat", "Cat")])
        >>> m("tabby, tabby cat"), m("dog"), m("car")
        ('Cat', 'Dog', None)
    """

    def __init__(self, labels: Sequence[str], explicit: Sequence[tuple[str, str | None]] = (), context: str = ""):
        self.labels = tuple(labels)
        self.context = context
        self._unmapped: dict[str, None] = {}
        self._folded = {}
        for label in self.labels:
            self._folded.setdefault(label.casefold(), label)
        self._explicit: dict[str, str | None] = {}
        for source, target in explicit:
            resolved = None if target is None else self._match(target)
            if target is not None and resolved is None:
                log_once(log, ("pipelines: target", context, target), "%s: 'labels' maps %r to %r, which is not a "
                         "label of the control (it has %s); ignored", context, source, target, list(self.labels))
                continue
            self._explicit[source] = resolved

    def _match(self, label: str) -> str | None:
        if label in self.labels:
            return label
        return self._folded.get(label.casefold())

    def __call__(self, model_label: str) -> str | None:
        """The control label of ``model_label``, or ``None`` (dropped; named in the log by :meth:`report`).

        Args:
            model_label: A label the model predicted (or a zero-shot query).

        Returns:
            A label of the control, or ``None``.
        """
        if model_label in self._explicit:
            return self._explicit[model_label]
        label = self._match(model_label)
        if label is None:
            self._unmapped.setdefault(model_label, None)
        return label

    def report(self) -> None:
        """Log the model labels dropped since the last report that were never logged before, in one line.

        Each label is named once per process and control (an ImageNet classifier mapped onto two choices gives
        one line, not 998).
        """
        new = [label for label in self._unmapped if first_time(("pipelines: unmapped", self.context, label))]
        self._unmapped.clear()
        if new:
            shown = ", ".join(repr(label) for label in new[:20])
            if len(new) > 20:
                shown += f" and {len(new) - 20} more"
            log.warning("%s: the model's label%s %s match%s no label of the control (%s) exactly, ignoring case, "
                        "or in 'labels'; %s predictions are dropped", self.context, "s" if len(new) > 1 else "",
                        shown, "" if len(new) > 1 else "es", ", ".join(self.labels[:20]),
                        "their" if len(new) > 1 else "its")

    def queries(self) -> list[str]:
        """The zero-shot text queries: per control label, the explicit keys that map to it, else the label.

        Returns:
            Queries in config order, without duplicates.
        """
        out: list[str] = []
        for label in self.labels:
            keys = [k for k, v in self._explicit.items() if v == label]
            out.extend(keys or [label])
        return list(dict.fromkeys(out))


# --- the head -------------------------------------------------------------------------------------
class PipelineHead(ControlHead):
    """A Hugging Face model (Hub id or local path) answering one control tag, without annotations.

    See the module docstring for the parameters, the controls it answers and the result formats.

    Args:
        control: The control tag.
        host: The project model (unused: the pipeline brings its own model).
        params: The control's parameters (``model``, ``task``, ``threshold``, ``labels``, ``revision``, ``nms``,
            ``hypothesis_template``).
        controls: Every control of the label config (unused).

    Raises:
        PipelineParamsError: When the parameters are malformed (see :meth:`PipelineSpec.from_params`), or a
            ``labels`` value is neither ``null`` nor a label of the control (nor one ignoring case): the message
            names the value and the control's labels. For the zero-shot tasks the values are the control's labels
            too (the keys are the text queries), so the same rule holds; a map written the other way round
            (``{"Cat": "a photo of a cat"}``, a key that is a label) is named in the message. Such a value used to
            be only logged, and a single choice then went to the best remaining label whatever its probability.
    """

    name = "pipeline"
    learns = False

    def __init__(self, control: "ControlSpec", host: Any, params: Mapping[str, Any] | None = None,
                 controls: Sequence["ControlSpec"] = ()):
        super().__init__(control, host, params, controls)
        self.spec = PipelineSpec.from_params(self.params)
        self.task = resolve_task(self.spec)
        self.model, self.revision = self.spec.source
        self._check_label_targets()
        self.mapper = LabelMapper(control.labels, self.spec.labels,
                                  context=f"model {self.spec.model!r} → <{control.tag} name={control.from_name!r}>")

    def _check_label_targets(self) -> None:
        """Refuse a ``labels`` value that is not ``null`` nor a label of the control (see the class docstring)."""
        labels = self.control.labels
        folded = {label.casefold() for label in labels}
        bad = [(k, v) for k, v in self.spec.labels if v is not None and v not in labels and v.casefold() not in folded]
        if not bad:
            return
        key, value = bad[0]
        zero_shot = (self.task or "").startswith("zero-shot")
        hint = ""
        if zero_shot and key.casefold() in folded:
            hint = (f"; for the {self.task} task the keys are the text queries and the values the control's labels "
                    f"(did you mean {{{json.dumps(value)}: {json.dumps(key)}}}?)")
        shown = ", ".join(repr(label) for label in labels[:20]) + (f" and {len(labels) - 20} more"
                                                                    if len(labels) > 20 else "")
        raise PipelineParamsError(
            f"'labels' maps {key!r} to {value!r}, which is not a label of <{self.control.tag} "
            f"name={self.control.from_name!r}> (it has {shown}); map it to one of them, or to null to drop it{hint}")

    @classmethod
    def supports(cls, control: "ControlSpec", params: Mapping[str, Any]) -> bool:
        """Whether ``params`` name a model whose task fits ``control`` (:func:`task_fits`).

        Args:
            control: The control tag.
            params: The control's parameters.

        Returns:
            ``False`` without a ``model``; when the task cannot be told (``config.json`` unreadable or of an
            unsupported architecture: logged); when no task fits the control (a ``<TextArea>``, a ``perRegion``
            control, ``<Choices>`` over ``<HyperText>``: other heads answer it, nothing logged); or when the task
            read from ``config.json`` does not fit it (logged once as a warning naming the control, the task and
            the tasks that fit; another head may answer the control).

        Raises:
            PipelineParamsError: When the parameters are malformed (see :meth:`PipelineSpec.from_params`), or when
                ``task`` is given and does not fit a control some task fits (``'task' 'token-classification' does
                not fit <Choices name='sentiment'> over <Text>: the tasks that fit it are text-classification,
                zero-shot-classification``): an explicit task is the user's statement about the control, so it is
                refused at ``/setup`` rather than leaving the control with empty predictions. A ``task`` at the top
                level of the parameters applies to every control, so it must fit each control a Hub model could
                answer; for a config with controls of several kinds, give ``model`` and ``task`` in a ``controls``
                entry.
        """
        if not params.get("model"):
            return False
        spec = PipelineSpec.from_params(params)
        task = resolve_task(spec)
        if task is None:
            return False
        if task_fits(task, control):
            return True
        fit = [t for t in TASKS if task_fits(t, control)]
        if not fit:
            return False
        where = f"<{control.tag} name={control.from_name!r}> over <{control.object_tag}>"
        if spec.task is not None:
            raise PipelineParamsError(
                f"'task' {task!r} does not fit {where}: the tasks that fit it are {', '.join(fit)} (a 'task' at the "
                f"top level applies to every control: give 'model' and 'task' in a 'controls' entry of the controls "
                f"it fits)")
        log_once(log, ("pipelines: misfit", spec.model, spec.revision, control.from_name),
                 "model %r: its task %s (read from its config.json) does not fit %s, which it does not answer "
                 "(the tasks that fit it are %s)", spec.model, task, where, ", ".join(fit))
        return False

    @property
    def threshold(self) -> float:
        """The minimum score: the ``threshold`` parameter, else the task's default (:data:`DEFAULT_THRESHOLDS`)."""
        if self.spec.threshold is not None:
            return self.spec.threshold
        if self.control.tag == "Choices" and self.control.multiple:
            return MULTIPLE_CHOICE_THRESHOLD
        return DEFAULT_THRESHOLDS.get(self.task or "", 0.0)

    @property
    def _library_threshold(self) -> float:
        """What transformers' post-processing gets: it keeps scores *above* it, this head those *at or above*."""
        return max(0.0, self.threshold - 1e-6)

    @property
    def nms(self) -> float | None:
        """The IoU of box suppression, or ``None`` for none (``nms`` parameter, else :data:`DEFAULT_NMS`)."""
        if self.spec.nms is False:
            return None
        if self.spec.nms is not None:
            return float(self.spec.nms)
        return DEFAULT_NMS.get(self.task or "")

    def identity(self) -> Any:
        """The head, its control and labels, the model, revision, task and every parameter that shapes results, and
        the task score's rule (:data:`~labelhub.backend.models.heads.TASK_SCALE`: its probabilities count as
        ``p ** 2 / 4``, so the version moved with the rule; for a single Choices also :data:`CHOICE_MARGIN`, its
        margin times ``TYPICAL`` since, so its version moved again). The ``labels`` pairs are sorted by model label
        (:attr:`PipelineSpec.labels`): one map gives one identity whatever its key order."""
        return [self.name, self.control.from_name, list(self.control.labels), self.control.multiple, self.task,
                self.model, self.revision, self.threshold, [list(p) for p in sorted(self.spec.labels)], self.nms,
                self.spec.hypothesis_template, TASK_SCALE, *([CHOICE_MARGIN] if self._single_choice else [])]

    @property
    def _single_choice(self) -> bool:
        return self.control.tag == "Choices" and not self.control.multiple

    def control_score(self, answered: Sequence[dict], kept: Sequence[dict]) -> float:
        """The control's score of one task on the task score's scale (:mod:`labelhub.backend.models.heads`, **Task
        score**; :meth:`ControlHead.control_score`).

        For a single Choices: the margin ``m`` between the two most probable of the control's labels (after the
        ``labels`` map; a label the model did not name counts 0), which :meth:`predict` gives with the task's result
        (``answered.margin``), times :data:`~labelhub.backend.models.heads.TYPICAL`, the learned single choice's scale
        (its margin times a novelty factor of 1/4 at the median distance): ``m / 4``, 0 at even odds, 0.25 when
        sure. ``p ** 2 / 4`` of the top probability, which the other controls keep, put a 2-class model at even odds
        (``p = 0.5``) at 0.0625, where a learned choice with a margin of 0.25 lies, so in a project of a learned and
        a Hub-model Choices the Hub model's control was not the first of its unsure tasks. The result's ``score``
        stays the choice's probability (Label Studio shows it).

        For multiple choice and regions: ``p ** 2 / 4`` of the kept results' mean probability.

        Args:
            answered: One task's results of this control as :meth:`predict` answered them.
            kept: Those the project keeps (threshold, current labels); not empty.

        Returns:
            The score the task score takes the lowest of, in [0, ``TYPICAL``].
        """
        margin = getattr(answered, "margin", None)
        if self._single_choice and margin is not None:
            return min(1.0, max(0.0, margin)) * TYPICAL
        return super().control_score(answered, kept)

    def task_score(self, score: float) -> float:
        """A probability ``score`` on the task score's scale without its task's results (a
        :class:`~labelhub.backend.models.heads.Withheld`'s): for a single Choices ``max(2 * score - 1, 0) / 4``, the
        margin when the rest of the probability is on one other label (exact for two labels, else the least the
        margin can be; see :meth:`control_score`); else ``p ** 2 / 4`` (:meth:`ControlHead.task_score`).
        """
        if not self._single_choice:
            return super().task_score(score)
        p = min(1.0, max(0.0, float(score)))
        return max(2.0 * p - 1.0, 0.0) * TYPICAL

    def warmup(self) -> None:
        """Load the pipeline (downloads a Hub model into the huggingface_hub cache the first time)."""
        if self.task is not None:
            _loaded(self.task, self.model, self.revision, self._threads)

    @property
    def _threads(self) -> int:
        """torch intra-op threads: ``LABELHUB_TORCH_THREADS`` (0: torch's default, also without a host)."""
        return int(getattr(getattr(self.host, "settings", None), "torch_threads", 0) or 0)

    def predict(self, inputs: Sequence[TaskInput], fitted: Any | None = None) -> list[list[dict]]:
        """The regions of each task (see :meth:`ControlHead.predict` and the module docstring).

        Args:
            inputs: The tasks' loaded images (PIL RGB) or texts.
            fitted: Ignored (the head does not learn).

        Returns:
            Per input, Label Studio results of this control, each with a ``score`` in [0, 1].

        Raises:
            OSError: When the model cannot be loaded (see :func:`load_pipeline`).
        """
        if not inputs or self.task is None:
            return [[] for _ in inputs]
        entry = _loaded(self.task, self.model, self.revision, self._threads)
        run: Callable[[Any, Sequence[TaskInput]], list[list[dict]]] = getattr(self, "_" + self.task.replace("-", "_"))
        with entry.lock:
            try:
                return run(entry.pipe, inputs)
            finally:
                self.mapper.report()

    # choices --------------------------------------------------------------------------------------
    def _choices(self, outputs: Sequence[Sequence[tuple[str, float]]], add: bool) -> list[list[dict]]:
        """Turn ``(model label, score)`` lists into one choices result per input."""
        results = []
        for scored in outputs:
            per_label: dict[str, float] = {}
            for model_label, score in scored:
                label = self.mapper(model_label)
                if label is None:
                    continue
                before = per_label.get(label, 0.0)
                per_label[label] = before + float(score) if add else max(before, float(score))
            per_label = {k: min(1.0, max(0.0, float(v))) for k, v in per_label.items()}
            threshold = self.threshold
            if self.control.multiple:
                chosen = [label for label in self.control.labels if per_label.get(label, -1.0) >= threshold]
                score = sum(per_label[label] for label in chosen) / len(chosen) if chosen else 0.0
            else:
                best = max(per_label, key=per_label.get, default=None)
                chosen = [best] if best is not None and per_label[best] >= threshold else []
                score = per_label[best] if chosen else 0.0
                if chosen:  # the margin of the task score (see control_score)
                    top2 = sorted((per_label.get(label, 0.0) for label in self.control.labels), reverse=True)[:2]
                    results.append(_Margin([self.result({"choices": chosen}, score)],
                                           top2[0] - (top2[1] if len(top2) > 1 else 0.0)))
                    continue
            results.append([self.result({"choices": chosen}, score)] if chosen else [])
        return results

    @staticmethod
    def _softmax(pipe: Any) -> bool:
        config = pipe.model.config
        return config.problem_type not in ("multi_label_classification", "regression") and config.num_labels > 1

    def _image_classification(self, pipe: Any, inputs: Sequence[TaskInput]) -> list[list[dict]]:
        outputs = pipe([i.media for i in inputs], top_k=pipe.model.config.num_labels,
                       batch_size=min(BATCH_SIZE, len(inputs)))
        return self._choices([[(o["label"], o["score"]) for o in out] for out in outputs], add=self._softmax(pipe))

    def _text_classification(self, pipe: Any, inputs: Sequence[TaskInput]) -> list[list[dict]]:
        outputs = pipe([i.media for i in inputs], top_k=None, truncation=True, batch_size=min(BATCH_SIZE, len(inputs)))
        return self._choices([[(o["label"], o["score"]) for o in out] for out in outputs], add=self._softmax(pipe))

    def _zero_shot_kwargs(self) -> dict:
        return {"hypothesis_template": self.spec.hypothesis_template} if self.spec.hypothesis_template else {}

    def _zero_shot_image_classification(self, pipe: Any, inputs: Sequence[TaskInput]) -> list[list[dict]]:
        queries = self.mapper.queries()
        outputs = pipe([i.media for i in inputs], candidate_labels=queries, batch_size=min(BATCH_SIZE, len(inputs)),
                       **self._zero_shot_kwargs())
        return self._choices([[(o["label"], o["score"]) for o in out] for out in outputs], add=True)

    def _zero_shot_classification(self, pipe: Any, inputs: Sequence[TaskInput]) -> list[list[dict]]:
        queries = self.mapper.queries()
        multi = self.control.multiple or len(queries) == 1
        outputs = pipe([i.media for i in inputs], candidate_labels=queries, multi_label=multi,
                       batch_size=BATCH_SIZE, **self._zero_shot_kwargs())
        if isinstance(outputs, dict):
            outputs = [outputs]
        return self._choices([list(zip(out["labels"], out["scores"])) for out in outputs], add=not multi)

    # spans ----------------------------------------------------------------------------------------
    def _token_classification(self, pipe: Any, inputs: Sequence[TaskInput]) -> list[list[dict]]:
        texts = [str(i.media) for i in inputs]
        kwargs: dict[str, Any] = {"aggregation_strategy": "simple"}
        max_length = getattr(pipe.tokenizer, "model_max_length", 0) or 0
        if getattr(pipe.tokenizer, "is_fast", False) and 16 < max_length < 100_000:
            kwargs["stride"] = min(128, max_length // 4)  # long texts: overlapping windows, merged by the pipeline
        outputs = pipe(texts, batch_size=min(BATCH_SIZE, len(texts)), **kwargs)
        results = []
        for text, entities in zip(texts, outputs):
            regions = []
            for entity in entities:
                start, end = entity.get("start"), entity.get("end")
                score = float(entity.get("score", 0.0))
                if start is None or end is None or not 0 <= start < end <= len(text) or score < self.threshold:
                    continue
                label = self.mapper(str(entity.get("entity_group", entity.get("entity", ""))))
                if label is None:
                    continue
                regions.append(self.result({"start": int(start), "end": int(end), "text": text[start:end],
                                            "labels": [label]}, min(1.0, score), id=region_id()))
            results.append(regions)
        return results

    # boxes ----------------------------------------------------------------------------------------
    def _boxes(self, size: tuple[int, int], detections: Sequence[tuple[str, float, Sequence[float]]]) -> list[dict]:
        """Map, suppress and convert ``(model label, score, (x0, y0, x1, y1) px)`` detections of one image."""
        kept = []
        for model_label, score, box in detections:
            if score < self.threshold:
                continue
            label = self.mapper(model_label)
            if label is None:
                continue
            value = image_region(size, tuple(float(v) for v in box))
            if value["width"] <= 0 or value["height"] <= 0:
                continue
            kept.append((label, min(1.0, float(score)), value))
        if self.nms is not None and len(kept) > 1:
            kept = _suppress(kept, self.nms)
        w, h = size
        return [self.result({**value, "rectanglelabels": [label]}, score, id=region_id(), original_width=w,
                            original_height=h, image_rotation=0) for label, score, value in kept]

    def _object_detection(self, pipe: Any, inputs: Sequence[TaskInput]) -> list[list[dict]]:
        outputs = pipe([i.media for i in inputs], threshold=self._library_threshold,
                       batch_size=min(BATCH_SIZE, len(inputs)))
        return [self._boxes(item.size, [(d["label"], d["score"], _box(d["box"])) for d in out])
                for item, out in zip(inputs, outputs)]

    def _zero_shot_object_detection(self, pipe: Any, inputs: Sequence[TaskInput]) -> list[list[dict]]:
        queries = self.mapper.queries()
        if getattr(pipe.model.config, "model_type", "") in ("owlvit", "owlv2"):
            return self._owl(pipe, inputs, queries)
        outputs = pipe([i.media for i in inputs], candidate_labels=queries, threshold=self._library_threshold)
        return [self._boxes(item.size, [(d["label"], d["score"], _box(d["box"])) for d in out])
                for item, out in zip(inputs, outputs)]

    def _owl(self, pipe: Any, inputs: Sequence[TaskInput], queries: list[str]) -> list[list[dict]]:
        """OWL-ViT / OWLv2: every query in one forward pass per batch of images (the pipeline runs one per query)."""
        import torch

        text = pipe.tokenizer(queries, padding=True, truncation=True, return_tensors="pt")
        results: list[list[dict]] = []
        for start in range(0, len(inputs), DETECTION_BATCH):
            batch = inputs[start:start + DETECTION_BATCH]
            pixels = pipe.image_processor(images=[i.media for i in batch], return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                outputs = pipe.model(input_ids=text["input_ids"].repeat(len(batch), 1),
                                     attention_mask=text["attention_mask"].repeat(len(batch), 1),
                                     pixel_values=pixels.to(pipe.model.dtype))
            sizes = [(i.size[1], i.size[0]) for i in batch]
            found = pipe.image_processor.post_process_object_detection(
                outputs=outputs, threshold=self._library_threshold, target_sizes=sizes)
            for item, det in zip(batch, found):
                detections = zip(det["scores"].tolist(), det["labels"].tolist(), det["boxes"].tolist())
                results.append(self._boxes(item.size, [(queries[q], s, box) for s, q, box in detections]))
        return results


class _Margin(list):
    """One task's single-choice result (a list of one result) with the margin between the two most probable of the
    control's labels, for :meth:`PipelineHead.control_score`."""

    def __init__(self, results: list[dict], margin: float):
        super().__init__(results)
        self.margin = float(margin)


def _box(box: Mapping[str, float]) -> tuple[float, float, float, float]:
    return (box["xmin"], box["ymin"], box["xmax"], box["ymax"])


def _suppress(kept: list[tuple[str, float, dict]], iou: float) -> list[tuple[str, float, dict]]:
    """Per-label non-maximum suppression (OpenCV's ``NMSBoxesBatched``) on percent boxes."""
    import cv2

    boxes = [[v["x"], v["y"], v["width"], v["height"]] for _, _, v in kept]
    labels = sorted({label for label, _, _ in kept})
    classes = [labels.index(label) for label, _, _ in kept]
    keep = cv2.dnn.NMSBoxesBatched(boxes, [s for _, s, _ in kept], classes, 0.0, iou)
    order = sorted((int(i) for i in getattr(keep, "flatten", lambda: keep)()), key=lambda i: -kept[i][1])
    return [kept[i] for i in order]
