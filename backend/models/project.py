"""The default model: every control tag of a project's label config answered by one head.

For each control tag of the label config (:func:`labelhub.label_config.control_specs`), the model picks a
head (:mod:`labelhub.backend.models.heads`) by the control and object tag and the project's parameters
(:mod:`labelhub.backend.models.params`: Label Studio's "Extra params" over ``LABELHUB_MODEL_PARAMS``):

================================  =====================================================================
control over object               head
================================  =====================================================================
any, with a ``model`` parameter   a Hugging Face model by id or path, when its task fits the control
                                  (:class:`~labelhub.backend.models.pipelines.PipelineHead`)
Choices over Image, Text          embeddings + logistic regression (:class:`~labelhub.backend.models.choices.ChoicesHead`)
RectangleLabels over Image        learned from the annotated boxes (:class:`~labelhub.backend.models.boxes.BoxesHead`)
Labels over Text                  learned from the annotated spans (:class:`~labelhub.backend.models.spans.SpansHead`)
TextArea over Image               offline OCR (:class:`~labelhub.backend.models.transcription.TranscriptionHead`)
================================  =====================================================================

A control no head answers is left out of the predictions and named once in the log (a ``<Labels>`` over an
``<Image>``, as Label Studio's OCR template's Text/Handwriting, with why: its regions are answered as a rectangle and
a text, without a label; learning that label from the annotated regions, say with the boxes head's crop classifier,
was left for later: it would need its own fit of the labelled regions' crops and a measure of how often it is
right); a label config with no control any head answers is refused (:class:`labelhub.errors.LabelConfigError`,
422), naming for each control why its head refused it where its pair of tags has a head
(:meth:`~labelhub.backend.models.heads.ControlHead.refusal`: a ``<RectangleLabels value="$regions">`` with no
``<Label>`` for its dynamic labels, a ``perRegion="true"`` control with its own tag); a control inside a
``<Repeater>`` (its name or value holds the ``indexFlag``, ``c_{{idx}}``) is answered by no head, with that reason
(:func:`_repeated_reason`). A head may draw its regions
with another control and claim it (:meth:`~labelhub.backend.models.heads.ControlHead.claims`): a per-region
TextArea's OCR lines are drawn on a ``<Rectangle>``, or on a ``<RectangleLabels>`` with one label; that control then
gets no head of its own, which the log says once. A ``<RectangleLabels>`` with several labels is never claimed: the
boxes head learns it, and a per-region TextArea over the same image is not answered
(:func:`labelhub.backend.models.transcription.box_control_for`, logged once).

**Predictions.** One per task (https://labelstud.io/guide/predictions): the regions of every head in
``result``, each with its ``score``, and one task ``score``: the lowest of the controls' scores (a
control's score is the mean of its regions'), each first put on one uncertainty scale by its head
(:meth:`~labelhub.backend.models.heads.ControlHead.task_score`: a single choice's score as it is, a probability
``p`` as ``p ** 2 / 4``, a multiple choice's mean confidence ``c`` as ``(2c - 1) / 4``; why, in
:mod:`labelhub.backend.models.heads`, **Task score**), so that sorting Label Studio's Data Manager by prediction
score ascending shows first the tasks whose least certain control is least certain, whichever kind it is: the
heads' own scores differ in scale (the single-choice score is an order, about 0.25 for a sure task; the others are
probabilities), and their plain minimum was the choice's on every task of a mixed project. Each map rises strictly,
so a project with one control keeps its task order. With a ``threshold``
parameter, every head's regions scored below it are left out (:meth:`~labelhub.backend.models.heads.ControlHead.kept`;
the Choices head compares it with the choice's probability and, when it withholds a task's choice, its control
still counts in the task score with the score of the withheld result: :class:`~labelhub.backend.models.heads.
Withheld`); a control left with no region by the threshold otherwise counts no score, like one that found nothing.
A prediction names only labels of the current label config: a region whose labels a fit learned before they were
renamed or removed from the config is left out (logged once), and for a control with dynamic labels
(``value="$options"``, https://labelstud.io/tags/choices) only the task's own options count
(:func:`~labelhub.backend.models.heads.task_options`).
Every result has an ``id`` (https://labelstud.io/guide/predictions): a head's own (the results of one region share
it), else, for a whole-object ``choices`` or ``textarea`` result (one per control and task), one derived from its
control's name (:func:`_whole_id`: the same in every worker, so a task's prediction does not change with who made
it), so a prediction's results are alike whichever heads made them.
A control Label Studio's editor shows only while a choice is selected (``visibleWhen="choice-selected"`` on it or on
a ``<View>`` around it) is left out of a task's prediction, its score too, unless the predicted choices show it
(:meth:`ProjectModel._hidden_controls`).
A malformed task (not an object, or without a ``data`` object) gets an ``error`` of its own, as one whose media
cannot be loaded. A head that raises (its Hub model cannot be loaded: offline, gated, missing) fails every task it
was asked for: the task gets an ``error`` and no regions, even from the heads that answered (decision: a partial
prediction of the version would be stored and keep the task from being predicted again once the model loads).

**Training.** The background trainer calls :meth:`ProjectModel.fit_batch` with the project's annotations.
Each learning head is refit only when its examples (the latest annotation of each annotated task) or its
:meth:`~labelhub.backend.models.heads.ControlHead.identity` changed; what it returns is stored with
joblib under ``MODEL_DIR/projects/<project>/files/heads/`` and named in ``kv.json``, so every worker
loads the same fit. After an upgrade that changed a head's identity, the trainer refits it when it takes over
(:meth:`labelhub.backend.events.Trainer.refit_changed`), not at the next annotation; until then the fit stored
by the earlier version serves. The ``model_version`` is ``labelhub-<n>-<hash>``: ``n`` the annotated tasks it
learned from and ``hash`` a digest of the heads' identities and of what each learned from, the same
after a restart and never random. The fit also records a digest of the labels of the controls it answers
(``labels`` in ``kv.json``); when the label config's labels change (a choice renamed) before the next fit, the
version served moves at once to ``labelhub-<n>-<hash of the fit's version and the new labels>`` (the same in every
worker and after a restart, and the fit's own again if the labels change back), so Label Studio keeps the
predictions made under the new labels apart; the next fit records that interim version in ``versions`` (the
prediction sets the backend wrote, which :mod:`labelhub.backend.retire` may retire). A fit recorded before
this rule has no ``labels`` and keeps its version until the next fit.

**Parameters in the version.** When a head has parameters (``LABELHUB_MODEL_PARAMS`` or the project's Extra params,
``crop_cache`` aside), the version served is ``labelhub-<n>-<hash of the version above and a digest of every head's
parameters>`` (:meth:`ProjectModel._with_params`): changing the Extra params moves it at once, with no refit, so
``labelhub predict --missing`` and Label Studio's "Retrieve predictions" re-predict the tasks predicted under the old
parameters; setting them back gives the earlier version again. The digest is of the parameters as stored (per
project, in ``MODEL_DIR`` or Redis) merged over the environment's, so it is the same after a restart and in every
worker and replica that shares the state and the environment. A project without parameters keeps the plain
version. ``kv.json`` keeps the fit's own ``model_version``; ``versions`` records the versions served.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from labelhub.backend.embedding_cache import EmbeddingCache
from labelhub.backend.errors import MediaError
from labelhub.backend.log_once import first_time, log_once
from labelhub.backend.model import LabelStudioMLBase
from labelhub.backend.models.heads import ControlHead, Example, TaskInput, task_options
from labelhub.backend.models.params import check_control_names, params_for
from labelhub.backend.state import LISTED_VERSIONS, atomic_write_bytes
from labelhub.errors import LabelConfigError
from labelhub.label_config import (TEXT_TAGS, ControlSpec, choice_conditions, control_specs, data_value,
                                   parse_label_config)
from labelhub.redaction import one_line, redact

log = logging.getLogger(__name__)

__all__ = ["ProjectModel", "LEARNED_HEADS", "PIPELINE_HEAD", "latest_annotations"]

#: The learned (or offline) head of each ``(control tag, object tag)``, as ``module:Class``.
LEARNED_HEADS = {
    ("Choices", "Image"): "labelhub.backend.models.choices:ChoicesHead",
    ("Choices", "Text"): "labelhub.backend.models.choices:ChoicesHead",
    ("Choices", "HyperText"): "labelhub.backend.models.choices:ChoicesHead",
    ("RectangleLabels", "Image"): "labelhub.backend.models.boxes:BoxesHead",
    ("Labels", "Text"): "labelhub.backend.models.spans:SpansHead",
    ("TextArea", "Image"): "labelhub.backend.models.transcription:TranscriptionHead",
}
#: The head that serves a Hugging Face model chosen with the ``model`` parameter.
PIPELINE_HEAD = "labelhub.backend.models.pipelines:PipelineHead"

#: Seconds before a worker reads again a head's fit file that failed to load (:meth:`ProjectModel._load_fit`): the
#: lagging worker's case mends at once (the state names the new file), a damaged file is not read at every request.
FIT_RETRY_SECONDS = 5.0


class FitNotLoaded(RuntimeError):
    """A head's fit that the state names could not be loaded (the message names the file and why)."""


