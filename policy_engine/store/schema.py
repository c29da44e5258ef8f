"""The tables: SQLAlchemy 2 declarative models. Alembic migrations (``migrations/``) are
the only way they are created; a test proves the two agree.

What an audit needs, months later: the asset (by content hash), every scan of it with
the model identity and sampling that produced it, the sampled frames (a compact
embedding and a thumbnail each), the exact text of every rule set used, and the
decisions with their reasons and human overrides.

Decisions, reasons, overrides, frames, score sets and reports are append-only: the
engine only ever inserts them (the ORM refuses updates and deletes, and database
triggers do the same for anyone else, TRUNCATE included). A rule set's name, version,
text and hash, an asset's content hash and size, and a completed scan never change.
The current verdict of an asset is derived: its latest decision per rule set, with its
overrides applied in order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Unicode,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

HASH = 80  # "sha256:" + 64 hex digits
COMPLETED_SCAN = "completed"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite stores no zone, so naive values read back
    are UTC by construction."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: store times as timezone-aware UTC")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Asset(Base):
    """One piece of content, identified by the SHA-256 of its bytes."""

    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_sha256: Mapped[str] = mapped_column(String(HASH), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)  # where it was first seen
    probe: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    paths: Mapped[list[AssetPath]] = relationship(back_populates="asset")


class AssetPath(Base):
    """Every path an asset has been seen at (copies, renames)."""

    __tablename__ = "asset_paths"
    __table_args__ = (UniqueConstraint("asset_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)
    path: Mapped[str] = mapped_column(Text, index=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    asset: Mapped[Asset] = relationship(back_populates="paths")


class Scan(Base):
    """One analysis of one file: what was sampled, by which model, on what, how it went.

    ``asset_id`` is empty only for a file that could not even be read (no content hash).
    ``sampling_key`` fingerprints sampling + framing + interval: a scan is reused for
    the same content, weights and sampling_key."""

    __tablename__ = "scans"
    __table_args__ = (Index("ix_scans_reuse", "asset_id", "weights_sha256", "sampling_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"), index=True)
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)  # running|completed|failed
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    sampling: Mapped[dict[str, Any]] = mapped_column(JSON)
    sampling_key: Mapped[str] = mapped_column(String(HASH))
    model_name: Mapped[str] = mapped_column(Text)
    model_path: Mapped[str] = mapped_column(Text)
    model_revision: Mapped[str | None] = mapped_column(String(64))
    weights_sha256: Mapped[str] = mapped_column(String(HASH))
    device_asked: Mapped[str | None] = mapped_column(String(16))
    device_used: Mapped[str | None] = mapped_column(String(16))
    dtype: Mapped[str | None] = mapped_column(String(16))
    # what ran the image tower ("torch", "openvino 2026.4.1"); NULL: torch (older scans)
    runtime: Mapped[str | None] = mapped_column(String(64))
    embed_dim: Mapped[int | None] = mapped_column(Integer)
    logit_scale: Mapped[float | None] = mapped_column(Float)
    software_version: Mapped[str] = mapped_column(String(32))
    window_start: Mapped[float | None] = mapped_column(Float)
    window_end: Mapped[float | None] = mapped_column(Float)
    frame_count: Mapped[int | None] = mapped_column(Integer)
    frame_times: Mapped[bytes | None] = mapped_column(LargeBinary)  # float64 seconds
    # where each frame's span starts when not at its own time (``scenes`` sampling: at its
    # scene's cut), float64 seconds; empty: each frame stands from its own time
    frame_spans: Mapped[bytes | None] = mapped_column(LargeBinary)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    decoding: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the photosensitivity check (verdict, failing intervals, per-second series, settings);
    # empty when it was not run
    photosensitivity: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # how cuts were found (detector, threshold, frames seen, cuts); empty when not detected
    scenes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the object detectors' identities and every frame's detections (model, class,
    # confidence, box as shares of the picture); empty when no detector ran
    # (deferred: read only by rule sets with detector categories, not with every scan)
    detections: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
    # X-CLIP's identity, the prompts it scored and per window its extent and logits
    # (deferred likewise); empty when X-CLIP did not run
    xclip: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
    # the ingest worker that ran it (empty for `policy-engine scan`): a worker that dies
    # leaves its running scans to be marked failed by the one that notices
    worker_id: Mapped[str | None] = mapped_column(String(120), index=True)

    asset: Mapped[Asset | None] = relationship()


class Frame(Base):
    """One sampled frame: its time, its image embedding(s) as float16 bytes, and a JPEG
    thumbnail for evidence."""

    __tablename__ = "frames"
    __table_args__ = (UniqueConstraint("scan_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"))
    index: Mapped[int] = mapped_column(Integer)
    time: Mapped[float] = mapped_column(Float)
    crops: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # (crops, D) float16
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary)  # JPEG


class ScoreSet(Base):
    """Per-frame category probabilities of one scan for one set of categories (their
    names, prompts and null flags, fingerprinted). Threshold edits re-use these; a new
    prompt makes a new score set from the stored embeddings."""

    __tablename__ = "score_sets"
    __table_args__ = (UniqueConstraint("scan_id", "categories_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"))
    categories_sha256: Mapped[str] = mapped_column(String(HASH))
    categories: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    probabilities: Mapped[bytes] = mapped_column(LargeBinary)  # (F, K) float32
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SceneRecord(Base):
    """One scene (a shot between cuts) of a scan: its span, the sampled frames inside
    (``first_frame`` .. + ``frame_count``), the frame nearest its middle, and the
    normalised mean of its frames' embeddings (float16; empty for a scan without frames).
    Append-only."""

    __tablename__ = "scenes"
    __table_args__ = (UniqueConstraint("scan_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"))
    index: Mapped[int] = mapped_column(Integer)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    first_frame: Mapped[int] = mapped_column(Integer)
    frame_count: Mapped[int] = mapped_column(Integer)
    keyframe: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # (D,) float16


class SceneShares(Base):
    """Per-scene coverage of one scan under one category set (as score sets): the
    time-weighted share of each scene showing each category. Append-only."""

    __tablename__ = "scene_shares"
    __table_args__ = (UniqueConstraint("scan_id", "categories_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"))
    categories_sha256: Mapped[str] = mapped_column(String(HASH))
    categories: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    shares: Mapped[bytes] = mapped_column(LargeBinary)  # (S, K) float32
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleSetRecord(Base):
    """The exact text of a rule set, content-addressed."""

    __tablename__ = "rulesets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(HASH), unique=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    """A person who logs in. Never deleted (the audit trail names them): disabled."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)  # Argon2id, salt and parameters inside
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(Text)  # who made it, e.g. "root via cli"
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiToken(Base):
    """A client system's credential (scheduling, the asset manager): only a hash of the
    secret is kept; the secret is shown once, when it is made."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    lookup: Mapped[str] = mapped_column(String(12), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebSession(Base):
    """A browser's login, kept on the server so that logging out (or disabling the user)
    really ends it. Only a hash of the cookie's secret is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_name: Mapped[str] = mapped_column(String(64), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LoginAttempt(Base):
    """A failed login, for rate limits per account and per address (shared by every
    worker, as they share the database)."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleSetInForce(Base):
    """From when a rule file's version was in force: a row each time a different version
    of the file (keyed by its resolved path) loads. The latest row of a path is the
    version to fall back on when the file breaks, however old that version is (a revert
    to an earlier text is a new row). Append-only."""

    __tablename__ = "rulesets_in_force"
    __table_args__ = (Index("ix_rulesets_in_force_path", "path", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    ruleset_id: Mapped[int] = mapped_column(ForeignKey("rulesets.id"))
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DecisionRecord(Base):
    """What one rule set decided about one scan. Append-only."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_current", "asset_id", "ruleset_name", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"), index=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    ruleset_id: Mapped[int] = mapped_column(ForeignKey("rulesets.id"))
    ruleset_name: Mapped[str] = mapped_column(String(200))
    schedule: Mapped[str] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSON)
    review: Mapped[bool] = mapped_column(Boolean)
    warnings: Mapped[list[str]] = mapped_column(JSON)
    slots: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    cause: Mapped[str] = mapped_column(String(32))  # scan | reevaluate
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # how its category numbers were measured (analysis.scoring.MEASURE); NULL: decided
    # before that was recorded, on one softmax over the set's prompts (LEGACY_MEASURE)
    measure: Mapped[str | None] = mapped_column(String(32), nullable=True)

    ruleset: Mapped[RuleSetRecord] = relationship()
    scan: Mapped[Scan] = relationship()
    reasons: Mapped[list[ReasonRecord]] = relationship(order_by="ReasonRecord.position")
    overrides: Mapped[list[Override]] = relationship(order_by="Override.id")


