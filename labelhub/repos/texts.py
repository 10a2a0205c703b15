"""The texts of repo files at commits, each read once (:class:`FileTexts`): what a ``<Text valueType="url">``
project's version holds in its training rows in place of the URL, and what a ``<Text>`` project's rows annotated
on an older revision of their file than their task shows hold in place of the task's newer text (a span's offsets
index the text its annotation was made on; :mod:`labelhub.sync.versions.training`).

A file is read through the repo (:meth:`labelhub.repos.DatasetRepo.read_file`: huggingface_hub's
``hf_hub_download`` for a Hub repo, whose disk cache keeps the file across restarts and answers a commit sha with no
call; dulwich for a local repository) and decoded as Label Studio's page decodes the URL's answer (its ``RichText``
model, behind ``Text`` and ``HyperText``, does ``fetch(url)`` then ``response.text()``:
web/libs/editor/src/tags/object/RichText/model.js; the Fetch standard's ``text()`` is the WHATWG Encoding standard's
"UTF-8 decode", https://encoding.spec.whatwg.org/#utf-8-decode): a UTF-8 byte order mark dropped, each
undecodable byte sequence replaced with U+FFFD (:func:`decode_text`). A text in the task data (``<Text>`` without
``valueType="url"``) was decoded by the import (:mod:`labelhub.sync.files.importer`) with :func:`decode_task_text`,
which keeps a byte order mark as the character U+FEFF: Label Studio shows the task's string as it is, and the
annotator's offsets count that character; its rows annotated on an older revision are read with the same function
(:meth:`FileTexts.texts` with ``as_url=False``). Decided: the text a row pairs with a span is exactly the text Label
Studio showed when the annotation was made, so each mode has one decoding, used by the side that makes the task's
text and by the export alike. So a span's character offsets (``start``, ``end``) index the text as the annotator saw
it. The texts are kept in a ``cachetools.LRUCache`` bounded by their total length (:data:`CACHE_CHARACTERS`), keyed
by ``(commit sha, path, as_url)``: a file at a commit never changes, so a text once read is the text.

Decisions (a file is named in one warning each time it is read, which the cache makes once per process):

- **not valid UTF-8**: decoded with replacement characters (as above), and said;
- **not in the repo at that commit** (moved or removed before the commit the annotation was saved on, or a commit
  the repo lost to a force push): its text is ``None``, and said; the row is kept (its labels are still the
  annotation's), the CSV is unchanged.

Any other error (the Hub unreachable, a 5xx, a token that cannot read the repo) is raised: the export fails and is
retried at the next tick, with no text made up.
"""
from __future__ import annotations

import codecs
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import cachetools

from labelhub.repos.base import DatasetRepo

__all__ = ["FileTexts", "CACHE_CHARACTERS", "HUB_WORKERS", "decode_text", "decode_task_text"]

log = logging.getLogger(__name__)

#: The characters of text the cache keeps at most (a text longer than that is read each time it is asked for).
CACHE_CHARACTERS = 64 * 1024 * 1024
#: Files of a Hub repo read at once (``hf_hub_download`` in threads; huggingface_hub's ``snapshot_download`` uses 8):
#: each read not in huggingface_hub's cache is a ``HEAD`` and a ``GET``, whose round trips overlap.
HUB_WORKERS = 8


def decode_text(data: bytes) -> tuple[str, bool]:
    """``data`` decoded as a browser's ``Response.text()`` decodes it (see the module docstring): the text Label
    Studio shows for a ``<Text valueType="url">`` task (a UTF-8 byte order mark dropped).

    Args:
        data: The file's bytes.

    Returns:
        ``(text, clean)``: ``clean`` is ``False`` when some bytes were not UTF-8 (each such sequence is U+FFFD in
        ``text``).

    Example:
        >>> decode_text(b"\\xef\\xbb\\xbfcaf\\xc3\\xa9 \\xff")
        ('café \\ufffd', False)
    """
    return _decoded(data, "utf-8-sig")


def decode_task_text(data: bytes) -> tuple[str, bool]:
    """``data`` decoded as the import puts a file's text in a task's data (``<Text>`` or ``<HyperText>`` without
    ``valueType="url"``): UTF-8, a byte order mark kept as the character U+FEFF (Label Studio shows the task's
    string as it is, and a span's offsets count that character), each undecodable byte sequence replaced with
    U+FFFD. The import (:mod:`labelhub.sync.files.importer`) and the export's reading of an older revision
    (:meth:`FileTexts.texts` with ``as_url=False``) both use this function, so the offsets index the same text.
    Arguments and result as :func:`decode_text`'s.

    Example:
        >>> decode_task_text(b"\\xef\\xbb\\xbfcaf\\xc3\\xa9 \\xff")
        ('\\ufeffcafé \\ufffd', False)
    """
    return _decoded(data, "utf-8")


