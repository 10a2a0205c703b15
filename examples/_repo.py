"""What the examples share: open an annotation version of a dataset repo with ``datasets``.

A repo is a Hub dataset ``owner/name`` (``HF_TOKEN`` and ``HF_ENDPOINT`` are honoured as by
huggingface_hub) or the path of a local git repository that ``labelhub sync`` exports to (for
example ``.labelhub-demo/fashion-mnist``). An annotation version is a tag ``annotations-vN``.
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile


def is_local(repo: str) -> bool:
    """Whether ``repo`` is a local directory (else a Hub ``owner/name``)."""
    return os.path.isdir(repo)


def load_version(repo: str, tag: str, name: str | None = None, streaming: bool = False):
    """``datasets.load_dataset`` of one annotation version, split ``train``.

    Args:
        name: ``None``: the default config, one row per annotation with the image decoded and typed labels;
            ``"rows"``: the CSV's rows as written (a local repository's CSV is read as a CSV).

    A Hub repo is loaded with ``revision=tag``; a local repository is first cloned at the tag into a
    temporary folder (``datasets`` reads a local folder as it is, without revisions).
    """
    import datasets

    if not is_local(repo):
        return datasets.load_dataset(repo, name, revision=tag, split="train", streaming=streaming,
                                     token=os.environ.get("HF_TOKEN"))
    checkout = tempfile.mkdtemp(prefix=f"{tag}-")
    atexit.register(shutil.rmtree, checkout, True)
    subprocess.run(["git", "-c", "advice.detachedHead=false", "clone", "-q", "--depth", "1", "--branch", tag,
                    f"file://{os.path.abspath(repo)}", checkout], check=True)
    if name == "rows":
        return datasets.load_dataset("csv", data_files=os.path.join(checkout, "annotations", "annotations.csv"),
                                     split="train", streaming=streaming)
    return datasets.load_dataset(checkout, split="train", streaming=streaming)


def label_names(rows, column: str):
    """A function that turns a label cell into its name(s): ``ClassLabel`` ints (a Hub repo's typed labels) are
    mapped to their names; strings (a local folder's labels) are kept."""
    feature = (rows.features or {}).get(column)
    feature = getattr(feature, "feature", feature)
    names = getattr(feature, "int2str", None)
    return (lambda value: names(value) if isinstance(value, int) else value) if names else (lambda value: value)