class ReasonRecord(Base):
    """A rule that fired (or nearly did) with every clause measured and its evidence
    frames (indexes into the scan's frames). Append-only."""

    __tablename__ = "reasons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # fired | near_miss
    rule_id: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(Text)
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON)
    measurements: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class Override(Base):
    """A reviewer's ruling on a decision. Append-only: a later override supersedes."""

    __tablename__ = "overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    schedule: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[str] | None] = mapped_column(JSON)
    justification: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # who really acted (the authenticated account, or the OS user on the server's own
    # command line), and how: cli | api | app; None for rulings made before accounts
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    via: Mapped[str] = mapped_column(String(16), default="cli", server_default="cli")
    reason_code: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ReportRecord(Base):
    """A written report: where, its content hash, and the decisions it shows."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)
    decision_ids: Mapped[list[int]] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(HASH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- the review app ------------------------------------------------------------------------
class ReviewClaim(Base):
    """A reviewer's claim on an asset, so that two reviewers do not work on it at once;
    it lapses at ``expires_at``. A lock, not a record: it is taken over and released in
    place (what the reviewer then does is recorded as an override)."""

    __tablename__ = "review_claims"

    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))  # user:alice
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OverrideProposal(Base):
    """Four-eyes mode: a ruling that changes a level, waiting for a second reviewer to
    confirm it (only then is it an override). Append-only."""

    __tablename__ = "override_proposals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(200))
    via: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    schedule: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tags: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    justification: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OverrideConfirmation(Base):
    """The second reviewer's answer to a proposal: confirmed (with the override it made)
    or rejected. One per proposal (two reviewers confirming at once make one override).
    Append-only."""

    __tablename__ = "override_confirmations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("override_proposals.id"), unique=True)
    outcome: Mapped[str] = mapped_column(String(16))  # confirmed | rejected
    reviewer: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(200))
    via: Mapped[str] = mapped_column(String(16))
    justification: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the override it made (no foreign key: overrides keep their own TRUNCATE guard, and a
    # reference from here would answer a TRUNCATE of overrides before that guard does)
    override_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginEvent(Base):
    """Every login, refused login and logout, for the audit log. Append-only."""

    __tablename__ = "login_events"
    __table_args__ = (Index("ix_login_events_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # login | failed | locked | logout
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RevealedPicture(Base):
    """A frame's thumbnail where a detector's hidden classes (nudity) were pixelated, as
    it was: kept only with ``reveal_hidden_evidence``, shown only in the app to reviewers
    logged in there. Not append-only, unlike the frames: explicit material must be
    deletable (``policy-engine db purge-revealed``)."""

    __tablename__ = "revealed_pictures"
    __table_args__ = (
        UniqueConstraint("scan_id", "frame_index"),
        Index("ix_revealed_pictures_kept_at", "kept_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id"))
    frame_index: Mapped[int] = mapped_column(Integer)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)
    kept_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RevealedView(Base):
    """Each showing of a revealed picture (who, when, which frame), for the audit log.
    Append-only."""

    __tablename__ = "revealed_views"
    __table_args__ = (Index("ix_revealed_views_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64))
    scan_id: Mapped[int] = mapped_column(Integer)
    frame_index: Mapped[int] = mapped_column(Integer)
    asset_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- nightly ingest ------------------------------------------------------------------------
class IngestWorker(Base):
    """A running (or finished) ingest worker process. Claims name their worker; a claim
    whose worker stopped, or stopped sending heartbeats, may be taken over."""

    __tablename__ = "ingest_workers"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)  # host:pid:token
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    # pids mean something only inside one kernel boot and pid namespace: this names it
    scope: Mapped[str] = mapped_column(String(80))
    software_version: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_reason: Mapped[str | None] = mapped_column(Text)


class IngestFile(Base):
    """A file in an ingest folder, as last observed, and where it is in the queue.

    ``state``: waiting (seen, not yet settled or due) | claimed (a worker has it) | done
    | retry (failed; due again at ``next_attempt_at``) | quarantined (failed too often)
    | gone (vanished before it was done). A new size or mtime at the same path is a new
    version: the row starts again as waiting."""

    __tablename__ = "ingest_files"
    __table_args__ = (Index("ix_ingest_files_queue", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    folder: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stable_since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(ForeignKey("ingest_workers.id"), index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    content_sha256: Mapped[str | None] = mapped_column(String(HASH))
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"))
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id"))
    last_error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the file to read, where it is not ``path`` (an analysis job: path is "job:<id>")
    source_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    progress: Mapped[float | None] = mapped_column(Float, nullable=True)  # of a claimed scan


class AnalysisJob(Base):
    """Work handed to the engine through the API: a file (a server-side path or an
    upload) queued for the ingest workers as an ingest_files row, which carries its
    state, attempts, errors and results exactly as for a file in an ingest folder."""

    __tablename__ = "analysis_jobs"
    __table_args__ = (UniqueConstraint("created_by", "idempotency_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_by: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # path | upload
    path: Mapped[str] = mapped_column(Text)  # the file analysed
    original_name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ingest_file_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_files.id"), nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    webhook_delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    webhook_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Lease(Base):
    """A named lock held by a worker: one per content hash being scanned (so copies of
    one trailer are scanned once), and SQLite's single-worker lock."""

    __tablename__ = "leases"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(ForeignKey("ingest_workers.id"), index=True)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IngestRun(Base):
    """One pass over the ingest folders: when, by whom, what it found and did."""

    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker_id: Mapped[str] = mapped_column(ForeignKey("ingest_workers.id"), index=True)
    trigger: Mapped[str] = mapped_column(String(16))  # once | nightly | poll
    status: Mapped[str] = mapped_column(String(16))  # running | completed | stopped | failed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # files found; first seen (or changed); analysed; answered from an earlier scan of
    # the same content; failed; left alone (done, not yet due); still being written;
    # quarantined in this run
    seen: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    scanned: Mapped[int] = mapped_column(Integer, default=0)
    reused: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    waiting: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    problems: Mapped[list[str]] = mapped_column(JSON)
    summary_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class SchedulerJob(Base):
    """APScheduler 3's job store table (its own layout, made here by the migrations)."""

    __tablename__ = "scheduler_jobs"

    id: Mapped[str] = mapped_column(Unicode(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Float(25), index=True)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)


