"""The worker's in-memory embedding cache, shared by every project's model in a gunicorn worker."""
from __future__ import annotations

import hashlib
import threading

import numpy as np
from cachetools import LRUCache

__all__ = ["EmbeddingCache"]


class EmbeddingCache:
    """A thread-safe LRU of embeddings, keyed by embedder name and the task's value (URL or text).

    A ``cachetools.LRUCache`` (https://cachetools.readthedocs.io/) under a lock (cachetools' caches are
    not thread-safe).

    Args:
        size: Most entries kept (0 disables the cache).
    """

    def __init__(self, size: int):
        self.size = size
        self._items: LRUCache[str, np.ndarray] | None = LRUCache(maxsize=size) if size > 0 else None
        self._lock = threading.Lock()

    @staticmethod
    def key(embedder: str, value: str) -> str:
        """The cache key of ``value`` under ``embedder``."""
        return hashlib.sha1(f"{embedder}\0{value}".encode()).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        """The vector cached under ``key`` (a hit counts as a use).

        Args:
            key: From :meth:`key`.

        Returns:
            The vector, or ``None`` when it is not cached.
        """
        if self._items is None:
            return None
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, vec: np.ndarray) -> None:
        """Keep ``vec`` under ``key``, dropping the least recently used beyond ``size`` (nothing when 0).

        Args:
            key: From :meth:`key`.
            vec: The embedding.
        """
        if self._items is None:
            return
        with self._lock:
            self._items[key] = vec
