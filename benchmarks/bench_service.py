#!/usr/bin/env python
"""The service under load, on loopback: the catalogue list, one asset's JSON and `ask`,
each at 20 concurrent clients for a fixed time, against the real `policy-engine serve`.

    python benchmarks/bench_service.py                   # or: make bench-service
    python benchmarks/bench_service.py --assets 10000 --clients 20 --seconds 30
    python benchmarks/bench_service.py --keep /tmp/bench-db    # seed once, keep it …
    python benchmarks/bench_service.py --reuse /tmp/bench-db --only catalogue   # … reuse it

Seeds N judged assets (20 frames each, embedded with a tiny local CLIP checkpoint so that
`ask` runs its real path: text tower + stored embeddings), starts the server in its own
process, and drives it with httpx from this one. Prints p50/p95 latency, requests/s and
error responses per endpoint. Targets on a 2-core machine: catalogue p95 < 150 ms, `ask`
p95 < 250 ms, no errors. Both processes share the machine's cores, as a real reverse
proxy and server would not: the figures are conservative.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from policy_engine.pipeline.judging import judge  # noqa: E402
from policy_engine.policy.loader import parse_ruleset  # noqa: E402
from policy_engine.store import NewDecision, ScanModel, Store  # noqa: E402
from policy_engine.store.accounts import Accounts  # noqa: E402
from policy_engine.store.synthetic import labelled_probabilities, seed_scan  # noqa: E402

TARGETS_MS = {"catalogue": 150.0, "ask": 250.0}
ENDPOINTS = ("catalogue", "asset", "ask")
FRAMES = 20
SEEDED = "seeded.json"  # in a --keep folder: what was seeded, for --reuse
ERRORS_SHOWN = 5  # distinct error answers printed per endpoint
SERVER_LOG = "server.log"  # the server's own log (JSON lines), in the work folder
RULES = """\
ruleset: bench
version: 1
categories:
  violence: {prompts: ["people fighting"]}
  background: {prompts: ["something else"], null: true}
rules:
  - id: violence
    when: {category: violence, coverage_above: 5%}
    then: {schedule: post-watershed, review: true, tag: Violence}
