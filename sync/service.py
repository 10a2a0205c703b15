"""The sync daemon's schedule: files → tasks, Label Studio → store, store → versions.

Each tick of :meth:`SyncService.tick` runs what is due: the import cycle every ``poll_interval``
seconds, reconciliation every ``reconcile_interval`` seconds, the sweep of deleted tasks every
``sweep_interval`` seconds, and an export when annotations
changed and ``export_interval`` seconds passed since the last one (debounce). A webhook wakes the
loop at once. A step that fails is logged and retried at its next turn; the others go on (the same error again is
said at ERROR every 10 minutes, at DEBUG between, and a line says when the step works again). An export the Hub
refuses (401: the token; 403: no write access or a storage limit; 413: too large; any 4xx but 408, 409, 412 and 429,
:func:`is_refusal`) is said once and retried after 1, 2, 4, ... minutes up to 30
(:meth:`SyncService._export_wait`): each attempt sends the whole version. A configuration error
(:class:`labelhub.errors.ConfigurationError`) is not retried: it ends the daemon; so does an import or export that
fails because the local repository is no longer there (:meth:`SyncService._run`). On SIGTERM
or SIGINT, :meth:`SyncService.flush` reconciles and exports what is pending before the exit.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from labelhub.errors import ConfigurationError, HubError
from labelhub.redaction import one_line
from labelhub.repos.git import is_git_repo
from labelhub.retry import shutdown_requested
from labelhub.sync.versions.exporter import Exporter
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.annotations.intake import AnnotationIntake

log = logging.getLogger(__name__)
#: Seconds before the first retry of an export the Hub refused (:func:`is_refusal`); doubled at each refusal ...
REFUSED_FIRST = 60.0
#: ... up to this many seconds.
REFUSED_MAX = 1800.0
#: A step failing again with the same error is said at ERROR again after this many seconds (at DEBUG between).
REPEAT_ERROR_EVERY = 600.0
#: The steps that read or write the repository (stopped by :meth:`SyncService._run` when a local one is gone).
REPO_STEPS = ("import", "export")


#: 4xx statuses that are no refusal (:func:`is_refusal`): 408 (a request timeout) and 429 (rate limit) pass by
#: themselves; 409 and 412 (the branch moved) are rebuilt on the new head by the exporter at once.
NOT_REFUSALS = (408, 409, 412, 429)


def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` is the Hub refusing the export: a :class:`~labelhub.errors.HubError` with a 4xx status but
    :data:`NOT_REFUSALS` (401 the token, 403 write access or a storage limit, 413 a commit too large, 400 a card
    refused, ...): an error that does not go away by itself, unlike a 429 or 5xx, so its retries back off
    (:meth:`SyncService._export_wait`). Decided: every such 4xx, not a list of known ones: a 413 retried every
    ``export_interval`` sent the whole version each time, forever."""
    status = exc.status if isinstance(exc, HubError) else None
    return status is not None and 400 <= status < 500 and status not in NOT_REFUSALS


