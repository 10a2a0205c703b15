"""LabelHub's cache directory on this machine: ``$LABELHUB_CACHE``, default ``~/.cache/labelhub``.

It holds what is made once and reused: a local Label Studio's venv and template database
(:mod:`labelhub.sync.labelstudio.server`) and the embedders' ONNX files (:mod:`labelhub.backend.onnx_export`).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$LABELHUB_CACHE`` when set, else ``~/.cache/labelhub`` (not created here)."""
    return Path(os.environ.get("LABELHUB_CACHE") or Path.home() / ".cache" / "labelhub")
