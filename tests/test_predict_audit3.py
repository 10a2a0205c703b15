"""What an audit of the backend's predictions found (``/tmp/audit-predict``):

1. An image stored sideways with an EXIF orientation tag (a phone's photo) was read as its raw pixels, while Label
   Studio shows it turned: boxes landed rotated, ``original_width``/``original_height`` were swapped, and OCR read
   sideways text. Now every image is turned as its tag says (``decode_image``).
2. A ``$``-value with a dot (``value="$meta.body"``), which Label Studio reads as a path into the task's data, was
   read as one literal key: such a project was never learned nor predicted. Now it is a path
   (:func:`labelhub.label_config.data_value`).
3. A Label Studio served under a subpath (``LABEL_STUDIO_URL=http://host/ls``) stores an upload's URL as
   ``/ls/data/upload/...``: it was refused. Now it is fetched from Label Studio's server, with its key.
4. ``<Text encoding="base64">`` was read without decoding: the heads learned the base64. Now it is decoded as Label
   Studio's editor decodes it.

The real Flask app in-process (and its OCR head) where the answer to Label Studio is the point.
"""
from __future__ import annotations

import base64
import io

import pytest

from labelhub.backend.app import create_app
from labelhub.backend.embedders import decode_image
from labelhub.backend.media import MediaFetcher
from labelhub.backend.settings import Settings
from labelhub.label_config import data_value
from tests.backend_fixtures import MediaServer, annotation_event, plot_review_tasks, project_key, project_payload

KEY = project_key()


def _sideways_jpeg() -> tuple[bytes, bytes]:
    """``(a 640x200 image of "HELLO WORLD" stored sideways with EXIF Orientation 6, the same stored upright)``."""
    from PIL import Image, ImageDraw, ImageFont

    upright = Image.new("RGB", (640, 200), "white")
    ImageDraw.Draw(upright).text((20, 60), "HELLO WORLD", fill="black", font=ImageFont.load_default(size=60))
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to show"
    sideways, plain = io.BytesIO(), io.BytesIO()
    upright.rotate(90, expand=True).save(sideways, "JPEG", exif=exif.tobytes(), quality=95)
    upright.save(plain, "JPEG", quality=95)
    return sideways.getvalue(), plain.getvalue()


def test_an_image_stored_sideways_is_read_as_label_studio_shows_it(tmp_path):
    sideways, plain = _sideways_jpeg()
    assert decode_image(sideways).size == decode_image(plain).size == (640, 200)
    config = ("<View><Image name='image' value='$image'/><Rectangle name='bbox' toName='image'/>"
              "<TextArea name='transcription' toName='image' perRegion='true'/></View>")
    client = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False}).test_client()
    assert client.post("/setup", json={"project": KEY, "schema": config}).status_code == 200
    answers = []
    for jpeg in (sideways, plain):
        task = {"id": 1, "data": {"image": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()}}
        answer = client.post("/predict", json={"tasks": [task], "project": KEY, "label_config": config})
        answers.append([{k: v for k, v in r.items() if k not in ("id", "score")}
                        for r in answer.json["results"][0]["result"]])
    assert answers[0] == answers[1]  # the same boxes and text, as Label Studio shows both the same
    texts = [r for r in answers[0] if r["from_name"] == "transcription"]
    assert texts and all((r["original_width"], r["original_height"]) == (640, 200) for r in answers[0])
    assert "HELLO" in " ".join(texts[0]["value"]["text"])


@pytest.mark.parametrize("data, key, expected", [
    ({"meta": {"body": "b"}}, "meta.body", "b"),
    ({"meta.body": "flat", "meta": {"body": "b"}}, "meta.body", "flat"),  # a key that has the dot wins
    ({"pages": ["p0", "p1"]}, "pages.1", "p1"),
    ({"pages": ["p0"]}, "pages.3", None),
    ({"meta": "not an object"}, "meta.body", None),
    ({"text": "t"}, "text", "t"),
    ("not an object", "text", None),
])
def test_a_dotted_value_is_a_path_into_the_tasks_data(data, key, expected):
    assert data_value(data, key) == expected


def test_a_project_whose_text_is_a_nested_key_is_learned_and_predicted(tmp_path):
    config = ("<View><Text name='text' value='$meta.body'/>"
              "<Choices name='label' toName='text'><Choice value='plot'/><Choice value='review'/></Choices></View>")
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    client = app.test_client()
    assert client.post("/setup", json={"project": KEY, "schema": config}).status_code == 200
    tasks, labels = plot_review_tasks(24)
    tasks = [{"id": t["id"], "data": {"meta": {"body": t["data"]["text"]}}} for t in tasks]
    for n, (task, label) in enumerate(zip(tasks[:20], labels[:20])):
        body = annotation_event(100 + n, task, label, project=project_payload(label_config=config), to_name="text")
        assert client.post("/webhook", json=body).status_code == 200
    app.extensions["labelhub"].trainer.run_once()
    assert app.extensions["labelhub"].store.project(KEY).kv()["model_version"].startswith("labelhub-20-")
    answer = client.post("/predict", json={"tasks": tasks[20:], "project": KEY, "label_config": config}).json
    assert all(r.get("result") and not r.get("error") for r in answer["results"]), answer


def test_an_upload_of_a_label_studio_under_a_subpath_is_fetched_with_its_key(tmp_path):
    with MediaServer({"/ls/data/upload/1/a.png": b"IMG"}, token="legacy0token") as ls:
        fetcher = MediaFetcher(Settings(model_dir=tmp_path, label_studio_url=f"{ls.url}/ls/",
                                        label_studio_api_key="legacy0token"))
        assert fetcher.fetch("/ls/data/upload/1/a.png") == b"IMG"  # as Label Studio stores it under /ls
        assert ls.requests[-1][1].startswith("/ls/data/upload/1/a.png") and ls.requests[-1][2] == "Token legacy0token"
        assert fetcher.fetch(f"{ls.url}/ls/data/upload/1/a.png") == b"IMG"


@pytest.mark.parametrize("encoding, text, codec", [("base64", "Peter lives in Bath.", "latin-1"),
                                                   ("base64unicode", "Zoë lives in Besançon.", "utf-8")])
def test_a_text_encoded_as_its_config_says_is_read_decoded(encoding, text, codec):
    """``<Text encoding="base64">`` (https://labelstud.io/tags/text): Label Studio's editor shows, and counts span
    offsets in, the decoded text; the heads read the base64 itself before (found by an audit). A value that is not
    base64 is that task's error, said with the tag."""
    from labelhub.backend.errors import MediaError
    from labelhub.backend.models.project import ProjectModel

    config = (f"<View><Text name='text' value='$text' encoding='{encoding}'/>"
              "<Labels name='ner' toName='text'><Label value='PER'/><Label value='LOC'/></Labels></View>")
    model = ProjectModel(project_id="1.1", label_config=config)
    encoded = base64.b64encode(text.encode(codec)).decode()
    good, bad = model.load_inputs([{"id": 1, "data": {"text": encoded[:8] + "\n" + encoded[8:]}},
                                   {"id": 2, "data": {"text": "not base64!"}}], model.controls[0])
    assert good.media == text
    assert isinstance(bad, MediaError) and f"data.text is not {encoding} text" in str(bad) and "<Text name='text'" \
        in str(bad)
