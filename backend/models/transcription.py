"""The transcription head: a ``<TextArea>`` over an ``<Image>`` answered by offline OCR.

It answers a ``<TextArea>`` tag over an ``<Image>`` tag (https://labelstud.io/tags/textarea) with the text
an OCR engine reads in the image; it learns nothing (``learns = False``) and answers from the first task.

**Engine.** RapidOCR: PaddleOCR's PP-OCR text detector, angle classifier and recognizer exported to ONNX
and run by ONNX Runtime on the CPU, with the model files inside the PyPI wheel (nothing is downloaded at
run time). Two packages carry it, and the first one installed is used (``ocr_engine`` picks one):

- ``rapidocr`` (3.x: PP-OCRv6 small models; depends on ``opencv-python-headless``, runs on ``onnxruntime``,
  which it does not pull in itself);
- ``rapidocr-onnxruntime`` (1.4: PP-OCRv4 models; pulls in ``opencv-python``, which installs the same
  ``cv2`` module as ``opencv-python-headless`` and may replace it).

The engine loads once per process, on first use or in :meth:`TranscriptionHead.warmup`, and runs one page at
a time (a lock: the engine is not re-entrant, and ONNX Runtime already uses the worker's threads).

**Reading order.** The detector finds text lines (segments of a line, where a line has gaps such as table
columns). A recursive XY-cut splits the page at its widest whitespace bands into blocks (top to bottom)
and columns (left to right, when the gap is at least a text height wide and each side has two lines of
text or more); within a block, segments whose vertical centres are within half a line height of each other
make one row, read left to right (:func:`reading_order`).

**Two shapes**, both Label Studio's (https://labelstud.io/templates/optical_character_recognition):

1. A ``<TextArea>`` without ``perRegion``: one result per task, the page's text, rows joined with ``"\\n"``
   and the segments of a row with a space; ``score`` is the mean confidence of the segments (in the task score,
   a confidence ``p`` counts as ``p ** 2 / 4``: :meth:`~labelhub.backend.models.heads.ControlHead.task_score`)::

       {"from_name": "transcription", "to_name": "image", "type": "textarea",
        "value": {"text": ["Chapter 4: Function reference\\nExtract a length field ..."]}, "score": 0.97}

2. ``perRegion="true"``: one region per detected segment, in reading order: a rectangle of the config's
   box control over the same image (:func:`box_control_for`: a ``<Rectangle>``, else a ``<RectangleLabels>``
   with exactly one ``<Label>``, which every line gets) and the transcription, two results with the same
   ``id``; the geometry is the axis-aligned box around the detected quadrilateral, in percent of the image
   (https://labelstud.io/tags/rectangle)::

       {"id": "a1b2c3d4e5", "from_name": "bbox", "to_name": "image", "type": "rectangle",
        "original_width": 1275, "original_height": 1651, "image_rotation": 0,
        "value": {"x": 14.6, "y": 6.2, "width": 23.7, "height": 1.4, "rotation": 0}, "score": 0.99}
       {"id": "a1b2c3d4e5", "from_name": "transcription", "to_name": "image", "type": "textarea",
        "original_width": 1275, "original_height": 1651, "image_rotation": 0,
        "value": {"x": 14.6, "y": 6.2, "width": 23.7, "height": 1.4, "rotation": 0,
                  "text": ["Chapter 4: Function reference"]}, "score": 0.99}

   The head then also :meth:`~TranscriptionHead.claims` the box control, so that no other head answers it
   (the project model logs once that the box control is drawn by OCR, not learned).

   **Which box control.** A ``<RectangleLabels>`` with several labels (``Trouser``, ``Sneaker``, ``Bag``;
   an invoice's ``Total``, ``Date``) classifies objects: OCR cannot tell which label a text line is, and
   labelling every line with the first one would teach nothing and draw wrong boxes. So such a control is
   left to the boxes head (:class:`~labelhub.backend.models.boxes.BoxesHead` learns it from the annotated
   boxes), and the per-region TextArea over the same image is not answered (:meth:`TranscriptionHead.unanswered`;
   the project model logs it once): its text belongs to boxes OCR does not draw. A ``<RectangleLabels>``
   with one label (``Text``, ``Line``) only marks text regions, as a ``<Rectangle>`` does, and OCR draws
   with it. Without any Rectangle or RectangleLabels control over the image it answers shape 1 and says
   so once in the log. ``<Polygon>`` controls and a ``<Labels>`` control over the image (the OCR
   template's) are not filled in.

Parameters (``params``, from ``extra_params`` / ``LABELHUB_MODEL_PARAMS``): ``min_score`` (0.5: segments
the recognizer is less sure of are dropped), ``use_cls`` (``false``; ``true`` runs the angle classifier,
which turns upside-down segments but also turned some upright lines of printed pages in
``bench/ocr_bench.py``), ``ocr_engine`` (``"auto"``, ``"rapidocr"`` or ``"rapidocr-onnxruntime"``).
ONNX Runtime uses ``LABELHUB_TORCH_THREADS`` threads (``settings.torch_threads``; 0: its default).

Cost and accuracy (``bench/ocr_bench.py``: 20 pages of a PDF manual at 150 dpi, each about 40 lines and
2,000-3,500 characters): character error rate 0.8% with ``rapidocr`` 3.10 (1.5% with
``rapidocr-onnxruntime`` 1.4, whose recognizer drops some spaces), about 2-4 CPU seconds per page on one
thread, most of it recognizing the lines (about 50 ms each).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from labelhub.backend.log_once import log_once
from labelhub.backend.models.heads import TASK_SCALE, ControlHead, Example, TaskInput, image_region, region_id

log = logging.getLogger(__name__)

__all__ = ["TranscriptionHead", "OcrLine", "OcrEngine", "load_engine", "available_engines", "reading_order",
           "page_text", "box_control_for", "ENGINES"]

#: The engine packages, in the order ``"auto"`` tries them: ``{name: (PyPI distribution, import name)}``.
ENGINES: dict[str, tuple[str, str]] = {
    "rapidocr": ("rapidocr", "rapidocr"),
    "rapidocr-onnxruntime": ("rapidocr-onnxruntime", "rapidocr_onnxruntime"),
}

#: A column of text has at least two segments this many text heights long on each side of its gap (so
#: that page numbers after dot leaders, a right-aligned tag or a narrow table column stay in their rows).
COLUMN_LINE_LENGTH = 8.0

#: The detector sees the image scaled down to at most this many pixels on its long side (PaddleOCR's own
#: default; RapidOCR's scales the short side up to 736, three times the work on a 150 dpi page for the
#: same text). Recognition reads the segments from the full image.
DET_SIDE = 960

_ENGINES: dict[tuple[str, int], "OcrEngine"] = {}
_ENGINES_LOCK = threading.Lock()
class OcrLine(NamedTuple):
    """One detected text segment.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in pixels of the image: the axis-aligned box around the detected
            quadrilateral.
        text: The recognised text.
        score: The recognizer's confidence in [0, 1].
    """

    box: tuple[float, float, float, float]
    text: str
    score: float


def available_engines() -> list[str]:
    """The engines of :data:`ENGINES` whose package is installed, in preference order.

    Returns:
        A list of engine names (``[]`` when no OCR package, or no ``onnxruntime``, is installed). Nothing is
        imported.
    """
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    return [name for name, (_, module) in ENGINES.items() if importlib.util.find_spec(module) is not None]


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(ENGINES[name][0])
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class OcrEngine:
    """A loaded RapidOCR engine (use :func:`load_engine`, which keeps one per process).

    Attributes:
        name: The engine's key in :data:`ENGINES`.
        version: Its package's version.
        threads: ONNX Runtime's intra-op threads (``-1``: its default).
    """

    name: str
    version: str
    threads: int
    _engine: Any = field(default=None, repr=False)
    _lock: Any = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def label(self) -> str:
        """``"<package>==<version>"``, for logs and the head's identity."""
        return f"{ENGINES[self.name][0]}=={self.version}"

    def read(self, image: Any, use_cls: bool = False) -> list[OcrLine]:
        """Detect and recognise the text segments of an image.

        Args:
            image: A ``PIL.Image.Image`` (any mode; read as RGB).
            use_cls: Run the angle classifier (turns segments read upside down).

        Returns:
            Every segment with non-empty text, whatever its score, in the engine's order (use
            :func:`reading_order`); ``[]`` when the image has no text.
        """
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        with self._lock:  # neither engine is re-entrant (rapidocr 3 keeps call options on the object)
            if self.name == "rapidocr":
                out = self._engine(bgr, use_cls=use_cls, text_score=0.0)
                boxes, texts, scores = getattr(out, "boxes", None), getattr(out, "txts", None), getattr(out, "scores", None)
                found = [] if boxes is None or texts is None else list(zip(boxes, texts, scores))
            else:
                res, _ = self._engine(bgr, use_cls=use_cls)
                found = [(r[0], r[1], r[2]) for r in (res or [])]
        lines = []
        for quad, text, score in found:
            pts = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
            text = str(text).strip()
            if text:
                lines.append(OcrLine((float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()),
                                      float(pts[:, 1].max())), text, float(min(1.0, max(0.0, score)))))
        return lines


