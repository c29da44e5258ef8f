#!/usr/bin/env python
"""The photosensitivity check's cost on this machine, all figures from one run.

    python benchmarks/bench_pse.py                 # or: make bench-pse
    python benchmarks/bench_pse.py --seconds 60 --rounds 3

Prints (1) the added cost of the check on a 2 fps scan of 720p video (ViT-B/32, random
weights: the same FLOPs as real ones), as the ratio of scan times with and without it,
interleaved over several rounds (median and spread; target < 1.15); (2) frames per second
of the check alone on 1080p: decode only, decode + check (what `policy-engine pse` runs),
and the check's own work on pictures already decoded (reduction to 160 wide, the
engine's way and FFmpeg's swscale for comparison; luminance, regions, patterns), so where
the time goes is visible.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_scan import CATEGORIES, WORK, build_clip, build_model  # noqa: E402

from policy_engine.analysis.photosensitivity import (  # noqa: E402
    PhotosensitivityAnalyzer,
    PseSettings,
)
from policy_engine.media.taps import convert  # noqa: E402
from policy_engine.media.video import SamplingSpec  # noqa: E402
from policy_engine.models.clip import ClipEmbedder  # noqa: E402
from policy_engine.pipeline import AnalysisOptions, analyze_video  # noqa: E402
from policy_engine.pipeline.photosensitivity import check_video  # noqa: E402


def scan_seconds(path: Path, embedder: ClipEmbedder, pse: bool) -> float:
    options = AnalysisOptions(
        sampling=SamplingSpec(fps=2.0), photosensitivity=PseSettings() if pse else None
    )
    started = time.perf_counter()
    result = analyze_video(path, CATEGORIES, embedder, options)
    elapsed = time.perf_counter() - started
    assert (result.photosensitivity is not None) == pse
    return elapsed


def build_1080p(source: Path, path: Path, seconds: float) -> Path:
    """The 720p clip scaled to 1920x1080 (H.264, 25 fps)."""
    if path.is_file():
        return path
    total = round(seconds * 25)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(source)) as clip, av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for index, frame in enumerate(clip.decode(video=0)):
            if index >= total:
                break
            scaled = frame.reformat(width=1920, height=1080, format="yuv420p")
            scaled.pts, scaled.time_base = index, Fraction(1, 25)
            out.mux(stream.encode(scaled))
        out.mux(stream.encode())
    tmp.replace(path)
    return path


def decode_rate(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = sum(1 for _ in container.decode(stream))
    return count, count / (time.perf_counter() - started)


def check_parts(path: Path, frames: int) -> tuple[float, float, float]:
    """Per-frame seconds of reducing a decoded 1080p frame to 160x90 RGB (the engine's
    plane-by-plane box reduction, then swscale's AREA for comparison), and of the
    analyzer on that picture."""
    decoded = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            decoded.append(frame)
            if len(decoded) >= frames:
                break
    started = time.perf_counter()
    pictures = [convert(f, (160, 90)) for f in decoded]
    reduction = (time.perf_counter() - started) / len(decoded)
    started = time.perf_counter()
    for f in decoded:
        f.to_ndarray(width=160, height=90, format="rgb24", interpolation="AREA")
    swscale = (time.perf_counter() - started) / len(decoded)
    analyzer = PhotosensitivityAnalyzer(PseSettings())
    started = time.perf_counter()
    for index, picture in enumerate(pictures):
        analyzer.add_frame(index / 25, picture)
    analyzer.result()
    return reduction, swscale, (time.perf_counter() - started) / len(pictures)


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f}, min {min(values):.3f}, max {max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=64.0, help="clip length")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per scan")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    clip = build_clip(WORK / f"clip-{args.seconds:.0f}s-720p.mp4", args.seconds)
    model = build_model(WORK / "vit-b32-random")
    embedder = ClipEmbedder.load(str(model), device="cpu", dtype=args.dtype, batch_size=32)
    print(f"clip {clip.name}; model ViT-B/32 ({embedder.identity.dtype}); {args.rounds} rounds")

    scan_seconds(clip, embedder, pse=False)  # warm-up: model, caches, the file in memory
    without, with_check = [], []
    for _ in range(args.rounds):
        without.append(scan_seconds(clip, embedder, pse=False))
        with_check.append(scan_seconds(clip, embedder, pse=True))
    ratios = [w / o for w, o in zip(with_check, without, strict=True)]
    print("\n2 fps scan of 720p, seconds:")
    print(f"  without the check   {spread(without)}")
    print(f"  with the check      {spread(with_check)}")
    verdict = "met" if statistics.median(ratios) < 1.15 else "MISSED"
    print(f"  ratio (per round)   {spread(ratios)}  target < 1.15: {verdict}")

    big = build_1080p(clip, WORK / "clip-20s-1080p.mp4", 20.0)
    frames, decode_fps = decode_rate(big)
    started = time.perf_counter()
    _, result = check_video(big, PseSettings())
    check_fps = result.frame_count / (time.perf_counter() - started)
    reduction, swscale, analysis = check_parts(big, 250)
    print(f"\nthe check alone on 1080p ({frames} frames, 25 fps):")
    print(f"  decode only                 {decode_fps:7.1f} frames/s")
    print(f"  decode + check (pse)        {check_fps:7.1f} frames/s"
          f" = {check_fps / 25:.1f}x real time; verdict {result.verdict}")  # fmt: skip
    print(f"  1080p -> 160x90 RGB         {1000 * reduction:7.2f} ms/frame"
          f" (swscale AREA: {1000 * swscale:.2f} ms/frame)")  # fmt: skip
    print(f"  analysis of 160x90          {1000 * analysis:7.2f} ms/frame")
    peak = np.round(max(s["luminance_transitions"] for s in result.per_second) / 2, 1)
    print(f"  most flashes in a second    {peak}")


if __name__ == "__main__":
    main()
