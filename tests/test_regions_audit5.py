"""What an audit of the region heads against Label Studio 1.23's editor found (stop 56, ``/tmp/audit-regions``):

1. A ``<Text valueType="url">`` file starting with a UTF-8 byte order mark (Notepad writes one): the backend read the
   text with the BOM, Label Studio's editor (``fetch(url)`` then ``Response.text()``) without it, so every predicted
   span was highlighted one character late. Now the backend decodes as the browser does.
2. Two ``<TextArea perRegion="true">`` over one image with one ``<Rectangle>``: each had its own OCR head drawing
   every line on that Rectangle, so each line came twice (two boxes, one text each). Now the second is not answered,
   said once with why.
"""
from __future__ import annotations

import base64
import io
import logging
from types import SimpleNamespace

from labelhub.backend.embedding_cache import EmbeddingCache
from labelhub.backend.media import MediaFetcher
from labelhub.backend.models.project import ProjectModel
from labelhub.backend.settings import Settings


def test_a_text_file_with_a_byte_order_mark_is_read_as_label_studios_editor_shows_it(tmp_path):
    data = b"\xef\xbb\xbf" + "Angela Merkel met Emmanuel Macron in Paris. Zo\xc3\xab".encode("latin-1")
    url = "data:text/plain;base64," + base64.b64encode(data).decode()
    text = MediaFetcher(Settings(model_dir=tmp_path)).fetch_text(url)
    assert text == data.decode("utf-8-sig")  # what the browser's Response.text() gives
    assert text.index("Angela Merkel") == 0


def test_two_per_region_textareas_on_one_rectangle_draw_each_ocr_line_once(caplog):
    from tests.test_transcription_head import render

    config = ("<View><Image name='image' value='$ocr'/><Rectangle name='bbox' toName='image'/>"
              "<TextArea name='transcription' toName='image' perRegion='true'/>"
              "<TextArea name='notes' toName='image' perRegion='true'/></View>")
    image, _ = render(["Chapter 4: Function reference", "Extract a length field"])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    with caplog.at_level(logging.INFO):
        model = ProjectModel(project_id="1.1", label_config=config)
    assert [h.control.from_name for h in model.heads] == ["transcription"]
    assert any("<TextArea name='notes'> is not answered" in r.getMessage() and "'bbox'" in r.getMessage()
               for r in caplog.records), caplog.text
    model.backend = SimpleNamespace(fetcher=MediaFetcher(Settings()), settings=Settings(), embeddings=EmbeddingCache(0))
    (prediction,) = model.predict([{"id": 1, "data": {"ocr": uri}}])
    assert not prediction.get("error"), prediction
    boxes = [r for r in prediction["result"] if r["type"] == "rectangle"]
    geometry = {tuple(round(r["value"][k], 3) for k in ("x", "y", "width", "height")) for r in boxes}
    assert boxes and len(boxes) == len(geometry), boxes  # each line once
    assert {r["from_name"] for r in prediction["result"]} == {"bbox", "transcription"}
