"""The files of a version beside the CSV: the manifest JSON and the dataset card ``README.md``.

The card's YAML ``configs`` make ``datasets.load_dataset(repo, revision="annotations-vN")`` load
the CSV (https://huggingface.co/docs/hub/datasets-manual-configuration; loading scripts are not
supported from ``datasets`` 4). An existing card keeps its text and its other YAML keys: LabelHub
only sets ``configs`` and rewrites the block between its two markers. The card is parsed and written
with ``huggingface_hub.DatasetCard``.
"""
from __future__ import annotations

import json
import re

from huggingface_hub import DatasetCard

BEGIN, END = "<!-- labelhub:begin -->", "<!-- labelhub:end -->"

COLUMNS_DOC = """| column | meaning |
|---|---|
| `task_id`, `annotation_id` | Label Studio ids (one row per annotation: several annotators per task are all kept) |
| `hf_path` | the file's path in this repo |
| `{value_key}` | the file's URL, pinned to the revision the task shows |
{controls}| `annotator` | the annotator's email |
| `created_at`, `updated_at` | ISO 8601, UTC |
| `lead_time` | seconds the annotator spent |
| `was_cancelled` | `true` for a skipped task |
| `ground_truth` | `true` when marked as ground truth |
| `annotated_revision` | the commit the task showed when the annotation was saved (older than the URL's when the file changed since) |
| other columns | the task's metadata columns |
"""

CONTROL_DOC = {
    "Choices": "the chosen labels joined with `|`",
    "RectangleLabels": "JSON list of `{x, y, width, height, label}`, fractions 0 to 1 of the image",
    "TextArea": "the text",
}


def manifest_path_for(csv_path: str) -> str:
    """The manifest's ``path_in_repo``: ``manifest.json`` beside the CSV."""
    folder = csv_path.rsplit("/", 1)[0] if "/" in csv_path else ""
    return f"{folder}/manifest.json" if folder else "manifest.json"


def manifest_json(manifest: dict) -> bytes:
    """The manifest as indented JSON bytes (keys sorted, so equal manifests are equal bytes)."""
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def card_block(manifest: dict, controls: dict[str, str], value_key: str, changes: str = "", agreement: str = "") -> str:
    """The Markdown that LabelHub owns in the card: version, changes since the previous one (``changes``, from
    :func:`labelhub.sync.versions.diff.summary_text`), columns, label distribution."""
    lines = [BEGIN, f"## Annotations ({manifest['tag']})", "",
             f"Exported by LabelHub from Label Studio project {manifest['label_studio']['project_id']} "
             f"at {manifest['created_at']}: {manifest['counts']['annotations']} annotations of "
             f"{manifest['counts']['tasks']} tasks by {manifest['counts']['annotators']} annotators "
             f"(+{manifest['counts']['added']} ~{manifest['counts']['changed']} -{manifest['counts']['removed']} "
             f"since {manifest['parent_version'] or 'nothing'}).", "",
             "```python", "import datasets",
             f'train = datasets.load_dataset("<repo_id>", revision="{manifest["tag"]}", split="train")  '
             "# decoded media, typed labels",
             f'rows = datasets.load_dataset("<repo_id>", "{ROWS_CONFIG}", revision="{manifest["tag"]}", split="train")  '
             "# the CSV's rows (a Hub repo)", "```", ""]
    if changes:
        lines += [f"### Changes in {manifest['tag']}", "", changes, ""]
    if agreement:
        lines += [f"### Agreement ({CONSENSUS_CONFIG} config: one row per task)", "", agreement, ""]
    lines += ["### Columns", ""]
    control_rows = "".join(f"| `{name}` | {tag}: {CONTROL_DOC.get(tag, 'JSON of the result values')} |\n"
                           for name, tag in controls.items())
    lines.append(COLUMNS_DOC.format(value_key=value_key, controls=control_rows))
    for name, counts in manifest["label_distribution"].items():
        lines += [f"### Label distribution: `{name}`", "", "| label | count |", "|---|---|"]
        lines += [f"| {label} | {count} |" for label, count in counts.items()]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


#: The config that loads the CSV, one row per annotation as written (the default config is the training rows).
ROWS_CONFIG = "rows"


#: The config of one row per task: majority labels, annotators, agreement.
CONSENSUS_CONFIG = "consensus"


def dataset_card(existing: str | None, csv_path: str, block: str, training_files: list[str] | None = None,
                 features=None, rows_path: str | None = None, consensus_files: list[str] | None = None,
                 consensus_features=None, consensus_metadata: str | None = None) -> str:
    """The new ``README.md``: ``existing`` (or an empty card) with its ``configs`` set and LabelHub's block
    replaced (or appended).

    Args:
        existing: The card at the parent commit, or ``None``.
        csv_path: The CSV's ``path_in_repo``: the ``default`` config when there are no training rows.
        block: LabelHub's Markdown (:func:`card_block`).
        training_files: ``data_files`` of the ``default`` config (:mod:`labelhub.sync.versions.training`);
            ``None``: the CSV is the default config (no training rows).
        features: The ``datasets.Features`` of the default config, written as the card's ``dataset_info``
            (``datasets``' own ``DatasetInfosDict.to_dataset_card_data``); ``None``: left to ``datasets``.
        rows_path: The CSV's rows as JSON Lines: the ``rows`` config. ``datasets`` reads every config of a repo with
            the builder of the first one (``load.py``, ``infer_module_for_data_files``), so the rows config must be
            in the training rows' format; ``None``: no rows config (a local repository, whose default config is a
            folder of images: read the CSV itself).
        consensus_files, consensus_features: ``data_files`` and features of the ``consensus`` config.
        consensus_metadata: In a local repository's folder layout, the consensus rows file's name
            (``imagefolder``'s ``metadata_filenames``).

    Returns:
        The card's text.
    """
    card = DatasetCard(existing or "---\nconfigs: []\n---\n")
    if training_files:
        card.data.configs = [{"config_name": "default", "data_files": [{"split": "train", "path": training_files}]}]
        if rows_path:
            card.data.configs.append({"config_name": ROWS_CONFIG, "data_files": [{"split": "train", "path": rows_path}]})
        if consensus_files:
            consensus = {"config_name": CONSENSUS_CONFIG, "data_files": [{"split": "train", "path": consensus_files}]}
            if consensus_metadata:
                consensus["metadata_filenames"] = [consensus_metadata]
            card.data.configs.append(consensus)
    else:
        card.data.configs = [{"config_name": "default", "data_files": [{"split": "train", "path": csv_path}]}]
    if hasattr(card.data, "dataset_info"):
        del card.data.dataset_info
    if features is not None:
        from datasets import DatasetInfo
        from datasets.info import DatasetInfosDict

        infos = {"default": DatasetInfo(features=features, config_name="default")}
        if consensus_features is not None:
            infos[CONSENSUS_CONFIG] = DatasetInfo(features=consensus_features, config_name=CONSENSUS_CONFIG)
        DatasetInfosDict(infos).to_dataset_card_data(card.data)
    text = card.text
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    card.text = text.lstrip("\n")
    return str(card)
