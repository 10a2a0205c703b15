"""The files of a version beside the CSV: the manifest JSON and the dataset card ``README.md``.

The card's YAML ``configs`` make ``datasets.load_dataset(repo, revision="annotations-vN")`` load
the CSV (https://huggingface.co/docs/hub/datasets-manual-configuration; loading scripts are not
supported from ``datasets`` 4). An existing card keeps its text and its other YAML keys: LabelHub
only sets the configs and ``dataset_info`` entries of the series it exports
(:mod:`labelhub.sync.versions.series`) and rewrites that series' section between its two markers; the
entries and sections of other series (another project exporting into the same repo) and any other
config are kept. The card is parsed and written with ``huggingface_hub.DatasetCard``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
import re
import uuid

import cachetools
import yaml
from huggingface_hub import DatasetCard
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from labelhub.errors import LabelHubError
from labelhub.redaction import one_line
from labelhub.sync.versions.agreement import counted
from labelhub.sync.versions.series import DEFAULT_CSV_PATH, Series, series_for

#: The markers of the default series' section (:attr:`labelhub.sync.versions.series.Series.markers`).
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
| `other_results` (when some row has one) | a JSON list of the annotation's result items no column above holds, as Label Studio stored them: relations, results of controls the label config lacks, results not in their control's format |
| other columns | the task's metadata columns |
"""

CONTROL_DOC = {
    "Choices": "the chosen labels joined with `|`",
    "RectangleLabels": "JSON list of `{x, y, width, height, label}`, fractions 0 to 1 of the image",
    "TextArea": "the text; several entries (or one that is itself a JSON list) as a JSON list of strings",
}


def manifest_path_for(csv_path: str, tag_prefix: str | None = None) -> str:
    """The manifest's ``path_in_repo``: ``manifest.json`` beside the CSV for the default series, ``P.manifest.json``
    beside it for the series of prefix ``P`` (:attr:`labelhub.sync.versions.series.Series.manifest_path`).

    Args:
        csv_path: The CSV's ``path_in_repo``.
        tag_prefix: The series' tag prefix; ``None``: derived from ``csv_path``.

    Returns:
        The manifest's ``path_in_repo``.

    Raises:
        labelhub.errors.ConfigurationError: The prefix is not a valid one.
    """
    return series_for(csv_path, tag_prefix).manifest_path


