"""The ingest queue in the database: workers, file claims, leases and run records.

Every worker registers a row and keeps its heartbeat fresh. A file is claimed by
setting ``claimed_by`` on its row in one compare-and-set UPDATE; on PostgreSQL the
candidate row is picked with ``FOR UPDATE SKIP LOCKED``, so workers on several
machines never wait on, or take, each other's files. A claim whose worker stopped,
missed heartbeats for longer than the claim timeout, or (on the same machine) whose
process no longer exists, is released by ``reap`` and the file is due again.

Leases are named locks in the same table for everything else that must happen once:
scanning one content hash (so two copies of a trailer are scanned once, and the second
reuses the first's scan) and, on SQLite, being the one worker allowed at all.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from policy_engine import __version__
from policy_engine.errors import ConfigError, StoreError, WorkerBusyError
from policy_engine.store.database import retries_transient_errors
from policy_engine.store.repository import RUNNING, Store, StoreFacet
from policy_engine.store.schema import (
    IngestFile,
    IngestRun,
    IngestWorker,
    Lease,
    Scan,
    SchedulerJob,
    utcnow,
)

# file states
WAITING, CLAIMED, DONE, RETRY, QUARANTINED, GONE = (
    "waiting", "claimed", "done", "retry", "quarantined", "gone",
)  # fmt: skip
DUE_STATES = (WAITING, RETRY)
SQLITE_WORKER_LEASE = "sqlite:single-worker"
LOADING_MODEL_LEASE = "loading-model:"  # + worker id: held while that worker loads a model
JOBS_FOLDER = "api:jobs"  # the queue's pseudo-folder of analysis jobs (never listed on disk)


@dataclass(frozen=True)
class Observation:
    """A file as seen in an ingest folder: enough to tell if it is still changing."""

    path: str
    folder: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Claim:
    """A file this worker holds."""

    id: int
    path: str
    size: int
    mtime_ns: int
    attempts: int  # including this one
    source: str | None = None  # the file to read, where it is not ``path`` (a job)

    @property
    def file(self) -> str:
        return self.source or self.path


@dataclass(frozen=True)
class QueueTiming:
    settle_seconds: float  # size and mtime unchanged for this long
    quiet_seconds: float  # and not modified for this long
    claim_timeout: float  # a worker silent this long is presumed dead
    max_attempts: int  # failures (or worker deaths) before quarantine
    retry_backoff: float  # seconds before the first retry; doubles each time
    retry_backoff_max: float = 6 * 3600.0

    @classmethod
    def from_settings(cls, settings: Any) -> QueueTiming:
        """The queue's timing from the engine's settings, refused when they contradict
        each other (here, not in the worker, so that `ingest status` and `config show`
        check them without loading the scanning pipeline)."""
        for name in ("settle_seconds", "quiet_seconds", "settle_wait", "retry_backoff"):
            if getattr(settings, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(settings, name)}")
        if settings.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {settings.max_attempts}")
        if settings.heartbeat <= 0 or settings.claim_timeout < 2 * settings.heartbeat:
            raise ConfigError(
                f"claim_timeout ({settings.claim_timeout:g} s) must be at least twice the"
                f" heartbeat ({settings.heartbeat:g} s), which must be positive"
            )
        return cls(
            settle_seconds=settings.settle_seconds,
            quiet_seconds=settings.quiet_seconds,
            claim_timeout=settings.claim_timeout,
            max_attempts=settings.max_attempts,
            retry_backoff=settings.retry_backoff,
        )


@dataclass(frozen=True)
class QueueEntry:
    """One queue row as a task handed its id finds it."""

    id: int
    path: str
    source: str | None
    state: str
    claimed_by: str | None
    attempts: int
    last_error: str | None
    content_sha256: str | None
    asset_id: int | None
    scan_id: int | None

    @property
    def file(self) -> str:
        return self.source or self.path


@dataclass(frozen=True)
class FileRow:
    path: str
    state: str
    attempts: int
    size_bytes: int
    stable_since: datetime
    next_attempt_at: datetime | None
    claimed_by: str | None
    last_error: str | None
    asset_id: int | None
    scan_id: int | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Backlog:
    """What keeps a pass going after a claim found nothing for it."""

    due: int  # due now, yet not claimed: rows another worker's transaction holds locked
    held: int  # claimed by other workers and still in their hands
    settling: list[tuple[str, datetime]]  # still being written: path, when it may be ready


@dataclass(frozen=True)
class Reaped:
    """A worker declared dead, and the files its death sent to quarantine."""

    worker_id: str
    why: str
    quarantined: tuple[tuple[str, str], ...] = ()  # (path, reason)


@dataclass(frozen=True)
class RunCounts:
    seen: int = 0
    new: int = 0
    scanned: int = 0
    reused: int = 0
    failed: int = 0
    skipped: int = 0
    waiting: int = 0
    quarantined: int = 0


@cache
def process_scope() -> str:
    """Where a pid means one process: this host, kernel boot and pid namespace."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        parts.append("no-proc")  # other systems: only heartbeats tell a worker is dead
    return "|".join(parts)[:80]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def backoff(attempts: int, timing: QueueTiming) -> float:
    """Seconds to wait after the ``attempts``-th failure: doubling, capped."""
    return min(timing.retry_backoff * 2 ** max(attempts - 1, 0), timing.retry_backoff_max)