class _UnloadedFit:
    """Served in place of a head's fit that could not be loaded (:meth:`ProjectModel._serve`): reading anything of it
    (an item, an attribute: what every head's ``predict`` does with its fit) raises :class:`FitNotLoaded`, so
    :meth:`ProjectModel.predict`'s rule for a head that raises gives each task an ``error``.

    Args:
        reason: Why, one line (the file, the cause).
        at: When the load failed (``time.monotonic()``).
    """

    __slots__ = ("reason", "at")

    def __init__(self, reason: str, at: float):
        self.reason = reason
        self.at = at

    def __getattr__(self, name: str) -> Any:
        raise FitNotLoaded(self.reason)

    def __getitem__(self, key: Any) -> Any:
        raise FitNotLoaded(self.reason)


def _log_once(project: Any, from_name: str, message: str, *args: Any, level: int = logging.INFO) -> None:
    """Log ``message`` about a project's control once per worker process
    (:func:`labelhub.backend.log_once.log_once`)."""
    log_once(log, ("project", str(project), from_name, message), message, *args, level=level)


def _log_failure_once(project: Any, from_name: str, reason: str, exc: BaseException) -> None:
    """Log that a head failed, as one ERROR line naming the project and ``reason`` (already redacted), once per
    worker process, project, control and reason (:func:`labelhub.backend.log_once.first_time`); the traceback goes to
    DEBUG every time (a head that fails on every ``/predict`` would otherwise print one per request)."""
    if first_time(("project: failed", str(project), from_name, reason)):
        log.error("project %s: %s; its tasks get an error and no prediction (logged once per worker and cause)",
                  project, reason)
    log.debug("project %s: the head of %r failed", project, from_name, exc_info=exc)


def _load_class(path: str) -> type[ControlHead]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _time_key(ann: dict, ann_id: Any) -> tuple:
    updated = ann.get("updated_at")
    return (updated if isinstance(updated, str) else "", int(ann_id) if str(ann_id).isdigit() else 0)


def latest_annotations(annotations: dict) -> dict[str, tuple[dict, list]]:
    """The latest annotation of each annotated task in the backend's training data.

    Args:
        annotations: :meth:`labelhub.backend.state.ProjectState.load_annotations`: ``{"annotations": {id:
            {"task", "result", "updated_at", ...}}, "tasks": {task id: task}}``.

    Returns:
        ``{task id: (task, results)}`` for the tasks whose data is known, the annotation updated last (then
        the highest id) winning; ``results`` keeps only dict results.
    """
    latest: dict[str, tuple[tuple, dict]] = {}
    for ann_id, ann in (annotations.get("annotations") or {}).items():
        if not isinstance(ann, dict):
            continue
        tid = str(ann.get("task"))
        key = _time_key(ann, ann_id)
        if tid not in latest or key > latest[tid][0]:
            latest[tid] = (key, ann)
    tasks = annotations.get("tasks") or {}
    out = {}
    for tid, (_, ann) in sorted(latest.items()):
        task = tasks.get(tid)
        if isinstance(task, dict):
            out[tid] = (task, [r for r in ann.get("result") or [] if isinstance(r, dict)])
    return out