def load_engine(name: str = "auto", threads: int = 0) -> OcrEngine:
    """The process's OCR engine, loaded on first use (thread-safe; one per ``(engine, threads)``).

    Args:
        name: ``"auto"`` (the first of :data:`ENGINES` installed), ``"rapidocr"`` or ``"rapidocr-onnxruntime"``.
        threads: ONNX Runtime's intra-op threads per session; 0 or less for its default (all cores).

    Returns:
        The loaded :class:`OcrEngine` (about 0.3 s to load the first time; the models ship in the wheel).

    Raises:
        ImportError: When the engine's package (or, for ``"auto"``, every engine package) is not installed.
        ValueError: When ``name`` is not an engine of :data:`ENGINES` nor ``"auto"``.

    Example:
        >>> from PIL import Image
        >>> load_engine().read(Image.new("RGB", (64, 32), "white"))
        []
    """
    if name == "auto":
        found = available_engines()
        if not found:
            raise ImportError("no OCR engine is installed: pip install rapidocr onnxruntime "
                              "(or rapidocr-onnxruntime)")
        name = found[0]
    if name not in ENGINES:
        raise ValueError(f"unknown OCR engine {name!r}: choose 'auto' or one of {sorted(ENGINES)}")
    threads = int(threads) if threads and threads > 0 else -1
    key = (name, threads)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = OcrEngine(name, _version(name), threads)
            engine._engine = _build(name, threads)
            log.info("OCR engine %s loaded (%s threads)", engine.label, threads if threads > 0 else "default")
            _ENGINES[key] = engine
    return engine


