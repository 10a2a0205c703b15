"""The optional metadata join: columns of a CSV in the repo added to each task's data (pandas).

The key of a file is one part of its path, counted like a Python index (``-3`` is the third part
from the end: ``nls-data-encyclopaediaBritannica/144133901/image/188082865.3.jpg`` → ``144133901``).
It is matched against the CSV's first column, read as text. A CSV with a header names its own
columns; for one without (like ``encyclopaediaBritannica-inventory.csv``, columns ``id, meta``)
pass the names with ``--metadata-columns id,meta``.
"""
from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from labelhub.errors import LabelHubError
from labelhub.redaction import one_line

#: Task data keys that LabelHub writes itself; a metadata column never overwrites them.
RESERVED_KEYS = ("hf_repo", "hf_path", "hf_revision")


@dataclass(frozen=True)
class MetadataSpec:
    """How to join metadata.

    Attributes:
        path: the CSV's ``path_in_repo``.
        key_part: which path part of a file is its key (Python index; ``-3`` by default).
        columns: names for a CSV without a header (``None``: the first row is the header).
    """

    path: str
    key_part: int = -3
    columns: tuple[str, ...] | None = None


class MetadataTable:
    """A metadata CSV indexed by its first column.

    Args:
        csv_bytes: the CSV file's bytes (UTF-8).
        spec: the :class:`MetadataSpec`.

    Raises:
        LabelHubError: the CSV does not parse (one line), or its first column has duplicate keys (which would
            make the join ambiguous; the message names a few). A row with more fields than the header (a trailing
            comma) is read from its first field on, its extra fields dropped.
    """

    def __init__(self, csv_bytes: bytes, spec: MetadataSpec):
        self.spec = spec
        try:
            # index_col=False: a row with one field more than the header (a trailing comma) keeps its first field
            # as the key, where pandas made it the index and shifted every column left (its warning that the extra
            # field is dropped is the docstring's)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pd.errors.ParserWarning)
                frame = pd.read_csv(io.BytesIO(csv_bytes), dtype=str, keep_default_na=False,
                                    header=None if spec.columns else "infer",
                                    names=list(spec.columns) if spec.columns else None, index_col=False)
        except (ValueError, pd.errors.ParserError) as exc:
            raise LabelHubError(f"metadata CSV {spec.path} does not parse: {one_line(exc, 300)}") from None
        key = frame.columns[0]
        frame[key] = frame[key].str.strip()  # decided: spaces around a key (a padded spreadsheet cell) do not count
        duplicated = frame[key][frame[key].duplicated()].unique()[:5]
        if len(duplicated):
            raise LabelHubError(f"metadata CSV {spec.path}: duplicate keys in column {key!r}: {list(duplicated)}")
        self.key_column = key
        #: The task data keys this table writes (its columns but :data:`RESERVED_KEYS`), in the CSV's order.
        self.columns: tuple[str, ...] = tuple(str(c) for c in frame.columns if c not in RESERVED_KEYS)
        self._rows = {row[key]: row for row in frame.to_dict(orient="records")}
        #: Files looked up by :meth:`columns_for`, and how many of them matched a row.
        self.looked_up = self.matched = 0
        self._missed: tuple[str, str | None] | None = None  # the first file that matched no row, and its key

    def key_of(self, path: str) -> str | None:
        """The key of the file at ``path`` (``None`` when the path has too few parts)."""
        parts = path.split("/")
        try:
            return parts[self.spec.key_part].strip()
        except IndexError:
            return None

    def columns_for(self, path: str) -> dict:
        """The metadata columns for the file at ``path`` (``{}`` when its key has no row)."""
        key = self.key_of(path)
        row = self._rows.get(key)
        self.looked_up += 1
        if row is None:
            self._missed = self._missed or (path, key)
            return {}
        self.matched += 1
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in row.items() if k not in RESERVED_KEYS}

    def unmatched_warning(self, listed: Iterable[str] = ()) -> str | None:
        """One warning line when under 1% of the files looked up since the table was read matched a row, else
        ``None``.

        Args:
            listed: Every file path of the cycle's selection (the repo's files at its commit). When at least 1% of
                them match a row, the key settings are right and the files looked up (new or changed files) only
                lack their rows: the warning says so. Else (a wrong ``--metadata-key`` or CSV, which would otherwise
                leave every task without its columns, silently) it names the key column and an example of a file's
                key and of the table's keys, and points at the settings.

        Example:
            >>> table.unmatched_warning(paths)  # doctest: +SKIP
            "metadata CSV inventory.csv: 0 of 30 files matched a key in its column 'id' (a file's key, part -2 of
            its path: 'image' of 'fmnist/vol-000/image/00000.png'; the CSV's keys: 'vol-000', 'vol-001', ...): check
            --metadata-key and --metadata-columns"
        """
        if not self.looked_up or self.matched * 100 >= self.looked_up:
            return None
        path, key = self._missed
        where = f"a file's key, part {self.spec.key_part} of its path: {key!r} of {path!r}"
        listed = list(listed)
        if listed and sum(self.key_of(p) in self._rows for p in listed) * 100 >= len(listed):
            return (f"metadata CSV {self.spec.path}: {self.looked_up - self.matched} of the {self.looked_up} files "
                    f"imported or updated have no row in it ({where}, is not in its column {self.key_column!r}): "
                    "their tasks get its columns once a commit adds their rows")
        keys = ", ".join(repr(k) for k in list(self._rows)[:3]) + (", ..." if len(self._rows) > 3 else "")
        separator = next((name for sep, name in ((";", "';'"), ("\t", "a tab")) if sep in str(self.key_column)), None)
        hint = (f"; it reads as one column: its separator looks like {separator}, save it with commas"
                if separator and len(self.columns) <= 1 else "")
        return (f"metadata CSV {self.spec.path}: {self.matched} of {self.looked_up} files matched a key in its column "
                f"{self.key_column!r} ({where}; the CSV's keys: {keys or 'none'}): check --metadata-key and "
                f"--metadata-columns{hint}")


def parse_columns(value: str | None) -> tuple[str, ...] | None:
    """``"id,meta"`` → ``("id", "meta")``; ``None`` or ``""`` → ``None``."""
    if not value:
        return None
    return tuple(name.strip() for name in value.split(","))


def spec_from_args(path: str | None, key_part: int, columns: Sequence[str] | None) -> MetadataSpec | None:
    """Build the :class:`MetadataSpec` from the CLI's arguments (``None`` without ``--metadata``)."""
    return MetadataSpec(path, key_part, tuple(columns) if columns else None) if path else None
