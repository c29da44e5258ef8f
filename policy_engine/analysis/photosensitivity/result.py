"""The outcome of a photosensitivity check: verdict, intervals, series, per-frame columns."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from policy_engine.analysis.photosensitivity.flashes import TIME_EPS
from policy_engine.analysis.photosensitivity.settings import PseSettings

# Per-frame flash results, IRIS's FlashResult values (its CSV's FlashLuminanceFailedFrame).
PASS, WARNING, EXTENDED_FAIL, FLASH_FAIL = 0, 1, 2, 3
KINDS = ("flash", "red-flash", "extended-flash", "extended-red-flash", "pattern")


@dataclass(frozen=True)
class PseInterval:
    start: float  # time of the first frame
    end: float  # time of the frame after the last one (or the end of the stream)
    kind: str  # one of KINDS
    flashes_per_second: float  # most transitions in a one-second window / 2 (0 for patterns)
    area: float  # largest flashing (or pattern) area, share of the screen or of the field
    severity: str = "fail"  # "fail" or "warning" (flashing at 4 to 6 transitions a second)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PseInterval:
        return cls(**data)


@dataclass(frozen=True)
class PseSecond:
    """The worst one-second window: the one with the most transitions."""

    start: float  # time of its first frame
    end: float  # time of its last frame
    luminance_transitions: int
    red_transitions: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PseSecond:
        return cls(**data)


# name -> (dtype, decimals in to_dict; None keeps integers)
COLUMNS: dict[str, tuple[str, int | None]] = {
    "time": ("f8", 6),
    "average_luminance": ("f4", 6),
    "average_red": ("f4", 4),
    "flash_area_luminance": ("f4", 4),  # area that transitioned at this frame (IRIS: changed)
    "flash_area_red": ("f4", 4),
    "flashing_area_luminance": ("f4", 4),  # area flashing at the frame's window count
    "flashing_area_red": ("f4", 4),
    "luminance_transitions": ("i2", None),  # in the one-second window ending here
    "red_transitions": ("i2", None),
    "luminance_extended_count": ("i4", None),  # frames at the warning level, last 5 s
    "red_extended_count": ("i4", None),
    "luminance_result": ("i1", None),  # PASS, WARNING, EXTENDED_FAIL, FLASH_FAIL
    "red_result": ("i1", None),
    "pattern_area": ("f4", 4),
    "pattern_moving": ("i1", None),
    "pattern_fail": ("i1", None),
}


class PseFrames:
    """Per-frame columns, one numpy array each, all of the same length."""

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        missing = sorted(set(COLUMNS) - set(columns))
        if missing:
            raise ValueError(f"missing frame columns: {', '.join(missing)}")
        lengths = {len(columns[name]) for name in COLUMNS}
        if len(lengths) > 1:
            raise ValueError("frame columns differ in length")
        self.columns = {name: np.asarray(columns[name], dtype=COLUMNS[name][0]) for name in COLUMNS}

    def __len__(self) -> int:
        return len(self.columns["time"])

    def __getattr__(self, name: str) -> np.ndarray:
        columns = self.__dict__.get("columns", {})
        if name in columns:
            return columns[name]
        raise AttributeError(name)

    @property
    def times(self) -> np.ndarray:
        return self.columns["time"]

    @property
    def luminance_flash_fail(self) -> np.ndarray:
        return self.columns["luminance_result"] == FLASH_FAIL

    @property
    def red_flash_fail(self) -> np.ndarray:
        return self.columns["red_result"] == FLASH_FAIL

    @property
    def luminance_extended_fail(self) -> np.ndarray:
        return self.columns["luminance_result"] == EXTENDED_FAIL

    @property
    def red_extended_fail(self) -> np.ndarray:
        return self.columns["red_result"] == EXTENDED_FAIL

    def to_dict(self) -> dict[str, list]:
        data: dict[str, list] = {}
        for name, (_, decimals) in COLUMNS.items():
            values = self.columns[name]
            if decimals is None:
                data[name] = values.tolist()
            else:
                data[name] = values.astype(np.float64).round(decimals).tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> PseFrames:
        return cls({name: np.asarray(data[name]) for name in COLUMNS if name in data})


@dataclass(frozen=True)
class PseResult:
    verdict: str  # "pass" | "warning" | "fail"
    intervals: list[PseInterval]  # failing and warning-level stretches, by start
    worst_second: PseSecond | None  # None when nothing made a transition
    per_second: list[dict[str, Any]]  # one entry per second of the stream, for a chart
    frames: PseFrames
    settings: PseSettings
    frame_count: int

    @property
    def failures(self) -> list[PseInterval]:
        return [i for i in self.intervals if i.severity == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "frame_count": self.frame_count,
            "intervals": [i.to_dict() for i in self.intervals],
            "worst_second": self.worst_second.to_dict() if self.worst_second else None,
            "per_second": self.per_second,
            "frames": self.frames.to_dict(),
            "settings": self.settings.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PseResult:
        worst = data.get("worst_second")
        return cls(
            verdict=data["verdict"],
            intervals=[PseInterval.from_dict(i) for i in data["intervals"]],
            worst_second=PseSecond.from_dict(worst) if worst else None,
            per_second=[dict(s) for s in data["per_second"]],
            frames=PseFrames.from_dict(data["frames"]),
            settings=PseSettings.from_dict(data["settings"]),
            frame_count=int(data["frame_count"]),
        )


def summarise(frames: PseFrames, settings: PseSettings, end_time: float | None) -> PseResult:
    """Verdict, intervals and series from the per-frame columns."""
    times = frames.time
    ends = _frame_ends(times, end_time)
    if settings.patterns:
        present = frames.pattern_area >= settings.area_threshold - 1e-9
        moving = frames.pattern_moving.astype(bool)
        fail = pattern_failures(times, ends, present, moving, settings.pattern_min_seconds)
        frames.columns["pattern_fail"] = fail.astype(np.int8)
    intervals = _intervals(frames, ends)
    if any(i.severity == "fail" for i in intervals):
        verdict = "fail"
    elif intervals:
        verdict = "warning"
    else:
        verdict = "pass"
    return PseResult(
        verdict=verdict,
        intervals=intervals,
        worst_second=_worst_second(frames),
        per_second=_per_second(frames),
        frames=frames,
        settings=settings,
        frame_count=len(frames),
    )


def _frame_ends(times: np.ndarray, end_time: float | None) -> np.ndarray:
    """When each frame stops being shown: the next frame's time; for the last, end_time
    or one more frame interval."""
    if not len(times):
        return times.copy()
    ends = np.empty_like(times)
    ends[:-1] = times[1:]
    step = times[-1] - times[-2] if len(times) > 1 else 0.0
    ends[-1] = max(end_time, times[-1]) if end_time is not None else times[-1] + step
    return ends


def pattern_failures(
    times: np.ndarray, ends: np.ndarray, present: np.ndarray, moving: np.ndarray, seconds: float
) -> np.ndarray:
    """Frames of pattern episodes that fail: shown for `seconds` or more at a stretch, or
    moving, or flickering. Showings less than `seconds` apart are one episode, and an
    episode of two or more showings flickers (a pattern flashed on and off)."""
    fail = np.zeros(len(times), dtype=bool)
    episodes: list[list[tuple[int, int]]] = []
    for first, last in _runs(present):
        if episodes and times[first] - ends[episodes[-1][-1][1]] < seconds - TIME_EPS:
            episodes[-1].append((first, last))
        else:
            episodes.append([(first, last)])
    for showings in episodes:
        lasting = any(ends[last] - times[first] >= seconds - TIME_EPS for first, last in showings)
        begin, end = showings[0][0], showings[-1][1] + 1
        if lasting or len(showings) > 1 or moving[begin:end].any():
            fail[begin:end] = True
    return fail


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) indices of each run of consecutive true values."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def _intervals(frames: PseFrames, ends: np.ndarray) -> list[PseInterval]:
    times = frames.time
    specs = [
        ("flash", "fail", frames.luminance_result == FLASH_FAIL, "luminance"),
        ("red-flash", "fail", frames.red_result == FLASH_FAIL, "red"),
        ("extended-flash", "fail", frames.luminance_result == EXTENDED_FAIL, "luminance"),
        ("extended-red-flash", "fail", frames.red_result == EXTENDED_FAIL, "red"),
        ("flash", "warning", frames.luminance_result == WARNING, "luminance"),
        ("red-flash", "warning", frames.red_result == WARNING, "red"),
    ]
    intervals = []
    for kind, severity, mask, channel in specs:
        counts = frames.columns[f"{channel}_transitions"]
        areas = frames.columns[f"flashing_area_{channel}"]
        for first, last in _runs(mask):
            span = slice(first, last + 1)
            intervals.append(
                _interval(
                    times[first],
                    ends[last],
                    kind,
                    counts[span].max() / 2,
                    areas[span].max(),
                    severity,
                )
            )
    for first, last in _runs(frames.pattern_fail.astype(bool)):
        area = frames.pattern_area[first : last + 1].max()
        intervals.append(_interval(times[first], ends[last], "pattern", 0.0, area))
    order = {kind: n for n, kind in enumerate(KINDS)}
    return sorted(intervals, key=lambda i: (i.start, i.severity != "fail", order[i.kind]))


def _interval(
    start: float, end: float, kind: str, rate: float, area: float, severity: str = "fail"
) -> PseInterval:
    """An interval with its numbers rounded as stored (microseconds, 1e-4 of the area)."""
    return PseInterval(
        start=round(float(start), 6),
        end=round(float(end), 6),
        kind=kind,
        flashes_per_second=round(float(rate), 2),
        area=round(float(area), 4),
        severity=severity,
    )


def _worst_second(frames: PseFrames) -> PseSecond | None:
    if not len(frames):
        return None
    luminance = frames.luminance_transitions.astype(np.int64)
    red = frames.red_transitions.astype(np.int64)
    score = np.maximum(luminance, red) * 1000 + luminance + red
    worst = int(np.argmax(score))  # the first of equals
    if score[worst] == 0:
        return None
    times = frames.time
    # the frames of the window ending there: less than a second before it
    first = int(np.searchsorted(times, times[worst] - 1.0 + TIME_EPS, side="right"))
    return PseSecond(
        start=round(float(times[first]), 6),
        end=round(float(times[worst]), 6),
        luminance_transitions=int(luminance[worst]),
        red_transitions=int(red[worst]),
    )


def _per_second(frames: PseFrames) -> list[dict[str, Any]]:
    """For each second of the stream with frames: the most transitions in a one-second
    window ending in it, the largest areas, and the worst frame result."""
    if not len(frames):
        return []
    seconds = np.floor(frames.time + 1e-9).astype(np.int64)
    starts = np.flatnonzero(np.concatenate([[True], seconds[1:] != seconds[:-1]]))

    def peak(values: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values, starts)

    luminance = peak(frames.luminance_transitions)
    red = peak(frames.red_transitions)
    area = peak(frames.flashing_area_luminance)
    red_area = peak(frames.flashing_area_red)
    pattern = peak(frames.pattern_area)
    result = peak(np.maximum(frames.luminance_result, frames.red_result))
    pattern_fail = peak(frames.pattern_fail)
    return [
        {
            "second": int(seconds[s]),
            "luminance_transitions": int(luminance[n]),
            "red_transitions": int(red[n]),
            "flash_area": round(float(area[n]), 4),
            "red_flash_area": round(float(red_area[n]), 4),
            "pattern_area": round(float(pattern[n]), 4),
            "result": int(result[n]),
            "pattern_fail": bool(pattern_fail[n]),
        }
        for n, s in enumerate(starts)
    ]
