"""Scenes (shots between cuts): their spans, the sampled frames inside, a keyframe, an
embedding and per-category coverage each. Pure (numpy).

Cut times come from a detector that saw every frame (media/scenes.py); frames are the
scan's samples. A scene's frames are the samples whose time falls inside it; a scene
too short to hold one (a flash cut under a 2 fps sampler) is represented, as coverage
represents all time, by the sample that stands for its middle. Coverage inside a scene is
time-weighted exactly as for the whole window, so shares keep their meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policy_engine.analysis.coverage import frame_spans

DETECTORS = ("content", "adaptive", "threshold")
# PySceneDetect's own defaults, so that its reference run agrees with ours
DEFAULT_THRESHOLDS = {"content": 27.0, "adaptive": 3.0, "threshold": 12.0}


@dataclass(frozen=True)
class SceneSettings:
    """How cuts are found: PySceneDetect's detector and threshold, the shortest scene in
    frames, and the long side of the pictures it compares (PySceneDetect reduces frames
    to 256 pixels wide by default; so do we)."""

    detector: str = "content"
    threshold: float | None = None  # None: the detector's default
    min_scene_frames: int = 15
    width: int = 256

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"scene detector {self.detector!r}: choose one of {DETECTORS}")
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f"scene threshold must be positive, got {self.threshold}")
        if self.min_scene_frames < 1:
            raise ValueError(f"the shortest scene is at least 1 frame: {self.min_scene_frames}")
        if self.width < 16:
            raise ValueError(f"scene detection needs pictures at least 16 wide: {self.width}")

    @property
    def effective_threshold(self) -> float:
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLDS[self.detector]

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "threshold": self.effective_threshold,
            "min_scene_frames": self.min_scene_frames,
            "width": self.width,
        }


@dataclass(frozen=True)
class Scene:
    index: int
    start: float
    end: float
    first_frame: int  # index of the first sample inside; meaningless when frame_count is 0
    frame_count: int  # samples inside
    keyframe: int  # the sample nearest its middle (or standing for it)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def frames(self) -> range:
        return range(self.first_frame, self.first_frame + self.frame_count)


def scene_spans(cuts: Sequence[float], start: float, end: float) -> list[tuple[float, float]]:
    """[start, end) of each scene of the window, from cut times (a cut starts a scene)."""
    if end <= start:
        return []
    inside = sorted({float(c) for c in cuts if start < c < end})
    bounds = [start, *inside, end]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def scenes_of(cuts: Sequence[float], times: np.ndarray, start: float, end: float) -> list[Scene]:
    """The scenes of the window with the (sorted) sample times inside each."""
    times = np.asarray(times, dtype=np.float64)
    scenes = []
    for index, (a, b) in enumerate(scene_spans(cuts, start, end)):
        first, stop = np.searchsorted(times, [a, b], side="left")
        middle = (a + b) / 2
        if stop > first:
            key = int(first + np.argmin(np.abs(times[first:stop] - middle)))
        else:  # no sample inside: the one that stands for its middle
            key = max(0, int(np.searchsorted(times, middle, side="right")) - 1)
        scenes.append(Scene(index, a, b, int(first), int(stop - first), key))
    if not len(times):
        return [Scene(s.index, s.start, s.end, 0, 0, -1) for s in scenes]
    return scenes


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def frame_vectors(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """(F, D): one unit vector per frame, the normalised mean of its crops (one crop for
    the default letterbox framing: the embedding itself)."""
    if not len(embeddings):
        return np.zeros((0, 0), dtype=np.float32)
    return unit_rows(np.stack([np.asarray(e, np.float32).mean(axis=0) for e in embeddings]))


def scene_embeddings(vectors: np.ndarray, scenes: Sequence[Scene]) -> np.ndarray:
    """(S, D): the normalised mean of each scene's frame vectors (its keyframe's where no
    sample falls inside)."""
    rows = []
    for scene in scenes:
        chosen = vectors[scene.first_frame : scene.first_frame + scene.frame_count]
        if not len(chosen):
            chosen = vectors[scene.keyframe : scene.keyframe + 1]
        rows.append(chosen.mean(axis=0))
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    return unit_rows(np.stack(rows)) if rows else np.zeros((0, dim), dtype=np.float32)


def scene_shares(
    times: np.ndarray,
    shown: np.ndarray,
    scenes: Sequence[Scene],
    *,
    start: float,
    end: float,
    begins: np.ndarray | None = None,
) -> np.ndarray:
    """(S, K): the share of each scene's running time showing each category (``shown``:
    (F, K), what each frame shows), each sample standing for the time until the next, as
    for the window's coverage."""
    shown = np.asarray(shown, dtype=bool)
    shares = np.zeros((len(scenes), shown.shape[1] if shown.ndim == 2 else 0), np.float32)
    if not len(times):
        return shares
    begins, finishes = frame_spans(np.asarray(times, dtype=np.float64), start, end, begins)
    for row, scene in enumerate(scenes):
        inside = np.minimum(finishes, scene.end) - np.maximum(begins, scene.start)
        if scene.duration > 0:
            shares[row] = np.clip(inside, 0, None) @ shown / scene.duration
    return shares
