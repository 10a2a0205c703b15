"""``labelhub sync`` while the Hub is down: huggingface_hub's retry lines and SIGTERM.

An audit found, with the test Hub stopped mid-run: each of huggingface_hub's retries (``http_backoff``, 5 a call)
logged twice, once by its own handler (no time, past the redaction) and once at WARNING through the root handler,
60 lines a minute; and a SIGTERM that took 42 s to end the daemon (huggingface_hub's retries under way, then the
flush's own), whose flush failed without a word. The fixes: :func:`labelhub.redaction.setup_logging`,
:class:`labelhub.repos.hub._OneAttemptWhenStopping`, :func:`labelhub.repos.hub.cut_backoff_wait`,
:meth:`labelhub.sync.service.SyncService.flush`.

Real Label Studio, a test Hub of this module's own (its port is the daemon's ``HF_ENDPOINT``: stopping it leaves the
session's Hub alone), the real ``labelhub`` command (the model: ``tests/test_hub_faults_audit.py``).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from tests import sample_repos
from tests.conftest import HUB_TOKEN, ROOT, run_labelhub, sigterm_timed
from tests.hubserver import HubServer
from tests.labelstudio import free_port
from tests.test_sync_export import CONFIG, choice

N = 3
#: A line of ``setup_logging``'s format: ``2026-12-06 08:58:37,631 LEVEL name: message``.
TIMED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
#: huggingface_hub's ``http_backoff`` lines (``utils/_http.py``).
RETRY_LINES = ("thrown while requesting", "Retrying in", "Rate limited")


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_sigterm_during_a_hub_outage_ends_the_daemon_in_seconds_says_the_flush_failed_and_loses_nothing(
        label_studio, make_project, tmp_path):
    port = free_port()
    hub = HubServer(root=tmp_path / "hub", port=port, token=HUB_TOKEN).start()
    repo_id = f"labelhub/outage-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id)
    hub.commit_files(repo_id, sample_repos.image_files(0, N), message="images")
    project = make_project("hub outage", CONFIG)
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
           "HF_TOKEN": HUB_TOKEN, "HF_ENDPOINT": hub.url}
    state = str(tmp_path / "s.sqlite3")
    sync = ("sync", "--repo", repo_id, "--project", str(project.id), "--state", state)
    try:
        run_labelhub(*sync, "--once", env=env, check=True)
        log_path = tmp_path / "daemon.log"
        with open(log_path, "w") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "tests.guarded", *sync, "--interval", "1", "--reconcile-interval", "1",
                 "--export-interval", "0"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
            try:
                hub.reset_calls()
                wait_for(lambda: hub.count_calls("GET", r"/refs") >= 2 or daemon.poll() is not None, 120,
                         "the daemon never polled")
                assert daemon.poll() is None, log_path.read_text()[-3000:]
                hub.stop()  # the outage: connections refused
                client = label_studio.client()
                for task in client.tasks.list(project=project.id, page_size=100):
                    client.annotations.create(task.id, result=[choice("text-only")])
                time.sleep(8)  # reconciled, the export failing: in huggingface_hub's retries (23 s of waits a call)
                assert daemon.poll() is None, log_path.read_text()[-3000:]
                code, took = sigterm_timed(daemon, 90)
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait()
        text = log_path.read_text()
        assert code == 0 and took < 5, (took, text)  # was 42 s
        assert "Traceback" not in text and "stopped" in text
        assert not [line for line in text.splitlines() if "will retry" in line and "stopping" in line], text
        flush = [line for line in text.splitlines() if "stopping: the export failed" in line]
        assert len(flush) == 1 and "stays pending for the next start" in flush[0], text
        assert not [line for line in text.splitlines() if any(r in line for r in RETRY_LINES)], text  # at INFO: none
        assert all(TIMED.match(line) for line in text.splitlines() if line.strip()), text
        assert HUB_TOKEN not in text
        # the Hub back: the pending export lands at the next start
        hub = HubServer(root=tmp_path / "hub", port=port, token=HUB_TOKEN).start()
        done = run_labelhub(*sync, "--once", env=env, check=True)
        assert "exported annotations-v1" in done.stdout + done.stderr, done.stderr
        assert any(tag.name == "annotations-v1" for tag in hub_refs(hub, repo_id).tags)
    finally:
        hub.stop()


def hub_refs(hub: HubServer, repo_id: str):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=HUB_TOKEN).list_repo_refs(repo_id, repo_type="dataset")


def test_huggingface_hubs_retries_are_said_once_each_timed_and_redacted_at_debug_and_not_at_info(tmp_path):
    """``setup_logging`` in a process of its own (it replaces the root handler), against a port nothing listens on:
    each of ``http_backoff``'s lines once, through the root handler (the time, the redaction), at DEBUG only."""
    port = free_port()
    script = (
        "import sys\n"
        "from labelhub.redaction import setup_logging\n"
        "setup_logging(sys.argv[1], ['hf_outage_secret_token'])\n"
        "from huggingface_hub import HfApi\n"
        f"api = HfApi(endpoint='http://127.0.0.1:{port}', token='hf_outage_secret_token')\n"
        "import huggingface_hub.utils._http as h\n"
        "h.time.sleep = lambda s: None\n"  # this throwaway process only: its 23 s of waits between attempts skipped
        "try:\n"
        "    list(api.list_repo_commits('a/hf_outage_secret_token', repo_type='dataset'))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, file=sys.stderr)\n")
    runs = {}
    for level in ("INFO", "DEBUG"):
        runs[level] = subprocess.run([sys.executable, "-c", script, level], cwd=ROOT, capture_output=True, text=True,
                                     timeout=60).stderr
    info, debug = runs["INFO"], runs["DEBUG"]
    assert "ConnectError" in info and not [line for line in info.splitlines() if any(r in line for r in RETRY_LINES)]
    retried = [line for line in debug.splitlines() if "thrown while requesting" in line]
    waits = [line for line in debug.splitlines() if "Retrying in" in line]
    assert len(retried) == 6 and len(waits) == 5, debug  # 1 + 5 attempts, each said once
    assert all(TIMED.match(line) and " DEBUG huggingface_hub.utils._http: " in line for line in retried + waits)
    assert "hf_outage_secret_token" not in info + debug and "a/***" in debug


def test_transformers_lines_reach_the_redacting_handler_once_after_its_import():
    """transformers gives its logger a stderr handler of its own and stops its propagation as it is imported (after
    ``setup_logging``: the backend imports it when it first loads a pipeline or an embedder): its lines skipped the
    time and the redaction. ``library_logs_through_root`` after the import puts them through the root handler once."""
    script = (
        "import sys\n"
        "from labelhub.redaction import library_logs_through_root, setup_logging\n"
        "setup_logging('INFO', ['transformers_secret_token'])\n"
        "import transformers\n"
        "library_logs_through_root()\n"
        "transformers.utils.logging.get_logger('transformers.x').warning('read with transformers_secret_token')\n")
    err = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120).stderr
    lines = [line for line in err.splitlines() if "read with" in line]
    assert len(lines) == 1 and TIMED.match(lines[0]) and "read with ***" in lines[0], err
