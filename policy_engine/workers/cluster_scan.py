"""``policy-engine scan … --executor ray``: a batch of files scanned on a Ray cluster.

The files are queued as analysis jobs (source ``cli``), so the cluster's tasks claim,
retry and quarantine them exactly like files of an ingest folder or jobs handed in
through the API, and ``ingest status`` and the API's jobs show them. A file that fails
stays in the queue as such a job does: an ingest worker tries it again after its
back-off, then quarantines it.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from policy_engine.config import Settings
from policy_engine.pipeline.scan import REUSED, ScanOutcome
from policy_engine.policy.evaluate import combine
from policy_engine.policy.model import RuleSet
from policy_engine.store import Store
from policy_engine.store.ingest import CLAIMED, DONE, RETRY, WAITING, IngestQueue, QueueEntry
from policy_engine.store.jobs import Jobs
from policy_engine.workers.claims import FINISHED, Handled, StopSignals
from policy_engine.workers.cluster import ScanCluster
from policy_engine.workers.executor import executor_of
from policy_engine.workers.worker import timing_of

log = logging.getLogger(__name__)

LATER_STATES = (CLAIMED, WAITING, RETRY)  # not this task's to scan now, maybe soon


def queue_files(store: Store, files: Sequence[Path]) -> list[int]:
    """Each file as an analysis job; returns their queue ids, in order."""
    jobs = Jobs(store)
    who = f"cli:{getpass.getuser()}@{socket.gethostname()}"[:200]
    ids = []
    for file in files:
        path = file.resolve()
        stat = path.stat()
        view, _ = jobs.submit(
            str(path), source="cli", name=path.name, created_by=who,
            size=stat.st_size, mtime_ns=stat.st_mtime_ns,
        )  # fmt: skip
        ids.append(jobs.queue_id(view.id))
    return ids


def scan_on_cluster(
    settings: Settings,
    rulesets: Sequence[RuleSet],
    files: Sequence[Path],
    *,
    force: bool = False,
    window: dict[str, Any] | None = None,
    on_result: Callable[[ScanOutcome], None] | None = None,
    signals: StopSignals | None = None,
) -> list[ScanOutcome]:
    """Scan ``files`` on the cluster; one outcome per file, in order (``window``: the
    start, end and max_frames of ``analysis_options``). Files another
    worker holds (or one that died holding them, until the claim timeout tells) are
    waited for and handed out again."""
    executor_of(settings)
    signals = signals or StopSignals()
    # Ray's start and the actors' (their imports, their model) take seconds: the files
    # are queued meanwhile, in a thread (Ray itself starts only from the main thread)
    queuing = ThreadPoolExecutor(1, thread_name_prefix="queue-files")
    queued = queuing.submit(_open_and_queue, settings, files)
    queuing.shutdown(wait=False)
    try:
        cluster = ScanCluster(settings, force=force, window=window, at_most=len(files))
    except BaseException:
        with contextlib.suppress(Exception):  # the cluster's failure is the one to report
            queued.result()[0].close()
        raise
    try:
        store, ids = queued.result()
    except BaseException:
        cluster.shutdown()
        raise
    try:
        queue = IngestQueue(store, timing_of(settings))  # to read and reap; not a worker
        outcomes: dict[int, ScanOutcome] = {}
        try:
            _hand_out(settings, store, queue, cluster, ids, rulesets, signals, outcomes, on_result)
        finally:
            cluster.shutdown()
        return [
            outcomes.get(i) or ScanOutcome(path=str(f), error="not scanned: the batch was stopped")
            for i, f in zip(ids, files, strict=True)
        ]
    finally:
        store.close()


def _open_and_queue(settings: Settings, files: Sequence[Path]) -> tuple[Store, list[int]]:
    store = Store.open(settings.db)
    try:
        return store, queue_files(store, files)
    except BaseException:
        store.close()
        raise


def _hand_out(
    settings: Settings,
    store: Store,
    queue: IngestQueue,
    cluster: ScanCluster,
    ids: list[int],
    rulesets: Sequence[RuleSet],
    signals: StopSignals,
    outcomes: dict[int, ScanOutcome],
    on_result: Callable[[ScanOutcome], None] | None,
) -> None:
    deadline = time.monotonic() + settings.claim_timeout + 2 * settings.heartbeat
    pending = ids
    while pending and not signals.stop.is_set():
        later: list[int] = []

        def collect(handled: Handled, later: list[int] = later) -> None:
            outcome = _outcome_of(store, queue, handled, later)
            if outcome is not None:
                outcomes[handled.queue_id] = outcome
                if on_result is not None:
                    on_result(outcome)

        cluster.run(pending, rulesets, signals, collect)
        if not later or time.monotonic() > deadline:
            for queue_id in later:
                entry = queue.entry(queue_id)
                held = f" ({entry.state}, {entry.claimed_by or 'no worker'})" if entry else ""
                outcomes[queue_id] = ScanOutcome(
                    path=entry.file if entry else str(queue_id),
                    error=f"not scanned: still in another worker's hands{held}; it stays queued",
                )
            return
        log.info("%d file(s) held elsewhere or settling; looking again", len(later))
        signals.stop.wait(min(settings.heartbeat, 5.0))
        queue.reap()
        pending = later


def _outcome_of(
    store: Store, queue: IngestQueue, handled: Handled, later: list[int]
) -> ScanOutcome | None:
    """The file's outcome, or None (and its id in ``later``) if it is not settled yet."""
    if handled.kind == FINISHED:
        return handled.outcome
    entry = queue.entry(handled.queue_id)
    if entry is not None and entry.state == DONE:
        return _done_elsewhere(store, entry)
    if entry is None or entry.state not in LATER_STATES:
        why = entry.last_error if entry else None
        path = entry.file if entry else str(handled.queue_id)
        return ScanOutcome(path=path, error=why or f"not scanned: {handled.note}")
    later.append(handled.queue_id)
    return None


def _done_elsewhere(store: Store, entry: QueueEntry) -> ScanOutcome:
    """A file some worker finished (this batch's task before its actor died, say)."""
    outcome = ScanOutcome(
        path=entry.file, status=REUSED, asset_id=entry.asset_id, scan_id=entry.scan_id,
        content_sha256=entry.content_sha256,
    )  # fmt: skip
    if entry.asset_id is not None:
        current = store.current_decisions([entry.asset_id]).values()
        outcome.in_force = combine([d.ruled() for d in current]) if current else None
    return outcome
