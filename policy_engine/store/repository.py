"""Reading and writing what the engine knows. Every query lives here.

Callers pass and receive plain values and dataclasses (numpy arrays for frame data);
ORM rows come back only for read-only views (history, show), fully loaded and detached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, and_, bindparam, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload, sessionmaker

from policy_engine.errors import ConfigError, StoreError
from policy_engine.policy.evaluate import Decision, Reason
from policy_engine.policy.model import RuleSet
from policy_engine.policy.overrides import Ruling, ruling_in_force
from policy_engine.store import database
from policy_engine.store.schema import (
    Asset,
    AssetPath,
    DecisionRecord,
    Frame,
    Override,
    ReasonRecord,
    ReportRecord,
    RevealedPicture,
    RuleSetInForce,
    RuleSetRecord,
    Scan,
    ScoreSet,
    utcnow,
)

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
_IN_CHUNK = 500  # ids per IN (...) list: well under every database's parameter limit
HASH_PREFIX_MIN = 6  # hex digits of a content hash that may name an asset


# -- values in and out ----------------------------------------------------------------------
@dataclass(frozen=True)
class ScanModel:
    """The model as far as it is known before (name, path, weights) and after loading."""

    name: str
    path: str
    weights_sha256: str
    revision: str | None = None
    device_asked: str | None = None
    device_used: str | None = None
    dtype: str | None = None
    runtime: str | None = None  # "torch", "openvino <version>"
    embed_dim: int | None = None
    logit_scale: float | None = None


@dataclass(frozen=True)
class ScanFrames:
    """What a completed scan leaves behind for re-evaluation and reports."""

    times: np.ndarray  # (F,) seconds
    embeddings: Sequence[np.ndarray]  # per frame (crops, D)
    thumbnails: Sequence[bytes | None]
    window_start: float
    window_end: float
    span_starts: np.ndarray | None = None  # where each frame's span starts (scenes sampling)
    # per frame, the thumbnail unpixelated where hidden classes were pixelated (None:
    # nothing hidden); empty: none kept
    revealed: Sequence[bytes | None] = ()


@dataclass(frozen=True)
class StoredScan:
    """A completed scan, as re-evaluation needs it (no embeddings until asked)."""

    id: int
    asset_id: int
    path: str
    model_name: str
    model_path: str
    weights_sha256: str
    logit_scale: float
    window_start: float
    window_end: float
    interval_seconds: float
    times: np.ndarray
    finished_at: datetime
    part: str | None = None  # how the scan was limited (a window, a frame cap), if it was
    photosensitivity: dict[str, Any] | None = None  # the check's summary, if it was run
    span_starts: np.ndarray | None = None  # where frames' spans start, if not at their time


def _part_of_video(sampling: dict[str, Any]) -> str | None:
    """How a scan's sampling left part of the video out, in words; None if it did not."""
    limits = []
    if sampling.get("start") or sampling.get("end") is not None:
        end = sampling.get("end")
        limits.append(
            f"{sampling.get('start') or 0:g} s to {'the end' if end is None else f'{end:g} s'}"
        )
    if sampling.get("max_frames"):
        limits.append(f"at most {sampling['max_frames']} frames")
    return ", ".join(limits) or None


@dataclass(frozen=True)
class AssetRow:
    """An asset as the catalogue lists it: no probe, no paths."""

    id: int
    path: str  # where it was first seen
    content_sha256: str
    last_scanned: datetime | None  # when its latest completed scan finished


@dataclass(frozen=True)
class ScanSummary:
    """A scan of any status, as an asset's overview names it (no frames, no sampling)."""

    id: int
    status: str
    finished_at: datetime | None
    model_name: str
    weights_sha256: str
    error: str | None
    photosensitivity: dict[str, Any] | None  # the check's summary, if it was run
    scenes: dict[str, Any] | None  # how scenes were detected, if they were


@dataclass(frozen=True)
class NewDecision:
    scan_id: int
    asset_id: int
    ruleset: RuleSet
    decision: Decision
    cause: str  # scan | reevaluate


@dataclass(frozen=True)
class OverrideView:
    id: int
    reviewer: str
    schedule: str | None
    tags: tuple[str, ...] | None
    justification: str
    created_at: datetime
    actor: str | None = None  # who really acted; None for rulings made before accounts
    via: str = "cli"
    reason_code: str | None = None


@dataclass(frozen=True)
class CurrentDecision:
    """The latest decision of one rule set about one asset, with its overrides."""

    id: int
    asset_id: int
    scan_id: int
    ruleset_name: str
    ruleset_version: str
    ruleset_sha256: str
    schedule: str
    tags: tuple[str, ...]
    review: bool
    warnings: tuple[str, ...]
    fired: tuple[str, ...]
    created_at: datetime
    overrides: tuple[OverrideView, ...] = ()  # oldest first
    measure: str | None = None  # how its numbers were measured (None: before that was kept)
    overrides_before: int = field(default=0)  # overrides on earlier decisions of this pair

    @property
    def override(self) -> OverrideView | None:
        """The latest override, if any."""
        return self.overrides[-1] if self.overrides else None

    def ruled(self) -> Ruling:
        """The decision as it stands after its overrides, applied in order."""
        return ruling_in_force(self)