def _build(name: str, threads: int) -> Any:
    if name == "rapidocr":
        from rapidocr import RapidOCR

        return RapidOCR(params={"Global.log_level": "error", "Global.text_score": 0.0,
                                "Det.limit_type": "max", "Det.limit_side_len": DET_SIDE,
                                "EngineConfig.onnxruntime.intra_op_num_threads": threads})
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(text_score=0.0, det_limit_type="max", det_limit_side_len=DET_SIDE, intra_op_num_threads=threads)


def reading_order(lines: Sequence[OcrLine]) -> list[list[OcrLine]]:
    """Put text segments in reading order: blocks and columns first, then rows, each read left to right.

    A recursive XY-cut (Nagy & Seth, 1984) over the segments' boxes: a set of segments is split at the
    widest band of whitespace that crosses it entirely, horizontally (between blocks: the part above is
    read first) or vertically (between columns: the left part first). A vertical band counts as a
    column gap only when it is at least one median text height wide and each side holds at least two
    segments :data:`COLUMN_LINE_LENGTH` text heights long (lines of text, not page numbers, a line's
    right-aligned tag such as ``[Function]`` or a narrow table column, which stay in their rows).
    Within a part no band splits further, segments whose vertical centres are within half the smaller of
    the two heights make one row.

    Args:
        lines: Segments in any order.

    Returns:
        The rows, each a non-empty list of segments sorted by their left edge.

    Example:
        >>> rows = reading_order([OcrLine((300, 0, 400, 20), "b", 1.0), OcrLine((0, 2, 100, 20), "a", 1.0)])
        >>> [[ln.text for ln in row] for row in rows]
        [['a', 'b']]
    """
    lines = list(lines)
    if not lines:
        return []
    unit = float(np.median([ln.box[3] - ln.box[1] for ln in lines]))
    return _xy_cut(lines, max(unit, 1.0))


