"""Asking about one thing: does this video show X, when first, for how long. Pure
(numpy), like the rest of the analysis.

A raw CLIP cosine has no meaning on its own (0.27 may be a strong match for one prompt
and noise for another), so a frame is not judged by a cosine threshold. The question
becomes a two-way zero-shot choice, scored exactly as categories are: the query against a
fixed "none of these" contrast set of generic prompts, softmax at CLIP's logit scale with
each side weighed by the mean of its prompts' exponentials (``scoring.MEASURE``). A
frame shows X where X takes at least ``threshold`` of the probability (0.5: X is a better
description of the frame than anything generic). Time is weighted as for coverage, so
shares do not depend on the sampling rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from policy_engine.analysis.coverage import frame_spans
from policy_engine.analysis.scoring import MEASURE, Category

# What the query must beat: descriptions that fit any frame a little. Changing them
# changes every answer, so they are part of what an answer reports.
CONTRAST_PROMPTS: tuple[str, ...] = (
    "a photo",
    "something else",
    "an ordinary everyday scene",
    "a blurry picture",
    "a dark frame",
    "text on a screen",
)
DEFAULT_THRESHOLD = 0.5


def question(query: str, contrast: Sequence[str] = CONTRAST_PROMPTS) -> tuple[Category, ...]:
    """The query as categories, scored like any others: the query, and "none of these"."""
    if not query.strip():
        raise ValueError("ask about something: the question is empty")
    return (Category("query", (query,)), Category("none of these", tuple(contrast), null=True))


@dataclass(frozen=True)
class Sighting:
    start: float
    end: float
    peak: float  # highest probability of the query inside the segment
    evidence_time: float  # the frame with that peak

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Answer:
    query: str
    present: bool
    first_seen: float | None
    total_seconds: float
    share: float  # of the window's running time
    longest_run: float
    segments: tuple[Sighting, ...]
    peak: float
    peak_time: float | None
    threshold: float
    contrast: tuple[str, ...]
    frames: int
    start: float
    end: float
    measure: str = MEASURE  # how the probabilities were made

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["segments"] = [asdict(s) for s in self.segments]
        return data


def answer(
    query: str,
    times: np.ndarray,
    probabilities: np.ndarray,
    *,
    start: float,
    end: float,
    threshold: float = DEFAULT_THRESHOLD,
    contrast: Sequence[str] = CONTRAST_PROMPTS,
    begins: np.ndarray | None = None,
) -> Answer:
    """Where the query holds at least ``threshold`` of the probability, as time."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    times = np.asarray(times, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    begins, finishes = frame_spans(times, start, end, begins)
    shown = probabilities >= threshold
    sightings = _sightings(shown, probabilities, times, begins, finishes)
    total = float(sum(s.duration for s in sightings))
    running = max(end - start, 0.0)
    best = int(probabilities.argmax()) if len(probabilities) else None
    return Answer(
        query=query,
        present=bool(sightings),
        first_seen=sightings[0].start if sightings else None,
        total_seconds=total,
        share=total / running if running else 0.0,
        longest_run=max((s.duration for s in sightings), default=0.0),
        segments=tuple(sightings),
        peak=float(probabilities[best]) if best is not None else 0.0,
        peak_time=float(times[best]) if best is not None else None,
        threshold=threshold,
        contrast=tuple(contrast),
        frames=len(times),
        start=start,
        end=end,
    )


def _sightings(
    shown: np.ndarray,
    probabilities: np.ndarray,
    times: np.ndarray,
    begins: np.ndarray,
    finishes: np.ndarray,
) -> list[Sighting]:
    """Runs of consecutive frames showing the query, each with its strongest frame."""
    padded = np.concatenate([[False], shown, [False]]).astype(np.int8)
    edges = np.diff(padded)
    found = []
    for first, last in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1):
        peak = first + int(probabilities[first : last + 1].argmax())
        sighting = Sighting(
            start=float(begins[first]),
            end=float(finishes[last]),
            peak=float(probabilities[peak]),
            evidence_time=float(times[peak]),
        )
        if sighting.duration > 0:
            found.append(sighting)
    return found
