"""Dataset repos of real images for tests: Fashion-MNIST PNGs (Debian ``dataset-fashion-mnist``).

The layout mirrors the encyclopaedia seed (``<collection>/<volume id>/image/<page>.jpg`` with an
inventory CSV ``id, meta`` without a header): ``fmnist/<volume>/image/<index>.png`` where the
volume is ``vol-<index // 10>``, and ``inventory.csv`` maps each volume to a title.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist, png_bytes

INVENTORY = "inventory.csv"


def image_path(index: int) -> str:
    """The ``path_in_repo`` of Fashion-MNIST test image ``index``."""
    return f"fmnist/vol-{index // 10:03d}/image/{index:05d}.png"


def image_files(start: int, stop: int) -> dict[str, bytes]:
    """``{path_in_repo: png bytes}`` of Fashion-MNIST test images ``start``..``stop - 1``. Past the split's 10,000
    images (``bench/sync_bench.py --files 100000``), image ``i`` is image ``i % 10000`` with one pixel changed (the
    ``i // 10000``-th, plus one), so that no two files share a blob (the sync takes a shared blob for a move)."""
    images, _ = fashion_mnist("test", limit=min(stop, 10_000))
    count = len(images)

    def image(i: int):
        if i < count:
            return images[i]
        copy = images[i % count].copy()
        flat = copy.reshape(-1)
        pixel = (i // count - 1) % flat.size
        flat[pixel] = (int(flat[pixel]) + 1) % 256
        return copy

    return {image_path(i): png_bytes(image(i)) for i in range(start, stop)}


def labels(stop: int) -> dict[str, str]:
    """``{path_in_repo: class name}`` of the first ``stop`` test images."""
    _, y = fashion_mnist("test", limit=stop)
    return {image_path(i): FASHION_MNIST_CLASSES[int(y[i])] for i in range(stop)}


def inventory_csv(stop: int) -> bytes:
    """The inventory CSV (no header; columns ``id, meta``) for volumes of images ``0..stop-1``."""
    volumes = sorted({image_path(i).split("/")[1] for i in range(stop)})
    return "".join(f'{v},"Fashion volume {v[4:]}, a title with a comma"\n' for v in volumes).encode()


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a fixed identity; return stdout."""
    return subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@labelhub.test", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def init_local_repo(repo: Path) -> None:
    """Create an empty git repository with branch ``main``."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")


def commit_local(repo: Path, files: dict[str, bytes] | None = None, deletes: tuple[str, ...] = (),
                 message: str = "update") -> str:
    """Write ``files`` and delete ``deletes`` in the work tree, commit, return the new sha.

    The work tree is first reset to the branch head, which LabelHub's exports move with plumbing.
    """
    if subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=repo, capture_output=True).returncode == 0:
        git(repo, "reset", "-q", "--hard", "HEAD")
    for path, data in (files or {}).items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for path in deletes:
        git(repo, "rm", "-q", path)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def local_repo_with(path: Path, files: dict[str, bytes]) -> Path:
    """A new local git repository at ``path`` (branch ``main``) whose first commit holds ``files``."""
    init_local_repo(path)
    commit_local(path, files, message="images")
    return path


def hub_repo_with(hub, repo_id: str, files: dict[str, bytes], private: bool = True) -> str:
    """A new dataset repo ``repo_id`` on the Hub test server (private by default) whose first commit holds ``files``."""
    hub.create_repo(repo_id, private=private)
    hub.commit_files(repo_id, files, message="images")
    return repo_id
