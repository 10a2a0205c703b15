"""The default model: a pretrained embedder and a scikit-learn linear head refit on the annotations.

It handles a ``<Choices>`` tag over an ``<Image>`` or ``<Text>`` tag (https://labelstud.io/tags/choices),
single choice (``LogisticRegression`` over the classes seen) or ``choice="multiple"`` (one binary
``LogisticRegression`` per choice). Until the annotations show two different choices it answers an
empty result for each task, never an error. Each prediction carries a ``score`` (the probability of the
chosen class; for multiple choice the mean confidence over the choices), so annotators can sort tasks
by uncertainty in Label Studio's Data Manager.

Results use Label Studio's format for Choices (https://labelstud.io/guide/export#Label-Studio-JSON-format-of-annotated-tasks)::

    {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["Sneaker"]}}
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from cachetools import LRUCache

from labelhub.backend.errors import MediaError
from labelhub.label_config import choices_spec
from labelhub.backend.model import LabelStudioMLBase
from labelhub.backend.state import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = ["ChoicesModel", "EmbeddingCache"]


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


def _parse_time(value: Any) -> str:
    return value if isinstance(value, str) else ""


class ChoicesModel(LabelStudioMLBase):
    """Embeddings + logistic regression for Choices over Image or Text (see the module docstring).

    Raises:
        labelhub.errors.LabelConfigError: From :meth:`setup` when the label config has no
            Choices tag over an Image or Text tag.
    """

    INITIAL_MODEL_VERSION = "choices-v0"
    #: Inverse regularization strength of the logistic regression (on standardized embeddings).
    C = 0.05
    #: Fitted heads kept on disk (older ones are deleted after a fit).
    KEEP_HEADS = 5

    def setup(self) -> None:
        """Read the Choices tag, its object tag and the data key from the label config (fast: no model)."""
        self.spec = choices_spec(self.label_config)
        self._head: dict | None = None

    # embedder -------------------------------------------------------------------------------------
    @property
    def _settings(self):
        from labelhub.backend.settings import Settings

        return self.backend.settings if self.backend is not None else Settings()

    def embedder(self):
        """The worker's embedder for this project's object type (loaded on first use)."""
        from labelhub.backend.embedders import get_embedder

        s = self._settings
        spec = s.image_embedder if self.spec.object_type == "image" else s.text_embedder
        return get_embedder(self.spec.object_type, spec, image_size=s.image_size, threads=s.torch_threads)

    def warmup(self) -> None:
        """Load the embedder now (called in the background after ``/setup``)."""
        self.embedder()

    def _value(self, task: Any) -> str:
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise MediaError("the task has no 'data' object")
        value = data.get(self.spec.value_key)
        if value is None or value == "":
            raise MediaError(f"the task's data has no {self.spec.value_key!r} (the label config's "
                             f"${self.spec.value_key})")
        if self.spec.object_type == "image" and not isinstance(value, str):
            raise MediaError(f"data.{self.spec.value_key} is not a URL")
        return value if isinstance(value, str) else json.dumps(value)

    def _load_input(self, value: str):
        from labelhub.backend.embedders import decode_image

        if self.backend is None:
            raise MediaError("no media fetcher (the model runs outside the backend)")
        if self.spec.object_type == "image":
            return decode_image(self.backend.fetcher.fetch(value))
        if self.spec.text_is_url:
            return self.backend.fetcher.fetch_text(value)
        return value

    def embed_values(self, values: list[str]) -> list[np.ndarray | MediaError]:
        """Embed task values (image URLs or texts), using the worker's cache.

        Args:
            values: The values of the label config's ``$key`` in each task's data.

        Returns:
            One vector, or the :class:`~labelhub.backend.errors.MediaError` that kept it from being made, per value.
        """
        embedder = self.embedder()
        cache = self.backend.embeddings if self.backend is not None else EmbeddingCache(0)
        out: list[Any] = [None] * len(values)
        missing = []
        for i, value in enumerate(values):
            vec = cache.get(EmbeddingCache.key(embedder.name, value))
            if vec is not None:
                out[i] = vec
            else:
                missing.append(i)
        if missing:
            needs_fetch = self.spec.object_type == "image" or self.spec.text_is_url
            if needs_fetch and len(missing) > 1:
                with ThreadPoolExecutor(max_workers=min(8, len(missing))) as pool:
                    loaded = list(pool.map(self._safe_load, [values[i] for i in missing]))
            else:
                loaded = [self._safe_load(values[i]) for i in missing]
            ok = [(i, item) for i, item in zip(missing, loaded) if not isinstance(item, MediaError)]
            for i, item in zip(missing, loaded):
                if isinstance(item, MediaError):
                    out[i] = item
            if ok:
                vectors = embedder.embed([item for _, item in ok])
                for (i, _), vec in zip(ok, vectors):
                    out[i] = vec
                    cache.put(EmbeddingCache.key(embedder.name, values[i]), vec)
        return out

    def _safe_load(self, value: str):
        try:
            return self._load_input(value)
        except MediaError as exc:
            return exc

    # prediction -----------------------------------------------------------------------------------
    @property
    def model_version(self) -> str:
        """The version of the fitted head (``choices-v0`` before the first fit)."""
        return str(self.get("model_version") or self.INITIAL_MODEL_VERSION)

    def on_state_change(self) -> None:
        """Load the head named in the state, if it changed."""
        import joblib

        kv = self.state.kv() if self.state is not None else self._memory
        head_file = kv.get("head_file")
        if not head_file:
            self._head = None
        elif self._head is None or self._head.get("file") != head_file:
            with open(self.state.files / head_file, "rb") as fh:
                self._head = joblib.load(fh)
            self._head["file"] = head_file

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        """Predict a choice for each task (see :meth:`LabelStudioMLBase.predict`).

        A task whose media cannot be fetched or decoded gets ``{"result": [], "score": 0.0, "error": ...}``
        while the others are predicted. ``context`` (interactive pre-annotation) is accepted and the
        whole-image/text prediction is returned, since Choices have no regions to refine.
        """
        if self.state is not None:
            self.refresh()
        head = self._head
        version = head["version"] if head is not None else self.model_version
        empty = {"result": [], "score": 0.0, "model_version": version}
        if head is None:
            return [dict(empty) for _ in tasks]
        values: list[Any] = []
        for task in tasks:
            try:
                values.append(self._value(task))
            except MediaError as exc:
                values.append(exc)
        wanted = [i for i, v in enumerate(values) if not isinstance(v, MediaError)]
        vectors = self.embed_values([values[i] for i in wanted]) if wanted else []
        for i, vec in zip(wanted, vectors):
            values[i] = vec
        ok = [i for i, v in enumerate(values) if not isinstance(v, MediaError)]
        predictions: list[dict] = [{**empty, "error": str(v)} if isinstance(v, MediaError) else None
                                   for v in values]
        if ok:
            X = np.stack([values[i] for i in ok])
            for i, pred in zip(ok, self._predict_matrix(head, X)):
                predictions[i] = {**pred, "model_version": version}
        return predictions

    def _result(self, labels: list[str], score: float) -> list[dict]:
        return [{"from_name": self.spec.from_name, "to_name": self.spec.to_name, "type": "choices",
                 "value": {"choices": labels}, "score": score}]

    def _predict_matrix(self, head: dict, X: np.ndarray) -> list[dict]:
        out = []
        if head["kind"] == "single":
            proba = head["model"].predict_proba(X)
            classes = head["classes"]
            for row in proba:
                j = int(np.argmax(row))
                score = float(row[j])
                out.append({"result": self._result([classes[j]], score), "score": score})
            return out
        labels = head["classes"]
        cols = []
        for label in labels:
            m = head["models"][label]
            cols.append(m.predict_proba(X)[:, 1] if not isinstance(m, float) else np.full(len(X), m))
        P = np.stack(cols, axis=1)
        for row in P:
            chosen = [label for label, p in zip(labels, row) if p >= 0.5]
            score = float(np.mean(np.maximum(row, 1 - row)))
            out.append({"result": self._result(chosen, score) if chosen else [], "score": score})
        return out

    # training -------------------------------------------------------------------------------------
    def training_samples(self, annotations: dict) -> list[tuple[str, str, tuple[str, ...]]]:
        """The latest annotation's choices of each annotated task.

        Args:
            annotations: The training data (:meth:`labelhub.backend.state.ProjectState.load_annotations`).

        Returns:
            ``[(task_id, value, choices), ...]`` sorted by task id, choices limited to the config's.
        """
        latest: dict[str, dict] = {}
        for ann_id, ann in annotations.get("annotations", {}).items():
            tid = str(ann.get("task"))
            key = (_parse_time(ann.get("updated_at")), int(ann_id) if str(ann_id).isdigit() else 0)
            if tid not in latest or key > latest[tid]["_key"]:
                latest[tid] = {**ann, "_key": key}
        known = set(self.spec.labels)
        samples = []
        for tid, ann in sorted(latest.items()):
            task = annotations.get("tasks", {}).get(tid)
            if not task:
                continue
            labels: list[str] = []
            for item in ann.get("result") or []:
                if isinstance(item, dict) and item.get("from_name") == self.spec.from_name:
                    labels += [c for c in (item.get("value") or {}).get("choices") or [] if c in known]
            try:
                value = self._value(task)
            except MediaError:
                continue
            if labels:
                samples.append((tid, value, tuple(sorted(set(labels)))))
        return samples

    def fit_batch(self, events: list[tuple[str, dict]], annotations: dict | None = None, **kwargs: Any):
        """Refit the head on all annotations, once for a batch of events.

        Args:
            events: The batch (only used for logging: the data comes from ``annotations``).
            annotations: The project's training data after applying the batch.

        Returns:
            The new model version, or ``None`` when nothing changed (duplicate events) or fewer than two
            different choices were annotated.
        """
        if annotations is None:
            annotations = self.state.load_annotations() if self.state is not None else {}
        samples = self.training_samples(annotations)
        embedder = self.embedder()
        digest = hashlib.sha256(json.dumps([embedder.name, self.C, self.spec.multiple, samples]).encode()).hexdigest()
        if self.get("train_digest") == digest:
            return None
        seen = {label for _, _, labels in samples for label in labels}
        if len(seen) < 2:
            log.info("project %s: %d annotated tasks, %d choice(s) seen: not fitting yet",
                     self.project_id, len(samples), len(seen))
            self.set("train_digest", digest)
            return None
        started = time.monotonic()
        vectors = self._embed_for_training([value for _, value, _ in samples])
        rows = [(vec, labels) for vec, (_, _, labels) in zip(vectors, samples) if not isinstance(vec, MediaError)]
        failed = len(samples) - len(rows)
        X = np.stack([vec for vec, _ in rows]) if rows else np.zeros((0, 1))
        head = self._fit_head(X, [labels for _, labels in rows])
        if head is None:
            self.set("train_digest", digest)
            return None
        n = int(self.get("version_number") or 0) + 1
        version = f"choices-v{n}-{digest[:6]}"
        head["version"] = version
        head_file = f"head-{n}.joblib"
        self._save_head(head, head_file)
        if self.state is None:
            self._head = {**head, "file": head_file}
        versions = (list(self.get("versions") or []) + [version])[-50:]
        self._update_state(model_version=version, version_number=n, head_file=head_file, train_digest=digest,
                           trained_on=len(rows), media_failed=failed, versions=versions,
                           trained_at=time.time(), embedder=embedder.name)
        log.info("project %s: fitted %s on %d tasks (%d without media) in %.2f s", self.project_id, version,
                 len(rows), failed, time.monotonic() - started)
        self._cleanup_heads(n)
        return version

    def _update_state(self, **fields):
        if self.state is not None:
            self.state.update_kv(**fields)
        else:
            self._memory.update(fields)

    def _embed_for_training(self, values: list[str]) -> list[np.ndarray | MediaError]:
        """Like :meth:`embed_values`, with a per-project on-disk cache so a refit embeds only new tasks."""
        embedder = self.embedder()
        disk = self._load_disk_cache(embedder.name)
        keys = [EmbeddingCache.key(embedder.name, v) for v in values]
        out: list[Any] = [disk.get(k) for k in keys]
        todo = [i for i, v in enumerate(out) if v is None]
        if todo:
            fresh = self.embed_values([values[i] for i in todo])
            for i, vec in zip(todo, fresh):
                out[i] = vec
                if not isinstance(vec, MediaError):
                    disk[keys[i]] = vec
            self._save_disk_cache(embedder.name, disk)
        return out

    def _disk_cache_path(self, embedder_name: str):
        return self.state.files / f"embeddings-{hashlib.sha1(embedder_name.encode()).hexdigest()[:12]}.npz"

    def _load_disk_cache(self, embedder_name: str) -> dict:
        if self.state is None:
            return {}
        try:
            with np.load(self._disk_cache_path(embedder_name)) as npz:
                return dict(zip(npz["keys"].tolist(), npz["vectors"]))
        except (FileNotFoundError, ValueError, KeyError, OSError):
            return {}

    def _save_disk_cache(self, embedder_name: str, cache: dict) -> None:
        if self.state is None or not cache:
            return
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(list(cache.keys())), vectors=np.stack(list(cache.values())))
        atomic_write_bytes(self._disk_cache_path(embedder_name), buf.getvalue())

    def _fit_head(self, X: np.ndarray, labels: list[tuple[str, ...]]) -> dict | None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        def lr():
            return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))

        if not self.spec.multiple:
            y = [lab[0] for lab in labels]
            classes = sorted(set(y))
            if len(classes) < 2:
                return None
            model = lr().fit(X, y)
            return {"kind": "single", "classes": [str(c) for c in model.classes_], "model": model}
        models: dict[str, Any] = {}
        for label in self.spec.labels:
            y = np.array([label in lab for lab in labels])
            models[label] = lr().fit(X, y) if 0 < y.sum() < len(y) else float(y.mean()) if len(y) else 0.0
        if sum(not isinstance(m, float) for m in models.values()) == 0 and len({l for lab in labels for l in lab}) < 2:
            return None
        return {"kind": "multiple", "classes": list(self.spec.labels), "models": models}

    def _save_head(self, head: dict, name: str) -> None:
        import joblib

        buf = io.BytesIO()
        joblib.dump(head, buf)
        if self.state is not None:
            atomic_write_bytes(self.state.files / name, buf.getvalue())

    def _cleanup_heads(self, n: int) -> None:
        if self.state is None:
            return
        for path in self.state.files.glob("head-*.joblib"):
            try:
                if int(path.stem.split("-")[1]) <= n - self.KEEP_HEADS:
                    path.unlink()
            except (ValueError, IndexError, FileNotFoundError):
                continue