def manifest_json(manifest: dict) -> bytes:
    """The manifest as indented JSON bytes (keys sorted, so equal manifests are equal bytes)."""
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def card_block(manifest: dict, controls: dict[str, str], value_key: str, changes: str = "", agreement: str = "",
               series: Series | None = None, rows_config: bool = True, local: bool = False,
               repo_id: str | None = None, media: str = "") -> str:
    """The Markdown that LabelHub owns in the card for one series: version, changes since the previous one
    (``changes``, from :func:`labelhub.sync.versions.diff.summary_text`), agreement, columns, label distribution.

    Args:
        manifest: The version's manifest (``tag``, ``counts``, ``label_studio``, ``label_distribution``, ...).
        controls: ``{from_name: control tag}``.
        value_key: The object tag's data key (the CSV's URL column).
        changes: The Markdown summary of the changes, or ``""``.
        agreement: The Markdown of the agreement figures, or ``""``.
        series: The series exported (its markers and config names); ``None``: the default series.
        rows_config: Whether the card names a rows config to load (a Hub repo's; a local repository has none).
        local: The repo is a local git repository: ``datasets`` cannot read a revision of it, so the recipe
            clones it at the tag (``git clone --branch TAG <path> TAG``) and loads that folder, the CSV through
            pandas with every cell a string (``dtype=str, keep_default_na=False``, as ``labelhub diff`` reads it:
            the ``csv`` builder's guesses made labels ``None``/``NA`` missing and ``1`` a float in one version, an
            int in the next); an ``Image`` or ``Audio`` version says which rows ``train`` leaves out (a file changed
            after its annotation: :func:`_changed_files_note`, counted by the manifest's ``counts.older_content``
            when present) (README, "On a local repository").
        repo_id: The Hub repo's ``owner/name``, written in the load recipe so that it runs as copied; ``None``: the
            placeholder ``<repo_id>`` (a caller that does not know it).
        media: The object tag the files fill (``Image``, ``Audio``, ``Video``, ``Text``...; ``""``: unknown, an
            image's recipe). An ``Audio`` version loads its audio undecoded (``datasets`` decodes audio with
            torchcodec, which needs FFmpeg: :func:`labelhub.sync.versions.training.folder_layout`), so the recipe
            adds the line that decodes it once they are installed; a ``Video`` version's rows hold the task's URL
            (a string: ``datasets``' ``Video`` needs the same decoders), which the recipe says.

    Returns:
        The section, its markers included.
    """
    series = series or Series()
    begin, end = series.markers
    tag = manifest["tag"]
    config = "" if series.is_default else f'"{series.default_config}", '
    where = json.dumps(repo_id) if repo_id else '"<repo_id>"'
    load = (f'train = datasets.load_dataset("./{tag}", {config}split="train")  ' if local else
            f'train = datasets.load_dataset({where}, {config}revision="{tag}", split="train")  ')
    source = (f"Label Studio project {manifest['label_studio']['project_id']}" if series.is_default else
              f"Label Studio project {manifest['label_studio']['project_id']} into `{series.csv_path}`")
    counts = manifest["counts"]
    # the manifest's count of ground-truth annotations, when the exporter wrote one
    ground_truth = (f" {counted(counts['ground_truth'], 'annotation')} marked as ground truth."
                    if isinstance(counts.get("ground_truth"), int) else "")
    signs = f"+{counts['added']} ~{counts['changed']} -{counts['removed']}"
    lines = [begin, f"## Annotations ({manifest['tag']})", "",
             f"Exported by LabelHub from {source} "
             f"at {manifest['created_at']}: {counted(counts['annotations'], 'annotation')} of "
             f"{counted(counts['tasks'], 'task')} by {counted(counts['annotators'], 'annotator')} "
             + (f"({signs} since {manifest['parent_version']})." if manifest.get("parent_version")
                else f"(the first version: {signs}).") + ground_truth, "",
             *(["```bash", f"git clone --branch {tag} <path of this repository> {tag}  "
                "# a local repository: datasets loads a folder, not a revision", "```", ""] if local else []),
             "```python", "import datasets", *(["import pandas as pd"] if local else []),
             load + _load_comment(media, local, value_key)]
    if media == "Audio":  # the audio column is a path ({path, bytes} on the Hub): decoding is the reader's step
        start = f'train.map(lambda r: {{"audio": "./{tag}/" + r["file_name"]}})' if local else "train"
        lines += [f'train = {start}.cast_column("{"audio" if local else value_key}", datasets.Audio())  '
                  "# decoded: needs torchcodec (and FFmpeg)"]
    if local:  # as strings: pandas' guesses made labels "None" or "NA" missing, and "1" float64 in one version
        lines += [f'rows = datasets.Dataset.from_pandas(pd.read_csv("./{tag}/{series.csv_path}", dtype=str, '
                  "keep_default_na=False))  # the CSV's rows, each cell the string it holds"]
    elif rows_config:
        lines += [f'rows = datasets.load_dataset({where}, "{series.rows_config}", revision="{tag}", '
                  'split="train")  ' + "# the CSV's rows"]
    if agreement:  # the consensus config the agreement section refers to
        lines += [f'consensus = datasets.load_dataset("./{tag}", "{series.consensus_config}", split="train")  '
                  if local else
                  f'consensus = datasets.load_dataset({where}, "{series.consensus_config}", revision="{tag}", '
                  'split="train")  ']
        lines[-1] += "# one row per task: majority labels, agreement"
    lines += ["```", ""]
    if local and media in ("Image", "Audio"):
        lines += [_changed_files_note(counts.get("older_content")), ""]
    if changes:
        lines += [f"### Changes in {manifest['tag']}", "", changes, ""]
    if agreement:
        lines += [f"### Agreement ({series.consensus_config} config: one row per task)", "", agreement, ""]
    lines += ["### Columns", ""]
    control_rows = "".join(f"| `{name}` | {tag}: {CONTROL_DOC.get(tag, 'JSON of the result values')} |\n"
                           for name, tag in controls.items())
    lines.append(COLUMNS_DOC.format(value_key=value_key, controls=control_rows))
    for name, counts in manifest["label_distribution"].items():
        lines += [f"### Label distribution: `{name}`", "", "| label | count |", "|---|---|"]
        lines += [f"| {label} | {count} |" for label, count in counts.items()]
        lines.append("")
    lines.append(end)
    return "\n".join(lines)


