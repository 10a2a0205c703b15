"""Repo files → the files that become tasks: glob filters (pure).

Patterns have the semantics of ``huggingface_hub.utils.filter_repo_objects``, the same as
``snapshot_download(allow_patterns=..., ignore_patterns=...)``: ``fnmatch.fnmatchcase`` on the whole
``path_in_repo`` (``*`` also matches ``/``, case-sensitive), ``\\`` taken as ``/``, and a pattern ending with ``/``
matches a folder. They are compiled once per set into one regular expression (``fnmatch.translate`` of each,
joined): ``filter_repo_objects`` calls ``fnmatchcase`` once per file and pattern, about 3 µs a file for an
Image tag's 16 default patterns, which is half of what building a task costs (a test keeps both in step).
"""
from __future__ import annotations

import fnmatch
import glob
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache

from labelhub.repos import RepoFile

#: Never tasks: the repo's own bookkeeping and what LabelHub's exports write: the default series' files, and the
#: files any series ``P`` names after its prefix wherever its CSV is (``P.manifest.json``, ``P.train.jsonl``,
#: ``P.rows.jsonl``, ``P.consensus.jsonl``, ``P.metadata.jsonl``: :mod:`labelhub.sync.versions.series`). A series'
#: CSV (and the default series' files beside a CSV outside ``annotations/``) has a path of its own: the sync adds
#: its own series' paths to the exclusions (:func:`with_export_files`).
ALWAYS_EXCLUDE = (".gitattributes", ".gitignore", "README.md", "annotations/*", "metadata.jsonl", "consensus.jsonl",
                  "*.manifest.json", "*.train.jsonl", "*.rows.jsonl", "*.consensus.jsonl", "*.metadata.jsonl")


@lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]) -> re.Pattern | None:
    """One compiled expression that matches a path when any of ``patterns`` does (``None`` for no pattern)."""
    if not patterns:
        return None
    globs = [p.replace("\\", "/") for p in patterns]
    return re.compile("|".join(fnmatch.translate(g + "*" if g.endswith("/") else g) for g in globs))


def select_files(files: Iterable[RepoFile], include: Sequence[str] | None,
                 exclude: Sequence[str] = ()) -> list[RepoFile]:
    """Keep the files that match an ``include`` glob and no ``exclude`` glob.

    Args:
        files: the repo's files.
        include: globs a file must match (``None``: every file).
        exclude: globs that remove a file, added to :data:`ALWAYS_EXCLUDE`.

    Returns:
        The selected files, sorted by path.
    """
    return sorted(iter_selected(files, include, exclude), key=lambda f: f.path)


def iter_selected(files: Iterable[RepoFile], include: Sequence[str] | None,
                  exclude: Sequence[str] = ()) -> Iterator[RepoFile]:
    """:func:`select_files` as a stream, in the order ``files`` come (a paged listing is filtered as it arrives)."""
    allow = _matcher(tuple(include)) if include else None
    ignore = _matcher((*ALWAYS_EXCLUDE, *exclude))
    for file in files:
        path = file.path.replace("\\", "/")
        if (allow is None or allow.match(path)) and not ignore.match(path):
            yield file


def shown_by(path: str, include: Sequence[str]) -> bool:
    """Whether ``path`` (a ``path_in_repo``) matches one of the globs ``include``, as :func:`select_files` matches
    (``\\`` taken as ``/``); ``True`` for no glob."""
    allow = _matcher(tuple(include))
    return allow is None or bool(allow.match(path.replace("\\", "/")))


def with_export_files(include: Sequence[str] | None, exclude: Sequence[str], paths: Iterable[str]) -> tuple[str, ...]:
    """``exclude`` and, after it, each of ``paths`` (the files an export writes: its CSV, manifest, rows files,
    :attr:`labelhub.sync.versions.series.Series.all_paths`) that ``include`` selects and ``exclude`` does not yet
    exclude, as a glob matching that path alone (``glob.escape``): so ``--include 'test/**' --csv-path
    test/annotations.csv`` makes no task of the export's own files. A path no glob of ``include`` reaches (the
    object tag's default file types never reach a CSV or JSON file) adds nothing, so the selection the import
    cycle remembers is unchanged.

    Args:
        include: the ``--include`` globs (``None`` or empty: the object tag's defaults, which select none of them).
        exclude: the ``--exclude`` globs.
        paths: ``path_in_repo`` of the export's files.

    Returns:
        The exclusion globs.

    Example:
        >>> with_export_files(["test/**"], [], ["test/annotations.csv", "annotations/x.csv"])
        ('test/annotations.csv',)
    """
    if not include:
        return tuple(exclude)
    allow, ignore = _matcher(tuple(include)), _matcher((*ALWAYS_EXCLUDE, *exclude))
    added = [glob.escape(path) for path in paths if allow.match(path) and not ignore.match(path)]
    return (*exclude, *dict.fromkeys(added))
