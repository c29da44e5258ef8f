"""The PSE check against EA IRIS's own test clips and its expected per-frame results
(../shared/pse/iris; see ../shared/pse/README.md). In IRIS mode the engine must reproduce
IRIS frame by frame; by default (regions, real times) it must agree on these full-screen
clips. flashStripes is left out: its CSV is in an older format that IRIS's tests skip."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from policy_engine.analysis.photosensitivity import (
    PhotosensitivityAnalyzer,
    PseResult,
    PseSettings,
)

pytestmark = pytest.mark.media

CLIPS = [
    "2Hz_5s",
    "2Hz_6s",
    "3Hz_6s",
    "GradualRedIncrease",
    "gray",
    "extendedFLONG",
    "intermitentEF",
]
VERDICTS = {
    "2Hz_5s": "warning",
    "2Hz_6s": "fail",
    "3Hz_6s": "fail",
    "GradualRedIncrease": "pass",
    "gray": "pass",
    "extendedFLONG": "pass",
    "intermitentEF": "pass",
}
# IRIS's CSV column -> the engine's frame column
EXACT = {
    "LuminanceTransitions": "luminance_transitions",
    "RedTransitions": "red_transitions",
    "LuminanceExtendedFailCount": "luminance_extended_count",
    "RedExtendedFailCount": "red_extended_count",
    "FlashLuminanceFailedFrame": "luminance_result",  # IRIS's FlashResult: 0 pass .. 3 fail
    "FlashRedFailedFrame": "red_result",
}
CLOSE = {
    "AverageLuminance": "average_luminance",
    "AverageRed": "average_red",
    "FlashAreaLuminance": "flash_area_luminance",
    "FlashAreaRed": "flash_area_red",
}


def decode(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every frame as RGB with its stream time. The clips carry no colour matrix; IRIS
    reads them through OpenCV, whose FFmpeg backend converts with swscale's default for
    untagged video, BT.601 limited range. That is said explicitly here (BT.709 would move
    the average luminance by up to 0.05 and the red by up to 36 on GradualRedIncrease)."""
    av = pytest.importorskip("av")
    from av.video.reformatter import Colorspace

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = frame.reformat(format="rgb24", src_colorspace=Colorspace.ITU601)
            frames.append((float(frame.pts * frame.time_base), rgb.to_ndarray()))
    return frames


def analyse(frames: list[tuple[float, np.ndarray]], settings: PseSettings) -> PseResult:
    analyzer = PhotosensitivityAnalyzer(settings)
    for time, rgb in frames:
        analyzer.add_frame(time, rgb)
    return analyzer.result()


def expected(folder: Path, clip: str) -> dict[str, np.ndarray]:
    with open(folder / "expected" / f"{clip}_RELATIVE.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {name: np.array([float(row[name]) for row in rows]) for name in [*EXACT, *CLOSE]}


@pytest.fixture(scope="module", params=CLIPS)
def clip(request: pytest.FixtureRequest, pse_iris: Path):
    name = request.param
    return name, decode(pse_iris / f"{name}.mp4"), expected(pse_iris, name)


def test_iris_mode_reproduces_iris_frame_by_frame(clip) -> None:
    name, frames, iris = clip
    result = analyse(frames, PseSettings.iris())
    assert result.frame_count == len(iris["AverageLuminance"])
    columns = result.frames.columns
    for theirs, ours in CLOSE.items():
        error = np.abs(columns[ours].astype(np.float64) - iris[theirs])
        assert error.max() <= 1e-4, f"{name} {theirs}: frame {int(error.argmax()) + 1}"
    for theirs, ours in EXACT.items():
        differ = np.flatnonzero(columns[ours] != iris[theirs])
        assert differ.size == 0, f"{name} {theirs}: frames {(differ + 1).tolist()[:10]}"
    assert result.verdict == VERDICTS[name]


def test_the_default_agrees_with_iris_on_full_screen_flashes(clip) -> None:
    """Regions and real times change nothing where the whole screen flashes at a
    constant frame rate: the same failing frames and the same verdict."""
    name, frames, iris = clip
    result = analyse(frames, PseSettings())
    for theirs in ("FlashLuminanceFailedFrame", "FlashRedFailedFrame"):
        ours = result.frames.columns[EXACT[theirs]]
        assert (ours == iris[theirs]).all(), name
    assert result.verdict == VERDICTS[name]