@retries_transient_errors
class IngestQueue(StoreFacet):
    """One worker's view of the queue. ``now`` is injectable for tests. Every operation
    retries transient database errors, as the store's do."""

    def __init__(self, store: Store, timing: QueueTiming, *, now: Any = utcnow) -> None:
        self.store = store
        self.timing = timing
        self.now = now
        self.worker_id = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.postgres = store.engine.url.get_backend_name() == "postgresql"
        self.sqlite = store.engine.url.get_backend_name() == "sqlite"

    # -- workers --------------------------------------------------------------------------
    def register(self) -> list[Reaped]:
        """Record this worker; on SQLite, take the single-worker lease or refuse. Returns
        the dead workers it found on the way (their files are due again)."""
        reaped = self.reap()
        with self._transaction() as s:
            s.add(
                IngestWorker(
                    id=self.worker_id,
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                    scope=process_scope(),
                    software_version=__version__,
                    started_at=self.now(),
                    heartbeat_at=self.now(),
                )
            )
        if self.sqlite:
            holder = self.acquire(SQLITE_WORKER_LEASE)
            if holder is not None:
                self.stop("refused: another worker holds the SQLite database")
                raise WorkerBusyError(
                    f"another ingest worker ({holder.id}, pid {holder.pid} on {holder.host},"
                    f" running since {holder.started_at:%Y-%m-%d %H:%M:%S} UTC) is using"
                    f" {self.store.url}. SQLite allows one ingest worker at a time: let it"
                    " finish, or use PostgreSQL (--db postgresql://…) to run several."
                )
        return reaped

    def heartbeat(self) -> bool:
        """Refresh this worker's heartbeat; False if it has been declared dead."""
        with self._transaction() as s:
            result = s.execute(
                update(IngestWorker)
                .where(IngestWorker.id == self.worker_id, IngestWorker.stopped_at.is_(None))
                .values(heartbeat_at=self.now())
            )
            return bool(result.rowcount)

    def stop(self, reason: str = "finished") -> None:
        """This worker is done: its claims and leases are released."""
        with self._transaction() as s:
            s.execute(
                update(IngestWorker)
                .where(IngestWorker.id == self.worker_id, IngestWorker.stopped_at.is_(None))
                .values(stopped_at=self.now(), stop_reason=reason)
            )
            why = f"the worker stopped ({reason}) before finishing it"
            self._close_work_of(
                s, self.worker_id, self.now(), scan_error=f"interrupted: {why}", run_error=why
            )
            self._release_everything(s, self.worker_id, reason=None)

    def _is_dead(self, worker: IngestWorker, now: datetime) -> str | None:
        """Why ``worker`` is presumed dead, or None if it may be alive."""
        if worker.id == self.worker_id:
            return None
        silent = (now - worker.heartbeat_at).total_seconds()
        if silent > self.timing.claim_timeout:
            return f"no heartbeat for {silent:.0f} s (timeout {self.timing.claim_timeout:g} s)"
        if worker.scope == process_scope() and not _pid_alive(worker.pid):
            return f"its process {worker.pid} on {worker.host} no longer exists"
        return None

    def reap(self) -> list[Reaped]:
        """Declare dead workers dead: their running scans and runs are closed as failed,
        their files are due again and their leases are free. A death while working on a
        file counts as an attempt (a file that kills workers ends in quarantine); a death
        while the worker was loading its model does not: the file was not started."""
        now = self.now()
        with self._transaction() as s:
            live = list(s.scalars(select(IngestWorker).where(IngestWorker.stopped_at.is_(None))))
        reaped = []
        for worker in live:
            why = self._is_dead(worker, now)
            if why is None:
                continue
            with self._transaction() as s:
                taken = s.execute(
                    update(IngestWorker)
                    .where(IngestWorker.id == worker.id, IngestWorker.stopped_at.is_(None))
                    .values(stopped_at=now, stop_reason=f"presumed dead: {why}")
                )
                if not taken.rowcount:
                    continue  # another worker reaped it first
                self._close_work_of(
                    s,
                    worker.id,
                    now,
                    scan_error=f"interrupted: worker {worker.id} died ({why})",
                    run_error=f"the worker died during the run ({why})",
                )
                loading = s.get(Lease, LOADING_MODEL_LEASE + worker.id) is not None
                reason = None if loading else f"worker died during it: {why}"
                quarantined = self._release_everything(s, worker.id, reason=reason)
            reaped.append(Reaped(worker.id, why, tuple(quarantined)))
        return reaped

    def _close_work_of(
        self, s: Session, worker_id: str, now: datetime, *, scan_error: str, run_error: str
    ) -> None:
        """A worker's running scans and runs end as failed, with these reasons."""
        s.execute(
            update(Scan)
            .where(Scan.worker_id == worker_id, Scan.status == RUNNING)
            .values(status="failed", finished_at=now, error=scan_error)
        )
        s.execute(
            update(IngestRun)
            .where(IngestRun.worker_id == worker_id, IngestRun.status == RUNNING)
            .values(status="failed", finished_at=now, error=run_error)
        )

    def recover(self, why: str) -> None:
        """After an error this worker survived (the database went away mid-run): whatever
        it left running or claimed is closed as failed and given back, so nothing stays
        'running' or 'claimed' for ever."""
        with self._transaction() as s:
            self._close_work_of(
                s, self.worker_id, self.now(), scan_error=f"interrupted: {why}", run_error=why
            )
            self._release_everything(s, self.worker_id, reason=None, keep_worker_lease=True)

    @contextmanager
    def loading_model(self) -> Iterator[None]:
        """Mark the time this worker spends loading a model: dying then is not the fault
        of the file it holds."""
        key = LOADING_MODEL_LEASE + self.worker_id
        with self._transaction() as s:
            s.merge(Lease(key=key, holder=self.worker_id, acquired_at=self.now()))
        try:
            yield
        finally:
            self.release(key)

    def _release_everything(
        self, s: Session, worker_id: str, reason: str | None, *, keep_worker_lease: bool = False
    ) -> list[tuple[str, str]]:
        """Claims go back to the queue; with a ``reason`` (a death), as a failed attempt;
        leases are freed (but for SQLite's one-worker lease with ``keep_worker_lease``: a
        worker that recovers is still the one worker). Returns the files this sent to
        quarantine, with the reason."""
        leases = delete(Lease).where(Lease.holder == worker_id)
        if keep_worker_lease:
            leases = leases.where(Lease.key != SQLITE_WORKER_LEASE)
        s.execute(leases)
        claimed = list(
            s.scalars(
                select(IngestFile).where(
                    IngestFile.claimed_by == worker_id, IngestFile.state == CLAIMED
                )
            )
        )
        quarantined = []
        for row in claimed:
            if reason is None:
                self._requeue(row, undo_attempt=True)
                continue
            self._record_failure(row, reason, due_now=True)
            if row.state == QUARANTINED:
                quarantined.append((row.path, reason))
        return quarantined

    # -- leases ---------------------------------------------------------------------------
    def acquire(self, key: str) -> IngestWorker | None:
        """Take the lease ``key``: None if now ours, else the live worker holding it."""
        for _ in range(3):
            try:
                with self._transaction() as s:
                    s.add(Lease(key=key, holder=self.worker_id, acquired_at=self.now()))
                return None
            except StoreError as exc:
                if not isinstance(exc.__cause__, IntegrityError):
                    raise
            with self._transaction() as s:
                row = s.get(Lease, key)
                if row is None:
                    continue  # released meanwhile: try again
                holder = s.get_one(IngestWorker, row.holder)
                if row.holder == self.worker_id:
                    return None
                if holder.stopped_at is None and self._is_dead(holder, self.now()) is None:
                    return holder
                taken = s.execute(
                    update(Lease)
                    .where(Lease.key == key, Lease.holder == row.holder)
                    .values(holder=self.worker_id, acquired_at=self.now())
                )
                if taken.rowcount:
                    return None
        raise StoreError(f"could not take or read lease {key!r}; the database is very busy")

    def release(self, key: str) -> None:
        with self._transaction() as s:
            s.execute(delete(Lease).where(Lease.key == key, Lease.holder == self.worker_id))

    def content_lease(self, content_sha256: str) -> str:
        return f"content:{content_sha256}"

    # -- files ----------------------------------------------------------------------------
    def observe(self, folder: str, seen: Sequence[Observation]) -> int:
        """Record what a folder holds now; returns how many files are new or changed.

        A new size or mtime restarts the settle clock and makes a new version (a done,
        failed or quarantined file at that path is due again). Files that vanished
        before they were done are marked gone."""
        now = self.now()
        with self._transaction() as s:
            known = {
                row.path: row
                for row in s.scalars(select(IngestFile).where(IngestFile.folder == folder))
            }
        fresh = [o for o in seen if o.path not in known]
        changed = [
            o
            for o in seen
            if o.path in known
            and (known[o.path].size_bytes, known[o.path].mtime_ns) != (o.size, o.mtime_ns)
        ]
        with self._transaction() as s:
            if fresh:
                self._insert_new(s, fresh, now)
            for o in changed:
                old = known[o.path]
                s.execute(
                    update(IngestFile)
                    .where(
                        IngestFile.id == old.id,
                        IngestFile.size_bytes == old.size_bytes,
                        IngestFile.mtime_ns == old.mtime_ns,
                    )
                    .values(
                        size_bytes=o.size,
                        mtime_ns=o.mtime_ns,
                        stable_since=now,
                        last_seen=now,
                        state=WAITING,
                        attempts=0,
                        next_attempt_at=None,
                        claimed_by=None,
                        claimed_at=None,
                        content_sha256=None,
                        asset_id=None,
                        scan_id=None,
                        last_error=None,
                        finished_at=None,
                    )
                )
            present = [o.path for o in seen if o.path in known]
            for chunk in _chunks(present):
                s.execute(
                    update(IngestFile).where(IngestFile.path.in_(chunk)).values(last_seen=now)
                )
            here = {o.path for o in seen}
            vanished = [
                row.id
                for path, row in known.items()
                if row.state in DUE_STATES and path not in here
            ]
            if vanished:
                s.execute(
                    update(IngestFile)
                    .where(IngestFile.id.in_(vanished), IngestFile.state.in_(DUE_STATES))
                    .values(state=GONE, finished_at=now)
                )
        return len(fresh) + len(changed)

    def _insert_new(self, s: Session, fresh: Sequence[Observation], now: datetime) -> None:
        """Insert, ignoring a row another worker inserted a moment before."""
        rows = [
            {
                "path": o.path,
                "folder": o.folder,
                "size_bytes": o.size,
                "mtime_ns": o.mtime_ns,
                "first_seen": now,
                "stable_since": now,
                "last_seen": now,
                "state": WAITING,
                "attempts": 0,
            }
            for o in fresh
        ]
        dialect = postgresql if self.postgres else sqlite
        s.execute(dialect.insert(IngestFile).on_conflict_do_nothing(), rows)

    def _due(self, now: datetime) -> Any:
        settled = now - timedelta(seconds=self.timing.settle_seconds)
        quiet_ns = int((now - timedelta(seconds=self.timing.quiet_seconds)).timestamp() * 1e9)
        return and_(
            IngestFile.state.in_(DUE_STATES),
            or_(IngestFile.next_attempt_at.is_(None), IngestFile.next_attempt_at <= now),
            IngestFile.stable_since <= settled,
            IngestFile.mtime_ns <= quiet_ns,
        )

    def claim_next(self, folders: Iterable[str], *, skip: Iterable[int] = ()) -> Claim | None:
        """Claim the oldest due file in ``folders`` (not one of the ids in ``skip``: a
        pass tries each file once); None when none is due."""
        folders, skip = list(folders), list(skip)
        for _ in range(20):  # a lost compare-and-set race just means: try the next one
            now = self.now()
            with self._transaction() as s:
                query = (
                    select(IngestFile)
                    .where(self._due(now), IngestFile.folder.in_(folders))
                    .where(IngestFile.id.not_in(skip))
                    .order_by(IngestFile.id)
                    .limit(1)
                )
                if self.postgres:
                    query = query.with_for_update(skip_locked=True)
                row = s.scalar(query)
                if row is None:
                    return None
                claim = self._take(s, row, now)
                if claim is not None:
                    return claim
        return None

    def due_ids(self, folders: Iterable[str], *, skip: Iterable[int] = ()) -> list[int]:
        """The ids of the files due now in ``folders``, oldest first, without claiming
        them: a cluster's driver hands these out, and each task claims its own."""
        with self._transaction() as s:
            query = (
                select(IngestFile.id)
                .where(self._due(self.now()), IngestFile.folder.in_(list(folders)))
                .where(IngestFile.id.not_in(list(skip)))
                .order_by(IngestFile.id)
            )
            return list(s.scalars(query))

    def claim_id(self, file_id: int) -> Claim | None:
        """Claim the file with queue id ``file_id`` unless it is done already, in another
        worker's hands, backing off after a failure, quarantined or gone (None: ``entry``
        says which). Whether it has settled is its driver's call, made when it handed
        the id out (``due_ids``; files named on a command line need not settle): a file
        that changed since is caught by the claim's size and mtime."""
        now = self.now()
        not_backing_off = or_(
            IngestFile.next_attempt_at.is_(None), IngestFile.next_attempt_at <= now
        )
        with self._transaction() as s:
            query = select(IngestFile).where(
                IngestFile.id == file_id, IngestFile.state.in_(DUE_STATES), not_backing_off
            )
            if self.postgres:
                query = query.with_for_update(skip_locked=True)
            row = s.scalar(query)
            return None if row is None else self._take(s, row, now)

    def entry(self, file_id: int) -> QueueEntry | None:
        """Where the file with queue id ``file_id`` is in the queue (None: no such id)."""
        with self._transaction() as s:
            row = s.get(IngestFile, file_id)
            if row is None:
                return None
            return QueueEntry(
                row.id, row.path, row.source_path, row.state, row.claimed_by, row.attempts,
                row.last_error, row.content_sha256, row.asset_id, row.scan_id,
            )  # fmt: skip

    def _take(self, s: Session, row: IngestFile, now: datetime) -> Claim | None:
        """Compare-and-set ``row`` from due to claimed by this worker; None if lost."""
        claim = Claim(  # read before the UPDATE, which may refresh ``row`` in the session
            row.id, row.path, row.size_bytes, row.mtime_ns, row.attempts + 1, row.source_path
        )
        taken = s.execute(
            update(IngestFile)
            .where(IngestFile.id == row.id, IngestFile.state.in_(DUE_STATES))
            .values(
                state=CLAIMED,
                claimed_by=self.worker_id,
                claimed_at=now,
                attempts=IngestFile.attempts + 1,
                progress=None,
            )
        )
        return claim if taken.rowcount else None

    def _mine(self, s: Session, claim: Claim) -> IngestFile | None:
        return s.scalar(
            select(IngestFile).where(
                IngestFile.id == claim.id,
                IngestFile.claimed_by == self.worker_id,
                IngestFile.state == CLAIMED,
            )
        )

    def finish(
        self,
        claim: Claim,
        *,
        error: str | None,
        content_sha256: str | None = None,
        asset_id: int | None = None,
        scan_id: int | None = None,
    ) -> str | None:
        """Done, or failed with ``error``: the file's new state (None if the claim was
        lost meanwhile, e.g. the file changed and is queued again)."""
        with self._transaction() as s:
            row = self._mine(s, claim)
            if row is None:
                return None
            row.content_sha256, row.asset_id, row.scan_id = content_sha256, asset_id, scan_id
            if error is None:
                row.state, row.last_error, row.finished_at = DONE, None, self.now()
                row.claimed_by = row.claimed_at = row.next_attempt_at = None
            else:
                self._record_failure(row, error, due_now=False)
            return row.state

    def requeue(self, claim: Claim, *, delay: float = 0.0) -> None:
        """Give the file back without counting an attempt (stopped, or not ready)."""
        with self._transaction() as s:
            row = self._mine(s, claim)
            if row is not None:
                self._requeue(row, undo_attempt=True, delay=delay)

    def _requeue(self, row: IngestFile, *, undo_attempt: bool, delay: float = 0.0) -> None:
        row.attempts = max(row.attempts - (1 if undo_attempt else 0), 0)
        row.state = RETRY if row.attempts else WAITING
        row.claimed_by = row.claimed_at = None
        row.next_attempt_at = self.now() + timedelta(seconds=delay) if delay else None

    def _record_failure(self, row: IngestFile, error: str, *, due_now: bool) -> None:
        row.last_error = error
        row.claimed_by = row.claimed_at = None
        if row.attempts >= self.timing.max_attempts:
            row.state, row.finished_at, row.next_attempt_at = QUARANTINED, self.now(), None
            return
        row.state = RETRY
        wait = 0.0 if due_now else backoff(row.attempts, self.timing)
        row.next_attempt_at = self.now() + timedelta(seconds=wait)

    def report_progress(self, claim: Claim, fraction: float) -> None:
        """How far this worker's scan of a claimed file is, 0..1 (only while it holds it)."""
        with self._transaction() as s:
            s.execute(
                update(IngestFile)
                .where(IngestFile.id == claim.id, IngestFile.claimed_by == self.worker_id)
                .values(progress=round(fraction, 3))
            )

    def requeue_changed(self, claim: Claim, size: int, mtime_ns: int) -> None:
        """The claimed file changed since it was last looked at (still being written):
        record its new size and mtime, so it settles again before anyone claims it."""
        now = self.now()
        with self._transaction() as s:
            row = self._mine(s, claim)
            if row is None:
                return
            row.size_bytes, row.mtime_ns = size, mtime_ns
            row.stable_since = row.last_seen = now
            row.state, row.attempts, row.last_error = WAITING, 0, None  # a new version
            row.claimed_by = row.claimed_at = row.next_attempt_at = None

    def backlog(self, folders: Iterable[str], *, skip: Iterable[int] = ()) -> Backlog:
        """Why a pass might not be over although nothing could be claimed just now. Read
        without locks, so rows locked for a moment by another worker are counted as due:
        ``claim_next`` skips locked rows and cannot tell them from none.

        "Due" and "settling" are judged at one instant: a file that became due between
        two readings would be counted by neither, and the pass would end with it due."""
        folders, skip = list(folders), list(skip)
        now = self.now()
        with self._transaction() as s:
            mine = and_(IngestFile.folder.in_(folders), IngestFile.id.not_in(skip))
            due = s.scalar(select(func.count()).where(self._due(now), mine))
            held = s.scalar(
                select(func.count()).where(
                    IngestFile.state == CLAIMED,
                    IngestFile.claimed_by != self.worker_id,
                    IngestFile.folder.in_(folders),
                )
            )
            settling = self._unsettled(s, folders, now)
        return Backlog(int(due or 0), int(held or 0), settling)

    def unsettled(self, folders: Iterable[str]) -> list[tuple[str, datetime]]:
        """Files waiting to settle (or to be tried again after giving way to a copy) and
        when each may be ready."""
        with self._transaction() as s:
            return self._unsettled(s, list(folders), self.now())

    def _unsettled(
        self, s: Session, folders: list[str], now: datetime
    ) -> list[tuple[str, datetime]]:
        rows = list(
            s.execute(
                select(
                    IngestFile.path,
                    IngestFile.stable_since,
                    IngestFile.mtime_ns,
                    IngestFile.next_attempt_at,
                ).where(
                    IngestFile.state == WAITING,
                    IngestFile.folder.in_(folders),
                    ~self._due(now),
                )
            )
        )
        settle, quiet = self.timing.settle_seconds, self.timing.quiet_seconds
        return [
            (
                path,
                max(
                    stable + timedelta(seconds=settle),
                    datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC) + timedelta(seconds=quiet),
                    next_attempt or stable,
                ),
            )
            for path, stable, mtime_ns, next_attempt in rows
        ]

    def retry(self, paths: Sequence[str] | None = None) -> int:
        """Quarantined (or retry-waiting) files due again now, with a fresh count."""
        with self._transaction() as s:
            query = update(IngestFile).where(IngestFile.state.in_((QUARANTINED, RETRY)))
            if paths is not None:
                query = query.where(IngestFile.path.in_(list(paths)))
            result = s.execute(
                query.values(state=RETRY, attempts=0, next_attempt_at=None, finished_at=None)
            )
            return int(result.rowcount)

    def files(self, states: Sequence[str] | None = None) -> list[FileRow]:
        with self._transaction() as s:
            query = select(IngestFile).order_by(IngestFile.id)
            if states:
                query = query.where(IngestFile.state.in_(list(states)))
            return [
                FileRow(
                    r.path,
                    r.state,
                    r.attempts,
                    r.size_bytes,
                    r.stable_since,
                    r.next_attempt_at,
                    r.claimed_by,
                    r.last_error,
                    r.asset_id,
                    r.scan_id,
                    r.finished_at,
                )  # fmt: skip
                for r in s.scalars(query)
            ]

    def counts_by_state(self) -> dict[str, int]:
        with self._transaction() as s:
            query = select(IngestFile.state, func.count()).group_by(IngestFile.state)
            return {state: count for state, count in s.execute(query)}

    # -- runs -----------------------------------------------------------------------------
    def start_run(self, trigger: str) -> int:
        with self._transaction() as s:
            run = IngestRun(
                worker_id=self.worker_id,
                trigger=trigger,
                status=RUNNING,
                started_at=self.now(),
                problems=[],
                **vars(RunCounts()),
            )
            s.add(run)
            s.flush()
            return run.id

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        counts: RunCounts,
        problems: Sequence[str],
        summary_path: str | None,
        error: str | None = None,
    ) -> None:
        with self._transaction() as s:
            run = s.get_one(IngestRun, run_id)
            run.status, run.finished_at, run.error = status, self.now(), error
            run.problems, run.summary_path = list(problems), summary_path
            for name, value in vars(counts).items():
                setattr(run, name, value)

    def runs(self, limit: int = 20) -> list[IngestRun]:
        with self._transaction() as s:
            return list(s.scalars(select(IngestRun).order_by(IngestRun.id.desc()).limit(limit)))


def job_store(store: Store) -> Any:
    """APScheduler's job store on the engine's database (table made by the migrations)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    return SQLAlchemyJobStore(engine=store.engine, tablename=SchedulerJob.__tablename__)


def _chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = [
    "CLAIMED", "DONE", "GONE", "QUARANTINED", "RETRY", "WAITING", "Claim", "FileRow",
    "IngestQueue", "Observation", "QueueEntry", "QueueTiming", "RunCounts", "WorkerBusyError",
    "backoff", "job_store", "process_scope",
]  # fmt: skip