@dataclass
class SyncService:
    """The steps and their intervals (seconds).

    ``local_repo`` is the path of the local repository the import and export read and write (``None`` for a Hub
    repo): when it is gone, they stop the daemon (:meth:`_run`)."""

    importer: FileImporter
    intake: AnnotationIntake | None = None
    exporter: Exporter | None = None
    poll_interval: float = 60
    reconcile_interval: float = 30
    export_interval: float = 60
    sweep_interval: float = 300
    local_repo: str | None = None
    wake: threading.Event = field(default_factory=threading.Event)
    _due: dict = field(default_factory=dict)
    _refused: float = 0.0
    #: ``{step: (its error's text, when it first failed with it, when that was last said at ERROR)}`` (monotonic s).
    _failing: dict = field(default_factory=dict)

    def tick(self) -> float:
        """Run what is due; return the seconds until something is due next."""
        now = time.monotonic()
        if self.intake and now >= self._due.get("reconcile", 0):  # first: annotations keep the revision they were made on
            # due again set before the reading: a reconcile_soon() from the receiver's thread during it (an event
            # left to reconciliation) keeps its 0, it was overwritten after and waited --reconcile-interval
            self._due["reconcile"] = now + self.reconcile_interval
            self._step("reconciliation", self.intake.reconcile)
        if now >= self._due.get("import", 0):
            self._step("import", self.importer.run)
            self._due["import"] = now + self.poll_interval
        if self.intake and now >= self._due.get("sweep", 0):
            self._step("sweep", self.intake.sweep)
            self._due["sweep"] = now + self.sweep_interval
        waits = [self._due["import"] - now]
        if self.intake:
            waits.append(self._due["reconcile"] - now)
        if self.exporter and self.exporter.pending():
            if now >= self._due.get("export", 0):
                refused = self._step("export", self.exporter.export)
                self._due["export"] = time.monotonic() + self._export_wait(refused)
            if self.exporter.pending():
                waits.append(max(self._due["export"] - time.monotonic(), 1.0))
        return max(min(waits), 0.05)

    def reconcile_soon(self) -> None:
        """Make the reconciliation due now and wake the daemon (the receiver's ``on_deferred``: an event left to
        reconciliation is stored at the next turn, not ``reconcile_interval`` seconds later). Safe from another
        thread."""
        self._due["reconcile"] = 0.0
        self.wake.set()

    def _export_wait(self, error: Exception | None) -> float:
        """Seconds until the next export: ``export_interval``; after the Hub refused the export (401, 403, 413, ...:
        :func:`is_refusal`) twice that of the refusal before, from :data:`REFUSED_FIRST` up to
        :data:`REFUSED_MAX` (each attempt sends the whole version), back to ``export_interval`` once one lands."""
        if error is None or not is_refusal(error):
            self._refused = 0.0
            return self.export_interval
        self._refused = min(max(self._refused * 2, REFUSED_FIRST), REFUSED_MAX)
        return max(self._refused, self.export_interval)

    def _step(self, name: str, fn) -> Exception | None:
        """Run one step (none once the daemon is stopping, :func:`labelhub.retry.shutdown_requested`: :meth:`flush`
        runs its own); an error is logged and the step retried at its next turn, except a
        :class:`labelhub.errors.ConfigurationError` (the options contradict the repo, e.g. another project's
        series: :meth:`labelhub.sync.versions.exporter.Exporter.check_series`), which cannot fix itself: it ends
        the daemon (the command says it in one line and exits 1), nothing flushed."""
        if shutdown_requested():
            return None
        try:
            self._run(name, fn)
        except ConfigurationError:
            raise
        except Exception as exc:  # logged; retried at its next turn
            if shutdown_requested():  # cut by SIGTERM/SIGINT: the flush tries it once more and says how that went
                log.info("%s interrupted: stopping (%s)", name, one_line(exc, 200))
                return exc
            if is_refusal(exc) and name == "export":
                if not self._refused:  # said once; the retries back off (:meth:`_export_wait`)
                    log.error("export failed: %s: %s; retried in %.0f s, then twice as long each time up to %.0f min "
                              "while refused (imports go on)", type(exc).__name__, exc,
                              max(REFUSED_FIRST, self.export_interval), REFUSED_MAX / 60)
                else:
                    log.debug("export refused again: %s", exc)
            else:
                self._say_failure(name, exc)
            return exc
        if name in self._failing:
            log.info("%s works again (it had failed for %.0f s)", name,
                     time.monotonic() - self._failing.pop(name)[1])
        return None

    def _run(self, name: str, fn) -> None:
        """Run step ``name`` (``fn``) once; what it raises propagates, but a failure of a step of :data:`REPO_STEPS`
        because the local repository at ``local_repo`` is no longer there (moved, renamed, unmounted) is one
        :class:`labelhub.errors.ConfigurationError` saying how to restart the sync, instead of the
        ``FileNotFoundError`` / ``NotGitRepository`` retried at each turn: the daemon stops (:meth:`_step`,
        :meth:`flush`; ``--once`` too). Decided: stop, not wait: a path that comes back is a restart away, and a moved
        repository needs ``--repo-moved-from`` anyway. The check (is ``local_repo`` a git repository,
        :func:`labelhub.repos.git.is_git_repo`) is made only after a failure.

        Raises:
            labelhub.errors.ConfigurationError: the local repository is gone (see above), or ``fn`` raised one.
            Exception: what ``fn`` raised otherwise.
        """
        try:
            fn()
        except ConfigurationError:
            raise
        except Exception:
            if name not in REPO_STEPS or self.local_repo is None or is_git_repo(self.local_repo):
                raise
            raise ConfigurationError(
                f"the repository is gone from {self.local_repo} (moved, renamed or unmounted): restart the sync with "
                f"--repo <its new path> --repo-moved-from {self.local_repo}") from None

    def _say_failure(self, name: str, exc: Exception) -> None:
        """Log a failed step at ERROR, but the same error of the same step again (a hand-made tag that stays, a Label
        Studio down) at DEBUG, and at ERROR again every :data:`REPEAT_ERROR_EVERY` seconds with how long it has
        lasted: a daemon retrying every few seconds does not fill its log with one line."""
        text, now = f"{type(exc).__name__}: {exc}", time.monotonic()
        seen, since, said = self._failing.get(name, (None, now, 0.0))
        if seen != text:
            self._failing[name] = (text, now, now)
            log.error("%s failed, will retry: %s", name, text)
        elif now - said >= REPEAT_ERROR_EVERY:
            self._failing[name] = (text, since, now)
            log.error("%s still fails (for %.0f s; said at DEBUG meanwhile), will retry: %s", name, now - since, text)
        else:
            log.debug("%s failed again: %s", name, text)

    def run_once(self) -> None:
        """One reconciliation, one sweep, one import cycle, one export (``--once``); errors propagate (a local
        repository that is gone as :meth:`_run` says it).

        Annotations are reconciled before files are imported, so one made before its file changed is stored
        with the revision it was made on (``annotated_revision``). The sweep comes before the import: a failing
        import must not keep the annotations of deleted tasks in the export."""
        if self.intake:
            self.intake.reconcile()
            self.intake.sweep()
        self._run("import", self.importer.run)
        if self.intake:
            self.intake.reconcile()
        if self.exporter:
            self._run("export", self.exporter.export)

    def flush(self) -> None:
        """Reconcile and export what is pending, ignoring the export interval (on shutdown: each Hub call is tried
        once, :func:`labelhub.retry.request_shutdown`; what fails stays pending in the state).

        A step that fails is said in one line at ERROR, whatever was said of it before (:meth:`_say_failure` says a
        repeated error at DEBUG: the flush during a Hub outage would have failed silently), e.g. ``stopping: the
        export failed (HubUnreachable: cannot reach the Hub at ...); the export stays pending for the next
        start``. A :class:`labelhub.errors.ConfigurationError` is raised as in :meth:`_step`."""
        if self.intake:
            self._flush_step("reconciliation", self.intake.reconcile)
        if self.exporter and self.exporter.pending():
            self._flush_step("export", self.exporter.export)

    def _flush_step(self, name: str, fn) -> None:
        """Run one step of :meth:`flush`; its failure in one line at ERROR (see there)."""
        try:
            self._run(name, fn)
        except ConfigurationError:
            raise
        except Exception as exc:  # noqa: BLE001 - said; the work stays pending in the state
            log.error("stopping: the %s failed (%s: %s); %s", name, type(exc).__name__, exc,
                      "the export stays pending for the next start" if name == "export" else
                      "it runs again at the next start")
