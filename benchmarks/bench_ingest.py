#!/usr/bin/env python
"""Ingest queue overhead: listing, settling bookkeeping and claims, without scanning.

    python benchmarks/bench_ingest.py                     # or: make bench-ingest
    python benchmarks/bench_ingest.py --files 20000 --postgres postgresql://…/test

Makes N placeholder files in 50 folders and times, on SQLite and PostgreSQL: listing
the ingest folder, recording the first look (every file new) and a later one (nothing
changed: what every nightly run pays for the files already done), and claiming and
finishing every file (one worker; on PostgreSQL also two workers together, checked
for double claims). Target: the queue costs well under 1% of a night's scanning
(a trailer takes seconds to scan; a claim should take milliseconds).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_reevaluate import add_postgres_option, postgres_schema  # noqa: E402

from policy_engine.config import Settings  # noqa: E402
from policy_engine.ingest import discover  # noqa: E402
from policy_engine.store import Store  # noqa: E402
from policy_engine.store.ingest import IngestQueue, QueueTiming  # noqa: E402

TIMING = QueueTiming(settle_seconds=0, quiet_seconds=0, claim_timeout=600, max_attempts=3,
                     retry_backoff=0)  # fmt: skip


def make_files(folder: Path, count: int) -> None:
    for i in range(count):
        sub = folder / f"day-{i % 50:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"trailer-{i:06d}.mp4").write_bytes(b"x")


def timed(action):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def drain(queue: IngestQueue, folder: str, claimed: list[str]) -> None:
    while (claim := queue.claim_next([folder])) is not None:
        claimed.append(claim.path)
        queue.finish(claim, error=None)


def bench(url: str, folder: Path, label: str, workers: int) -> None:
    settings = replace(Settings(), include=("*.mp4",))
    key = str(folder)
    (seen, problems), t_list = timed(lambda: discover(settings, key))
    assert not problems
    stores = [Store.open(url) for _ in range(workers)]
    queues = [IngestQueue(store, TIMING) for store in stores]
    for queue in queues:
        queue.register()
    new, t_first = timed(lambda: queues[0].observe(key, seen))
    again, t_again = timed(lambda: queues[0].observe(key, seen))
    claimed: list[list[str]] = [[] for _ in queues]
    threads = [
        threading.Thread(target=drain, args=(q, key, c))
        for q, c in zip(queues, claimed, strict=True)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    t_claims = time.perf_counter() - started
    everything = [path for part in claimed for path in part]
    assert len(everything) == len(set(everything)) == len(seen), "a file was claimed twice"
    for queue, store in zip(queues, stores, strict=True):
        queue.stop()
        store.close()
    n = len(seen)
    print(
        f"{label:<22} {n} files | list {t_list:6.2f} s ({n / t_list:8.0f}/s)"
        f" | first look {t_first:5.2f} s ({new} new) | unchanged look {t_again:5.2f} s"
        f" ({again} new) | claim+finish {t_claims:6.2f} s ({n / t_claims:6.0f}/s,"
        f" {1000 * t_claims / n:.2f} ms each; split {[len(c) for c in claimed]})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    add_postgres_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "ingest"
        folder.mkdir()
        make_files(folder, args.files)
        bench(f"sqlite:///{work}/bench.sqlite", folder, "SQLite, 1 worker", 1)
        if not args.postgres:
            print("PostgreSQL: skipped (no --postgres / POLICY_ENGINE_TEST_POSTGRES_URL)")
            return
        from sqlalchemy import text

        for workers in (1, 2):
            url, (admin, schema) = postgres_schema(args.postgres)
            try:
                bench(url, folder, f"PostgreSQL, {workers} worker(s)", workers)
            finally:
                with admin.begin() as connection:  # type: ignore[attr-defined]
                    connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
