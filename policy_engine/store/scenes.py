"""Scenes of scans and their per-scene coverage: written with the scan's completion (one
transaction), read by reports and search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from policy_engine.analysis.scenes import Scene
from policy_engine.store.repository import StoreFacet, _chunks
from policy_engine.store.schema import SceneRecord, SceneShares


@dataclass(frozen=True)
class ScanScenes:
    """What scene detection leaves on a scan: how cuts were found, and the scenes."""

    summary: dict[str, Any]
    scenes: Sequence[Scene]
    embeddings: np.ndarray  # (S, D) unit vectors; (S, 0) for a scan without frames


@dataclass(frozen=True)
class StoredScene:
    id: int
    scan_id: int
    index: int
    start: float
    end: float
    first_frame: int
    frame_count: int
    keyframe: int
    embedding: np.ndarray | None  # (D,) float32

    @property
    def duration(self) -> float:
        return self.end - self.start


def scene_rows(scan_id: int, scenes: ScanScenes) -> list[SceneRecord]:
    """The rows ``Store.complete_scan`` adds in its transaction."""
    rows = []
    for scene, vector in zip(scenes.scenes, _vectors(scenes), strict=True):
        rows.append(
            SceneRecord(
                scan_id=scan_id, index=scene.index, start=scene.start, end=scene.end,
                first_frame=scene.first_frame, frame_count=scene.frame_count,
                keyframe=scene.keyframe,
                embedding=None if vector is None else
                np.ascontiguousarray(vector, dtype=np.float16).tobytes(),
            )
        )  # fmt: skip
    return rows


def _vectors(scenes: ScanScenes) -> list[np.ndarray | None]:
    embeddings = scenes.embeddings
    if embeddings.ndim != 2 or embeddings.shape[1] == 0:
        return [None] * len(scenes.scenes)
    return list(embeddings)


def _stored(row: SceneRecord) -> StoredScene:
    vector = None
    if row.embedding is not None:
        vector = np.frombuffer(row.embedding, dtype=np.float16).astype(np.float32)
    return StoredScene(
        row.id, row.scan_id, row.index, row.start, row.end, row.first_frame, row.frame_count,
        row.keyframe, vector,
    )  # fmt: skip


class Scenes(StoreFacet):
    def of_scan(self, scan_id: int) -> list[StoredScene]:
        with self._transaction() as s:
            query = select(SceneRecord).where(SceneRecord.scan_id == scan_id)
            rows = s.scalars(query.order_by(SceneRecord.index))
            return [_stored(row) for row in rows]

    def by_ids(self, scene_ids: Sequence[int]) -> dict[int, StoredScene]:
        found: dict[int, StoredScene] = {}
        with self._transaction() as s:
            for chunk in _chunks(list(scene_ids)):
                for row in s.scalars(select(SceneRecord).where(SceneRecord.id.in_(chunk))):
                    found[row.id] = _stored(row)
        return found

    def save_shares(
        self,
        categories_sha256: str,
        categories: list[dict[str, Any]],
        shares: Mapping[int, np.ndarray],
    ) -> None:
        """Keep per-scene shares; sets already stored (by another run) are kept."""
        if not shares:
            return
        with self._transaction() as s:
            existing = set(
                s.scalars(
                    select(SceneShares.scan_id).where(
                        SceneShares.scan_id.in_(list(shares)),
                        SceneShares.categories_sha256 == categories_sha256,
                    )
                )
            )
            s.add_all(
                SceneShares(
                    scan_id=scan_id, categories_sha256=categories_sha256, categories=categories,
                    shares=np.ascontiguousarray(values, dtype=np.float32).tobytes(),
                )
                for scan_id, values in shares.items()
                if scan_id not in existing
            )  # fmt: skip

    def shares(self, scan_id: int, categories_sha256: str) -> np.ndarray | None:
        """(S, K) float32 shares of this scan's scenes under this category set."""
        with self._transaction() as s:
            row = s.scalar(
                select(SceneShares).where(
                    SceneShares.scan_id == scan_id,
                    SceneShares.categories_sha256 == categories_sha256,
                )
            )
            if row is None:
                return None
            count = max(1, len(row.categories))
            return np.frombuffer(row.shares, dtype=np.float32).reshape(-1, count)
