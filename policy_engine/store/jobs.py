"""Analysis jobs: files handed in through the API, queued for the ingest workers.

A job is one row in ``analysis_jobs`` (who asked, with which idempotency key, which file)
and one in the ingest queue (``ingest_files``, folder ``api:jobs``, key ``job:<id>``, the
file in ``source_path``). Workers claim, retry and quarantine it exactly like a file found
in an ingest folder, so a restart or a kill loses nothing and repeats nothing; the job's
status is read off that queue row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from policy_engine.errors import StoreError
from policy_engine.store.database import retries_transient_errors
from policy_engine.store.ingest import (
    CLAIMED,
    DONE,
    GONE,
    JOBS_FOLDER,
    QUARANTINED,
    RETRY,
    WAITING,
)
from policy_engine.store.repository import StoreFacet
from policy_engine.store.schema import AnalysisJob, IngestFile, utcnow

# what a client sees of the queue states
_STATUS = {WAITING: "queued", RETRY: "queued", CLAIMED: "running", DONE: "succeeded",
           QUARANTINED: "failed", GONE: "failed"}  # fmt: skip


@dataclass(frozen=True)
class JobView:
    id: int
    status: str  # queued | running | succeeded | failed
    source: str  # path | upload
    name: str
    created_by: str
    created_at: datetime
    attempts: int
    error: str | None  # the last failure (a queued job may be waiting to try again)
    progress: float | None  # 0..1 while running (how much of the video is scanned)
    asset_id: int | None
    scan_id: int | None
    finished_at: datetime | None


@retries_transient_errors
class Jobs(StoreFacet):
    def submit(
        self,
        path: str,
        *,
        source: str,
        name: str,
        created_by: str,
        idempotency_key: str | None = None,
        size: int,
        mtime_ns: int,
        webhook_url: str | None = None,
    ) -> tuple[JobView, bool]:
        """Queue ``path`` (resolved, checked by the caller); returns the job and whether
        it is new. The same idempotency key from the same caller returns the first job."""
        if idempotency_key is not None:
            found = self._by_key(created_by, idempotency_key)
            if found is not None:
                return found, False
        try:
            with self._transaction() as s:
                job = AnalysisJob(
                    created_by=created_by, idempotency_key=idempotency_key, source=source,
                    path=path, original_name=name, webhook_url=webhook_url,
                )  # fmt: skip
                s.add(job)
                s.flush()
                now = utcnow()
                queued = IngestFile(
                    path=f"job:{job.id}", folder=JOBS_FOLDER, source_path=path,
                    size_bytes=size, mtime_ns=mtime_ns, first_seen=now,
                    stable_since=now - timedelta(days=1),  # whole when handed in
                    last_seen=now, state=WAITING, attempts=0,
                )  # fmt: skip
                s.add(queued)
                s.flush()
                job.ingest_file_id = queued.id
                job_id = job.id
        except StoreError as exc:
            if idempotency_key is not None and isinstance(exc.__cause__, IntegrityError):
                found = self._by_key(created_by, idempotency_key)  # a concurrent twin won
                if found is not None:
                    return found, False
            raise
        view = self.get(job_id)
        assert view is not None
        return view, True

    def _by_key(self, created_by: str, key: str) -> JobView | None:
        with self._transaction() as s:
            job_id = s.scalar(
                select(AnalysisJob.id).where(
                    AnalysisJob.created_by == created_by, AnalysisJob.idempotency_key == key
                )
            )
        return self.get(job_id) if job_id is not None else None

    def get(self, job_id: int) -> JobView | None:
        with self._transaction() as s:
            row = s.execute(
                select(AnalysisJob, IngestFile)
                .join(IngestFile, IngestFile.id == AnalysisJob.ingest_file_id)
                .where(AnalysisJob.id == job_id)
            ).first()
        if row is None:
            return None
        job, queued = row
        return JobView(
            id=job.id,
            status=_STATUS.get(queued.state, queued.state),
            source=job.source,
            name=job.original_name,
            created_by=job.created_by,
            created_at=job.created_at,
            attempts=queued.attempts,
            error=queued.last_error,
            progress=queued.progress if queued.state == CLAIMED else None,
            asset_id=queued.asset_id,
            scan_id=queued.scan_id,
            finished_at=queued.finished_at,
        )

    def queue_id(self, job_id: int) -> int:
        """The ingest queue row that carries job ``job_id``."""
        with self._transaction() as s:
            return int(s.get_one(AnalysisJob, job_id).ingest_file_id)

    def webhook_of(self, queue_id: int) -> tuple[int, str] | None:
        """The job behind an ingest queue row, if it wants a webhook not yet delivered."""
        with self._transaction() as s:
            row = s.execute(
                select(AnalysisJob.id, AnalysisJob.webhook_url).where(
                    AnalysisJob.ingest_file_id == queue_id,
                    AnalysisJob.webhook_url.is_not(None),
                    AnalysisJob.webhook_delivered_at.is_(None),
                )
            ).first()
        return (row[0], row[1]) if row else None

    def record_webhook(self, job_id: int, attempts: int, error: str | None) -> None:
        with self._transaction() as s:
            job = s.get_one(AnalysisJob, job_id)
            job.webhook_attempts += attempts
            job.webhook_error = error
            if error is None:
                job.webhook_delivered_at = utcnow()
