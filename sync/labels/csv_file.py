"""A labels CSV → :class:`labelhub.sync.labels.parsed.ParsedLabels` (Python's :mod:`csv` splits it, pandas checks
every row).

The columns (a header line is required; names in any case; separated by ``,``, or by ``;`` or tabs when the header
line is; other columns are ignored with a warning, but a file with such columns and no label column,
:data:`LABEL_COLUMNS`, is refused: ``url,labels`` would make every task unlabelled, and a later fix would find its
urls imported. A CSV of the ``url`` column alone is a list of images to label: tasks without labels):

- ``url`` (required): an ``http(s)://`` URL, an ``hf://`` url, or a path of the dataset repo
  (``--repo``); see :class:`labelhub.sync.labels.parsed.UrlResolver`.
- ``pos_concepts``, ``neg_concepts``: label names separated by ``|`` (positive: the label applies;
  negative: it was checked and does not apply).
- ``metadata``: a JSON object (strict JSON, :func:`labelhub.strict_json.loads`: no ``NaN``, Unicode text).
- ``left_col, top_row, right_col, bottom_row``: a region's box as fractions 0 to 1 of the image's
  width and height. All four empty: the row labels the whole image.

Several rows with the same url (once resolved: ``a.png`` and ``./a.png`` of the repo are one) are one image:
whole-image rows add Choices, box rows add regions (labelled with the row's positive concepts), metadata objects
are merged in line order. A url with a rejected row is held back whole (its good rows are reported with
:data:`labelhub.sync.labels.parsed.HELD_BACK`): fixing the file and running it again imports it with all its rows.
The same
columns as LabelHub's export CSV (which holds boxes as JSON fractions; :mod:`labelhub.sync.regions`).

Each check runs on every row (vectorised with pandas), and every failing check is reported with
the row's line number (the header is line 1; a quoted value spanning lines is counted). A row with more fields
than the header, with broken quoting, or with bytes that are not UTF-8 (read as U+FFFD) is one of those rejected
rows; the rest of the file is read on.
"""
from __future__ import annotations

import csv
import io
import logging
from os import PathLike
from typing import IO

import numpy as np
import pandas as pd

from labelhub import strict_json
from labelhub.errors import InvalidJSONError
from labelhub.sync.labels import parsed as m
from labelhub.sync.labels.parsed import ImportTask, LabelsFileError, ParsedLabels, ProjectLabels, Region, RowError, UrlResolver
from labelhub.sync.regions import FractionEdges

log = logging.getLogger(__name__)

#: The box columns, in the order of :class:`labelhub.sync.regions.FractionEdges`.
BOX_COLUMNS = ("left_col", "top_row", "right_col", "bottom_row")
#: Every column the import reads.
COLUMNS = ("url", "pos_concepts", "neg_concepts", "metadata", *BOX_COLUMNS)
#: The columns that hold labels: a CSV with columns the import does not read and none of these is refused.
LABEL_COLUMNS = ("pos_concepts", "neg_concepts", *BOX_COLUMNS)
#: The delimiters a labels CSV may use (the header line tells which, :func:`_delimiter`).
DELIMITERS = (",", ";", "\t")