def _widest_gap(lines: list[OcrLine], axis: int, min_width: float, min_side: int,
                min_length: float = 0.0) -> tuple[float, float] | None:
    """The widest whitespace band ``(width, cut)`` across ``lines`` along ``axis`` (0: x, 1: y), or None.

    A band counts when it is at least ``min_width`` wide and each side holds at least ``min_side`` segments
    at least ``min_length`` long along ``axis``.
    """
    spans = sorted((ln.box[axis], ln.box[axis + 2]) for ln in lines)
    long_total = sum(hi - lo >= min_length for lo, hi in spans)
    best, reach = None, spans[0][1]
    long_before = int(spans[0][1] - spans[0][0] >= min_length)
    for lo, hi in spans[1:]:
        width = lo - reach
        if width > 0 and width >= min_width and min(long_before, long_total - long_before) >= min_side:
            if best is None or width > best[0]:
                best = (width, (reach + lo) / 2)
        reach = max(reach, hi)
        long_before += int(hi - lo >= min_length)
    return best


def _xy_cut(lines: list[OcrLine], unit: float) -> list[list[OcrLine]]:
    if len(lines) > 1:
        x_gap = _widest_gap(lines, 0, unit, 2, COLUMN_LINE_LENGTH * unit)
        y_gap = _widest_gap(lines, 1, 0.0, 1)
        if x_gap is not None or y_gap is not None:
            axis, cut = (0, x_gap[1]) if y_gap is None or (x_gap is not None and x_gap[0] >= y_gap[0]) else (1, y_gap[1])
            first = [ln for ln in lines if ln.box[axis + 2] <= cut]
            second = [ln for ln in lines if ln.box[axis + 2] > cut]
            return _xy_cut(first, unit) + _xy_cut(second, unit)
    return _rows(lines)


def _rows(lines: Sequence[OcrLine]) -> list[list[OcrLine]]:
    rows: list[list[OcrLine]] = []
    spans: list[tuple[float, float]] = []  # each row's (top, bottom)
    for line in sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3]) / 2):
        top, bottom = line.box[1], line.box[3]
        if rows:
            row_top, row_bottom = spans[-1]
            if abs((top + bottom) / 2 - (row_top + row_bottom) / 2) <= 0.5 * min(bottom - top, row_bottom - row_top):
                rows[-1].append(line)
                spans[-1] = (min(row_top, top), max(row_bottom, bottom))
                continue
        rows.append([line])
        spans.append((top, bottom))
    return [sorted(row, key=lambda ln: ln.box[0]) for row in rows]


def page_text(rows: Sequence[Sequence[OcrLine]]) -> str:
    """The text of a page: its rows joined with ``"\\n"``, the segments of a row with a space.

    Args:
        rows: From :func:`reading_order`.

    Returns:
        The text (``""`` for no rows).
    """
    return "\n".join(" ".join(line.text for line in row) for row in rows)


