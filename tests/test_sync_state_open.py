"""Processes opening one new state file at the same moment (two ``labelhub sync`` of two projects started together
in one folder, as ``tests/test_two_projects_one_repo.py`` does) all open it: SQLite refused the second's
``PRAGMA journal_mode=WAL`` at once, "database is locked", before :func:`labelhub.sync.state.connect` took a file
lock around the file's setup (the daemon then exited; 17 of 30 races of two processes failed, 2026-12-07)."""
from __future__ import annotations

import subprocess
import sys
import time

from tests.backend_fixtures import ROOT

#: Imports first, then waits for the start time given in argv[2], then opens the state file argv[1].
_OPEN_AT = """
import sys, time
from labelhub.sync.state import SyncState
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
state = SyncState(sys.argv[1], int(sys.argv[3]), "labelhub/two")
print(state.db.execute("PRAGMA journal_mode").fetchone()[0])
"""


def test_four_processes_opening_a_new_state_file_at_once_all_open_it(tmp_path):
    for round_ in range(3):
        path = tmp_path / f"state-{round_}.sqlite3"
        start = time.time() + 1.5  # after every interpreter has imported the state module (0.3 s)
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, str(path), str(start), str(project)], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for project in range(1, 5)]
        answers = [proc.communicate(timeout=120) for proc in procs]
        assert [out.strip() for out, _ in answers] == ["wal"] * 4, [err[-1500:] for _, err in answers]
