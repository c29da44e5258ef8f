#!/usr/bin/env python
"""Fast decoding (skip_frame=NONREF) against exact decoding, all figures from one run.

    python benchmarks/bench_fast_decode.py           # or: make bench-fast-decode
    python benchmarks/bench_fast_decode.py --rounds 5

On the 720p benchmark clip (ViT-B/32, random weights): decoding alone, and a 2 fps scan
without the every-frame checks (which fast decoding cannot serve), each exact and fast,
interleaved rounds; medians, the speed-up, and how far the furthest sample moved from its
target time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_scan import CATEGORIES, WORK, build_clip, build_model  # noqa: E402

from policy_engine.media.video import SamplingSpec  # noqa: E402
from policy_engine.models.clip import ClipEmbedder  # noqa: E402
from policy_engine.pipeline import AnalysisOptions, analyze_video  # noqa: E402


def decode_seconds(path: Path, fast: bool) -> tuple[float, int]:
    started = time.perf_counter()
    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if fast:
            stream.codec_context.skip_frame = "NONREF"
        for _ in container.decode(stream):
            count += 1
    return time.perf_counter() - started, count


def scan_seconds(path: Path, embedder: ClipEmbedder, fast: bool) -> tuple[float, float]:
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0, fast_decode=fast))
    started = time.perf_counter()
    result = analyze_video(path, CATEGORIES, embedder, options)
    return time.perf_counter() - started, result.decoding["largest_offset_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=64.0, help="clip length")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    clip = build_clip(WORK / f"clip-{args.seconds:.0f}s-720p.mp4", args.seconds)
    embedder = ClipEmbedder.load(
        str(build_model(WORK / "vit-b32-random")), device="cpu", batch_size=32
    )
    scan_seconds(clip, embedder, False)  # warm-up: model, caches, the file in memory
    decode = {False: [], True: []}
    scan = {False: [], True: []}
    frames, offsets = {}, {}
    for _ in range(args.rounds):
        for fast in (False, True):
            seconds, frames[fast] = decode_seconds(clip, fast)
            decode[fast].append(seconds)
            seconds, offsets[fast] = scan_seconds(clip, embedder, fast)
            scan[fast].append(seconds)
    print(f"clip {clip.name}; {args.rounds} rounds; medians\n")
    for label, values in (("decode only", decode), ("2 fps scan, no every-frame checks", scan)):
        exact, fast = statistics.median(values[False]), statistics.median(values[True])
        print(f"  {label:36s} exact {exact:6.2f} s   fast {fast:6.2f} s   "
              f"fast/exact {fast / exact:.3f}")  # fmt: skip
    print(f"\n  frames decoded: exact {frames[False]}, fast {frames[True]}")
    print(f"  furthest sample from its target: exact {1000 * offsets[False]:.1f} ms,"
          f" fast {1000 * offsets[True]:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