# -- codecs ---------------------------------------------------------------------------------
def embedding_bytes(vectors: np.ndarray) -> bytes:
    """(crops, D) unit vectors as float16: half the bytes, cosine error ~1e-4."""
    return np.ascontiguousarray(vectors, dtype=np.float16).tobytes()


def embedding_from_bytes(data: bytes, crops: int) -> np.ndarray:
    return np.frombuffer(data, dtype=np.float16).astype(np.float32).reshape(crops, -1)


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _IN_CHUNK):
        yield ids[start : start + _IN_CHUNK]


# -- statements the service runs on every request ---------------------------------------
# Built once: making a statement (coercing each clause) cost more CPU than running it, and
# a statement object kept keeps its cache key. ``:ids`` is an expanding IN list.
def _ids() -> Any:
    return bindparam("ids", expanding=True)


# per asset, through the index on scans.asset_id (an IN list over all scans lets SQLite
# choose the index on status, which every completed scan shares, and read them all)
_LAST_SCANNED = (
    select(func.max(Scan.finished_at))
    .where(Scan.asset_id == Asset.id, Scan.status == COMPLETED)
    .correlate(Asset)
    .scalar_subquery()
)
_ASSET_COLUMNS = select(Asset.id, Asset.path, Asset.content_sha256, _LAST_SCANNED)
_ASSET_ROWS = (
    _ASSET_COLUMNS.where(Asset.id > bindparam("after")).order_by(Asset.id)
    .limit(bindparam("limit"))
)  # fmt: skip
_ASSET_ROWS_NEWEST = (  # newest first: the cursor is the last id shown, counting down
    _ASSET_COLUMNS.where(Asset.id < bindparam("after")).order_by(Asset.id.desc())
    .limit(bindparam("limit"))
)  # fmt: skip
_ANY_ASSET_AFTER = select(Asset.id).where(Asset.id > bindparam("after")).limit(1)
_ANY_ASSET_BEFORE = select(Asset.id).where(Asset.id < bindparam("after")).limit(1)
_NO_ASSET_ABOVE = 2**31 - 1  # newest first from the start: above every id (INTEGER)


def _current_statement(asset_ids: bool) -> Any:
    """The latest decision per (asset, rule set name), as the columns a CurrentDecision
    holds (not whole rows: no slots); of the assets ``:ids`` if ``asset_ids``."""
    d = DecisionRecord
    latest = select(func.max(d.id)).group_by(d.asset_id, d.ruleset_name)
    if asset_ids:
        latest = latest.where(d.asset_id.in_(_ids()))
    return (
        select(d.id, d.asset_id, d.scan_id, d.ruleset_name, d.schedule, d.tags, d.review,
               d.warnings, d.created_at, RuleSetRecord.version, RuleSetRecord.sha256,
               d.measure)
        .join(RuleSetRecord, RuleSetRecord.id == d.ruleset_id)
        .where(d.id.in_(latest))
    )  # fmt: skip


_CURRENT_OF = _current_statement(asset_ids=True)
_FIRED = (
    select(ReasonRecord.decision_id, ReasonRecord.rule_id)
    .where(ReasonRecord.decision_id.in_(_ids()), ReasonRecord.kind == "fired")
    .order_by(ReasonRecord.decision_id, ReasonRecord.position)
)
_OVERRIDES = (  # the columns an OverrideView holds, with the decision's pair
    select(
        *(getattr(Override, f.name) for f in fields(OverrideView)),
        Override.decision_id, DecisionRecord.asset_id, DecisionRecord.ruleset_name,
    )
    .join(DecisionRecord, DecisionRecord.id == Override.decision_id)
    .order_by(Override.id)
)  # fmt: skip
_OVERRIDES_OF = _OVERRIDES.where(DecisionRecord.asset_id.in_(_ids()))
_SCAN_SUMMARIES = (
    select(Scan.id, Scan.status, Scan.finished_at, Scan.model_name, Scan.weights_sha256,
           Scan.error, Scan.photosensitivity, Scan.scenes)
    .where(Scan.asset_id == bindparam("asset_id"))
    .order_by(Scan.id)
)  # fmt: skip
_COMPLETED_SCANS_OF = (
    select(Scan)
    .where(Scan.asset_id == bindparam("asset_id"), Scan.status == COMPLETED)
    .order_by(Scan.id.desc())
)
_FRAME_EMBEDDINGS = (
    select(Frame.scan_id, Frame.crops, Frame.embedding)
    .where(Frame.scan_id.in_(_ids()))
    .order_by(Frame.scan_id, Frame.index)
)
_REPORTS = (
    select(ReportRecord)
    .where(ReportRecord.asset_id == bindparam("asset_id"))
    .order_by(ReportRecord.id)
)