"""


def seed(store: Store, model_dir: Path, count: int) -> list[int]:
    from policy_engine.models.clip import ClipEmbedder

    embedder = ClipEmbedder.load(str(model_dir), device="cpu", dtype="fp32")
    identity = embedder.identity
    model = ScanModel(
        name=str(model_dir), path=str(model_dir), weights_sha256=identity.weights_sha256,
        embed_dim=identity.embed_dim, logit_scale=embedder.logit_scale,
    )  # fmt: skip
    ruleset = parse_ruleset(RULES, "bench.yaml")
    # the rule set's own categories: probabilities stored under them are judged as they
    # are (other prompts would need a model to score them anew, and judge none)
    categories = list(ruleset.categories)
    assert [c.name for c in categories] == ["violence", "background"]
    rng = np.random.default_rng(7)
    ids, scans = [], []
    started = time.perf_counter()
    for i in range(count):
        labels = (rng.random(FRAMES) < rng.random() * 0.2).astype(int) ^ 1  # 0 = violence
        frames = rng.standard_normal((FRAMES, identity.embed_dim)).astype(np.float32)
        frames /= np.linalg.norm(frames, axis=1, keepdims=True)
        asset_id, scan_id = seed_scan(
            store, name=f"trailer-{i:05d}", categories=categories,
            probabilities=labelled_probabilities(list(labels), 2), duration=10.0,
            embeddings=frames, model=model,
        )  # fmt: skip
        ids.append(asset_id)
        scans.append(scan_id)
        if len(scans) == 500 or i == count - 1:
            stored = store.completed_scans(scan_ids=scans)
            judging = judge(store, stored, [ruleset], None)
            if judging.problems or len(judging.judgements) != len(stored):
                raise SystemExit(f"seeding: scans left unjudged: {judging.problems[:1]}")
            judged = judging.judgements
            store.append_decisions(
                [
                    NewDecision(j.scan.id, j.scan.asset_id, ruleset, j.decision, "scan")
                    for j in judged
                ]
            )
            scans = []
            print(f"  seeded {i + 1}/{count} ({time.perf_counter() - started:.0f} s)", flush=True)
    if store.engine.url.get_backend_name() == "postgresql":
        # the planner's statistics, as autovacuum keeps them on a running server: without
        # them it guessed 16 completed scans of 10,000 and read them all for each asset
        with store.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    return ids


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    db: str, model_dir: Path, port: int, workdir: Path, workers: int
) -> subprocess.Popen:
    import httpx

    cli = Path(sys.executable).parent / "policy-engine"
    env = {**os.environ, "POLICY_ENGINE_DB": db, "POLICY_ENGINE_MODEL": str(model_dir),
           "POLICY_ENGINE_DEVICE": "cpu", "POLICY_ENGINE_LOG_FORMAT": "json"}  # fmt: skip
    with (workdir / SERVER_LOG).open("ab") as log:  # the child keeps its own descriptor
        server = subprocess.Popen(
            [str(cli), "serve", "--port", str(port), "--workers", str(workers)], env=env,
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not become ready in 60 s")


async def drive(base: str, token: str, urls: list[str], clients: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    distinct: dict[tuple[int, str], list] = {}  # (status, body) -> [how many, first URL]
    stop = 0.0  # set once the warm-up is done
    headers = {"Authorization": f"Bearer {token}"}

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        n = index
        while time.monotonic() < stop:
            url = urls[n % len(urls)]
            n += clients
            started = time.perf_counter()
            try:
                answer = await http.get(url, headers=headers)
                status, body = answer.status_code, answer.text
            except httpx.TransportError as exc:  # the connection failed: no answer at all
                status, body = 0, f"no answer: {exc!r}"
            latencies.append((time.perf_counter() - started) * 1000)
            if not 0 < status < 400:
                errors += 1
                key = (status, body[:500])
                if key in distinct:
                    distinct[key][0] += 1
                elif len(distinct) < ERRORS_SHOWN:
                    distinct[key] = [1, url]

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        # warm-up: first use loads what it needs (the text model for `ask`) in every
        # server process, so one request per client at once (unmeasured)
        await asyncio.gather(*(http.get(url, headers=headers) for url in urls[:clients]))
        stop = time.monotonic() + seconds
        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    ordered = np.sort(np.asarray(latencies))
    return {
        "requests": len(ordered),
        "rps": len(ordered) / elapsed,
        "p50": float(np.percentile(ordered, 50)),
        "p95": float(np.percentile(ordered, 95)),
        "errors": errors,
        "distinct_errors": distinct,
        "client_cpu": cpu / elapsed,  # cores this process (the load generator) kept busy
    }


def prepare(args: argparse.Namespace, work: Path) -> tuple[str, Path, list[int]]:
    """The database URL, the model folder and the seeded asset ids: seeded afresh in
    ``work`` (a temporary folder, or --keep's), or what an earlier --keep left (--reuse)."""
    from policy_engine.models.tiny import make_tiny_clip

    if args.reuse:
        seeded = json.loads((work / SEEDED).read_text())
        print(f"reusing {seeded['assets']} seeded assets in {work}")
        return seeded["db"], Path(seeded["model"]), seeded["ids"]
    db = args.db or f"sqlite:///{work / 'service.sqlite'}"
    model_dir = make_tiny_clip(work / "tiny-clip")
    store = Store.open(db)
    print(f"seeding {args.assets} assets into {store.url} …")
    ids = seed(store, model_dir, args.assets)
    store.close()
    if args.keep:
        seeded = {"assets": args.assets, "db": db, "model": str(model_dir), "ids": ids}
        (work / SEEDED).write_text(json.dumps(seeded))
    return db, model_dir, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--db", help="a database URL (default: a new SQLite file)")
    parser.add_argument("--workers", type=int, default=2, help="server processes (serve --workers)")
    parser.add_argument("--only", choices=ENDPOINTS, action="append",
                        help="drive only this endpoint (may be given again)")  # fmt: skip
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--keep", type=Path, metavar="DIR",
                       help="seed into DIR (made if missing) and keep it for --reuse")  # fmt: skip
    where.add_argument("--reuse", type=Path, metavar="DIR",
                       help="use what --keep DIR seeded (--assets, --db ignored)")  # fmt: skip
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-service-") as scratch:
        work = Path(scratch)
        if args.keep or args.reuse:
            work = (args.keep or args.reuse).resolve()
            work.mkdir(parents=True, exist_ok=True)
        db, model_dir, ids = prepare(args, work)
        store = Store.open(db)
        token = Accounts(store).create_token(f"bench-{time.time_ns()}", "viewer", by="benchmark")
        store.close()
        port = free_port()
        server = start_server(db, model_dir, port, work, args.workers)
        rng = np.random.default_rng(1)
        picks = [int(i) for i in rng.choice(ids, size=500)]
        endpoints = {
            "catalogue": [f"/api/v1/assets?limit=50&cursor={c}" for c in picks]
            + ["/api/v1/assets?verdict=post-watershed&limit=50"],
            "asset": [f"/api/v1/assets/{i}" for i in picks],
            "ask": [f"/api/v1/assets/{i}/ask?q=people+fighting" for i in picks],
        }
        endpoints = {k: v for k, v in endpoints.items() if not args.only or k in args.only}
        failures: list[str] = []
        generator: list[str] = []  # the load generator's own share of a core
        try:
            print(
                f"{args.clients} clients, {args.seconds:g} s per endpoint, loopback,"
                f" {args.workers} server process(es):"
            )
            columns = ("requests", "req/s", "p50 ms", "p95 ms")
            print(f"  {'endpoint':10}" + "".join(f"{c:>9}" for c in columns) + " errors  target")
            for name, urls in endpoints.items():
                figures = asyncio.run(
                    drive(f"http://127.0.0.1:{port}", token, urls, args.clients, args.seconds)
                )
                target = TARGETS_MS.get(name)
                verdict = "" if target is None else (
                    f"p95 < {target:g} ms: {'met' if figures['p95'] < target else 'MISSED'}"
                )  # fmt: skip
                shown = f"{figures['requests']:9d}{figures['rps']:9.1f}"
                shown += f"{figures['p50']:9.1f}{figures['p95']:9.1f}"
                print(f"  {name:10}{shown} {figures['errors']:6d}  {verdict}", flush=True)
                generator.append(f"{name} {figures['client_cpu']:.0%}")
                for (status, body), (count, url) in figures["distinct_errors"].items():
                    failures.append(f"  {name}: {count} x {status} (first: GET {url})\n    {body}")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        print(f"load generator (this process), share of one core: {', '.join(generator)}")
        if failures:
            print(f"error answers (up to {ERRORS_SHOWN} distinct per endpoint; status 0: none):")
            print("\n".join(failures))
            print("the server's warnings and errors:")
            print("\n".join(server_problems(work / SERVER_LOG)[-20:]) or "  (none)")


def server_problems(log: Path) -> list[str]:
    """The server log's records above INFO (the access log is INFO), and anything that is
    not a JSON record (a traceback printed by Uvicorn itself)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            level = str(json.loads(line).get("level", "")).lower()
        except (ValueError, AttributeError):
            level = "?"
        if level not in ("info", "debug"):
            found.append(f"  {line[:1000]}")
    return found


if __name__ == "__main__":
    main()
