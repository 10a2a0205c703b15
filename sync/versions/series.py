"""Where one project's versions live in a dataset repo: its tag prefix, the files it writes, its ``datasets`` configs.

Several Label Studio projects can export into one dataset repo, for example a train and a test project, each
``labelhub sync`` with its own ``--csv-path``. Each project's versions are a *series* named by its **tag prefix**
``P``: the tags ``P-v1``, ``P-v2``, ... and every file, config and card section the series owns carry ``P`` in
their names, so two series never write the same tag, file or config, and an export of one keeps the other's
(the commit only writes its own paths; the card's ``configs`` and ``dataset_info`` keep the other series'
entries and its body keeps the other series' section, :func:`labelhub.sync.versions.card.dataset_card`).

===========================  ============================================  ============================================
what                         prefix ``annotations`` (the default)          any other prefix ``P``
===========================  ============================================  ============================================
tags                         ``annotations-vN``                            ``P-vN``
the CSV                      ``--csv-path``                                ``--csv-path``
manifest                     ``manifest.json`` beside the CSV              ``P.manifest.json`` beside the CSV
training rows (Hub)          ``train.jsonl`` beside the CSV                ``P.train.jsonl`` beside the CSV
CSV rows as JSON (Hub)       the CSV's path with ``.jsonl``                ``P.rows.jsonl`` beside the CSV
consensus rows (Hub)         ``consensus.jsonl`` beside the CSV            ``P.consensus.jsonl`` beside the CSV
training rows (local repo)   ``metadata.jsonl`` at the root                ``P.metadata.jsonl`` at the root
consensus rows (local repo)  ``consensus.jsonl`` at the root               ``P.consensus.jsonl`` at the root
``datasets`` configs         ``default``, ``rows``, ``consensus``          ``P``, ``P-rows``, ``P-consensus``
the card's section           between ``<!-- labelhub:begin -->`` and       between ``<!-- labelhub:begin P -->`` and
                             ``<!-- labelhub:end -->``                     ``<!-- labelhub:end P -->``
===========================  ============================================  ============================================

The default prefix is ``annotations`` for the default CSV (``annotations/annotations.csv``), so one project
exporting as before writes exactly what it wrote before. Another ``--csv-path`` gets a prefix derived from it
(:func:`default_prefix`: ``annotations/test.csv`` → ``test``, ``test/annotations.csv`` → ``test``); ``--tag-prefix``
sets it (``--tag-prefix annotations`` keeps the default series' names, e.g. for a project that exported with
another ``--csv-path`` before series existed). A prefix is letters, digits, ``_`` and ``-`` (no ``.``, so the
files of two series never share a name), starts with a letter or digit, and is not ``default``, ``rows`` or
``consensus`` nor ends in ``-rows`` or ``-consensus`` (so the configs of two series never share a name).

``labelhub versions``, ``diff`` and ``restore`` take the same ``--csv-path`` and ``--tag-prefix`` to read a series.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass

from labelhub.errors import ConfigurationError

__all__ = ["DEFAULT_CSV_PATH", "DEFAULT_PREFIX", "Series", "default_prefix", "series_for", "version_tag_prefix",
           "did_you_mean"]

#: The CSV of the default series.
DEFAULT_CSV_PATH = "annotations/annotations.csv"
#: The tag prefix of the default series (tags ``annotations-vN``).
DEFAULT_PREFIX = "annotations"
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_RESERVED = ("default", "rows", "consensus")
#: A tag of some series: ``<prefix>-v<number>``.
_VERSION_TAG = re.compile(r"(.+)-v(\d+)")


def default_prefix(csv_path: str) -> str:
    """The tag prefix of a CSV when ``--tag-prefix`` is not given.

    The CSV's path without ``.csv``, without a leading ``annotations/`` folder and without a trailing
    ``/annotations`` file name, ``/`` and any character outside ``[A-Za-z0-9_-]`` turned into ``-``.

    Args:
        csv_path: The CSV's ``path_in_repo`` (``--csv-path``).

    Returns:
        The prefix: ``annotations`` for ``annotations/annotations.csv`` (and ``annotations.csv``), ``test`` for
        ``annotations/test.csv`` or ``test/annotations.csv``, ``data-test`` for ``data/test.csv``.

    Example:
        >>> default_prefix("annotations/test.csv"), default_prefix("train/annotations.csv")
        ('test', 'train')
    """
    stem = csv_path[:-4] if csv_path.lower().endswith(".csv") else csv_path
    parts = [part for part in stem.split("/") if part]
    if len(parts) > 1 and parts[0] == DEFAULT_PREFIX:
        parts = parts[1:]
    if len(parts) > 1 and parts[-1] == DEFAULT_PREFIX:
        parts = parts[:-1]
    return re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(parts)).strip("-_") or DEFAULT_PREFIX


def version_tag_prefix(tag: str) -> str | None:
    """The prefix of a tag shaped like a version of some series (``test-v3`` → ``test``), else ``None``.

    Args:
        tag: A tag name.

    Returns:
        The part before ``-v<number>``, or ``None`` for a tag of another shape.
    """
    match = _VERSION_TAG.fullmatch(tag)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Series:
    """One project's versions in a repo: its tags, files and configs (see the module docstring).

    Attributes:
        csv_path: The CSV's ``path_in_repo``.
        prefix: The tag prefix (tags ``{prefix}-v{N}``).
    """

    csv_path: str = DEFAULT_CSV_PATH
    prefix: str = DEFAULT_PREFIX

    @property
    def is_default(self) -> bool:
        """Whether this is the ``annotations`` series, whose files and configs keep their historical names."""
        return self.prefix == DEFAULT_PREFIX

    @property
    def folder(self) -> str:
        """The CSV's folder with a trailing ``/`` (``""`` at the root)."""
        return self.csv_path.rsplit("/", 1)[0] + "/" if "/" in self.csv_path else ""

    def _beside(self, name: str) -> str:
        return self.folder + (name if self.is_default else f"{self.prefix}.{name}")

    def _at_root(self, name: str) -> str:
        return name if self.is_default else f"{self.prefix}.{name}"

    # tags
    def tag(self, number: int) -> str:
        """The tag of version ``number`` (``test-v3``)."""
        return f"{self.prefix}-v{number}"

    def number(self, tag: str) -> int | None:
        """The version number of ``tag`` when it is a tag of this series, else ``None``."""
        head = f"{self.prefix}-v"
        rest = tag[len(head):]
        return int(rest) if tag.startswith(head) and rest.isdigit() else None

    def numbered(self, tags) -> dict[int, str]:
        """``{number: tag}`` of the tags of this series among ``tags`` (any iterable of names)."""
        found = {}
        for tag in tags:
            number = self.number(tag)
            if number is not None:
                found[number] = tag
        return found

    def commit_title(self, number: int) -> str:
        """The first line of version ``number``'s commit, before its counts (``annotations v3``, ``test v3``)."""
        return f"{self.prefix} v{number}"

    # files
    @property
    def manifest_path(self) -> str:
        """The manifest's ``path_in_repo``."""
        return self._beside("manifest.json")

    @property
    def hub_training_path(self) -> str:
        """The default config's rows file in a Hub repo (:mod:`labelhub.sync.versions.training`)."""
        return self._beside("train.jsonl")

    @property
    def hub_consensus_path(self) -> str:
        """The consensus config's rows file in a Hub repo."""
        return self._beside("consensus.jsonl")

    @property
    def rows_path(self) -> str:
        """The CSV's rows as JSON Lines (the rows config of a Hub repo)."""
        return self.csv_path.rsplit(".", 1)[0] + ".jsonl" if self.is_default else self._beside("rows.jsonl")

    @property
    def local_metadata_path(self) -> str:
        """The default config's ``imagefolder`` metadata file in a local repository (at its root)."""
        return self._at_root("metadata.jsonl")

    @property
    def local_consensus_path(self) -> str:
        """The consensus config's ``imagefolder`` metadata file in a local repository (at its root)."""
        return self._at_root("consensus.jsonl")

    def own_paths(self, local: bool) -> list[str]:
        """The files this series' exports write and no one else should, in a local repository (``local``) or a Hub
        repo: the CSV, the manifest, the training and consensus rows and, on the Hub, the CSV's rows as JSON
        (``README.md`` is shared and not among them)."""
        if local:
            return [self.csv_path, self.manifest_path, self.local_metadata_path, self.local_consensus_path]
        return [self.csv_path, self.manifest_path, self.hub_training_path, self.hub_consensus_path, self.rows_path]

    @property
    def all_paths(self) -> tuple[str, ...]:
        """Every file this series writes in either layout (:meth:`own_paths` of both): never a task's file."""
        return tuple(dict.fromkeys([*self.own_paths(True), *self.own_paths(False)]))

    def manifest_candidates(self) -> list[str]:
        """Where another series of the same prefix keeps its manifest when its CSV is at a usual place
        (``annotations/P.csv``, ``P/annotations.csv``, ``P.csv``: the paths :func:`default_prefix` derives ``P``
        from), this series' own manifest left out: read to name the CSV that took the prefix."""
        name = "manifest.json" if self.is_default else f"{self.prefix}.manifest.json"
        found = [f"{DEFAULT_PREFIX}/{name}", f"{self.prefix}/{name}", name]
        return [path for path in dict.fromkeys(found) if path != self.manifest_path]

    # configs and card
    @property
    def default_config(self) -> str:
        """The config of the training rows: ``default``, or the prefix."""
        return "default" if self.is_default else self.prefix

    @property
    def rows_config(self) -> str:
        """The config of the CSV's rows (Hub repos): ``rows``, or ``{prefix}-rows``."""
        return "rows" if self.is_default else f"{self.prefix}-rows"

    @property
    def consensus_config(self) -> str:
        """The config of one row per task: ``consensus``, or ``{prefix}-consensus``."""
        return "consensus" if self.is_default else f"{self.prefix}-consensus"

    @property
    def config_names(self) -> tuple[str, str, str]:
        """Every config this series owns in the card (whether or not the repo's layout writes it)."""
        return self.default_config, self.rows_config, self.consensus_config

    @property
    def markers(self) -> tuple[str, str]:
        """The HTML comments around this series' section of the card body."""
        if self.is_default:
            return "<!-- labelhub:begin -->", "<!-- labelhub:end -->"
        return f"<!-- labelhub:begin {self.prefix} -->", f"<!-- labelhub:end {self.prefix} -->"

    def check_tag(self, tag: str) -> None:
        """Refuse a tag named like a version of another series (reading it with this series' ``--csv-path`` would
        read another project's CSV, which the commit also holds); other names and commit shas pass.

        Args:
            tag: A tag name or commit sha given to ``labelhub diff`` or ``restore``.

        Raises:
            ConfigurationError: ``tag`` is ``Q-vN`` with ``Q`` another prefix; the message says which options read it.
        """
        other = version_tag_prefix(tag)
        if other is not None and other != self.prefix:
            raise ConfigurationError(
                f"{tag} is a version of the series {other!r}, not of {self.prefix!r} (--csv-path {self.csv_path}): "
                f"pass that project's --csv-path (and --tag-prefix {other} if it set one)")


