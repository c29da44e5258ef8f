"""pgvector (``halfvec``, HNSW, cosine) on PostgreSQL, behind the same interface: the
rows are copied into the database's own vector table (store/vectors.py) and searched
there. Chosen with ``search_backend = pgvector``; refused at start-up, with the reason,
where the server lacks the extension."""

from __future__ import annotations

from typing import Any

import numpy as np

from policy_engine.errors import ConfigError
from policy_engine.search.base import Match
from policy_engine.store.search import SearchRows
from policy_engine.store.vectors import PgVectors


class PgVectorIndex:
    name = "pgvector"

    def __init__(self, rows: SearchRows, kind: str, weights: str) -> None:
        self.rows = rows
        self.kind = kind
        self.weights = weights
        self.vectors = PgVectors(rows.store)
        self.table: Any = None
        why = self.vectors.unavailable()
        if why is not None:
            raise ConfigError(why)

    def refresh(self) -> None:
        stats = self.rows.stats(self.kind, self.weights)
        if stats.count == 0:
            return
        if self.table is None:
            first = next(self.rows.rows(self.kind, self.weights, batch=1))
            self.table = self.vectors.table(self.kind, first.vectors.shape[1])
            self.vectors.ensure(self.table)
        held, high = self.vectors.watermark(self.table, self.weights)
        if held > stats.count:  # another database's rows, or a restore: start again
            self.vectors.clear(self.table, self.weights)
            held, high = 0, 0
        for batch in self.rows.rows(self.kind, self.weights, after=high, batch=5_000):
            self.vectors.insert(self.table, self.weights, batch)
        if self.vectors.watermark(self.table, self.weights)[0] != stats.count:
            self.vectors.clear(self.table, self.weights)  # late commits with lower ids
            for batch in self.rows.rows(self.kind, self.weights, batch=5_000):
                self.vectors.insert(self.table, self.weights, batch)

    def search(self, query: np.ndarray, limit: int, allowed_scans: np.ndarray) -> list[Match]:
        if self.table is None:
            return []
        found = self.vectors.search(
            self.table, self.weights, query, limit, [int(s) for s in allowed_scans]
        )
        return [Match(i, s) for i, s in sorted(found, key=lambda f: (-f[1], f[0]))]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "table": getattr(self.table, "name", None)}
