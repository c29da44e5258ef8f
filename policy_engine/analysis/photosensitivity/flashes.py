"""Transitions, their count in a sliding window, and the area that flashes. Pure.

Each cell of the grid (or the whole frame in IRIS mode) follows IRIS's rule: changes of
its mean accumulate while they keep one direction (a fade over three frames is one
transition), over at most one window; a transition is counted when the accumulated change
reaches the threshold, the darker of the two frames is below the dark limit (luminance
only), and the change before it had not already passed the threshold in that direction.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

# Frames exactly one window apart are not in the same window; times from a container
# carry float rounding of a microsecond at most.
TIME_EPS = 1e-6

# The WCAG 10-degree field: 341 x 256 pixels of a 1024 x 768 screen.
WCAG_FIELD = (341 / 1024, 256 / 768)


@dataclass(frozen=True)
class Window:
    """A sliding window ending at the current frame: `frames` frames (IRIS) when given,
    else the frames less than `seconds` before it."""

    seconds: float
    frames: int | None = None

    def expired(self, index: int, time: float, old_index: int, old_time: float) -> bool:
        if self.frames is not None:
            return index - old_index >= self.frames
        return time - old_time >= self.seconds - TIME_EPS


class FlashChannel:
    """Luminance or red transitions of every cell, and their counts in the window."""

    def __init__(self, delta: float, dark: float | None, window: Window) -> None:
        self.delta = delta
        self.dark = dark
        self.window = window
        self.shape: tuple[int, ...] | None = None
        self._history: deque[tuple[int, float, np.ndarray, np.ndarray, float]] = deque()

    def _start(self, index: int, time: float, means: np.ndarray) -> np.ndarray:
        self.shape = means.shape
        self.previous = means
        self.accumulated = np.zeros(means.shape)
        self.run_start = np.full(means.shape, index)
        self.counts = np.zeros(means.shape, dtype=np.int64)
        none = self._none = np.zeros(means.shape, dtype=bool)
        self._history.clear()
        # the first frame stands in the window with no change, like IRIS's initial 0
        self._history.append((index, time, np.zeros(means.shape), none, 0.0))
        return none

    def step(
        self, index: int, time: float, means: np.ndarray, *, gate: bool = True, area: float = 0.0
    ) -> np.ndarray:
        """Transitions of each cell at this frame. `gate` False zeroes the change (IRIS's
        flash-area test failed); `area` is remembered for frame-mode flashing areas."""
        if self.shape != means.shape:
            return self._start(index, time, means)
        if not (means.any() or self.previous.any() or self.accumulated.any() or self.counts.any()):
            return self._none  # nothing, nor anything in the window (no red, usually)
        change = means - self.previous if gate else np.zeros(means.shape)
        history = self._history
        leaving = None  # changes of the current run that leave the window
        while history and self.window.expired(index, time, history[0][0], history[0][1]):
            old_index, _, old_change, old_transitions, _ = history.popleft()
            # only changes of the current run are in its accumulated sum
            left = np.where(old_index >= self.run_start, old_change, 0.0)
            leaving = left if leaving is None else leaving + left
            self.counts -= old_transitions
        last = self.accumulated
        kept = last if leaving is None else last - leaving
        # the signs agree (zero has both) where the product is not negative: IRIS's
        # SameSign in two operations instead of five (changes of cell means are far
        # above where a product of two would underflow to zero)
        same = last * change >= 0
        accumulated = np.where(same, kept + change, change)
        magnitude = np.abs(accumulated)
        already = (last * accumulated >= 0) & (np.abs(last) >= self.delta)
        transitions = ~already & (magnitude >= self.delta)
        if self.dark is not None:
            transitions &= np.minimum(self.previous, means) < self.dark
        self.run_start = np.where(same, self.run_start, index)
        self.accumulated = accumulated
        self.previous = means
        self.counts += transitions
        history.append((index, time, change, transitions, area))
        return transitions

    def peak_area(self) -> float:
        """Largest remembered area among the frames of the window with a transition."""
        return max((entry[4] for entry in self._history if entry[3].any()), default=0.0)


class ExtendedCounter:
    """Frames at the warning level in the extended window (Harding's extended failure).

    IRIS counts the frames at the warning level in the last 5 x fps frames and fails when
    they reach 4 x fps; with real times the same is the time spent at the warning level
    in the last 5 s reaching 80 % of it, each frame standing for the time since the last.
    """

    def __init__(self, window: Window, share: float) -> None:
        self.window = window
        self.share = share
        self.count = 0
        self.seconds = 0.0
        self._history: deque[tuple[int, float, bool, float]] = deque()

    def step(self, index: int, time: float, duration: float, warning: bool) -> bool:
        history = self._history
        while history and self.window.expired(index, time, history[0][0], history[0][1]):
            _, _, was_warning, was_duration = history.popleft()
            if was_warning:
                self.count -= 1
                self.seconds -= was_duration
        history.append((index, time, warning, duration))
        if warning:
            self.count += 1
            self.seconds += duration
        if self.window.frames is not None:
            return self.count >= round(self.share * self.window.frames)
        return self.seconds >= self.share * self.window.seconds - TIME_EPS


class AreaMeasure:
    """The share of the screen (or, for the WCAG field, of the worst field) that a set of
    cells covers, and the transition count that at least the threshold area reached."""

    def __init__(self, mode: str, weights: np.ndarray, threshold: float) -> None:
        self.mode = mode
        self.weights = weights
        self.threshold = threshold - 1e-9  # shares are sums of float cell shares
        self._flat = weights.ravel()
        if mode == "wcag-field":
            down, across = weights.shape
            self.field = (
                max(1, min(down, round(down * WCAG_FIELD[1]))),
                max(1, min(across, round(across * WCAG_FIELD[0]))),
            )
            self._field_weights = _box_sums(weights, self.field)

    def share(self, cells: np.ndarray) -> float:
        if not cells.any():
            return 0.0
        if self.mode == "wcag-field":
            covered = _box_sums(np.where(cells, self.weights, 0.0), self.field)
            return float((covered / self._field_weights).max())
        return float(self._flat[cells.ravel()].sum())

    def level(self, counts: np.ndarray) -> int:
        """The largest n such that the cells with n or more transitions cover the area."""
        top = int(counts.max())
        if top <= 0:
            return 0
        if self.mode == "wcag-field":
            level = 0
            for n in range(1, top + 1):  # the share only falls as n rises
                if self.share(counts >= n) < self.threshold:
                    break
                level = n
            return level
        # the share of the screen with exactly n transitions, then with n or more
        exactly = np.bincount(counts.ravel(), weights=self._flat)
        at_least = np.cumsum(exactly[::-1])[::-1]
        reached = np.flatnonzero(at_least >= self.threshold)
        return int(reached[-1]) if reached.size else 0


def _box_sums(values: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """Sums of every box-sized block of a 2-D array (all placements)."""
    down, across = box
    table = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    table[1:, 1:] = values.cumsum(axis=0).cumsum(axis=1)
    return (
        table[down:, across:]
        - table[:-down, across:]
        - table[down:, :-across]
        + table[:-down, :-across]
    )
