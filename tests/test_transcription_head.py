"""The transcription head: offline OCR of rendered text into Label Studio's TextArea results.

Images are rendered here with Pillow (DejaVu Sans from Debian's ``fonts-dejavu-core``, else Pillow's own
default TrueType font), so the text to read is known exactly. Formats:
https://labelstud.io/tags/textarea, https://labelstud.io/templates/optical_character_recognition.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from labelhub.backend.models.heads import TaskInput
from labelhub.backend.models.transcription import (TranscriptionHead, available_engines, load_engine,
                                                   reading_order)
from labelhub.label_config import control_specs

LINES = ["Invoice number 4711 dated 12 March 2024",
         "Deliver to: Hamburg harbour, gate 7",
         "Total amount due: 1,250.00 EUR"]
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

PAGE_CONFIG = """<View><Image name="image" value="$image"/>
<TextArea name="transcription" toName="image" rows="5"/></View>"""
REGION_CONFIG = """<View><Image name="image" value="$ocr"/>
<Labels name="label" toName="image"><Label value="Text"/><Label value="Handwriting"/></Labels>
<Rectangle name="bbox" toName="image" strokeWidth="3"/>
<Polygon name="poly" toName="image" strokeWidth="3"/>
<TextArea name="transcription" toName="image" editable="true" perRegion="true" required="true"
          maxSubmissions="1" rows="5" placeholder="Recognized Text" displayMode="region-list"/></View>"""
RECTLABELS_CONFIG = """<View><Image name="image" value="$ocr"/>
<RectangleLabels name="box" toName="image"><Label value="Line"/></RectangleLabels>
<TextArea name="transcription" toName="image" perRegion="true"/></View>"""
OBJECTS_CONFIG = """<View><Image name="image" value="$ocr"/>
<RectangleLabels name="box" toName="image"><Label value="Line"/><Label value="Stamp"/></RectangleLabels>
<TextArea name="transcription" toName="image" perRegion="true"/></View>"""
NO_BOX_CONFIG = """<View><Image name="image" value="$ocr"/>
<TextArea name="transcription" toName="image" perRegion="true"/></View>"""


class StubHost:
    """The settings are all a transcription head uses of the project model."""

    def __init__(self):
        from labelhub.backend.settings import Settings

        self.settings = Settings()


def font(size: int):
    return ImageFont.truetype(str(FONT), size) if FONT.exists() else ImageFont.load_default(size=size)


def render(lines=LINES, size=(900, 300), top=40, step=80, left=40):
    """A white RGB image with ``lines`` in black, and each line's pixel box ``(x0, y0, x1, y1)``."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    boxes = []
    for k, line in enumerate(lines):
        xy = (left, top + k * step)
        draw.text(xy, line, fill="black", font=font(30))
        boxes.append(draw.textbbox(xy, line, font=font(30)))
    return image, boxes


def head_for(config: str, params=None) -> TranscriptionHead:
    controls = control_specs(config)
    control = next(c for c in controls if c.tag == "TextArea")
    assert TranscriptionHead.supports(control, params or {})
    return TranscriptionHead(control, StubHost(), params or {}, controls)


def task(image) -> TaskInput:
    return TaskInput(task={"id": 1, "data": {"image": "page.png"}}, value="page.png", media=image)


def cer(text: str, truth: str) -> float:
    """Character error rate of ``text`` against ``truth``, whitespace runs collapsed to one space."""
    text, truth = " ".join(text.split()), " ".join(truth.split())
    return Levenshtein.distance(text, truth) / len(truth)


@pytest.fixture(scope="module")
def page():
    return render()


def test_an_ocr_engine_is_installed_and_runs_offline():
    assert available_engines(), "pip install rapidocr onnxruntime (or rapidocr-onnxruntime)"
    assert load_engine().read(Image.new("RGB", (64, 32), "white")) == []


