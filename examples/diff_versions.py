"""What changed between two annotation versions: annotations added, removed and changed.

    python examples/diff_versions.py owner/dataset annotations-v2 annotations-v3
    python examples/diff_versions.py .labelhub-demo/fashion-mnist annotations-v1 annotations-v2

Rows (the version's ``rows`` config: the CSV) are matched by ``annotation_id``; an annotation changed when
one of its label columns (the columns between the task's data column, after ``hf_path``, and ``annotator``) or
``was_cancelled`` differ.
``labelhub diff`` says the same per label and per annotator.
"""
from __future__ import annotations

import argparse

from _repo import load_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="Hub dataset owner/name, or a local git repository's path")
    parser.add_argument("old", help="the older tag, annotations-vN")
    parser.add_argument("new", help="the newer tag, annotations-vM")
    args = parser.parse_args()

    old = load_version(args.repo, args.old, name="rows").to_pandas().set_index("annotation_id")
    new = load_version(args.repo, args.new, name="rows").to_pandas().set_index("annotation_id")
    columns = list(new.columns)
    # the CSV's columns: task_id, annotation_id, hf_path, the task's data (image, text, ...), the control tags, annotator
    labels = columns[columns.index("hf_path") + 2:columns.index("annotator")] + ["was_cancelled"]
    added = new.index.difference(old.index)
    removed = old.index.difference(new.index)
    both = new.index.intersection(old.index)
    shared = [c for c in labels if c in old.columns]
    changed = [i for i in both if any(str(old.at[i, c]) != str(new.at[i, c]) for c in shared)]
    print(f"{args.old} -> {args.new}: +{len(added)} ~{len(changed)} -{len(removed)}")
    for i in added:
        print(f"  + {i} task {new.at[i, 'task_id']} {new.at[i, 'hf_path']}: "
              + ", ".join(f"{c}={new.at[i, c]}" for c in labels))
    for i in changed:
        print(f"  ~ {i} task {new.at[i, 'task_id']} {new.at[i, 'hf_path']}: "
              + ", ".join(f"{c}: {old.at[i, c]} -> {new.at[i, c]}" for c in shared if str(old.at[i, c]) != str(new.at[i, c])))
    for i in removed:
        print(f"  - {i} task {old.at[i, 'task_id']} {old.at[i, 'hf_path']}")


if __name__ == "__main__":
    main()