def _changed_files_note(older) -> str:
    """What a local ``Image``/``Audio`` version's ``train`` (and ``consensus``) leave out: the annotations made on an
    older content of their file than the tag holds (:func:`labelhub.sync.versions.training.media_elsewhere`), with
    their number when the manifest counts them (``counts.older_content``: an int)."""
    note = ("A row annotated before its file changed (its `annotated_revision` older than the commit the file's URL "
            "names) is left out of `train` and of the consensus votes: the clone holds the file's newer content, "
            "which its labels were not made on. The CSV keeps it; `git show <annotated_revision>:<hf_path>` gives "
            "the file as it was annotated.")
    if isinstance(older, int) and not isinstance(older, bool) and older:
        note += f" This version leaves out {counted(older, 'annotation')} so."
    return note


def _load_comment(media: str, local: bool, value_key: str) -> str:
    """The comment after the recipe's ``load_dataset`` line of the default config, by object tag
    (:func:`card_block`)."""
    labels = "labels as strings" if local else "typed labels"
    if media == "Audio":
        where = "`file_name`: the audio file's path in the clone" if local else f"`{value_key}`: {{path, bytes}}"
        return f"# {labels}; {where}, not decoded"
    if media == "Video":
        return f"# {labels}; `{value_key}`: the task's video URL (a string, not decoded), the file is `hf_path`"
    return f"# the media decoded, {labels}" if local else f"# decoded media, {labels}"


#: The config that loads the CSV, one row per annotation as written (the default config is the training rows); the
#: default series' name (another series' is :attr:`labelhub.sync.versions.series.Series.rows_config`).
ROWS_CONFIG = "rows"


#: The config of one row per task: majority labels, annotators, agreement (the default series' name).
CONSENSUS_CONFIG = "consensus"


def merged_entries(existing: list, ours: list[dict], names: tuple[str, ...]) -> list:
    """``existing`` with the entries named in ``names`` (by ``config_name``; none: ``default``) replaced by ``ours``
    where the first of them stood, or ``ours`` appended: another series' entries keep their place."""
    merged, placed = [], False
    for entry in existing:
        if isinstance(entry, dict) and entry.get("config_name", "default") in names:
            if not placed:
                merged.extend(ours)
                placed = True
            continue
        merged.append(entry)
    return merged if placed else merged + ours


