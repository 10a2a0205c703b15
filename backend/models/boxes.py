"""A RectangleLabels head: boxes over an ``<Image>``, learned from the project's annotated boxes.

It answers a ``<RectangleLabels>`` control over an ``<Image>`` tag (https://labelstud.io/tags/rectanglelabels)
with one result per detected object, in Label Studio's prediction format
(https://labelstud.io/guide/predictions)::

    {"id": "a1b2c3d4e5", "from_name": "box", "to_name": "image", "type": "rectanglelabels",
     "original_width": 640, "original_height": 480, "image_rotation": 0,
     "value": {"x": 12.5, "y": 20.0, "width": 30.0, "height": 25.0, "rotation": 0, "rectanglelabels": ["Cat"]},
     "score": 0.87}

``x``, ``y``, ``width`` and ``height`` are percents of the image's width and height. Training reads the
annotated boxes the same way, applied to the size of the image it loaded, so a box drawn on a
differently sized copy of the image lands right (a rotated box is read as the axis-aligned box around it).

**Design**: a two-stage R-CNN (Girshick et al., 2014) made cheap enough to refit in seconds on two CPU cores.
Only stage 3 runs a neural network, on a dozen crops per image.

1. *Proposals* (OpenCV, no network). On a working copy of the image (scaled so that the smallest annotated
   boxes are about 24 pixels, never enlarged, at most 800 pixels on the long side): the bounding boxes of
   connected groups of Canny edges at three dilation radii (a cheap selective search: small radii keep
   neighbours apart, large ones join an object's parts), plus sliding windows at the box shapes learned
   from the annotations (k-means, up to 6 centres, over the log width and log height of the annotated
   boxes relative to the image's geometric mean side; stride a fifth of the window).
2. *Objectness* (scikit-learn, no network). Each proposal gets 29 features from integral images: edge and
   gradient density inside the box, in its centre, in the ring around it, in the strips along its four
   sides and just outside them; colour contrast between box and ring; size and shape against the learned
   shapes. A ``HistGradientBoostingRegressor`` learns the proposal's IoU with the nearest annotated box
   (on up to 150 annotated images). The best ``proposals`` after a non-maximum suppression (NMS, IoU 0.5)
   go on: by default three per object of the most crowded annotated image, at least 8, at most 40.
3. *Classification and box regression*. Each of those is cropped from the full-resolution image (5%
   margin) and described by the host's image embedder (``host.embedder("image")``), by two histograms of
   oriented gradients of the crop with a 10% margin (OpenCV's ``HOGDescriptor`` at 40 and 20 pixels,
   cells of 5: shape, which the embedder's features of small objects miss; on validation crops of
   Fashion-MNIST items they add about 6 points of accuracy) and by its size and aspect ratio. A ``LogisticRegression`` over
   the config's labels plus *background* (balanced class weights) gives the probabilities, and a ``Ridge``
   regression moves the box (R-CNN's ``dx, dy, log dw, log dh`` targets). Training crops, per annotated
   box: the box, its mirror image, two jittered copies (IoU >= 0.6: positives, and the regression's
   examples), two cut, shifted or enlarged copies that overlap every box by IoU < 0.4 (background); per
   image, two windows that touch no box, and the three best proposals of the stage-1 model that overlap no
   box by 0.4 or more (hard background). The annotated boxes always go in; the rest within
   ``max_train_crops``.
4. *Output*. A greedy NMS by objectness (1 - P(background), at least ``min_score``) drops a box whose IoU
   with a better one reaches ``nms_iou``, or that lies inside a better, larger box (``contain`` of its area)
   with the same label or as a fifth of its area or more (a part of that object; a small object inside
   a large one of another label stays). Each kept box is one result with its most probable label, and
   one more result for each other label whose probability reaches ``alt_score``: an ambiguous object
   (shirt or T-shirt?) is drawn once per plausible label, as a detector with per-class NMS does, and the
   annotator deletes the wrong one (``alt_score`` 1 turns this off). Scores are the label's probability (in the
   task score, the control's mean ``p`` counts as ``p ** 2 / 4``:
   :meth:`~labelhub.backend.models.heads.ControlHead.task_score`).

Crop embeddings are the expensive part (the default ONNX EfficientNet-Lite0 describes a few hundred crops
a second on one core). The training crops are drawn per image with the image's own random generator, so
a refit asks for the same crops again; the head keeps the embeddings it made in an LRU (``crop_cache``
entries, keyed by embedder, task value, image size, crop box and mirroring), and a refit after one more
annotation embeds that task's crops and the few hard negatives that changed.

A fit needs at least two annotated boxes with a label of the config (:meth:`BoxesHead.fit` returns
``None`` before). Images whose latest annotation has no box of this control are left out: it cannot tell
"nothing here" from "not labelled with this control".

Parameters (``params``: ``extra_params`` over ``LABELHUB_MODEL_PARAMS``): ``min_score`` (0.6),
``alt_score`` (0.25), ``nms_iou`` (0.45), ``contain`` (0.6), ``proposals`` (0: automatic),
``max_train_crops`` (2500), ``flip`` (true), ``crop_cache`` (5000). The defaults were chosen on
validation canvases (Fashion-MNIST train items), not on the benchmark's test canvases.

Quality and cost (``bench/boxes_bench.py``: Fashion-MNIST items on noisy 256x256 canvases, 2 shared
cores): after 100 annotated canvases (268 boxes, 10 classes) recall 0.81 and precision 0.72 at IoU 0.5
with the right class (one label per box: 0.77 and 0.79; boxes found whatever the label: 0.96); a cold
fit takes about 10 s, a refit after one more annotation 6 s, prediction about 19 images a second.
Most errors are between the tops (shirt, T-shirt, pullover, coat, dress).
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from labelhub.backend.models.heads import (TASK_SCALE, ControlHead, Example, TaskInput, image_region, no_label_reason,
                                           region_id)

log = logging.getLogger(__name__)

__all__ = ["BoxesHead", "BoxesFit", "read_boxes"]

#: Changes when the fitted state's layout or the features change (part of :meth:`BoxesHead.identity`).
FORMAT_VERSION = 1

#: The parameters and their defaults (see the module docstring).
DEFAULTS = {"min_score": 0.6, "alt_score": 0.25, "nms_iou": 0.45, "contain": 0.6, "proposals": 0,
            "max_train_crops": 2500, "flip": True, "crop_cache": 5000}

_NEG_IOU = 0.4  # background below this IoU with every annotated box
_STAGE1_IMAGES = 150  # images the objectness model learns from
_STAGE1_ROWS = 80  # proposals per kind (overlapping, near miss, background) and image it learns from
_HARD_NEGATIVES = 3  # per stage-1 image
_JITTERS = 2  # jittered copies per annotated box
_CROP_MARGIN = 0.05  # of the box's size, around the embedder's crop
_HOG_SIDES, _HOG_CELL, _HOG_MARGIN = (40, 20), 5, 0.1
_WORK_MIN_BOX, _WORK_MAX_SIDE = 24.0, 800
_MAX_WINDOWS = 6000  # per image (the stride grows past it)
_PRE_NMS = 3000  # candidates of the proposals' NMS at most
_EDGE_RADII = (1, 2, 4)
_PART_RATIO = 0.2  # a box inside a better one and this large against it is a part of it, whatever its label


@dataclass
class BoxesFit:
    """The fitted state of a :class:`BoxesHead` (picklable with joblib).

    Attributes:
        labels: The classifier's columns: labels of the config, ``None`` for the background.
        embedder: The name of the embedder whose vectors the classifier reads.
        shapes: ``(k, 2)`` learned box shapes: log width and log height relative to the image's geometric
            mean side ``sqrt(W * H)``.
        work_side: Geometric mean side, in pixels, of the working copy proposals are computed on.
        objectness: The stage-1 ``HistGradientBoostingRegressor`` (29 cheap features -> IoU).
        classifier: The stage-2 ``Pipeline(StandardScaler, LogisticRegression)`` over labels + background.
        regressor: The stage-2 ``Pipeline(StandardScaler, Ridge)`` (features -> 4 box deltas), or ``None``.
        top_k: Proposals classified per image.
        stats: What the fit saw and cost (images, boxes, crops, embedded, seconds), for logs and benchmarks.
    """

    labels: tuple[str | None, ...]
    embedder: str
    shapes: np.ndarray
    work_side: float
    objectness: Any
    classifier: Any
    regressor: Any
    top_k: int
    stats: dict = field(default_factory=dict)


def read_boxes(example: Example, from_name: str, labels: Sequence[str]) -> list[tuple[float, float, float, float, str]]:
    """The annotated boxes of one control in an example, in pixels of the loaded image.

    Label Studio stores a rectangle as ``value.x/y/width/height`` in percent of the image's width and height,
    rotated by ``value.rotation`` degrees clockwise around its top-left corner
    (https://labelstud.io/tags/rectanglelabels). Percentages do not depend on the size the annotator saw
    (``original_width``/``original_height``): they are applied to the loaded image's size.

    Args:
        example: The annotated task.
        from_name: The RectangleLabels control's name.
        labels: The control's labels; a region with none of them is skipped.

    Returns:
        ``(x0, y0, x1, y1, label)`` per region, in pixels, within the image and at least a pixel wide and
        high: the axis-aligned box around a rotated one, with the first of the region's
        ``rectanglelabels`` that is one of ``labels``.

    Example:
        >>> read_boxes(example, "box", ["Cat"])  # doctest: +SKIP
        [(64.0, 48.0, 192.0, 144.0, 'Cat')]
    """
    width, height = example.input.size
    known = set(labels)
    out = []
    for region in example.regions(from_name):
        value = region.get("value") or {}
        label = next((lab for lab in value.get("rectanglelabels") or () if lab in known), None)
        try:
            x, y = float(value["x"]) * width / 100, float(value["y"]) * height / 100
            w, h = float(value["width"]) * width / 100, float(value["height"]) * height / 100
            angle = np.deg2rad(float(value.get("rotation") or 0.0))
        except (KeyError, TypeError, ValueError):
            continue
        if label is None or not np.isfinite([x, y, w, h, angle]).all() or not (w > 0 and h > 0):
            continue
        cos, sin = np.cos(angle), np.sin(angle)
        xs = x + np.array([0, w, w, 0]) * cos - np.array([0, 0, h, h]) * sin
        ys = y + np.array([0, w, w, 0]) * sin + np.array([0, 0, h, h]) * cos
        x0, y0 = max(0.0, float(xs.min())), max(0.0, float(ys.min()))
        x1, y1 = min(float(width), float(xs.max())), min(float(height), float(ys.max()))
        if x1 - x0 >= 1 and y1 - y0 >= 1:
            out.append((x0, y0, x1, y1, label))
    return out


def _parse_options(params: Mapping[str, Any]) -> dict:
    options = {}
    for key, default in DEFAULTS.items():
        value = params.get(key, default)
        try:
            if isinstance(default, bool):
                value = value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
            else:
                value = type(default)(value)
                if not np.isfinite(value) or value < 0:
                    raise ValueError(value)
        except (TypeError, ValueError):
            log.warning("boxes head: parameter %s=%r is not valid, using %r", key, value, default)
            value = default
        options[key] = value
    return options


class BoxesHead(ControlHead):
    """Draws ``RectangleLabels`` boxes over an ``<Image>``: proposals, objectness, then a crop classifier.

    See the module docstring for the design and the parameters; an invalid parameter is logged and its
    default used.

    Args:
        control: A ``RectangleLabels`` control over an ``Image`` tag.
        host: The project model (its ``embedder("image")`` describes the crops, ``settings`` name it).
        params: ``min_score``, ``alt_score``, ``nms_iou``, ``contain``, ``proposals``, ``max_train_crops``,
            ``flip``, ``crop_cache``.
        controls: Every control of the label config (unused).

    Example:
        >>> head = BoxesHead(control, host)        # doctest: +SKIP
        >>> fitted = head.fit(examples)            # None until two boxes are annotated
        >>> head.predict(inputs, fitted)[0][0]["value"]["rectanglelabels"]
        ['Cat']
    """

    name = "boxes"

    def __init__(self, control, host, params: Mapping[str, Any] | None = None, controls=()):
        super().__init__(control, host, params, controls)
        self.options = _parse_options(self.params)
        self._cache = None
        self._cache_lock = threading.Lock()
        self._embedded = 0  # crops this head embedded (statistics)

    @classmethod
    def supports(cls, control, params: Mapping[str, Any]) -> bool:
        """Whether ``control`` is a ``RectangleLabels`` tag over an ``Image`` tag with at least one label.

        Args:
            control: The control tag (:class:`~labelhub.label_config.ControlSpec`).
            params: The project's parameters (unused).

        Returns:
            ``True`` for such a control.
        """
        return control.type == "rectanglelabels" and control.object_tag.lower() == "image" and bool(control.labels)

    @classmethod
    def refusal(cls, control, params: Mapping[str, Any]) -> str | None:
        """Why :meth:`supports` refuses a ``RectangleLabels`` over an ``Image``: it has no ``<Label>``; with
        dynamic labels (``value="$regions"``, the visual-genome template: each task's data lists its labels,
        https://labelstud.io/tags/rectanglelabels) that is said, as the boxes head learns the config's own labels
        only (decision: a label set that differs per task gives no classes to learn across tasks).

        Returns:
            The reason, or the base class's (:meth:`ControlHead.refusal`) for another control.
        """
        if control.type == "rectanglelabels" and control.object_tag.lower() == "image" and not control.labels:
            return no_label_reason(control, "boxes")
        return super().refusal(control, params)

    def identity(self) -> Any:
        """What besides the examples decides a fit: the labels, the image embedder and the options; and the task
        score's rule (:data:`~labelhub.backend.models.heads.TASK_SCALE`), which moves the version.

        Returns:
            A JSON-serializable list.
        """
        settings = self.host.settings
        return [self.name, FORMAT_VERSION, self.control.from_name, sorted(self.control.labels),
                f"{settings.image_embedder}@{settings.image_size}",
                {k: v for k, v in sorted(self.options.items()) if k != "crop_cache"}, TASK_SCALE]

    def warmup(self) -> None:
        """Load the image embedder."""
        self.host.embedder("image")

    # fit ---------------------------------------------------------------------------------------------
    def fit(self, examples: Sequence[Example]) -> BoxesFit | None:
        """Learn the proposals' shapes, the objectness model, the crop classifier and the box regression.

        Args:
            examples: The annotated tasks (``input.media`` a PIL image; other media are skipped).

        Returns:
            A :class:`BoxesFit`, or ``None`` while fewer than two boxes with a label of the config are
            annotated.

        Raises:
            ImportError: When scikit-learn, OpenCV or the embedder's packages are missing.
        """
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        started, embedded_before = time.perf_counter(), self._embedded
        labels = tuple(self.control.labels)
        items = []  # (input, boxes (n, 4) px, class indices (n,))
        for ex in examples:
            if not hasattr(ex.input.media, "size"):
                continue
            found = read_boxes(ex, self.control.from_name, labels)
            if found:
                items.append((ex.input, np.array([b[:4] for b in found], dtype=np.float64),
                              np.array([labels.index(b[4]) for b in found])))
        n_boxes = sum(len(b) for _, b, _ in items)
        if n_boxes < 2:
            return None

        rel = np.concatenate([np.log(np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1) / _gm_side(inp.size))
                              for inp, b, _ in items])
        shapes = _learn_shapes(rel)
        work_side = float(_WORK_MIN_BOX / np.exp(np.percentile(rel.min(1), 5)))
        top_k = int(self.options["proposals"]) or int(min(40, max(8, 3 * max(len(b) for _, b, _ in items))))

        objectness, prepared, stage1_rows = _fit_objectness(items, shapes, work_side)
        t_stage1 = time.perf_counter() - started

        # stage-2 training crops (see _training_crops), then the stage-1 model's best false proposals
        jobs = []  # (item, box px, class or -1, regression deltas or None, mirrored, priority)
        for i, (inp, boxes, cls) in enumerate(items):
            jobs += _training_crops(i, inp, boxes, cls, _image_rng(inp), bool(self.options["flip"]))
        for i, (prep, props, feats) in prepared.items():
            with _one_thread():
                scores = objectness.predict(feats)
            kept = _top_proposals(props, scores, 3 * top_k)[0] / prep.scale
            false = np.flatnonzero(_iou(kept, items[i][1]).max(1) < _NEG_IOU)[:_HARD_NEGATIVES]
            jobs += [(i, kept[k], -1, None, False, 1) for k in false]
        budget = max(int(self.options["max_train_crops"]), n_boxes)
        if len(jobs) > budget:  # by priority (annotated boxes first), then in an order stable across refits
            def rank(k):
                i, box, _, _, mirrored, priority = jobs[k]
                return priority, hashlib.sha1(f"{items[i][0].value}{np.round(box)}{mirrored}".encode()).digest()
            jobs = [jobs[k] for k in sorted(sorted(range(len(jobs)), key=rank)[:budget])]

        embedder = self.host.embedder("image")
        t_crops = time.perf_counter()
        x2 = self._features(embedder, [(items[i][0], box, mirrored) for (i, box, _, _, mirrored, _) in jobs], True)
        t_crops = time.perf_counter() - t_crops
        y2 = np.array([c if c >= 0 else len(labels) for (_, _, c, _, _, _) in jobs])
        if len(np.unique(y2)) < 2:  # boxes that cover their images whole: no background to learn from
            log.info("boxes head %s: no background around the %d boxes yet", self.control.from_name, n_boxes)
            return None
        t_fit = time.perf_counter()
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500, class_weight="balanced"))
        with _one_thread():
            classifier.fit(x2, y2)
        reg_rows = [k for k, job in enumerate(jobs) if job[3] is not None and not job[4]]
        regressor = None
        if len(reg_rows) >= 8:
            regressor = make_pipeline(StandardScaler(), Ridge(alpha=1000.0))
            with _one_thread():
                regressor.fit(x2[reg_rows], np.stack([jobs[k][3] for k in reg_rows]))
        stats = {"images": len(items), "boxes": n_boxes, "crops": len(jobs),
                 "embedded": self._embedded - embedded_before, "background": int((y2 == len(labels)).sum()),
                 "stage1_rows": stage1_rows, "stage1_seconds": round(t_stage1, 2),
                 "crops_seconds": round(t_crops, 2), "classifier_seconds": round(time.perf_counter() - t_fit, 2),
                 "seconds": round(time.perf_counter() - started, 2)}
        log.info("boxes head %s fitted: %s", self.control.from_name, stats)
        return BoxesFit(labels=tuple(labels[c] if c < len(labels) else None for c in classifier.classes_),
                        embedder=embedder.name, shapes=shapes, work_side=work_side, objectness=objectness,
                        classifier=classifier, regressor=regressor, top_k=top_k, stats=stats)

    # predict -----------------------------------------------------------------------------------------
    def predict(self, inputs: Sequence[TaskInput], fitted: BoxesFit | None) -> list[list[dict]]:
        """Detect the objects of each image.

        Args:
            inputs: The tasks' loaded images (other media get no result).
            fitted: What :meth:`fit` returned (``None``: no results).

        Returns:
            Per input, the results best first: one Label Studio ``rectanglelabels`` result per detected
            (box, label) (https://labelstud.io/guide/predictions): ``id``, ``from_name``, ``to_name``,
            ``type``, ``original_width``/``original_height`` (the image's pixels), ``image_rotation`` 0,
            ``value`` with ``x``, ``y``, ``width``, ``height`` (percent of the image, within [0, 100]),
            ``rotation`` 0 and ``rectanglelabels`` (one label of the config), and ``score`` (the label's
            probability, in [0, 1]). ``[]`` when it finds nothing, or when the embedder is no longer the one
            the fit used (the project model refits: the embedder is part of :meth:`identity`).

        Raises:
            ImportError: When OpenCV, scikit-learn or the embedder's packages are missing.
        """
        out: list[list[dict]] = [[] for _ in inputs]
        if fitted is None or not inputs:
            return out
        embedder = self.host.embedder("image")
        if embedder.name != fitted.embedder:
            log.warning("boxes head %s was fitted with %s, the embedder is now %s: no prediction until a refit",
                        self.control.from_name, fitted.embedder, embedder.name)
            return out
        known = set(self.control.labels)
        label_cols = np.array([k for k, lab in enumerate(fitted.labels) if lab is not None and lab in known])
        if not len(label_cols):
            return out
        jobs, owners = [], []
        for n, inp in enumerate(inputs):
            if not hasattr(inp.media, "size"):
                continue
            prep = _Prepared(inp.media, fitted.work_side)
            props, feats = _proposals(prep, fitted.shapes)
            with _one_thread():
                scores = fitted.objectness.predict(feats)
            for box in _top_proposals(props, scores, fitted.top_k)[0] / prep.scale:
                jobs.append((inp, box, False))
                owners.append(n)
        if not jobs:
            return out
        feats = self._features(embedder, jobs, cache=False)
        with _one_thread():
            probs = fitted.classifier.predict_proba(feats)
            boxes = np.stack([job[1] for job in jobs])
            if fitted.regressor is not None:
                boxes = _apply_deltas(boxes, fitted.regressor.predict(feats))
        background = [k for k, lab in enumerate(fitted.labels) if lab is None]
        objectness = 1.0 - probs[:, background[0]] if background else np.ones(len(probs))
        owners = np.array(owners)
        options = self.options
        for n, inp in enumerate(inputs):
            rows = np.flatnonzero(owners == n)
            if not len(rows):
                continue
            width, height = inp.size
            b = boxes[rows].copy()
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
            p = probs[rows][:, label_cols]
            for r in _suppress(b, objectness[rows], p.argmax(1), options["min_score"], options["nms_iou"],
                               options["contain"]):
                for rank, q in enumerate(np.argsort(-p[r])):
                    if rank and p[r, q] < options["alt_score"]:
                        break
                    value = {**image_region((width, height), tuple(float(v) for v in b[r])),
                             "rectanglelabels": [fitted.labels[label_cols[q]]]}
                    out[n].append({"id": region_id(), **self.result(value, min(1.0, max(0.0, float(p[r, q])))),
                                   "original_width": int(width), "original_height": int(height), "image_rotation": 0})
            out[n].sort(key=lambda result: -result["score"])
        return out

    # crops --------------------------------------------------------------------------------------------
    def _features(self, embedder, jobs: Sequence[tuple], cache: bool) -> np.ndarray:
        """Stage-2 features ``(len(jobs), dim)`` float32 of ``(input, box px, mirrored)`` jobs: the embedding
        of the crop, its two HOGs, its log width and height (relative to the image) and log aspect ratio.
        With ``cache``, embeddings come from and go to the head's LRU."""
        from PIL import Image

        pending, vectors, hogs, geometry = [], [None] * len(jobs), [], []
        for n, (inp, box, mirrored) in enumerate(jobs):
            image = inp.media if inp.media.mode == "RGB" else inp.media.convert("RGB")
            x0, y0, x1, y1 = (float(v) for v in box)
            w, h = max(1.0, x1 - x0), max(1.0, y1 - y0)
            side = _gm_side(inp.size)
            geometry.append([np.log(w / side), np.log(h / side), np.log(w / h)])
            m = _HOG_MARGIN
            gray = image.crop(tuple(round(v) for v in (x0 - m * w, y0 - m * h, x0 + (1 + m) * w, y0 + (1 + m) * h)))
            gray = gray.convert("L")
            if mirrored:
                gray = gray.transpose(Image.FLIP_LEFT_RIGHT)
            hogs.append(np.concatenate([_hog(np.asarray(gray.resize((s, s), Image.BILINEAR)), s) for s in _HOG_SIDES]))
            m = _CROP_MARGIN
            crop_box = tuple(round(v) for v in (x0 - m * w, y0 - m * h, x0 + (1 + m) * w, y0 + (1 + m) * h))
            key = None
            if cache:
                key = f"{embedder.name}\0{inp.value}\0{inp.size}\0{crop_box}\0{mirrored}"
                key = hashlib.sha1(key.encode()).digest()
                with self._cache_lock:
                    vectors[n] = self._crop_cache().get(key)
                if vectors[n] is not None:
                    continue
            crop = image.crop(crop_box)
            pending.append((n, key, crop.transpose(Image.FLIP_LEFT_RIGHT) if mirrored else crop))
        self._embedded += len(pending)
        if pending:
            for (n, key, _), vec in zip(pending, embedder.embed([crop for _, _, crop in pending])):
                vectors[n] = vec
                if key is not None:
                    with self._cache_lock:
                        self._crop_cache()[key] = vec
        return np.hstack([np.stack(vectors), np.stack(hogs), np.asarray(geometry)]).astype(np.float32)

    def _crop_cache(self):
        """The LRU of crop embeddings (call under ``_cache_lock``)."""
        if self._cache is None:
            from cachetools import LRUCache

            self._cache = LRUCache(maxsize=max(1, int(self.options["crop_cache"])))
        return self._cache


# -------------------------------------------------------------------------------------------------------
# stage 1: proposals and their cheap features

def _one_thread():
    """A context where OpenMP and BLAS pools run one thread. The CPU is shared with other workers, and
    scikit-learn's gradient boosting spins its OpenMP threads: on two busy cores its fit took 20 times
    as long with two threads as with one."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _gm_side(size: tuple[int, int]) -> float:
    """The geometric mean side ``sqrt(W * H)`` of a ``(width, height)``."""
    return float(np.sqrt(size[0] * size[1]))


def _learn_shapes(rel: np.ndarray) -> np.ndarray:
    """k-means centres ``(k, 2)`` of log relative box sizes ``(n, 2)``; ``k`` up to 6, one per 3 boxes."""
    from sklearn.cluster import KMeans

    k = int(min(6, max(1, len(rel) // 3), len(np.unique(np.round(rel, 3), axis=0))))
    if k == 1:
        return rel.mean(0, keepdims=True)
    with _one_thread():
        return KMeans(n_clusters=k, n_init=3, random_state=0).fit(rel).cluster_centers_


def _fit_objectness(items: list, shapes: np.ndarray, work_side: float) -> tuple[Any, dict, int]:
    """Stage 1: the IoU regressor, on a subset of images stable across refits.

    Returns:
        ``(model, {item index: (prepared image, proposals, features)}, training rows)``.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    chosen = sorted(range(len(items)), key=lambda i: hashlib.sha1(items[i][0].value.encode()).hexdigest())
    prepared, rows, targets = {}, [], []
    for i in sorted(chosen[:_STAGE1_IMAGES]):
        inp, boxes, _ = items[i]
        prep = _Prepared(inp.media, work_side)
        props, feats = _proposals(prep, shapes)
        best = _iou(props, boxes * prep.scale).max(1)
        pick = _sample_rows(best, _image_rng(inp), _STAGE1_ROWS)
        rows.append(feats[pick])
        targets.append(best[pick])
        prepared[i] = (prep, props, feats)
    model = HistGradientBoostingRegressor(max_iter=100, learning_rate=0.1, max_leaf_nodes=31,
                                          l2_regularization=1.0, early_stopping=False, random_state=0)
    with _one_thread():
        model.fit(np.concatenate(rows), np.concatenate(targets))
    return model, prepared, sum(len(r) for r in rows)


class _Prepared:
    """The working copy of an image, its Canny edges, and the integral images of its feature maps."""

    def __init__(self, image, work_side: float):
        import cv2

        width, height = image.size
        scale = min(1.0, work_side / _gm_side((width, height)), _WORK_MAX_SIDE / max(width, height))
        w, h = max(8, int(round(width * scale))), max(8, int(round(height * scale)))
        self.w, self.h = w, h
        self.scale = float(np.sqrt((w / width) * (h / height)))
        image = image if image.mode == "RGB" else image.convert("RGB")
        rgb = np.asarray(image.resize((w, h)) if (w, h) != (width, height) else image, dtype=np.uint8)
        gray = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (0, 0), 1.5)
        mag = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
        # Canny's thresholds from the median gradient: mostly background and noise in most images
        high = float(max(8.0, 4.0 * np.median(mag)))
        self.edges = cv2.Canny(gray, 0.4 * high, high) > 0
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
        maps = [self.edges.astype(np.float32), mag / (float(mag.mean()) + 1e-3)]
        maps += [lab[:, :, c] for c in range(3)] + [lab[:, :, c] * lab[:, :, c] for c in range(3)]
        # (8, h + 1, w + 1): edges, gradient, L, a, b, L^2, a^2, b^2
        self.integral = np.stack([cv2.integral(np.ascontiguousarray(m), sdepth=cv2.CV_64F) for m in maps])

    def means(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Means ``(n, 8)``, sums ``(n, 8)`` and areas ``(n,)`` of the maps over boxes ``(n, 4)`` (working
        pixels, truncated to integers and clipped to the image, at least one pixel)."""
        x0 = boxes[:, 0].clip(0, self.w).astype(int)
        y0 = boxes[:, 1].clip(0, self.h).astype(int)
        x1 = np.maximum(boxes[:, 2].clip(0, self.w).astype(int), x0 + 1).clip(max=self.w)
        y1 = np.maximum(boxes[:, 3].clip(0, self.h).astype(int), y0 + 1).clip(max=self.h)
        x0, y0 = np.minimum(x0, x1 - 1), np.minimum(y0, y1 - 1)
        ii = self.integral
        sums = (ii[:, y1, x1] - ii[:, y0, x1] - ii[:, y1, x0] + ii[:, y0, x0]).T
        area = ((x1 - x0) * (y1 - y0)).astype(np.float64)
        return sums / area[:, None], sums, area


def _proposals(prep: _Prepared, shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate boxes ``(n, 4)`` in working pixels and their cheap features ``(n, 29)``."""
    import cv2

    sizes = np.exp(shapes) * np.sqrt(prep.w * prep.h)  # (k, 2) working pixels
    boxes, source = [], []
    # groups of edges at several dilation radii, within the learned sizes (generously)
    edges = prep.edges.astype(np.uint8)
    min_side, max_side = max(2.0, 0.4 * sizes.min()), 2.5 * sizes.max()
    for level, radius in enumerate(_EDGE_RADII, start=1):
        grown = cv2.dilate(edges, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
        count, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
        if count <= 1:
            continue
        st = stats[1:].astype(np.float64)  # x, y, w, h, area; the box shrinks back by the radius
        b = np.stack([st[:, 0] + radius, st[:, 1] + radius, st[:, 0] + st[:, 2] - radius,
                      st[:, 1] + st[:, 3] - radius], 1)
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        ok = (np.maximum(bw, bh) >= min_side) & (np.maximum(bw, bh) <= max_side) & (bw >= 1) & (bh >= 1)
        boxes.append(b[ok])
        source += [level] * int(ok.sum())
    # sliding windows at the learned shapes, strides of a fifth of the window (coarser past _MAX_WINDOWS)
    sizes = np.minimum(sizes, [prep.w, prep.h])
    count = sum((prep.w / (0.2 * w) + 1) * (prep.h / (0.2 * h) + 1) for w, h in sizes)
    step = 0.2 * max(1.0, np.sqrt(count / _MAX_WINDOWS))
    for w, h in sizes:
        xs = np.unique(np.append(np.arange(0, prep.w - w + 1e-6, max(1.0, step * w)), prep.w - w))
        ys = np.unique(np.append(np.arange(0, prep.h - h + 1e-6, max(1.0, step * h)), prep.h - h))
        gx, gy = np.meshgrid(xs, ys)
        boxes.append(np.stack([gx.ravel(), gy.ravel(), gx.ravel() + w, gy.ravel() + h], 1))
        source += [0] * gx.size
    boxes = np.round(np.concatenate(boxes), 1)
    return boxes, _cheap_features(prep, boxes, np.asarray(source, dtype=np.float64), shapes)


def _cheap_features(prep: _Prepared, boxes: np.ndarray, source: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """29 features ``(n, 29)`` float32 per box: shape, edge and gradient densities, contrast, source."""
    x0, y0, x1, y1 = boxes.T
    w, h = np.maximum(x1 - x0, 1.0), np.maximum(y1 - y0, 1.0)
    side = np.sqrt(prep.w * prep.h)
    lw, lh = np.log(w / side), np.log(h / side)
    shape_dist = np.abs(lw[:, None] - shapes[None, :, 0]) + np.abs(lh[:, None] - shapes[None, :, 1])
    inner, sums_in, area_in = prep.means(boxes)
    center = prep.means(np.stack([x0 + 0.25 * w, y0 + 0.25 * h, x1 - 0.25 * w, y1 - 0.25 * h], 1))[0]
    _, sums_out, area_out = prep.means(np.stack([x0 - 0.25 * w, y0 - 0.25 * h, x1 + 0.25 * w, y1 + 0.25 * h], 1))
    ring = (sums_out - sums_in) / np.maximum(area_out - area_in, 1.0)[:, None]
    tw, th = np.maximum(1.0, 0.15 * w), np.maximum(1.0, 0.15 * h)
    strips_in = ((x0, y0, x0 + tw, y1), (x1 - tw, y0, x1, y1), (x0, y0, x1, y0 + th), (x0, y1 - th, x1, y1))
    strips_out = ((x0 - tw, y0, x0, y1), (x1, y0, x1 + tw, y1), (x0, y0 - th, x1, y0), (x0, y1, x1, y1 + th))
    s_in = np.stack([prep.means(np.stack(s, 1))[0][:, :2] for s in strips_in], 1)  # (n, 4, [edges, gradient])
    s_out = np.stack([prep.means(np.stack(s, 1))[0][:, :2] for s in strips_out], 1)
    std_in = np.sqrt(np.maximum(inner[:, 5:8] - inner[:, 2:5] ** 2, 0)).sum(1)
    std_ring = np.sqrt(np.maximum(ring[:, 5:8] - ring[:, 2:5] ** 2, 0)).sum(1)
    contrast = np.linalg.norm(inner[:, 2:5] - ring[:, 2:5], axis=1)
    border = ((x0 <= 0.5) | (y0 <= 0.5) | (x1 >= prep.w - 0.5) | (y1 >= prep.h - 0.5)).astype(np.float64)
    return np.column_stack([
        lw, lh, lw - lh, shape_dist.min(1), shape_dist.argmin(1),
        inner[:, 0], center[:, 0], ring[:, 0], inner[:, 0] - ring[:, 0],
        inner[:, 1], center[:, 1], ring[:, 1], inner[:, 1] - ring[:, 1],
        s_in[:, :, 0].min(1), s_in[:, :, 0].mean(1), s_out[:, :, 0].max(1), s_out[:, :, 0].mean(1),
        s_in[:, :, 1].min(1), s_in[:, :, 1].mean(1), s_out[:, :, 1].max(1), s_out[:, :, 1].mean(1),
        s_in[:, :, 0].min(1) - s_out[:, :, 0].max(1), s_in[:, :, 1].min(1) - s_out[:, :, 1].mean(1),
        contrast, contrast / (std_in + std_ring + 1e-3), std_in, std_ring, border, source,
    ]).astype(np.float32)


def _image_rng(inp: TaskInput) -> np.random.Generator:
    """A random generator of the image's own: a refit with one more image draws the same for the others."""
    return np.random.default_rng(int(hashlib.sha1(f"{inp.value}\0{inp.size}".encode()).hexdigest()[:12], 16))


def _sample_rows(best_iou: np.ndarray, rng: np.random.Generator, per_kind: int) -> np.ndarray:
    """Stage-1 training rows of one image: up to ``per_kind`` overlapping proposals (IoU >= 0.4), near
    misses (0 < IoU < 0.4) and background (IoU 0)."""
    picks = []
    for mask in (best_iou >= _NEG_IOU, (best_iou > 0) & (best_iou < _NEG_IOU), best_iou <= 0):
        idx = np.flatnonzero(mask)
        picks.append(idx if len(idx) <= per_kind else rng.choice(idx, per_kind, replace=False))
    return np.concatenate(picks)


def _top_proposals(boxes: np.ndarray, scores: np.ndarray, k: int, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best proposals after OpenCV's NMS: ``(boxes (<= k, 4), scores (<= k,))``, best first."""
    import cv2

    order = np.argsort(-scores)
    # NMS is quadratic: keep the candidates that may overlap an object (predicted IoU >= 0.1), 300 at least
    order = order[: int(np.clip((scores >= 0.1).sum(), min(len(order), 300), _PRE_NMS))]
    xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes[order]]
    positive = scores[order] - scores[order].min() + 1e-6  # NMSBoxes wants positive scores
    # NMSBoxes' own top_k cuts the candidates before the suppression, not after: cut here
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh, positive.tolist(), 0.0, iou), dtype=int).ravel()[:k]
    return boxes[order[keep]], scores[order[keep]]


# -------------------------------------------------------------------------------------------------------
# stage 2: training crops, suppression, box geometry

_HOG_DESCRIPTORS: dict[int, Any] = {}


def _hog(gray: np.ndarray, side: int) -> np.ndarray:
    """OpenCV's histogram of oriented gradients of a ``side`` x ``side`` grayscale crop: 9 bins, cells of
    ``_HOG_CELL`` pixels, blocks of 2x2 cells (Dalal and Triggs, 2005)."""
    import cv2

    descriptor = _HOG_DESCRIPTORS.get(side)
    if descriptor is None:  # read-only once built; threads may share it
        c = _HOG_CELL
        descriptor = _HOG_DESCRIPTORS[side] = cv2.HOGDescriptor((side, side), (2 * c, 2 * c), (c, c), (c, c), 9)
    return descriptor.compute(np.ascontiguousarray(gray)).ravel()


def _training_crops(i: int, inp: TaskInput, boxes: np.ndarray, cls: np.ndarray, rng: np.random.Generator,
                    flip: bool) -> list[tuple]:
    """Stage-2 training crops of one image: ``(i, box px, class or -1, deltas or None, mirrored, priority)``.

    Per annotated box: itself (priority 0), its mirror image (2, when ``flip``), ``_JITTERS`` jittered
    copies with IoU >= 0.6 (1: centre moved by ~8% of the size, sides scaled by ~12%), two shifted, cut or
    enlarged copies whose IoU with every box is in [0.05, 0.4) (1: the parts and near misses the
    classifier must call background); per image, two windows of its box sizes that overlap no box by 0.1.
    """
    size = inp.size
    jobs = []
    for box, c in zip(boxes, cls):
        c = int(c)
        jobs.append((i, box, c, np.zeros(4), False, 0))
        if flip:
            jobs.append((i, box, c, np.zeros(4), True, 2))
        w, h = box[2] - box[0], box[3] - box[1]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        made = 0
        for _ in range(20):
            dx, dy = rng.normal(0, 0.08, 2)
            sw, sh = np.exp(rng.normal(0, 0.12, 2))
            cand = _clip_box((cx + dx * w, cy + dy * h, w * sw, h * sh), size)
            if made < _JITTERS and _iou(cand[None], box[None])[0, 0] >= 0.6:
                jobs.append((i, cand, c, _deltas(cand, box), False, 1))
                made += 1
        made = 0
        for _ in range(20):
            kind = rng.integers(3)
            if kind == 0:  # shifted by 30-80% of the size
                angle, shift = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.8)
                x, y, nw, nh = cx + shift * w * np.cos(angle), cy + shift * h * np.sin(angle), w, h
            elif kind == 1:  # a part: 35-65% of each side, anywhere inside
                nw, nh = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)
                x, y = rng.uniform(box[0] + nw / 2, box[2] - nw / 2), rng.uniform(box[1] + nh / 2, box[3] - nh / 2)
            else:  # the box and its surroundings: 1.7-2.5 times each side
                nw, nh = w * rng.uniform(1.7, 2.5), h * rng.uniform(1.7, 2.5)
                x, y = cx + rng.uniform(-0.3, 0.3) * w, cy + rng.uniform(-0.3, 0.3) * h
            cand = _clip_box((x, y, nw, nh), size)
            if made < 2 and 0.05 <= _iou(cand[None], boxes)[0].max() < _NEG_IOU:
                jobs.append((i, cand, -1, None, False, 1))
                made += 1
    made = 0
    for _ in range(20):
        j = rng.integers(len(boxes))
        nw, nh = np.minimum((boxes[j, 2:] - boxes[j, :2]) * np.exp(rng.uniform(-0.35, 0.35, 2)),
                            [size[0] - 1, size[1] - 1])
        x, y = rng.uniform(nw / 2, size[0] - nw / 2), rng.uniform(nh / 2, size[1] - nh / 2)
        cand = _clip_box((x, y, nw, nh), size)
        if made < 2 and _iou(cand[None], boxes)[0].max() < 0.1:
            jobs.append((i, cand, -1, None, False, 1))
            made += 1
    return jobs


def _clip_box(center_box: tuple, size: tuple[int, int]) -> np.ndarray:
    """``(x0, y0, x1, y1)`` of a ``(cx, cy, w, h)`` box, within a ``(width, height)`` image, >= 1 pixel."""
    cx, cy, w, h = center_box
    width, height = size
    x0, y0 = min(max(cx - w / 2, 0.0), width - 1.0), min(max(cy - h / 2, 0.0), height - 1.0)
    return np.array([x0, y0, max(min(cx + w / 2, width), x0 + 1), max(min(cy + h / 2, height), y0 + 1)])


def _suppress(boxes: np.ndarray, objectness: np.ndarray, labels: np.ndarray, min_score: float, iou: float,
              contain: float) -> list[int]:
    """Greedy NMS by objectness over boxes ``(n, 4)``: a box goes when its IoU with a kept one reaches
    ``iou``, or when a kept box of the same label holds ``contain`` of the smaller one's area (a part of an
    object). Boxes under ``min_score`` or a pixel wide go too. Returns the kept indices, best first."""
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0) * (y1 - y0)
    kept: list[int] = []
    for i in np.argsort(-objectness):
        if objectness[i] < min_score:
            break
        if x1[i] - x0[i] < 1 or y1[i] - y0[i] < 1:
            continue
        for j in kept:
            inter = max(0.0, min(x1[i], x1[j]) - max(x0[i], x0[j])) * max(0.0, min(y1[i], y1[j]) - max(y0[i], y0[j]))
            if inter / (area[i] + area[j] - inter) >= iou or (area[i] <= area[j] and inter / area[i] >= contain and (
                    labels[i] == labels[j] or area[i] >= _PART_RATIO * area[j])):
                break
        else:
            kept.append(int(i))
    return kept


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of ``(x0, y0, x1, y1)`` boxes."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _deltas(box: np.ndarray, target: np.ndarray) -> np.ndarray:
    """R-CNN box regression targets ``(dx, dy, log dw, log dh)`` from ``box`` to ``target``."""
    w, h = box[2] - box[0], box[3] - box[1]
    tw, th = target[2] - target[0], target[3] - target[1]
    return np.array([((target[0] + target[2]) - (box[0] + box[2])) / (2 * w),
                     ((target[1] + target[3]) - (box[1] + box[3])) / (2 * h), np.log(tw / w), np.log(th / h)])


def _apply_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Boxes ``(n, 4)`` moved by R-CNN deltas ``(n, 4)`` (scale changes capped at e^1)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + w / 2 + deltas[:, 0] * w, boxes[:, 1] + h / 2 + deltas[:, 1] * h
    nw, nh = w * np.exp(deltas[:, 2].clip(-1, 1)), h * np.exp(deltas[:, 3].clip(-1, 1))
    return np.stack([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], 1)
