"""Benchmark of the RectangleLabels head (not a test): learning curve of boxes on real Fashion-MNIST items.

Run: ``python bench/boxes_bench.py [--sizes 20,100,500] [--test 200] [--split test|val]``. It prints one
line per training size: recall and precision at IoU >= 0.5 with the right class, the class-agnostic
recall (localization alone), the seconds of a cold fit (empty crop cache), of a refit after one more
annotated canvas (warm cache, what the background trainer does after each annotation), and the
prediction throughput.

Data: 256x256 RGB canvases, a smooth random colour background (6x6 uniform noise in [0, 90] upsampled
bicubically, plus Gaussian noise of sigma 6), with 1 to 4 real Fashion-MNIST items (Debian's
``dataset-fashion-mnist``), each scaled by a factor drawn from [1, 2.5] (28 to 70 pixels) and pasted at a
random position where its 28x28-scaled square overlaps no earlier one by IoU > 0.1 (later items may cover
an earlier one's corner). Only the item's non-zero pixels are pasted, and the exact box is the bounding box
of those pixels (tighter than the 28x28 placement). Training canvases use Fashion-MNIST train items
0-49,999 (seed 1); test canvases use Fashion-MNIST test (seed 2), or with ``--split val`` the train items
50,000-59,999 (what the head's choices were made on; the test split was not used for tuning).

The head runs directly through a stub host with the default embedder
(``get_embedder("image", Settings().image_embedder, image_size=Settings().image_size)``), not over HTTP.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelhub.backend.models.boxes import BoxesHead  # noqa: E402
from labelhub.backend.models.heads import Example, TaskInput  # noqa: E402
from labelhub.backend.settings import Settings  # noqa: E402
from labelhub.label_config import control_specs  # noqa: E402
from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist_canvases  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          + "".join(f'<Label value="{c}"/>' for c in FASHION_MNIST_CLASSES) + "</RectangleLabels></View>")


class StubHost:
    """The part of the project model a head uses: settings and the worker's embedder."""

    def __init__(self):
        self.settings = Settings()

    def embedder(self, kind):
        from labelhub.backend.embedders import get_embedder

        spec = self.settings.image_embedder if kind == "image" else self.settings.text_embedder
        return get_embedder(kind, spec, image_size=self.settings.image_size, threads=self.settings.torch_threads)

    def embed(self, inputs, kind):
        return self.embedder(kind).embed([i.media for i in inputs])


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def example(k: int, image, boxes, prefix: str = "train") -> Example:
    """An annotated task: one ``rectanglelabels`` result per box, in percent (Label Studio's format)."""
    w, h = image.size
    results = tuple({"id": f"r{k}-{j}", "from_name": "box", "to_name": "image", "type": "rectanglelabels",
                     "original_width": w, "original_height": h, "image_rotation": 0,
                     "value": {"x": 100 * x0 / w, "y": 100 * y0 / h, "width": 100 * (x1 - x0) / w,
                               "height": 100 * (y1 - y0) / h, "rotation": 0, "rectanglelabels": [lab]}}
                    for j, (x0, y0, x1, y1, lab) in enumerate(boxes))
    return Example(input=TaskInput(task={"id": k, "data": {"image": f"bench://{prefix}/{k}.png"}},
                                   value=f"bench://{prefix}/{k}.png", media=image), results=results)


def evaluate(predictions, canvases, iou_min=0.5):
    """``(recall, precision, class-agnostic recall)``: detections matched greedily by score to unmatched boxes."""
    hits = detections = total = located = 0
    for results, (image, boxes) in zip(predictions, canvases):
        w, h = image.size
        total += len(boxes)
        detections += len(results)
        dets = sorted(results, key=lambda r: -r["score"])
        used = set()
        for r in dets:
            v = r["value"]
            d = (v["x"] * w / 100, v["y"] * h / 100, (v["x"] + v["width"]) * w / 100, (v["y"] + v["height"]) * h / 100)
            best, best_j = iou_min, None
            for j, b in enumerate(boxes):
                if j not in used and b[4] == v["rectanglelabels"][0] and _iou(d, b[:4]) >= best:
                    best, best_j = _iou(d, b[:4]), j
            if best_j is not None:
                used.add(best_j)
                hits += 1
        for b in boxes:
            if any(_iou((r["value"]["x"] * w / 100, r["value"]["y"] * h / 100,
                         (r["value"]["x"] + r["value"]["width"]) * w / 100,
                         (r["value"]["y"] + r["value"]["height"]) * h / 100), b[:4]) >= iou_min for r in results):
                located += 1
    return hits / max(total, 1), hits / max(detections, 1), located / max(total, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20,100,500")
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--split", choices=("test", "val"), default="test")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    train = fashion_mnist_canvases("train", max(sizes) + 1, seed=1, pool=50000)
    if args.split == "test":
        test = fashion_mnist_canvases("test", args.test, seed=2, pool=10000)
    else:
        test = fashion_mnist_canvases("train", args.test, seed=2, pool=60000)
    examples = [example(k, img, boxes) for k, (img, boxes) in enumerate(train)]
    inputs = [TaskInput(task={"id": 10**6 + k, "data": {}}, value=f"bench://test/{k}.png", media=img)
              for k, (img, _) in enumerate(test)]
    control = control_specs(CONFIG)[0]
    host = StubHost()
    embedder = host.embedder("image")
    embedder.embed([test[0][0]])
    print(f"embedder {embedder.name}; {len(test)} test canvases ({args.split}), "
          f"{sum(len(b) for _, b in test)} objects; boxes = bounding box of the item's non-zero pixels")
    print(f"{'canvases':>8} {'boxes':>6} {'recall':>7} {'precision':>9} {'located':>8} {'fit s':>6} "
          f"{'refit s':>7} {'predict img/s':>13} {'crops':>6}")
    for n in sizes:
        head = BoxesHead(control, host)
        t = time.perf_counter()
        fitted = head.fit(examples[:n])
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        head.fit(examples[:n + 1])  # one more annotation: the refit the trainer runs next
        refit_s = time.perf_counter() - t
        t = time.perf_counter()
        predictions = head.predict(inputs, fitted)
        speed = len(inputs) / (time.perf_counter() - t)
        recall, precision, located = evaluate(predictions, test)
        print(f"{n:>8} {sum(len(b) for _, b in train[:n]):>6} {recall:>7.3f} {precision:>9.3f} {located:>8.3f} "
              f"{fit_s:>6.1f} {refit_s:>7.1f} {speed:>13.1f} {fitted.stats['crops']:>6}", flush=True)


if __name__ == "__main__":
    main()
