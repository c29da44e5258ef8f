"""What search reads from the database: the stored frame and scene embeddings of one set
of weights, in id order, from a watermark on (frames and scenes are append-only, so an
index kept beside the database only ever lacks the newest rows); which scan of each
asset is current; one stored frame for "more like this"."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import func, literal, select

from policy_engine.store.repository import COMPLETED, StoreFacet
from policy_engine.store.schema import Asset, Frame, Scan, SceneRecord

FRAMES, SCENES = "frames", "scenes"
KINDS = (FRAMES, SCENES)


@dataclass(frozen=True)
class RowBatch:
    """Rows of one kind in id order: ids, scan ids, frame or scene index, times (a frame's
    time twice; a scene's start and end) and (n, D) float16 unit vectors."""

    ids: np.ndarray  # int64
    scans: np.ndarray  # int64
    index: np.ndarray  # int32
    times: np.ndarray  # (n, 2) float64
    vectors: np.ndarray  # (n, D) float16


@dataclass(frozen=True)
class RowStats:
    count: int
    min_id: int
    max_id: int


@dataclass(frozen=True)
class CurrentScan:
    """An asset's latest completed scan: only its frames and scenes are searched."""

    scan_id: int
    asset_id: int
    weights_sha256: str
    finished_at: datetime
    path: str


def unit_f16(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    return vectors.astype(np.float16)


class SearchRows(StoreFacet):
    def _table(self, kind: str):  # type: ignore[no-untyped-def]
        if kind not in KINDS:
            raise ValueError(f"search kind {kind!r}: choose one of {KINDS}")
        return Frame if kind == FRAMES else SceneRecord

    def stats(self, kind: str, weights_sha256: str) -> RowStats:
        """How many rows of this kind these weights have, and their id range."""
        table = self._table(kind)
        query = (
            select(func.count(table.id), func.min(table.id), func.max(table.id))
            .join(Scan, Scan.id == table.scan_id)
            .where(Scan.weights_sha256 == weights_sha256)
        )
        if table is SceneRecord:
            query = query.where(SceneRecord.embedding.is_not(None))
        with self._transaction() as s:
            count, low, high = s.execute(query).one()
        return RowStats(int(count or 0), int(low or 0), int(high or 0))

    def rows(
        self, kind: str, weights_sha256: str, *, after: int = 0, batch: int = 20_000
    ) -> Iterator[RowBatch]:
        """Every row with an id above ``after``, in batches, in id order."""
        while True:
            found = self._batch(kind, weights_sha256, after, batch)
            if found is None:
                return
            yield found
            after = int(found.ids[-1])

    def _batch(self, kind: str, weights: str, after: int, limit: int) -> RowBatch | None:
        if kind == FRAMES:
            query = select(Frame.id, Frame.scan_id, Frame.index, Frame.time, Frame.time,
                           Frame.crops, Frame.embedding)  # fmt: skip
            table = Frame
        else:
            query = select(SceneRecord.id, SceneRecord.scan_id, SceneRecord.index,
                           SceneRecord.start, SceneRecord.end, literal(1),
                           SceneRecord.embedding)  # fmt: skip
            query = query.where(SceneRecord.embedding.is_not(None))
            table = SceneRecord
        query = (
            query.join(Scan, Scan.id == table.scan_id)
            .where(Scan.weights_sha256 == weights, table.id > after)
            .order_by(table.id)
            .limit(limit)
        )
        with self._transaction() as s:
            rows = s.execute(query).all()
        if not rows:
            return None
        vectors = [
            np.frombuffer(data, dtype=np.float16).astype(np.float32).reshape(crops, -1).mean(0)
            for *_, crops, data in rows
        ]
        return RowBatch(
            ids=np.array([r[0] for r in rows], dtype=np.int64),
            scans=np.array([r[1] for r in rows], dtype=np.int64),
            index=np.array([r[2] for r in rows], dtype=np.int32),
            times=np.array([(r[3], r[4]) for r in rows], dtype=np.float64),
            vectors=unit_f16(np.stack(vectors)),
        )

    def current_scans(self) -> list[CurrentScan]:
        """Each asset's latest completed scan (a re-scan supersedes the ones before)."""
        latest = (
            select(func.max(Scan.id))
            .where(Scan.status == COMPLETED, Scan.asset_id.is_not(None))
            .group_by(Scan.asset_id)
        )
        query = (
            select(Scan.id, Scan.asset_id, Scan.weights_sha256, Scan.finished_at, Asset.path)
            .join(Asset, Asset.id == Scan.asset_id)
            .where(Scan.id.in_(latest))
        )
        with self._transaction() as s:
            return [CurrentScan(*row) for row in s.execute(query)]

    def frame_vector(self, scan_id: int, index: int) -> tuple[np.ndarray, str] | None:
        """One stored frame's unit vector (mean of its crops) and its scan's weights."""
        query = (
            select(Frame.crops, Frame.embedding, Scan.weights_sha256)
            .join(Scan, Scan.id == Frame.scan_id)
            .where(Frame.scan_id == scan_id, Frame.index == index)
        )
        with self._transaction() as s:
            row = s.execute(query).first()
        if row is None:
            return None
        crops, data, weights = row
        vector = np.frombuffer(data, dtype=np.float16).astype(np.float32).reshape(crops, -1)
        return unit_f16(vector.mean(0)).astype(np.float32), weights

    def details(self, kind: str, ids: list[int]) -> dict[int, tuple[int, int, float, float, int]]:
        """Per row id: scan id, index, start (a frame's time), end, keyframe (a frame: itself)."""
        if not ids:
            return {}
        if kind == FRAMES:
            query = select(Frame.id, Frame.scan_id, Frame.index, Frame.time, Frame.time,
                           Frame.index).where(Frame.id.in_(ids))  # fmt: skip
        else:
            query = select(SceneRecord.id, SceneRecord.scan_id, SceneRecord.index,
                           SceneRecord.start, SceneRecord.end,
                           SceneRecord.keyframe).where(SceneRecord.id.in_(ids))  # fmt: skip
        with self._transaction() as s:
            return {row[0]: tuple(row[1:]) for row in s.execute(query)}  # type: ignore[misc]