def dataset_card(existing: str | None, csv_path: str, block: str, training_files: list[str] | None = None,
                 features=None, rows_path: str | None = None, consensus_files: list[str] | None = None,
                 consensus_features=None, consensus_metadata: str | None = None, series: Series | None = None,
                 training_metadata: str | None = None, version: str | None = None, commit: str | None = None) -> str:
    """The new ``README.md``: ``existing`` (or an empty card) with the series' ``configs`` and ``dataset_info``
    entries set and its section replaced (or appended); other series' entries and sections, and other configs, are
    kept.

    Args:
        existing: The card at the parent commit, or ``None``.
        csv_path: The CSV's ``path_in_repo``: the default config when there are no training rows.
        block: The series' Markdown section (:func:`card_block`).
        training_files: ``data_files`` of the series' default config (:mod:`labelhub.sync.versions.training`);
            ``None``: the CSV is the default config (no training rows).
        features: The ``datasets.Features`` of the default config, written as the card's ``dataset_info``
            (``datasets``' own ``DatasetInfosDict.to_dataset_card_data``, which keeps other configs' entries);
            ``None``: left to ``datasets``.
        rows_path: The CSV's rows as JSON Lines: the rows config. ``datasets`` reads every config of a repo with
            the builder of the first one (``load.py``, ``infer_module_for_data_files``), so the rows config must be
            in the training rows' format; ``None``: no rows config (a local repository, whose default config is a
            folder of images: read the CSV itself).
        consensus_files, consensus_features: ``data_files`` and features of the consensus config.
        consensus_metadata: In a local repository's folder layout, the consensus rows file's name
            (``imagefolder``'s ``metadata_filenames``).
        series: The series exported (config names, section markers); ``None``: the default series (configs
            ``default``, ``rows``, ``consensus``, whatever ``csv_path`` is: this function's behaviour before series).
        training_metadata: In a local repository's folder layout, the training rows file's name when it is not
            ``imagefolder``'s own ``metadata.jsonl`` (another series' ``P.metadata.jsonl``).
        version: Written as the ``description`` of each of the series' configs (e.g. ``"LabelHub
            annotations-v3, export <export_id>"``), so that two versions' cards differ in their YAML. ``datasets``
            keys a local folder's prepared cache by the folder's name and a hash of the card's configs
            (``load.py``: ``Hasher.hash({"dataset_infos", "builder_configs"})``), not by the files' contents: with
            one YAML for every version, ``load_dataset("v3")`` on a clone of another tag under the same folder name
            (or after ``git checkout`` of another tag) silently returns the first version's rows. ``None``: none.
        commit: The commit ``existing`` was read from, named (short) in the error below; ``None``: unknown.

    Returns:
        The card's text.

    Raises:
        labelhub.errors.LabelHubError: ``existing``'s YAML front matter cannot be rebuilt (:func:`parsed_card`: it
            does not parse, or its ``configs``/``dataset_info`` are not lists of mappings); nothing is written.

    Example:
        >>> test = series_for("annotations/test.csv")
        >>> card = dataset_card(None, test.csv_path, "\\n".join(test.markers), [test.hub_training_path], series=test)
        >>> "config_name: test" in card
        True
    """
    series = series or Series(csv_path or DEFAULT_CSV_PATH)
    begin, end = series.markers
    section = _section_pattern(series)
    # the card made with a placeholder for this series' section, kept per earlier card (the section stripped) and
    # arguments: the YAML is parsed and written once while the configs stay the same, not at every version
    stripped = section.sub(lambda _: begin + _SECTION + end, existing) if existing else existing
    key = json.dumps([stripped, csv_path, training_files, repr(features), rows_path, consensus_files,
                      repr(consensus_features), consensus_metadata, series.csv_path, series.prefix, training_metadata])
    made = _CARDS.get(key)
    if made is None:
        made = _CARDS[key] = _made_card(stripped, csv_path, _SECTION, training_files, features, rows_path,
                                        consensus_files, consensus_features, consensus_metadata, series,
                                        training_metadata, commit)
    if features is not None:  # the label set against the previous version's card (its dataset_info)
        # read once per earlier card (its section stripped: the YAML is the same from one version to the next)
        before = _CLASS_NAMES.get((stripped, series.default_config))
        if before is None:
            before = _CLASS_NAMES[(stripped, series.default_config)] = card_class_names(stripped,
                                                                                      series.default_config)
        block = with_label_changes(block, label_set_text(before, class_names(features)))
    made = made.replace(_SECTION, block)
    # the version goes in as a JSON string (a YAML double-quoted scalar) where the placeholder stands unquoted
    return made.replace(_VERSION, json.dumps(version)) if version is not None else _VERSION_LINE.sub("", made)