def _json_kind(value: Any) -> str:
    """What a task data value that is no string is, in words (``"a number"``, ``"an object"``, ...)."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _decoded_text(value: str, control: ControlSpec) -> str:
    """The text of a ``<Text encoding="...">`` value, as Label Studio's editor decodes it
    (https://labelstud.io/tags/text): ``base64`` is the bytes of ``atob`` as they are (one character per byte),
    ``base64unicode`` those bytes read as UTF-8; whitespace is ignored, as ``atob`` ignores it. Before, the heads read
    the base64 itself, and a Labels control never found its annotated spans in it (found by an audit).

    Raises:
        MediaError: The value is not base64, or not UTF-8 once decoded for ``base64unicode``.
    """
    import base64
    import binascii

    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
        return raw.decode("utf-8") if control.text_encoding == "base64unicode" else raw.decode("latin-1")
    except (binascii.Error, ValueError):
        raise MediaError(f"data.{control.value_key} is not {control.text_encoding} text (the label config's "
                         f"<Text name={control.to_name!r} encoding=\"{control.text_encoding}\">)") from None


def _whole_id(result: dict) -> str:
    """The ``id`` of a whole-object result a head gave none (a ``choices``, or an OCR page's ``textarea``: one per
    control and task): 10 hex digits of a SHA-256 of its ``from_name`` and ``type``, as long as Label Studio's and
    :func:`~labelhub.backend.models.heads.region_id`'s, the same in every worker and call."""
    return hashlib.sha256(f"{result.get('from_name')}\x00{result.get('type')}".encode()).hexdigest()[:10]


#: Causes a fit log line names when examples' media did not load (the count names them all): a cause is a
#: :class:`~labelhub.backend.errors.MediaError`'s message with its URL taken out (:func:`_media_cause`), so one cause
#: of many tasks (a secret that does not verify every signed URL) is one, named with one example URL and its count.
NAMED_MEDIA_REASONS = 2
#: The longest example URL a cause names (longer ones keep their start and end, ``...`` between): the advice that
#: follows the URL is never cut for it.
EXAMPLE_URL_CHARS = 80
#: The longest cause named (its example URL shortened first); LabelHub's own messages are shorter.
MEDIA_CAUSE_CHARS = 600
_URL_MARK = "\x00url\x00"


def _short_url(url: str) -> str:
    """``url`` (already a :func:`~labelhub.backend.media.safe_url`) in at most :data:`EXAMPLE_URL_CHARS` characters:
    its start (scheme and host) and its end (the file's name), ``...`` between."""
    if len(url) <= EXAMPLE_URL_CHARS:
        return url
    head = EXAMPLE_URL_CHARS * 3 // 5
    return url[:head] + "..." + url[-(EXAMPLE_URL_CHARS - head - 3):]


def _media_cause(error: MediaError, value: Any) -> tuple[str, str]:
    """``(cause, example URL)`` of a task whose media did not load: the error's message on one line with the task's
    URL (``value``, as messages name it: :func:`~labelhub.backend.media.safe_url`, no query string, so no signed
    token) replaced by a mark, so that tasks failing for one reason share one cause; the URL is ``""`` when
    ``value`` is no URL (a ``data:`` URI, inline text)."""
    from labelhub.backend.media import safe_url

    text = one_line(error)
    is_url = isinstance(value, str) and not value.startswith("data:") and ("://" in value[:20] or value[:1] == "/")
    url = safe_url(value) if is_url else ""
    return (text.replace(url, _URL_MARK) if url else text), url


def _refit_reason(previous: dict, rule: str) -> str:
    """Why a head with a stored fit is fitted again, when its examples are not the (only) reason, for its log line.

    ``previous`` is the head's stored entry (``digest``, and since 2026-12-06 ``rule``: the digest of the head's
    ``identity()``, what it learns and how); ``rule`` the head's rule now. An upgrade of LabelHub, or new parameters,
    that changes the rule makes the trainer refit every project at its start (:meth:`~labelhub.backend.events.Trainer.
    refit_changed`) with a new ``model_version``: the line says so (an upgrade audit saw the version move at start
    with no word why). A fit stored before ``rule`` was recorded cannot tell its rule from its examples.

    Returns:
        ``""`` (no stored fit, or the same rule), else ``"; refit: ..."``.
    """
    if not previous.get("digest"):
        return ""
    if "rule" not in previous:
        return ("; refit: the stored fit was made by an earlier LabelHub, which did not record how the head learns "
                "(its rule or its examples changed)")
    if previous["rule"] != rule:
        return "; refit: how the head learns changed since the stored fit (LabelHub upgraded, or its parameters)"
    return ""


def _repeated_reason(control: ControlSpec) -> str:
    """Why a control inside a ``<Repeater>`` (:attr:`~labelhub.label_config.ControlSpec.repeated`) is not answered,
    for the log and ``/setup``'s refusal: Label Studio's editor makes one tag per item of the task's list, named with
    the item's index in place of the ``indexFlag``, so no annotation names the control as parsed and no task's data
    has its value's key (an audit: such a config was accepted and every prediction was empty, whatever was annotated).
    Decision: not answered (a head per item would need the list's length from each task, and the items' results to
    be learned as one control's).

    Example:
        >>> from labelhub.label_config import control_specs
        >>> spec = control_specs('<View><Repeater on="$pages" indexFlag="{{i}}"><Text name="t{{i}}" '
        ...     'value="$pages[{{i}}].text"/><Choices name="c{{i}}" toName="t{{i}}"><Choice value="a"/>'
        ...     '<Choice value="b"/></Choices></Repeater></View>')[0]
        >>> _repeated_reason(spec).split(": ", 1)[1]
        "Label Studio's editor makes a copy per item of the task's list ('c0', 'c1', ...), which no head answers"
    """
    flag = control.repeated
    name = next(text for text in (control.from_name, control.to_name, control.value_key) if flag in text)
    return (f"inside a <Repeater> (indexFlag {flag}): Label Studio's editor makes a copy per item of the task's list "
            f"({name.replace(flag, '0')!r}, {name.replace(flag, '1')!r}, ...), which no head answers")


def _named_causes(causes: dict[str, list]) -> str:
    """The :data:`NAMED_MEDIA_REASONS` causes of most examples (``{cause: [examples, example URL]}`` from
    :func:`_media_cause`), each as ``<n> example(s): <message>`` with its example URL shortened (:func:`_short_url`)
    where the message named it (else ``(e.g. <URL>)`` after it), then how many other causes and examples.

    Example:
        >>> _named_causes({f"{_URL_MARK} is refused": [6, "http://h/files/k/0123/a.png"]})
        '6 examples: http://h/files/k/0123/a.png is refused'
    """
    ranked = sorted(causes.items(), key=lambda item: -item[1][0])  # stable: first seen first among equals
    named = []
    for cause, (count, url) in ranked[:NAMED_MEDIA_REASONS]:
        short = _short_url(url)
        if _URL_MARK in cause:
            text = cause.replace(_URL_MARK, short, 1).replace(_URL_MARK, "<url>")
        else:
            text = cause + (f" (e.g. {short})" if short else "")
        named.append(f"{count} example{'s' if count != 1 else ''}: {text[:MEDIA_CAUSE_CHARS]}")
    rest = ranked[NAMED_MEDIA_REASONS:]
    more = (f"; and {len(rest)} other cause(s) of {sum(c for _, (c, _) in rest)} example(s)" if rest else "")
    return ("; ".join(named) or "no reason given") + more


class ProjectModel(LabelStudioMLBase):
    """One head per control tag, one prediction per task (see the module docstring).

    Raises:
        labelhub.errors.LabelConfigError: From :meth:`setup` when no control tag of the label config has a
            head (the message lists what the config has).
    """

    INITIAL_MODEL_VERSION = "labelhub-0"
    # setup ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Read the label config and pick a head per control tag (fast: no model is loaded)."""
        from labelhub.backend.models.params import parse_params

        self.settings = self.backend.settings if self.backend is not None else _default_settings()
        stored = self.state.project().get("extra_params") if self.state is not None else None
        new = self.extra_params is not None and self.extra_params != stored
        raw = self.extra_params if self.extra_params is not None else stored
        try:
            self.params = parse_params(raw, "extra_params")
        except ValueError as exc:
            if new:
                raise
            # stored by an older LabelHub, whose checks were looser: a project must not stop predicting at an upgrade
            log.warning("project %s: its stored Extra params do not pass this version's checks "
                        "(%s); they are used as before until they are saved again", self.project_id, exc)
            self.params = parse_params(raw, "extra_params", check=False)
        defaults = self.settings.default_model_params
        self.controls = control_specs(self.label_config)
        # a control name in new Extra params that the config lacks is refused; in the stored ones (the config was
        # edited since) it is logged
        check_control_names(self.params, {c.name for c in parse_label_config(self.label_config)[0]}, strict=new)
        self.heads: list[ControlHead] = []
        self._why: dict[str, str] = {}  # from_name -> why no head answers it, where more than "no head for it"
        claimed: dict[str, ControlHead] = {}
        # per-region controls first: a per-region TextArea claims the Rectangle control its lines are drawn on
        for control in sorted(self.controls, key=lambda c: not c.per_region):
            owner = claimed.get(control.from_name)
            if owner is not None:
                _log_once(self.project_id, control.from_name,
                          "project %s: <%s name=%r> is drawn by the %s head of <%s name=%r> (its regions are made "
                          "with it), not answered by a head of its own", self.project_id, control.tag,
                          control.from_name, owner.name, owner.control.tag, owner.control.from_name)
                continue
            head = self._make_head(control, params_for(defaults, self.params, control.from_name), strict=new)
            shared = next((n for n in head.claims() if n != control.from_name and n in claimed), None) \
                if head is not None else None
            if shared is not None:  # two per-region TextAreas on one <Rectangle>: each OCR line was drawn twice
                taken = claimed[shared]
                self._why[control.from_name] = (f"its regions would be drawn with {shared!r}, as the {taken.name} "
                                                f"head of {taken.control.from_name!r} draws its own")
                _log_once(self.project_id, control.from_name, "project %s: <%s name=%r> is not answered: %s",
                          self.project_id, control.tag, control.from_name, self._why[control.from_name])
                continue
            if head is not None:
                self.heads.append(head)
                for name in head.claims():
                    claimed.setdefault(name, head)
        if not self.heads:
            specified = {c.from_name for c in self.controls}
            found = "; ".join([f"<{c.tag} name={c.from_name!r}> over <{c.object_tag}>" + self._refused_because(c)
                               for c in self.controls] + [
                f"<{c.tag} name={c.name!r} toName={','.join(c.to_name)!r}> over no object tag with a $value"
                for c in parse_label_config(self.label_config)[0] if c.name not in specified])
            learned_off = self.params.get("learned") is False or any(
                entry.get("learned") is False for entry in (self.params.get("controls") or {}).values())
            raise LabelConfigError(  # what the config has first: Label Studio's dialog may show only the start
                "no control tag of this label config can be answered"
                + (' (with "learned": false in the Extra params, which turns off every head that learns from '
                   'annotations)' if learned_off else "")
                + ": it has " + (found or "no control tag over an object with a $value")
                + "; the backend answers Choices over Image, Text or HyperText, RectangleLabels and TextArea over "
                "Image (RectangleLabels with <Label>s in the config), Labels over Text (and what a Hugging Face model "
                "given as 'model' in the extra params fits)")
        self._say_unread_objects()
        # (model_version, {from_name: fit}) that predictions read together, replaced as one (a prediction must not
        # carry one version with another version's fits); None: the version is the heads' (no fit yet)
        self._served: tuple[str | None, dict[str, Any]] = (None, {})
        self._fitted_files: dict[str, str] = {}
        self._fresh_fits: dict[str, Any] = {}  # {file: fit} this process just saved: served without reading it back
        self._unloaded: dict[str, _UnloadedFit] = {}  # {file: when and why} of the fit files that failed to load
        self._per_thread = threading.local()  # what the last predict of each thread decoded (decoded_pixels)
        # the fit's disk cache of embeddings, in the fitting thread only: a /predict or a job sharing this model
        # meanwhile must not add its tasks to it (the file would grow to the project's size)
        self._fitting = threading.local()
        self._controls_by_name = {c.from_name: c for c in self.controls}
        self._choice_conditions = choice_conditions(self.label_config)
        self._labels = self._labels_signature()
        self._params = self._params_signature()

    def _say_unread_objects(self) -> None:
        """Log once per worker and project the object tags with a ``$value`` that the heads do not read.

        A head reads one object per control: the first of its ``toName`` with a ``$value``
        (:func:`labelhub.label_config.control_specs`). A control that names several (Label Studio's
        breast-cancer-mammogram-classification template: six ``<Choices toName="left_cc,right_cc,left_mlo,
        right_mlo">``) is learned and predicted from its first object alone: one WARNING line names the controls and
        the objects ignored, the controls with the same objects together. Object tags no control names at all
        (content-based-image-search's ``image1``..``image3`` beside ``<Choices toName="query">``, document-retrieval's
        ``text1``..``text3``, question-answering's ``question``) are named in one INFO line (decision: INFO, as such an
        object is often context for the annotator, an instruction or a question, that the control's answer does
        not depend on; where it does, as in those ranking templates, the line says what is learned from alone).
        """
        controls, objects = parse_label_config(self.label_config)
        owners = {name: head for head in self.heads for name in head.claims()}

        def named(name: str) -> str:
            return f"<{objects[name].tag} name={name!r}> (${objects[name].value})"

        groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for c in controls:
            head = owners.get(c.name)
            ignored = tuple(n for n in c.to_name if head is not None and n != head.control.to_name
                            and n in objects and objects[n].value)
            if ignored:
                groups.setdefault((head.control.to_name, ignored), []).append(f"<{c.tag} name={c.name!r}>")
        for (first, ignored), names in groups.items():
            _log_once(self.project_id, f"toName {names} {first} {ignored}",
                      "project %s: %s name%s several objects in toName; a head reads one object per control, the "
                      "first with a $value: %s learned and predicted from %s alone, %s ignored",
                      self.project_id, ", ".join(names), "s" if len(names) == 1 else "",
                      "it is" if len(names) == 1 else f"these {len(names)} are", named(first),
                      ", ".join(named(n) for n in ignored) + (" is" if len(ignored) == 1 else " are"),
                      level=logging.WARNING)
        unlabeled = [n for n, o in objects.items() if o.value and not any(n in c.to_name for c in controls)]
        if unlabeled:
            read = sorted({h.control.to_name for h in self.heads})
            _log_once(self.project_id, f"unlabeled {unlabeled} {read}",
                      "project %s: no control tag names %s in toName: no head reads %s; the answered controls are "
                      "learned and predicted from %s alone", self.project_id,
                      ", ".join(named(n) for n in unlabeled), "it" if len(unlabeled) == 1 else "them",
                      ", ".join(named(n) for n in read))

    def _refused_because(self, control: ControlSpec) -> str:
        """``" (<why>)"``: why no head answers ``control``, for the refusal of a label config no head answers, or
        ``""`` when the refusal's list of what the backend answers says it (no head for its pair of tags). The
        reason is the head's when the pair is one a head answers (:meth:`ControlHead.refusal`,
        :meth:`ControlHead.unanswered`: a visual-genome ``<RectangleLabels value="$regions">`` without ``<Label>``
        is refused for its dynamic labels, not as a RectangleLabels over an Image); a ``perRegion="true"`` control
        of another pair is named with its own tag (``a <TextArea> per region``)."""
        why = self._why.get(control.from_name) or ControlHead.refusal(control, {})
        return f" ({why})" if why else ""

    #: Parameters that change no prediction (where a head caches), left out of :meth:`_params_signature`.
    UNPREDICTIVE_PARAMS = frozenset({"crop_cache"})

    def _params_signature(self) -> str | None:
        """A digest of the parameters each head predicts with (``LABELHUB_MODEL_PARAMS`` under the project's Extra
        params and its ``controls`` entry, :func:`~labelhub.backend.models.params.params_for`; ``null`` values and
        :data:`UNPREDICTIVE_PARAMS` left out), folded into the served ``model_version`` (see the module docstring);
        ``None`` when no head has a parameter, so that the versions of projects without parameters stay as
        they were."""
        effective = {h.control.from_name: {k: v for k, v in h.params.items()
                                           if v is not None and k not in self.UNPREDICTIVE_PARAMS}
                     for h in self.heads}
        effective = {name: params for name, params in effective.items() if params}
        return self._digest(effective)[:16] if effective else None

    def _with_params(self, version: str, trained_on: int) -> str:
        """``version`` itself without parameters, else ``labelhub-<trained_on>-<hash of version and the
        parameters' digest>`` (a new hash, not a suffix: Label Studio's Data Manager filters versions by
        substring, so no version may contain another)."""
        if not self._params:
            return version
        return f"labelhub-{trained_on}-{self._digest([version, self._params])[:8]}"

    def _labels_signature(self) -> str:
        """A digest of the labels of every control the heads answer (their names, tags, labels and dynamic
        ``value``): what the fit records as ``labels``, to tell when the config's labels changed since."""
        answered = {name for head in self.heads for name in head.claims()}
        return self._digest([[c.from_name, c.tag, list(c.labels), str(c.attrs.get("value") or "")]
                             for c in self.controls if c.from_name in answered])[:16]

    def _make_head(self, control: ControlSpec, params: dict, strict: bool = True) -> ControlHead | None:
        """The head that answers ``control``: the Hugging Face model of ``params`` when it fits, else the learned head
        of the control's kind, else ``None`` (logged once). With ``strict`` (Extra params being saved), a model
        parameter the pipeline head refuses raises; without it (the stored ones, which an older LabelHub's looser
        checks let in: a relative path, a ``labels`` value not in the config), it is logged once and the learned
        head answers, so that a project does not stop predicting at an upgrade.

        Raises:
            labelhub.backend.models.pipelines.PipelineParamsError: ``strict`` and the model's parameters are refused.
        """
        from labelhub.backend.models.pipelines import PipelineParamsError

        if control.repeated:  # inside a <Repeater>: no result nor task data matches the tag as parsed
            self._why[control.from_name] = _repeated_reason(control)
            _log_once(self.project_id, control.from_name, "project %s: <%s name=%r> over <%s> is not answered: %s",
                      self.project_id, control.tag, control.from_name, control.object_tag,
                      self._why[control.from_name])
            return None
        candidates = []
        if params.get("model"):
            candidates.append(PIPELINE_HEAD)
        learned = LEARNED_HEADS.get((control.tag, control.object_tag))
        if learned:
            candidates.append(learned)
        for path in candidates:
            try:
                cls = _load_class(path)
            except ImportError as exc:
                _log_once(self.project_id, control.from_name, "%s: %s is not installed (%s)", control.from_name,
                          path, exc)
                continue
            if cls.learns and params.get("learned", True) is False:
                continue  # "learned": false turns off what learns from annotations, not OCR
            try:
                fits = cls.supports(control, params)
                head = cls(control, self, params, self.controls) if fits else None
                if not fits and path != PIPELINE_HEAD:  # the learned head of this pair of tags refuses the control
                    why = cls.refusal(control, params)
                    if why:
                        self._why.setdefault(control.from_name, why)
            except PipelineParamsError as exc:
                if strict:
                    raise
                _log_once(self.project_id, control.from_name, "project %s: its stored Extra params for <%s name=%r> "
                          "do not pass this version's checks (%s): the model is not used until they are saved again",
                          self.project_id, control.tag, control.from_name, exc, level=logging.WARNING)
                continue
            if head is not None:
                reason = head.unanswered()
                if reason is None:
                    return head
                self._why[control.from_name] = reason
                _log_once(self.project_id, control.from_name, "project %s: <%s name=%r> over <%s> is not answered: %s",
                          self.project_id, control.tag, control.from_name, control.object_tag, reason)
                return None
        if control.tag == "Labels" and control.object_tag == "Image":  # Label Studio's OCR template's Text/Handwriting
            self._why[control.from_name] = "no head labels image regions"
            _log_once(self.project_id, control.from_name,
                      "project %s: <Labels name=%r> over <Image> is not answered: no head labels image regions (the "
                      "OCR regions come as a rectangle and its text, without a label: the annotator picks it)",
                      self.project_id, control.from_name)
            return None
        if control.from_name in self._why:  # the learned head of this pair refused it (:meth:`ControlHead.refusal`)
            _log_once(self.project_id, control.from_name, "project %s: <%s name=%r> over <%s> is not answered: %s",
                      self.project_id, control.tag, control.from_name, control.object_tag,
                      self._why[control.from_name])
            return None
        _log_once(self.project_id, control.from_name,
                  "project %s: <%s name=%r> over <%s> is not answered (no head for it)", self.project_id,
                  control.tag, control.from_name, control.object_tag)
        return None

    @property
    def warmup_key(self) -> str:
        """What :meth:`warmup` loads: the same key means nothing new to load in this worker."""
        return "+".join(sorted({json.dumps(h.identity(), sort_keys=True, default=str) for h in self.heads}))

    def warmup(self) -> None:
        """Load every head's models and the embedders they use (in the background after ``/setup``).

        A head whose warmup raises (a Hub model that cannot be loaded: offline, gated, missing) is logged as one
        ERROR line naming the project, the control, the model and the cause (secrets masked; the traceback at
        DEBUG), and the other heads are warmed all the same; nothing is raised (its predictions fail with that cause,
        see :meth:`predict`).
        """
        for head in self.heads:
            try:
                head.warmup()
            except Exception as exc:  # noqa: BLE001 (one head's model must not keep the others cold)
                log.error("project %s: warmup failed: %s", self.project_id, self._head_failure(head, exc))
                log.debug("project %s: warmup of the head of %r failed", self.project_id, head.control.from_name,
                          exc_info=exc)

    def _head_failure(self, head: ControlHead, exc: BaseException) -> str:
        """One line saying that ``head`` raised ``exc``: the head, its control, its Hub model (a pipeline head's) and
        the cause, secrets masked."""
        model_id = getattr(getattr(head, "spec", None), "model", None)
        return redact(f"the {head.name} head of {head.control.from_name!r}"
                      f"{f' (model {model_id!r})' if model_id else ''} failed: "
                      f"{type(exc).__name__}: {one_line(exc, 300)}", self.settings.secrets)

    # the host heads use -----------------------------------------------------------------------------
    def embedder(self, kind: str):
        """The worker's embedder for ``kind`` (``"image"`` or ``"text"``), loaded on first use.

        Raises:
            ValueError: For another kind.
        """
        from labelhub.backend.embedders import get_embedder

        s = self.settings
        spec = s.image_embedder if kind == "image" else s.text_embedder
        return get_embedder(kind, spec, image_size=s.image_size, threads=s.torch_threads)

    def embedder_spec(self, kind: str) -> str:
        """Which embedder :meth:`embedder` gives for ``kind``, without loading it: ``spec@size`` for images."""
        s = self.settings
        return f"{s.image_embedder}@{s.image_size}" if kind == "image" else s.text_embedder

    def _embedding_cache(self) -> EmbeddingCache:
        """The worker's :class:`EmbeddingCache` (none outside a backend: a cache of size 0)."""
        return self.backend.embeddings if self.backend is not None else EmbeddingCache(0)

    def embed(self, inputs: Sequence[TaskInput], kind: str) -> np.ndarray:
        """Whole-object embeddings: a task's own (``TaskInput.embeddings``), else the project's disk cache while
        fitting, else the worker's cache (its LRU, then the host's store), else the embedder (then cached).

        Args:
            inputs: Loaded task objects (images or texts).
            kind: ``"image"`` or ``"text"``.

        Returns:
            ``float32`` array ``(len(inputs), dim)``.
        """
        embedder = self.embedder(kind)
        memory = self._embedding_cache()
        fit_cache = getattr(self._fitting, "disk", None)
        disk = fit_cache.setdefault(embedder.name, self._load_disk_cache(embedder.name)) if fit_cache is not None \
            else {}
        keys = [EmbeddingCache.key(embedder.name, item.value) for item in inputs]
        out: list[Any] = [item.embeddings[embedder.name] if embedder.name in item.embeddings else
                          disk[k] if k in disk else memory.get(k) for item, k in zip(inputs, keys)]
        todo = [i for i, vec in enumerate(out) if vec is None]
        if todo:
            vectors = embedder.embed([inputs[i].media for i in todo])
            for i, vec in zip(todo, vectors):
                out[i] = vec
                memory.put(keys[i], vec)
                if fit_cache is not None:
                    disk[keys[i]] = vec
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(out).astype(np.float32, copy=False)

    # media ----------------------------------------------------------------------------------------
    def _value(self, task: Any, control: ControlSpec) -> str:
        """The task's value for ``control``'s object tag: ``data[<value key>]``, a URL (``Image``, ``<Text
        valueType="url">``) or the text itself (``Text``, ``HyperText``); https://labelstud.io/tags/text: the
        ``value`` of a ``<Text>`` is the text.

        A ``<Text encoding="base64">`` (or ``base64unicode``) value is decoded (:func:`_decoded_text`): the heads
        read, and the spans' offsets count, the text Label Studio's editor shows.

        Raises:
            MediaError: The task has no ``data`` object, the value is missing, ``null`` or ``""``, not base64 where
                the config says it is, or it is not a string where a URL or a text is read (``{"text": 5}``,
                ``{"text": {"a": 1}}``: decision, a text head given ``"5"`` or a JSON object's text would answer it as
                confidently as a sentence); the task then gets an ``error`` of its own (:meth:`predict`) and a fit
                leaves it out.
        """
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise MediaError("the task has no 'data' object")
        value = data_value(data, control.value_key)
        if value is None or value == "":
            raise MediaError(f"the task's data has no {control.value_key!r} (the label config's "
                             f"${control.value_key})")
        if (control.object_tag == "Image" or control.object_tag in TEXT_TAGS) and not isinstance(value, str):
            read = "a URL" if control.object_tag == "Image" or control.text_is_url else "text"
            raise MediaError(f"data.{control.value_key} is {_json_kind(value)}, not {read} (the label config's "
                             f"<{control.object_tag} name={control.to_name!r} value=\"${control.value_key}\"> reads a "
                             "string)")
        if control.text_encoding in ("base64", "base64unicode") and not control.text_is_url:
            return _decoded_text(value, control)
        return value if isinstance(value, str) else json.dumps(value)

    def _load(self, value: str, control: ControlSpec) -> Any:
        from labelhub.backend.embedders import decode_image

        if control.object_tag == "Image":
            if self.backend is None:
                raise MediaError("no media fetcher (the model runs outside the backend)")
            return decode_image(self.backend.fetcher.fetch(value))
        if control.text_is_url:
            if self.backend is None:
                raise MediaError("no media fetcher (the model runs outside the backend)")
            return self.backend.fetcher.fetch_text(value)
        return value

    def load_inputs(self, tasks: Sequence[dict], control: ControlSpec, embedded: str | None = None
                    ) -> list[TaskInput | MediaError]:
        """Load each task's object for ``control`` (images fetched in parallel through the worker's fetcher, unless
        at most one is fetched: ``data:`` URIs are decoded in this thread).

        Args:
            tasks: Label Studio tasks.
            control: The control whose object tag is loaded.
            embedded: ``"image"`` or ``"text"`` when the heads need only that embedding of the object
                (:meth:`~labelhub.backend.models.heads.ControlHead.embedding_kind`): a task whose embedding a
                cache holds (the worker's LRU or the host's store, :mod:`labelhub.backend.embedding_cache`) is
                not loaded; its :class:`TaskInput` carries the vector and no media.

        Returns:
            A :class:`TaskInput`, or the :class:`~labelhub.backend.errors.MediaError` that kept it from
            loading, per task.
        """
        name = self.embedder(embedded).name if embedded else None
        cache = self._embedding_cache()

        def one(task: dict) -> TaskInput | MediaError:
            try:
                value = self._value(task, control)
                vec = cache.get(EmbeddingCache.key(name, value)) if name else None
                if vec is not None:
                    return TaskInput(task=task, value=value, media=None, embeddings={name: vec})
                return TaskInput(task=task, value=value, media=self._load(value, control))
            except MediaError as exc:
                return exc

        def fetched(task: Any) -> bool:  # a data: URI is decoded in place: no wait a thread would overlap
            data = task.get("data") if isinstance(task, dict) else None  # a malformed task: one() says why
            value = data_value(data, control.value_key)
            return not (isinstance(value, str) and value.startswith("data:"))

        remote = control.object_tag == "Image" or control.text_is_url
        if remote and sum(map(fetched, tasks)) > 1:
            with ThreadPoolExecutor(max_workers=min(8, len(tasks))) as pool:
                return list(pool.map(one, tasks))
        return [one(task) for task in tasks]

    # prediction -----------------------------------------------------------------------------------
    @property
    def model_version(self) -> str:
        """``labelhub-<n>-<hash>`` of the last fit, moved when the labels changed since (see the module docstring);
        before any fit, of the heads."""
        stored = self._version_of(self.state.kv() if self.state is not None else self._memory)
        if stored:
            return stored
        return self._with_params(f"labelhub-0-{self._digest([h.identity() for h in self.heads])[:8]}", 0)

    @property
    def serves_without_fit(self) -> bool:
        """Whether a head answers without a fit (one that does not learn: a Hugging Face model named in the Extra
        params), so the project's ``model_version`` names predictions before any fit and moves with the parameters
        alone (``/setup`` then queues :data:`labelhub.backend.events.PARAMS_CHANGED` for a project never fitted)."""
        return any(not head.learns for head in self.heads)

    def _version_of(self, kv: dict) -> str | None:
        """The version served for the state ``kv``: its ``model_version`` when the fit's ``labels`` are this
        config's (or unknown: a fit recorded before they were), else the interim version of the module
        docstring; either folded with the parameters' digest when the heads have parameters
        (:meth:`_with_params`); ``None`` before any fit."""
        stored = kv.get("model_version")
        if not stored:
            return None
        learned = kv.get("labels")
        trained_on = int(kv.get("trained_on") or 0)
        if learned is None or learned == self._labels:
            return self._with_params(str(stored), trained_on)
        return self._with_params(f"labelhub-{trained_on}-{self._digest([str(stored), self._labels])[:8]}",
                                 trained_on)

    @staticmethod
    def _digest(obj: Any) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()

    def on_state_change(self) -> bool:
        """Serve the fits and the ``model_version`` the state names now, loading each head's fit this worker has
        not loaded.

        Returns:
            Whether every fit the state names is served (``False``: :meth:`refresh` tries again; see :meth:`_serve`).
        """
        if self.state is None:
            return True
        kv = self.state.kv()  # one reading: the version and the heads' files of one fit
        return self._serve(kv.get("heads") or {}, self._version_of(kv))

    def _serve(self, heads: dict, version: str | None) -> bool:
        """Make ``heads`` (the state's ``{from_name: {"file": ...}}``) and ``version`` what :meth:`predict` uses, in
        one assignment.

        Decided: a head whose fit file cannot be loaded (damaged; or deleted by later fits while this worker read the
        state before them) is served as a head that fails (:class:`_UnloadedFit`): every task it is asked for gets an
        ``error`` naming the file, as for a head that raises (:meth:`predict`), so that no prediction of ``version``
        lacking that head's regions is stored in Label Studio (which would keep the task from being predicted again).
        Before, the version was served without that head: ``"result": []`` under the new version. The file is read
        again at the next request :data:`FIT_RETRY_SECONDS` after the failure (:meth:`_load_fit`), not at every one.

        Returns:
            Whether every fit ``heads`` names was loaded.
        """
        fitted = dict(self._served[1])
        complete = True
        for head in self.heads:
            name = head.control.from_name
            file = (heads.get(name) or {}).get("file")
            if not file:
                fitted.pop(name, None)
                self._fitted_files.pop(name, None)
            elif self._fitted_files.get(name) != file:
                fitted[name] = self._load_fit(name, file)
                if isinstance(fitted[name], _UnloadedFit):
                    complete = False
                    self._fitted_files.pop(name, None)
                else:
                    self._fitted_files[name] = file
        unloaded = self._unloaded
        for file in [f for f in unloaded if f not in {(e or {}).get("file") for e in heads.values()}]:
            del unloaded[file]  # the state names it no more
        self._served = (version, fitted)
        return complete

    def _load_fit(self, name: str, file: str) -> Any:
        """The fit of control ``name`` stored as ``files/heads/<file>`` (the one this process just saved, when it did),
        or an :class:`_UnloadedFit` when it cannot be loaded, or failed to less than :data:`FIT_RETRY_SECONDS` ago
        (then it is not read again). Logged once per worker, file and cause."""
        import joblib

        unloaded = self._unloaded
        failed = unloaded.get(file)
        if failed is not None and time.monotonic() - failed.at < FIT_RETRY_SECONDS:
            return failed
        fresh = self._fresh_fits.pop(file, None)
        if fresh is not None:
            return fresh
        try:
            fit = joblib.load(io.BytesIO(self.state.read_file(f"heads/{file}")))
        except Exception as exc:  # noqa: BLE001 (unpickling a damaged file raises about anything)
            cause = f"{type(exc).__name__}: {one_line(exc, 200)}"
            log_once(log, ("project", str(self.project_id), name, "fit not loaded", file, cause),
                     "project %s: cannot load the fit of %r (files/heads/%s: %s): its tasks get an error, the file is "
                     "read again every %g s", self.project_id, name, file, cause, FIT_RETRY_SECONDS)
            unloaded[file] = _UnloadedFit(f"its fit files/heads/{file} cannot be loaded ({cause})", time.monotonic())
            return unloaded[file]
        unloaded.pop(file, None)
        return fit

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        """One prediction per task with every head's regions (see :meth:`LabelStudioMLBase.predict`).

        A task one of whose objects cannot be loaded (even when another object's heads answered it: the same rule as
        for a head that raised, below), or that is no task (not an object, no ``data`` object), gets
        ``{"result": [], "score": 0.0, "error": ...}`` while the others are predicted. So does a task on which a head
        raised (a Hub model that cannot be loaded: offline, gated, missing), its ``error`` naming the head, its
        control and the cause (secrets redacted), even when the other heads answered it: the whole task fails, as
        a partial prediction of this version would keep it from being predicted again once the model loads
        (``/predict`` answers no ``result`` for it and prediction jobs count it as failed and write nothing; the
        failure is logged once per worker, control and cause, the traceback at DEBUG). Regions naming labels the
        current label config lacks are left out (see the module docstring). ``context`` (interactive
        pre-annotation) is accepted; the heads answer the whole task.
        """
        if self.state is not None:
            self.refresh()
        served_version, fitted = self._served
        version = str(served_version) if served_version else self.model_version
        active = [h for h in self.heads if not h.learns or h.control.from_name in fitted]
        results: list[list[dict]] = [[] for _ in tasks]
        scores: list[list[tuple[str, float]]] = [[] for _ in tasks]  # (from_name, the control's task score)
        errors: list[str | None] = [None if isinstance(t, dict) and isinstance(t.get("data"), dict)
                                    else "the task has no 'data' object" for t in tasks]  # also before any fit
        head_errors: list[list[str]] = [[] for _ in tasks]  # the reasons of the heads that failed on each task
        loaded: dict[str, list] = {}
        self._per_thread.pixels = 0  # decoded_pixels, in this thread
        kinds: dict[str, set] = {}  # object tag -> the embedding kinds its heads need (None: the media)
        for head in active:
            kinds.setdefault(head.control.to_name, set()).add(head.embedding_kind())
        for head in active:
            control = head.control
            if control.to_name not in loaded:
                (kind,) = kinds[control.to_name] if len(kinds[control.to_name]) == 1 else (None,)
                loaded[control.to_name] = self.load_inputs(tasks, control, embedded=kind)
                self._per_thread.pixels += sum(item.media.width * item.media.height for item in loaded[control.to_name]
                                           if isinstance(item, TaskInput) and hasattr(item.media, "height"))
            items = loaded[control.to_name]
            ok = [i for i, item in enumerate(items) if isinstance(item, TaskInput)]
            for i, item in enumerate(items):
                if isinstance(item, MediaError):
                    errors[i] = str(item)
            if not ok:
                continue
            try:
                answers = head.predict([items[i] for i in ok], fitted.get(control.from_name))
            except Exception as exc:  # noqa: BLE001 (one head's fault fails its tasks, not the request)
                reason = self._head_failure(head, exc)
                _log_failure_once(self.project_id, control.from_name, reason, exc)
                for i in ok:
                    head_errors[i].append(reason)
                continue
            for i, answered in zip(ok, answers):
                withheld = getattr(answered, "score", None)  # a Withheld: no result, its score still counts
                regions = [r if not isinstance(r, dict) or r.get("id") is not None else {"id": _whole_id(r), **r}
                           for r in self._current_labels(head, head.kept(answered), items[i].task)]
                if regions:
                    results[i].extend(regions)
                    scores[i].append((control.from_name, head.control_score(answered, regions)))
                elif withheld is not None:
                    scores[i].append((control.from_name, head.task_score(float(withheld))))
        out = []
        for regions, named_scores, error, failed in zip(results, scores, errors, head_errors):
            hidden = self._hidden_controls(regions)
            regions = [r for r in regions if not (isinstance(r, dict) and r.get("from_name") in hidden)]
            task_scores = [score for name, score in named_scores if name not in hidden]
            if failed or error is not None:  # a partial prediction of this version would keep the task from being
                out.append({"result": [], "score": 0.0, "model_version": version,  # predicted again
                            "error": "; ".join(([error] if error else []) + failed)})
                continue
            out.append({"result": regions, "score": min(task_scores) if task_scores else 0.0, "model_version": version})
        return out

    def _hidden_controls(self, regions: list[dict]) -> set[str]:
        """The controls whose results Label Studio's editor would hide in a prediction of ``regions``: those shown
        only while a choice is selected (``visibleWhen="choice-selected"``, :func:`labelhub.label_config.
        choice_conditions`) that the predicted choices do not show, and those they show only through a hidden one.

        Decision: such a control's results and score are left out of the prediction (before, each control was
        predicted on every task, a hidden one too: its score counted in the task score, so its uncertainty on tasks
        where no annotator answers it moved them up the Data Manager's order, and an accepted prediction kept
        results the annotator never saw). Conditions on choices nothing predicts (a Choices no head answers) count
        as unselected.
        """
        conditions = self._choice_conditions
        if not conditions:
            return set()
        hidden: set[str] = set()
        for _ in range(len(conditions) + 1):  # a control hidden hides what only its choices show
            chosen: dict[str, set] = {}
            for r in regions:
                control = self._controls_by_name.get(r.get("from_name")) if isinstance(r, dict) else None
                if control is not None and control.tag == "Choices" and not control.per_region \
                        and r["from_name"] not in hidden:
                    value = r.get("value")
                    picked = value.get("choices") if isinstance(value, dict) else None
                    chosen.setdefault(r["from_name"], set()).update(
                        c for c in (picked if isinstance(picked, list) else []) if isinstance(c, str))
            now = {name for name, held in conditions.items() if not all(c.holds(chosen) for c in held)}
            if now == hidden:
                break
            hidden = now
        return hidden

    @property
    def decoded_pixels(self) -> int:
        """The pixels of the images this thread's last :meth:`predict` decoded (width times height, summed over its
        tasks and object tags; 0 for texts or cached embeddings): what a prediction job sizes its next call by
        (:func:`labelhub.backend.jobs.chunk_size`)."""
        return getattr(self._per_thread, "pixels", 0)

    def _current_labels(self, head: ControlHead, regions: list[dict], task: dict) -> list[dict]:
        """``regions`` without the labels the current label config lacks (nor the task's own options, for a
        control with dynamic labels); a region left with no label is dropped with every result sharing its
        ``id``. Logged once per head when something is dropped."""
        kept, dropped_ids, dropped = [], set(), set()
        for region in regions:
            control = self._controls_by_name.get(region.get("from_name")) if isinstance(region, dict) else None
            value = region.get("value") if control is not None else None
            names = value.get(control.type) if isinstance(value, dict) else None
            dynamic = task_options(task, control) if control is not None else None
            if not isinstance(names, list) or not (control.tag == "Choices" or control.tag.endswith("Labels")) \
                    or not (control.labels or dynamic is not None):
                kept.append(region)
                continue
            allowed = set(control.labels) | (dynamic or set())
            names_kept = [n for n in names if isinstance(n, str) and n in allowed]
            dropped.update(str(n) for n in names if n not in names_kept)
            if names_kept == names:
                kept.append(region)
            elif names_kept:
                kept.append({**region, "value": {**value, control.type: names_kept}})
            elif region.get("id") is not None:
                dropped_ids.add(region["id"])
        if dropped:
            _log_once(self.project_id, head.control.from_name,
                      "project %s: the %s head of %r predicted labels that neither the label config nor the task's "
                      "options hold (%s): left out; the next fit learns the current labels", self.project_id, head.name,
                      head.control.from_name,
                      ", ".join(repr(n) for n in sorted(dropped)[:5]))
        return [r for r in kept if not (isinstance(r, dict) and r.get("id") is not None and r["id"] in dropped_ids)]

    # training -------------------------------------------------------------------------------------
    def fit_batch(self, events: list[tuple[str, dict]], annotations: dict | None = None, **kwargs: Any):
        """Refit the heads whose examples changed, once for a batch of events.

        Args:
            events: The batch (the data comes from ``annotations``).
            annotations: The project's training data after applying the batch.

        Returns:
            The new model version served (the fit's, folded with the parameters' digest when the heads have
            parameters), or ``None`` when no head's fit changed. A head whose fit raises keeps its
            previous fit (logged with the traceback, and named in the state's ``last_error``); the other heads
            are fitted and the version moves with them.
        """
        if annotations is None:
            annotations = self.state.load_annotations() if self.state is not None else {}
        latest = latest_annotations(annotations)
        stored = dict(self.get("heads") or {})
        started = time.monotonic()
        self._fresh_fits.clear()  # fits of a batch whose version was never recorded (the same files as before)
        before = {name: dict(entry) for name, entry in stored.items()}
        self._fitting.disk = fit_cache = {}
        failed = []
        try:
            for head in self.heads:
                if not head.learns:
                    continue
                try:
                    self._fit_head(head, latest, stored)
                except Exception as exc:  # the other heads still learn; this one keeps its previous fit
                    log.exception("project %s: the %s head of %r failed to fit", self.project_id, head.name,
                                  head.control.from_name)
                    failed.append(f"{head.control.from_name}: {type(exc).__name__}: {one_line(exc)}")
        finally:
            self._fitting.disk = None
            for name, cache in fit_cache.items():
                self._save_disk_cache(name, cache)
        last_error = "; ".join(failed)[:500] or None
        if stored == before:
            if failed:
                self._update_state(last_error=last_error)
            return None
        if all((stored.get(n) or {}).get("file") == (before.get(n) or {}).get("file") for n in stored):
            self._update_state(heads=stored, last_error=last_error)  # new examples, nothing new learned: same version
            return None
        trained_on = len(latest)
        digest = self._digest([[h.identity() for h in self.heads],
                               {k: v.get("digest") for k, v in sorted(stored.items())}])
        version = f"labelhub-{trained_on}-{digest[:8]}"
        versions = list(self.get("versions") or [])
        interim = self.model_version  # served under the new labels until now (see the module docstring)
        if self.get("model_version") and interim != self.get("model_version") and interim not in versions:
            versions.append(interim)
        served = self._with_params(version, trained_on)  # the version predictions carry (the fit's without params)
        versions = (versions + [served])[-LISTED_VERSIONS:]
        self._update_state(heads=stored, model_version=version, versions=versions, trained_on=trained_on,
                           trained_at=time.time(), last_error=last_error, labels=self._labels)
        log.info("project %s: %s from %d annotated tasks in %.2f s", self.project_id, served, trained_on,
                 time.monotonic() - started)
        if self.state is not None:
            self.refresh()
        else:
            self._serve(stored, served)
        return served

    def _fit_head(self, head: ControlHead, latest: dict[str, tuple[dict, list]], stored: dict) -> None:
        """Refit one head when its examples or identity changed; updates ``stored`` in place.

        When some examples' media cannot be loaded and what loads is nothing, or fewer examples than the stored fit
        learned from, nothing changes (a warning says so): the stored fit keeps serving and the next fit tries
        again. Otherwise the head is fitted on what loaded (a task whose media stays unreachable does not hold the
        others back), and the fit is recorded as learned from every example.
        """
        name = head.control.from_name
        claims = set(head.claims())
        rows = []
        for tid, (task, results) in latest.items():
            try:
                value = self._value(task, head.control)
            except MediaError:
                continue
            rows.append((tid, task, value, [r for r in results if r.get("from_name") in claims]))
        identity = head.identity()
        rule = self._digest([identity])
        digest = self._digest([identity, [(tid, value, regions) for tid, _, value, regions in rows]])
        if (stored.get(name) or {}).get("digest") == digest:
            return
        examples, failed, causes = [], 0, {}  # {cause: [examples, an example URL]} (see _media_cause)
        loaded = self.load_inputs([task for _, task, _, _ in rows], head.control, embedded=head.embedding_kind())
        for (tid, task, value, regions), item in zip(rows, loaded):
            if isinstance(item, MediaError):
                failed += 1
                cause, url = _media_cause(item, value)  # a MediaError's URL has no query string: no signed token
                causes.setdefault(cause, [0, url])[0] += 1
                continue
            examples.append(Example(input=item, results=tuple(latest[tid][1])))
        previous = stored.get(name) or {}
        if failed and (not examples or (previous.get("file") and len(examples) < previous.get("examples", 0))):
            # media that cannot be loaded now (Label Studio or the Hub down while the trainer starts) must not
            # replace a fit with a poorer one, nor mark these examples learned: the digest is left as it was, so
            # the next fit (the next event, or the next trainer start) tries them again
            log.warning("project %s: %s head of %r: %d of %d examples without media (%s): %s, tried again at the next "
                        "fit", self.project_id, head.name, name, failed, len(rows), _named_causes(causes),
                        "the previous fit kept" if previous.get("file") else "not fitted")
            return
        started = time.monotonic()
        head.fit_note = ""
        with threadpool_limits(1):  # BLAS threads fight the workers for the cores: one is faster here
            fitted = head.fit(examples)
        entry = {"digest": digest, "rule": rule, "examples": len(examples), "media_failed": failed,
                 "seconds": round(time.monotonic() - started, 3)}
        if fitted is not None:
            entry["file"] = self._save_fit(name, digest, fitted)
            self._fresh_fits[entry["file"]] = fitted  # served with the version fit_batch records
        note = head.fit_note
        log.info("project %s: %s head of %r: %s on %d examples (%d without media) in %.2f s%s%s", self.project_id,
                 head.name, name, "fitted" if fitted is not None else "not enough to learn yet", len(examples),
                 failed, entry["seconds"], f": {note}" if note else "", _refit_reason(previous, rule))
        stored[name] = entry

    def _save_fit(self, name: str, digest: str, fitted: Any) -> str:
        import joblib

        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40]
        file = f"{safe}-{digest[:12]}.joblib"
        if self.state is None:
            return file
        buf = io.BytesIO()
        joblib.dump(fitted, buf)
        self.state.write_file(f"heads/{file}", buf.getvalue())
        # keep the new fit and the one the state names now (a worker may be loading it); drop older ones
        current = ((self.state.kv().get("heads") or {}).get(name) or {}).get("file")
        prefix = f"heads/{safe}-"
        self.state.delete_files([n for n in self.state.file_names(prefix)
                                 if len(n) == len(prefix) + 19 and n.endswith(".joblib")
                                 and n not in (f"heads/{file}", f"heads/{current}")])
        return file

    def _update_state(self, **fields: Any) -> None:
        if self.state is not None:
            self.state.update_kv(**fields)
        else:
            self._memory.update({k: v for k, v in fields.items() if v is not None})

    def _disk_cache_path(self, embedder_name: str):
        return self.state.files / f"embeddings-{hashlib.sha1(embedder_name.encode()).hexdigest()[:12]}.npz"

    def _load_disk_cache(self, embedder_name: str) -> dict:
        if self.state is None:
            return {}
        try:
            with np.load(self._disk_cache_path(embedder_name)) as npz:
                return dict(zip(npz["keys"].tolist(), npz["vectors"]))
        except (FileNotFoundError, ValueError, KeyError, OSError):
            return {}

    def _save_disk_cache(self, embedder_name: str, cache: dict) -> None:
        if self.state is None or not cache:
            return
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(list(cache.keys())), vectors=np.stack(list(cache.values())))
        atomic_write_bytes(self._disk_cache_path(embedder_name), buf.getvalue())


def _default_settings():
    from labelhub.backend.settings import Settings

    return Settings()
