"""Benchmark of the sync daemon (not a test): ``python bench/sync_bench.py [--files 10000]``.

Starts a private Label Studio (from the migrated template of ``tests.labelstudio``) and the Hub test
server with ``--files`` real Fashion-MNIST images, then prints:

- files → tasks: one ``FileImporter.run()`` over the repo, against the baseline of one raw Label
  Studio import call of the same task payloads, in the same run, and their ratio;
- a no-op poll (the head did not move): how many Hub and Label Studio calls it costs.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.labelstudio import LabelStudioServer, ensure_template, free_port  # noqa: E402

HUB_PORT = free_port()
os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{HUB_PORT}", HF_HUB_DISABLE_XET="1",
                  HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TQDM_DISABLE="1")

from sync.hub_repo import HubRepo  # noqa: E402
from sync.importer import FileImporter  # noqa: E402
from sync.ls_project import LabelStudioProject  # noqa: E402
from sync.state import SyncState  # noqa: E402
from sync.tasks import build_task  # noqa: E402
from tests import sample_repos  # noqa: E402
from tests.hubserver import HubServer  # noqa: E402

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
          '<Choice value="a"/><Choice value="b"/></Choices></View>')


class CountingProject(LabelStudioProject):
    """A project that counts its Label Studio API calls."""

    calls = 0

    def call(self, fn, *args, **kwargs):
        CountingProject.calls += 1
        return super().call(fn, *args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    ensure_template()
    with tempfile.TemporaryDirectory() as tmp, \
            LabelStudioServer(Path(tmp) / "ls") as ls, \
            HubServer(Path(tmp) / "hub", port=HUB_PORT) as hub:
        repo_id = "bench/fmnist"
        hub.create_repo(repo_id)
        t0 = time.perf_counter()
        hub.commit_files(repo_id, sample_repos.image_files(0, args.files), message="images")
        print(f"seeded {args.files} real images in {time.perf_counter() - t0:.1f} s")
        client = ls.client()
        ours = client.projects.create(title="labelhub", label_config=CONFIG)
        raw = client.projects.create(title="raw", label_config=CONFIG)
        repo = HubRepo(repo_id)
        project = CountingProject(ls.url, ls.api_key, ours.id)
        importer = FileImporter(repo, project, SyncState(Path(tmp) / "state.sqlite3", ours.id, repo_id))

        t0 = time.perf_counter()
        report = importer.run()
        ours_s = time.perf_counter() - t0
        assert report.created == args.files, report

        sha = repo.resolve("main")
        payloads = [build_task(importer.field, repo.file_url(sha, f.path), repo_id, f.path, sha)
                    for f in repo.list_files(sha) if f.path.endswith(".png")]
        t0 = time.perf_counter()
        client.projects.import_tasks(raw.id, request=payloads, return_task_ids=True)
        raw_s = time.perf_counter() - t0

        hub.reset_calls()
        CountingProject.calls = 0
        t0 = time.perf_counter()
        assert importer.run().unchanged
        poll_ms = (time.perf_counter() - t0) * 1000
        print(f"files → tasks, {args.files} files: labelhub sync {ours_s:.2f} s "
              f"(listing, state, {-(-args.files // importer.batch_size)} import calls) vs one raw Label Studio "
              f"import call {raw_s:.2f} s: ratio {ours_s / raw_s:.2f}")
        print(f"no-op poll: {len(hub.calls)} Hub call(s) {[c[0] + ' ' + c[1] for c in hub.calls]}, "
              f"{CountingProject.calls} Label Studio call(s), {poll_ms:.0f} ms")


if __name__ == "__main__":
    main()
