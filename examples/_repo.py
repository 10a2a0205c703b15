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


def consensus_config(tag: str) -> str:
    """The ``datasets`` config of one row per task (majority labels, agreement) of the series a tag belongs to:
    ``consensus``, or ``P-consensus`` for another project's ``P-vN``."""
    typed, _ = series_configs(tag)
    return "consensus" if typed is None else f"{typed}-consensus"


def load_version(repo: str, tag: str, name: str | None = None, streaming: bool = False):
    """``datasets.load_dataset`` of one annotation version, split ``train``.

    Args:
        name: ``None``: the typed config of the tag's series (:func:`series_configs`), one row per annotation with
            the image decoded and typed labels; ``"consensus"``: one row per task with its majority labels
            (:func:`consensus_config`), the media decoded; ``"rows"``: the CSV's rows as written (a local repository's
            CSV is read as a CSV, every cell a string: :func:`csv_rows`; the default series' only).

    A Hub repo is loaded with ``revision=tag``; a local repository is first cloned at the tag into a
    temporary folder (``datasets`` reads a local folder as it is, without revisions). A config with no rows (a
    version whose annotations were all skipped, or none yet) exits with a one-line message, not ``datasets``'
    traceback (``Instruction "train" corresponds to no data!``).
    """
    import datasets

    if name not in (None, "rows", "consensus"):
        raise SystemExit(f"config {name!r}: one of default (none), rows, consensus")
    typed, rows = series_configs(tag)
    config = {None: typed, "rows": rows, "consensus": consensus_config(tag)}[name]
    try:
        if not is_local(repo):
            return _from_hub(repo, config, tag, streaming)
        checkout = clone(repo, tag)
        if name == "rows":
            if typed is not None:
                raise SystemExit(f"{tag}: read another series' CSV at its --csv-path in a clone of the tag")
            rows = csv_rows(os.path.join(checkout, "annotations", "annotations.csv"))
            return rows.to_iterable_dataset() if streaming else rows
        return datasets.load_dataset(checkout, config, split="train", streaming=streaming)
    except (ValueError, StopIteration) as exc:  # datasets' ways of saying a config's files hold no row
        if isinstance(exc, StopIteration) or "corresponds to no data" in str(exc):
            raise SystemExit(f"{tag}: the {config or 'default'} config has no rows (no annotation in this version, "
                             "or all of them skipped)") from None
        raise


def _from_hub(repo: str, config: str | None, tag: str, streaming: bool):
    """``datasets.load_dataset`` of ``config`` of the Hub dataset ``repo`` at ``tag``; a repo or a tag the Hub does
    not have (or does not show this token) exits with one line, not ``datasets``' traceback."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        return datasets.load_dataset(repo, config, revision=tag, split="train", streaming=streaming,
                                     token=os.environ.get("HF_TOKEN"))
    except (DatasetNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        raise SystemExit(f"{tag}: not found in the Hub dataset {repo} (no such repo or tag: `labelhub versions "
                         f"--repo {repo}` lists its tags; or a private repo: set HF_TOKEN)") from None


def region_column(rows, column: str, tag: str, control: str):
    """The feature of ``column``, a column of regions (a list of boxes or spans) of a ``control`` (``Labels``,
    ``RectangleLabels``) control tag; a version without that column, or whose column holds no regions (another
    control's: a Choices' labels), exits with one line naming the columns there are."""
    if column not in rows.column_names:
        raise SystemExit(f"{tag}: no column {column!r} (its columns: {', '.join(rows.column_names)}): give --column, "
                         f"the name of a <{control}> of the label config")
    feature = rows.features[column]
    if not (hasattr(feature, "feature") or isinstance(feature, list)):
        raise SystemExit(f"{tag}: the column {column!r} holds no regions, it is no <{control}>'s: give --column, the "
                         f"name of a <{control}> of the label config")
    return feature


def csv_rows(path: str):
    """A version's CSV as a ``datasets.Dataset``, every cell the string the CSV holds (as ``labelhub diff`` reads
    it), the recipe a local version's card prints.

    ``datasets.load_dataset("csv", ...)`` lets pandas guess each column's type: labels ``None``, ``NA`` or ``null``
    became missing, and a column of labels ``1`` and ``2`` became float64 in a version with an empty cell and int64
    in the next (``examples/diff_versions.py`` then saw ``1.0 -> 1`` as a change). Read as strings, a cell is the
    label as written, an empty cell ``""``.
    """
    import datasets
    import pandas as pd

    return datasets.Dataset.from_pandas(pd.read_csv(path, dtype=str, keep_default_na=False))


def clone(repo: str, tag: str) -> str:
    """A temporary clone of a local repository at ``tag`` (removed at exit), once per run and tag; a tag the
    repository lacks exits with one line naming its last tags."""
    if (repo, tag) not in _CLONES:
        checkout = tempfile.mkdtemp(prefix=f"{tag}-")
        atexit.register(shutil.rmtree, checkout, True)
        cloned = subprocess.run(["git", "-c", "advice.detachedHead=false", "clone", "-q", "--depth", "1", "--branch",
                                 tag, f"file://{os.path.abspath(repo)}", checkout], capture_output=True, text=True)
        if cloned.returncode:  # one line: the tags there are, or git's own reason (not a repository...)
            tags = subprocess.run(["git", "-C", repo, "tag", "--list", "--sort=v:refname"], capture_output=True,
                                  text=True).stdout.split()
            raise SystemExit(f"{tag}: no such tag in {repo} (its tags: {', '.join(tags[-10:])})" if tags else
                             f"{tag}: cannot clone {repo} at it: {' '.join(cloned.stderr.split())[:300]}")
        _CLONES[(repo, tag)] = checkout
    return _CLONES[(repo, tag)]


_CLONES: dict[tuple[str, str], str] = {}


def read_manifest(repo: str, tag: str) -> dict:
    """The default series' manifest (``annotations/manifest.json``) of ``tag``, ``{}`` when there is none (another
    series' tag, a version without one). Its ``class_names`` (when LabelHub wrote them) are each control's labels in
    the label config's order."""
    import json

    if series_configs(tag)[0] is not None:
        return {}
    try:
        if is_local(repo):
            with open(os.path.join(clone(repo, tag), "annotations", "manifest.json")) as fh:
                return json.load(fh)
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            path = hf_hub_download(repo, "annotations/manifest.json", repo_type="dataset", revision=tag,
                                   token=os.environ.get("HF_TOKEN"))
        except EntryNotFoundError:
            return {}
        with open(path) as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return {}


def label_names(rows, column: str):
    """A function that turns a label cell into its name(s), something hashable: a ``ClassLabel`` int (a Hub repo's
    typed labels) into its name, a string (a local folder's labels) as it is, a list (``choice="multiple"``) into a
    tuple of names, and a list of regions (boxes, spans: ``{..., "label": ...}``) into the tuple of their labels.
    Features that are no struct (a local version whose rows hold no box or span yet: ``datasets`` infers the
    column ``List(Value("null"))``) have no ``ClassLabel``: the cells are taken as they are."""
    features = rows.features
    feature = features.get(column) if isinstance(features, dict) else None  # a non-struct: no column, no ClassLabel
    feature = getattr(feature, "feature", feature)
    if isinstance(feature, dict):  # a region's struct: its "label" is the ClassLabel
        feature = feature.get("label")
    to_name = getattr(feature, "int2str", None)

    def name(value):
        if isinstance(value, list):
            return tuple(name(v.get("label") if isinstance(v, dict) else v) for v in value)
        return to_name(value) if to_name and isinstance(value, int) else value

    return name

