"""Which frames a ``scenes`` sampling scan embeds: the middle of every scene, so a short
shot between two cuts is never skipped however low the rate, and a long static shot is
not embedded again and again; one more frame per ``gap`` seconds of a long shot.

The sampler decodes every frame once and cannot look ahead, and a scene's middle is
known only at its end (detectors may report a cut a few frames after it). So frames are
kept as candidates while a scene runs, converted to the model's input as they go by: the
first one after a cut, then a quarter of the scene's age apart (so a 0.8 s flash cut
has candidates near its middle), and never more than ``1/fps`` apart once the scene is
older (the fps cap: a static shot costs at most ``fps`` conversions a second); when the scene
ends, the candidate nearest each target time is chosen and the rest dropped. A long
scene's candidates are thinned (every other one dropped, the spacing doubled) so that a
ten-minute shot holds a bounded number of pictures in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_EPS = 1e-9
CAPACITY = 64  # candidates held per scene before thinning (each a model-input picture)


@dataclass
class _Candidate:
    time: float
    payload: Any


class SceneChooser:
    def __init__(self, start: float, spacing: float, gap: float, capacity: int = CAPACITY):
        if spacing <= 0 or gap <= 0:
            raise ValueError("scene sampling needs a positive spacing and gap")
        self.scene_start = start
        self.spacing = spacing
        self.gap = gap
        self.capacity = capacity
        self._step = spacing
        self._candidates: list[_Candidate] = []
        self._fresh = True  # no candidate since the last cut

    def wants(self, time: float) -> bool:
        """Whether the frame at ``time`` should be kept (converted) as a candidate."""
        if self._fresh or not self._candidates:
            return True
        step = min(self._step, (time - self.scene_start) / 4)  # dense while the scene is young
        return time - self._candidates[-1].time >= step - _EPS

    def keep(self, time: float, payload: Any) -> None:
        self._candidates.append(_Candidate(time, payload))
        self._fresh = False
        if len(self._candidates) > 2 * self.capacity:
            first, rest = self._candidates[0], self._candidates[1:]
            self._candidates = [first, *rest[1::2]]
            self._step *= 2

    def cut(self, at: float) -> list[tuple[Any, float]]:
        """The scene ending at ``at`` is over: its chosen frames, in time order; frames
        kept from ``at`` on belong to the next scene."""
        inside = [c for c in self._candidates if c.time < at - _EPS]
        self._candidates = [c for c in self._candidates if c.time >= at - _EPS]
        chosen = choose(inside, self.scene_start, at, self.gap)
        self.scene_start = at
        self._step = self.spacing
        self._fresh = not self._candidates
        return chosen

    def finish(self, end: float) -> list[tuple[Any, float]]:
        """The last scene, ending at the end of the window."""
        chosen = choose(self._candidates, self.scene_start, max(end, self.scene_start), self.gap)
        self._candidates = []
        return chosen


def choose(
    candidates: list[_Candidate], start: float, end: float, gap: float
) -> list[tuple[Any, float]]:
    """The candidate nearest the middle of the scene, or of each of its ``gap``-long
    parts when it is longer than ``gap``; each at most once, in time order, with the start
    of the time it stands for (its part's start: coverage weights it by its part)."""
    if not candidates:
        return []
    parts = max(1, math.ceil((end - start) / gap - _EPS))
    span = (end - start) / parts
    picked: dict[int, float] = {}
    for part in range(parts):
        target = start + (part + 0.5) * span
        nearest = min(range(len(candidates)), key=lambda i: abs(candidates[i].time - target))
        picked.setdefault(nearest, start + part * span)
    return [(candidates[i].payload, picked[i]) for i in sorted(picked)]
