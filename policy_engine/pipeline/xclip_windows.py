"""X-CLIP over a scan's sampled frames as they arrive: windows of 4 s every 2 s (the last
ending at the end), each scored as soon as a later frame shows it is complete, keeping
only the pictures a window still to come can need (a film is never held in memory).

The windows are those of ``analysis.windows.fixed_windows`` over the same frames; each
gets exactly the checkpoint's frame count, picked by time from the sampled frames.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from policy_engine.analysis.scoring import null_prompts
from policy_engine.analysis.windows import (
    DEFAULT_HOP_S,
    DEFAULT_LENGTH_S,
    holds_a_frame,
    pick_frames,
)
from policy_engine.policy.model import RuleSet

WINDOWS_PER_CALL = 4


@dataclass
class XClipRun:
    """One scan's X-CLIP scoring: the loaded scorer and every prompt to score (the rule
    sets' X-CLIP prompts and their null prompts)."""

    scorer: Any  # models.xclip.XClipScorer
    prompts: tuple[str, ...]
    length: float = DEFAULT_LENGTH_S
    hop: float = DEFAULT_HOP_S
    start: float = 0.0  # where the analysed window starts (the scan's --start)
    times: list[float] = field(default_factory=list)
    _pictures: dict[int, np.ndarray] = field(default_factory=dict)
    _next_start: float | None = None
    _done: set[tuple[float, float]] = field(default_factory=set)
    _pending: list[tuple[float, float, tuple[int, ...]]] = field(default_factory=list)
    extents: list[tuple[float, float]] = field(default_factory=list)
    _logits: list[np.ndarray] = field(default_factory=list)

    def add(self, time: float, picture: np.ndarray) -> None:
        """The next sampled frame (times ascending) and its picture."""
        self._pictures[len(self.times)] = picture
        self.times.append(float(time))
        if self._next_start is None:
            self._next_start = self.start
        while self._next_start + self.length <= time + 1e-9:
            start = self._next_start
            self._queue(start, start + self.length)
            self._next_start += self.hop
        self._score(final=False)
        self._forget(time)

    def finish(self, end_time: float) -> tuple[list[tuple[float, float]], np.ndarray]:
        """Score what is left (windows ending by the end, and one ending at it); the
        windows in order and their (W, P) logits."""
        if self._next_start is None:
            self._next_start = self.start
        while self._next_start + self.length < end_time - 1e-9:
            self._queue(self._next_start, self._next_start + self.length)
            self._next_start += self.hop
        if self.times and end_time > self.start:
            self._queue(max(self.start, end_time - self.length), end_time)
        self._score(final=True)
        order = sorted(range(len(self.extents)), key=lambda i: self.extents[i])
        extents = [self.extents[i] for i in order]
        logits = (
            np.stack([self._logits[i] for i in order])
            if order
            else np.zeros((0, len(self.prompts)), dtype=np.float32)
        )
        return extents, logits

    def _queue(self, start: float, end: float) -> None:
        key = (round(start, 6), round(end, 6))
        if key in self._done or not holds_a_frame(self.times, start, end):
            return
        self._done.add(key)
        frames = pick_frames(self.times, start, end, self.scorer.frames_per_window)
        self._pending.append((start, end, frames))

    def _score(self, *, final: bool) -> None:
        while self._pending and (final or len(self._pending) >= WINDOWS_PER_CALL):
            part, self._pending = (
                self._pending[:WINDOWS_PER_CALL],
                self._pending[WINDOWS_PER_CALL:],
            )
            pixels = self.scorer.pixels([[self._pictures[i] for i in f] for _, _, f in part])
            logits = self.scorer.logits(pixels, self.prompts)
            for (start, end, _), row in zip(part, logits, strict=True):
                self.extents.append((start, end))
                self._logits.append(np.asarray(row, dtype=np.float32))

    def _forget(self, time: float) -> None:
        """Drop pictures no window to come can pick: before the next window's start and
        before the last ``length`` seconds (the window ending at the end)."""
        next_start = self.start if self._next_start is None else self._next_start
        keep_from = min(next_start, time - self.length) - 1e-6
        needed = {i for _, _, frames in self._pending for i in frames}
        for index in list(self._pictures):
            if self.times[index] < keep_from and index not in needed:
                del self._pictures[index]


def xclip_prompts(rulesets: Sequence[RuleSet]) -> tuple[str, ...]:
    """Every prompt X-CLIP must score for these rule sets: their X-CLIP categories' and,
    for the one-against-null reading, those sets' null prompts."""
    found: dict[str, None] = {}
    for ruleset in rulesets:
        if ruleset.xclip:
            for category in ruleset.xclip:
                found.update(dict.fromkeys(category.prompts))
            found.update(dict.fromkeys(null_prompts(ruleset.categories)))
    return tuple(found)


def xclip_descriptors(prompts: Sequence[str], weights_sha256: str) -> tuple[str, ...]:
    """What a scan's X-CLIP windows depend on, one entry per prompt (so a scan that
    scored more prompts serves a rule set that needs fewer)."""
    return tuple(
        json.dumps({"xclip": weights_sha256, "prompt": p}, sort_keys=True) for p in prompts
    )
