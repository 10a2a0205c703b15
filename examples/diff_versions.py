"""What changed between two annotation versions: annotations added, removed and changed.

    python examples/diff_versions.py owner/dataset annotations-v2 annotations-v3
    python examples/diff_versions.py .labelhub-demo/fashion-mnist annotations-v1 annotations-v2

Rows (the version's ``rows`` config: the CSV) are matched by ``annotation_id``. An annotation changed when any of
its cells differs but ``updated_at`` and ``lead_time`` (a row saved again with the same labels is not a change), the
file URL compared by its path (the revision and the file, not the host or a signature): what a version's title
counts as ``~`` and ``labelhub diff`` says (per label and per annotator, and with ``--json``). Each changed
annotation is printed with the columns that changed.
"""
from __future__ import annotations

import argparse
import math
from urllib.parse import urlsplit

from _repo import load_version

#: Columns a row saved again changes without a change of the annotation (as LabelHub counts).
BOOKKEEPING = ("updated_at", "lead_time")


def text(value) -> str:
    """A cell as text: a missing cell (``None``, NaN) is ``""``; a URL is its path."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = str(value)
    return urlsplit(value).path if value.startswith(("http://", "https://")) else value


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
    compared = [c for c in dict.fromkeys([*new.columns, *old.columns]) if c not in BOOKKEEPING]

    def cell(frame, i, c):
        return text(frame.at[i, c]) if c in frame.columns else ""

    changed = {i: [c for c in compared if cell(old, i, c) != cell(new, i, c)] for i in both}
    changed = {i: differ for i, differ in changed.items() if differ}
    print(f"{args.old} -> {args.new}: +{len(added)} ~{len(changed)} -{len(removed)}")
    for i in added:
        print(f"  + {i} task {new.at[i, 'task_id']} {new.at[i, 'hf_path']}: "
              + ", ".join(f"{c}={new.at[i, c]}" for c in labels))
    for i, differ in changed.items():
        print(f"  ~ {i} task {new.at[i, 'task_id']} {new.at[i, 'hf_path']}: "
              + ", ".join(f"{c}: {cell(old, i, c)} -> {cell(new, i, c)}" for c in differ))
    for i in removed:
        print(f"  - {i} task {old.at[i, 'task_id']} {old.at[i, 'hf_path']}")


if __name__ == "__main__":
    main()
