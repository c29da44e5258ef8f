#!/usr/bin/env python
"""The added cost of an X-CLIP category on this machine, all figures from one run.

    python benchmarks/bench_xclip.py                 # or: make bench-xclip
    python benchmarks/bench_xclip.py --seconds 64 --rounds 3

X-CLIP at the size of microsoft/xclip-base-patch32 (XCLIPConfig's defaults: ViT-B/32
frames, 8 a window; random weights, the same FLOPs as real ones) against the CLIP scan
(ViT-B/32, 2 fps) of the same 720p clip. The X-CLIP side works on the frames the scan
samples (2 fps, already decoded: an X-CLIP category adds no decode), in windows of 4 s
every 2 s and, for comparison, every 4 s. Prints each side's time per minute of video and
the ratio (CLIP scan + X-CLIP) / CLIP scan, medians of interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_scan import CATEGORIES, SHARED, WORK, build_clip, build_model  # noqa: E402

from policy_engine.analysis.windows import fixed_windows  # noqa: E402
from policy_engine.media.video import SamplingSpec  # noqa: E402
from policy_engine.models.clip import ClipEmbedder  # noqa: E402
from policy_engine.models.xclip import XClipScorer  # noqa: E402
from policy_engine.pipeline import AnalysisOptions, analyze_video  # noqa: E402

PROMPTS = [p for c in CATEGORIES for p in c.prompts] + ["a person punching someone"]
WINDOWS_PER_CALL = 4


def build_xclip(path: Path) -> Path:
    """X-CLIP base-patch32's architecture with random weights, CLIP's real tokenizer."""
    if (path / "config.json").is_file():
        return path
    from transformers import XCLIPConfig, XCLIPModel

    from policy_engine.models.tiny import make_tiny_xclip

    make_tiny_xclip(path)  # tokenizer and processor files; the model is replaced below
    tokenizer = SHARED / "models" / "clip-vit-base-patch32-config"
    if tokenizer.is_dir():
        for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(tokenizer / name, path / name)
    config = XCLIPConfig()
    config.text_config.vocab_size = len(json.loads((path / "vocab.json").read_text()))
    XCLIPModel(config).save_pretrained(path)
    processor = json.loads((path / "preprocessor_config.json").read_text())
    processor.update(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224})
    (path / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return path


def sampled(path: Path, fps: float) -> tuple[list[float], list[np.ndarray]]:
    """The scan's 2 fps frames by presentation time, as 224-high RGB pictures."""
    times, pictures, next_time = [], [], 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time + 1e-6 >= next_time:
                times.append(float(frame.time))
                pictures.append(frame.to_ndarray(format="rgb24", width=398, height=224))
                next_time = frame.time + 1.0 / fps
    return times, pictures


def xclip_seconds(
    scorer: XClipScorer, times: list[float], pictures: list[np.ndarray], end: float, hop: float
) -> tuple[float, int]:
    windows = fixed_windows(times, end, scorer.frames_per_window, length=4.0, hop=hop)
    started = time.perf_counter()
    for i in range(0, len(windows), WINDOWS_PER_CALL):
        part = windows[i : i + WINDOWS_PER_CALL]
        pixels = scorer.pixels([[pictures[k] for k in w.frames] for w in part])
        scorer.logits(pixels, PROMPTS)
    return time.perf_counter() - started, len(windows)


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
    scorer = XClipScorer.load(str(build_xclip(WORK / "xclip-b32-random")), device="cpu")
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0))
    times, pictures = sampled(clip, 2.0)
    end = args.seconds
    clip_id, xclip_id = embedder.identity, scorer.identity
    print(f"clip {clip.name}; CLIP ViT-B/32 ({clip_id.dtype}, {clip_id.runtime});"
          f" X-CLIP base-patch32 size ({xclip_id.dtype}), {len(PROMPTS)} prompts")  # fmt: skip

    analyze_video(clip, CATEGORIES, embedder, options)  # warm-up both
    xclip_seconds(scorer, times, pictures, end, 2.0)
    scan, overlapping, tiled, counts = [], [], [], {}
    for _ in range(args.rounds):
        started = time.perf_counter()
        analyze_video(clip, CATEGORIES, embedder, options)
        scan.append(time.perf_counter() - started)
        for hop, into in ((2.0, overlapping), (4.0, tiled)):
            seconds, counts[hop] = xclip_seconds(scorer, times, pictures, end, hop)
            into.append(seconds)
    per_minute = 60.0 / args.seconds
    base = statistics.median(scan)
    print(f"\nper minute of video (medians of {args.rounds} rounds):")
    print(f"  CLIP scan, 2 fps (decode + model)     {base * per_minute:6.2f} s")
    for hop, values in ((2.0, overlapping), (4.0, tiled)):
        cost = statistics.median(values)
        label = f"X-CLIP, 4 s windows every {hop:.0f} s ({counts[hop]:3d})"
        print(f"  {label:38s}{cost * per_minute:6.2f} s"
              f"   ratio (scan + X-CLIP) / scan: {(base + cost) / base:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
