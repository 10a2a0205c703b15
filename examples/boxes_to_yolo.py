"""Write one annotation version of an image project with boxes (RectangleLabels) as a YOLO dataset folder.

    python examples/boxes_to_yolo.py owner/dataset annotations-v3 yolo-v3
    python examples/boxes_to_yolo.py ./images annotations-v1 yolo-v1 --column box

The version's default config gives one row per annotation with the image decoded and the RectangleLabels control
as a list of ``{x, y, width, height, rotation}`` (fractions of the image: top-left corner and size; degrees) with a
``label`` (a ``ClassLabel`` on a Hub repo: its names in the label config's order are the class indices; a local
clone's labels are strings: the manifest's ``class_names``, or ``--classes``; their sorted list only when there is
none, with a warning). Each row becomes ``OUT_DIR/images/train/<annotation_id>-<file>.png`` and
``OUT_DIR/labels/train/<annotation_id>-<file>.txt``, one ``class cx cy w h`` line per box (normalised centre and
size; empty for a row without boxes, a background image), and ``OUT_DIR/data.yaml`` names the classes (its ``val``
is the training images: no split is held out, say so in your scores or split the folders yourself): what a
YOLO detector trainer reads (``yolo detect train data=OUT_DIR/data.yaml``). YOLO's boxes are upright: a rotated box
(Label Studio turns it clockwise around its top-left corner, in pixels) becomes the upright box around it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import Counter

from _repo import load_version, read_manifest, region_column


def yolo_classes(rows, column: str, manifest: dict | None = None, given: list[str] | None = None) -> list[str]:
    """The class names, a box label's index among them its YOLO class, in the label config's order so that a class
    id means the same label in every version: ``given`` (``--classes``), else a ``ClassLabel``'s names (a Hub
    repo), else the manifest's ``class_names`` of the control (when LabelHub wrote them), else the sorted labels of
    the boxes, with a warning (a local clone's labels are strings: an absent label, or a new one that sorts earlier,
    shifts the ids of the others between versions). Labels of the boxes that the list lacks are appended. A local
    version whose rows hold no box yet has a column ``datasets`` infers as ``List(Value("null"))``, no struct: no
    ``ClassLabel``, so the manifest's (or the given) names."""
    feature = rows.features[column]
    inner = feature.feature if hasattr(feature, "feature") else (feature or [None])[0]  # {x, y, ..., label}
    label = inner.get("label") if isinstance(inner, dict) else None
    found = {box["label"] for boxes in rows[column] for box in boxes or []}
    names = given or getattr(label, "names", None) or ((manifest or {}).get("class_names") or {}).get(column)
    if not names:
        print(f"warning: no class list for {column!r} (no ClassLabel, no class_names in the manifest): the sorted "
              "labels of this version's boxes; pass --classes in the label config's order to keep the ids across "
              "versions", file=sys.stderr)
        names = sorted(found)
    names = list(names)
    return names + sorted(x for x in found if isinstance(x, str) and x not in names)


def upright(box: dict, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """``(x, y, width, height)``, fractions of the image, of the upright box around ``box`` (a row's box: its
    ``rotation`` in degrees, clockwise around its top-left corner, in pixels of an image of ``size`` (width,
    height)); the box itself when it is not rotated."""
    x, y, w, h = (box[k] for k in ("x", "y", "width", "height"))
    turn = box.get("rotation") or 0.0
    if not turn:
        return x, y, w, h
    (width, height), (cos, sin) = size, (math.cos(math.radians(turn)), math.sin(math.radians(turn)))
    corners = [(x * width + dx * cos - dy * sin, y * height + dx * sin + dy * cos)
               for dx, dy in ((0, 0), (w * width, 0), (w * width, h * height), (0, h * height))]
    left, top = min(c[0] for c in corners) / width, min(c[1] for c in corners) / height
    return left, top, max(c[0] for c in corners) / width - left, max(c[1] for c in corners) / height - top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="Hub dataset owner/name, or a local git repository's path")
    parser.add_argument("tag", help="annotations-vN")
    parser.add_argument("out_dir", help="the folder to write (images/train, labels/train, data.yaml)")
    parser.add_argument("--column", default="box", help="the RectangleLabels control tag (from_name)")
    parser.add_argument("--classes", help="the class names in order, comma-separated (default: the label config's)")
    args = parser.parse_args()

    rows = load_version(args.repo, args.tag)
    region_column(rows, args.column, args.tag, "RectangleLabels")
    classes = yolo_classes(rows, args.column, read_manifest(args.repo, args.tag),
                           args.classes.split(",") if args.classes else None)
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(args.out_dir, sub, "train"), exist_ok=True)
    counts, empty, media = Counter(), 0, rows.column_names[0]  # the image comes first
    for row in rows:
        stem = f"{row['annotation_id']}-{os.path.splitext(os.path.basename(row['hf_path']))[0]}"
        image = row[media]
        (image.convert("RGB") if image.mode == "CMYK" else image).save(
            os.path.join(args.out_dir, "images", "train", f"{stem}.png"))
        lines = []
        for box in row[args.column] or []:
            index = box["label"] if isinstance(box["label"], int) else classes.index(box["label"])
            counts[classes[index]] += 1
            x, y, w, h = upright(box, image.size)
            x2, y2 = min(max(x + w, 0.0), 1.0), min(max(y + h, 0.0), 1.0)
            x, y = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
            w, h = x2 - x, y2 - y
            lines.append(f"{index} {x + w / 2:.6f} {y + h / 2:.6f} {w:.6f} {h:.6f}\n")
        empty += not lines
        with open(os.path.join(args.out_dir, "labels", "train", f"{stem}.txt"), "w") as fh:
            fh.writelines(lines)
    with open(os.path.join(args.out_dir, "data.yaml"), "w") as fh:
        fh.write(f"path: {json.dumps(os.path.abspath(args.out_dir))}\ntrain: images/train\n"
                 "# no images held out: val is the training images (scores on it are training scores)\n"
                 "val: images/train\n"
                 f"nc: {len(classes)}\nnames:\n" + "".join(f"  {i}: {json.dumps(c)}\n" for i, c in enumerate(classes)))
    print(f"{args.tag}: {rows.num_rows} images ({empty} without boxes), {sum(counts.values())} boxes of "
          f"{len(classes)} classes -> {args.out_dir}")
    print("  (data.yaml's val is the training images: no split held out)", file=sys.stderr)
    for i, label in enumerate(classes):
        print(f"  {i}\t{label}\t{counts[label]}")


if __name__ == "__main__":
    main()
