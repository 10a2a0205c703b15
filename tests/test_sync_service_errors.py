"""The daemon's log when a step keeps failing the same way (a hand-made tag that stays, Label Studio down): one ERROR
line, DEBUG lines while it repeats, an ERROR line again every REPEAT_ERROR_EVERY seconds, and one line when the step
works again (an audit's daemon logged the same error at every export interval)."""
from __future__ import annotations

import logging

import pytest

from labelhub.sync import service as service_module
from labelhub.sync.service import SyncService


class FlakyImporter:
    """An import cycle that fails with ``error`` while it is set (what SyncService calls: ``run``)."""

    def __init__(self):
        self.error: Exception | None = RuntimeError("the Hub is down")

    def run(self):
        if self.error:
            raise self.error


def _errors(caplog, level=logging.ERROR):
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name == service_module.__name__]


def test_a_step_failing_the_same_way_is_said_once_then_again_after_a_while_and_when_it_works(caplog, monkeypatch):
    caplog.set_level(logging.DEBUG, logger=service_module.__name__)
    importer = FlakyImporter()
    service = SyncService(importer)
    for _ in range(3):
        service._step("import", importer.run)
    assert _errors(caplog) == ["import failed, will retry: RuntimeError: the Hub is down"]
    assert len(_errors(caplog, logging.DEBUG)) == 2

    monkeypatch.setattr(service_module, "REPEAT_ERROR_EVERY", 0.0)
    service._step("import", importer.run)
    assert _errors(caplog)[-1].startswith("import still fails (for ")

    importer.error = RuntimeError("another error")  # another error: said at once
    service._step("import", importer.run)
    assert _errors(caplog)[-1] == "import failed, will retry: RuntimeError: another error"

    importer.error = None
    service._step("import", importer.run)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO][-1].startswith(
        "import works again (it had failed for ")


def test_a_repo_step_failing_because_the_local_repository_is_gone_stops_the_daemon_with_one_line(tmp_path, caplog):
    """The import and export of a local repository that moved while the daemon runs: one ConfigurationError saying how
    to restart (the daemon ends), not a retried failure; a failure while the repository is there is retried, and a
    step that does not read the repository (reconciliation) is retried whatever."""
    from labelhub.errors import ConfigurationError
    from tests import sample_repos

    repo = tmp_path / "repo"
    sample_repos.init_local_repo(repo)
    importer = FlakyImporter()
    service = SyncService(importer, local_repo=str(repo))
    assert service._step("import", importer.run) is importer.error  # there: logged, retried
    repo.rename(tmp_path / "moved")
    assert service._step("reconciliation", importer.run) is importer.error
    line = (f"the repository is gone from {repo} (moved, renamed or unmounted): restart the sync with --repo <its new "
            f"path> --repo-moved-from {repo}")
    for step in (lambda: service._step("import", importer.run), lambda: service._step("export", importer.run),
                 lambda: service._flush_step("export", importer.run), service.run_once):
        with pytest.raises(ConfigurationError) as raised:
            step()
        assert str(raised.value) == line
    assert SyncService(importer)._step("import", importer.run) is importer.error  # a Hub repo: retried


def test_an_event_left_to_reconciliation_makes_it_due_at_the_next_turn():
    """The receiver's ``on_deferred`` (an event whose ``task.data`` is not the state's): the reconciliation runs at
    the daemon's next turn, not ``reconcile_interval`` seconds after the last one."""
    class CountingIntake:
        def __init__(self):
            self.reconciled = 0

        def reconcile(self):
            self.reconciled += 1

        def sweep(self):
            pass

    importer, intake = FlakyImporter(), CountingIntake()
    importer.error = None
    service = SyncService(importer, intake, reconcile_interval=3600, poll_interval=3600, sweep_interval=3600)
    service.tick()
    service.tick()
    assert intake.reconciled == 1
    service.reconcile_soon()
    assert service.wake.is_set()
    service.tick()
    assert intake.reconciled == 2
