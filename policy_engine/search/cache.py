"""The stored embeddings of one kind (frames or scenes) and one set of weights, as a
float16 matrix in a file beside the database, memory-mapped for search.

Frames and scenes are append-only, so the cache only ever lacks rows: each refresh asks
the database for the count and id range of the rows, appends those above the cached
watermark, and rebuilds from scratch when the numbers still disagree (a transaction that
committed late with a lower id, another database at the same path). A manifest written
last (atomically) says how many rows of each file are valid, so a refresh killed midway
leaves a cache that is merely behind. A file lock keeps two processes from writing at
once; readers never block.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policy_engine.store.search import RowBatch, SearchRows

VERSION = 1
# column files: name -> (dtype, values per row; 0: the embedding dimension)
COLUMNS = {"ids": (np.int64, 1), "scans": (np.int64, 1), "index": (np.int32, 1),
           "times": (np.float64, 2), "vectors": (np.float16, 0)}  # fmt: skip


@dataclass(frozen=True)
class Manifest:
    database: str
    kind: str
    weights: str
    dim: int
    rows: int
    min_id: int
    max_id: int
    generation: int  # bumped by every rebuild (an HNSW index built on another is stale)

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, **self.__dict__})


_thread_locks: dict[str, threading.Lock] = {}


class RowCache:
    def __init__(self, folder: Path, rows: SearchRows, kind: str, weights: str) -> None:
        self.folder = folder
        self.source = rows
        self.kind = kind
        self.weights = weights
        self.database = rows.store.url
        self.prefix = folder / f"{kind}-{weights.removeprefix('sha256:')[:16]}"
        self.manifest: Manifest | None = None

    # -- reading ---------------------------------------------------------------------------
    def read_manifest(self) -> Manifest | None:
        try:
            data = json.loads(self.prefix.with_suffix(".json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        if data.pop("version", None) != VERSION:
            return None
        return Manifest(**data)

    def column(self, name: str) -> np.ndarray:
        """The valid rows of one column file, memory-mapped (copy-on-write: never written)."""
        assert self.manifest is not None
        dtype, width = COLUMNS[name]
        width = width or self.manifest.dim
        if self.manifest.rows == 0:
            return np.zeros((0, width) if width > 1 else 0, dtype=dtype)
        rows = self.manifest.rows
        shape = (rows, width) if width > 1 or name == "vectors" else (rows,)
        return np.memmap(self._file(name), dtype=dtype, mode="c", shape=shape)

    @property
    def rows(self) -> int:
        return self.manifest.rows if self.manifest else 0

    # -- keeping up with the database ------------------------------------------------------
    def refresh(self) -> bool:
        """Bring the cache up to date with the database; True if it was rebuilt."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.locked():
            current = self.read_manifest()
            stats = self.source.stats(self.kind, self.weights)
            if self._reusable(current, stats.count, stats.min_id):
                assert current is not None
                if stats.max_id > current.max_id:
                    current = self._append(current)
                if current.rows == stats.count and current.max_id == stats.max_id:
                    self.manifest = current
                    return False
            self.manifest = self._rebuild(current)
            return True

    def _reusable(self, current: Manifest | None, count: int, min_id: int) -> bool:
        return (
            current is not None
            and current.database == self.database
            and current.rows <= count
            and (current.rows == 0 or current.min_id == min_id)
        )

    def _append(self, current: Manifest) -> Manifest:
        files = {name: self._open(name) for name in COLUMNS}
        try:
            for name, handle in files.items():  # drop what a killed refresh left behind
                handle.truncate(current.rows * self._row_bytes(name, current.dim))
                handle.seek(0, os.SEEK_END)
            manifest = current
            for batch in self.source.rows(self.kind, self.weights, after=current.max_id):
                manifest = self._write(files, batch, manifest)
            for handle in files.values():
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            for handle in files.values():
                handle.close()
        self._save(manifest)
        return manifest

    def _rebuild(self, current: Manifest | None) -> Manifest:
        generation = (current.generation + 1) if current else 1
        empty = Manifest(self.database, self.kind, self.weights, 0, 0, 0, 0, generation)
        for name in COLUMNS:
            self._file(name).unlink(missing_ok=True)
        self._save(empty)
        return self._append(empty)

    def _write(self, files: dict[str, Any], batch: RowBatch, manifest: Manifest) -> Manifest:
        for name, handle in files.items():
            dtype, _ = COLUMNS[name]
            handle.write(np.ascontiguousarray(getattr(batch, name), dtype=dtype).tobytes())
        return Manifest(
            manifest.database, manifest.kind, manifest.weights, batch.vectors.shape[1],
            manifest.rows + len(batch.ids), manifest.min_id or int(batch.ids[0]),
            int(batch.ids[-1]), manifest.generation,
        )  # fmt: skip

    def _save(self, manifest: Manifest) -> None:
        target = self.prefix.with_suffix(".json")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(manifest.to_json())
        tmp.replace(target)

    def _open(self, name: str) -> Any:
        path = self._file(name)
        return open(path, "r+b" if path.exists() else "wb")  # noqa: SIM115 - closed by _append

    def _file(self, name: str) -> Path:
        return self.prefix.with_suffix(f".{name}")

    @staticmethod
    def _row_bytes(name: str, dim: int) -> int:
        dtype, width = COLUMNS[name]
        return np.dtype(dtype).itemsize * (width or dim)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time: threads of this process, then processes (flock)."""
        lock = _thread_locks.setdefault(str(self.prefix), threading.Lock())
        with lock, open(self.prefix.with_suffix(".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
