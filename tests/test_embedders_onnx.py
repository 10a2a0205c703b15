"""The default embedders on ONNX Runtime: their vectors, their names, and a worker without torch.

The ONNX files are exported on first use into the machine's cache (``~/.cache/labelhub/onnx``, about 10 s
once), as in production; the test of the export itself uses a cache of its own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelhub.backend.embedders import get_embedder

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = ["A fine film.", "  The plot drags, but the cast is wonderful.  ", "", "Héllo wörld, ça va ?",
             "an utterly forgettable sequel " * 60]  # the last one is cut at 256 tokens


def images(n: int, seed: int = 0) -> list[Image.Image]:
    """``n`` random RGB images of assorted sizes (what decode_image hands the embedder)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (int(rng.integers(20, 60)), int(rng.integers(20, 60)), 3),
                                         dtype=np.uint8)) for _ in range(n)]


def test_onnx_image_embedder_is_float32_deterministic_and_the_same_batched_or_alone():
    embedder = get_embedder("image", "efficientnet-lite0", image_size=128, threads=2)
    assert embedder.name == "efficientnet-lite0-onnx@128"
    batch = images(20)  # more than one ONNX Runtime batch (16)
    first = embedder.embed(batch)
    assert first.shape == (20, 1280) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(embedder.embed(batch), first)
    alone = np.concatenate([embedder.embed([img]) for img in batch[:3]])
    np.testing.assert_allclose(alone, first[:3], atol=1e-4)
    gray = batch[0].convert("L")  # any mode is embedded as RGB
    np.testing.assert_allclose(embedder.embed([gray]), embedder.embed([gray.convert("RGB")]), atol=1e-6)


def test_onnx_text_embedder_agrees_with_sentence_transformers():
    onnx = get_embedder("text", "all-MiniLM-L6-v2-onnx", threads=2)
    torch_st = get_embedder("text", "all-MiniLM-L6-v2-torch", threads=2)
    assert (onnx.name, torch_st.name) == ("all-MiniLM-L6-v2-onnx", "st:all-MiniLM-L6-v2")
    mine, theirs = onnx.embed(SENTENCES), torch_st.embed(SENTENCES)
    assert mine.shape == (len(SENTENCES), 384) and mine.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
    assert (mine * theirs).sum(axis=1).min() > 0.999
    np.testing.assert_allclose(np.concatenate([onnx.embed([s]) for s in SENTENCES]), mine, atol=1e-5)


def test_the_default_text_embedder_is_int8_and_close_to_fp32_on_real_snippets():
    from tests.backend_fixtures import rotten_tomatoes

    texts = [t for t, _ in rotten_tomatoes()[:300]] + SENTENCES
    int8, fp32 = get_embedder("text", "all-MiniLM-L6-v2", threads=2), get_embedder("text", "all-MiniLM-L6-v2-onnx",
                                                                                  threads=2)
    assert int8.name == "all-MiniLM-L6-v2-onnx-int8"
    mine, full = int8.embed(texts), fp32.embed(texts)
    assert mine.shape == (len(texts), 384) and mine.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
    cosine = (mine * full).sum(axis=1)
    assert cosine.mean() > 0.98 and cosine.min() > 0.9, (cosine.mean(), cosine.min())


def test_the_torch_image_embedder_stays_selectable_and_gives_the_same_vectors():
    torch_lite = get_embedder("image", "efficientnet-lite0-torch", image_size=128, threads=2)
    onnx_lite = get_embedder("image", "efficientnet-lite0-onnx", image_size=128, threads=2)
    assert (torch_lite.name, onnx_lite.name) == ("efficientnet-lite0@128", "efficientnet-lite0-onnx@128")
    batch = images(4, seed=1)
    np.testing.assert_allclose(onnx_lite.embed(batch), torch_lite.embed(batch), atol=1e-3)


WORKER = """
import json, sys
from PIL import Image
from labelhub.backend.embedders import get_embedder
image = get_embedder("image", "efficientnet-lite0", image_size=128, threads=1)
text = get_embedder("text", "all-MiniLM-L6-v2", threads=1)
image.embed([Image.new("RGB", (28, 28), (i, i, i)) for i in range(64)])
text.embed(["a short review of a film, number %d" % i for i in range(64)])
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
heavy = [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]
print(json.dumps({"heavy": heavy, "peak_mb": int(status["VmHWM"].split()[0]) / 1024}))
"""


def test_a_worker_using_both_onnx_embedders_never_imports_torch_and_stays_under_400_mb():
    get_embedder("image", "efficientnet-lite0", image_size=128)  # the files are cached: the child does not export
    get_embedder("text", "all-MiniLM-L6-v2")
    done = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["peak_mb"] < 400, report


def test_concurrent_first_uses_export_once_into_the_cache_and_leave_no_temporary_file(tmp_path):
    env = {**os.environ, "LABELHUB_CACHE": str(tmp_path)}
    command = [sys.executable, "-m", "labelhub.backend.onnx_export", "efficientnet-lite0", "--image-size", "64"]
    procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert path.parent == tmp_path / "onnx" and path.name.startswith("efficientnet-lite0@64-")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]
    exports = sum(err.count("exporting efficientnet-lite0@64") for _, err in outputs)
    assert exports == 1


def test_unknown_onnx_model_and_missing_export_tools_say_what_is_wrong(tmp_path, monkeypatch):
    from labelhub.backend import onnx_export

    with pytest.raises(ValueError, match="no ONNX export"):
        onnx_export.onnx_path("resnet50")
    monkeypatch.setenv("LABELHUB_CACHE", str(tmp_path))
    failing = "import sys; sys.stderr.write('boom: no onnx here\\n'); sys.exit(3)"
    real_run = subprocess.run

    def run(command, **kwargs):  # the export's interpreter fails as a missing 'onnx' package would make it
        return real_run([sys.executable, "-c", failing], **kwargs)

    monkeypatch.setattr(onnx_export.subprocess, "run", run)
    with pytest.raises(onnx_export.OnnxExportError, match="exit code 3.*boom: no onnx here") as caught:
        onnx_export.ensure_onnx("efficientnet-lite0", 96)
    assert isinstance(caught.value, OSError)
    lock = onnx_export.onnx_path("efficientnet-lite0", 96).name + ".lock"
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == [lock]  # no half-written file