class AppendOnlyError(RuntimeError):
    pass


def _refuse(kind: str):  # type: ignore[no-untyped-def]
    def listener(mapper: Any, connection: Any, target: Any) -> None:
        raise AppendOnlyError(
            f"{target.__tablename__} are append-only: record a new row instead of {kind}"
        )

    return listener


def _refuse_changes_to(columns: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def listener(mapper: Any, connection: Any, target: Any) -> None:
        state = inspect(target)
        changed = [c for c in columns if state.attrs[c].history.has_changes()]
        if changed:
            raise AppendOnlyError(
                f"{target.__tablename__}: {', '.join(changed)} can never change (the audit"
                " trail refers to them); record a new row instead"
            )

    return listener


def _refuse_if_completed(mapper: Any, connection: Any, target: Any) -> None:
    history = inspect(target).attrs.status.history  # the stored status: deleted or unchanged
    if [*history.deleted, *history.unchanged][:1] == [COMPLETED_SCAN]:
        raise AppendOnlyError("scans: a completed scan is frozen (decisions stand on it)")


# columns that never change once a row exists (the 0004 migration's list, written out
# there because migrations never import application code)
FROZEN_COLUMNS: dict[type[Base], tuple[str, ...]] = {
    RuleSetRecord: ("name", "version", "text", "sha256"),
    Asset: ("content_sha256", "size_bytes"),
}

# The ORM refuses what the database triggers refuse (migrations 0001, 0004, 0013), so a
# bug in the engine reads as this error before it reaches the database.
for _model in (
    DecisionRecord, ReasonRecord, Override, Frame, ScoreSet, ReportRecord, RuleSetInForce,
    SceneRecord, SceneShares, OverrideProposal, OverrideConfirmation, LoginEvent,
    RevealedView,
):  # fmt: skip
    event.listen(_model, "before_update", _refuse("updating one"))
    event.listen(_model, "before_delete", _refuse("deleting one"))
for _model, _columns in FROZEN_COLUMNS.items():
    event.listen(_model, "before_update", _refuse_changes_to(_columns))
    event.listen(_model, "before_delete", _refuse("deleting one"))
event.listen(Scan, "before_update", _refuse_if_completed)
