"""A Hub that cannot be reached is said as such, and an ``hf://`` task waits for it at most ``LABELHUB_MEDIA_TIMEOUT``.

An audit with ``HF_ENDPOINT`` at a listener that never answers saw ``/predict`` held over 5 minutes (huggingface_hub's
``hf_hub_download`` asks its ``HEAD`` again with a fixed 60 s timeout and 5 retries when the file is not cached: see
:func:`labelhub.repos.hub.download`), and the task's error said ``(EntryNotFound)``: huggingface_hub's
``LocalEntryNotFoundError`` ("the Hub could not be asked and the file is not cached") subclasses its
``EntryNotFoundError``. Here the listener is a real socket on loopback that accepts and never answers, and the Hub
that answers is the test Hub server (:mod:`tests.hubserver`) through the real huggingface_hub client.
"""
from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labelhub.errors import EntryNotFound, HubError, HubUnreachable
from labelhub.repos.hub import download
from tests.conftest import ROOT


@pytest.fixture
def silent_hub():
    """``http://127.0.0.1:<port>`` of a socket that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path / "hf"


#: What a backend worker does for an ``hf://`` task: ``HF_ENDPOINT`` is read when huggingface_hub is imported, so the
#: fetch runs in a process of its own, as in the audit. Prints the seconds and the task's error.
FETCH = """
import time
from labelhub.backend.media import MediaFetcher
from labelhub.backend.settings import Settings
fetcher = MediaFetcher(Settings.from_env())
started = time.monotonic()
try:
    fetcher.fetch("hf://datasets/me/pics/a.png")
except Exception as exc:
    print(round(time.monotonic() - started, 1), exc)
"""


@pytest.mark.timeout(120)  # was 1 + 6 × 60 + 23 s
def test_an_hf_task_behind_a_hub_that_never_answers_fails_as_unreachable_within_the_media_timeout(
        tmp_path, silent_hub):
    env = {**os.environ, "HF_ENDPOINT": silent_hub, "HF_HOME": str(tmp_path / "hf"), "MODEL_DIR": str(tmp_path),
           "LABELHUB_MEDIA_TIMEOUT": "1"}
    answer = subprocess.run([sys.executable, "-c", "import tests.netguard as n; n.install()\n" + FETCH], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=110)
    seconds, _, error = answer.stdout.strip().partition(" ")
    assert error == "could not download hf://datasets/me/pics/a.png from the Hub (HubUnreachable)", answer
    # one HEAD of 1 s; and once per process huggingface_hub's fetch of its agent registry (3 s at most) at HF_ENDPOINT
    assert float(seconds) < 1 + 3 + 1, answer.stdout
    with pytest.raises(HubUnreachable, match=f"cannot reach the Hub at {silent_hub}: ReadTimeout"):
        download("me/pics", "a.png", "main", endpoint=silent_hub, etag_timeout=1)


@pytest.mark.timeout(120)
def test_a_cached_hf_file_is_answered_from_the_cache_while_the_hub_does_not_answer(hub, hub_cache, silent_hub):
    hub.create_repo("me/cached")
    hub.commit_files("me/cached", {"a.png": b"CACHED"})
    assert open(download("me/cached", "a.png", "main", endpoint=hub.url, max_bytes=100), "rb").read() == b"CACHED"
    started = time.monotonic()
    local = download("me/cached", "a.png", "main", endpoint=silent_hub, etag_timeout=1, max_bytes=100)
    assert open(local, "rb").read() == b"CACHED" and time.monotonic() - started < 3


def test_a_hub_not_asked_is_unreachable_never_a_missing_file(tmp_path, hub, hub_cache, monkeypatch):
    """``hf_hub_download``'s ``LocalEntryNotFoundError`` (here: ``HF_HUB_OFFLINE``, the file not cached) is
    :class:`HubUnreachable`, not :class:`EntryNotFound`; a file the Hub says it lacks still is."""
    hub.create_repo("me/offline")
    hub.commit_files("me/offline", {"a.png": b"A"})
    with pytest.raises(EntryNotFound):
        download("me/offline", "missing.png", "main")
    with pytest.raises(EntryNotFound):
        download("me/offline", "missing.png", "main", patient=True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    for patient in (False, True):
        with pytest.raises(HubUnreachable, match="OfflineModeIsEnabled") as info:
            download("me/offline", "a.png", "main", patient=patient)
        assert not isinstance(info.value, EntryNotFound)


def test_a_server_that_is_no_hub_at_hf_endpoint_is_said_so_not_a_missing_file(tmp_path, hub_cache):
    """An HTTP server that answers 200 without ``X-Repo-Commit`` (``HF_ENDPOINT`` at another service): huggingface_hub
    raises ``LocalEntryNotFoundError`` from its ``FileMetadataError``."""
    root = tmp_path / "site" / "datasets" / "me" / "pics" / "resolve" / "main"
    root.mkdir(parents=True)
    (root / "a.png").write_bytes(b"NOT A HUB")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        for patient in (False, True):
            with pytest.raises(HubError, match=f"the Hub at {url} answered without a file's metadata .*: is "
                                               "HF_ENDPOINT a Hub") as info:
                download("me/pics", "a.png", "main", endpoint=url, patient=patient)
            assert not isinstance(info.value, (EntryNotFound, HubUnreachable))
        server.shutdown()