def _decoded(data: bytes, codec: str) -> tuple[str, bool]:
    """``(data decoded with codec, each bad sequence as U+FFFD; whether none was bad)``."""
    try:
        return codecs.decode(data, codec), True
    except UnicodeDecodeError:
        return codecs.decode(data, codec, errors="replace"), False


#: The decoding of each mode (``as_url``): the browser's for a URL, the import's for a text in the task data.
_DECODE = {True: decode_text, False: decode_task_text}


class FileTexts:
    """The texts of ``repo``'s files, by ``(commit sha, path)``, read once each (see the module docstring).

    Args:
        repo: The dataset repo (Hub or local git).
        max_characters: The cache's bound, in characters of text (:data:`CACHE_CHARACTERS`).
        workers: Files read at once (:data:`HUB_WORKERS` for a Hub repo, 1 for a local repository: dulwich reads a
            file in well under a millisecond, threads would only contend).

    Attributes:
        text: ``text(sha, path, as_url=True) -> str | None``: one file's text, through the cache
            (``cachetools.cached``), decoded for ``as_url`` (:meth:`texts`).
        reads: How many files were read from the repo (cache misses) since this object was made.
    """

    def __init__(self, repo: DatasetRepo, max_characters: int = CACHE_CHARACTERS, workers: int | None = None):
        self.repo = repo
        self.workers = workers or (1 if repo.local else HUB_WORKERS)
        self.cache: cachetools.LRUCache = cachetools.LRUCache(maxsize=max_characters,
                                                              getsizeof=lambda text: len(text or "") + 1)
        self.text = cachetools.cached(self.cache, key=lambda sha, path, as_url=True: (sha, path, as_url),
                                      lock=threading.Lock(), info=True)(self._read)

    @property
    def reads(self) -> int:
        """Files read from the repo so far (``cachetools``' count of misses)."""
        return self.text.cache_info().misses

    def _read(self, sha: str, path: str, as_url: bool = True) -> str | None:
        """The text of ``path`` at ``sha`` decoded for ``as_url`` (:meth:`texts`), ``None`` when the repo has no
        such file there (said in a warning)."""
        try:
            data = self.repo.read_file(sha, path)
        except FileNotFoundError:  # labelhub.errors.EntryNotFound, from either repo
            log.warning("%s is not in %s at %s (moved or removed before the annotation was saved?): its training "
                        "rows hold no text (None); the CSV keeps the task's URL", path, self.repo.repo_id, sha[:12])
            return None
        text, clean = _DECODE[as_url](data)
        if not clean:
            log.warning("%s of %s at %s is not valid UTF-8: its training rows hold the text with each undecodable "
                        "byte sequence replaced by U+FFFD, as Label Studio showed it", path, self.repo.repo_id,
                        sha[:12])
        return text

    def texts(self, wanted: Iterable[tuple[str, str]], as_url: bool = True) -> dict[tuple[str, str], str | None]:
        """The texts of the files ``wanted``, those not in the cache read ``workers`` at a time.

        Args:
            wanted: ``(commit sha, path)`` pairs (duplicates are read once).
            as_url: How Label Studio showed the text: ``True`` for a ``valueType="url"`` task (the browser's
                decoding, :func:`decode_text`), ``False`` for a text in the task data (the import's,
                :func:`decode_task_text`: a byte order mark kept).

        Returns:
            ``{(commit sha, path): text, or None for a file the repo lacks at that commit}``.

        Raises:
            labelhub.errors.HubError: The Hub could not be read (as :meth:`labelhub.repos.DatasetRepo.read_file`).
        """
        keys = list(dict.fromkeys(wanted))
        with self.text.cache_lock:
            missing = [key for key in keys if (*key, as_url) not in self.cache]
        if len(missing) > 1 and self.workers > 1:
            with ThreadPoolExecutor(min(self.workers, len(missing)), thread_name_prefix="labelhub-texts") as pool:
                read = dict(zip(missing, pool.map(lambda key: self.text(*key, as_url), missing)))
        else:
            read = {key: self.text(*key, as_url) for key in missing}
        return {key: read[key] if key in read else self.text(*key, as_url) for key in keys}

