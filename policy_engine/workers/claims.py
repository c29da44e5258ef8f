"""One claimed file, from claim to finished queue row: the same steps wherever it runs
(the ingest pass on this machine, or a Ray actor on a cluster node).

1. A file that changed since it was looked at goes back to settle.
2. It is hashed; the lease on its content hash is taken, so two copies of one trailer
   are scanned once (the second gives way now and reuses the first scan later).
3. It is scanned; the queue row is finished (done, or a failed attempt, or quarantine)
   and a job that asked for a webhook is announced.

A stop request that asks to abandon the file raises ``ScanAbandoned`` from inside the
scan: the claim goes back to the queue without counting as an attempt.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from policy_engine.config import Settings
from policy_engine.errors import ConfigError, ModelError, PolicyEngineError, StoreError
from policy_engine.hashing import file_sha256
from policy_engine.pipeline.scan import FAILED, REUSED, ScanListener, Scanner, ScanOutcome
from policy_engine.store.ingest import DONE, QUARANTINED, Claim, IngestQueue

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0  # how often a scan's progress is written to its queue row


class ScanAbandoned(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error
    """Raised inside a scan when a second stop request asks to give the file back."""


class StopSignals:
    """Shared between signal handlers and a pass: stop after this file, or now."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.abandon = threading.Event()

    def request(self) -> None:
        if self.stop.is_set():
            self.abandon.set()
        self.stop.set()


class StopAwareListener(ScanListener):
    """While frames are embedded: checks for an abandon request, and records how far the
    scan of the claimed file is (at most every PROGRESS_EVERY_S: what a job shows)."""

    def __init__(self, signals: StopSignals, queue: IngestQueue) -> None:
        self.signals = signals
        self.queue = queue
        self.claim: Claim | None = None
        self._reported = 0.0

    def progress(self, done_seconds: float, total_seconds: float) -> None:
        if self.signals.abandon.is_set():
            raise ScanAbandoned
        now = time.monotonic()
        if self.claim is None or total_seconds <= 0 or now - self._reported < PROGRESS_EVERY_S:
            return
        self._reported = now
        try:
            self.queue.report_progress(self.claim, min(done_seconds / total_seconds, 1.0))
        except StoreError as exc:  # progress is a courtesy: never fails a scan
            log.warning("could not record progress: %s", exc)


@dataclass
class Handled:
    """What became of one file handed to a worker: plain data, so that it crosses from a
    cluster's actor to its driver as it is.

    ``kind``: ``finished`` (scanned, reused or failed: ``outcome`` and ``state`` say),
    ``given-back`` (not its turn after all: it changed, or a copy is being scanned; the
    pass may try it again), or ``not-claimed`` (the task found it done already, in
    another worker's hands, or no longer due: ``note`` says)."""

    queue_id: int
    path: str  # the queue row's path (a job's is job:<id>)
    kind: str
    outcome: ScanOutcome | None = None
    state: str | None = None  # the queue row's state after this
    attempts: int = 0
    problems: list[str] = field(default_factory=list)
    note: str = ""
    error_kind: str = ""  # a run error's class (a cluster's actor could not scan at all)


FINISHED, GIVEN_BACK, NOT_CLAIMED = "finished", "given-back", "not-claimed"