def read_labels_csv(source: str | PathLike | IO, labels: ProjectLabels, urls: UrlResolver) -> ParsedLabels:
    """Read and check a labels CSV.

    Args:
        source: the CSV file (a path or an open file; UTF-8, a BOM is allowed).
        labels: the project's labels (:meth:`ProjectLabels.from_config`); every concept must be one.
        urls: resolves each ``url`` (:class:`labelhub.sync.labels.parsed.UrlResolver`).

    Returns:
        :class:`ParsedLabels`: the tasks made of the good rows, grouped by url in file order, and a
        :class:`RowError` for each failed check of each bad row, in line order.

    Raises:
        LabelsFileError: the file cannot be parsed as CSV (an unclosed quote, ...), it is JSON (``--format coco``
            is said), it has no ``url`` column, one
            of the columns it reads appears twice (after stripping spaces, in any case), or it has columns the import
            does not read and no label column. The message is one line.

    Example:
        >>> parsed = read_labels_csv("labels.csv", ProjectLabels.from_config(config), UrlResolver())
        >>> [str(e) for e in parsed.errors]
        ['line 3: missing url']
    """
    text = _text(source)
    delimiter = _delimiter(text)
    header, records, refused = _records(text, delimiter)
    names = [name.strip().lower() for name in header]  # "URL", " Pos_Concepts ": the columns in any case
    if "url" not in names and text.lstrip()[:1] in ("{", "["):  # "--format csv" on a COCO file, or a .csv of JSON
        raise LabelsFileError("the labels file is JSON, not a CSV (it begins with "
                              f"{text.lstrip()[:1]!r}): for a COCO file give --format coco")
    if "url" not in names:
        listed = ", ".join(repr(c.strip())[1:-1] for c in header)[:300] or "none"
        raise LabelsFileError(f"the labels CSV has no 'url' column (columns: {listed}; the import reads "
                              f"{', '.join(COLUMNS)}, separated by ',', ';' or tabs)")
    twice = sorted({c for c in names if c in COLUMNS and names.count(c) > 1})
    if twice:
        raise LabelsFileError(f"the labels CSV has the column {', '.join(map(repr, twice))} more than once")
    ignored = [c.strip() for c, name in zip(header, names) if name not in COLUMNS]
    if ignored and not any(c in names for c in LABEL_COLUMNS):  # "url,labels": every task would come unlabelled
        raise LabelsFileError(f"the labels CSV has no label column the import reads, and columns it does not: "
                              f"{', '.join(repr(c)[1:-1] for c in ignored)[:300]} (the columns are "
                              f"{', '.join(COLUMNS)}; a CSV of the url column alone makes tasks without labels)")
    if ignored:
        log.warning("ignoring the CSV columns %s (the import reads %s)",
                    ", ".join(repr(c)[1:-1] for c in ignored)[:300], ", ".join(COLUMNS))
    where = {c: names.index(c) for c in COLUMNS if c in names}
    df = pd.DataFrame([[fields[where[c]].strip() if c in where else "" for c in COLUMNS] for _, fields in records],
                      columns=list(COLUMNS), dtype=str)
    line = np.array([n for n, _ in records], dtype=int)
    parsed = _check(df, line, labels, urls)
    if refused:
        parsed.rows += len(refused)
        parsed.rejected_rows += len(refused)
        parsed.errors = sorted(parsed.errors + [RowError(f"line {n}", reason, detail, n)
                                                for n, (reason, detail) in refused.items()], key=lambda e: e.order)
    return parsed


def _text(source: str | PathLike | IO) -> str:
    """The file's text: UTF-8, a BOM dropped, bytes that are not UTF-8 read as U+FFFD (rows flag them)."""
    if hasattr(source, "read"):
        data = source.read()
    else:
        with open(source, "rb") as fh:
            data = fh.read()
    if isinstance(data, bytes):
        return data.decode("utf-8-sig", errors="replace")
    return data[1:] if data.startswith("\ufeff") else data


def _delimiter(text: str) -> str:
    """The file's delimiter: the first of :data:`DELIMITERS` whose split of the header line names a ``url`` column
    (``,`` when none does). A spreadsheet in a locale with a decimal comma saves ``;``-separated CSVs; sniffing the
    rows (:class:`csv.Sniffer`) could be led astray by commas in metadata JSON, the header is not."""
    first = next((line for line in io.StringIO(text, newline="") if line.strip()), "")
    for delimiter in DELIMITERS:
        try:
            fields = next(csv.reader(io.StringIO(first, newline=""), delimiter=delimiter), [])
        except csv.Error:  # a header that is not CSV: _records says so
            fields = []
        if "url" in (f.strip().lower() for f in fields):
            if delimiter != ",":
                log.info("reading the labels CSV as %r-separated, as its header line is", delimiter)
            return delimiter
    return ","


