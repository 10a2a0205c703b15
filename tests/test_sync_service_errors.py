"""The daemon's log when a step keeps failing the same way (a hand-made tag that stays, Label Studio down): one ERROR
line, DEBUG lines while it repeats, an ERROR line again every REPEAT_ERROR_EVERY seconds, and one line when the step
works again (an audit's daemon logged the same error at every export interval)."""
from __future__ import annotations

import logging

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
