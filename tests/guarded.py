"""Run the ``labelhub`` CLI with the loopback guard of :mod:`tests.netguard` installed.

``python -m tests.guarded sync --repo ...`` is ``labelhub sync --repo ...`` in a test subprocess.

Crash tests set ``LABELHUB_TEST_KILL_AT=<point>:<n>`` to make the process SIGKILL itself at the
``n``-th pass through a point of the import: ``before_import`` (the batch is recorded as pending,
Label Studio has not been called), ``after_import`` (Label Studio created the tasks, the state has
not recorded them), ``after_record`` (the batch is recorded), ``after_commit`` (an export's commit
landed, its tag is not made).

``LABELHUB_TEST_NO_PREIMPORT=1`` makes ``labelhub backend`` skip :func:`labelhub.backend.startup.preimport` (each
worker imports its modules itself, as before it came): the baseline of ``bench/cold_setup_bench.py``.
"""
import os
import signal

from tests import netguard

netguard.install()


def _kill_at(point: str, nth: int) -> None:
    from labelhub.repos.git import LocalGitRepo
    from labelhub.repos.hub import HubRepo
    from labelhub.sync.labelstudio.project import LabelStudioProject
    from labelhub.sync.ledger import ImportLedger

    passes = {"count": 0}

    def tick(here: str) -> None:
        if here == point:
            passes["count"] += 1
            if passes["count"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    original_import, original_record = LabelStudioProject.import_tasks, ImportLedger.record

    def import_tasks(self, tasks):
        tick("before_import")
        ids = original_import(self, tasks)
        tick("after_import")
        return ids

    def record(self, entries, task_ids=None):
        original_record(self, entries, task_ids)
        tick("after_record")

    LabelStudioProject.import_tasks, ImportLedger.record = import_tasks, record

    for cls in (HubRepo, LocalGitRepo):
        def commit(self, *args, _original=cls.commit, **kwargs):
            sha = _original(self, *args, **kwargs)
            tick("after_commit")
            return sha

        cls.commit = commit


if __name__ == "__main__":
    if os.environ.get("LABELHUB_TEST_KILL_AT"):
        point, nth = os.environ["LABELHUB_TEST_KILL_AT"].split(":")
        _kill_at(point, int(nth))
    if os.environ.get("LABELHUB_TEST_NO_PREIMPORT"):
        import labelhub.backend.startup

        labelhub.backend.startup.preimport = lambda *modules: None
    from labelhub.cli import main

    main(prog_name="labelhub")