def box_control_for(control: Any, controls: Sequence[Any]) -> tuple[Any | None, str | None]:
    """The box control a per-region TextArea's OCR lines are drawn with (see the module docstring).

    Args:
        control: The ``<TextArea perRegion="true">`` (:class:`~labelhub.label_config.ControlSpec`).
        controls: Every control of the label config.

    Returns:
        ``(box, None)``: the first ``<Rectangle>`` over the same object tag, else the first ``<RectangleLabels>``
        over it with exactly one label; ``(None, reason)`` when the only box controls over it are
        ``<RectangleLabels>`` with several labels (object classes: left to the boxes head, the TextArea is
        not answered; ``reason`` says so); ``(None, None)`` when there is no box control over it.
    """
    same = [c for c in controls if c.to_name == control.to_name and c.from_name != control.from_name]
    rect = next((c for c in same if c.tag == "Rectangle"), None)
    if rect is not None:
        return rect, None
    typed = [c for c in same if c.tag == "RectangleLabels" and c.labels]
    single = next((c for c in typed if len(c.labels) == 1), None)
    if single is not None:
        return single, None
    if typed:
        names = ", ".join(f"<RectangleLabels name={c.from_name!r}> ({len(c.labels)} labels)" for c in typed)
        return None, (f"its regions would be drawn on {names}, whose labels classify objects, not text lines: "
                      "those are learned from the annotated boxes, and OCR draws its lines only on a <Rectangle> "
                      "or a <RectangleLabels> with one label")
    return None, None