def class_names(features) -> dict[str, list[str]]:
    """``{column: names}`` of the ``ClassLabel`` columns of ``datasets.Features``: a Choices column's names, a list's
    (``choice="multiple"``), a region list's ``label`` (boxes, spans); the names in their index order (the label
    config's, then the labels found in the rows that it lacks: :func:`labelhub.sync.versions.training.training_features`).
    What a model's class ids are: a change of them between two versions is a change of the label set.

    Example:
        >>> from datasets import ClassLabel, Features, Value
        >>> class_names(Features({"label": ClassLabel(names=["cat", "dog"]), "hf_path": Value("string")}))
        {'label': ['cat', 'dog']}
    """
    def names_of(feature):
        feature = getattr(feature, "feature", feature)  # Sequence / List
        if isinstance(feature, list) and feature:
            feature = feature[0]
        if isinstance(feature, dict):
            feature = feature.get("label")
            feature = getattr(feature, "feature", feature)
        return list(feature.names) if getattr(feature, "names", None) is not None else None

    return {str(name): found for name, feature in (features or {}).items() if (found := names_of(feature)) is not None}


def card_class_names(card: str | None, config: str = "default") -> dict[str, list[str]]:
    """:func:`class_names` of a card's ``dataset_info`` entry of ``config`` (``{}`` when the card has none: no card,
    a local repository's card, a card of an older LabelHub): the previous version's label set, read from the card the
    export rebuilds (no Hub call)."""
    if not card or not REGEX_YAML_BLOCK.search(card):
        return {}
    from datasets.info import DatasetInfosDict

    try:
        infos = DatasetInfosDict.from_dataset_card_data(parsed_card(card).data)
    except (LabelHubError, ValueError, TypeError, KeyError):  # a hand-edited front matter datasets cannot read
        return {}
    info = infos.get(config)
    return class_names(info.features) if info is not None and info.features is not None else {}


def label_set_text(before: Mapping[str, list[str]], after: Mapping[str, list[str]]) -> str:
    """One line per control whose class names differ between two versions: ``labels added: ..., removed: ...``
    (``""`` when none differs, or when ``before`` is empty: nothing to compare with). A control in one of them only
    is not listed (a control added or removed is in the columns).

    Example:
        >>> label_set_text({"label": ["Coat", "Bag"]}, {"label": ["Coat", "Bag", "Ankle boot"]})
        '- `label`: labels added: Ankle boot (2 → 3 classes)'
    """
    lines = []
    for name in after:
        if name not in before or list(before[name]) == list(after[name]):
            continue
        added = [x for x in after[name] if x not in before[name]]
        removed = [x for x in before[name] if x not in after[name]]
        parts = ([f"labels added: {', '.join(added)}"] if added else []) + \
                ([f"removed: {', '.join(removed)}" if added else f"labels removed: {', '.join(removed)}"]
                 if removed else [])
        if not parts:
            parts = ["labels reordered (class ids changed)"]
        lines.append(f"- `{name}`: {', '.join(parts)} ({len(before[name])} → {len(after[name])} classes)")
    return "\n".join(lines)


#: The heading of the label set's changes in a card's "Changes in" section (:func:`with_label_changes`).
LABEL_SET_HEADING = "Label set changed (the typed configs' class ids):"


def with_label_changes(block: str, text: str) -> str:
    """``block`` (:func:`card_block`) with the label set's changes (:func:`label_set_text`) at the top of its
    "Changes in" section, or before its first other section when it has none; ``block`` itself when ``text`` is
    empty or already there."""
    if not text or LABEL_SET_HEADING in block:
        return block
    said = f"{LABEL_SET_HEADING}\n{text}\n\n"
    at = block.find("### Changes in ")
    if at >= 0:
        at = block.find("\n\n", at) + 2
        return block[:at] + said + block[at:]
    at = block.find("### ")
    return block[:at] + "### Changes\n\n" + said + block[at:] if at >= 0 else block


