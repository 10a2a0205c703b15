"""The annotation versions of a repo: the tags of one series (``annotations-vN``, or ``P-vN`` of another project's
series, :mod:`labelhub.sync.versions.series`) and their manifests."""
from __future__ import annotations

import json

from labelhub.repos import DatasetRepo
from labelhub.sync.versions.series import DEFAULT_CSV_PATH, series_for


def list_versions(repo: DatasetRepo, csv_path: str = DEFAULT_CSV_PATH, tag_prefix: str | None = None) -> list[dict]:
    """The versions of one series, oldest first, read from each tag's manifest (one Hub call for the tags, one or
    two per version).

    Args:
        repo: The dataset repo.
        csv_path: The series' CSV (``--csv-path``): where its manifest is.
        tag_prefix: The series' tag prefix; ``None``: derived from ``csv_path`` (``annotations`` for the default CSV).

    Returns:
        ``[{tag, version, commit, created_at, annotations, tasks, added, changed, removed}]``; counts a manifest
        lacks are ``"?"``. Other series' tags are left out.

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
        except (FileNotFoundError, ValueError):
            manifest = {}
        counts = manifest.get("counts", {})
        rows.append({"tag": tag, "version": number, "commit": sha,
                     "created_at": manifest.get("created_at", ""),
                     **{k: counts.get(k, "?") for k in ("annotations", "tasks", "added", "changed", "removed")}})
    return rows