def test_textarea_without_per_region_answers_the_page_text_in_reading_order(page):
    image, _ = page
    head = head_for(PAGE_CONFIG)
    assert head.learns is False and head.fit([]) is None and head.claims() == ("transcription",)
    [results] = head.predict([task(image)], None)
    assert len(results) == 1
    result = results[0]
    assert set(result) == {"from_name", "to_name", "type", "value", "score"}
    assert (result["from_name"], result["to_name"], result["type"]) == ("transcription", "image", "textarea")
    assert set(result["value"]) == {"text"} and len(result["value"]["text"]) == 1
    text = result["value"]["text"][0]
    assert text.count("\n") == len(LINES) - 1, text
    assert cer(text, "\n".join(LINES)) <= 0.05, text
    assert 0.5 <= result["score"] <= 1.0


def test_per_region_textarea_draws_one_rectangle_per_line_with_the_same_id(page):
    image, boxes = page
    head = head_for(REGION_CONFIG)
    assert head.claims() == ("transcription", "bbox")
    [results] = head.predict([task(image)], None)
    assert len(results) == 2 * len(LINES)
    rects = [r for r in results if r["type"] == "rectangle"]
    texts = [r for r in results if r["type"] == "textarea"]
    assert len(rects) == len(texts) == len(LINES)
    for rect, area, line, box in zip(rects, texts, LINES, boxes):
        assert rect["id"] == area["id"] and len(rect["id"]) == 10
        assert set(rect) == {"id", "from_name", "to_name", "type", "original_width", "original_height",
                             "image_rotation", "value", "score"}
        assert set(area) == set(rect)
        assert (rect["from_name"], area["from_name"]) == ("bbox", "transcription")
        assert rect["to_name"] == area["to_name"] == "image"
        for r in (rect, area):
            assert (r["original_width"], r["original_height"], r["image_rotation"]) == (900, 300, 0)
            assert 0.0 <= r["score"] <= 1.0
        geometry = {k: rect["value"][k] for k in ("x", "y", "width", "height", "rotation")}
        assert set(rect["value"]) == set(geometry) and geometry["rotation"] == 0
        assert area["value"] == {**geometry, "text": [area["value"]["text"][0]]}
        assert all(0.0 <= geometry[k] <= 100.0 for k in ("x", "y", "width", "height"))
        assert geometry["x"] + geometry["width"] <= 100.0 + 1e-9 and geometry["y"] + geometry["height"] <= 100.0 + 1e-9
        # the rectangle covers where the line was drawn (percent of 900 x 300 pixels)
        x0, y0 = geometry["x"] * 9.0, geometry["y"] * 3.0
        x1, y1 = x0 + geometry["width"] * 9.0, y0 + geometry["height"] * 3.0
        assert x0 <= box[0] + 6 and y0 <= box[1] + 6 and x1 >= box[2] - 6 and y1 >= box[3] - 6, (geometry, box)
        assert cer(area["value"]["text"][0], line) <= 0.05, area["value"]["text"]


def test_per_region_with_a_one_label_rectangle_labels_draws_its_lines_with_that_label(page):
    image, _ = page
    head = head_for(RECTLABELS_CONFIG)
    assert head.claims() == ("transcription", "box") and head.unanswered() is None
    [results] = head.predict([task(image)], None)
    rects = [r for r in results if r["from_name"] == "box"]
    assert len(rects) == len(LINES)
    assert all(r["type"] == "rectanglelabels" and r["value"]["rectanglelabels"] == ["Line"] for r in rects)


def test_per_region_over_rectangle_labels_of_object_classes_leaves_them_to_the_boxes_head():
    """Several labels classify objects: OCR would label every line with the first one (audit: "Trouser")."""
    head = head_for(OBJECTS_CONFIG)
    assert head.claims() == ("transcription",) and head.box_control is None
    assert "<RectangleLabels name='box'> (2 labels)" in head.unanswered()


def test_per_region_without_a_box_control_answers_the_page_text_and_says_so_once(page, caplog):
    image, _ = page
    with caplog.at_level(logging.WARNING, logger="labelhub.backend.models.transcription"):
        head = head_for(NO_BOX_CONFIG)
        head_for(NO_BOX_CONFIG)
    assert sum("no <Rectangle>" in r.getMessage() for r in caplog.records) == 1
    assert head.claims() == ("transcription",)
    [results] = head.predict([task(image)], None)
    assert len(results) == 1 and "id" not in results[0]
    assert cer(results[0]["value"]["text"][0], "\n".join(LINES)) <= 0.05


