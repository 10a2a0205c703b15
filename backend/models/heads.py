"""Control heads: one predictor per control tag, the parts :class:`~labelhub.backend.models.project.ProjectModel` combines.

A label config pairs control tags with object tags (https://labelstud.io/tags/). The default model answers
each control tag it supports with one *head*, and puts the regions of every head into one prediction per
task (https://labelstud.io/guide/predictions). A head is a small class:

- ``__init__(control, host, params, controls)``: the :class:`~labelhub.label_config.ControlSpec` it answers,
  the :class:`HeadHost` (settings, embedders), the project's parameters (``extra_params`` from Label
  Studio's Connect Model dialog over ``LABELHUB_MODEL_PARAMS``), and every control of the config (a
  per-region head looks for the Rectangle control its regions belong to). It must be fast (no model
  loading: that happens on first :meth:`ControlHead.fit`/:meth:`ControlHead.predict`, or in
  :meth:`ControlHead.warmup`).
- :meth:`ControlHead.fit` turns :class:`Example` s (a task's media and its latest annotation's results) into a
  picklable fitted state, or ``None`` while there is too little to learn from. It is a function of its
  examples and :meth:`ControlHead.identity`: the project model skips it when neither changed, and
  stores what it returns with joblib so every worker loads the same fit.
- :meth:`ControlHead.predict` answers a list of :class:`TaskInput` with the regions of each task, in Label
  Studio's result format for the control (``from_name``, ``to_name``, ``type``, ``value``, plus
  ``original_width``/``original_height`` for image regions), each with a ``score`` in [0, 1].

**threshold.** The ``threshold`` parameter (:mod:`labelhub.backend.models.params`) is the lowest score a region is
kept with, for every head: the project model drops each result scored below it, with every result sharing its ``id``
(:meth:`ControlHead.kept`). A head whose ``score`` is no probability says otherwise: the Choices head compares the
threshold with the choice's probability in its :meth:`~ControlHead.predict` (its score is an uncertainty order) and
answers a task whose choices all fall below it with :class:`Withheld` (no result, and the score the task's
prediction still counts). Unset (``None``), nothing is dropped.

**Task score.** A prediction's task ``score`` is the lowest of its controls' scores on one scale, the single-choice
score's (:mod:`labelhub.backend.models.choices`: an uncertainty order, 0 a tie between two choices, about
:data:`TYPICAL` = 0.25 for a sure task typical of the most annotated choice, at most 1). Each head maps its control's
score (the mean of one task's results' ``score``, or a :class:`Withheld`'s) onto it with
:meth:`ControlHead.task_score` (:meth:`ControlHead.control_score` gives it the results); the results keep their own
``score``. The heads' scales differ: the single-choice
score is a margin times a novelty factor (1/4 at the median distance from the choice's centroid), the spans', boxes',
OCR's and Hugging Face models' are probabilities, so a sure region scores about 1 and even an unsure one lies above
most choices' scores: the plain lowest was the choice's on every task of a mixed project (an audit of Choices +
Labels after 30 annotations: choices 0.000-0.224, each task's lowest span 0.228-0.982, 0 of 135 tasks ordered by
their spans). A probability ``p`` is mapped as a choice would score with that confidence at the median distance from the
most annotated choice: ``p ** 2 / 4``. ``p ** 2`` stands for the margin, which ``p`` bounds but does not give: the
margin between the answer and the next best lies between ``max(2p - 1, 0)`` (all the rest on one alternative) and
``p`` (the rest spread thin), and ``p ** 2`` lies between them, equal to both at ``p = 1`` and to ``p`` at 0, with
the slope of ``2p - 1`` at 1. The map depends on the
score alone (per task, no other tasks, no state) and rises strictly, so the task order of a project with one
control, or with controls of one kind, is unchanged; the single-choice score maps to itself (its values too are
unchanged), a multiple choice's mean confidence ``c`` (of its binary regressions) to its exact mean margin times
:data:`TYPICAL`: ``(2c - 1) / 4``. The learned and OCR heads whose task score the rule changed name it in their
identity (:data:`TASK_SCALE`), so their projects' ``model_version`` moved with it (the Hugging Face model head's
too). A Hugging Face model's single choice has since counted its known margin instead
(:meth:`ControlHead.control_score`; :mod:`labelhub.backend.models.pipelines`, **Task score of a single choice**).

Heads that answer without annotations (an OCR model, a Hugging Face model chosen by id) set
``learns = False``: they are asked to predict with ``fitted=None`` from the start.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from labelhub.backend.settings import Settings
    from labelhub.label_config import ControlSpec

__all__ = ["TaskInput", "Example", "HeadHost", "ControlHead", "Withheld", "region_id", "image_region", "task_options",
           "no_label_reason",
           "TYPICAL", "TASK_SCALE"]

#: The single-choice score of a sure task at the median distance from the most annotated choice's centroid
#: (margin 1, novelty factor ``(s / (s + s)) ** 2``, class balance 1): where the task score's scale puts a sure
#: control (see the module docstring, **Task score**).
TYPICAL = 0.25
#: In the :meth:`ControlHead.identity` of every head whose score :meth:`ControlHead.task_score` changes (all but a
#: single choice), since the rule came (2026-12-06): its ``model_version`` moves, so Label Studio never averages or
#: sorts predictions of the two scales as one version (``labelhub predict --missing`` re-predicts the old ones), and
#: the trainer refits it when it takes over (:meth:`labelhub.backend.events.Trainer.refit_changed`).
TASK_SCALE = "task score p**2/4"

@dataclass(frozen=True)
class TaskInput:
    """One task's object, loaded.

    Attributes:
        task: The Label Studio task (https://labelstud.io/guide/task_format): ``{"id", "data", ...}``.
        value: The task data's raw value for the object tag (the image URL, or the text / its URL): the
            key of embedding caches.
        media: The loaded object: a ``PIL.Image.Image`` in mode ``RGB`` for ``<Image>``, a ``str`` for
            ``<Text>``/``<HyperText>`` (fetched when ``valueType="url"``); ``None`` when it was not loaded
            because every head over it needs only its embedding and a cache had that (``embeddings``).
        embeddings: ``{embedder name: vector}`` found in the caches before loading (see
            :meth:`ControlHead.embedding_kind`); empty when the media was loaded.
    """

    task: dict
    value: str
    media: Any
    embeddings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of an image in pixels (what ``original_width``/``original_height`` report).

        Raises:
            AttributeError: When the media is not an image.
        """
        return self.media.size


@dataclass(frozen=True)
class Example:
    """What a head learns from: a task's object and its latest annotation.

    Attributes:
        input: The task's loaded object.
        results: Every result of the task's latest annotation (all controls, Label Studio's format:
            https://labelstud.io/guide/export#Label-Studio-JSON-format-of-annotated-tasks).
    """

    input: TaskInput
    results: tuple[dict, ...]

    def regions(self, from_name: str) -> list[dict]:
        """The results of one control tag.

        Args:
            from_name: The control tag's ``name``.

        Returns:
            The results whose ``from_name`` it is, in annotation order.
        """
        return [r for r in self.results if isinstance(r, dict) and r.get("from_name") == from_name]


class Withheld(list):
    """No result for one task, on purpose, with the score the control would have had: what a head answers when its
    ``threshold`` withholds the task's choice (:meth:`ControlHead.predict`). The project model puts no region in
    the prediction but counts ``score`` among the task's control scores (the task score is their lowest), so a
    task whose choice was withheld still sorts by its uncertainty.

    Args:
        score: The withheld result's score, in [0, 1].
    """

    def __init__(self, score: float):
        super().__init__()
        self.score = float(score)


class HeadHost(Protocol):
    """What a head may use of the project model (:class:`~labelhub.backend.models.project.ProjectModel` is one).

    Attributes:
        settings: The backend's :class:`~labelhub.backend.settings.Settings`.
    """

    settings: "Settings"

    def embedder(self, kind: str) -> Any:
        """The worker's :class:`~labelhub.backend.embedders.Embedder` for ``"image"`` or ``"text"`` (loads it)."""

    def embedder_spec(self, kind: str) -> str:
        """Which embedder :meth:`embedder` gives, without loading it (for :meth:`ControlHead.identity`)."""

    def embed(self, inputs: Sequence[TaskInput], kind: str) -> "np.ndarray":
        """Whole-object embeddings ``(len(inputs), dim)`` float32, through the worker's and project's caches."""


class ControlHead:
    """Base class of a head (see the module docstring).

    Args:
        control: The control tag it answers.
        host: The project model.
        params: The project's parameters for this control (``extra_params`` over ``LABELHUB_MODEL_PARAMS``,
            with the control's own ``controls[from_name]`` entry merged in).
        controls: Every control of the label config, in config order.

    Attributes:
        name: A short identifier of the head's kind (part of logs and of the model's identity).
        learns: ``False`` when the head answers without annotations (``fitted`` is then always ``None``).
        fit_note: What the last :meth:`fit` left out and why, for the log (``""`` by default).
    """

    name = "head"
    learns = True
    #: Set by :meth:`fit`: why examples were left out or nothing was learned (``""``: nothing to say); the
    #: project model puts it in the fit's log line, e.g. ``"4 of 5 annotations hold only choices the label
    #: config lacks: 'rotten'"``.
    fit_note = ""

    def __init__(self, control: "ControlSpec", host: HeadHost, params: Mapping[str, Any] | None = None,
                 controls: Sequence["ControlSpec"] = ()):
        self.control = control
        self.host = host
        self.params = dict(params or {})
        self.controls = tuple(controls)

    @classmethod
    def supports(cls, control: "ControlSpec", params: Mapping[str, Any]) -> bool:
        """Whether this head can answer ``control`` with ``params`` (checked before it is built).

        Returns:
            ``True`` by default: the project model picks heads by control and object tag.
        """
        return True

    @classmethod
    def refusal(cls, control: "ControlSpec", params: Mapping[str, Any]) -> str | None:
        """Why :meth:`supports` refuses ``control``, in words for the log and for ``/setup``'s refusal of a label
        config no head answers (:class:`labelhub.errors.LabelConfigError`), or ``None`` when there is nothing more
        to say than "no head for it". Asked only when :meth:`supports` answered ``False``; the pair of tags being
        one this head answers, the refusal must not read as if the pair itself were unsupported.

        Returns:
            By default, for a ``perRegion="true"`` control (https://labelstud.io/tags/choices: it answers each
            region, its result carrying the region's ``id``): ``'perRegion="true": a choice per region, not
            answered'`` for a ``<Choices>``, the control's own tag for another (``a <TextArea> per region``); else
            ``None``.
        """
        if control.per_region:
            what = "a choice" if control.tag == "Choices" else f"a <{control.tag}>"
            return f'perRegion="true": {what} per region, not answered'
        return None

    def unanswered(self) -> str | None:
        """Why this head, once built over the config's controls, leaves its control unanswered, or ``None``.

        :meth:`supports` sees one control; some reasons need the others (a per-region TextArea whose image has
        only RectangleLabels of object classes, :func:`labelhub.backend.models.transcription.box_control_for`).
        The project model drops a head that gives a reason and logs the reason once.

        Returns:
            ``None`` by default (the head answers its control).
        """
        return None

    def claims(self) -> tuple[str, ...]:
        """The ``from_name`` s whose regions this head answers (its own control's by default).

        A per-region TextArea head that also draws the Rectangle regions it transcribes claims that
        Rectangle control too, so that no other head answers it.
        """
        return (self.control.from_name,)

    def identity(self) -> Any:
        """JSON-serializable: what besides the examples decides a fit (embedder, hyperparameters).

        A change refits from the same examples and changes the model version.
        """
        return [self.name, self.control.from_name, sorted(self.control.labels)]

    def warmup(self) -> None:
        """Load what :meth:`predict` needs (called in the background after ``/setup``)."""

    def embedding_kind(self) -> str | None:
        """``"image"`` or ``"text"`` when :meth:`fit` and :meth:`predict` read only the whole-object embeddings of
        that kind (:meth:`HeadHost.embed`), never ``TaskInput.media``; ``None`` (the default) when they read it.

        Then the project model loads a task's media only if no cache holds its embedding (for a prediction: when
        every head over the object tag says the same kind), so neither a refit nor a re-prediction downloads or
        embeds a task again.
        """
        return None

    def fit(self, examples: Sequence[Example]) -> Any | None:
        """Learn from the annotated tasks.

        Args:
            examples: One per annotated task whose media loaded, sorted by task id.

        Returns:
            A picklable fitted state for :meth:`predict`, or ``None`` while there is too little to learn.
        """
        return None

    def predict(self, inputs: Sequence[TaskInput], fitted: Any | None) -> list[list[dict]]:
        """The regions of each task.

        Args:
            inputs: The tasks' loaded objects.
            fitted: What :meth:`fit` returned last (``None`` for heads that do not learn).

        Returns:
            One list of results per input, in Label Studio's format for the control, each with a
            ``score`` in [0, 1]; ``[]`` when the head finds nothing.
        """
        return [[] for _ in inputs]

    @property
    def threshold(self) -> float | None:
        """The ``threshold`` parameter (the lowest score a region is kept with), ``None`` when unset."""
        value = self.params.get("threshold")
        return None if value is None else float(value)

    def kept(self, regions: list[dict]) -> list[dict]:
        """``regions`` (one task's, from :meth:`predict`) without those scored below :attr:`threshold`, nor the
        results sharing their ``id`` (an OCR line's rectangle and text, a box's alternative label keep their own
        ids); ``regions`` itself when the threshold is unset. A head whose ``score`` is no probability overrides
        this and applies the threshold in :meth:`predict` (the Choices head).

        Args:
            regions: One task's results, each with a ``score`` in [0, 1].

        Returns:
            The results kept, in their order.
        """
        threshold = self.threshold
        if threshold is None or not regions:
            return regions
        dropped = {r.get("id") for r in regions if float(r.get("score", 0.0)) < threshold} - {None}
        return [r for r in regions if float(r.get("score", 0.0)) >= threshold and r.get("id") not in dropped]

    def control_score(self, answered: Sequence[dict], kept: Sequence[dict]) -> float:
        """This control's score of one task on the task score's scale (the module docstring, **Task score**):
        :meth:`task_score` of the mean ``score`` of the results kept. A head that knows more of the task than its
        results' scores overrides it (a Hugging Face model's single choice: the margin between its two most probable
        labels, :meth:`labelhub.backend.models.pipelines.PipelineHead.control_score`).

        Args:
            answered: One task's results of this control as :meth:`predict` answered them (the object it returned).
            kept: Those the project keeps (:meth:`kept`, then the labels the current label config has); not empty.

        Returns:
            The score the task score takes the lowest of, in [0, :data:`TYPICAL`].
        """
        return self.task_score(sum(float(r.get("score", 0.0)) for r in kept) / len(kept))

    def task_score(self, score: float) -> float:
        """This control's score on the task score's scale (the module docstring, **Task score**): for a head whose
        ``score`` is a probability ``p``, ``p ** 2 * TYPICAL``. A head whose score is something else overrides it
        (the Choices head).

        Args:
            score: The control's score on one task: the mean of its results' ``score`` (in [0, 1]; clipped), or a
                :class:`Withheld`'s.

        Returns:
            The score the task score takes the lowest of, in [0, :data:`TYPICAL`]; it rises strictly with ``score``.
        """
        p = min(1.0, max(0.0, float(score)))
        return p * p * TYPICAL

    # helpers for subclasses -------------------------------------------------------------------------
    def result(self, value: dict, score: float, **extra: Any) -> dict:
        """One result of this control: ``{"from_name", "to_name", "type", "value", "score", **extra}``."""
        return {"from_name": self.control.from_name, "to_name": self.control.to_name, "type": self.control.type,
                "value": value, "score": float(score), **extra}


def task_options(task: Any, control: "ControlSpec") -> set[str] | None:
    """The labels a control with dynamic labels offers on one task, or ``None`` for a control without them.

    A ``<Choices>`` or ``<Labels>`` tag with ``value="$options"`` takes its choices from the task's data
    (https://labelstud.io/tags/choices: "Choices can have dynamic value to load labels from task"): a list of
    options, each ``{"value": ..., "alias": ..., "children": [...]}`` (every parameter goes to the ``<Choice>`` it
    makes; a result holds the alias when one is set, https://labelstud.io/tags/choice). Plain strings are read as
    values, and nested ``children`` are walked.

    Args:
        task: A Label Studio task (anything: a malformed one offers nothing).
        control: The control tag.

    Returns:
        ``None`` when the control's ``value`` is not a ``$key``; else the task's options (empty when the task has
        no such list).
    """
    from labelhub.label_config import data_value

    ref = str(control.attrs.get("value") or "")
    if not ref.startswith("$"):
        return None
    data = task.get("data") if isinstance(task, dict) else None
    found: set[str] = set()
    stack = [data_value(data, ref[1:])] if isinstance(data, dict) else []
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            name = item.get("alias") or item.get("value")
            if isinstance(name, (str, int, float)) and not isinstance(name, bool):
                found.add(str(name))
            stack.append(item.get("children"))
    return found


def no_label_reason(control: "ControlSpec", head: str) -> str:
    """Why ``head`` (``"boxes"``, ``"spans"``: the heads that learn only the labels a config writes) refuses a control
    with no ``<Label>`` of its own: its labels are dynamic (``value="$labels"``, each task's data lists them,
    https://labelstud.io/tags/labels), or it has none at all. For ``/setup``'s refusal
    (:meth:`ControlHead.refusal`)."""
    value = str(control.attrs.get("value") or "")
    if value.startswith("$"):
        return (f'dynamic labels from the task data, value="{value}": the {head} head learns only <Label>s written '
                "in the config")
    return "it has no <Label>: no label to learn"


def region_id() -> str:
    """A new region id (Label Studio uses 10 characters; results of one region share it)."""
    return uuid.uuid4().hex[:10]


def image_region(size: tuple[int, int], box: tuple[float, float, float, float]) -> dict:
    """An image region's geometry in Label Studio's percent units.

    Args:
        size: ``(width, height)`` of the image in pixels.
        box: ``(x0, y0, x1, y1)`` in pixels.

    Returns:
        ``{"x", "y", "width", "height", "rotation"}`` in percent of the image's width and height
        (https://labelstud.io/tags/rectanglelabels), clipped to the image, rotation 0.
    """
    w, h = size
    x0, y0 = max(0.0, min(box[0], w)), max(0.0, min(box[1], h))
    x1, y1 = max(x0, min(box[2], w)), max(y0, min(box[3], h))
    return {"x": 100.0 * x0 / w, "y": 100.0 * y0 / h, "width": 100.0 * (x1 - x0) / w,
            "height": 100.0 * (y1 - y0) / h, "rotation": 0}
