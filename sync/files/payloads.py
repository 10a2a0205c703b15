"""Repo files → Label Studio task payloads (pure).

A task's ``data`` (https://labelstud.io/guide/task_format) holds:

- the object tag's value key (``image``, ``text``, ...): the file URL pinned to the commit sha, or
  the file's text for a Text tag without ``valueType="url"``;
- ``hf_repo`` (the repo_id, or a local repo's path), ``hf_path`` (``path_in_repo``) and
  ``hf_revision`` (the commit sha the task was made from): the task's identity, used to never
  import a file twice;
- the metadata columns of the optional join (:mod:`labelhub.sync.files.metadata`).
"""
from __future__ import annotations

from labelhub.label_config import DataField


def build_file_task(field: DataField, value: str, repo_id: str, path: str, sha: str,
               metadata: dict | None = None) -> dict:
    """One import payload ``{"data": {...}}`` for the file ``path`` of ``repo_id`` at ``sha``.

    Args:
        field: the object tag the file fills.
        value: the file's URL, or its text (see :attr:`DataField.as_url`).
        repo_id: ``owner/name`` or a local repo's path.
        path: the file's ``path_in_repo``.
        sha: the commit sha (40 hex digits).
        metadata: extra columns; they never overwrite the keys above.
    """
    data = dict(metadata or {})
    data.update({field.value_key: value, "hf_repo": repo_id, "hf_path": path, "hf_revision": sha})
    return {"data": data}
