"""Real labeled sample images for tests, benchmarks and the demo.

The images come from Debian's ``dataset-fashion-mnist`` package (``apt-get install
dataset-fashion-mnist``), which installs the original Fashion-MNIST IDX files under
``/usr/share/datasets/fashion-mnist``. Format: http://yann.lecun.com/exdb/mnist/ (IDX) and
https://github.com/zalandoresearch/fashion-mnist (the 10 class names, in label order).
"""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The class names of Fashion-MNIST, indexed by label (0..9).
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist(split: str = "train", limit: int | None = None,
                  directory: Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST images and labels.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        limit: keep only the first ``limit`` images (``None``: all).
        directory: where the IDX files are.

    Returns:
        ``(images, labels)``: ``images`` is ``uint8`` of shape ``(N, 28, 28)`` (grayscale,
        0 = black), ``labels`` is ``uint8`` of shape ``(N,)`` indexing :data:`FASHION_MNIST_CLASSES`.

    Raises:
        FileNotFoundError: when the Debian package is not installed (the message says how).
        ValueError: for an unknown ``split``.
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    images_path = directory / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.exists():
        raise FileNotFoundError(
            f"{images_path} is missing: install it with `apt-get install dataset-fashion-mnist`")
    images = _read_idx(images_path)
    labels = _read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def png_bytes(image: np.ndarray) -> bytes:
    """Encode one ``uint8`` array of shape ``(H, W)`` or ``(H, W, 3)`` as PNG bytes (Pillow)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