def series_for(csv_path: str | None = None, tag_prefix: str | None = None) -> Series:
    """The series of ``--csv-path`` and ``--tag-prefix``.

    Args:
        csv_path: The CSV's ``path_in_repo``; ``None``: :data:`DEFAULT_CSV_PATH`.
        tag_prefix: The tag prefix; ``None`` or ``""``: :func:`default_prefix` of ``csv_path``.

    Returns:
        A :class:`Series`.

    Raises:
        ConfigurationError: The prefix (given or derived) is not a valid one (see the module docstring), or the CSV
            path is empty.

    Example:
        >>> series_for("annotations/test.csv").tag(3), series_for().tag(3)
        ('test-v3', 'annotations-v3')
    """
    csv_path = (csv_path or DEFAULT_CSV_PATH).strip("/")
    if not csv_path:
        raise ConfigurationError("--csv-path is empty")
    prefix = tag_prefix or default_prefix(csv_path)
    how = "--tag-prefix" if tag_prefix else f"the tag prefix derived from --csv-path {csv_path}"
    if not _PREFIX.fullmatch(prefix):
        raise ConfigurationError(f"{how} {prefix!r} is not letters, digits, _ and - (starting with a letter or digit)")
    if prefix in _RESERVED or prefix.endswith(tuple(f"-{name}" for name in _RESERVED[1:])):
        raise ConfigurationError(f"{how} {prefix!r} would name a config like another series' (default, rows, "
                                 "consensus, *-rows, *-consensus): pass another --tag-prefix")
    return Series(csv_path, prefix)


def did_you_mean(tag: str, tags: Collection[str]) -> str:
    """A hint for a tag the repo does not have: ``"; did you mean 'annotations-v1'?"`` for ``v1`` or ``1`` (the
    version tags ending in ``-v1``), else the closest tag name (:func:`difflib.get_close_matches`), else ``""``.

    Args:
        tag: The name given (``labelhub diff``, ``restore``).
        tags: The repo's tag names.

    Example:
        >>> did_you_mean("v1", ["annotations-v1", "annotations-v2", "test-v1"])
        "; did you mean 'annotations-v1' or 'test-v1'?"
        >>> did_you_mean("anotations-v2", ["annotations-v1", "annotations-v2"])
        "; did you mean 'annotations-v2'?"
    """
    number = re.fullmatch(r"v?(\d+)", tag)
    found = sorted(t for t in tags if number and t.endswith(f"-v{int(number.group(1))}")) \
        or difflib.get_close_matches(tag, list(tags), n=1, cutoff=0.75)
    return f"; did you mean {' or '.join(repr(t) for t in found[:3])}?" if found else ""
