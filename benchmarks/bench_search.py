#!/usr/bin/env python
"""Search and scene detection on this machine, all figures from one run.

    python benchmarks/bench_search.py                  # or: make bench-search
    python benchmarks/bench_search.py --sizes 100000 --queries 100 --skip-scenes

(1) Search over synthetic stored embeddings of the real dimension (512, float16), at each
size: the exact back end (the memory-mapped cache) and HNSW (usearch) through the
engine's own classes, fed by a synthetic row source in place of the database (so the
figures are the index's, not the database's): cache build, HNSW build and the
incremental add of one more trailer's rows (1,000 frames), p50/p95 query latency,
recall@10 against exact search, filtered queries (one asset; 1% of assets) and whether
they return `limit` hits, and memory. pgvector is measured where the server has it.

The embeddings are clustered as CLIP's are (frames of one trailer near each other, all of
them sharing a common direction), 100 frames per synthetic asset: uniformly random
vectors in 512 dimensions are the worst case for any graph index and unlike real data.
Queries: half are stored frames with noise added (an image query, "more like this"),
half new directions mixing the common one (a text query).

(2) Scene detection's added cost on a 2 fps scan of 720p (ViT-B/32, random weights: the
same FLOPs as real ones), as the ratio of scan times with and without it, interleaved
over rounds (median and spread; target < 1.10).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from policy_engine.search.cache import RowCache  # noqa: E402
from policy_engine.search.exact import ExactIndex  # noqa: E402
from policy_engine.store.search import RowBatch, RowStats  # noqa: E402

DIM = 512
PER_ASSET = 100
WEIGHTS = "sha256:" + "b" * 64


class SyntheticRows:
    """Stands in for the database (store.search.SearchRows): clustered unit vectors."""

    def __init__(self, count: int, seed: int = 0) -> None:
        self.store = SimpleNamespace(url=f"synthetic://{count}")
        self.count = count
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.common = _unit(rng.standard_normal(DIM))

    def grow(self, extra: int) -> None:
        self.count += extra

    def stats(self, kind: str, weights: str) -> RowStats:
        return RowStats(self.count, 1, self.count)

    def rows(self, kind: str, weights: str, *, after: int = 0, batch: int = 100_000):
        for first in range(after, self.count, batch):
            last = min(self.count, first + batch)
            ids = np.arange(first + 1, last + 1, dtype=np.int64)
            scans = (ids - 1) // PER_ASSET + 1
            yield RowBatch(
                ids=ids, scans=scans, index=((ids - 1) % PER_ASSET).astype(np.int32),
                times=np.zeros((len(ids), 2)), vectors=self.vectors(scans).astype(np.float16),
            )  # fmt: skip

    def vectors(self, scans: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed + int(scans[0]))
        centres = {s: _unit(np.random.default_rng(int(s) * 7919).standard_normal(DIM))
                   for s in np.unique(scans)}  # fmt: skip
        centre = np.stack([centres[s] for s in scans])
        noise = rng.standard_normal((len(scans), DIM)).astype(np.float32) / np.sqrt(DIM)
        return _unit(0.55 * self.common + 0.65 * centre + 0.5 * noise)

    def queries(self, count: int, cache: RowCache) -> dict[str, np.ndarray]:
        """Per kind of query: a stored frame with noise (an image, "more like this"); an
        asset's subject in the common direction with noise (a text that describes what
        some trailer shows); a random direction (the worst case: nothing is near)."""
        rng = np.random.default_rng(12345)
        picks = rng.integers(0, cache.rows, count)
        noise = rng.standard_normal((count, DIM)).astype(np.float32) / np.sqrt(DIM)
        near = cache.column("vectors")[np.sort(picks)].astype(np.float32) + 0.3 * noise
        assets = rng.integers(1, cache.rows // PER_ASSET + 1, count)
        centres = np.stack([_unit(np.random.default_rng(int(a) * 7919).standard_normal(DIM))
                            for a in assets])  # fmt: skip
        described = 0.5 * self.common + 0.8 * centres + 0.3 * noise
        random = 0.4 * self.common + rng.standard_normal((count, DIM)) / np.sqrt(DIM)
        return {"image-like": _unit(near), "text-like": _unit(described),
                "random (worst case)": _unit(random)}  # fmt: skip


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(call):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def latencies(index, queries: np.ndarray, allowed: np.ndarray, limit: int = 10):  # type: ignore[no-untyped-def]
    found, seconds = [], []
    for query in queries:
        hits, took = timed(lambda q=query: index.search(q, limit, allowed))
        found.append(hits)
        seconds.append(took)
    return found, seconds


def percentiles(seconds: list[float]) -> str:
    p50, p95 = np.percentile(np.asarray(seconds) * 1000, [50, 95])
    return f"p50 {p50:8.1f} ms   p95 {p95:8.1f} ms"


def bench_size(size: int, queries: int, folder: Path, cap: float) -> None:
    print(f"\n== {size:,} frames ({size // PER_ASSET:,} assets), {DIM}-d float16 ==", flush=True)
    source = SyntheticRows(size)
    cache = RowCache(folder / f"n{size}", source, "frames", WEIGHTS)
    _, built = timed(cache.refresh)
    matrix_gib = cache.rows * DIM * 2 / 2**30
    print(f"exact cache built (generate + write)  {built:8.1f} s   ({matrix_gib:.2f} GiB matrix)")
    exact = ExactIndex(cache)
    scans = np.arange(1, size // PER_ASSET + 1, dtype=np.int64)
    asked = source.queries(queries // 3, cache)
    truth = {}
    for kind, batch in asked.items():
        truth[kind], seconds = latencies(exact, batch, scans)
        print(f"{kind:>19}: exact {percentiles(seconds)}")
    filters = (("1 asset", scans[:1]), ("1% of assets", scans[::100]))
    filtered(exact, "exact", asked["text-like"][:20], filters)
    print(f"peak RSS so far {rss_gib():.2f} GiB", flush=True)
    graph = build_graph(cache, cap)
    if graph is None:
        return
    for kind, batch in asked.items():
        found, seconds = latencies(graph, batch, scans)
        recall = np.mean([len({m.id for m in a} & {m.id for m in b}) / 10
                          for a, b in zip(truth[kind], found)])  # fmt: skip
        print(f"{kind:>19}: HNSW  {percentiles(seconds)}   recall@10 vs exact {recall:.3f}")
    filtered(graph, "HNSW", asked["text-like"][:20], filters)
    sweep_ef(graph, asked, truth, scans)
    source.grow(1000)
    _, appended = timed(cache.refresh)
    state_rows = graph._loaded
    _, added = timed(graph.refresh)
    print(
        f"incremental: 1,000 more frames        cache {appended:6.2f} s   "
        f"HNSW add + save {added:6.2f} s ({state_rows:,} -> {graph._loaded:,} rows)"
    )
    print(f"peak RSS so far {rss_gib():.2f} GiB", flush=True)
    graph.index = None


def sweep_ef(graph, asked, truth, scans) -> None:  # type: ignore[no-untyped-def]
    """Recall and latency of the realistic queries at other search widths (ef), on the
    same graph: what EXPANSION_SEARCH buys and costs."""
    from policy_engine.search.hnsw import EXPANSION_SEARCH

    for ef in (64, 128, 256, 512):
        graph.index.expansion_search = ef
        shown = []
        for kind in ("image-like", "text-like"):
            found, seconds = latencies(graph, asked[kind], scans)
            recall = np.mean([len({m.id for m in a} & {m.id for m in b}) / 10
                              for a, b in zip(truth[kind], found)])  # fmt: skip
            shown.append(f"{kind} p50 {1000 * statistics.median(seconds):5.1f} ms"
                         f" recall@10 {recall:.3f}")  # fmt: skip
        print(f"  ef {ef:4d}{' (default)' if ef == EXPANSION_SEARCH else '          '}  "
              + "   ".join(shown), flush=True)
    graph.index.expansion_search = EXPANSION_SEARCH


def filtered(index, name: str, asked: np.ndarray, filters) -> None:  # type: ignore[no-untyped-def]
    for share, kept in filters:
        hits, seconds = latencies(index, asked, kept, limit=20)
        full = all(len(h) == 20 for h in hits)
        print(f"filtered ({share:>12}) {name:5}  {percentiles(seconds)}   "
              f"limit 20 filled: {'yes' if full else 'NO'}")  # fmt: skip


def build_graph(cache: RowCache, cap: float):  # type: ignore[no-untyped-def]
    """The HNSW graph built as the engine builds it (usearch, all cores, 50k rows a call),
    stopped after ``cap`` seconds with the rate measured so far."""
    from policy_engine.search.hnsw import CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH, HnswIndex

    graph = HnswIndex(cache)
    manifest = cache.manifest
    assert manifest is not None
    graph.index, loaded, started = graph._new(manifest.dim), 0, time.perf_counter()
    while loaded < manifest.rows and time.perf_counter() - started < cap:
        stop = min(manifest.rows, loaded + 50_000)
        graph._add(loaded, stop)
        loaded = stop
    took = time.perf_counter() - started
    params = f"M {CONNECTIVITY}, ef_add {EXPANSION_ADD}, ef {EXPANSION_SEARCH}"
    if loaded < manifest.rows:
        print(f"HNSW build STOPPED after {took:.0f} s: {loaded:,} of {manifest.rows:,} rows"
              f" ({loaded / took:,.0f} rows/s; {params}); the whole build would take about"
              f" {manifest.rows / (loaded / took) / 60:.0f} min at that rate")  # fmt: skip
        return None
    _, saved = timed(lambda: graph.index.save(str(graph.path)))
    graph._write_state({"generation": manifest.generation, "rows": manifest.rows})
    graph._loaded = manifest.rows
    print(
        f"HNSW built (usearch, all cores)       {took:8.1f} s   "
        f"({manifest.rows / took:,.0f} rows/s; {params}); saved in {saved:.1f} s"
    )
    print(f"HNSW in memory                        {graph.index.memory_usage / 2**30:8.2f} GiB"
          f"   (peak RSS {rss_gib():.2f} GiB)")  # fmt: skip
    return graph


def bench_scenes(
    seconds: float, rounds: int, work: Path | None = None, model: Path | None = None
) -> None:
    from bench_scan import CATEGORIES, WORK, build_clip, build_model

    from policy_engine.analysis.scenes import SceneSettings
    from policy_engine.media.video import SamplingSpec
    from policy_engine.models.clip import ClipEmbedder
    from policy_engine.pipeline import AnalysisOptions, analyze_video

    work = work or WORK
    work.mkdir(exist_ok=True)
    clip = build_clip(work / f"clip-{seconds:.0f}s-720p.mp4", seconds)
    model = model or build_model(work / "vit-b32-random")
    embedder = ClipEmbedder.load(str(model), device="cpu", batch_size=32)

    def scan(scenes: bool) -> tuple[float, int]:
        options = AnalysisOptions(
            sampling=SamplingSpec(fps=2.0), scenes=SceneSettings() if scenes else None
        )
        result, took = timed(lambda: analyze_video(clip, CATEGORIES, embedder, options))
        return took, len(result.scenes)

    print(f"\n== scene detection on a 2 fps scan of 720p ({clip.name}, model {model.name}"
          f" {embedder.identity.dtype}, {rounds} rounds) ==", flush=True)  # fmt: skip
    scan(False)  # warm-up: model, caches, the file in memory
    without, with_scenes, found = [], [], 0
    for _ in range(rounds):
        without.append(scan(False)[0])
        took, found = scan(True)
        with_scenes.append(took)
    ratios = [w / o for w, o in zip(with_scenes, without, strict=True)]
    spread = lambda v: f"median {statistics.median(v):.3f}, min {min(v):.3f}, max {max(v):.3f}"  # noqa: E731
    print(f"  without scenes   {spread(without)} s")
    print(f"  with scenes      {spread(with_scenes)} s   ({found} scenes)")
    verdict = "met" if statistics.median(ratios) < 1.10 else "MISSED"
    print(f"  ratio per round  {spread(ratios)}   target < 1.10: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=300, help="of all three kinds")
    parser.add_argument("--seconds", type=float, default=64.0, help="scene clip length")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--hnsw-max-seconds",
        type=float,
        default=900.0,
        help="stop an HNSW build after this long (and say so)",
    )
    parser.add_argument("--skip-scenes", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--work", type=Path, help="where the clip and model go [.bench]")
    parser.add_argument("--model", type=Path, help="a checkpoint instead of ViT-B/32 (random)")
    args = parser.parse_args()
    if not args.skip_search:
        with tempfile.TemporaryDirectory(prefix="bench-search-") as folder:
            for size in args.sizes:
                bench_size(size, args.queries, Path(folder), args.hnsw_max_seconds)
    if not args.skip_scenes:
        bench_scenes(args.seconds, args.rounds, args.work, args.model)


if __name__ == "__main__":
    main()