def why_failed(exc: BaseException) -> str:
    if isinstance(exc, PolicyEngineError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


class ClaimWork:
    """The steps for one claimed file, for one worker (its queue, scanner and settings)."""

    def __init__(self, settings: Settings, queue: IngestQueue, scanner: Scanner):
        self.settings = settings
        self.queue = queue
        self.scanner = scanner

    def process(self, claim: Claim) -> Handled:
        """Scan the claimed file and finish its queue row. A bug costs this file (a failed
        attempt), never the batch; the run's own problems (the database, the model, a
        stop) propagate with the claim already given back."""
        try:
            return self._process(claim)
        except (PolicyEngineError, ScanAbandoned, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must cost one file, not the night
            log.exception("%s: internal error", claim.file)
            return self._finish(claim, ScanOutcome(path=claim.file, error=why_failed(exc)))

    def fail(self, claim: Claim, why: str) -> Handled:
        """Finish the claim as a failed attempt, without scanning, for ``why``."""
        return self._finish(claim, ScanOutcome(path=claim.file, error=why))

    def _process(self, claim: Claim) -> Handled:
        path = Path(claim.file)
        if self._changed(path, claim):
            return Handled(claim.id, claim.path, GIVEN_BACK, note="changed; settling again")
        digest = None
        with contextlib.suppress(OSError):  # the scanner records why it cannot be read
            digest = file_sha256(path)
        if digest is not None and self._changed(path, claim):
            return Handled(claim.id, claim.path, GIVEN_BACK, note="changed; settling again")
        lease = self.queue.content_lease(digest) if digest else None
        if lease is not None and (holder := self.queue.acquire(lease)) is not None:
            log.info("%s: the same content is being scanned by %s; later", path, holder.id)
            self.queue.requeue(claim, delay=min(max(self.settings.settle_seconds, 1.0), 30.0))
            return Handled(claim.id, claim.path, GIVEN_BACK, note=f"a copy is with {holder.id}")
        try:
            outcome = self._scan(path, claim, digest)
        finally:
            if lease is not None:
                self.queue.release(lease)
        return self._finish(claim, outcome)

    def _scan(self, path: Path, claim: Claim, digest: str | None) -> ScanOutcome:
        log.info("scanning %s (attempt %d)", path, claim.attempts)
        if isinstance(self.scanner.listener, StopAwareListener):
            self.scanner.listener.claim = claim
        try:
            return self.scanner.scan_file(path, content_sha256=digest)
        except ScanAbandoned:
            log.warning("%s: given back unfinished (stop requested)", path)
            self.queue.requeue(claim)
            raise
        except (StoreError, ModelError, ConfigError, KeyboardInterrupt):
            with contextlib.suppress(StoreError):  # else the run's end releases it
                self.queue.requeue(claim)  # not the file's fault: it keeps its attempts
            raise

    def _changed(self, path: Path, claim: Claim) -> bool:
        """True if the file changed since it was last looked at (still being written): its
        record then takes the new size and mtime and it settles again before any claim,
        instead of being claimed again at once from the stale record."""
        try:
            stat = path.stat()
        except OSError:
            return False  # gone or unreadable: the scan says so
        if (stat.st_size, stat.st_mtime_ns) == (claim.size, claim.mtime_ns):
            return False
        log.info("%s changed since it was looked at; waiting for it to settle", path)
        self.queue.requeue_changed(claim, stat.st_size, stat.st_mtime_ns)
        return True

    def _finish(self, claim: Claim, outcome: ScanOutcome) -> Handled:
        failed = outcome.status == FAILED
        state = self.queue.finish(
            claim,
            error=outcome.error if failed else None,
            content_sha256=outcome.content_sha256,
            asset_id=outcome.asset_id,
            scan_id=outcome.scan_id,
        )
        handled = Handled(claim.id, claim.path, FINISHED, outcome, state, claim.attempts)
        if outcome.report_error:
            handled.problems.append(f"{claim.file}: {outcome.report_error}")
        if failed:
            log.error("%s failed (attempt %d): %s", claim.file, claim.attempts, outcome.error)
        else:
            verdict = outcome.verdict or {}
            log.info("%s %s: %s", claim.file, outcome.status, verdict.get("schedule", "-"))
        if claim.source is not None and state in (DONE, QUARANTINED):
            problem = self._announce(claim)  # an analysis job is finished (done or given up)
            if problem:
                handled.problems.append(problem)
        return handled

    def _announce(self, claim: Claim) -> str | None:
        from policy_engine.pipeline.jobs import announce_finished

        try:
            return announce_finished(self.settings, self.queue.store, claim.id)
        except StoreError as exc:
            return f"the webhook of {claim.path} could not be recorded: {exc}"


def counted_as(outcome: ScanOutcome) -> str:
    """The run count a finished file adds to: failed, reused or scanned."""
    if outcome.status == FAILED:
        return "failed"
    return "reused" if outcome.status == REUSED else "scanned"
