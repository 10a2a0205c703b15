"""The RectangleLabels head (``backend/models/boxes.py``) on real Fashion-MNIST items placed on canvases.

Fast (well under a minute): the head runs directly through a stub host with the default image embedder,
on a dozen canvases (Debian's ``dataset-fashion-mnist``, installed by ``python -m tests.testbed install``).
Quality is measured by ``bench/boxes_bench.py``, not here.
"""
from __future__ import annotations

import json

import joblib
import numpy as np
import pytest
from PIL import Image

from labelhub.backend.models.boxes import BoxesHead, read_boxes
from labelhub.backend.models.heads import Example, TaskInput
from labelhub.backend.settings import Settings
from labelhub.label_config import control_specs
from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist_canvases

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          + "".join(f'<Label value="{c}"/>' for c in FASHION_MNIST_CLASSES) + "</RectangleLabels>"
          '<Choices name="kind" toName="image"><Choice value="a"/><Choice value="b"/></Choices></View>')
RESULT_KEYS = {"id", "from_name", "to_name", "type", "original_width", "original_height", "image_rotation",
               "value", "score"}
VALUE_KEYS = {"x", "y", "width", "height", "rotation", "rectanglelabels"}


class StubHost:
    """The part of the project model a head uses: settings and the worker's embedders."""

    def __init__(self):
        self.settings = Settings()

    def embedder(self, kind):
        from labelhub.backend.embedders import get_embedder

        return get_embedder(kind, self.settings.image_embedder if kind == "image" else self.settings.text_embedder,
                            image_size=self.settings.image_size, threads=self.settings.torch_threads)

    def embed(self, inputs, kind):
        return self.embedder(kind).embed([i.media for i in inputs])


def box_result(box, size, label, from_name="box", original=None):
    """A Label Studio rectanglelabels result for a box in pixels of an image of ``size``."""
    (x0, y0, x1, y1), (w, h) = box, size
    ow, oh = original or size
    return {"id": "r1", "from_name": from_name, "to_name": "image", "type": "rectanglelabels",
            "original_width": ow, "original_height": oh, "image_rotation": 0,
            "value": {"x": 100 * x0 / w, "y": 100 * y0 / h, "width": 100 * (x1 - x0) / w,
                      "height": 100 * (y1 - y0) / h, "rotation": 0, "rectanglelabels": [label]}}


def example(k, image, boxes, extra=()):
    results = tuple(box_result(b[:4], image.size, b[4]) for b in boxes) + tuple(extra)
    value = f"test://canvas/{k}.png"
    return Example(input=TaskInput(task={"id": k, "data": {"image": value}}, value=value, media=image), results=results)


@pytest.fixture(scope="module")
def control():
    return next(c for c in control_specs(CONFIG) if c.from_name == "box")


@pytest.fixture(scope="module")
def canvases():
    return fashion_mnist_canvases("train", 13, seed=5, pool=2000)


@pytest.fixture(scope="module")
def fitted_head(control, canvases):
    head = BoxesHead(control, StubHost())
    examples = [example(k, img, boxes) for k, (img, boxes) in enumerate(canvases[:12])]
    return head, examples, head.fit(examples)


def test_predictions_are_label_studio_rectanglelabels_results(fitted_head, canvases):
    head, _, fitted = fitted_head
    assert fitted is not None
    inputs = [TaskInput(task={"id": 100 + k}, value=f"test://new/{k}.png", media=img)
              for k, (img, _) in enumerate(canvases)]
    predictions = head.predict(inputs, fitted)
    assert len(predictions) == len(inputs)
    assert sum(map(len, predictions)) > 0
    for (img, _), results in zip(canvases, predictions):
        assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
        for r in results:
            assert set(r) == RESULT_KEYS
            assert (r["from_name"], r["to_name"], r["type"]) == ("box", "image", "rectanglelabels")
            assert (r["original_width"], r["original_height"], r["image_rotation"]) == (*img.size, 0)
            assert isinstance(r["id"], str) and len(r["id"]) == 10
            assert 0.0 <= r["score"] <= 1.0
            v = r["value"]
            assert set(v) == VALUE_KEYS and v["rotation"] == 0
            assert len(v["rectanglelabels"]) == 1 and v["rectanglelabels"][0] in FASHION_MNIST_CLASSES
            for key in ("x", "y", "width", "height"):
                assert 0.0 <= v[key] <= 100.0
            assert v["x"] + v["width"] <= 100.0 + 1e-9 and v["y"] + v["height"] <= 100.0 + 1e-9
            assert v["width"] > 0 and v["height"] > 0
    json.dumps(predictions)  # what the backend sends


