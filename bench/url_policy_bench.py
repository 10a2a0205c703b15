"""Benchmark of tasks following a changed file URL policy (not a test): ``python bench/url_policy_bench.py
[--files 10000] [--rewrite 1000]``.

Starts a private Label Studio, syncs a local git repository of ``--files`` real Fashion-MNIST images into a new
project (signed URLs), then times one ``FileImporter.run()`` in process for each of:

- a cycle with nothing changed: the short-circuit, which now also compares the URL policy (no Label Studio call);
- the first cycle after an upgrade from a LabelHub whose state recorded no policy, every URL already right: the
  listing, every task's data read (200 a Data Manager query), no update;
- a cycle after the backend moved host (``--public-url``), on a project of ``--rewrite`` files: every task's URL
  rewritten (one ``PATCH`` each, 4 at once), against the baseline of a ``GET`` then a ``PATCH`` a task in turn.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["TQDM_DISABLE"] = "1"
from tests import sample_repos  # noqa: E402
from tests.labelstudio import LabelStudioServer, ensure_template  # noqa: E402

from labelhub.file_urls import FileURLs  # noqa: E402
from labelhub.repos.git import LocalGitRepo  # noqa: E402
from labelhub.sync.files.importer import LAST_CYCLE, FileImporter  # noqa: E402
from labelhub.sync.labelstudio.project import LabelStudioProject  # noqa: E402
from labelhub.sync.state import SyncState  # noqa: E402

CONFIG = '<View><Image name="image" value="$image"/></View>'
SECRET = "labelhub-bench-file-secret-0123"


class CountingProject(LabelStudioProject):
    """A project that counts its Label Studio API calls (the reads: a task's update goes around ``call``)."""

    calls = 0

    def call(self, fn, *args, **kwargs):
        CountingProject.calls += 1
        return super().call(fn, *args, **kwargs)


def importer(ls, tmp: Path, name: str, files: int, public_url: str = "http://old-host:9090") -> FileImporter:
    """A FileImporter of a new local repo of ``files`` images (made once per name) into a new project, or of the
    repo and project ``name`` already has, under ``public_url``."""
    path, state_path = tmp / name, tmp / f"{name}.sqlite3"
    if not path.exists():
        sample_repos.local_repo_with(path, sample_repos.image_files(0, files))
        (tmp / f"{name}.id").write_text(str(ls.client().projects.create(title=name, label_config=CONFIG).id))
    project = CountingProject(ls.url, ls.api_key, int((tmp / f"{name}.id").read_text()))
    repo = LocalGitRepo(path, file_urls=FileURLs(public_url=public_url, secret=SECRET))
    state = SyncState(state_path, project.project_id, repo.repo_id)
    state.bind(project.url, project.key)
    return FileImporter(repo, project, state, revision="main")


def timed(run) -> tuple[float, int, object]:
    """``(seconds, Label Studio calls, report)`` of ``run()``."""
    CountingProject.calls = 0
    began = time.perf_counter()
    report = run()
    return time.perf_counter() - began, CountingProject.calls, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rewrite", type=int, default=1_000)
    args = parser.parse_args()
    ensure_template()
    with tempfile.TemporaryDirectory() as tmp, LabelStudioServer(Path(tmp) / "ls") as ls:
        tmp = Path(tmp)
        seconds, _, report = timed(importer(ls, tmp, "big", args.files).run)
        print(f"import of {report.created} files: {seconds:.1f} s")
        idle = [timed(importer(ls, tmp, "big", args.files).run) for _ in range(5)]
        assert all(r.unchanged for _, _, r in idle)
        print(f"a cycle with nothing changed, {args.files} tasks: {min(s for s, _, _ in idle) * 1000:.1f} ms (best "
              f"of 5), {idle[0][1]} Label Studio calls")
        upgraded = importer(ls, tmp, "big", args.files)
        last = json.loads(upgraded.state.cursor(LAST_CYCLE))
        del last["selection"]["file_urls"]  # as an older LabelHub recorded it
        upgraded.state.set_cursor(LAST_CYCLE, json.dumps(last, sort_keys=True))
        seconds, calls, report = timed(upgraded.run)
        assert report.rewritten == 0, report
        print(f"the first cycle after an upgrade (no policy recorded), {args.files} tasks, all right: {seconds:.1f} s, "
              f"{calls} Label Studio calls, {report.rewritten} rewritten")
        timed(importer(ls, tmp, "small", args.rewrite).run)
        seconds, _, report = timed(importer(ls, tmp, "small", args.rewrite, "http://new-host:9090").run)
        assert report.rewritten == args.rewrite, report
        client, began = ls.client(), time.perf_counter()
        for task in client.tasks.list(project=int((tmp / "small.id").read_text()), page_size=1000,
                                      fields="task_only"):
            current = client.tasks.get(str(task.id))
            client.tasks.update(str(task.id), data={**current.data, "image": current.data["image"] + "&b=1"})
        baseline = time.perf_counter() - began
        print(f"the backend moved host: {report.rewritten} tasks rewritten in {seconds:.1f} s; baseline (GET + PATCH "
              f"each, in turn) {baseline:.1f} s, ratio {seconds / baseline:.2f}")


if __name__ == "__main__":
    main()
