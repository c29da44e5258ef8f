"""The report's scenes: each shot of the judged scan with its span, the frames sampled in
it, a keyframe picture and what each rule set's categories cover of it."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_PICTURES = 200  # keyframes embedded in one report (a programme may have thousands)
SHOWN_SHARE = 0.01  # categories holding less of a scene are not listed


@dataclass(frozen=True)
class SceneRow:
    index: int
    start: float
    end: float
    frames: int
    keyframe: int
    image: str | None  # data: URI of the keyframe's thumbnail
    # per rule set: its non-null categories holding at least 1% of the scene, largest first
    shares: list[tuple[str, list[tuple[str, float]]]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class SceneSection:
    rows: list[SceneRow]
    detection: dict[str, Any]
    pictures_left_out: int = 0


def scene_section(
    detection: Mapping[str, Any] | None,
    scenes: Sequence[Any],
    thumbnails: Callable[[list[int]], dict[int, bytes]],
    shares: Mapping[str, tuple[Sequence[Any], np.ndarray | None]],
) -> SceneSection | None:
    """The section for a scan's stored scenes (None: scenes were not detected).
    ``shares``: rule set name -> (its categories, the (S, K) shares or None)."""
    if detection is None:
        return None
    shown = [s.keyframe for s in scenes[:MAX_PICTURES] if s.keyframe >= 0]
    pictures = thumbnails(sorted(set(shown))) if shown else {}
    rows = [
        SceneRow(
            index=scene.index, start=scene.start, end=scene.end, frames=scene.frame_count,
            keyframe=scene.keyframe,
            image=_uri(pictures.get(scene.keyframe)) if n < MAX_PICTURES else None,
            shares=_leading(shares, n),
        )
        for n, scene in enumerate(scenes)
    ]  # fmt: skip
    return SceneSection(rows, dict(detection), max(0, len(scenes) - MAX_PICTURES))


def _uri(data: bytes | None) -> str | None:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode() if data else None


def _leading(
    shares: Mapping[str, tuple[Sequence[Any], np.ndarray | None]], row: int
) -> list[tuple[str, list[tuple[str, float]]]]:
    leading = []
    for name, (categories, values) in sorted(shares.items()):
        if values is None or row >= len(values):
            continue
        listed = sorted(
            ((c.name, float(v)) for c, v in zip(categories, values[row]) if not c.null),
            key=lambda item: -item[1],
        )
        leading.append((name, [(c, v) for c, v in listed if v >= SHOWN_SHARE]))
    return leading
