"""Shot boundaries in the sampler's own decode pass: PySceneDetect's detectors (content,
adaptive, threshold) fed the reduced BGR picture of every decoded frame, with timecodes
from the frame's presentation time, so no file is decoded twice.

PySceneDetect normally decodes the file itself (OpenCV or PyAV) and shrinks each frame
to about 256 pixels on its long side (OpenCV, INTER_LINEAR); here the sampler's tap hands
over the same size, reduced with the same INTER_LINEAR on each YUV plane before the
small picture is converted to BGR with BT.601 as FFmpeg converts untold (swscale's
reduction of the whole frame cost 2.5 times as much; other pixel formats still go
through it, with FAST_BILINEAR). The scores are not bit for bit PySceneDetect's (the
hue of grey pixels turns on a rounding), so a cut within a point of the threshold can
go either way; on the shared clips every cut agrees (``tests/test_scenes.py`` checks
them against ``scenedetect.detect``). Each frame's ``FrameTimecode`` carries its
pts-derived time in microseconds, as PySceneDetect's OpenCV backend does.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from policy_engine.analysis.scenes import SceneSettings
from policy_engine.errors import ConfigError
from policy_engine.media.taps import PictureTap

_MICROSECONDS = Fraction(1, 1_000_000)


def mean_pixel_distance(left: np.ndarray, right: np.ndarray) -> float:
    """PySceneDetect's ``_mean_pixel_distance`` exactly (the L1 distance of two 8-bit
    planes is an integer sum, divided by the pixel count), in one OpenCV call where it
    makes four numpy passes with 32-bit copies: its content and adaptive detectors call
    it three times a frame, a third of their time on every decoded frame."""
    import cv2

    assert left.ndim == 2 and left.shape == right.shape
    return float(cv2.norm(left, right, cv2.NORM_L1)) / float(left.shape[0] * left.shape[1])


library_distance: Any = None  # PySceneDetect's own, once replaced


def _faster_distances() -> None:
    """Give PySceneDetect's content detector the same distance, computed faster (the
    version range is pinned; where the helper is not found, the library's own stays)."""
    global library_distance
    from scenedetect.detectors import content_detector

    found = getattr(content_detector, "_mean_pixel_distance", None)
    if found is not None and found is not mean_pixel_distance:
        library_distance = found  # kept: a test checks that both give the same numbers
        content_detector._mean_pixel_distance = mean_pixel_distance


def make_detector(settings: SceneSettings) -> Any:
    """A fresh PySceneDetect detector for ``settings`` (one per video: they keep state)."""
    try:
        from scenedetect.detectors import AdaptiveDetector, ContentDetector, ThresholdDetector
    except ImportError as exc:  # scenedetect is a main dependency; a broken install says so
        raise ConfigError(
            f"scene detection needs the scenedetect package ({exc}); reinstall policy_engine,"
            " or turn scene detection off (scenes = false)"
        ) from exc
    _faster_distances()
    threshold = settings.effective_threshold
    length = settings.min_scene_frames
    if settings.detector == "adaptive":
        return AdaptiveDetector(adaptive_threshold=threshold, min_scene_len=length)
    if settings.detector == "threshold":
        return ThresholdDetector(threshold=threshold, min_scene_len=length)
    return ContentDetector(threshold=threshold, min_scene_len=length)


class SceneCuts:
    """A cut source for the sampler (``media.video.CutSource``): cut times in seconds."""

    def __init__(self, settings: SceneSettings) -> None:
        self.settings = settings
        self.detector = make_detector(settings)
        self.cuts: list[float] = []
        self.frames = 0
        self._pending: list[float] = []
        self._rate: Fraction = Fraction(25)
        self._last: Any = None
        self._finished = False

    @property
    def tap(self) -> PictureTap:
        return PictureTap(
            self.add_frame, self.settings.width, "bgr24", long_side=True,
            interpolation="LINEAR", matrix="bt601",  # as PySceneDetect's own pictures
        )  # fmt: skip

    def start(self, info: Any) -> None:
        """The video's declared rate: what PySceneDetect counts ``min_scene_len`` in."""
        if info.fps:
            self._rate = Fraction(info.fps).limit_denominator(1001)

    def add_frame(self, time: float, picture: np.ndarray) -> None:
        from scenedetect import FrameTimecode
        from scenedetect.common import Timecode

        stamp = Timecode(pts=max(0, round(time * 1_000_000)), time_base=_MICROSECONDS)
        self._last = FrameTimecode(stamp, fps=self._rate)
        self.frames += 1
        found = self.detector.process_frame(self._last, picture)
        self._pending.extend(cut.seconds for cut in found)

    def take_cuts(self) -> list[float]:
        found, self._pending = sorted(self._pending), []
        self.cuts.extend(found)
        return found

    def finish(self) -> list[float]:
        """Cuts the detector holds back until the stream ends (threshold fades)."""
        if not self._finished and self._last is not None:
            self._finished = True
            self._pending.extend(cut.seconds for cut in self.detector.post_process(self._last))
        return self.take_cuts()

    def summary(self) -> dict[str, Any]:
        """What a scan records about its scene detection."""
        return {**self.settings.to_dict(), "frames": self.frames, "cuts": len(self.cuts)}
