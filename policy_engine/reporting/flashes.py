"""The report's photosensitivity section: what the stored check found, ready to draw."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FAIL_FLASHES_PER_SECOND = 3  # more than three flashes in any second fails (ITU-R BT.1702)
VERDICT_STYLES = {"pass": "ok", "warning": "late", "fail": "stop"}


@dataclass(frozen=True)
class Bar:
    x: float  # % of the chart's width
    width: float
    luminance: float  # flashes per second (transitions / 2)
    red: float
    title: str


@dataclass
class FlashSection:
    verdict: str
    style: str
    frame_count: int
    intervals: list[dict[str, Any]]
    worst_second: dict[str, Any] | None
    settings: dict[str, Any]
    bars: list[Bar] = field(default_factory=list)
    top: float = 2 * FAIL_FLASHES_PER_SECOND  # the chart's highest flashes per second
    images: dict[int, str] = field(default_factory=dict)  # interval index -> data: URI
    limit: int = FAIL_FLASHES_PER_SECOND
    seconds: int = 0  # the chart's span


def flash_section(
    stored: Mapping[str, Any] | None,
    frame_times: Sequence[float],
    thumbnails: Callable[[list[int]], dict[int, bytes]],
    picture: Callable[[int], str] | None = None,
) -> FlashSection | None:
    """The section for a scan's stored check (None: the check was not run). Each
    interval is shown by the sampled frame nearest its start (``thumbnails`` reads them)."""
    if stored is None:
        return None
    seconds = stored.get("per_second", [])
    span = max((s["second"] + 1 for s in seconds), default=1)
    bars = [
        Bar(
            x=100 * s["second"] / span,
            width=100 / span,
            luminance=s["luminance_transitions"] / 2,
            red=s["red_transitions"] / 2,
            title=f"{s['second']}-{s['second'] + 1} s: {s['luminance_transitions'] / 2:g}"
            f" flashes, {s['red_transitions'] / 2:g} red flashes in the worst second",
        )
        for s in seconds
    ]
    top = max([2.0 * FAIL_FLASHES_PER_SECOND, *(max(b.luminance, b.red) for b in bars)])
    intervals = list(stored.get("intervals", []))
    nearest = _nearest_frames([i["start"] for i in intervals], frame_times)
    pictures = thumbnails(sorted(set(nearest))) if nearest else {}
    images = {  # inlined, or (``picture``) a link to the frame's picture
        n: picture(frame) if picture is not None
        else "data:image/jpeg;base64," + base64.b64encode(pictures[frame]).decode()
        for n, frame in enumerate(nearest)
        if frame in pictures
    }  # fmt: skip
    return FlashSection(
        verdict=stored["verdict"],
        style=VERDICT_STYLES.get(stored["verdict"], "other"),
        frame_count=int(stored.get("frame_count", 0)),
        intervals=intervals,
        worst_second=stored.get("worst_second"),
        settings=dict(stored.get("settings", {})),
        bars=bars,
        top=top,
        images=images,
        seconds=span,
    )


def _nearest_frames(starts: Sequence[float], frame_times: Sequence[float]) -> list[int]:
    times = np.asarray(frame_times, dtype=np.float64)
    if not len(times):
        return []
    return [int(np.argmin(np.abs(times - start))) for start in starts]
