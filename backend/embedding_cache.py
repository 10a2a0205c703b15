"""The worker's embedding cache: an in-memory LRU over an on-disk store in ``MODEL_DIR``, shared by every project.

Two tiers, because a project outgrows memory: the LRU (``LABELHUB_EMBEDDING_CACHE_SIZE`` entries, 5,000 by default)
holds what a worker uses now; the store (``MODEL_DIR/embeddings``, at most ``LABELHUB_EMBEDDING_STORE_BYTES``, least
recently used entries evicted first) keeps every embedding this host computed, for every worker and across restarts.
So a whole-project prediction job after a retrain neither downloads nor embeds a task it has embedded before
(:meth:`labelhub.backend.models.project.ProjectModel.load_inputs`); ``bench/repredict_bench.py`` measures it.

An entry is keyed by the embedder's name and the task's value (its URL or text), as the LRU always was: a file
changed in place under the same URL keeps its old embedding until evicted. The sync's URLs (the Hub's ``resolve``
URL and the backend's file route) name the commit, and it moves a task to a changed file's new URL; each Label
Studio upload gets its own URL. A file you replace in place elsewhere (a local-files path, your own server)
should get a new name.
"""
from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from pathlib import Path

import diskcache
import numpy as np
from cachetools import LRUCache

log = logging.getLogger(__name__)

__all__ = ["EmbeddingCache"]

#: What a store read or write may raise that costs only the store: a full disk, a damaged file, a lock timeout.
STORE_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout)


class EmbeddingCache:
    """A thread-safe LRU of embeddings over an optional on-disk store (see the module docstring).

    The LRU is a ``cachetools.LRUCache`` (https://cachetools.readthedocs.io/) under a lock (cachetools' caches are
    not thread-safe). The store is a ``diskcache.Cache`` (https://grantjenks.com/docs/diskcache/: SQLite, safe
    across threads and processes) in ``least-recently-used`` eviction; a vector is kept as its float32 bytes,
    never pickled. A store that cannot be opened or read is logged and left out: the LRU goes on alone.

    Args:
        size: Most entries the LRU keeps (0 disables it).
        directory: The store's folder (``MODEL_DIR/embeddings``); ``None``: no store.
        store_bytes: The store's size limit in bytes (0: no store).
    """

    def __init__(self, size: int, directory: Path | None = None, store_bytes: int = 0):
        self.size = size
        self._items: LRUCache[str, np.ndarray] | None = LRUCache(maxsize=size) if size > 0 else None
        self._lock = threading.Lock()
        self._store = None
        if directory is not None and store_bytes > 0:
            try:
                self._store = diskcache.Cache(str(directory), size_limit=int(store_bytes),
                                              eviction_policy="least-recently-used")
            except (OSError, sqlite3.Error) as exc:
                log.warning("embedding store %s cannot be opened (%s): embeddings are kept in memory only",
                            directory, exc)

    @staticmethod
    def key(embedder: str, value: str) -> str:
        """The cache key of ``value`` under ``embedder`` (a string that is not Unicode text has one too)."""
        return hashlib.sha1(f"{embedder}\0{value}".encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        """The vector cached under ``key``: from the LRU, else from the store (then kept in the LRU too).

        Args:
            key: From :meth:`key`.

        Returns:
            The float32 vector, or ``None`` when neither tier has it.
        """
        if self._items is not None:
            with self._lock:
                vec = self._items.get(key)
            if vec is not None:
                return vec
        if self._store is None:
            return None
        try:
            raw = self._store.get(key)
        except STORE_ERRORS as exc:  # a damaged or locked store: a miss, never a failed prediction
            log.warning("embedding store read failed (%s): a miss", exc)
            return None
        if not isinstance(raw, bytes):
            return None
        vec = np.frombuffer(raw, dtype=np.float32)
        if self._items is not None:
            with self._lock:
                self._items[key] = vec
        return vec

    def put(self, key: str, vec: np.ndarray) -> None:
        """Keep ``vec`` under ``key`` in both tiers (each evicts its least recently used beyond its size).

        Args:
            key: From :meth:`key`.
            vec: The embedding, a 1-d array (the store keeps it as float32).
        """
        if self._items is not None:
            with self._lock:
                self._items[key] = vec
        if self._store is not None:
            try:
                self._store.set(key, np.ascontiguousarray(vec, dtype=np.float32).tobytes())
            except STORE_ERRORS as exc:  # a full disk or a locked store: the LRU still has it
                log.warning("embedding store write failed (%s)", exc)
