"""Through a real Label Studio 1.23.2: object boxes next to a per-region caption are learned as boxes.

The audit's config (an ``<Image>``, ``<RectangleLabels>`` of three Fashion-MNIST classes, a ``<Choices>`` and a
``<TextArea perRegion="true">``): the OCR head used to claim the RectangleLabels, so the boxes were never
learned and every OCR line was labelled ``Trouser``. Label Studio connects the backend, sends the annotations
saved through its API, and stores the predictions its "Retrieve predictions" action asks for.
"""
from __future__ import annotations

from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist_canvases
from tests.test_backend_labelstudio import _retrieve_version, backend  # noqa: F401  (a fixture)
from tests.test_backend_labelstudio_regions import _annotate_and_wait, _connect, _latest, _png, _upload
from tests.test_heads_labels import OBJECTS_AND_CAPTIONS

CLASSES = ("Trouser", "Sneaker", "Bag")


def test_object_classes_with_a_per_region_caption_are_learned_as_boxes_not_read_as_text(label_studio, backend):
    config = OBJECTS_AND_CAPTIONS.replace("name='img'", "name='image'").replace("toName='img'", "toName='image'")
    project = label_studio.client().projects.create(title="labelhub boxes and captions", label_config=config)
    canvases = fashion_mnist_canvases("test", 30, seed=5, classes=[FASHION_MNIST_CLASSES.index(c) for c in CLASSES])
    by_name = _upload(label_studio, project.id, [(f"canvas{i:03d}.png", _png(img)) for i, (img, _) in
                                                  enumerate(canvases)])
    rows = [(by_name[f"canvas{i:03d}.png"], boxes) for i, (_, boxes) in enumerate(canvases)]
    ml = _connect(label_studio, backend, project.id)
    train = []
    for task, boxes in rows[:24]:
        results = [{"id": f"b{task['id']}x{k}", "from_name": "box", "to_name": "image", "type": "rectanglelabels",
                    "original_width": 256, "original_height": 256, "image_rotation": 0,
                    "value": {"x": x0 / 2.56, "y": y0 / 2.56, "width": (x1 - x0) / 2.56, "height": (y1 - y0) / 2.56,
                              "rotation": 0, "rectanglelabels": [label]}}
                   for k, (x0, y0, x1, y1, label) in enumerate(boxes)]
        results.append({"from_name": "count", "to_name": "image", "type": "choices",
                        "value": {"choices": ["one" if len(boxes) == 1 else "several"]}})
        train.append((task, results))
    version = _annotate_and_wait(label_studio, backend, ml, train)
    held_out = rows[24:]
    _retrieve_version(label_studio, project.id, [t["id"] for t, _ in held_out], version)
    boxes_drawn = 0
    for task, _ in held_out:
        result = _latest(label_studio, task["id"], version)["result"]
        assert {r["from_name"] for r in result} <= {"box", "count"}, result  # no OCR line, no caption
        for region in result:
            if region["from_name"] == "box":
                boxes_drawn += 1
                assert region["type"] == "rectanglelabels" and region["value"]["rectanglelabels"][0] in CLASSES
            else:
                assert region["value"]["choices"][0] in ("one", "several")
    assert boxes_drawn >= len(held_out), boxes_drawn  # learned from the annotated boxes