def _section_pattern(series: Series) -> re.Pattern:
    """The series' section of a card body: from its begin marker to its end marker."""
    begin, end = series.markers
    return re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)


#: Stands for a series' section in a cached card (:func:`dataset_card`): random, so in no card's text.
_SECTION = f"<!-- labelhub:section {uuid.uuid4().hex} -->"
#: Stands for the version in each of the series' configs' ``description`` (:func:`dataset_card`'s ``version``).
_VERSION = f"labelhub-version-{uuid.uuid4().hex}"
#: The placeholder's YAML line, taken out when there is no version.
_VERSION_LINE = re.compile(rf"\n *description: {_VERSION}(?=\n)")
#: :func:`card_class_names` of earlier cards (their section stripped), by card and config.
_CLASS_NAMES: cachetools.LRUCache = cachetools.LRUCache(maxsize=16)
#: Cards made by :func:`_made_card`, by their arguments.
_CARDS: cachetools.LRUCache = cachetools.LRUCache(maxsize=16)


#: How :func:`card_error` names the part of a ``README.md`` at fault in :func:`parsed_card`.
FRONT_MATTER = "its YAML front matter (between the --- lines)"


def parsed_card(text: str, commit: str | None = None) -> DatasetCard:
    """``text`` (a ``README.md``) parsed by ``huggingface_hub.DatasetCard``, its ``configs`` and ``dataset_info``
    checked to be what an export merges its entries into (:func:`front_matter_fault`).

    Args:
        text: The card's text.
        commit: The commit it was read from, named (short) in the error; ``None``: unknown.

    Raises:
        labelhub.errors.LabelHubError: the YAML front matter does not parse (the message gives YAML's reason, line
            and column in the file), is not a mapping, or its ``configs``/``dataset_info`` are not lists of mappings:
            one line naming ``README.md`` (and the commit) and saying that the annotations wait until it is fixed.
    """
    try:
        card = DatasetCard(text)
    except yaml.YAMLError as exc:
        raise card_error(f"{FRONT_MATTER} does not parse as YAML: {_yaml_reason(exc, text)}", commit) from None
    except RecursionError:
        raise card_error(f"{FRONT_MATTER} does not parse as YAML: it nests too deeply", commit) from None
    except (ValueError, TypeError) as exc:  # huggingface_hub: not a mapping; a key that is not a string
        raise card_error(f"{FRONT_MATTER} is not a mapping of names to values ({one_line(exc, 100)})", commit) from None
    fault = front_matter_fault(card.data)
    if fault:
        raise card_error(f"{FRONT_MATTER} {fault}", commit)
    return card


def card_error(reason: str, commit: str | None = None) -> LabelHubError:
    """The one-line error of a ``README.md`` an export cannot rebuild the card from (:func:`parsed_card`,
    :func:`card_text`): it names the file, the commit (short) when known and ``reason``, and says that nothing is
    lost (the annotations wait in the sync's state; the export is retried, the person's text is not overwritten)."""
    where = f"README.md at {commit[:12]}" if commit else "README.md"
    return LabelHubError(one_line(f"{where}: {reason}; the export waits until it is fixed, and nothing is lost (the "
                                  "annotations stay in the sync's state)", 600))


def card_text(data: bytes, commit: str | None = None) -> str:
    """A ``README.md``'s bytes as text, UTF-8.

    Raises:
        labelhub.errors.LabelHubError: the bytes are not UTF-8 (:func:`card_error`, naming the first bad byte): a
            card rebuilt from a text decoded with ``errors="replace"`` (as the exporter's other reads of it decode)
            would overwrite the person's characters with U+FFFD.
    """
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise card_error(f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): save it as "
                         "UTF-8", commit) from None


