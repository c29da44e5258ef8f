"""Windows of video for clip-level models (X-CLIP): which sampled frames each window gives
the model, and what span of time each window's verdict stands for. Pure.

A clip-level model takes a fixed number of frames per window (8 for X-CLIP's base
checkpoints: its position embedding and its cross-frame layers are sized for it, and any
other count fails or silently misreads, microsoft/VideoX#93). A window therefore always
hands over exactly that many frames, chosen uniformly by presentation time from the
frames the scan already sampled: a window with fewer sampled frames repeats the nearest
ones, a window with more leaves some out; never a second decode.

Windows overlap (4 s long every 2 s, by default), but coverage must weigh each moment
once: each window stands for the span of time nearer its centre than any other window's,
so spans tile the analysed time and coverage stays time-weighted like CLIP's per frame.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_LENGTH_S = 4.0
DEFAULT_HOP_S = 2.0


@dataclass(frozen=True)
class ClipWindow:
    start: float  # seconds, the window's own extent
    end: float
    frames: tuple[int, ...]  # indices into the sampled frames, exactly the model's count
    span: tuple[float, float] = (0.0, 0.0)  # the time its verdict stands for

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2


def pick_frames(times: Sequence[float], start: float, end: float, count: int) -> tuple[int, ...]:
    """`count` indices of sampled frames (times ascending) inside [start, end), nearest
    to `count` instants spread evenly over it (each at the middle of its share); repeats
    where the window holds fewer frames than `count`."""
    if count < 1:
        raise ValueError(f"a window needs at least one frame, got {count}")
    first, stop = bisect.bisect_left(times, start), bisect.bisect_left(times, end)
    if first >= stop:
        raise ValueError(f"no sampled frame between {start:g} s and {end:g} s")
    inside = times[first:stop]
    step = (end - start) / count
    return tuple(first + _nearest(inside, start + (k + 0.5) * step) for k in range(count))


def fixed_windows(
    times: Sequence[float],
    end_time: float,
    count: int,
    *,
    start: float = 0.0,
    length: float = DEFAULT_LENGTH_S,
    hop: float = DEFAULT_HOP_S,
) -> list[ClipWindow]:
    """Windows of `length` seconds every `hop` seconds over [start, end_time); the last one
    ends at end_time (a video shorter than `length` is one window). Windows holding no
    sampled frame are left out."""
    if length <= 0 or hop <= 0:
        raise ValueError(f"window length and hop must be positive, got {length} and {hop}")
    if end_time <= start or not times:
        return []
    starts: list[float] = []
    at = start
    while at + length < end_time - 1e-9:
        starts.append(at)
        at += hop
    starts.append(max(start, end_time - length))
    extents = sorted({(s, min(end_time, s + length)) for s in starts})
    return _windows(times, extents, count)


def scene_windows(
    times: Sequence[float], scenes: Sequence[tuple[float, float]], count: int
) -> list[ClipWindow]:
    """One window per scene (start, end), where scenes were detected; each stands for its
    own scene."""
    return _windows(times, [(s, e) for s, e in scenes if e > s], count, own_spans=True)


def _windows(
    times: Sequence[float],
    extents: Sequence[tuple[float, float]],
    count: int,
    *,
    own_spans: bool = False,
) -> list[ClipWindow]:
    kept = [(s, e) for s, e in extents if _holds_a_frame(times, s, e)]
    if not kept:
        return []
    if own_spans:
        spans = kept
    else:
        # overlapping windows: each stands for the time nearer its centre than any other's
        centres = [(s + e) / 2 for s, e in kept]
        bounds = [kept[0][0], *((a + b) / 2 for a, b in zip(centres, centres[1:])), kept[-1][1]]
        spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    return [
        ClipWindow(start=s, end=e, frames=pick_frames(times, s, e, count), span=span)
        for (s, e), span in zip(kept, spans, strict=True)
    ]


def _holds_a_frame(times: Sequence[float], start: float, end: float) -> bool:
    first = bisect.bisect_left(times, start)
    return first < len(times) and times[first] < end


def _nearest(times: Sequence[float], instant: float) -> int:
    after = bisect.bisect_left(times, instant)
    if after == 0:
        return 0
    if after == len(times):
        return len(times) - 1
    before = after - 1
    return before if instant - times[before] <= times[after] - instant else after
