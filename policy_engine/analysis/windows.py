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
from typing import Any

import numpy as np

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
    return scene_windows(times, [(start, end_time)], count, length=length, hop=hop)


def scene_windows(
    times: Sequence[float],
    scenes: Sequence[tuple[float, float]],
    count: int,
    *,
    length: float = DEFAULT_LENGTH_S,
    hop: float = DEFAULT_HOP_S,
) -> list[ClipWindow]:
    """Windows that never cross a cut: one per scene (start, end) no longer than `length`,
    the fixed windows inside a longer one (a 30 s shot is not judged on 8 frames 4 s
    apart). Each window's span stays inside its scene; the spans tile every scene that
    holds a sampled frame; a scene without one is stood for by the window before (or, at
    the start, after), so the spans tile the whole time."""
    extents: list[tuple[float, float]] = []
    spans: list[tuple[float, float]] = []
    for scene_start, scene_end in scenes:
        inside = [
            e for e in window_extents(scene_start, scene_end, length, hop)
            if holds_a_frame(times, *e)
        ]  # fmt: skip
        extents.extend(inside)
        spans.extend(scene_spans_of(inside, scene_start, scene_end))
    spans = close_gaps(spans, scenes[0][0] if scenes else 0.0, scenes[-1][1] if scenes else 0.0)
    return [
        ClipWindow(start=s, end=e, frames=pick_frames(times, s, e, count), span=span)
        for (s, e), span in zip(extents, spans, strict=True)
    ]


def close_gaps(
    spans: Sequence[tuple[float, float]], start: float, end: float
) -> list[tuple[float, float]]:
    """Spans (in order) stretched to tile [start, end): each to the next one's start, the
    first from `start`, the last to `end` (time where no window was scored, a scene
    without a sampled frame, goes to the window before it)."""
    if not spans:
        return []
    tiled = [(lo, after) for (lo, _), (after, _) in zip(spans, spans[1:])] + [spans[-1]]
    tiled[0] = (start, tiled[0][1])
    tiled[-1] = (tiled[-1][0], end)
    return tiled


def window_extents(
    start: float, end: float, length: float = DEFAULT_LENGTH_S, hop: float = DEFAULT_HOP_S
) -> list[tuple[float, float]]:
    """(start, end) of the windows over [start, end): `length` long every `hop`, the last
    ending at `end`; one window where the stretch is no longer than `length`."""
    if length <= 0 or hop <= 0:
        raise ValueError(f"window length and hop must be positive, got {length} and {hop}")
    if end <= start:
        return []
    starts: list[float] = []
    at = start
    while at + length < end - 1e-9:
        starts.append(at)
        at += hop
    starts.append(max(start, end - length))
    return sorted({(s, min(end, s + length)) for s in starts})


def scene_spans_of(
    extents: Sequence[tuple[float, float]], scene_start: float, scene_end: float
) -> list[tuple[float, float]]:
    """The spans of one scene's windows (in order of start): nearer the centre of each
    one's part inside the scene (a window scored across a cut reported late reaches
    past it), the first from the scene's start and the last to its end."""
    inside = [(max(scene_start, s), min(scene_end, e)) for s, e in extents]
    spans = spans_of(inside)
    if not spans:
        return []
    spans[0] = (scene_start, spans[0][1])
    spans[-1] = (spans[-1][0], scene_end)
    return spans


def holds_a_frame(times: Sequence[float], start: float, end: float) -> bool:
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


def spans_of(extents: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The time each of these overlapping windows (start, end; in order) stands for: the
    time nearer its centre than any other's, tiling the first start to the last end."""
    if not extents:
        return []
    centres = [(s + e) / 2 for s, e in extents]
    bounds = [extents[0][0], *((a + b) / 2 for a, b in zip(centres, centres[1:])), extents[-1][1]]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def frame_column(
    frame_times: Sequence[float], spans: Sequence[tuple[float, float]], values: np.ndarray
) -> np.ndarray:
    """(F,) float32: each sampled frame takes the value of the window whose span holds its
    time (before the first span, the first; after the last, the last)."""
    if not spans:
        return np.zeros(len(frame_times), dtype=np.float32)
    order = np.argsort([lo for lo, _ in spans], kind="stable")  # spans tile: by start
    starts = np.array([spans[i][0] for i in order])
    index = np.clip(np.searchsorted(starts, frame_times, side="right") - 1, 0, len(spans) - 1)
    return np.asarray(values, dtype=np.float32)[order][index]


def window_probability(
    logits: np.ndarray, prompts: Sequence[str], own: Sequence[str], null: Sequence[str]
) -> np.ndarray:
    """(W,) a category's probability per window: its prompts against the null prompts,
    each side the mean of its exponentials (the same one-against-null reading as CLIP's
    per frame, on X-CLIP's video-conditioned logits)."""
    from policy_engine.analysis.scoring import own_share

    where = {p: i for i, p in enumerate(prompts)}
    mine = np.array([where[p] for p in own])
    theirs = np.array([where[p] for p in null])
    return own_share(np.asarray(logits, dtype=np.float64), mine, theirs)


def window_scores_to_json(
    identity: dict[str, Any], prompts: Sequence[str], windows: Sequence[tuple[float, float]],
    logits: np.ndarray, spans: Sequence[tuple[float, float]],
) -> dict[str, Any]:  # fmt: skip
    """What a scan stores of X-CLIP: its identity, the prompts scored, and per window its
    extent, one logit per prompt and the span its verdict stands for (format 2; format 1
    had no spans: its windows never met a cut, so the spans follow from the extents)."""
    return {
        "format": 2,
        "identity": identity,
        "prompts": list(prompts),
        "windows": [
            [
                round(s, 6),
                round(e, 6),
                [round(float(v), 5) for v in row],
                [round(lo, 6), round(hi, 6)],
            ]
            for (s, e), row, (lo, hi) in zip(windows, np.asarray(logits), spans, strict=True)
        ],
    }


def stored_spans(stored: dict[str, Any]) -> list[tuple[float, float]]:
    """The span each stored window stands for (format 1: nearer its centre)."""
    windows = stored.get("windows", [])
    if all(len(w) > 3 for w in windows):
        return [(float(w[3][0]), float(w[3][1])) for w in windows]
    return spans_of([(float(w[0]), float(w[1])) for w in windows])


def window_columns(
    stored: dict[str, Any], categories: Sequence[Any], null: Sequence[str],
    frame_times: Sequence[float],
) -> np.ndarray | None:  # fmt: skip
    """(F, K) per sampled frame, each X-CLIP category's probability from the stored
    windows; None where a prompt the categories need was not scored on this scan."""
    prompts = stored.get("prompts", [])
    needed = {p for c in categories for p in c.prompts} | set(null)
    if not needed <= set(prompts):
        return None
    windows = stored.get("windows", [])
    logits = np.array([w[2] for w in windows], dtype=np.float64)
    spans = stored_spans(stored)
    columns = [
        frame_column(
            frame_times,
            spans,
            window_probability(logits, prompts, c.prompts, null) if windows else np.zeros(0),
        )
        for c in categories
    ]
    return np.stack(columns, axis=1) if columns else np.zeros((len(frame_times), 0))
