#!/usr/bin/env python
"""NudeNet's detector (the `nudity` extra) on this machine, all figures from one run.

    python benchmarks/bench_detector.py              # or: make bench-detector
    python benchmarks/bench_detector.py --fps 25     # every frame of the clips

Prints (1) how often it fires on the real clips in ../shared/media, none of which shows
nudity: detections of the exposed classes per 1,000 frames at the default confidence
(0.5) and at NudeNet's own cut (0.25), with the classes and clips they came from; (2) its
throughput per frame on this CPU, one picture a call and in batches of 8, 720p pictures.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("POLICY_ENGINE_SHARED") or ROOT.parent / "shared") / "media"

from policy_engine.analysis.detections import NUDENET, NUDENET_EXPOSED, DetectorSpec  # noqa: E402
from policy_engine.models.detector import load_nudenet, qualifying  # noqa: E402

CONFIDENCES = (0.5, 0.25)


def sampled_frames(path: Path, fps: float) -> list[np.ndarray]:
    """RGB pictures at `fps` by presentation time (every frame when fps >= the clip's)."""
    pictures, next_time = [], 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is None or frame.time + 1e-6 >= next_time:
                pictures.append(frame.to_ndarray(format="rgb24"))
                next_time = (frame.time or 0.0) + 1.0 / fps
    return pictures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fps", type=float, default=5.0, help="frames a second sampled")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime's threads")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"the real clips are not at {SHARED} (see ../shared/media/README.md)")
    detector = load_nudenet(threads=args.threads)
    identity = detector.identity
    print(f"{identity.name}: {identity.runtime}, input {identity.input_size}")

    filters = {c: DetectorSpec(NUDENET, NUDENET_EXPOSED, min_confidence=c) for c in CONFIDENCES}
    fired: dict[float, collections.Counter[str]] = {c: collections.Counter() for c in CONFIDENCES}
    frames_with: dict[float, int] = dict.fromkeys(CONFIDENCES, 0)
    total, seconds = 0, 0.0
    for clip in sorted(SHARED.glob("*.mp4")) + sorted(SHARED.glob("*.avi")):
        pictures = sampled_frames(clip, args.fps)
        for picture in pictures:
            started = time.perf_counter()
            found = detector.detect(picture)
            seconds += time.perf_counter() - started
            area = picture.shape[0] * picture.shape[1]
            for confidence, keep in filters.items():
                kept = qualifying(found, keep, area)
                frames_with[confidence] += bool(len(kept))
                for name in kept.data["class_name"]:
                    fired[confidence][f"{name} ({clip.name})"] += 1
        total += len(pictures)
        print(f"  {clip.name}: {len(pictures)} frames")

    print(f"\nexposed-class detections on {total} frames of clips without nudity:")
    for confidence in CONFIDENCES:
        count = sum(fired[confidence].values())
        print(
            f"  confidence >= {confidence}: {1000 * count / total:.1f} detections and"
            f" {1000 * frames_with[confidence] / total:.1f} frames per 1,000 frames"
        )
        for what, n in fired[confidence].most_common(5):
            print(f"      {n:4d}  {what}")
    print(f"\nmean time per frame over the clips (sizes vary): {1000 * seconds / total:.1f} ms")

    picture = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    detector.detect(picture)  # warm-up
    one = []
    for _ in range(20):
        started = time.perf_counter()
        detector.detect(picture)
        one.append(time.perf_counter() - started)
    batch = []
    for _ in range(5):
        started = time.perf_counter()
        detector.detect_many([picture] * 8)
        batch.append((time.perf_counter() - started) / 8)
    print("720p pictures:")
    print(f"  one a call      {1000 * statistics.median(one):6.1f} ms/frame"
          f" ({1 / statistics.median(one):5.1f} frames/s)")  # fmt: skip
    print(f"  batches of 8    {1000 * statistics.median(batch):6.1f} ms/frame"
          f" ({1 / statistics.median(batch):5.1f} frames/s)")  # fmt: skip


if __name__ == "__main__":
    main()
