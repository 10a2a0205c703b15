"""Benchmark of the export of a ``<Text valueType="url">`` project (not a test): ``python bench/text_url_bench.py
[--files 3000] [--size 2000] [--repeats 5] [--local-only]``.

A ``valueType="url"`` project's tasks hold the files' URLs, so its versions' training rows read each annotated file's
text from the repo (:class:`labelhub.repos.texts.FileTexts`); a project without it has the texts in its tasks. Both
are measured in the same run, on the same ``--files`` text files of ``--size`` bytes, one Choices annotation per
file (no Label Studio: the project is a stand-in; the annotations go into the sync state as the intake stores them),
for a local git repository and for a Hub repo on the Hub test server (``tests.hubserver``, over loopback, in a
thread of this process; huggingface_hub's cache in a fresh temporary directory, so the first export downloads):

- the first export of the process (every row made, every annotated file read: the url project's worst case);
- ``--repeats`` exports of one new annotation of a file not annotated before (the median; the url project reads
  that one file);
- the first export after a restart (nothing kept in memory; every row made again, every file read again: from
  dulwich, or from huggingface_hub's disk cache with no call).

Prints each figure for both projects and the ratio url / inline.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
_HF_CACHE = tempfile.mkdtemp(prefix="text-url-bench-hf-")
os.environ.update(HF_HUB_CACHE=_HF_CACHE, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
                  HF_HUB_DISABLE_PROGRESS_BARS="1", TQDM_DISABLE="1")
if "--local-only" not in sys.argv:
    from tests.labelstudio import free_port  # noqa: E402

    os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"

from labelhub.repos.git import LocalGitRepo  # noqa: E402
from labelhub.sync.state import SyncState  # noqa: E402
from labelhub.sync.versions.exporter import Exporter  # noqa: E402
from labelhub.sync.versions.incremental import forget  # noqa: E402

CHOICES = '<Choices name="topic" toName="text"><Choice value="a"/><Choice value="b"/></Choices>'
CONFIGS = {"inline": f'<View><Text name="text" value="$text"/>{CHOICES}</View>',
           "url": f'<View><Text name="text" value="$text" valueType="url"/>{CHOICES}</View>'}


def texts(files: int, size: int) -> dict[str, bytes]:
    """``files`` text files of ``size`` bytes of words, 100 per folder."""
    rng = random.Random(0)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(2000)]
    out = {}
    for i in range(files):
        text = " ".join(rng.choices(words, k=size // 5))[:size]
        out[f"docs/{i // 100:03d}/{i:05d}.txt"] = text.encode()
    return out


def local_repo(path: Path, files: dict[str, bytes]) -> tuple[LocalGitRepo, str]:
    git = ["git", "-C", str(path), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "texts"], check=True)
    repo = LocalGitRepo(path)
    return repo, repo.resolve("main")


def annotate(state: SyncState, task: int, path: str, value: str, sha: str, label: str) -> None:
    """One task and its one annotation, as the intake stores them."""
    state.upsert_task(task, {"text": value, "hf_path": path, "hf_repo": state.key[1], "hf_revision": sha})
    state.apply_annotations(task, [{"id": 1000 + task, "completed_by": 1, "updated_at": "2026-12-03T08:00:00Z",
                                    "result": [{"from_name": "topic", "to_name": "text", "type": "choices",
                                                "value": {"choices": [label]}}]}], complete=False, revision=sha)
    state.bump_cursor("annotations_generation")


def run(kind: str, repo, sha: str, files: dict[str, bytes], repeats: int, tmp: Path) -> dict[str, float | list]:
    """The export timings of the ``kind`` project (``inline`` or ``url``) over ``repo``."""
    state = SyncState(tmp / f"{kind}-{repo.local}.sqlite3", 1, repo.repo_id)
    state.set_users({1: "annotator@example.com"})
    project = SimpleNamespace(label_config=CONFIGS[kind], project_id=1, url="http://label-studio", title="bench")
    paths = sorted(files)

    def value(path: str) -> str:
        return files[path].decode() if kind == "inline" else repo.file_url(sha, path)

    first = len(paths) - repeats - 1
    for task, path in enumerate(paths[:first], 1):
        annotate(state, task, path, value(path), sha, "ab"[task % 2])
    exporter = Exporter(repo, project, state, revision="main")
    started = time.perf_counter()
    exporter.export()
    out: dict = {"first": time.perf_counter() - started, "one": []}
    reads = exporter.texts.reads if exporter.texts else 0
    for task in range(first + 1, first + 1 + repeats):
        annotate(state, task, paths[task - 1], value(paths[task - 1]), sha, "a")
        started = time.perf_counter()
        exporter.export()
        out["one"].append(time.perf_counter() - started)
    if exporter.texts:
        out["reads"] = (reads, exporter.texts.reads - reads)
    forget(state)  # a restart: nothing kept in memory
    task = len(paths)
    annotate(state, task, paths[task - 1], value(paths[task - 1]), sha, "b")
    exporter = Exporter(repo, project, state, revision="main")
    started = time.perf_counter()
    exporter.export()
    out["restart"] = time.perf_counter() - started
    return out


def report(layout: str, inline: dict, url: dict) -> None:
    one_inline, one_url = statistics.median(inline["one"]), statistics.median(url["one"])
    print(f"{layout}: first export {inline['first']:.2f} s inline, {url['first']:.2f} s url, "
          f"ratio {url['first'] / inline['first']:.2f} (files read: {url['reads'][0]})")
    print(f"{layout}: export of one new annotation, median {1000 * one_inline:.0f} ms inline, {1000 * one_url:.0f} ms "
          f"url, ratio {one_url / one_inline:.2f} (files read by {len(url['one'])} exports: {url['reads'][1]})")
    print(f"{layout}: first export after a restart {inline['restart']:.2f} s inline, {url['restart']:.2f} s url, "
          f"ratio {url['restart'] / inline['restart']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000, help="text files, one annotation each")
    parser.add_argument("--size", type=int, default=2000, help="bytes per file")
    parser.add_argument("--repeats", type=int, default=5, help="exports of one new annotation")
    parser.add_argument("--local-only", action="store_true", help="no Hub test server")
    args = parser.parse_args()
    files = texts(args.files, args.size)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            results = {kind: run(kind, *local_repo(tmp / kind, files), files, args.repeats, tmp)
                       for kind in ("inline", "url")}  # a repo each: their versions are two series of tags
            report(f"local repo, {args.files} files of {args.size} B", results["inline"], results["url"])
            if args.local_only:
                return
            from labelhub.repos.hub import HubRepo
            from tests.hubserver import HubServer

            with HubServer(tmp / "hub", port=int(os.environ["HF_ENDPOINT"].rsplit(":", 1)[1])) as hub:
                results = {}
                for kind in ("inline", "url"):
                    hub.create_repo(f"bench/{kind}")
                    sha = hub.commit_files(f"bench/{kind}", files, message="texts")
                    results[kind] = run(kind, HubRepo(f"bench/{kind}"), sha, files, args.repeats, tmp)
                report(f"Hub test server, {args.files} files of {args.size} B", results["inline"], results["url"])
    finally:
        shutil.rmtree(_HF_CACHE, ignore_errors=True)


if __name__ == "__main__":
    main()
