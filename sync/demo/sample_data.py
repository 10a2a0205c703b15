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
from typing import Any, Sequence

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The class names of Fashion-MNIST, indexed by label (0..9).
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def _read_idx(path: Path, limit: int | None = None) -> np.ndarray:
    """The ``uint8`` array of a gzipped IDX file (http://yann.lecun.com/exdb/mnist/: a magic number whose 4th byte
    is the number of dimensions, each dimension as a big-endian 32-bit integer, then the values), only its first
    ``limit`` items decompressed when ``limit`` is given: the first 20 of 60,000 training images cost a few
    milliseconds, not the 0.3 s of decompressing the whole file (29 s of the test suite's CPU, py-spy, 2026-12-07)."""
    with gzip.open(path, "rb") as fh:
        header = fh.read(4)
        shape = [int.from_bytes(fh.read(4), "big") for _ in range(header[3])]
        if limit is not None:
            shape[0] = min(shape[0], max(limit, 0))
        raw = fh.read(int(np.prod(shape)))
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


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
    return _read_idx(images_path, limit), _read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", limit)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode one ``uint8`` array of shape ``(H, W)`` or ``(H, W, 3)`` as PNG bytes (Pillow)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _overlap(a: tuple, b: tuple) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def fashion_mnist_canvases(split: str, n: int, seed: int = 0, size: int = 256,
                           classes: Sequence[int] | None = None, pool: int = 5000) -> list[tuple[Any, list[tuple]]]:
    """Detection data with exact boxes: real Fashion-MNIST items placed on noisy canvases.

    Each canvas is ``size`` x ``size`` RGB: a smooth random background with noise, and 1 to 4 items of
    ``split`` scaled 1 to 2.5 times (28 to 70 pixels), at random positions overlapping at most 0.1 IoU.
    A box is the bounding box of the item's non-zero pixels, so it is exact by construction.

    Args:
        split: ``"train"`` or ``"test"`` (items come from that split only).
        n: Canvases to make.
        seed: The random seed (same seed, same canvases).
        size: Side in pixels.
        classes: Keep only items of these class indices (``None``: all ten).
        pool: Items drawn from the first ``pool`` of the split.

    Returns:
        ``[(PIL.Image.Image, [(x0, y0, x1, y1, class name), ...]), ...]`` with pixel coordinates,
        ``x1``/``y1`` exclusive.

    Raises:
        FileNotFoundError: When Debian's ``dataset-fashion-mnist`` is not installed.
    """
    from PIL import Image

    images, labels = fashion_mnist(split, pool)
    if classes is not None:
        keep = np.isin(labels, list(classes))
        images, labels = images[keep], labels[keep]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        low = rng.uniform(0, 90, (6, 6, 3)).astype(np.uint8)
        canvas = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC), np.float32)
        canvas = np.clip(canvas + rng.normal(0, 6, canvas.shape), 0, 255)
        boxes, placed = [], []
        for _k in range(int(rng.integers(1, 5))):
            i = int(rng.integers(len(images)))
            side = int(round(28 * rng.uniform(1.0, 2.5)))
            item = np.asarray(Image.fromarray(images[i]).resize((side, side), Image.BILINEAR))
            for _t in range(50):
                px, py = int(rng.integers(0, size - side)), int(rng.integers(0, size - side))
                square = (px, py, px + side, py + side)
                if all(_overlap(square, p) <= 0.1 for p in placed):
                    break
            else:
                continue
            placed.append(square)
            mask = item > 0
            canvas[py:py + side, px:px + side][mask] = item[mask][:, None]
            ys, xs = np.nonzero(mask)
            boxes.append((px + int(xs.min()), py + int(ys.min()), px + int(xs.max()) + 1, py + int(ys.max()) + 1,
                          FASHION_MNIST_CLASSES[labels[i]]))
        out.append((Image.fromarray(canvas.astype(np.uint8)), boxes))
    return out
