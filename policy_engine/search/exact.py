"""Exact search (the default): every allowed row's cosine, from the memory-mapped float16
matrix beside the database. No recall to tune, no index to build: at a million frames
one query reads 1 GiB of (page-cached) matrix in about a third of a second."""

from __future__ import annotations

from typing import Any

import numpy as np

from policy_engine.search.base import Match, allowed_rows, best, similarities
from policy_engine.search.cache import RowCache


class ExactIndex:
    name = "exact"

    def __init__(self, cache: RowCache) -> None:
        self.cache = cache

    def refresh(self) -> None:
        self.cache.refresh()

    def search(self, query: np.ndarray, limit: int, allowed_scans: np.ndarray) -> list[Match]:
        if self.cache.rows == 0:
            return []
        scores = similarities(self.cache.column("vectors"), query)
        keep = np.flatnonzero(allowed_rows(self.cache.column("scans"), allowed_scans))
        return best(scores[keep], self.cache.column("ids")[keep], limit)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "rows": self.cache.rows, "cache": str(self.cache.prefix)}
