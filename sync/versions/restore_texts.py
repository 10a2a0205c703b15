"""The texts of a restored ``<Text>`` version's tasks (``labelhub restore``, :mod:`labelhub.sync.versions.restore`).

A version's CSV holds, in its value column (its 4th), what the task's data held **at export**: the file's URL for an
Image, Audio or ``<Text valueType="url">`` task; the file's text for a ``<Text value="$text">`` (or ``HyperText``)
task, as the sync put it in the task data. A span's offsets index the text its annotation was made on, the file at
the row's ``annotated_revision`` (:mod:`labelhub.sync.versions.training`), which is not the CSV's text when the file
changed after the annotation and its task followed it (a byte order mark dropped, a prefix added): a restored task
with the CSV's text would show its spans over the wrong characters, and the next export would write those offsets
again. So :func:`annotated_texts` puts back, in each inline text row, the file's text at its ``annotated_revision``,
decoded as the import decoded it (:func:`labelhub.repos.texts.decode_task_text`: a byte order mark kept, as Label
Studio showed it), and the restore sets the task's ``hf_revision`` to that revision: text and revision agree, and a
later ``labelhub sync`` follows the file from there as it follows any task. A task whose annotations were made on
different revisions of its file (one task shows one text) takes its first row's text and revision, as it takes that
row's other cells; the other annotations' spans index their own texts (the version's training rows keep each).

:func:`check_text_kind` refuses a version whose texts are of the other kind than the project's text tag reads (URLs
into a project of inline texts, or inline texts into a ``valueType="url"`` one): Label Studio would show the URL as
the text (spans over ``htt``), or fetch a text as a URL.

A cell is a URL when it is one token of the form ``scheme://...`` (:func:`is_url`): the sync's file URLs, the
Hub's, and the cloud storages' (``s3://``, ``gs://``). Decided: a text file whose whole content is one such token
reads as a URL (its text is then the CSV's).
"""
from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from labelhub.errors import LabelHubError
from labelhub.label_config import TEXT_TAGS, DataField
from labelhub.repos import DatasetRepo
from labelhub.repos.texts import HUB_WORKERS, decode_task_text

__all__ = ["is_url", "annotated_texts", "check_text_kind"]

log = logging.getLogger(__name__)

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_SHA = re.compile(r"[0-9a-f]{40}")


def is_url(cell: str) -> bool:
    """Whether a value cell is a URL (one ``scheme://...`` token, see the module docstring), not a text."""
    return bool(_URL.fullmatch(cell))


def annotated_texts(repo: DatasetRepo, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``frame`` with each inline text row's value (the 4th column) the text its spans index, and how many rows
    changed.

    Args:
        repo: The version's repo (the files are read at the rows' ``annotated_revision``: one
            :meth:`~labelhub.repos.DatasetRepo.read_file` per distinct ``(annotated_revision, hf_path)``, on a Hub
            repo :data:`labelhub.repos.texts.HUB_WORKERS` at a time, from huggingface_hub's cache after the first
            time).
        frame: The version's rows (every cell a string, :func:`labelhub.sync.versions.restore.read_rows`).

    Returns:
        ``(frame, changed)``: a copy of ``frame`` in which each row whose value is not a URL (:func:`is_url`) and
        that has an ``hf_path`` and a 40-hex ``annotated_revision`` holds the file's text at that revision
        (:func:`labelhub.repos.texts.decode_task_text`); other rows as they were. A file the repo lacks at that
        revision keeps the CSV's text, said in one warning with a count (its spans may not index it).

    Raises:
        labelhub.errors.HubError: The Hub could not be read (nothing is restored; run again).
    """
    columns = list(frame.columns)
    if len(columns) < 4 or not {"hf_path", "annotated_revision"} <= set(columns) or frame.empty:
        return frame, 0
    value = columns[3]
    wanted = (frame["hf_path"] != "") & frame["annotated_revision"].map(lambda s: bool(_SHA.fullmatch(s))) \
        & ~frame[value].map(is_url)
    if not wanted.any():
        return frame, 0
    keys = list(dict.fromkeys(zip(frame.loc[wanted, "annotated_revision"], frame.loc[wanted, "hf_path"])))

    def read(key: tuple[str, str]) -> str | None:
        try:
            return decode_task_text(repo.read_file(*key))[0]
        except FileNotFoundError:  # labelhub.errors.EntryNotFound, from either repo
            return None

    workers = 1 if getattr(repo, "local", False) else HUB_WORKERS
    if workers > 1 and len(keys) > 1:
        with ThreadPoolExecutor(min(workers, len(keys)), thread_name_prefix="labelhub-restore-texts") as pool:
            texts = dict(zip(keys, pool.map(read, keys)))
    else:
        texts = {key: read(key) for key in keys}
    missing = sorted({path for (_, path), text in texts.items() if text is None})
    if missing:
        log.warning("%d file(s) are not in %s at the revision their annotations were made on (%s): their tasks keep "
                    "the version's text (the text at export), which their spans may not index", len(missing),
                    repo.repo_id, ", ".join(missing[:5]) + (f" (+{len(missing) - 5})" if len(missing) > 5 else ""))
    frame = frame.copy()
    found = [texts[(revision, path)] for revision, path in
             zip(frame.loc[wanted, "annotated_revision"], frame.loc[wanted, "hf_path"])]
    old = frame.loc[wanted, value]
    new = pd.Series([text if text is not None else cell for text, cell in zip(found, old)], index=old.index)
    frame.loc[wanted, value] = new
    changed = int((new != old).sum())
    if changed:
        log.debug("%d row(s) of %s: the file changed after the annotation, the restored task holds the text it was "
                  "made on", changed, repo.repo_id)
    return frame, changed


def check_text_kind(frame: pd.DataFrame, field: DataField) -> None:
    """Refuse a version whose tasks' texts are of another kind than the project's text tag reads (see the module
    docstring); nothing for a project whose object is not a ``Text``/``HyperText`` tag.

    Args:
        frame: The version's rows (the 4th column: the value).
        field: The project's object (:func:`labelhub.label_config.data_field`).

    Raises:
        LabelHubError: One line naming the version's kind and the project's: the project reads URLs
            (``valueType="url"``) and a row holds a text; or it reads inline texts and every row holds a URL.
    """
    if field.tag not in TEXT_TAGS or frame.empty or len(frame.columns) < 4:
        return
    values = frame.iloc[:, 3]
    values = values[values != ""]
    if values.empty:
        return
    urls = values.map(is_url)
    key = field.value_key
    inline = f'<{field.tag} name="{field.name}" value="${key}">'
    by_url = f'<{field.tag} name="{field.name}" value="${key}" valueType="url">'
    if field.as_url and not urls.all():
        raise LabelHubError(f"the version's tasks hold their texts inline (a project with {inline}'s) but the "
                            f"project's {by_url} reads a URL: restore into a project whose {field.tag} tag has no "
                            'valueType="url" (nothing was created)')
    if not field.as_url and urls.all():
        raise LabelHubError(f"the version's tasks hold their texts' URLs (a project with {by_url}'s) but the "
                            f"project's {inline} shows the task's value as the text: restore into a project whose "
                            f'{field.tag} tag has valueType="url" (nothing was created)')
