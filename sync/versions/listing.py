"""The annotation versions of a repo: the tags of one series (``annotations-vN``, or ``P-vN`` of another project's
series, :mod:`labelhub.sync.versions.series`) and their manifests."""
from __future__ import annotations

import json

from labelhub.repos import DatasetRepo
from labelhub.sync.versions.series import DEFAULT_CSV_PATH, series_for, version_tag_prefix


def list_versions(repo: DatasetRepo, csv_path: str = DEFAULT_CSV_PATH, tag_prefix: str | None = None) -> list[dict]:
    """The versions of one series, oldest first, read from each tag's manifest (one Hub call for the tags, one or
    two per version).

    Args:
        repo: The dataset repo.
        csv_path: The series' CSV (``--csv-path``): where its manifest is.
        tag_prefix: The series' tag prefix; ``None``: derived from ``csv_path`` (``annotations`` for the default CSV).

    Returns:
        ``[{tag, version, commit, created_at, annotations, tasks, added, changed, removed}]``; counts a manifest
        lacks are ``"?"`` (a manifest that does not parse or is not an object, a ``counts`` that is not one: all of
        them). Other series' tags are left out.

    Raises:
        labelhub.errors.LabelHubError: the repo cannot be read.
        labelhub.errors.ConfigurationError: the tag prefix is not a valid one.
    """
    series = series_for(csv_path, tag_prefix)
    tags = repo.tags()
    rows = []
    for number, tag in sorted(series.numbered(tags).items()):
        sha = tags[tag]
        try:
            manifest = json.loads(repo.read_file(sha, series.manifest_path))
        except (FileNotFoundError, ValueError, RecursionError):  # RecursionError: nested too deeply (an edited file)
            manifest = {}
        manifest = manifest if isinstance(manifest, dict) else {}
        counts = manifest.get("counts") if isinstance(manifest.get("counts"), dict) else {}
        rows.append({"tag": tag, "version": number, "commit": sha,
                     "created_at": _shown(manifest.get("created_at"), ""),
                     **{k: _shown(counts.get(k), "?")
                        for k in ("annotations", "tasks", "added", "changed", "removed")}})
    return rows


def _shown(value, default: str):
    """``value`` when ``labelhub versions`` can show it (a string or a number), else ``default`` (a manifest's edited
    field: ``null``, a list or an object)."""
    return value if isinstance(value, (str, int, float)) else default


def no_versions_text(repo: DatasetRepo, csv_path: str = DEFAULT_CSV_PATH, tag_prefix: str | None = None) -> str:
    """What ``labelhub versions`` says when the series has no version: which series the repo does hold, if any, and
    how to list them (one Hub call for the tags).

    Raises:
        labelhub.errors.LabelHubError: the repo cannot be read.
        labelhub.errors.ConfigurationError: the tag prefix is not a valid one.
    """
    prefix = series_for(csv_path, tag_prefix).prefix
    others = sorted({p for tag in repo.tags() if (p := version_tag_prefix(tag)) and p != prefix})
    text = f"no versions of the series {prefix!r} (tags {prefix}-vN) yet"
    if others:
        text += (f"; the repo holds versions of {', '.join(repr(o) for o in others)}: list them with that project's "
                 "--csv-path (and --tag-prefix if it set one)")
    return text

