"""HNSW search (usearch) for large archives: a graph index over the same cached rows as
exact search, persisted beside them and extended as new scans' rows arrive (rebuilt only
when the cache itself was rebuilt).

The graph proposes candidates (``CANDIDATES`` times ``limit``); they are scored as exact
search scores every row, so both back ends give the same scores and break ties alike.

Filters: HNSW has no notion of "only these scans". A filter that keeps few rows is
answered exactly over those rows (fast, since they are few); otherwise the graph is asked
for enough neighbours that ``limit`` of them should pass (``CANDIDATES`` times limit
divided by the share of rows that pass), and again for four times as many while too few
do; if even that falls short, the allowed rows are searched exactly. So a filtered query always
returns ``limit`` hits when at least that many rows match it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from policy_engine.search.base import Match, allowed_rows, best, similarities
from policy_engine.search.cache import RowCache

CONNECTIVITY = 16  # M: links per node
# efConstruction: 128 built 3.6x slower on two cores for no recall gain on clustered data
EXPANSION_ADD = 64
# ef: at a million clustered rows recall@10 against exact search was 0.905 / 0.930 (image-
# / text-like queries) at 128, 0.954 / 0.967 at 512 for p50 2.6 -> 6 ms (bench_search.py)
EXPANSION_SEARCH = 512
CANDIDATES = 4  # the graph proposes this many times the rows wanted, re-scored exactly
EXACT_BELOW = 20_000  # allowed rows this few are searched exactly


def _usearch() -> Any:
    try:
        from usearch.index import Index
    except ImportError as exc:
        from policy_engine.errors import ConfigError

        raise ConfigError(
            f"search_backend = hnsw needs the usearch package ({exc}):"
            " pip install 'policy_engine[hnsw]', or use search_backend = exact"
        ) from exc
    return Index


class HnswIndex:
    name = "hnsw"

    def __init__(self, cache: RowCache, *, threads: int = 0) -> None:
        self.cache = cache
        self.threads = threads  # 0: all cores
        self.path = Path(f"{cache.prefix}.usearch")
        self._state = Path(f"{cache.prefix}.usearch.json")
        self.index: Any = None
        self._loaded = 0  # rows of the cache in the graph held in memory

    # -- keeping the graph in step with the cache ------------------------------------------
    def refresh(self) -> None:
        rebuilt = self.cache.refresh()
        manifest = self.cache.manifest
        assert manifest is not None
        with self.cache.locked():  # one process extends the graph file at a time
            state = self._read_state()
            if rebuilt or state.get("generation") != manifest.generation or not self.path.exists():
                self.index, self._loaded = self._new(manifest.dim), 0
            elif self.index is None or self._loaded != state.get("rows"):
                self.index = _usearch().restore(
                    str(self.path), view=False, expansion_search=EXPANSION_SEARCH
                )
                self._loaded = int(state["rows"])
            if self._loaded < manifest.rows:
                self._add(self._loaded, manifest.rows)
                self.index.save(str(self.path))
                self._write_state({"generation": manifest.generation, "rows": manifest.rows})
                self._loaded = manifest.rows

    def _new(self, dim: int) -> Any:
        return _usearch()(
            ndim=max(dim, 1), metric="cos", dtype="f16", connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH,
        )  # fmt: skip

    def _add(self, start: int, stop: int) -> None:
        """Rows ``start`` .. ``stop`` of the cache, keyed by their position, multi-threaded."""
        vectors = self.cache.column("vectors")
        step = 100_000
        for first in range(start, stop, step):
            last = min(stop, first + step)
            keys = np.arange(first, last, dtype=np.uint64)
            self.index.add(keys, np.ascontiguousarray(vectors[first:last]), threads=self.threads)

    def _read_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self._state.with_name(f".{self._state.name}.tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self._state)

    # -- answering ---------------------------------------------------------------------------
    def search(self, query: np.ndarray, limit: int, allowed_scans: np.ndarray) -> list[Match]:
        rows = self.cache.rows
        if rows == 0 or self.index is None:
            return []
        ids = self.cache.column("ids")
        mask = allowed_rows(self.cache.column("scans"), allowed_scans)
        allowed = int(mask.sum())
        if allowed <= max(limit, EXACT_BELOW):
            return self._exact(query, limit, mask, ids)
        count = min(rows, math.ceil(CANDIDATES * limit * rows / allowed))
        while True:
            found = self.index.search(np.asarray(query, np.float32), count, threads=self.threads)
            keys = np.asarray(found.keys, dtype=np.int64)
            passing = keys[mask[keys]]
            if len(passing) >= limit:
                # the graph's candidates scored as exact search scores them: the same
                # numbers for the same rows, and ties (frames of one shot are nearly
                # equal) broken the same way, so the back ends differ only where the
                # graph missed a row
                vectors = self.cache.column("vectors")[np.sort(passing)]
                return best(similarities(vectors, query), ids[np.sort(passing)], limit)
            if count >= rows:
                return self._exact(query, limit, mask, ids)
            count = min(rows, count * 4)

    def _exact(
        self, query: np.ndarray, limit: int, mask: np.ndarray, ids: np.ndarray
    ) -> list[Match]:
        keep = np.flatnonzero(mask)
        scores = similarities(self.cache.column("vectors")[keep], query)
        return best(scores, ids[keep], limit)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name, "rows": self.cache.rows, "cache": str(self.cache.prefix),
            "index": str(self.path), "connectivity": CONNECTIVITY,
            "expansion_search": EXPANSION_SEARCH,
        }  # fmt: skip