def front_matter_fault(data) -> str | None:
    """Why a card's parsed YAML (``DatasetCard.data``) is not one an export can merge its entries into, or ``None``:
    ``configs`` must be a list of mappings, ``dataset_info`` one mapping or a list of them, each ``config_name`` a
    string (``configs: default`` as a string made configs ``d``, ``e``, ``f``... in a version that did not load).
    Absent or empty keys are fine."""
    for key in ("configs", "dataset_info"):
        value = getattr(data, key, None)
        if value is None:
            continue
        entries = [value] if key == "dataset_info" and isinstance(value, dict) else value
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            return (f"has `{key}` {type(value).__name__} {one_line(repr(value), 60)}, not a list of mappings "
                    "(`- config_name: ...` entries)")
        for entry in entries:
            name = entry.get("config_name", "default")
            if not isinstance(name, str):
                return f"has a `config_name` in `{key}` that is not a string: {one_line(repr(name), 60)}"
    return None


def _yaml_reason(exc: yaml.YAMLError, text: str) -> str:
    """PyYAML's error in one line, its line counted in the file (``text``), not in the YAML block."""
    block = REGEX_YAML_BLOCK.search(text)
    before = text[:block.start(2)].count("\n") if block else 0  # the lines before the YAML block
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError) and mark is not None:
        return f"{exc.problem or exc.context} (line {mark.line + 1 + before}, column {mark.column + 1})"
    if isinstance(exc, yaml.reader.ReaderError) and block:
        line = block.group(2)[:exc.position].count("\n") + 1 + before
        return f"the character #x{exc.character:04x} is not allowed (line {line})"
    return one_line(exc, 200)


def _made_card(existing: str | None, csv_path: str, block: str, training_files, features, rows_path,
               consensus_files, consensus_features, consensus_metadata, series: Series, training_metadata,
               commit: str | None = None) -> str:
    """:func:`dataset_card` made with ``huggingface_hub.DatasetCard`` (its YAML parsed and written; ``existing``'s
    checked by :func:`parsed_card`, whose error names ``commit``)."""
    if existing and not REGEX_YAML_BLOCK.search(existing):
        # a README without a YAML block (plain Markdown): an empty block, so that DatasetCard does not warn "Repo
        # card metadata block was not found" at every version (it reads such a card the same: no metadata, the
        # whole text as its body)
        existing = "---\n{}\n---\n" + existing
    card = parsed_card(existing, commit) if existing else DatasetCard("---\nconfigs: []\n---\n")
    if training_files:
        default = {"config_name": series.default_config, "data_files": [{"split": "train", "path": training_files}]}
        if training_metadata:
            default["metadata_filenames"] = [training_metadata]
        ours = [default]
        if rows_path:
            ours.append({"config_name": series.rows_config, "data_files": [{"split": "train", "path": rows_path}]})
        if consensus_files:
            consensus = {"config_name": series.consensus_config,
                         "data_files": [{"split": "train", "path": consensus_files}]}
            if consensus_metadata:
                consensus["metadata_filenames"] = [consensus_metadata]
            ours.append(consensus)
    else:
        ours = [{"config_name": series.default_config, "data_files": [{"split": "train", "path": csv_path}]}]
    for config in ours:
        config["description"] = _VERSION
    card.data.configs = merged_entries(list(getattr(card.data, "configs", None) or []), ours, series.config_names)
    infos = getattr(card.data, "dataset_info", None)
    if hasattr(card.data, "dataset_info"):
        del card.data.dataset_info
    others = merged_entries([infos] if isinstance(infos, dict) else list(infos or []), [], series.config_names)
    if others:  # another series' features (to_dataset_card_data below merges ours in, sorted by config name)
        card.data.dataset_info = others[0] if len(others) == 1 else others
    if features is not None:
        from datasets import DatasetInfo
        from datasets.info import DatasetInfosDict

        infos = {series.default_config: DatasetInfo(features=features, config_name=series.default_config)}
        if consensus_features is not None:
            infos[series.consensus_config] = DatasetInfo(features=consensus_features,
                                                         config_name=series.consensus_config)
        DatasetInfosDict(infos).to_dataset_card_data(card.data)
    text = card.text
    pattern = _section_pattern(series)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    card.text = text.lstrip("\n")
    return str(card)
