"""The annotation versions of a repo: its ``annotations-vN`` tags and their manifests."""
from __future__ import annotations

import json

from labelhub.sync.versions.card import manifest_path_for
from labelhub.sync.versions.exporter import TAG_PREFIX
from labelhub.repos import DatasetRepo


def list_versions(repo: DatasetRepo, csv_path: str = "annotations/annotations.csv") -> list[dict]:
    """``[{tag, version, commit, created_at, annotations, tasks, added, changed, removed}]``, oldest
    first, read from each tag's ``manifest.json`` (one Hub call for the tags, one or two per version).

    Raises:
        labelhub.errors.LabelHubError: the repo cannot be read.
    """
    manifest_path = manifest_path_for(csv_path)
    rows = []
    tags = {t: sha for t, sha in repo.tags().items() if t.startswith(TAG_PREFIX) and t[len(TAG_PREFIX):].isdigit()}
    for tag, sha in sorted(tags.items(), key=lambda item: int(item[0][len(TAG_PREFIX):])):
        try:
            manifest = json.loads(repo.read_file(sha, manifest_path))
        except (FileNotFoundError, ValueError):
            manifest = {}
        counts = manifest.get("counts", {})
        rows.append({"tag": tag, "version": int(tag[len(TAG_PREFIX):]), "commit": sha,
                     "created_at": manifest.get("created_at", ""),
                     **{k: counts.get(k, "?") for k in ("annotations", "tasks", "added", "changed", "removed")}})
    return rows
