"""The streaming photosensitivity analyser: one picture at a time, small summaries kept."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable

import numpy as np

from policy_engine.analysis.photosensitivity.flashes import (
    AreaMeasure,
    ExtendedCounter,
    FlashChannel,
    Window,
)
from policy_engine.analysis.photosensitivity.luminance import (
    FrameMeasurer,
    FrameMeasures,
    Layout,
    as_picture,
)
from policy_engine.analysis.photosensitivity.patterns import PatternDetector, StripeRule
from policy_engine.analysis.photosensitivity.result import (
    COLUMNS,
    EXTENDED_FAIL,
    FLASH_FAIL,
    PASS,
    WARNING,
    PseFrames,
    PseResult,
    summarise,
)
from policy_engine.analysis.photosensitivity.settings import DEFAULT_SETTINGS, PseSettings

_TYPECODES = {"f8": "d", "f4": "f", "i4": "i", "i2": "h", "i1": "b"}
# what _record appends for each channel, in this order
_CHANNEL_COLUMNS = (
    "flash_area_{}",
    "flashing_area_{}",
    "{}_transitions",
    "{}_extended_count",
    "{}_result",
)
# Pictures are measured in batches of up to this many bytes (the scan's 160x90 pictures:
# 6 at a time); a 1080p picture is its own batch.
BATCH_BYTES = 256 << 10


class PhotosensitivityAnalyzer:
    """Streaming: frames are pushed one at a time in presentation order; memory stays
    O(frames) of small per-frame summaries and one batch of pictures, never O(frames)
    pictures. A picture is measured when its batch fills (or at result()): its checks and
    its errors (a bad picture, a time going back) are immediate."""

    def __init__(self, settings: PseSettings = DEFAULT_SETTINGS) -> None:
        self.settings = settings
        s = settings
        if s.area == "frame":
            grid = (1, 1)
        elif s.area == "wcag-field":
            grid = (s.grid[0] * 3, s.grid[1] * 3)
        else:
            grid = s.grid
        self._measurer = FrameMeasurer(
            grid,
            red_saturation=s.red_saturation,
            track_pixels=s.area == "frame",
            pattern_width=s.pattern_width if s.patterns else None,
        )
        self._patterns = (
            PatternDetector(
                StripeRule(s.flash_delta_relative, s.dark_limit_relative, s.pattern_min_pairs),
                s.area_threshold,
            )
            if s.patterns
            else None
        )
        self._columns = {name: array(_TYPECODES[dtype]) for name, (dtype, _) in COLUMNS.items()}
        self._channel_columns = {
            name: tuple(self._columns[column.format(name)] for column in _CHANNEL_COLUMNS)
            for name in ("luminance", "red")
        }
        self._measures: dict[int, AreaMeasure] = {}
        self._first_time: float | None = None  # for the frame rate of IRIS's windows
        self._last_time: float | None = None
        self._count = 0
        self._batch: np.ndarray | None = None  # pictures waiting to be measured
        self._batch_frames: list[tuple[int, float, float]] = []  # (index, time, duration)
        one_second, extended = Window(1.0), Window(s.extended_window_s)
        self._channels = {
            "luminance": (
                FlashChannel(s.flash_delta_relative, s.dark_limit_relative, one_second),
                ExtendedCounter(extended, s.extended_share),
            ),
            # IRIS has no dark test for red (its RedDarkThreshold, 321, is above any value)
            "red": (
                FlashChannel(s.red_delta, None, one_second),
                ExtendedCounter(extended, s.extended_share),
            ),
        }

    @property
    def frame_count(self) -> int:
        return self._count

    def add_frame(self, time: float, rgb: np.ndarray) -> None:
        """Analyse the next picture (uint8 HxWx3 RGB or HxW grey, any size), shown at
        `time` seconds; times must not go back."""
        time = float(time)
        if not math.isfinite(time):
            raise ValueError(f"frame time must be finite, got {time}")
        last = self._last_time
        if last is not None and time < last:
            raise ValueError(f"frame times must not go back: {time} after {last}")
        picture = as_picture(rgb)
        index = self._count
        if index == 0:
            self._first_time = time
        elif index == 1 and self.settings.window == "frames":
            self._use_frame_windows(time)
        self._hold(picture, (index, time, time - last if last is not None else 0.0))
        self._last_time = time
        self._count += 1

    def result(self, end_time: float | None = None) -> PseResult:
        """The outcome so far; `end_time` is when the last frame stops being shown."""
        self._measure_batch()
        frames = PseFrames(
            {
                name: np.frombuffer(column, dtype=COLUMNS[name][0]).copy()
                if len(column)
                else np.zeros(0, dtype=COLUMNS[name][0])
                for name, column in self._columns.items()
            }
        )
        return summarise(frames, self.settings, end_time)

    # -- internals --------------------------------------------------------------------------

    def _hold(self, picture: np.ndarray, frame: tuple[int, float, float]) -> None:
        """Add the picture to the batch (a copy: the caller may reuse its array)."""
        batch, held = self._batch, len(self._batch_frames)
        if batch is not None and (batch.shape[1:] != picture.shape or held == len(batch)):
            self._measure_batch()
            batch = None if batch.shape[1:] != picture.shape else batch
        if batch is None:
            # IRIS's changed-pixel count compares each picture with the last: one a batch
            size = 1 if self._measurer.track_pixels else BATCH_BYTES // picture.nbytes
            batch = self._batch = np.empty((max(1, size), *picture.shape), dtype=np.uint8)
        np.copyto(batch[len(self._batch_frames)], picture)
        self._batch_frames.append(frame)

    def _measure_batch(self) -> None:
        frames, self._batch_frames = self._batch_frames, []
        if not frames:
            return
        assert self._batch is not None
        measured = self._measurer.measure_many(self._batch[: len(frames)])
        patterns = (
            self._patterns.step_many(measured.pattern_images, len(frames))
            if self._patterns
            else [(0.0, False)] * len(frames)
        )
        for (index, time, duration), measures, pattern in zip(
            frames, measured.frames, patterns, strict=True
        ):
            self._record(index, time, duration, measures, pattern)

    def _use_frame_windows(self, time: float) -> None:
        """IRIS's windows: round(frame rate) frames a second, from the nominal rate."""
        rate = self.settings.frame_rate
        if rate is None:
            assert self._first_time is not None
            step = time - self._first_time
            if step <= 0:
                raise ValueError("window='frames' needs frame_rate when frame times repeat")
            rate = 1.0 / step
        fps = max(1, round(rate))
        s = self.settings
        one_second = Window(1.0, fps)
        extended = Window(s.extended_window_s, round(s.extended_window_s * fps))
        for channel, counter in self._channels.values():
            channel.window, counter.window = one_second, extended

    def _area_measure(self, layout: Layout) -> AreaMeasure:
        key = id(layout)  # layouts are cached per picture size by the measurer
        if key not in self._measures:
            mode = "regions" if self.settings.area == "frame" else self.settings.area
            self._measures[key] = AreaMeasure(mode, layout.weights, self.settings.area_threshold)
        return self._measures[key]

    def _record(
        self,
        index: int,
        time: float,
        duration: float,
        m: FrameMeasures,
        pattern: tuple[float, bool],
    ) -> None:
        s = self.settings
        inputs = {
            "luminance": (m.cell_luminance, m.changed_share),
            "red": (m.cell_red, m.red_changed_share),
        }
        measure = self._area_measure(m.layout)
        for name, (channel, counter) in self._channels.items():
            cells, changed = inputs[name]
            gate = True
            if s.area == "frame":
                # IRIS: float means, and a change counts only when a quarter of the pixels
                # changed at all (its CheckSafeArea)
                cells = cells.astype(np.float32).astype(np.float64)
                gate = round(changed * m.pixels) >= int(m.pixels * s.area_threshold)
            transitions = channel.step(index, time, cells, gate=gate, area=changed)
            level = measure.level(channel.counts)
            if s.area == "frame":
                flash_area = changed
                flashing = channel.peak_area() if level else 0.0
            else:
                flash_area = measure.share(transitions)
                flashing = measure.share(channel.counts >= level) if level else 0.0
            warning = s.warning_transitions <= level < s.fail_transitions
            extended_fail = counter.step(index, time, duration, warning)
            if level >= s.fail_transitions:
                outcome = FLASH_FAIL
            elif level >= s.warning_transitions:
                outcome = EXTENDED_FAIL if extended_fail else WARNING
            else:
                outcome = PASS
            values = (flash_area, flashing, level, counter.count, outcome)
            for column, value in zip(self._channel_columns[name], values):
                column.append(value)
        pattern_area, moving = pattern
        columns = self._columns
        columns["time"].append(time)
        columns["average_luminance"].append(m.average_luminance)
        columns["average_red"].append(m.average_red)
        columns["pattern_area"].append(pattern_area)
        columns["pattern_moving"].append(int(moving))
        columns["pattern_fail"].append(0)  # decided over whole showings in result()


def analyze_frames(
    frames: Iterable[tuple[float, np.ndarray]],
    settings: PseSettings = DEFAULT_SETTINGS,
    end_time: float | None = None,
) -> PseResult:
    """Analyse (time, picture) pairs in presentation order."""
    analyzer = PhotosensitivityAnalyzer(settings)
    for time, picture in frames:
        analyzer.add_frame(time, picture)
    return analyzer.result(end_time)
