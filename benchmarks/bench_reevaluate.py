#!/usr/bin/env python
"""Re-evaluation speed: 1,000 stored scans, a threshold edit, on SQLite and PostgreSQL.

    python benchmarks/bench_reevaluate.py                 # or: make bench-reevaluate
    python benchmarks/bench_reevaluate.py --scans 5000 --postgres postgresql://…/test

Seeds N synthetic scans (120 frames each: a 60 s trailer at 2 fps) scored against
the shipped policy_engine/rules/uk-trailers.yaml, records their first decisions, then
edits one threshold (smoking 10% -> 5%: tag and review) and times: the dry run (`rules diff`), the
re-evaluation that appends the changed decisions, and a second one where nothing changes. Target: a
threshold edit over 1,000 scans in under 2 s. No model and no video are involved.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from policy_engine.pipeline.judging import reevaluate  # noqa: E402
from policy_engine.policy.loader import load_ruleset, parse_ruleset  # noqa: E402
from policy_engine.store import Store  # noqa: E402
from policy_engine.store.synthetic import seed_scan  # noqa: E402

TARGET_S = 2.0
FRAMES = 120


def trailer_probabilities(rng: np.random.Generator, categories: int, null: int) -> np.ndarray:
    """Runs of labelled frames: mostly the null category, a few runs of the others, so
    that shares spread across the thresholds (0-20% per category)."""
    labels = np.full(FRAMES, null)
    for _ in range(rng.integers(0, 9)):
        start, length = rng.integers(0, FRAMES), rng.integers(1, 16)
        labels[start : start + length] = rng.integers(0, categories)
    probs = rng.dirichlet(np.ones(categories), FRAMES).astype(np.float32) * 0.3
    probs[np.arange(FRAMES), labels] += 0.7
    return probs / probs.sum(axis=1, keepdims=True)


def bench(url: str, scans: int, label: str) -> dict[str, float]:
    path = ROOT / "policy_engine" / "rules" / "uk-trailers.yaml"
    v1 = load_ruleset(path)
    text = path.read_text()
    edit = ("{category: smoking, coverage_above: 10%}", "{category: smoking, coverage_above: 5%}")
    assert edit[0] in text
    v2 = parse_ruleset(text.replace(*edit), str(path))
    store = Store.open(url)
    rng = np.random.default_rng(7)
    null = next(i for i, c in enumerate(v1.categories) if c.null)
    tick = time.perf_counter()
    for i in range(scans):
        seed_scan(
            store,
            name=f"{label}-{i}",
            categories=v1.categories,
            probabilities=trailer_probabilities(rng, len(v1.categories), null),
            duration=60.0,
        )
    seeded = time.perf_counter() - tick
    first = reevaluate(store, [v1], None)
    diff = reevaluate(store, [v2], None, dry_run=True)
    edit = reevaluate(store, [v2], None)
    again = reevaluate(store, [v2], None)
    store.close()
    print(
        f"{label}: seeded {scans} scans in {seeded:.1f} s; first decisions"
        f" {first.seconds:.2f} s ({first.appended} appended)",
        flush=True,
    )
    for name, result in (("rules diff (dry run)", diff), ("reevaluate after edit", edit),
                         ("reevaluate, no change", again)):  # fmt: skip
        print(
            f"  {name:24s} {result.seconds:6.3f} s  {scans / result.seconds:8.0f} scans/s"
            f"  {len(result.changes):4d} changed  {result.appended:4d} appended"
            f"  time/target {result.seconds / TARGET_S:.2f}",
            flush=True,
        )
    assert diff.changes and len(diff.changes) == len(edit.changes) and not again.changes
    return {"diff": diff.seconds, "edit": edit.seconds, "again": again.seconds}


def postgres_schema(url: str) -> tuple[str, object]:
    from sqlalchemy import text

    from policy_engine.store.database import make_engine

    admin = make_engine(url)
    schema = f"pe_bench_{uuid.uuid4().hex[:8]}"
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}", (admin, schema)


def add_postgres_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--postgres",
        default=os.environ.get("POLICY_ENGINE_TEST_POSTGRES_URL"),
        help="PostgreSQL URL (a throwaway schema is made in it); default from"
        " POLICY_ENGINE_TEST_POSTGRES_URL; skipped if absent",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=1000)
    add_postgres_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        bench(f"sqlite:///{folder}/bench.sqlite", args.scans, "SQLite")
    if not args.postgres:
        print("PostgreSQL: skipped (no --postgres / POLICY_ENGINE_TEST_POSTGRES_URL)")
        return
    from sqlalchemy import text

    url, (admin, schema) = postgres_schema(args.postgres)
    try:
        bench(url, args.scans, "PostgreSQL")
    finally:
        with admin.begin() as connection:  # type: ignore[attr-defined]
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
