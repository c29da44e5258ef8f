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
from policy_engine.analysis.photosensitivity.luminance import FrameMeasurer, FrameMeasures, Layout
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
from policy_engine.analysis.photosensitivity.settings import PseSettings

_TYPECODES = {"f8": "d", "f4": "f", "i4": "i", "i2": "h", "i1": "b"}


class PhotosensitivityAnalyzer:
    """Streaming: frames are pushed one at a time in presentation order; memory stays
    O(frames) of small per-frame summaries, never O(frames) pictures."""

    def __init__(self, settings: PseSettings = PseSettings()) -> None:  # noqa: B008 (frozen)
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
        self._measures: dict[int, AreaMeasure] = {}
        self._first_time: float | None = None  # for the frame rate of IRIS's windows
        self._last_time: float | None = None
        self._count = 0
        one_second = Window(1.0)
        self._luminance = FlashChannel(s.flash_delta_relative, s.dark_limit_relative, one_second)
        self._red = FlashChannel(s.red_delta, None, one_second)  # IRIS: no dark test for red
        extended = Window(s.extended_window_s)
        self._luminance_extended = ExtendedCounter(extended, s.extended_share)
        self._red_extended = ExtendedCounter(extended, s.extended_share)

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
        measures = self._measurer.measure(rgb)
        index = self._count
        if index == 0:
            self._first_time = time
        elif index == 1 and self.settings.window == "frames":
            self._use_frame_windows(time)
        self._record(index, time, time - last if last is not None else 0.0, measures)
        self._last_time = time
        self._count += 1

    def result(self, end_time: float | None = None) -> PseResult:
        """The outcome so far; `end_time` is when the last frame stops being shown."""
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
        self._luminance.window = self._red.window = one_second
        self._luminance_extended.window = self._red_extended.window = extended

    def _area_measure(self, layout: Layout) -> AreaMeasure:
        key = id(layout)  # layouts are cached per picture size by the measurer
        if key not in self._measures:
            mode = "regions" if self.settings.area == "frame" else self.settings.area
            self._measures[key] = AreaMeasure(mode, layout.weights, self.settings.area_threshold)
        return self._measures[key]

    def _record(self, index: int, time: float, duration: float, m: FrameMeasures) -> None:
        s = self.settings
        frame_mode = s.area == "frame"
        luminance_cells, red_cells = m.cell_luminance, m.cell_red
        luminance_gate = red_gate = True
        if frame_mode:
            # IRIS: float means; a change counts only when a quarter of the pixels changed
            luminance_cells = luminance_cells.astype(np.float32).astype(np.float64)
            red_cells = red_cells.astype(np.float32).astype(np.float64)
            safe = int(m.pixels * s.area_threshold)
            luminance_gate = round(m.changed_share * m.pixels) >= safe
            red_gate = round(m.red_changed_share * m.pixels) >= safe
        measure = self._area_measure(m.layout)
        columns = self._columns
        channels = (
            (
                "luminance",
                self._luminance,
                self._luminance_extended,
                luminance_cells,
                luminance_gate,
                m.changed_share,
            ),
            ("red", self._red, self._red_extended, red_cells, red_gate, m.red_changed_share),
        )
        for name, channel, extended, cells, gate, changed in channels:
            transitions = channel.step(index, time, cells, gate=gate, area=changed)
            level = measure.level(channel.counts)
            if frame_mode:
                flash_area = changed
                flashing = channel.peak_area() if level else 0.0
            else:
                flash_area = measure.share(transitions)
                flashing = measure.share(channel.counts >= level) if level else 0.0
            warning = s.warning_transitions <= level < s.fail_transitions
            extended_fail = extended.step(index, time, duration, warning)
            if level >= s.fail_transitions:
                outcome = FLASH_FAIL
            elif level >= s.warning_transitions:
                outcome = EXTENDED_FAIL if extended_fail else WARNING
            else:
                outcome = PASS
            columns[f"flash_area_{name}"].append(flash_area)
            columns[f"flashing_area_{name}"].append(flashing)
            columns[f"{name}_transitions"].append(level)
            columns[f"{name}_extended_count"].append(extended.count)
            columns[f"{name}_result"].append(outcome)
        pattern_area, moving = self._patterns.step(m.pattern_image) if self._patterns else (0, 0)
        columns["time"].append(time)
        columns["average_luminance"].append(m.average_luminance)
        columns["average_red"].append(m.average_red)
        columns["pattern_area"].append(pattern_area)
        columns["pattern_moving"].append(int(moving))
        columns["pattern_fail"].append(0)  # decided over whole runs in result()


def analyze_frames(
    frames: Iterable[tuple[float, np.ndarray]],
    settings: PseSettings = PseSettings(),  # noqa: B008 (frozen)
    end_time: float | None = None,
) -> PseResult:
    """Analyse (time, picture) pairs in presentation order."""
    analyzer = PhotosensitivityAnalyzer(settings)
    for time, picture in frames:
        analyzer.add_frame(time, picture)
    return analyzer.result(end_time)
