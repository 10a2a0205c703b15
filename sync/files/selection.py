"""Repo files → the files that become tasks: glob filters (pure).

Patterns use ``huggingface_hub.utils.filter_repo_objects`` semantics, the same as
``snapshot_download(allow_patterns=..., ignore_patterns=...)``: ``fnmatch`` on the whole
``path_in_repo`` (``*`` also matches ``/``), and a pattern ending with ``/`` matches a folder.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from huggingface_hub.utils import filter_repo_objects

from labelhub.repos import RepoFile

#: Never tasks: the repo's own bookkeeping and what LabelHub's exports write.
ALWAYS_EXCLUDE = (".gitattributes", ".gitignore", "README.md", "annotations/*", "metadata.jsonl", "consensus.jsonl")


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
    return filter_repo_objects(files, allow_patterns=list(include) if include else None,
                               ignore_patterns=[*ALWAYS_EXCLUDE, *exclude], key=lambda f: f.path)
