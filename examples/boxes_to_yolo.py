"""Write one annotation version of an image project with boxes (RectangleLabels) as a YOLO dataset folder.

    python examples/boxes_to_yolo.py owner/dataset annotations-v3 yolo-v3
    python examples/boxes_to_yolo.py ./images annotations-v1 yolo-v1 --column box

The version's default config gives one row per annotation with the image decoded and the RectangleLabels control
as a list of ``{x, y, width, height}`` fractions of the image (top-left corner and size) with a ``label`` (a
``ClassLabel`` on a Hub repo: its names in the label config's order are the class indices; a local clone's labels
are strings: their sorted list is). Each row becomes ``OUT_DIR/images/train/<annotation_id>-<file>.png`` and
``OUT_DIR/labels/train/<annotation_id>-<file>.txt``, one ``class cx cy w h`` line per box (normalised centre and
size; empty for a row without boxes, a background image), and ``OUT_DIR/data.yaml`` names the classes: what a
YOLO detector trainer reads (``yolo detect train data=OUT_DIR/data.yaml``). A rotated box's ``rotation`` is in the
version's CSV only: its box here is the unrotated one.
"""
from __future__ import annotations

import argparse
import json
import os
from collections import Counter

from _repo import load_version


def yolo_classes(rows, column: str) -> list[str]:
    """The class names, a box label's index among them its YOLO class: a ``ClassLabel``'s names (a Hub repo), else
    the sorted labels of the boxes (a local clone's labels are strings)."""
    feature = rows.features[column]
    label = (feature.feature if hasattr(feature, "feature") else feature[0])["label"]  # of {x, y, width, height, label}
    found = {box["label"] for boxes in rows[column] for box in boxes or []}
    return list(getattr(label, "names", None) or sorted(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="Hub dataset owner/name, or a local git repository's path")
    parser.add_argument("tag", help="annotations-vN")
    parser.add_argument("out_dir", help="the folder to write (images/train, labels/train, data.yaml)")
    parser.add_argument("--column", default="box", help="the RectangleLabels control tag (from_name)")
    args = parser.parse_args()

    rows = load_version(args.repo, args.tag)
    classes = yolo_classes(rows, args.column)
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
            x, y, w, h = (min(max(box[k], 0.0), 1.0) for k in ("x", "y", "width", "height"))
            w, h = min(w, 1.0 - x), min(h, 1.0 - y)
            lines.append(f"{index} {x + w / 2:.6f} {y + h / 2:.6f} {w:.6f} {h:.6f}\n")
        empty += not lines
        with open(os.path.join(args.out_dir, "labels", "train", f"{stem}.txt"), "w") as fh:
            fh.writelines(lines)
    with open(os.path.join(args.out_dir, "data.yaml"), "w") as fh:
        fh.write(f"path: {json.dumps(os.path.abspath(args.out_dir))}\ntrain: images/train\nval: images/train\n"
                 f"nc: {len(classes)}\nnames:\n" + "".join(f"  {i}: {json.dumps(c)}\n" for i, c in enumerate(classes)))
    print(f"{args.tag}: {rows.num_rows} images ({empty} without boxes), {sum(counts.values())} boxes of "
          f"{len(classes)} classes -> {args.out_dir}")
    for i, label in enumerate(classes):
        print(f"  {i}\t{label}\t{counts[label]}")


if __name__ == "__main__":
    main()
