"""pgvector on PostgreSQL: the stored embeddings copied into a ``halfvec`` table per kind
and dimension with an HNSW index (cosine), searched in the database.

These tables are a derived index, like the exact and HNSW cache files: rebuilt from
frames and scenes at will, never audit data, and so made here (``CREATE TABLE IF NOT
EXISTS``) on first use rather than by a migration, which could not create them on servers
without the extension (Debian 12's PostgreSQL 15 packages lack it). Filters use
pgvector's iterative index scans (0.8+) so that a filter does not starve the result; if
the index still returns fewer rows than asked while enough match, the same query runs
without the index (exact).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, select, text

from policy_engine.store.repository import StoreFacet
from policy_engine.store.search import RowBatch

MIN_VERSION = (0, 7)  # halfvec
EF_SEARCH = 100


def _version(text_version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text_version.split(".")[:2] if p.isdigit())


class PgVectors(StoreFacet):
    def unavailable(self) -> str | None:
        """Why pgvector cannot serve search here; None when it can."""
        engine = self.store.engine
        if engine.url.get_backend_name() != "postgresql":
            return "search_backend = pgvector needs PostgreSQL; the database is SQLite"
        with engine.connect() as connection:
            installed = connection.execute(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            ).scalar()
            available = connection.execute(
                text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            ).scalar()
        if installed is not None:
            if _version(installed) < MIN_VERSION:
                return f"pgvector {installed} lacks halfvec; ALTER EXTENSION vector UPDATE (0.7+)"
            try:
                import pgvector.sqlalchemy  # noqa: F401
            except ImportError as exc:
                return (
                    f"search_backend = pgvector needs the pgvector package ({exc}):"
                    " pip install 'policy_engine[pgvector]'"
                )
            return None
        if available is not None:
            return (
                f"the vector extension ({available}) is installed on the server but not in this"
                " database: run CREATE EXTENSION vector; as its owner or a superuser"
            )
        return (
            "the PostgreSQL server lacks the vector extension (pgvector): install it (README,"
            " Search) or set search_backend = exact or hnsw"
        )

    def table(self, kind: str, dim: int) -> Table:
        from pgvector.sqlalchemy import HALFVEC

        return Table(
            f"search_{kind}_{dim}", MetaData(),  # not the schema's metadata: derived
            Column("id", BigInteger, primary_key=True),
            Column("scan_id", Integer, nullable=False, index=True),
            Column("weights_sha256", String(80), nullable=False),
            Column("embedding", HALFVEC(dim), nullable=False),
        )  # fmt: skip

    def ensure(self, table: Table) -> None:
        with self._transaction() as s:
            table.create(s.connection(), checkfirst=True)
            s.execute(text(
                f"CREATE INDEX IF NOT EXISTS {table.name}_hnsw ON {table.name}"
                " USING hnsw (embedding halfvec_cosine_ops)"
            ))  # fmt: skip

    def watermark(self, table: Table, weights: str) -> tuple[int, int]:
        """(rows, highest id) held for these weights."""
        query = select(func.count(), func.max(table.c.id)).where(table.c.weights_sha256 == weights)
        with self._transaction() as s:
            count, high = s.execute(query).one()
        return int(count or 0), int(high or 0)

    def clear(self, table: Table, weights: str) -> None:
        with self._transaction() as s:
            s.execute(table.delete().where(table.c.weights_sha256 == weights))

    def insert(self, table: Table, weights: str, batch: RowBatch) -> None:
        rows = [
            {"id": int(i), "scan_id": int(scan), "weights_sha256": weights, "embedding": vector}
            for i, scan, vector in zip(batch.ids, batch.scans, batch.vectors.astype(np.float32))
        ]
        with self._transaction() as s:
            s.execute(table.insert(), rows)

    @staticmethod
    def statement(
        table: Table, weights: str, query: np.ndarray, limit: int, allowed: list[int]
    ) -> Any:
        """The nearest rows of the allowed scans by cosine distance (the HNSW index's)."""
        distance = table.c.embedding.cosine_distance(np.asarray(query, np.float32))
        return (
            select(table.c.id, (1 - distance).label("score"))
            .where(table.c.weights_sha256 == weights, table.c.scan_id.in_(allowed))
            .order_by(distance)
            .limit(limit)
        )

    def search(
        self, table: Table, weights: str, query: np.ndarray, limit: int, allowed: list[int]
    ) -> list[tuple[int, float]]:
        statement = self.statement(table, weights, query, limit, allowed)
        with self._transaction() as s:
            s.execute(text(f"SET LOCAL hnsw.ef_search = {EF_SEARCH}"))
            self._iterative(s)
            found = [(int(i), float(score)) for i, score in s.execute(statement)]
            if len(found) < limit and self._matching(s, table, weights, allowed) > len(found):
                s.execute(text("SET LOCAL enable_indexscan = off"))  # exact, in the database
                found = [(int(i), float(score)) for i, score in s.execute(statement)]
        return found

    @staticmethod
    def _iterative(s: Any) -> None:
        """pgvector 0.8's iterative index scans, where the server has them."""
        s.execute(text("SAVEPOINT iterative"))
        try:
            s.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        except Exception:  # noqa: BLE001 - older pgvector: the exact retry covers filters
            s.execute(text("ROLLBACK TO SAVEPOINT iterative"))

    @staticmethod
    def _matching(s: Any, table: Table, weights: str, allowed: list[int]) -> int:
        query = select(func.count()).where(
            table.c.weights_sha256 == weights, table.c.scan_id.in_(allowed)
        )
        return int(s.execute(query).scalar() or 0)
