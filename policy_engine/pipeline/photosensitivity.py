"""The photosensitivity check on its own: every frame of one video, no model and no
database (``policy-engine pse``). Scans run the same check inside their own decode pass
(see ``analysis.analyze_video``), so a scanned file is decoded once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from policy_engine.analysis.photosensitivity import (
    PhotosensitivityAnalyzer,
    PseResult,
    PseSettings,
)
from policy_engine.media.video import FrameSampler, SamplingMode, SamplingSpec, VideoInfo

_NO_MODEL_INPUT = 1  # the sampler's model-input size; unused, nothing is sampled


def check_video(
    path: str | Path,
    settings: PseSettings,
    *,
    width: int | None = 160,
    start: float = 0.0,
    end: float | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> tuple[VideoInfo, PseResult]:
    """Flashes, red flashes and patterns on every frame of ``[start, end)``. Raises
    MediaError for a file that is not a readable video."""
    spec = SamplingSpec(mode=SamplingMode.ALL, start=start, end=end)
    sampler = FrameSampler(path, spec, size=_NO_MODEL_INPUT)
    window = max(0.0, sampler.window_end - start)
    analyzer = PhotosensitivityAnalyzer(settings)
    for count, (time, picture) in enumerate(sampler.pictures(width)):
        analyzer.add_frame(time, picture)
        if progress is not None and count % 25 == 0:
            progress(max(0.0, time - start), window)
    return sampler.info, analyzer.result(end_time=sampler.window_end)
