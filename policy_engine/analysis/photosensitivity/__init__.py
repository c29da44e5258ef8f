"""Photosensitive epilepsy (PSE) check: general flashes, red flashes and regular patterns,
frame by frame (Ofcom rule 2.12 and its guidance, ITU-R BT.1702, WCAG 2.3.1). Pure numpy.

It follows EA's IRIS (github.com/electronicarts/IRIS) frame by frame, and in IRIS mode
(``PseSettings.iris()``) reproduces its per-frame results; by default it differs from IRIS
in three ways: the flashing area is measured per region of the screen rather than from
the whole-frame mean, one-second and five-second windows are real time from the frame
times, and spatial patterns are checked.
"""

from policy_engine.analysis.photosensitivity.analyzer import (
    PhotosensitivityAnalyzer,
    analyze_frames,
)
from policy_engine.analysis.photosensitivity.result import (
    EXTENDED_FAIL,
    FLASH_FAIL,
    PASS,
    WARNING,
    PseFrames,
    PseInterval,
    PseResult,
    PseSecond,
)
from policy_engine.analysis.photosensitivity.settings import PseSettings

__all__ = [
    "EXTENDED_FAIL",
    "FLASH_FAIL",
    "PASS",
    "WARNING",
    "PhotosensitivityAnalyzer",
    "PseFrames",
    "PseInterval",
    "PseResult",
    "PseSecond",
    "PseSettings",
    "analyze_frames",
]
