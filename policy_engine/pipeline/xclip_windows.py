"""X-CLIP over a scan's sampled frames as they arrive: windows of 4 s every 2 s that never
cross a cut (a scene no longer than a window is one window), each scored as soon as the
frames show it complete, keeping only the pictures a window still to come can need (a
film is never held in memory).

The windows are those of ``analysis.windows.scene_windows`` over the same frames and the
scan's scenes (one scene, the whole window, without scene detection); each gets exactly
the checkpoint's frame count, picked by time from the sampled frames.

A scene detector may report a cut a little after it happened (PySceneDetect holds a cut
back for ``min_scene_len`` frames; the threshold detector cuts a fade at its middle once
it has ended), so with cuts a window is scored only once the frames have passed its end
by ``cut_lag`` seconds. A cut reported later still (a fade to black longer than that)
behind windows already queued ends its scene where it is, but adds no window there (the
pictures it would need may be gone): the windows queued across it stay, each standing
only for its scene's part, and the next scene's windows start at the cut or after the
last one queued, so each moment is still weighed once.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from policy_engine.analysis.scoring import null_prompts
from policy_engine.analysis.windows import (
    DEFAULT_HOP_S,
    DEFAULT_LENGTH_S,
    close_gaps,
    holds_a_frame,
    pick_frames,
    scene_spans_of,
)
from policy_engine.policy.model import RuleSet

WINDOWS_PER_CALL = 4
_EPS = 1e-9


@dataclass
class XClipRun:
    """One scan's X-CLIP scoring: the loaded scorer and every prompt to score (the rule
    sets' X-CLIP prompts and their null prompts)."""

    scorer: Any  # models.xclip.XClipScorer
    prompts: tuple[str, ...]
    length: float = DEFAULT_LENGTH_S
    hop: float = DEFAULT_HOP_S
    start: float = 0.0  # where the analysed window starts (the scan's --start)
    cut_lag: float = 0.0  # how late a cut may be reported (0: no scene detection)
    times: list[float] = field(default_factory=list)
    _pictures: dict[int, np.ndarray] = field(default_factory=dict)
    _scene_start: float | None = None  # the open scene's (None: nothing seen yet)
    _settled: float = -np.inf  # windows ending by here are queued: a cut before it is late
    _next_start: float = 0.0  # the open scene's next window
    _cuts: list[float] = field(default_factory=list)  # reported, not yet ending a scene
    _scenes: list[tuple[float, float]] = field(default_factory=list)  # closed ones
    _done: set[tuple[float, float]] = field(default_factory=set)
    _pending: list[tuple[float, float, float, tuple[int, ...]]] = field(default_factory=list)
    _scored: list[tuple[float, float, float, np.ndarray]] = field(default_factory=list)

    def add(self, time: float, picture: np.ndarray, cuts: Iterable[float] = ()) -> None:
        """The next sampled frame (times ascending), its picture, and the cuts the scene
        detector reported since the previous one."""
        self._open()
        self._pictures[len(self.times)] = picture
        self.times.append(float(time))
        self._note_cuts(cuts)
        settled = time - self.cut_lag  # every cut before this is known by now
        while self._cuts and self._cuts[0] <= settled:
            self._close_scene(self._cuts.pop(0))
        assert self._scene_start is not None
        while self._next_start + self.length <= settled + _EPS:
            self._queue(self._next_start, self._next_start + self.length)
            self._next_start += self.hop
        self._settled = max(self._settled, settled)
        self._score(final=False)
        self._forget(time)

    def finish(
        self, end_time: float, cuts: Iterable[float] = ()
    ) -> tuple[list[tuple[float, float]], np.ndarray, list[tuple[float, float]]]:
        """Score what is left (every scene closed, the last at the end); the windows in
        order, their (W, P) logits and the span each stands for."""
        self._open()
        self._note_cuts(c for c in cuts if c < end_time)
        for cut in self._cuts:
            self._close_scene(cut)
        self._cuts = []
        if self.times:
            self._close_scene(end_time)
        self._score(final=True)
        scored = sorted(self._scored, key=lambda w: (w[0], w[1]))
        extents = [(s, e) for s, e, _, _ in scored]
        spans = self._spans(scored)
        logits = (
            np.stack([row for _, _, _, row in scored])
            if scored
            else np.zeros((0, len(self.prompts)), dtype=np.float32)
        )
        return extents, logits, spans

    def _open(self) -> None:
        if self._scene_start is None:
            self._scene_start = self._next_start = self.start

    def _note_cuts(self, cuts: Iterable[float]) -> None:
        assert self._scene_start is not None
        for cut in map(float, cuts):
            if cut in self._cuts:
                continue
            if cut <= self._scene_start + _EPS:
                self._split_closed_scene(cut)  # reported after a later one (rare)
            elif cut < self._settled - _EPS:
                self._late_cut(cut)
            else:
                bisect.insort(self._cuts, cut)

    def _late_cut(self, cut: float) -> None:
        """A cut behind windows already queued: the open scene ends there with no window
        of its own (its pictures may be gone); windows wholly after it move to the new
        scene, whose windows go on no earlier than the cut."""
        start = self._scene_start
        assert start is not None
        self._scenes.append((start, cut))
        self._scene_start = cut
        self._next_start = max(self._next_start, cut)
        self._move_windows_after(cut, start)

    def _split_closed_scene(self, cut: float) -> None:
        """A cut inside a scene already closed: two scenes, the windows as they were."""
        for place, (start, end) in enumerate(self._scenes):
            if start + _EPS < cut < end - _EPS:
                self._scenes[place : place + 1] = [(start, cut), (cut, end)]
                self._move_windows_after(cut, start)
                return

    def _close_scene(self, end: float) -> None:
        """The open scene ends at `end`: queue the rest of its windows, the last ending
        there, and open the next."""
        start = self._scene_start
        assert start is not None
        if end <= start + _EPS:
            return
        while self._next_start + self.length < end - _EPS:
            self._queue(self._next_start, self._next_start + self.length)
            self._next_start += self.hop
        self._queue(max(start, end - self.length), end)
        self._scenes.append((start, end))
        self._scene_start = self._next_start = end

    def _move_windows_after(self, cut: float, old_scene: float) -> None:
        """Windows of ``old_scene`` that start at or after ``cut``: the new scene's."""
        self._pending = [
            (s, e, cut if scene == old_scene and s >= cut - _EPS else scene, f)
            for s, e, scene, f in self._pending
        ]
        self._scored = [
            (s, e, cut if scene == old_scene and s >= cut - _EPS else scene, row)
            for s, e, scene, row in self._scored
        ]

    def _queue(self, start: float, end: float) -> None:
        key = (round(start, 6), round(end, 6))
        if key in self._done or not holds_a_frame(self.times, start, end):
            return
        self._done.add(key)
        frames = pick_frames(self.times, start, end, self.scorer.frames_per_window)
        assert self._scene_start is not None
        self._pending.append((start, end, self._scene_start, frames))

    def _score(self, *, final: bool) -> None:
        while self._pending and (final or len(self._pending) >= WINDOWS_PER_CALL):
            part, self._pending = (
                self._pending[:WINDOWS_PER_CALL],
                self._pending[WINDOWS_PER_CALL:],
            )
            pixels = self.scorer.pixels([[self._pictures[i] for i in f] for *_, f in part])
            logits = self.scorer.logits(pixels, self.prompts)
            for (start, end, scene, _), row in zip(part, logits, strict=True):
                self._scored.append((start, end, scene, np.asarray(row, dtype=np.float32)))

    def _spans(
        self, scored: Sequence[tuple[float, float, float, np.ndarray]]
    ) -> list[tuple[float, float]]:
        """Each window's span (in the order given): within its scene, nearer its centre
        than the scene's other windows'."""
        ends = dict(self._scenes)
        spans: dict[int, tuple[float, float]] = {}
        for scene_start in {w[2] for w in scored}:
            members = [i for i, w in enumerate(scored) if w[2] == scene_start]
            extents = [(scored[i][0], scored[i][1]) for i in members]
            found = scene_spans_of(extents, scene_start, ends[scene_start])
            spans.update(zip(members, found, strict=True))
        # a scene where no window was scored (no sampled frame in it, or a cut reported
        # after a later one left no window after it) is stood for by the window before
        order = sorted(spans, key=lambda i: spans[i][0])
        end = max(end for _, end in self._scenes) if self._scenes else self.start
        tiled = close_gaps([spans[i] for i in order], self.start, end)
        spans.update(zip(order, tiled, strict=True))
        return [spans[i] for i in range(len(scored))]

    def _forget(self, time: float) -> None:
        """Drop pictures no window to come can pick: before the open scene's next window
        and before the last ``length`` seconds that a cut still to come may end."""
        keep_from = min(self._next_start, time - self.cut_lag - self.length) - 1e-6
        needed = {i for *_, frames in self._pending for i in frames}
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
