"""Benchmark of the tasks following their files (not a test): ``python bench/follow_bench.py [--files 500]``.

Starts a private Label Studio (from the migrated template of ``tests.labelstudio``), makes a local git repo of
``--files`` images, imports them (``labelhub sync --once``), then commits a move of every file to another folder and
times the cycle that follows them (one update per task), then a deletion of every file (one removal mark per task).
As this machine's baseline in the same run: what the cycle did before, one ``GET`` then one ``PATCH`` per task, one
after the other (the SDK's ``tasks.get`` and ``tasks.update``), over the same tasks; and the ratio of ours to it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["TQDM_DISABLE"] = "1"
from tests import sample_repos  # noqa: E402
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402

CONFIG = '<View><Image name="image" value="$image"/></View>'


def sync(repo: Path, project_id: int, state: Path, env: dict) -> float:
    """One ``labelhub sync --once --no-export``; its wall time in seconds."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "labelhub.cli", "sync", "--repo", str(repo), "--project", str(project_id),
                    "--state", str(state), "--once", "--no-export"], env=env, check=True, capture_output=True)
    return time.perf_counter() - began


def baseline(client, project_id: int, changes: dict) -> float:
    """The former way: a ``GET`` then a ``PATCH`` of each task's ``meta``, one after the other; seconds."""
    began = time.perf_counter()
    for task in client.tasks.list(project=project_id, page_size=1000, fields="task_only"):
        current = client.tasks.get(str(task.id))
        client.tasks.update(str(task.id), meta={**(current.meta or {}), **changes})
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    args = parser.parse_args()
    ensure_template()
    with tempfile.TemporaryDirectory() as tmp, LabelStudioServer(Path(tmp) / "ls") as ls:
        client = ls.client()
        project = client.projects.create(title="follow bench", label_config=CONFIG)
        repo, state = Path(tmp) / "repo", Path(tmp) / "state.sqlite3"
        sample_repos.init_local_repo(repo)
        files = sample_repos.image_files(0, args.files)
        sample_repos.commit_local(repo, files)
        env = {**os.environ, "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.api_key,
               "LABELHUB_SECRET": "labelhub-bench-file-secret-0123"}  # a local repo needs one
        imported = sync(repo, project.id, state, env)
        idle = sync(repo, project.id, state, env)
        print(f"import of {args.files} files: {imported:.2f} s; a cycle with nothing to do (the process's start, "
              f"in every figure of ours below): {idle:.2f} s")
        moved = {f"moved/{path}": data for path, data in files.items()}
        sample_repos.commit_local(repo, moved, deletes=tuple(files))
        ours_move = sync(repo, project.id, state, env)
        base_move = baseline(client, project.id, {"bench": 1})
        print(f"move of {args.files} files: ours {ours_move:.2f} s, baseline (GET + PATCH each, in turn) "
              f"{base_move:.2f} s, ratio {ours_move / base_move:.2f}")
        sample_repos.commit_local(repo, {"keep.png": files[next(iter(files))]}, deletes=tuple(moved))
        ours_removal = sync(repo, project.id, state, env)
        base_removal = baseline(client, project.id, {"bench": 2})
        print(f"removal of {args.files} files: ours {ours_removal:.2f} s, baseline {base_removal:.2f} s, ratio "
              f"{ours_removal / base_removal:.2f}")


if __name__ == "__main__":
    main()
