"""Generated test videos (PyAV + libx264): for tests, the demo and benchmarks, so that
nothing binary is committed. Content is deterministic for a given seed."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_color_segments(
    path: str | Path,
    segments: Sequence[tuple[float, tuple[int, int, int]]],
    *,
    size: tuple[int, int] = (160, 90),
    fps: int = 25,
    codec: str = "libx264",
) -> Path:
    """A video of solid-colour segments: [(seconds, (r, g, b)), ...]."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"} if codec == "libx264" else {}
        index = 0
        for seconds, colour in segments:
            picture = np.empty((size[1], size[0], 3), dtype=np.uint8)
            picture[:] = colour
            for _ in range(round(seconds * fps)):
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts = index
                frame.time_base = Fraction(1, fps)
                container.mux(stream.encode(frame))
                index += 1
        container.mux(stream.encode())
    return path


def write_moving_pattern(
    path: str | Path,
    *,
    seconds: float,
    size: tuple[int, int] = (1280, 720),
    fps: int = 25,
    seed: int = 0,
    crf: int = 23,
) -> Path:
    """A textured, moving picture (gradients, drifting blocks, grain): decodes at a
    realistic cost, unlike flat colour, for benchmarks."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [(xx * 255 // width), (yy * 255 // height), ((xx + yy) * 255 // (width + height))], axis=-1
    ).astype(np.uint8)
    blocks = rng.integers(0, 255, size=(12, 5), dtype=np.int64)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": str(crf)}
        for index in range(round(seconds * fps)):
            picture = np.roll(base, shift=index * 4, axis=1)
            for bx, by, r, g, b in blocks:
                x = int((bx * 7 + index * (3 + bx % 5)) % (width - 80))
                y = int((by * 5 + index * (2 + by % 3)) % (height - 80))
                picture[y : y + 80, x : x + 80] = (r, g, b)
            grain = rng.integers(-12, 12, size=(height // 4, width // 4, 1), dtype=np.int16)
            picture = np.clip(
                picture.astype(np.int16) + np.repeat(np.repeat(grain, 4, 0), 4, 1), 0, 255
            ).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
