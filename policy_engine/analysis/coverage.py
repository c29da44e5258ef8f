"""Time-weighted coverage statistics per category. Pure.

A sampled frame stands for the time from its timestamp until the next sample, and the
last one until the end of the window (the first one from the start of the window). So
shares are fractions of running time, independent of the sampling rate beyond sampling
error, and irregular sample times (keyframes, scene cuts, variable frame rate) are fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from policy_engine.analysis.scoring import NOTHING, FrameScores

DEFAULT_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True)
class Segment:
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class CategoryCoverage:
    name: str
    null: bool
    share: float  # fraction of the running time showing this category, 0..1
    seconds: float  # total time shown
    frames: int  # sampled frames showing it
    first_seen: float | None  # start of its first segment
    last_seen: float | None  # end of its last segment
    longest_run: float  # longest continuous segment, seconds
    segments: tuple[Segment, ...]
    peak_probability: float  # highest probability over all frames, shown or not
    peak_time: float | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["segments"] = [[s.start, s.end] for s in self.segments]
        return data


@dataclass(frozen=True)
class IntervalLabel:
    start: float
    end: float
    label: str | None  # None: no frame covers it, or none shows a category
    fraction: float  # share of the interval held by that label


@dataclass(frozen=True)
class Coverage:
    start: float
    end: float
    frame_count: int
    interval_seconds: float
    categories: dict[str, CategoryCoverage]
    intervals: tuple[IntervalLabel, ...]

    @property
    def running_time(self) -> float:
        return self.end - self.start

    def __getitem__(self, name: str) -> CategoryCoverage:
        return self.categories[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "running_time": self.running_time,
            "frame_count": self.frame_count,
            "interval_seconds": self.interval_seconds,
            "categories": {name: c.to_dict() for name, c in self.categories.items()},
            "intervals": [asdict(i) for i in self.intervals],
        }


def frame_spans(
    times: np.ndarray, start: float, end: float, begins: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The [begin, finish) span each (sorted) sample stands for, clipped to the window:
    from its time, or from ``begins`` where the sampling says so (``scenes`` sampling: a
    scene's middle frame stands for the scene from its cut), until the next one's."""
    if len(times) == 0:
        return np.zeros(0), np.zeros(0)
    begins = np.clip(times if begins is None else begins, start, end)
    begins[0] = start
    finishes = np.empty_like(begins)
    finishes[:-1] = begins[1:]
    finishes[-1] = end
    return begins, np.maximum(finishes, begins)


def _segments(mask: np.ndarray, begins: np.ndarray, finishes: np.ndarray) -> list[Segment]:
    """Runs of consecutive frames where mask is true, as time segments."""
    if not mask.any():
        return []
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    run_starts = np.flatnonzero(edges == 1)
    run_stops = np.flatnonzero(edges == -1) - 1
    segments = [
        Segment(float(begins[a]), float(finishes[b])) for a, b in zip(run_starts, run_stops)
    ]
    return [s for s in segments if s.duration > 0]


def compute_coverage(
    times: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    category_names: Sequence[str],
    *,
    start: float,
    end: float,
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
    null_categories: Sequence[str] = (),
    probabilities: np.ndarray | None = None,
    begins: np.ndarray | None = None,
    shown: np.ndarray | None = None,
) -> Coverage:
    """Coverage of each category over the window [start, end).

    ``labels`` are each frame's dominant category index (``NOTHING``: none); ``shown``
    (F, K), what each frame shows (several categories at once; default: its label only);
    ``probabilities`` (F, K), if given, yield each category's peak probability and its
    time; ``begins``, where each frame's span starts when that is not its own time (see
    ``frame_spans``).
    """
    if end < start:
        raise ValueError(f"window end {end} is before its start {start}")
    if interval_seconds <= 0:
        raise ValueError(f"interval must be positive, got {interval_seconds}")
    times_arr = np.asarray(times, dtype=np.float64)
    labels_arr = np.asarray(labels, dtype=np.int64)
    if times_arr.shape != labels_arr.shape:
        raise ValueError(f"{len(times_arr)} times for {len(labels_arr)} labels")
    order = np.argsort(times_arr, kind="stable")
    times_arr, labels_arr = times_arr[order], labels_arr[order]
    probs = probabilities[order] if probabilities is not None else None
    if shown is None:
        shown = labels_arr[:, None] == np.arange(len(category_names))[None, :]
    else:
        shown = np.asarray(shown, dtype=bool)[order]
    span_starts = np.asarray(begins, dtype=np.float64)[order] if begins is not None else None
    begins, finishes = frame_spans(times_arr, start, end, span_starts)
    spans = finishes - begins
    running = end - start

    categories: dict[str, CategoryCoverage] = {}
    for index, name in enumerate(category_names):
        mask = shown[:, index]
        segments = _segments(mask, begins, finishes)
        seconds = float(spans[mask].sum())
        peak_p, peak_t = 0.0, None
        if probs is not None and len(probs):
            best = int(np.argmax(probs[:, index]))
            peak_p, peak_t = float(probs[best, index]), float(times_arr[best])
        categories[name] = CategoryCoverage(
            name=name,
            null=name in null_categories,
            share=seconds / running if running > 0 else 0.0,
            seconds=seconds,
            frames=int(mask.sum()),
            first_seen=segments[0].start if segments else None,
            last_seen=segments[-1].end if segments else None,
            longest_run=max((s.duration for s in segments), default=0.0),
            segments=tuple(segments),
            peak_probability=peak_p,
            peak_time=peak_t,
        )
    intervals = dominant_labels(
        begins, finishes, labels_arr, category_names, start, end, interval_seconds
    )
    return Coverage(
        start=start,
        end=end,
        frame_count=len(times_arr),
        interval_seconds=interval_seconds,
        categories=categories,
        intervals=intervals,
    )


def coverage_from_scores(
    scores: FrameScores,
    *,
    start: float,
    end: float,
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
    begins: np.ndarray | None = None,
) -> Coverage:
    return compute_coverage(
        scores.times,
        scores.labels,
        scores.category_names,
        start=start,
        end=end,
        interval_seconds=interval_seconds,
        null_categories=[c.name for c in scores.categories if c.null],
        probabilities=scores.probabilities,
        begins=begins,
        shown=scores.shown,
    )


def dominant_labels(
    begins: np.ndarray,
    finishes: np.ndarray,
    labels: np.ndarray,
    category_names: Sequence[str],
    start: float,
    end: float,
    interval_seconds: float,
) -> tuple[IntervalLabel, ...]:
    """For each interval [start + jN, min(start + (j+1)N, end)), the label holding the most
    time in it (ties go to the category listed first; frames labelled ``NOTHING`` hold
    none)."""
    if end <= start:
        return ()
    count = int(np.ceil((end - start) / interval_seconds - 1e-9))
    result = []
    for j in range(count):
        lo = start + j * interval_seconds
        hi = min(start + (j + 1) * interval_seconds, end)
        first = int(np.searchsorted(finishes, lo, side="right"))
        last = int(np.searchsorted(begins, hi, side="left"))
        held = np.zeros(len(category_names))
        for i in range(first, last):
            overlap = min(finishes[i], hi) - max(begins[i], lo)
            if overlap > 0 and labels[i] != NOTHING:
                held[labels[i]] += overlap
        total = held.sum()
        if total <= 0:
            result.append(IntervalLabel(float(lo), float(hi), None, 0.0))
            continue
        winner = int(np.argmax(held))
        result.append(
            IntervalLabel(
                float(lo), float(hi), category_names[winner], float(held[winner] / (hi - lo))
            )
        )
    return tuple(result)