def test_an_image_without_text_gets_no_result():
    head = head_for(PAGE_CONFIG)
    blank = Image.new("RGB", (160, 80), "white")
    assert head.predict([task(blank), task(blank)], None) == [[], []]


def test_supports_only_a_textarea_over_an_image():
    image_area, = [c for c in control_specs(PAGE_CONFIG) if c.tag == "TextArea"]
    text_area, = control_specs('<View><Text name="t" value="$text"/><TextArea name="a" toName="t"/></View>')
    choices, = control_specs('<View><Image name="i" value="$image"/>'
                             '<Choices name="c" toName="i"><Choice value="A"/><Choice value="B"/></Choices></View>')
    assert TranscriptionHead.supports(image_area, {})
    assert not TranscriptionHead.supports(text_area, {})
    assert not TranscriptionHead.supports(choices, {})
    assert not TranscriptionHead.supports(image_area, {"ocr_engine": "not-an-engine"})


def test_the_engine_loads_once_per_process_from_many_threads():
    head = head_for(PAGE_CONFIG)
    engines, errors = [], []

    def load():
        try:
            engines.append(head._engine())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len({id(e) for e in engines}) == 1
    head.warmup()
    assert head._engine() is engines[0]
    identity = head.identity()
    assert engines[0].label in identity and identity == head_for(PAGE_CONFIG).identity()


def test_reading_order_joins_segments_of_one_row_left_to_right():
    from labelhub.backend.models.transcription import OcrLine, page_text

    lines = [OcrLine((500, 102, 700, 128), "right", 0.9), OcrLine((10, 100, 300, 126), "left", 0.9),
             OcrLine((10, 140, 300, 166), "next row", 0.9)]
    rows = reading_order(lines)
    assert [[ln.text for ln in row] for row in rows] == [["left", "right"], ["next row"]]
    assert page_text(rows) == "left right\nnext row"


def test_reading_order_reads_two_columns_of_text_one_after_the_other():
    from labelhub.backend.models.transcription import OcrLine, page_text

    def line(x, row, text):  # 20 px high text lines of 400 px: two columns 100 px apart, a title above
        return OcrLine((x, 100 + 30 * row, x + 400, 120 + 30 * row), text, 0.9)

    lines = [OcrLine((0, 20, 300, 50), "Title", 0.9), OcrLine((0, 600, 40, 620), "12", 0.9)]
    lines += [line(0, k, f"left {k}") for k in range(3)] + [line(500, k, f"right {k}") for k in range(3)]
    assert page_text(reading_order(lines[::-1])) == "Title\nleft 0\nleft 1\nleft 2\nright 0\nright 1\nright 2\n12"
    # a table of short cells (page numbers, a [Function] tag) is read row by row
    cells = [OcrLine((0, 100 + 30 * k, 400, 120 + 30 * k), f"entry {k}", 0.9) for k in range(3)]
    cells += [OcrLine((500, 100 + 30 * k, 530, 120 + 30 * k), str(k), 0.9) for k in range(3)]
    assert page_text(reading_order(cells)) == "entry 0 0\nentry 1 1\nentry 2 2"


@pytest.mark.parametrize("engine", available_engines())
def test_each_installed_engine_reads_a_line(engine):
    # compared without spaces: rapidocr-onnxruntime's PP-OCRv4 recognizer often drops the spaces of a
    # sans-serif line (rapidocr 3's PP-OCRv6 keeps them: the tests above run the first engine installed)
    image, _ = render(LINES[:1], size=(900, 110))
    [results] = head_for(PAGE_CONFIG, {"ocr_engine": engine}).predict([task(image)], None)
    text = results[0]["value"]["text"][0]
    assert Levenshtein.distance(text.replace(" ", ""), LINES[0].replace(" ", "")) <= 2, text
