"""The one interface every search back end gives, and the arithmetic they share.

A back end answers "the ``limit`` rows most similar to this unit vector, among rows of
these scans" with the rows' database ids and cosine similarities, best first (ties by
id, so that back ends agree). Which scans are allowed (current, matching the filters) is
decided by the caller; a back end must return ``limit`` rows whenever at least that many
rows belong to the allowed scans, however few that is of the whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Match:
    id: int  # the frame's or scene's database id
    score: float  # cosine similarity


class VectorIndex(Protocol):
    name: str

    def refresh(self) -> None:
        """Catch up with the database (new scans' rows); rebuild what is stale."""

    def search(self, query: np.ndarray, limit: int, allowed_scans: np.ndarray) -> list[Match]:
        """Best ``limit`` rows of the allowed scans (sorted ids), best first."""

    def describe(self) -> dict[str, Any]:
        """What the index holds, for `search --json` and the API."""


def allowed_rows(scans: np.ndarray, allowed_scans: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows that belong to an allowed scan: one gather through a
    table indexed by scan id (a few ms for a million rows, where ``np.isin`` sorts)."""
    if not len(scans):
        return np.zeros(0, dtype=bool)
    table = np.zeros(int(max(scans.max(), allowed_scans.max(initial=0))) + 1, dtype=bool)
    table[allowed_scans] = True
    return table[scans]


def similarities(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosines of a float16 unit-vector matrix with a unit query, float32.

    torch's half-precision GEMV (accumulating in float32): numpy has no SIMD path for
    float16 arithmetic (6 s for 1M x 512 where this takes 0.3 s on two cores)."""
    import torch

    if not len(matrix):
        return np.zeros(0, dtype=np.float32)
    rows = torch.from_numpy(np.asarray(matrix))
    vector = torch.from_numpy(np.asarray(query, dtype=np.float16))
    with torch.inference_mode():
        return (rows @ vector).float().numpy()


def best(scores: np.ndarray, ids: np.ndarray, limit: int) -> list[Match]:
    """The ``limit`` highest scores, best first; equal scores by id."""
    if not len(scores) or limit <= 0:
        return []
    if len(scores) > limit:
        keep = np.argpartition(-scores, limit - 1)[:limit]
        threshold = scores[keep].min()
        keep = np.flatnonzero(scores >= threshold)  # everything tied at the edge, then sort
    else:
        keep = np.arange(len(scores))
    order = keep[np.lexsort((ids[keep], -scores[keep]))][:limit]
    return [Match(int(ids[i]), float(scores[i])) for i in order]
