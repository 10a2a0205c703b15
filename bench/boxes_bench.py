"""Benchmark of the RectangleLabels head (not a test): learning curve of boxes on real Fashion-MNIST items.

Run: ``python bench/boxes_bench.py [--sizes 20,100,500] [--test 200] [--split test|val]`` (about 2 minutes
on 2 cores). One line per training size (annotated canvases):

- ``recall`` / ``precision``: at IoU >= 0.5 with the right class, with the head's defaults (a box gets a
  second result for a second label of probability >= 0.25); ``located``: the share of boxes some result
  overlaps by IoU >= 0.5, whatever its label (localization alone);
- ``1-label recall`` / ``1-label precision``: the same fit with one label per box (``alt_score=1``);
- ``fit s``: a cold fit (empty crop cache); ``refit s``: the refit after one more annotated canvas, with
  the crops the first fit embedded cached (what the background trainer runs after each annotation);
- ``predict img/s``: prediction throughput over the test canvases (one call); ``crops``: stage-2
  training crops of the fit.

Then the recall per class. The CPU is shared: the first line gives the load average.

Data (``labelhub.sync.demo.sample_data.fashion_mnist_canvases``): 256x256 RGB canvases, a smooth random
colour background with Gaussian noise, 1 to 4 real Fashion-MNIST items (Debian's ``dataset-fashion-mnist``)
each scaled 1 to 2.5 times (28 to 70 pixels) at random positions overlapping at most IoU 0.1. The exact box
is the bounding box of the item's non-zero pixels (tighter than its 28x28 placement). Training canvases
come from Fashion-MNIST train items 0-49,999 (seed 1), test canvases from Fashion-MNIST test (seed 2).
The head's defaults were chosen on validation canvases of train items 50,000-59,999, never on the test
split; ``--split val`` draws the test canvases from all train items instead (a few of which the training
canvases also use).

The head runs directly through a stub host with the default embedder
(``get_embedder("image", Settings().image_embedder, image_size=Settings().image_size)``), not over HTTP.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

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


def _pixels(result, size):
    v, (w, h) = result["value"], size
    return (v["x"] * w / 100, v["y"] * h / 100, (v["x"] + v["width"]) * w / 100, (v["y"] + v["height"]) * h / 100)


def evaluate(predictions, canvases, iou_min=0.5):
    """Recall and precision at IoU >= ``iou_min`` with the right class, and the class-agnostic recall.

    Each result (best score first) matches the unmatched box of its label with the highest IoU, if that
    IoU reaches ``iou_min``. Recall: matched boxes / boxes; precision: matched results / results.

    Returns:
        ``(recall, precision, located, {class: recall})``; ``located`` counts a box found when any result
        overlaps it by ``iou_min``, whatever its label.
    """
    hits = detections = located = 0
    per_class: dict[str, list[int]] = {}
    for results, (image, boxes) in zip(predictions, canvases):
        detections += len(results)
        used = set()
        for r in sorted(results, key=lambda r: -r["score"]):
            d = _pixels(r, image.size)
            best, best_j = iou_min, None
            for j, b in enumerate(boxes):
                if j not in used and b[4] == r["value"]["rectanglelabels"][0] and _iou(d, b[:4]) >= best:
                    best, best_j = _iou(d, b[:4]), j
            if best_j is not None:
                used.add(best_j)
                hits += 1
        for j, b in enumerate(boxes):
            per_class.setdefault(b[4], [0, 0])[0] += j in used
            per_class[b[4]][1] += 1
            located += any(_iou(_pixels(r, image.size), b[:4]) >= iou_min for r in results)
    total = sum(len(b) for _, b in canvases)
    return (hits / max(total, 1), hits / max(detections, 1), located / max(total, 1),
            {c: found / count for c, (found, count) in per_class.items()})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20,100,500", help="annotated canvases of each fit")
    parser.add_argument("--test", type=int, default=200, help="test canvases")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="test canvases' items")
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
    print(f"embedder {embedder.name}; {len(test)} {args.split} canvases with {sum(len(b) for _, b in test)} "
          f"objects; boxes = bounding box of the item's non-zero pixels; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'canvases':>8} {'boxes':>6} {'recall':>7} {'precision':>9} {'located':>8} {'1-label recall':>14} "
          f"{'1-label precision':>17} {'fit s':>6} {'refit s':>7} {'predict img/s':>13} {'crops':>6}")
    curves = {}
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
        recall, precision, located, per_class = curves[n] = evaluate(predictions, test)
        single = BoxesHead(control, host, params={"alt_score": 1.0})  # one label per box
        recall1, precision1, _, _ = evaluate(single.predict(inputs, fitted), test)
        print(f"{n:>8} {sum(len(b) for _, b in train[:n]):>6} {recall:>7.3f} {precision:>9.3f} {located:>8.3f} "
              f"{recall1:>14.3f} {precision1:>17.3f} {fit_s:>6.1f} {refit_s:>7.1f} {speed:>13.1f} "
              f"{fitted.stats['crops']:>6}", flush=True)
    for n, (_, _, _, per_class) in curves.items():
        print(f"recall per class after {n}: "
              + ", ".join(f"{c} {per_class.get(c, 0):.2f}" for c in FASHION_MNIST_CLASSES))


if __name__ == "__main__":
    main()
