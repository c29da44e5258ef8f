#!/usr/bin/env python
"""The review app's pages over a large archive: the catalogue's first page and its last
(by cursor), a filtered catalogue, the review queue and the audit log, with N assets
(default 100,000) each judged by one rule set.

    python benchmarks/bench_app.py                 # or: make bench-app
    python benchmarks/bench_app.py --assets 100000 --repeat 5

One real scan and decision are made through the store; the other assets and their
decisions are copies of it inserted in bulk (seeding 100k real scans would take an hour
and measure nothing more: the pages read assets and decisions, never frames). A tenth of
the assets are not for broadcast and need review. Pages are fetched in-process (FastAPI's
TestClient) as a logged-in viewer; prints the median and worst time per page. Target on
a 2-core machine: every page under 500 ms, and the last catalogue page as fast as the
first (the cursor is a range on the primary key, never an OFFSET).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from policy_engine.analysis.scoring import Category  # noqa: E402
from policy_engine.config import Settings  # noqa: E402
from policy_engine.pipeline.judging import judge  # noqa: E402
from policy_engine.policy.loader import parse_ruleset  # noqa: E402
from policy_engine.service.app import create_app  # noqa: E402
from policy_engine.store import NewDecision, Store  # noqa: E402
from policy_engine.store.accounts import Accounts  # noqa: E402
from policy_engine.store.schema import Asset, AssetPath, DecisionRecord, utcnow  # noqa: E402
from policy_engine.store.synthetic import labelled_probabilities, seed_scan  # noqa: E402

TARGET_MS = 500.0
RULES = """\
ruleset: bench
version: 1
categories:
  violence: {prompts: ["people fighting"]}
  background: {prompts: ["something else"], null: true}
rules:
  - id: violence
    when: {category: violence, coverage_above: 5%}
    then: {schedule: not-for-broadcast, review: true, tag: Violence}
"""
CHUNK = 5000


def seed(store: Store, count: int) -> None:
    ruleset = parse_ruleset(RULES, "bench.yaml")
    categories = [Category("violence", ("people fighting",)),
                  Category("background", ("something else",), null=True)]  # fmt: skip
    asset_id, scan_id = seed_scan(
        store, name="real", categories=categories,
        probabilities=labelled_probabilities([1] * 20, 2), duration=10.0,
    )  # fmt: skip
    scan = store.completed_scans(scan_ids=[scan_id])[0]
    decision = judge(store, [scan], [ruleset], None).judgements[0].decision
    store.append_decisions([NewDecision(scan_id, asset_id, ruleset, decision, "scan")])
    with store.engine.begin() as connection:
        ruleset_id = connection.execute(select(DecisionRecord.ruleset_id)).scalar_one()
    started = time.perf_counter()
    for first in range(1, count, CHUNK):
        ids = range(first, min(first + CHUNK, count))
        now = utcnow()
        with store.engine.begin() as connection:
            made = connection.execute(
                insert(Asset).returning(Asset.id),
                [{"content_sha256": f"sha256:{i:064x}", "size_bytes": 1000,
                  "path": f"/archive/trailer-{i:06d}.mp4", "probe": {"duration": 10.0},
                  "first_seen": now} for i in ids],
            ).scalars().all()  # fmt: skip
            connection.execute(
                insert(AssetPath),
                [{"asset_id": a, "path": f"/archive/trailer-{i:06d}.mp4", "first_seen": now}
                 for a, i in zip(made, ids, strict=True)],
            )  # fmt: skip
            connection.execute(
                insert(DecisionRecord),
                [{"scan_id": scan_id, "asset_id": a, "ruleset_id": ruleset_id,
                  "ruleset_name": "bench", "schedule": "not-for-broadcast" if i % 10 == 0
                  else "unrestricted", "tags": ["Violence"] if i % 10 == 0 else [],
                  "review": i % 10 == 0, "warnings": [], "slots": [], "cause": "scan",
                  "created_at": now} for a, i in zip(made, ids, strict=True)],
            )  # fmt: skip
        print(f"  seeded {ids[-1] + 1}/{count} ({time.perf_counter() - started:.0f} s)",
              flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        store = Store.open(db)
        print(f"seeding {args.assets} assets into {store.url} …")
        seed(store, args.assets)
        Accounts(store).add_user("viewer", "viewer", "a long enough password", by="bench")
        settings = replace(Settings(), db=db, reports=str(Path(tmp) / "reports"))
        pages = {
            "catalogue, first page": "/",
            "catalogue, last page": "/?cursor=60",  # newest first: the oldest 50 remain
            "catalogue, not for broadcast": "/?verdict=not-for-broadcast",
            "catalogue, name filter": "/?name=trailer-09999",
            "review queue": "/queue",
            "audit log": "/audit",
        }
        slow = []
        with TestClient(create_app(settings)) as client:
            client.post("/login", data={"name": "viewer", "password": "a long enough password"})
            for label, url in pages.items():
                times = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    answer = client.get(url)
                    times.append(1000 * (time.perf_counter() - started))
                    assert answer.status_code == 200, (url, answer.status_code)
                median, worst = statistics.median(times), max(times)
                print(f"{label:32s} median {median:7.1f} ms  worst {worst:7.1f} ms")
                if median > TARGET_MS:
                    slow.append(label)
        store.close()
    print("every page within target" if not slow else f"over {TARGET_MS:.0f} ms: {slow}")
    sys.exit(1 if slow else 0)


if __name__ == "__main__":
    main()
