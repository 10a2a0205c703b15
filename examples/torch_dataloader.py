"""Stream one annotation version into a PyTorch DataLoader, reading only the rows you ask for.

    python examples/torch_dataloader.py owner/dataset annotations-v3 --label Sneaker --batch-size 16
    python examples/torch_dataloader.py .labelhub-demo/fashion-mnist annotations-v1 --annotator demo@example.com

``datasets.load_dataset(..., streaming=True)`` reads the CSV as it goes; the filter on label,
annotator and skipped tasks runs on each row before anything else, so only the images of the rows
that pass are fetched (from the version's commit, which holds the images too) and decoded.
"""
from __future__ import annotations

import argparse
import io

from _repo import load_version, read_file


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
    from PIL import Image
    from torch.utils.data import DataLoader

    rows = load_version(args.repo, args.tag, streaming=True)
    classes = sorted(args.label) if args.label else None

    def wanted(row) -> bool:
        if str(row["was_cancelled"]).lower() == "true" or not row[args.column]:
            return False
        if args.annotator and row["annotator"] != args.annotator:
            return False
        return classes is None or row[args.column] in classes

    def decode(row) -> dict:
        image = Image.open(io.BytesIO(read_file(args.repo, args.tag, row["hf_path"]))).convert("L")
        return {"pixels": torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).unsqueeze(0),
                "label": row[args.column], "annotation_id": row["annotation_id"]}

    stream = rows.filter(wanted).map(decode).select_columns(["pixels", "label", "annotation_id"])
    loader = DataLoader(stream, batch_size=args.batch_size)
    seen = 0
    for batch in loader:
        seen += len(batch["label"])
        print(f"batch: pixels {tuple(batch['pixels'].shape)} {batch['pixels'].dtype}, labels {batch['label']}")
    print(f"{seen} images")


if __name__ == "__main__":
    main()
