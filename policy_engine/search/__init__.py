"""Search over the stored embeddings: one interface (``base.VectorIndex``), three back
ends chosen by the ``search_backend`` setting, all giving the same answers up to the
recall of approximate search:

``exact`` (default)
    every row's cosine, numpy/torch over a float16 matrix memory-mapped from a cache file
    beside the database (rebuilt from the database when missing or stale).
``hnsw``
    usearch's HNSW graph over the same rows, persisted beside them and extended as scans
    complete; for archives of millions of frames.
``pgvector``
    PostgreSQL's ``vector`` extension (``halfvec``, HNSW, cosine), where the server has it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policy_engine.errors import ConfigError
from policy_engine.search.base import Match, VectorIndex

BACKENDS = ("exact", "hnsw", "pgvector")
# a query's defaults and bounds, here (not in the pipeline) so that the command line and
# the service can name them without importing the models
DEFAULT_LIMIT = 20
DEFAULT_WEIGHT = 0.7  # of the text, when a text and an image are combined
MAX_LIMIT = 500
_OPEN: dict[tuple[str, str, str, str, str], VectorIndex] = {}

__all__ = [
    "BACKENDS",
    "DEFAULT_LIMIT",
    "DEFAULT_WEIGHT",
    "MAX_LIMIT",
    "Match",
    "VectorIndex",
    "cache_folder",
    "open_index",
]


def cache_folder(store_url: str, configured: str) -> Path:
    """Where the exact and HNSW caches live: the configured folder, else beside a SQLite
    database (``<file>.search/``), else ``./policy-engine-search``."""
    if configured:
        return Path(configured).expanduser()
    if store_url.startswith("sqlite:///"):
        database = Path(store_url.removeprefix("sqlite:///")).expanduser()
        return database.resolve().parent / f"{database.name}.search"
    return Path("policy-engine-search").resolve()


def open_index(store: Any, backend: str, kind: str, weights: str, folder: str = "") -> VectorIndex:
    """The index of one kind (frames, scenes) and one set of weights, brought up to date
    with the database; kept open in this process (a service answers from memory)."""
    from policy_engine.store.search import SearchRows

    if backend not in BACKENDS:
        raise ConfigError(f"search_backend {backend!r}: choose one of {' | '.join(BACKENDS)}")
    key = (store.url, backend, kind, weights, folder)
    index = _OPEN.get(key)
    if index is None:
        rows = SearchRows(store)
        if backend == "pgvector":
            from policy_engine.search.pgvector import PgVectorIndex

            index = PgVectorIndex(rows, kind, weights)
        else:
            from policy_engine.search.cache import RowCache

            cache = RowCache(cache_folder(store.url, folder), rows, kind, weights)
            if backend == "hnsw":
                from policy_engine.search.hnsw import HnswIndex

                index = HnswIndex(cache)
            else:
                from policy_engine.search.exact import ExactIndex

                index = ExactIndex(cache)
        _OPEN[key] = index
    index.refresh()
    return index