def _records(text: str, delimiter: str = ",") -> tuple[list[str], list[tuple[int, list[str]]],
                                                      dict[int, tuple[str, str]]]:
    """Split CSV text into ``(header, [(line, fields)] of the rows, {line: (reason, detail)} of the rows refused
    whole)``.

    Python's :mod:`csv` reads the Excel dialect pandas and spreadsheets write (pandas' own reader takes the
    field count from the first row, so a long first row would shift every column). ``line`` is a row's first
    physical line (the header is line 1); blank lines are left out, a row with fewer fields than the header is
    filled with empty ones, and one with more is refused, as is one whose quoting is broken.

    Raises:
        LabelsFileError: No header line, or a quote that is never closed (the rest of the file would be one
            value).
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    records: list[tuple[int, list[str]]] = []
    refused: dict[int, tuple[str, str]] = {}
    line = 1
    while True:
        try:
            fields: list[str] | csv.Error = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise LabelsFileError(f"line {line}: a quote is never closed (the rest of the file would be "
                                      "one value)") from None
            fields = exc  # e.g. a character after a closing quote: this row only
        first, line = line, reader.line_num + 1
        if header is None:
            if isinstance(fields, csv.Error):
                raise LabelsFileError(f"the labels CSV's header line is not CSV: {fields}"[:400])
            if fields:
                header = fields
        elif isinstance(fields, csv.Error):
            refused[first] = (m.NOT_CSV, str(fields))
        elif len(fields) > len(header):
            refused[first] = (m.TOO_MANY_FIELDS, f"expected {len(header)} fields, saw {len(fields)}")
        elif any(f.strip() for f in fields):
            records.append((first, fields + [""] * (len(header) - len(fields))))
    if header is None:
        raise LabelsFileError("the labels CSV is empty: it needs a header line naming its columns (url, ...)")
    return header, records, refused


def _split(column: pd.Series) -> list[list[str]]:
    """``"a | b||c"`` → ``["a", "b", "c"]`` (order kept, duplicates and empty names dropped)."""
    return [list(dict.fromkeys(p for p in (s.strip() for s in text.split("|")) if p)) if text else []
            for text in column.tolist()]


def _check(df: pd.DataFrame, line: np.ndarray, labels: ProjectLabels, urls: UrlResolver) -> ParsedLabels:
    n = len(df)
    errors: list[tuple[int, str, str]] = []  # (row index, reason, detail)

    def flag(mask, reason: str, detail=lambda i: "") -> None:
        for i in np.flatnonzero(np.asarray(mask)):
            errors.append((int(i), reason, detail(int(i))))

    # bytes that are not UTF-8 (decoded as U+FFFD, "replacement character")
    replaced = np.column_stack([df[c].str.contains("\ufffd", regex=False).to_numpy(dtype=bool) for c in COLUMNS])
    flag(replaced.any(axis=1), m.NOT_UTF8,
         lambda i: "in " + ", ".join(c for c, bad in zip(COLUMNS, replaced[i]) if bad))

    # url
    url = df["url"].tolist()
    resolved: list = [None] * n
    flag(df["url"] == "", m.MISSING_URL)
    cache: dict[str, object] = {}
    for i, u in enumerate(url):
        if u:
            if u not in cache:
                cache[u] = urls.resolve(u)
            resolved[i] = cache[u]
            if isinstance(resolved[i], str):
                errors.append((i, m.BAD_URL, f"{u!r}: {resolved[i]}"))

    # box: all four columns or none; numbers; 0 <= v <= 1; left < right, top < bottom
    raw = df[list(BOX_COLUMNS)]
    filled = (raw != "").to_numpy()
    some = filled.any(axis=1)
    has_box = filled.all(axis=1)
    flag(some & ~has_box, m.BOX_INCOMPLETE,
         lambda i: "empty: " + ", ".join(c for c, f in zip(BOX_COLUMNS, filled[i]) if not f))
    values = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    not_number = filled & ~np.isfinite(values)
    flag(not_number.any(axis=1), m.BOX_NOT_A_NUMBER,
         lambda i: ", ".join(f"{c}={raw.iat[i, j]!r}" for j, c in enumerate(BOX_COLUMNS) if not_number[i, j]))
    with np.errstate(invalid="ignore"):
        outside = filled & np.isfinite(values) & ((values < 0) | (values > 1))
        left, top, right, bottom = values.T
        complete = has_box & ~not_number.any(axis=1)
        flag(outside.any(axis=1), m.BOX_OUTSIDE,
             lambda i: ", ".join(f"{c}={raw.iat[i, j]}" for j, c in enumerate(BOX_COLUMNS) if outside[i, j]))
        flag(complete & (left >= right), m.LEFT_NOT_BEFORE_RIGHT,
             lambda i: f"left_col={raw.iat[i, 0]}, right_col={raw.iat[i, 2]}")
        flag(complete & (top >= bottom), m.TOP_NOT_BEFORE_BOTTOM,
             lambda i: f"top_row={raw.iat[i, 1]}, bottom_row={raw.iat[i, 3]}")

    # metadata: a JSON object
    metadata: list[dict] = [{}] * n
    for i, text in enumerate(df["metadata"].tolist()):
        if not text:
            continue
        try:
            value = strict_json.loads(text)
        except InvalidJSONError as exc:
            errors.append((i, m.BAD_METADATA, str(exc)))
            continue
        if isinstance(value, dict):
            metadata[i] = value
        else:
            errors.append((i, m.BAD_METADATA, f"a JSON {type(value).__name__}"))

    # labels: positive ones are Choices (whole image) or RectangleLabels (box); negative ones either
    pos, neg = _split(df["pos_concepts"]), _split(df["neg_concepts"])
    for i in range(n):
        if some[i] and not pos[i]:
            errors.append((i, m.BOX_WITHOUT_LABEL, ""))
        check = labels.unknown_rectangle if some[i] else labels.unknown_choice
        for label in pos[i]:
            why = check(label)
            if why:
                errors.append((i, m.UNKNOWN_LABEL, why))
        for label in neg[i]:
            why = labels.unknown_any(label)
            if why:
                errors.append((i, m.UNKNOWN_LABEL, why))
        both = [c for c in pos[i] if c in neg[i]]
        if both:
            errors.append((i, m.POS_AND_NEG, f"{', '.join(map(repr, both))} in pos_concepts and neg_concepts"))

    bad = np.zeros(n, dtype=bool)
    for i, _, _ in errors:
        bad[i] = True
    # a single-choice Choices takes one concept per url: Label Studio's API would store both, its editor shows one
    chosen: dict[tuple, str] = {}
    for i in np.flatnonzero(~bad & ~some):
        for concept in pos[i]:
            tag = labels.choices.get(concept)
            first = chosen.setdefault((resolved[i][0], tag), concept) if tag in labels.single else concept
            if first != concept:
                errors.append((int(i), m.TWO_CHOICES, f"{concept!r} after {first!r} in {tag!r}: keep one, or set "
                                                      f"choice=\"multiple\" on it"))
                bad[i] = True
    # a concept positive on one row of a url and negative on another (whole image or a box's label: negative says the
    # image has none) is the row's contradiction as much as on one row
    said: dict[tuple, int] = {}  # (task URL, concept, positive?) -> the first line saying so
    for i in np.flatnonzero(~bad):
        value = resolved[i][0]
        for concepts, positive in ((pos[i], True), (neg[i], False)):
            for concept in concepts:
                other = said.get((value, concept, not positive))
                if other is not None and not bad[i]:
                    errors.append((int(i), m.POS_AND_NEG, f"{concept!r} "
                                   f"{'positive' if positive else 'negative'} here, "
                                   f"{'negative' if positive else 'positive'} on line {other}"))
                    bad[i] = True
        if not bad[i]:
            for concepts, positive in ((pos[i], True), (neg[i], False)):
                for concept in concepts:
                    said.setdefault((value, concept, positive), int(line[i]))
    # a url with a rejected row is held back whole: imported with its good rows only, it would never get the others
    # (the import is keyed on the url), so fixing the file and running again would not bring them
    key = [r[0] if isinstance(r, tuple) else (u or None) for r, u in zip(resolved, url)]
    rejected: dict[object, list[int]] = {}
    for i in np.flatnonzero(bad):
        if key[i] is not None:
            rejected.setdefault(key[i], []).append(int(line[i]))
    for i in np.flatnonzero(~bad):
        if key[i] in rejected:
            lines = rejected[key[i]]
            errors.append((int(i), m.HELD_BACK, f"rejected: line{'s' if len(lines) > 1 else ''} "
                                                f"{', '.join(map(str, lines[:5]))}{', ...' if len(lines) > 5 else ''}"))
            bad[i] = True
    errors.sort(key=lambda e: e[0])  # stable: per row, the checks' order above
    parsed = ParsedLabels(rows=n, rejected_rows=int(bad.sum()),
                          errors=[RowError(f"line {line[i]}", reason, detail, int(line[i]))
                                  for i, reason, detail in errors])
    tasks: dict[str, ImportTask] = {}
    for i in np.flatnonzero(~bad):
        value, hf = resolved[i]
        task = tasks.get(value)  # by the task's URL: "a.png" and "./a.png" are one file of the repo
        if task is None:
            task = tasks[value] = ImportTask(m.task_url(url[i], hf), value, hf=hf)
        task.lines.append(int(line[i]))
        if has_box[i]:
            task.regions.append(Region(FractionEdges(*values[i].tolist()), tuple(pos[i])))
        else:
            task.concepts.extend(c for c in pos[i] if c not in task.concepts)
        task.neg_concepts.extend(c for c in neg[i] if c not in task.neg_concepts)
        if metadata[i]:
            task.metadata.update(metadata[i])
    parsed.tasks = list(tasks.values())
    return parsed
