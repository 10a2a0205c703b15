"""Benchmark of the export of one new annotation (not a test): ``python bench/export_one_bench.py [--annotations 60]``.

The daemon with ``--export-interval 0`` exports a version after each annotation: this is the LabelHub part of the
"annotation saved → tagged commit" latency that ``bench/sync_bench.py --only-latency`` measures through Label Studio.
A local git repository (``git init``) and a sync state get one annotation (a Choices control over an image, one
annotator) at a time, and :meth:`labelhub.sync.versions.exporter.Exporter.export` makes its version each time: the
rows and CSV, the changes, the manifest with the agreement figures, the training and consensus rows, the card, the
commit and the tag. No Label Studio: the project is a stand-in.

Against it, in the same run and on the same repository: the commit of the same files (on another branch) and a
tag alone (:meth:`labelhub.repos.git.LocalGitRepo.commit` and ``create_tag``), the floor of any export. Prints the medians
and the lower quartiles of both (the first three exports left out: imports and caches) and their ratio. Wall time
on these shared machines moves by tens of percent from one minute to the next; the ratio holds better.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labelhub.repos.git import LocalGitRepo  # noqa: E402
from labelhub.sync.state import SyncState  # noqa: E402
from labelhub.sync.versions.exporter import Exporter  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
          '<Choice value="a"/><Choice value="b"/></Choices></View>')
WARM_UP = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=int, default=60, help="annotations, one export after each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo_path = Path(tmp) / "repo"
        (repo_path / "images").mkdir(parents=True)
        (repo_path / "images" / "0.png").write_bytes(b"png")
        git = ["git", "-C", str(repo_path), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        subprocess.run(["git", "init", "-q", str(repo_path)], check=True)
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "files"], check=True)
        subprocess.run([*git, "branch", "floor"], check=True)  # the floor's commits go there
        repo = LocalGitRepo(repo_path)
        floor_head = repo.resolve("floor")
        state = SyncState(Path(tmp) / "state.sqlite3", 1, str(repo_path))
        state.set_users({1: "annotator@example.com"})
        project = SimpleNamespace(label_config=CONFIG, project_id=1, url="http://label-studio", title="bench")
        exporter = Exporter(repo, project, state, revision=_branch(repo_path))
        ours, floor = [], []
        for i in range(args.annotations):
            state.upsert_task(i + 1, {"image": f"http://files/{i}.png", "hf_revision": "a" * 40})
            state.apply_annotations(i + 1, [{"id": 100 + i, "completed_by": 1, "updated_at": "2026-12-03T08:00:00Z",
                                             "result": [{"from_name": "kind", "to_name": "image", "type": "choices",
                                                         "value": {"choices": ["ab"[i % 2]]}}]}],
                                    complete=False, revision="a" * 40)
            state.bump_cursor("annotations_generation")
            started = time.perf_counter()
            version = exporter.export()
            ours.append(time.perf_counter() - started)
            files = {path: repo.read_file(version.commit, path) for path in _files(repo_path, version.tag)}
            started = time.perf_counter()
            floor_head = repo.commit(files, f"floor {i}", "", floor_head, "floor")
            repo.create_tag(f"floor-{i}", floor_head, message=f"floor {i}")
            floor.append(time.perf_counter() - started)
        ours, floor = ours[WARM_UP:], floor[WARM_UP:]
        print(f"export of one new annotation (a version of 1..{args.annotations} annotations, local repo): median "
              f"{1000 * statistics.median(ours):.1f} ms, lower quartile {1000 * _quartile(ours):.1f} ms; the commit "
              f"and tag of the same files alone: median {1000 * statistics.median(floor):.1f} ms, lower quartile "
              f"{1000 * _quartile(floor):.1f} ms; ratio of the medians {statistics.median(ours) / statistics.median(floor):.1f}")


def _branch(repo_path: Path) -> str:
    """The checked-out branch (``master`` or ``main``, as ``git init`` chose)."""
    return subprocess.run(["git", "-C", str(repo_path), "symbolic-ref", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def _files(repo_path: Path, tag: str) -> list[str]:
    """The paths of the files the version ``tag`` changed."""
    out = subprocess.run(["git", "-C", str(repo_path), "diff-tree", "--no-commit-id", "--name-only", "-r", tag],
                         check=True, capture_output=True, text=True).stdout
    return out.split()


def _quartile(values: list[float]) -> float:
    return statistics.quantiles(values, n=4)[0]


if __name__ == "__main__":
    main()