def test_annotated_objects_are_found_again(fitted_head, canvases):
    """On the images it learned from, most annotated boxes come back at IoU >= 0.5 (a sanity check)."""
    head, examples, fitted = fitted_head
    predictions = head.predict([ex.input for ex in examples], fitted)
    found = total = 0
    for (img, boxes), results in zip(canvases, predictions):
        w, h = img.size
        dets = [(v["x"] * w / 100, v["y"] * h / 100, (v["x"] + v["width"]) * w / 100, (v["y"] + v["height"]) * h / 100)
                for v in (r["value"] for r in results)]
        for b in boxes:
            total += 1
            found += any(_iou(d, b[:4]) >= 0.5 for d in dets)
    assert found >= 0.7 * total


def test_fitted_state_round_trips_through_joblib(fitted_head, canvases, tmp_path):
    head, _, fitted = fitted_head
    joblib.dump(fitted, tmp_path / "boxes.joblib")
    loaded = joblib.load(tmp_path / "boxes.joblib")
    inputs = [TaskInput(task={"id": 1}, value="test://new/0.png", media=canvases[12][0])]
    strip = lambda preds: [[{k: v for k, v in r.items() if k != "id"} for r in p] for p in preds]  # noqa: E731
    assert strip(head.predict(inputs, loaded)) == strip(head.predict(inputs, fitted))
    # another head (another worker) predicts with the loaded state
    assert strip(BoxesHead(head.control, head.host).predict(inputs, loaded)) == strip(head.predict(inputs, fitted))


def test_fit_needs_two_annotated_boxes(control, canvases):
    head = BoxesHead(control, StubHost())
    img, boxes = canvases[0]
    assert head.fit([]) is None
    assert head.fit([example(0, img, boxes[:1])]) is None
    # boxes of another control, or with labels not in the config, do not count
    other = box_result(boxes[0][:4], img.size, "a", from_name="kind")
    unknown = box_result(boxes[0][:4], img.size, "Not a label")
    assert head.fit([example(0, img, boxes[:1], extra=(other, unknown)), example(1, img, [])]) is None
    assert head.fit([example(0, img, boxes[:1]), example(1, canvases[1][0], canvases[1][1][:1])]) is not None


def test_predict_without_a_fit_answers_no_region(control, canvases):
    head = BoxesHead(control, StubHost())
    inputs = [TaskInput(task={"id": 1}, value="x", media=canvases[0][0]),
              TaskInput(task={"id": 2}, value="t", media="text")]
    assert head.predict(inputs, None) == [[], []]


def test_box_annotated_on_a_differently_sized_image_is_read_in_percent(control):
    image = Image.new("RGB", (512, 256))
    # drawn on a 1024x512 copy: x 25%, y 25%, width 10%, height 20% of it
    result = box_result((256, 128, 358.4, 230.4), (1024, 512), "Bag", original=(1024, 512))
    ex = Example(input=TaskInput(task={"id": 1}, value="v", media=image), results=(result,))
    (x0, y0, x1, y1, label), = read_boxes(ex, "box", control.labels)
    assert label == "Bag"
    assert np.allclose((x0, y0, x1, y1), (128.0, 64.0, 179.2, 115.2))


def test_rotated_box_is_read_as_the_box_around_it(control):
    image = Image.new("RGB", (200, 100))
    result = box_result((100, 20, 140, 40), (200, 100), "Bag")  # 40x20 pixels at (100, 20)
    result["value"]["rotation"] = 90  # clockwise around (100, 20): now 20 wide, 40 high, left of x=100
    ex = Example(input=TaskInput(task={"id": 1}, value="v", media=image), results=(result,))
    (box,) = read_boxes(ex, "box", control.labels)
    assert np.allclose(box[:4], (80.0, 20.0, 100.0, 60.0))


def test_refit_reuses_the_crop_embeddings(control, canvases):
    head = BoxesHead(control, StubHost())
    examples = [example(k, img, boxes) for k, (img, boxes) in enumerate(canvases[:6])]
    first = head.fit(examples)
    again = head.fit(examples + [example(6, *canvases[6])])
    assert first.stats["embedded"] == first.stats["crops"]
    assert again.stats["embedded"] < again.stats["crops"] / 2


def test_supports_rectanglelabels_over_an_image_only(control):
    assert BoxesHead.supports(control, {})
    kind = next(c for c in control_specs(CONFIG) if c.from_name == "kind")
    assert not BoxesHead.supports(kind, {})
    text = control_specs('<View><Text name="t" value="$text"/>'
                         '<Labels name="l" toName="t"><Label value="A"/></Labels></View>')[0]
    assert not BoxesHead.supports(text, {})


def test_identity_names_the_options_and_invalid_params_fall_back(control):
    head = BoxesHead(control, StubHost(), params={"min_score": "0.7", "flip": "false", "nms_iou": "nope"})
    assert head.options["min_score"] == 0.7 and head.options["flip"] is False and head.options["nms_iou"] == 0.45
    identity = head.identity()
    json.dumps(identity)
    assert identity != BoxesHead(control, StubHost()).identity()


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
