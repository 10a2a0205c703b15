"""What the examples share: open an annotation version of a dataset repo with ``datasets``.

A repo is a Hub dataset ``owner/name`` (``HF_TOKEN`` and ``HF_ENDPOINT`` are honoured as by
huggingface_hub) or the path of a local git repository that ``labelhub sync`` exports to (for
example ``.labelhub-demo/fashion-mnist``). An annotation version is a tag ``annotations-vN``.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile


def is_local(repo: str) -> bool:
    """Whether ``repo`` is a local directory (else a Hub ``owner/name``)."""
    return os.path.isdir(repo)


def series_configs(tag: str) -> tuple[str | None, str]:
    """The ``datasets`` configs of the series a tag belongs to: ``(typed rows, CSV rows)``.

    ``annotations-vN`` is the default series (configs ``default`` and ``rows``); another project exporting into the
    same repo tags ``P-vN`` and owns the configs ``P`` and ``P-rows`` (README, "Several projects, one repo").
    """
    match = re.fullmatch(r"(.+)-v\d+", tag)
    prefix = match.group(1) if match else "annotations"
    return (None, "rows") if prefix == "annotations" else (prefix, f"{prefix}-rows")


def load_version(repo: str, tag: str, name: str | None = None, streaming: bool = False):
    """``datasets.load_dataset`` of one annotation version, split ``train``.

    Args:
        name: ``None``: the typed config of the tag's series (:func:`series_configs`), one row per annotation with
            the image decoded and typed labels; ``"rows"``: the CSV's rows as written (a local repository's CSV is
            read as a CSV: the default series' only).

    A Hub repo is loaded with ``revision=tag``; a local repository is first cloned at the tag into a
    temporary folder (``datasets`` reads a local folder as it is, without revisions).
    """
    import datasets

    typed, rows = series_configs(tag)
    if not is_local(repo):
        return datasets.load_dataset(repo, rows if name == "rows" else typed, revision=tag, split="train",
                                     streaming=streaming, token=os.environ.get("HF_TOKEN"))
    checkout = tempfile.mkdtemp(prefix=f"{tag}-")
    atexit.register(shutil.rmtree, checkout, True)
    subprocess.run(["git", "-c", "advice.detachedHead=false", "clone", "-q", "--depth", "1", "--branch", tag,
                    f"file://{os.path.abspath(repo)}", checkout], check=True)
    if name == "rows":
        if typed is not None:
            raise SystemExit(f"{tag}: read another series' CSV at its --csv-path in a clone of the tag")
        return datasets.load_dataset("csv", data_files=os.path.join(checkout, "annotations", "annotations.csv"),
                                     split="train", streaming=streaming)
    return datasets.load_dataset(checkout, typed, split="train", streaming=streaming)


def label_names(rows, column: str):
    """A function that turns a label cell into its name(s), something hashable: a ``ClassLabel`` int (a Hub repo's
    typed labels) into its name, a string (a local folder's labels) as it is, a list (``choice="multiple"``) into a
    tuple of names, and a list of regions (boxes, spans: ``{..., "label": ...}``) into the tuple of their labels."""
    feature = (rows.features or {}).get(column)
    feature = getattr(feature, "feature", feature)
    if isinstance(feature, dict):  # a region's struct: its "label" is the ClassLabel
        feature = feature.get("label")
    to_name = getattr(feature, "int2str", None)

    def name(value):
        if isinstance(value, list):
            return tuple(name(v.get("label") if isinstance(v, dict) else v) for v in value)
        return to_name(value) if to_name and isinstance(value, int) else value

    return name

