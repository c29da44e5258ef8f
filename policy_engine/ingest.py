"""The nightly ingest: find new trailers, wait until they are complete, claim, scan.

One pass (``Ingestor.run_pass``):

1. The rule files are read again; a rule file that fails to load leaves the version of
   it last in force (from the database) in force, and the failure heads the run's
   problems. Dead workers are reaped (their files become due again).
2. Every ingest folder is listed (include/exclude patterns, optionally recursive) and
   each file's size and mtime recorded. A file is *settled* once both have stayed the
   same for ``settle_seconds`` and it has not been modified for ``quiet_seconds``: a
   trailer still being copied is left alone.
3. Settled files are claimed one at a time in the database, hashed, and scanned under
   a lease on their content hash, so a copy or a renamed trailer reuses the first
   scan's result (and is linked to the same asset) instead of being scanned twice
   (``workers.claims``). With ``executor = "ray"`` the due files are handed to a Ray
   cluster's actors instead, and each claims its own file the same way.
4. A failure is retried with doubling backoff, then quarantined with its reason; the
   next file goes on. Files still settling, or in other workers' hands, are waited for
   (up to ``settle_wait``), then left for the next run.
5. The run is recorded (counts, problems) and its summary report written.

Stopping: ``StopSignals.request()`` once finishes the file in hand, twice abandons it
(it goes back to the queue without counting as an attempt).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from policy_engine.config import Settings
from policy_engine.errors import ConfigError, PolicyEngineError, StoreError
from policy_engine.pipeline.scan import ScanOutcome, find_videos
from policy_engine.policy.model import RuleSet
from policy_engine.store import Store
from policy_engine.store.ingest import (
    JOBS_FOLDER,
    QUARANTINED,
    Observation,
    Reaped,
    RunCounts,
)
from policy_engine.workers.claims import (
    GIVEN_BACK,
    NOT_CLAIMED,
    ClaimWork,
    Handled,
    ScanAbandoned,
    StopSignals,
    counted_as,
    why_failed,
)
from policy_engine.workers.executor import executor_of
from policy_engine.workers.worker import QueueWorker, timing_of

log = logging.getLogger(__name__)

LOCKED_RETRY_S = 0.1  # due rows locked by another worker's transaction: look again soon
HELD_POLL_MAX_S = 2.0  # files in other workers' hands: how often to look whether they came back


# -- discovery --------------------------------------------------------------------------
def folder_key(folder: str | Path) -> str:
    return str(Path(folder).expanduser().resolve())  # one folder, one spelling


def discover(settings: Settings, folder: str) -> tuple[list[Observation], list[str]]:
    """What one ingest folder holds now, and what was wrong with it (never raises)."""
    root = Path(folder)
    problems: list[str] = []
    if not root.exists():
        return [], [f"ingest folder {folder} does not exist; create it or fix the setting"]
    if not root.is_dir():
        return [], [f"ingest folder {folder} is not a folder"]
    if not os.access(root, os.R_OK | os.X_OK):
        return [], [f"ingest folder {folder} cannot be read: permission denied"]
    files = find_videos(
        [root],
        settings.include,
        exclude=settings.exclude,
        recursive=settings.recursive,
        outside_links=settings.outside_links,
        on_error=problems.append,
    )
    seen = []
    for file in files:
        name = str(file)
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(name).decode("utf-8", "backslashreplace")
            problems.append(f"{shown}: the file name is not valid UTF-8; rename it to scan it")
            continue
        try:
            stat = file.stat()
        except OSError as exc:  # vanished, or a dangling link
            problems.append(f"{name}: cannot be inspected: {exc.strerror}")
            continue
        seen.append(Observation(name, folder, stat.st_size, stat.st_mtime_ns))
    return seen, problems


# -- rules ------------------------------------------------------------------------------
def load_rules(path: str | Path, store: Store) -> tuple[list[RuleSet], list[str]]:
    """The rule sets in force: each file as it is now, or, where it fails to load, the
    version of it last in force (from the database, by the file's resolved path, so
    ``rules`` and ``$PWD/rules`` are one file). Every problem is reported; a file with
    no version to fall back on comes first, as its rules are not applied at all."""
    from policy_engine.policy.loader import (
        RuleSetError,
        load_catalogue,
        parse_ruleset,
        rule_files,
    )

    if not rule_files([path]):
        return [], [f"rules {path}: no rule files (*.yaml) found"]
    not_applied: list[str] = []
    notes: list[str] = []
    explained: set[str] = set()  # files whose problems a note already gives

    def last_good(file: Path, problems: Sequence[Any]) -> RuleSet | None:
        explained.update(p.path for p in problems)
        why = "; ".join(str(p) for p in problems)
        # by the resolved path; else as spelt (rows recorded before paths were resolved)
        last = store.last_good_ruleset(str(file.resolve())) or store.last_good_ruleset(str(file))
        if last is None:
            not_applied.append(
                f"rule file {file} failed to load ({why}); it has never loaded, so no"
                " earlier version is on record and its rules are NOT applied in this run"
            )
            return None
        try:
            ruleset = parse_ruleset(last[0], str(file))
        except RuleSetError as exc:  # e.g. this software's loader is stricter than the last
            not_applied.append(
                f"rule file {file} failed to load ({why}), and neither does the version last"
                f" in force ({'; '.join(str(p) for p in exc.problems)}), so its rules are NOT"
                " applied in this run"
            )
            return None
        notes.append(
            f"rule file {file} failed to load ({why}); its last good version"
            f" ({ruleset.name} {ruleset.version}, in force since {last[1]:%Y-%m-%d %H:%M} UTC)"
            " stays in force"
        )
        return ruleset

    rulesets, problems = load_catalogue([path], fallback=last_good)
    store.record_rules_in_force({str(Path(r.path).resolve()): r for r in rulesets})
    others = [str(p) for p in problems if p.path not in explained]
    return rulesets, not_applied + notes + others


# -- a pass -----------------------------------------------------------------------------
@dataclass
class PassResult:
    run_id: int | None
    status: str  # completed | stopped | failed
    counts: RunCounts
    outcomes: list[ScanOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    summary: Path | None = None
    error: str | None = None
    failure: PolicyEngineError | None = None  # what stopped a failed run (its exit code)


class Ingestor(QueueWorker):
    """A worker: registered in the database, heartbeating, running passes on demand.
    With ``executor = "ray"`` a pass hands its due files to a Ray cluster's actors
    (``workers.cluster``); each claims its own, so the queue stays the one record."""

    def __init__(
        self,
        settings: Settings,
        *,
        signals: StopSignals | None = None,
        on_create: Callable[[str], None] | None = None,
    ) -> None:
        if not settings.ingest:
            raise ConfigError(
                "no ingest folders: give --ingest DIR, or set ingest in the settings file"
                " or POLICY_ENGINE_INGEST"
            )
        executor_of(settings)  # a wrong executor is refused before anything starts
        super().__init__(settings, signals=signals, on_create=on_create)
        # the folders on disk, and the queue's analysis jobs (handed in through the API)
        self.folders = [folder_key(f) for f in settings.ingest] + [JOBS_FOLDER]
        self._pass_lock = threading.Lock()
        self.unclosed: str | None = None  # why a run's claims could not be released yet
        self.cluster: Any = None  # the Ray actor pool, started by the first pass using it

    def close(self, reason: str = "finished") -> None:
        if self.cluster is not None:
            self.cluster.shutdown()
        super().close(reason)

    # -- one pass -------------------------------------------------------------------------
    def run_pass(self, trigger: str = "once") -> PassResult | None:
        """One pass over the ingest folders; None if one is already running here."""
        if not self._pass_lock.acquire(blocking=False):
            log.info("%s run skipped: a run is still in progress", trigger)
            return None
        try:
            if self.lost:
                self.rejoin()
            return _Pass(self, trigger).run()
        finally:
            self._pass_lock.release()


class _Pass:
    """The state of one pass; see the module docstring for the steps."""

    def __init__(self, ingestor: Ingestor, trigger: str) -> None:
        self.ingestor = ingestor
        self.queue = ingestor.queue
        self.signals = ingestor.signals
        self.trigger = trigger
        self.started = datetime.now(UTC)
        self.outcomes: list[ScanOutcome] = []
        self.problems: list[str] = []
        self.seen: set[str] = set()
        self.handled: set[str] = set()
        self.tried: set[int] = set()  # ids of the files claimed in this pass
        self.failure: PolicyEngineError | None = None
        self.counts: dict[str, int] = dict.fromkeys(vars(RunCounts()), 0)
        self._locked_since: float | None = None  # since when due rows could not be claimed

    def run(self) -> PassResult:
        unclosed = self.ingestor.unclosed or "an earlier run of this worker ended unclosed"
        self.queue.recover(unclosed)
        self.ingestor.unclosed = None  # only once recovered: else the next pass tries again
        run_id = self.queue.start_run(self.trigger)
        log.info("run %d (%s) started over %s", run_id, self.trigger, ", ".join(self.folders))
        status, error = "completed", None
        try:
            self._run()
            if self.signals.stop.is_set():
                status = "stopped"
        except ScanAbandoned:
            status = "stopped"
        except (KeyboardInterrupt, SystemExit):  # without our signal handlers (the Python API)
            self._close(run_id, "stopped", None)
            raise
        except Exception as exc:  # noqa: BLE001 - whatever it was, the run and claims close
            status, error = "failed", why_failed(exc)
            self.failure = exc if isinstance(exc, PolicyEngineError) else None
            if isinstance(exc, PolicyEngineError):
                log.error("run %d failed: %s", run_id, error)
            else:
                log.exception("run %d failed: %s", run_id, error)
            self.problems.append(f"the run stopped early: {error}")
        return self._close(run_id, status, error)

    def _run(self) -> None:
        rulesets, problems = load_rules(self.settings.rules, self.ingestor.store)
        for problem in problems:  # first: the summary opens with the rules in force
            self._problem(problem)
        reaped, self.ingestor.reaped_at_start = self.ingestor.reaped_at_start, []
        for dead in [*reaped, *self.queue.reap()]:
            self._reaped(dead)
        if not rulesets:
            raise ConfigError(f"no rule set could be loaded from {self.settings.rules}")
        if self.ingestor.cluster is None and self.settings.executor == "ray":
            from policy_engine.workers.cluster import ScanCluster

            self.ingestor.cluster = ScanCluster(self.settings)
        if self.ingestor.cluster is not None:
            self._work(lambda: self._drain_on_cluster(rulesets))
        else:
            work = self.ingestor.claim_work(rulesets)
            self._work(lambda: self._drain(work))

    def _close(self, run_id: int, status: str, error: str | None) -> PassResult:
        """Record the end of the run; after a failure, nothing this worker holds stays
        'running' or 'claimed' (if the database is still away, the next pass does it)."""
        result = self._finish(run_id, status, error)
        if status == "failed":
            try:
                self.queue.recover(f"the run failed: {error}")
            except StoreError as exc:
                self.ingestor.unclosed = f"the run failed: {error}"  # the next pass closes it
                log.error("could not release this worker's claims yet: %s", exc)
        return result

    def _reaped(self, reaped: Reaped) -> None:
        self._problem(f"worker {reaped.worker_id} had died ({reaped.why}); its files are due again")
        for path, why in reaped.quarantined:
            self._quarantined(path, f"after its worker died on it ({why})")

    @property
    def settings(self) -> Settings:
        return self.ingestor.settings

    @property
    def folders(self) -> list[str]:
        return self.ingestor.folders

    def _problem(self, text: str) -> None:
        log.warning("%s", text)
        self.problems.append(text)

    # -- the loop -------------------------------------------------------------------------
    def _observe(self, first: bool) -> None:
        for folder in self.folders:
            if folder == JOBS_FOLDER:  # queued by the API, not found on disk
                continue
            observations, problems = discover(self.settings, folder)
            if first:
                for problem in problems:
                    log.error("%s", problem)
                    self.problems.append(problem)
                if not observations and not problems:
                    log.info("ingest folder %s holds no matching files", folder)
            self.seen.update(o.path for o in observations)
            if not problems or observations:
                self.counts["new"] += self.queue.observe(folder, observations)

    def _work(self, drain: Callable[[], None]) -> None:
        deadline = time.monotonic() + self.settings.settle_wait
        first = True
        while not self.signals.stop.is_set():
            self._observe(first)
            first = False
            drain()
            if self.signals.stop.is_set():
                return
            wait = self._until_next_look(deadline)
            if wait is None:
                return
            self.signals.stop.wait(wait)  # wakes early on a stop request

    def _drain(self, work: ClaimWork) -> None:
        """Claim and process files until none can be claimed right now."""
        while not self.signals.stop.is_set():
            claim = self.queue.claim_next(self.folders, skip=self.tried)
            if claim is None:
                return
            self._locked_since = None
            self.tried.add(claim.id)
            self._account(work.process(claim))

    def _drain_on_cluster(self, rulesets: list[RuleSet]) -> None:
        """Hand every file due now to the cluster; each task claims its own file."""
        due = self.queue.due_ids(self.folders, skip=self.tried)
        if not due:
            return
        self._locked_since = None
        self.tried.update(due)
        self.ingestor.cluster.run(due, rulesets, self.signals, self._account)

    def _account(self, handled: Handled) -> None:
        """Count what became of a file handed to a worker (here or on the cluster)."""
        if handled.kind == GIVEN_BACK:
            self.tried.discard(handled.queue_id)  # it may be tried again in this pass
            return
        if handled.kind == NOT_CLAIMED:
            log.info("file %s not claimed: %s", handled.path, handled.note)
            return
        assert handled.outcome is not None
        self.outcomes.append(handled.outcome)
        self.handled.add(handled.path)
        self.counts[counted_as(handled.outcome)] += 1
        for problem in handled.problems:
            self._problem(problem)
        if handled.state == QUARANTINED:
            self._quarantined(
                handled.outcome.path,
                f"after {handled.attempts} failed attempt(s): {handled.outcome.error}",
            )

    def _until_next_look(self, deadline: float) -> float | None:
        """Seconds until the queue may have work for this pass again; None when the pass
        is over: nothing is due, in another worker's hands, or settling within
        ``settle_wait``. A claim that found nothing does not mean nothing is left: on
        PostgreSQL it skips rows another worker's transaction holds locked."""
        backlog = self.queue.backlog(self.folders, skip=self.tried)
        if backlog.due:
            now = time.monotonic()
            self._locked_since = self._locked_since or now
            if now - self._locked_since <= self.ingestor.timing.claim_timeout:
                return LOCKED_RETRY_S
            self._problem(
                f"{backlog.due} due file(s) stayed locked by another database session for"
                f" {now - self._locked_since:.0f} s; left for the next run"
            )
            return None
        if backlog.held and time.monotonic() < deadline:
            # they come back here if their worker gives them up or dies
            for reaped in self.queue.reap():
                self._reaped(reaped)
            return min(max(self.settings.heartbeat, LOCKED_RETRY_S), HELD_POLL_MAX_S)
        if not backlog.settling:
            return None
        ready = min(when for _, when in backlog.settling)
        wait = (ready - datetime.now(UTC)).total_seconds() + 0.05
        if time.monotonic() + wait > deadline:
            return None
        log.info("%d file(s) still settling; next check in %.1f s", len(backlog.settling), wait)
        return max(wait, 0.05)

    def _quarantined(self, path: str, why: str) -> None:
        self.counts["quarantined"] += 1
        self._problem(
            f"{path} quarantined {why}. Fix or replace the file (a new version is"
            " picked up), or run: policy-engine ingest retry PATH"
        )

    # -- the end --------------------------------------------------------------------------
    def _finish(self, run_id: int, status: str, error: str | None) -> PassResult:
        from policy_engine.pipeline.search import update_indexes
        from policy_engine.reporting import write_run_summary

        try:  # the run's scans into a persisted search index (hnsw, pgvector)
            for problem in update_indexes(self.ingestor.store, self.settings, self.outcomes):
                self._problem(problem)
        except StoreError as exc:
            log.error("could not update the search index: %s", exc)
        waiting = []
        try:
            waiting = [p for p, _ in self.queue.unsettled(self.folders)]
        except StoreError as exc:
            log.error("could not read the queue: %s", exc)
        if waiting:
            listed = ", ".join(sorted(waiting)[:10]) + (" …" if len(waiting) > 10 else "")
            self._problem(
                f"{len(waiting)} file(s) still being written or settling, left for the next"
                f" run: {listed}"
            )
        self.counts["seen"] = len(self.seen)
        self.counts["waiting"] = len(waiting)
        self.counts["skipped"] = len(self.seen - self.handled - set(waiting))
        counts = RunCounts(**self.counts)
        summary = None
        quiet_poll = self.trigger == "poll" and not self.outcomes and not self.problems
        try:
            if not quiet_poll:  # a poll that found nothing leaves its record, not a page
                summary = write_run_summary(
                    self.outcomes,
                    Path(self.settings.reports),
                    started=self.started,
                    problems=self.problems,
                    title=f"Ingest run ({self.trigger})",
                    run_id=run_id,
                )
        except OSError as exc:
            self._problem(f"the run summary could not be written: {exc}")
        try:
            self.queue.finish_run(
                run_id,
                status=status,
                counts=counts,
                problems=self.problems,
                summary_path=str(summary) if summary else None,
                error=error,
            )
        except StoreError as exc:
            log.error("could not record the end of run %d: %s", run_id, exc)
        log.info(
            "run %d %s: %s",
            run_id,
            status,
            ", ".join(f"{v} {k}" for k, v in vars(counts).items()),
            extra={"run": run_id, "status": status, "counts": vars(counts)},
        )
        return PassResult(
            run_id, status, counts, self.outcomes, self.problems, summary, error, self.failure
        )


__all__ = [
    "Ingestor", "PassResult", "ScanAbandoned", "StopSignals", "discover", "folder_key",
    "load_rules", "timing_of",
]  # fmt: skip
