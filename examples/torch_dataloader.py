"""Stream one annotation version into a PyTorch DataLoader, reading only the rows you ask for.

    python examples/torch_dataloader.py owner/dataset annotations-v3 --label Sneaker --batch-size 16
    python examples/torch_dataloader.py .labelhub-demo/fashion-mnist annotations-v1 --annotator demo@example.com

``datasets.load_dataset(..., streaming=True)`` of the version's default config reads one row per annotation
with the image already decoded and the label typed (a ``ClassLabel`` for a Hub repo); the filter on label
and annotator runs on each row, so only the rows that pass become tensors.
"""
from __future__ import annotations

import argparse

from _repo import label_names, load_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="Hub dataset owner/name, or a local git repository's path")
    parser.add_argument("tag", help="annotations-vN")
    parser.add_argument("--column", default="label", help="the Choices control tag (from_name)")
    parser.add_argument("--label", action="append", default=[], help="keep rows with this label (repeatable)")
    parser.add_argument("--annotator", default=None, help="keep rows of this annotator's email")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    rows = load_version(args.repo, args.tag, streaming=True)
    name = label_names(rows, args.column)
    classes = sorted(args.label) if args.label else None

    def wanted(row) -> bool:
        if args.column not in row:
            raise SystemExit(f"{args.tag} has no column {args.column!r}: pass --column, one of "
                             f"{', '.join(c for c in row if c not in ('image', 'audio'))}")
        if isinstance(row[args.column], list) and any(isinstance(v, dict) for v in row[args.column]):
            raise SystemExit(f"{args.column!r} holds regions (boxes or spans), not a label per image: this example "
                             "batches whole-image labels (Choices); see examples/boxes_to_yolo.py for boxes")
        if row[args.column] is None or (args.annotator and row["annotator"] != args.annotator):
            return False
        return classes is None or name(row[args.column]) in classes

    def to_tensors(row) -> dict:
        pixels = np.asarray(row["image"].convert("L"), dtype=np.float32) / 255.0
        return {"pixels": torch.from_numpy(pixels).unsqueeze(0), "label": name(row[args.column]),
                "annotation_id": row["annotation_id"]}

    stream = rows.filter(wanted).map(to_tensors).select_columns(["pixels", "label", "annotation_id"])
    loader = DataLoader(stream, batch_size=args.batch_size)
    seen = 0
    for batch in loader:
        seen += len(batch["label"])
        print(f"batch: pixels {tuple(batch['pixels'].shape)} {batch['pixels'].dtype}, labels {batch['label']}")
    print(f"{seen} images")


if __name__ == "__main__":
    main()
