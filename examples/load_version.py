"""Load one annotation version of a dataset repo with ``datasets`` and summarize it.

    python examples/load_version.py owner/dataset annotations-v3
    python examples/load_version.py .labelhub-demo/fashion-mnist annotations-v1 --column label

For a Hub repo this is exactly::

    import datasets
    rows = datasets.load_dataset("owner/dataset", revision="annotations-v3", split="train")

(the version's default config: one row per annotation that was not skipped, the image decoded, each control
tag's labels typed, e.g. a ``ClassLabel`` for Choices; see the README's "Training-ready versions").
"""
from __future__ import annotations

import argparse
from collections import Counter

from _repo import label_names, load_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="Hub dataset owner/name, or a local git repository's path")
    parser.add_argument("tag", help="annotations-vN")
    parser.add_argument("--column", default=None,
                        help="the control tag (from_name) to count; default: the first column after the image")
    args = parser.parse_args()

    rows = load_version(args.repo, args.tag)
    column = args.column or rows.column_names[1]
    name = label_names(rows, column)
    annotators = len(set(rows["annotator"]))
    print(f"{args.tag}: {rows.num_rows} annotations of {len(set(rows['task_id']))} tasks by "
          f"{annotators} annotator{'' if annotators == 1 else 's'}")
    print("columns:", ", ".join(rows.column_names))
    print(f"{column}:")
    # a region column (boxes, spans) counts each region's label; a whole-image column, each row's
    counts = Counter(label for v in rows[column] for label in (name(v) if isinstance(v, list) else [name(v)]))
    for value, count in counts.most_common():
        print(f"  {value}\t{count}")


if __name__ == "__main__":
    main()