def _override_view(row: Any) -> OverrideView:
    """An override row (or a row of ``_OVERRIDES``'s columns) as a value."""
    return OverrideView(
        id=row.id,
        reviewer=row.reviewer,
        schedule=row.schedule,
        tags=tuple(row.tags) if row.tags is not None else None,
        justification=row.justification,
        created_at=row.created_at,
        actor=row.actor,
        via=row.via,
        reason_code=row.reason_code,
    )


def _reason_row(position: int, kind: str, reason: Reason) -> ReasonRecord:
    return ReasonRecord(
        position=position,
        kind=kind,
        rule_id=reason.rule_id,
        description=reason.description,
        reference=reason.reference,
        outcome=asdict(reason.outcome),
        measurements=[asdict(m) for m in reason.measurements],
        evidence=[asdict(e) for e in reason.evidence],
    )


def _latest_completed(since: datetime | None) -> Any:
    """The condition: a scan is its asset's latest completed one (finished since ``since``)."""
    latest = (
        select(func.max(Scan.id))
        .where(Scan.status == COMPLETED, Scan.asset_id.is_not(None))
        .group_by(Scan.asset_id)
    )
    condition = Scan.id.in_(latest)
    return condition if since is None else and_(condition, Scan.finished_at >= since)


@database.retries_transient_errors
class Store:
    """The database of assets, scans, frames, rule sets, decisions and overrides. Every
    operation retries transient database errors (a restart, a lock) for a bounded time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.transient_retry_s = database.TRANSIENT_RETRY_S
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        on_create: Callable[[str], None] | None = None,
        pool_size: int | None = None,
        application_name: str | None = None,
    ) -> Store:
        """Connect, make a new database's schema, refuse one whose schema is behind;
        ``pool_size`` caps the connections to a server database, and
        ``application_name`` names them there."""
        engine = database.make_engine(url, pool_size=pool_size, application_name=application_name)
        # making a schema holds a lock on one connection while migrating on another
        schema = engine if pool_size is None else database.make_engine(url)
        try:
            database.ensure_schema(schema, on_create=on_create)
        finally:
            if schema is not engine:
                schema.dispose()
        return cls(engine)

    @property
    def url(self) -> str:
        return database.describe(self.engine.url)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with database.database_errors(self.engine), self._sessions() as session:
            session.begin()
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            database.commit(session, self.engine)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for reading only, without an ORM session (a session costs more
        than a small query, and these reads build their own values): for the
        statements the service runs on every request."""
        with database.database_errors(self.engine), self.engine.connect() as connection:
            yield connection

    # -- assets --------------------------------------------------------------------------
    def record_asset(
        self, path: str, content_sha256: str, size_bytes: int, probe: dict[str, Any] | None
    ) -> int:
        """The asset with this content (made on first sight), and this path noted for it."""
        with self._transaction() as s:
            asset = s.scalar(select(Asset).where(Asset.content_sha256 == content_sha256))
            if asset is None:
                asset = Asset(
                    content_sha256=content_sha256, size_bytes=size_bytes, path=path, probe=probe
                )
                s.add(asset)
                s.flush()
            elif asset.probe is None and probe is not None:
                asset.probe = probe
            known = s.scalar(
                select(AssetPath.id).where(AssetPath.asset_id == asset.id, AssetPath.path == path)
            )
            if known is None:
                s.add(AssetPath(asset_id=asset.id, path=path))
            return asset.id

    def find_assets(self, ref: str) -> list[Asset]:
        """Assets by id, content hash (or a prefix of its hex), or a path they were seen at."""
        with self._transaction() as s:
            seen_at = select(AssetPath.asset_id).where(
                or_(AssetPath.path == ref, AssetPath.path.endswith("/" + ref, autoescape=True))
            )
            conditions = [Asset.id.in_(seen_at)]
            digits = ref.removeprefix("sha256:")
            if len(digits) >= HASH_PREFIX_MIN and all(c in "0123456789abcdef" for c in digits):
                conditions.append(Asset.content_sha256.startswith("sha256:" + digits))
            if ref.isdigit():
                conditions.append(Asset.id == int(ref))
            return list(s.scalars(select(Asset).where(or_(*conditions)).order_by(Asset.id)))

    def asset_rows(
        self, *, after: int, limit: int, name_contains: str | None = None,
        newest_first: bool = False,
    ) -> list[AssetRow]:  # fmt: skip
        """Assets by id after ``after`` (a cursor; 0: from the start), each with when it
        was last scanned; ``name_contains``: any path it was seen at contains it
        (case-insensitive). ``newest_first``: by descending id (the newest first seen)."""
        if name_contains and "\x00" in name_contains:
            return []  # no path holds a NUL (and it would end a LIKE pattern early)
        query = _ASSET_ROWS_NEWEST if newest_first else _ASSET_ROWS
        after = after or (_NO_ASSET_ABOVE if newest_first else 0)
        if name_contains:
            query = query.where(Asset.id.in_(self._seen_at(name_contains)))
        with self._reading() as c:
            return [AssetRow(*row) for row in c.execute(query, {"after": after, "limit": limit})]

    def any_asset_after(
        self, after: int, name_contains: str | None = None, newest_first: bool = False
    ) -> bool:
        """Whether ``asset_rows`` would find any asset after ``after``."""
        if name_contains and "\x00" in name_contains:
            return False
        query = _ANY_ASSET_BEFORE if newest_first else _ANY_ASSET_AFTER
        after = after or (_NO_ASSET_ABOVE if newest_first else 0)
        if name_contains:
            query = query.where(Asset.id.in_(self._seen_at(name_contains)))
        with self._reading() as c:
            return c.scalar(query, {"after": after}) is not None

    @staticmethod
    def _seen_at(name_contains: str) -> Any:
        """Assets seen at a path that contains this text (case-insensitive)."""
        return select(AssetPath.asset_id).where(
            func.lower(AssetPath.path).contains(name_contains.lower(), autoescape=True)
        )

    def asset(self, asset_id: int) -> Asset | None:
        with self._transaction() as s:
            return s.get(Asset, asset_id)

    def assets_by_id(self, asset_ids: Sequence[int]) -> dict[int, Asset]:
        with self._transaction() as s:
            found: dict[int, Asset] = {}
            for chunk in _chunks(list(asset_ids)):
                found.update((a.id, a) for a in s.scalars(select(Asset).where(Asset.id.in_(chunk))))
            return found

    def assets(self) -> list[Asset]:
        with self._transaction() as s:
            return list(s.scalars(select(Asset).order_by(Asset.id)))

    # -- scans ---------------------------------------------------------------------------
    def reusable_scan(
        self,
        asset_id: int,
        weights_sha256: str,
        sampling_key: str,
        runtime: str = "torch",
        *,
        detectors: Sequence[str] = (),
    ) -> int | None:
        """The latest completed scan of this content with these weights and sampling, its
        image tower run by this ``runtime`` (``torch``, ``openvino``: any version), that
        holds the boxes of every one of ``detectors`` (as its sampling records them)."""
        same_runtime = Scan.runtime.startswith(f"{runtime} ") | (Scan.runtime == runtime)
        if runtime == "torch":
            same_runtime = same_runtime | Scan.runtime.is_(None)  # scans from before
        needed = set(detectors)
        with self._transaction() as s:
            candidates = s.execute(
                select(Scan.id, Scan.sampling)
                .where(
                    Scan.asset_id == asset_id,
                    Scan.weights_sha256 == weights_sha256,
                    Scan.sampling_key == sampling_key,
                    Scan.status == COMPLETED,
                    same_runtime,
                )
                .order_by(Scan.id.desc())
            )
            for scan_id, sampling in candidates:
                if needed <= set((sampling or {}).get("detectors", ())):
                    return int(scan_id)
        return None

    def start_scan(
        self,
        *,
        path: str,
        asset_id: int | None,
        sampling: dict[str, Any],
        sampling_key: str,
        model: ScanModel,
        software_version: str,
        worker_id: str | None = None,
    ) -> int:
        with self._transaction() as s:
            scan = Scan(
                asset_id=asset_id,
                path=path,
                status=RUNNING,
                sampling=sampling,
                sampling_key=sampling_key,
                software_version=software_version,
                worker_id=worker_id,
                **self._model_columns(model),
            )
            s.add(scan)
            s.flush()
            return scan.id

    @staticmethod
    def _model_columns(model: ScanModel) -> dict[str, Any]:
        return {
            "model_name": model.name,
            "model_path": model.path,
            "model_revision": model.revision,
            "weights_sha256": model.weights_sha256,
            "device_asked": model.device_asked,
            "device_used": model.device_used,
            "dtype": model.dtype,
            "runtime": model.runtime,
            "embed_dim": model.embed_dim,
            "logit_scale": model.logit_scale,
        }

    def complete_scan(
        self,
        scan_id: int,
        *,
        model: ScanModel,
        frames: ScanFrames,
        timings: dict[str, Any],
        decoding: dict[str, Any],
        photosensitivity: dict[str, Any] | None = None,
        scenes: Any = None,  # store.scenes.ScanScenes
        detections: dict[str, Any] | None = None,
        xclip: dict[str, Any] | None = None,
    ) -> None:
        """Frames (and scenes) and the scan's completion in one transaction: all or
        nothing, so a scan's frames are searchable from the moment it completes."""
        from policy_engine.store.scenes import scene_rows

        times = np.asarray(frames.times, dtype=np.float64)
        with self._transaction() as s:
            scan = s.get_one(Scan, scan_id)
            for column, value in self._model_columns(model).items():
                setattr(scan, column, value)
            scan.status = COMPLETED
            scan.finished_at = utcnow()
            scan.window_start = frames.window_start
            scan.window_end = frames.window_end
            scan.frame_count = len(times)
            scan.frame_times = times.tobytes()
            if frames.span_starts is not None:
                scan.frame_spans = np.asarray(frames.span_starts, dtype=np.float64).tobytes()
            scan.timings = timings
            scan.decoding = decoding
            scan.photosensitivity = photosensitivity
            scan.detections = detections
            scan.xclip = xclip
            scan.scenes = scenes.summary if scenes is not None else None
            if scenes is not None:
                s.add_all(scene_rows(scan_id, scenes))
            s.add_all(
                Frame(
                    scan_id=scan_id,
                    index=index,
                    time=float(time),
                    crops=len(vectors),
                    embedding=embedding_bytes(vectors),
                    thumbnail=thumb,
                )
                for index, (time, vectors, thumb) in enumerate(
                    zip(times, frames.embeddings, frames.thumbnails, strict=True)
                )
            )
            s.add_all(  # kept apart from the frames: deletable (store.evidence)
                RevealedPicture(scan_id=scan_id, frame_index=index, jpeg=jpeg)
                for index, jpeg in enumerate(frames.revealed)
                if jpeg is not None
            )

    def fail_scan(self, scan_id: int, reason: str) -> None:
        with self._transaction() as s:
            scan = s.get_one(Scan, scan_id)
            scan.status = FAILED
            scan.error = reason
            scan.finished_at = utcnow()

    def scan(self, scan_id: int) -> Scan:
        with self._transaction() as s:
            return s.get_one(Scan, scan_id)

    def completed_scans(
        self, *, since: datetime | None = None, scan_ids: Sequence[int] | None = None
    ) -> list[StoredScan]:
        """Each asset's latest completed scan (finished since ``since``), or these scans."""
        with self._transaction() as s:
            if scan_ids is None:
                query = select(Scan).where(_latest_completed(since)).order_by(Scan.id)
                rows = list(s.scalars(query))
            else:
                rows = []
                for chunk in _chunks(list(scan_ids)):
                    rows.extend(s.scalars(select(Scan).where(Scan.id.in_(chunk))))
                rows.sort(key=lambda r: r.id)
        return [self._stored_scan(row) for row in rows if row.status == COMPLETED]

    def latest_scan_ids(self, *, since: datetime | None = None) -> list[int]:
        """The ids of each asset's latest completed scan (finished since ``since``): what
        ``completed_scans`` reads, without reading it (to divide an archive into parts)."""
        with self._transaction() as s:
            query = select(Scan.id).where(_latest_completed(since)).order_by(Scan.id)
            return list(s.scalars(query))

    def asset_scans(self, asset_id: int) -> list[StoredScan]:
        """Every completed scan of an asset, the newest first."""
        with self._transaction() as s:
            rows = s.scalars(_COMPLETED_SCANS_OF, {"asset_id": asset_id})
            return [self._stored_scan(row) for row in rows]

    def scan_summaries(self, asset_id: int) -> list[ScanSummary]:
        """Every scan of an asset, whatever its status, the oldest first."""
        with self._reading() as c:
            return [ScanSummary(*row) for row in c.execute(_SCAN_SUMMARIES, {"asset_id": asset_id})]

    @staticmethod
    def _stored_scan(row: Scan) -> StoredScan:
        assert row.asset_id is not None and row.finished_at is not None
        return StoredScan(
            id=row.id,
            asset_id=row.asset_id,
            path=row.path,
            model_name=row.model_name,
            model_path=row.model_path,
            weights_sha256=row.weights_sha256,
            logit_scale=float(row.logit_scale or 100.0),
            window_start=float(row.window_start or 0.0),
            window_end=float(row.window_end or 0.0),
            interval_seconds=float(row.sampling.get("interval", 10.0)),
            times=np.frombuffer(row.frame_times or b"", dtype=np.float64),
            finished_at=row.finished_at,
            part=_part_of_video(row.sampling or {}),
            photosensitivity=row.photosensitivity,
            span_starts=(
                np.frombuffer(row.frame_spans, dtype=np.float64) if row.frame_spans else None
            ),
        )

    def scan_detections(self, scan_ids: Sequence[int]) -> dict[int, dict[str, Any] | None]:
        """Per scan, the object detectors' identities and boxes stored with it (None: no
        detector ran), read only where a rule set has detector categories."""
        return self._scan_json(Scan.detections, scan_ids)

    def scan_xclip(self, scan_ids: Sequence[int]) -> dict[int, dict[str, Any] | None]:
        """Per scan, X-CLIP's windows stored with it (None: X-CLIP did not run), read only
        where a rule set has X-CLIP categories."""
        return self._scan_json(Scan.xclip, scan_ids)

    def _scan_json(self, column: Any, scan_ids: Sequence[int]) -> dict[int, dict[str, Any] | None]:
        found: dict[int, dict[str, Any] | None] = dict.fromkeys(scan_ids)
        with self._transaction() as s:
            for chunk in _chunks(list(scan_ids)):
                for scan_id, value in s.execute(select(Scan.id, column).where(Scan.id.in_(chunk))):
                    found[scan_id] = value
        return found

    def frame_embeddings(self, scan_ids: Sequence[int]) -> dict[int, list[np.ndarray]]:
        """Per scan, each frame's (crops, D) float32 embeddings, in frame order."""
        result: dict[int, list[np.ndarray]] = {i: [] for i in scan_ids}
        with self._reading() as c:
            for chunk in _chunks(list(scan_ids)):
                for scan_id, crops, data in c.execute(_FRAME_EMBEDDINGS, {"ids": chunk}):
                    result[scan_id].append(embedding_from_bytes(data, crops))
        return result

    def thumbnails(self, scan_id: int, indexes: Iterable[int]) -> dict[int, bytes]:
        with self._transaction() as s:
            query = select(Frame.index, Frame.thumbnail).where(
                Frame.scan_id == scan_id, Frame.index.in_(sorted(set(indexes)))
            )
            return {i: data for i, data in s.execute(query) if data is not None}

    def frames_with_thumbnails(self, scan_id: int, indexes: Iterable[int]) -> list[int]:
        """Which of these frames have a picture (without reading the pictures)."""
        with self._transaction() as s:
            query = select(Frame.index).where(
                Frame.scan_id == scan_id,
                Frame.index.in_(sorted(set(indexes))),
                Frame.thumbnail.is_not(None),
            )
            return sorted(s.scalars(query))

    # -- score sets ----------------------------------------------------------------------
    def score_sets(self, scan_ids: Sequence[int], categories_sha256: str) -> dict[int, np.ndarray]:
        """Stored (F, K) float32 probabilities for these scans under this category set."""
        found: dict[int, np.ndarray] = {}
        with self._transaction() as s:
            for chunk in _chunks(list(scan_ids)):
                query = select(ScoreSet.scan_id, ScoreSet.probabilities).where(
                    ScoreSet.scan_id.in_(chunk), ScoreSet.categories_sha256 == categories_sha256
                )
                for scan_id, data in s.execute(query):
                    found[scan_id] = np.frombuffer(data, dtype=np.float32)
        return found

    def save_score_sets(
        self,
        categories_sha256: str,
        categories: list[dict[str, Any]],
        probabilities: dict[int, np.ndarray],
    ) -> None:
        """Keep probabilities for re-use; sets already stored (by another run) are kept."""
        if not probabilities:
            return
        with self._transaction() as s:
            existing = set()
            for chunk in _chunks(list(probabilities)):
                existing.update(
                    s.scalars(
                        select(ScoreSet.scan_id).where(
                            ScoreSet.scan_id.in_(chunk),
                            ScoreSet.categories_sha256 == categories_sha256,
                        )
                    )
                )
            s.add_all(
                ScoreSet(
                    scan_id=scan_id,
                    categories_sha256=categories_sha256,
                    categories=categories,
                    probabilities=np.ascontiguousarray(probs, dtype=np.float32).tobytes(),
                )
                for scan_id, probs in probabilities.items()
                if scan_id not in existing
            )

    # -- rule sets and decisions --------------------------------------------------------
    def _ruleset_ids(self, s: Session, rulesets: Iterable[RuleSet]) -> dict[str, int]:
        """Rule set id by content hash, storing texts not seen before (a text another
        worker stores at the same moment is not an error)."""
        wanted = {r.sha256: r for r in rulesets}
        query = select(RuleSetRecord.sha256, RuleSetRecord.id).where(
            RuleSetRecord.sha256.in_(list(wanted))
        )
        known = {sha for sha, _ in s.execute(query)}
        missing = [
            {
                "sha256": sha,
                "name": ruleset.name,
                "version": ruleset.version,
                "text": ruleset.text,
                "path": ruleset.path,
                "first_seen": utcnow(),
            }
            for sha, ruleset in wanted.items()
            if sha not in known
        ]
        if missing:
            dialect = postgresql if self.engine.url.get_backend_name() == "postgresql" else sqlite
            s.execute(dialect.insert(RuleSetRecord).on_conflict_do_nothing(), missing)
        return {sha: ruleset_id for sha, ruleset_id in s.execute(query)}

    def record_rules_in_force(self, by_path: Mapping[str, RuleSet]) -> None:
        """The rule sets now in force, by the resolved path of their file: each text is
        kept, and a path whose version changed (a new text, or a revert to an older one)
        gets a row saying since when."""
        if not by_path:
            return
        with self._transaction() as s:
            ids = self._ruleset_ids(s, by_path.values())
            latest = self._latest_in_force(s, list(by_path))
            s.add_all(
                RuleSetInForce(path=path, ruleset_id=ids[ruleset.sha256], since=utcnow())
                for path, ruleset in by_path.items()
                if latest.get(path) != ids[ruleset.sha256]
            )

    @staticmethod
    def _latest_in_force(s: Session, paths: list[str]) -> dict[str, int]:
        newest = (
            select(func.max(RuleSetInForce.id))
            .where(RuleSetInForce.path.in_(paths))
            .group_by(RuleSetInForce.path)
        )
        rows = s.execute(
            select(RuleSetInForce.path, RuleSetInForce.ruleset_id).where(
                RuleSetInForce.id.in_(newest)
            )
        )
        return {path: ruleset_id for path, ruleset_id in rows}

    def last_good_ruleset(self, path: str) -> tuple[str, datetime] | None:
        """The text of the rule set last in force from ``path`` (a resolved path; see
        ``record_rules_in_force``), and since when, however old that text is."""
        with self._transaction() as s:
            row = s.execute(
                select(RuleSetRecord.text, RuleSetInForce.since)
                .join(RuleSetRecord, RuleSetRecord.id == RuleSetInForce.ruleset_id)
                .where(RuleSetInForce.path == path)
                .order_by(RuleSetInForce.id.desc())
                .limit(1)
            ).first()
            return (row[0], row[1]) if row else None

    def rulesets_in_force(self) -> list[dict[str, Any]]:
        """For every rule file the ingest has loaded, the version in force and since when."""
        with self._transaction() as s:
            latest = select(func.max(RuleSetInForce.id)).group_by(RuleSetInForce.path)
            rows = s.execute(
                select(RuleSetInForce.path, RuleSetInForce.since, RuleSetRecord)
                .join(RuleSetRecord, RuleSetRecord.id == RuleSetInForce.ruleset_id)
                .where(RuleSetInForce.id.in_(latest))
                .order_by(RuleSetRecord.name)
            ).all()
        return [
            {"name": r.name, "version": r.version, "sha256": r.sha256, "path": path, "since": since}
            for path, since, r in rows
        ]

    def ruleset_texts(self, sha256s: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Rule-set texts (and the path they came from) by their hashes."""
        wanted = sorted(set(sha256s))
        with self._transaction() as s:
            rows = s.execute(
                select(RuleSetRecord.sha256, RuleSetRecord.text, RuleSetRecord.path).where(
                    RuleSetRecord.sha256.in_(wanted)
                )
            ).all() if wanted else []  # fmt: skip
        return {sha: (text, path) for sha, text, path in rows}

    def ruleset_versions(self, name: str) -> list[dict[str, Any]]:
        """Every recorded text of the rule set ``name``, the newest first."""
        with self._transaction() as s:
            rows = s.scalars(
                select(RuleSetRecord)
                .where(RuleSetRecord.name == name)
                .order_by(RuleSetRecord.id.desc())
            )
            return [
                {"name": r.name, "version": r.version, "sha256": r.sha256, "path": r.path,
                 "first_seen": r.first_seen, "text": r.text}
                for r in rows
            ]  # fmt: skip

    def append_decisions(self, new: Sequence[NewDecision]) -> list[int]:
        """Insert decisions with their reasons in one transaction; returns their ids."""
        if not new:
            return []
        with self._transaction() as s:
            ruleset_ids = self._ruleset_ids(s, (n.ruleset for n in new))
            rows = []
            for item in new:
                d = item.decision
                row = DecisionRecord(
                    scan_id=item.scan_id,
                    asset_id=item.asset_id,
                    ruleset_id=ruleset_ids[item.ruleset.sha256],
                    ruleset_name=item.ruleset.name,
                    schedule=d.schedule,
                    tags=list(d.tags),
                    review=d.review,
                    warnings=list(d.warnings),
                    slots=[asdict(slot) for slot in d.slots],
                    cause=item.cause,
                    measure=d.measure,
                )
                row.reasons = [_reason_row(i, "fired", r) for i, r in enumerate(d.reasons)] + [
                    _reason_row(len(d.reasons) + i, "near_miss", r)
                    for i, r in enumerate(d.near_misses)
                ]
                rows.append(row)
            s.add_all(rows)
            s.flush()
            return [row.id for row in rows]

    def current_decisions(
        self, asset_ids: Sequence[int] | None = None
    ) -> dict[tuple[int, str], CurrentDecision]:
        """The latest decision per (asset, rule set name), with its overrides."""
        with self._reading() as c:
            if asset_ids is None:
                rows = c.execute(_current_statement(asset_ids=False)).all()
            else:
                rows = c.execute(_CURRENT_OF, {"ids": list(asset_ids)}).all()
            ids = [row[0] for row in rows]
            fired: dict[int, list[str]] = {i: [] for i in ids}
            for chunk in _chunks(ids):
                for decision_id, rule_id in c.execute(_FIRED, {"ids": chunk}):
                    fired[decision_id].append(rule_id)
            # every override of these assets, in one read: those on a latest decision
            # are shown with it, those left on superseded ones are counted per pair
            overrides: dict[int, list[OverrideView]] = {i: [] for i in ids}
            earlier: dict[tuple[int, str], int] = {}
            for row in self._overrides_of(c, asset_ids):
                if row.decision_id in overrides:
                    overrides[row.decision_id].append(_override_view(row))
                else:
                    pair = (row.asset_id, row.ruleset_name)
                    earlier[pair] = earlier.get(pair, 0) + 1
        return {  # rows unpacked by position: a Row's attributes by name are slow
            (asset_id, name): CurrentDecision(
                id=id_,
                asset_id=asset_id,
                scan_id=scan_id,
                ruleset_name=name,
                ruleset_version=version,
                ruleset_sha256=sha,
                schedule=schedule,
                tags=tuple(tags),
                review=review,
                warnings=tuple(warnings),
                fired=tuple(fired[id_]),
                created_at=created_at,
                overrides=tuple(overrides[id_]),
                overrides_before=earlier.get((asset_id, name), 0),
                measure=measure,
            )
            for (id_, asset_id, scan_id, name, schedule, tags, review, warnings, created_at,
                 version, sha, measure) in rows
        }  # fmt: skip

    @staticmethod
    def _overrides_of(c: Connection, asset_ids: Sequence[int] | None) -> Iterator[Any]:
        """Every override on any decision about these assets (None: all), oldest first,
        with the decision's asset and rule set name (overrides are rare: few rows)."""
        if asset_ids is None:
            yield from c.execute(_OVERRIDES)
            return
        for chunk in _chunks(list(asset_ids)):
            yield from c.execute(_OVERRIDES_OF, {"ids": chunk})

    # -- review --------------------------------------------------------------------------
    def add_override(
        self,
        decision_id: int,
        *,
        reviewer: str,
        justification: str,
        schedule: str | None = None,
        tags: Sequence[str] | None = None,
        actor: str | None = None,
        via: str = "cli",
        reason_code: str | None = None,
    ) -> int:
        # what the caller asked is wrong (exit 2), not the database (5)
        if not reviewer.strip():
            raise ConfigError("an override needs the reviewer's name (--reviewer)")
        if not justification.strip():
            raise ConfigError("an override needs a justification (--justification)")
        with self._transaction() as s:
            if s.get(DecisionRecord, decision_id) is None:
                raise ConfigError(f"no decision {decision_id}; see `policy-engine history`")
            row = Override(
                decision_id=decision_id,
                reviewer=reviewer.strip(),
                schedule=schedule,
                tags=list(tags) if tags is not None else None,
                justification=justification.strip(),
                actor=actor,
                via=via,
                reason_code=reason_code,
            )
            s.add(row)
            s.flush()
            return row.id

    def confirmed_overrides(self, decision_ids: Sequence[int]) -> dict[int, str]:
        """Four-eyes mode: override id -> the second reviewer who confirmed it."""
        from policy_engine.store.schema import OverrideConfirmation

        if not decision_ids:
            return {}
        with self._transaction() as s:
            rows = s.execute(
                select(OverrideConfirmation.override_id, OverrideConfirmation.actor)
                .join(Override, Override.id == OverrideConfirmation.override_id)
                .where(Override.decision_id.in_(list(decision_ids)))
            )
            return {override_id: actor for override_id, actor in rows}

    def record_report(
        self, asset_id: int, decision_ids: Sequence[int], path: str, sha256: str
    ) -> int:
        with self._transaction() as s:
            row = ReportRecord(
                asset_id=asset_id, decision_ids=list(decision_ids), path=path, sha256=sha256
            )
            s.add(row)
            s.flush()
            return row.id

    def reports(self, asset_id: int) -> list[ReportRecord]:
        with self._transaction() as s:
            return list(s.scalars(_REPORTS, {"asset_id": asset_id}))

    # -- inspecting ----------------------------------------------------------------------
    def decision(self, decision_id: int) -> DecisionRecord | None:
        """One decision with its rule set, scan (and asset), reasons and overrides."""
        with self._transaction() as s:
            return s.scalar(
                select(DecisionRecord)
                .where(DecisionRecord.id == decision_id)
                .options(
                    selectinload(DecisionRecord.ruleset),
                    selectinload(DecisionRecord.scan).selectinload(Scan.asset),
                    selectinload(DecisionRecord.reasons),
                    selectinload(DecisionRecord.overrides),
                )
            )

    def asset_history(self, asset_id: int) -> tuple[Asset, list[Scan], list[DecisionRecord]]:
        """An asset, its scans and its decisions (with overrides), oldest first."""
        with self._transaction() as s:
            asset = s.scalar(
                select(Asset).where(Asset.id == asset_id).options(selectinload(Asset.paths))
            )
            if asset is None:
                raise StoreError(f"no asset {asset_id}")
            scans = list(s.scalars(select(Scan).where(Scan.asset_id == asset_id).order_by(Scan.id)))
            decisions = list(
                s.scalars(
                    select(DecisionRecord)
                    .where(DecisionRecord.asset_id == asset_id)
                    .options(
                        selectinload(DecisionRecord.ruleset),
                        selectinload(DecisionRecord.overrides),
                        selectinload(DecisionRecord.reasons),
                    )
                    .order_by(DecisionRecord.id)
                )
            )
            return asset, scans, decisions

    def failed_scans(self, *, since: datetime | None = None) -> list[Scan]:
        with self._transaction() as s:
            query = select(Scan).where(Scan.status == FAILED)
            if since is not None:
                query = query.where(Scan.finished_at >= since)
            return list(s.scalars(query.order_by(Scan.id)))


class StoreFacet:
    """A part of the store's API kept in a module of its own (the ingest queue, accounts,
    jobs): the same database, transactions and retry window as the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def transient_retry_s(self) -> float:
        return self.store.transient_retry_s

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self.store._transaction() as session:
            yield session