class TranscriptionHead(ControlHead):
    """A TextArea over an Image answered by offline OCR (see the module docstring).

    Args:
        control: The ``<TextArea>`` control.
        host: The project model (its ``settings.torch_threads`` sets ONNX Runtime's threads).
        params: ``min_score``, ``use_cls``, ``ocr_engine``.
        controls: Every control of the label config (the per-region box control is looked for there).

    Raises:
        ValueError: When ``min_score`` is not a number.
    """

    name = "ocr"
    learns = False

    def __init__(self, control, host, params: Mapping[str, Any] | None = None, controls=()):
        super().__init__(control, host, params, controls)
        self.min_score = float(self.params.get("min_score", 0.5))
        self.use_cls = bool(self.params.get("use_cls", False))
        self.engine_name = str(self.params.get("ocr_engine", "auto"))
        self.box_control, self._unanswered = box_control_for(control, self.controls) if control.per_region \
            else (None, None)
        if control.per_region and self.box_control is None and self._unanswered is None:
            log_once(log, ("transcription: no box", control.from_name, control.to_name,
                           tuple(c.from_name for c in self.controls)),
                     "<TextArea name=%r perRegion=\"true\">: no <Rectangle> or <RectangleLabels> over <Image "
                     "name=%r> to draw its regions with; it is answered with the whole page's text instead",
                     control.from_name, control.to_name)

    def unanswered(self) -> str | None:
        """Why this control is left unanswered: a per-region TextArea whose image has only ``<RectangleLabels>``
        with several labels (see :func:`box_control_for`); ``None`` otherwise."""
        return self._unanswered

    @classmethod
    def supports(cls, control, params: Mapping[str, Any]) -> bool:
        """Whether ``control`` is a TextArea over an Image and an OCR engine package is installed.

        Args:
            control: A :class:`~labelhub.label_config.ControlSpec`.
            params: The control's parameters (``ocr_engine`` names the package wanted).

        Returns:
            ``True`` when the head can answer; a missing package is named once in the log.
        """
        if control.tag != "TextArea" or control.object_tag != "Image":
            return False
        wanted = str(params.get("ocr_engine", "auto"))
        found = available_engines()
        if (wanted == "auto" and found) or wanted in found:
            return True
        log_once(log, ("transcription: no engine", wanted), "<TextArea name=%r> over an image needs an OCR engine: "
                 "pip install rapidocr onnxruntime (or rapidocr-onnxruntime); %r is not installed", control.from_name,
                 wanted)
        return False

    def claims(self) -> tuple[str, ...]:
        """The TextArea's ``from_name``, and the box control's when the regions are drawn with it.

        Returns:
            ``(textarea,)`` or ``(textarea, box_control)``.
        """
        if self.box_control is not None:
            return (self.control.from_name, self.box_control.from_name)
        return (self.control.from_name,)

    def _threads(self) -> int:
        settings = getattr(self.host, "settings", None)
        return int(getattr(settings, "torch_threads", 0) or 0)

    def _engine(self) -> OcrEngine:
        return load_engine(self.engine_name, self._threads())

    def identity(self) -> Any:
        """The head, its control, the box control, the engine package and version, the parameters and the task
        score's rule (:data:`~labelhub.backend.models.heads.TASK_SCALE`).

        Returns:
            A JSON-serializable list (no model is loaded).
        """
        found = available_engines()
        engine = found[0] if self.engine_name == "auto" and found else self.engine_name
        version = _version(engine) if engine in ENGINES else "unknown"
        return [self.name, self.control.from_name, self.control.to_name,
                self.box_control.from_name if self.box_control is not None else None,
                f"{engine}=={version}", self.min_score, self.use_cls, TASK_SCALE]

    def warmup(self) -> None:
        """Load the OCR engine and read one rendered word (rapidocr 3 loads each model on its first use)."""
        from PIL import Image, ImageDraw, ImageFont

        image = Image.new("RGB", (160, 48), "white")
        ImageDraw.Draw(image).text((8, 8), "Warmup", fill="black", font=ImageFont.load_default(size=28))
        self._engine().read(image, use_cls=self.use_cls)

    def fit(self, examples: Sequence[Example]) -> None:
        """Nothing to learn (``learns = False``).

        Returns:
            ``None``.
        """
        return None

    def predict(self, inputs: Sequence[TaskInput], fitted: Any | None = None) -> list[list[dict]]:
        """Read each image and answer its text in the TextArea's shape (see the module docstring).

        Args:
            inputs: The tasks' images (``media`` a ``PIL.Image.Image``).
            fitted: Ignored (``None``: the head does not learn).

        Returns:
            Per task: ``[]`` when no text was read with at least ``min_score``; else one ``textarea`` result
            (shape 1), or per segment a box result and a ``textarea`` result sharing an ``id`` (shape 2,
            ``perRegion="true"``). Format: https://labelstud.io/tags/textarea and
            https://labelstud.io/guide/predictions.

        Raises:
            ImportError: When the OCR engine package is missing (the project model logs it and leaves the
                control out).
        """
        engine = self._engine()
        out = []
        for item in inputs:
            lines = [ln for ln in engine.read(item.media, use_cls=self.use_cls) if ln.score >= self.min_score]
            rows = reading_order(lines)
            if not rows:
                out.append([])
            elif self.box_control is None:
                score = float(np.mean([ln.score for row in rows for ln in row]))
                out.append([self.result({"text": [page_text(rows)]}, score)])
            else:
                out.append(self._regions(item.size, [ln for row in rows for ln in row]))
        return out

    def _regions(self, size: tuple[int, int], lines: Sequence[OcrLine]) -> list[dict]:
        box = self.box_control
        width, height = size
        common = {"to_name": self.control.to_name, "original_width": width, "original_height": height,
                  "image_rotation": 0}
        results = []
        for line in lines:
            rid = region_id()
            geometry = image_region(size, line.box)
            value = dict(geometry)
            if box.tag == "RectangleLabels":
                value["rectanglelabels"] = [box.labels[0]]
            results.append({"id": rid, "from_name": box.from_name, "type": box.type, **common, "value": value,
                            "score": line.score})
            results.append(self.result({**geometry, "text": [line.text]}, line.score, id=rid, **common))
        return results
