"""The asset's timeline and coverage table: one per scan, over every rule set judged on
it, each category once where it measures the same in every set (``analysis.combined``).

Decisions made before categories were measured against the null class alone (their
score sets read as ``LEGACY_MEASURE``) cannot be combined that way: each group of them
with the same categories and prompts keeps a timeline of its own, as it was shown then.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from policy_engine.analysis.combined import combine_scores
from policy_engine.analysis.coverage import Coverage, coverage_from_scores
from policy_engine.analysis.scoring import MEASURE, XCLIP, FrameScores, categories_key
from policy_engine.media.timecode import format_timecode

# Colour-blind-safe palette (Okabe-Ito); the null category is grey. Colours repeat when
# there are more categories than colours, which is fine because colour is never the only
# carrier: every lane is labelled and every segment has a title.
_PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#D55E00", "#CC79A7", "#0072B2", "#F0E442")
_NULL_COLOUR = "#BBBBBB"


@dataclass(frozen=True)
class Lane:
    name: str
    null: bool
    colour: str
    segments: list[tuple[float, float, str, float]]  # (x %, width %, title, start s)
    rulesets: tuple[str, ...] = ()  # the rule sets that measure it (empty: every one)
    detector: str = ""  # the object detector that measures it (empty: CLIP)


@dataclass(frozen=True)
class Timeline:
    rulesets: tuple[str, ...]
    coverage: Coverage
    lanes: list[Lane]
    ticks: list[tuple[float, str]]
    notes: tuple[str, ...] = ()
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)  # category -> sets


@dataclass(frozen=True)
class Judged:
    """One rule set's scores of one scan, as the timeline needs them."""

    ruleset: str
    scan_id: int
    scores: FrameScores
    window: tuple[float, float, float]  # start, end, interval seconds
    begins: object  # the scan's span starts (numpy array) or None


def ticks(duration: float) -> list[tuple[float, str]]:
    """About 8 round time ticks along the running time (x in %, label)."""
    if duration <= 0:
        return []
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 1e9)
                if duration / s <= 8)  # fmt: skip
    count = int(duration // step) + 1
    return [(100 * i * step / duration, format_timecode(i * step)[:8]) for i in range(count)]


def lanes(
    coverage: Coverage,
    sources: dict[str, tuple[str, ...]] | None = None,
    detectors: dict[str, str] | None = None,
) -> list[Lane]:
    span = coverage.end - coverage.start or 1.0
    found = []
    colours = itertools.cycle(_PALETTE)  # any number of categories that validates
    for c in coverage.categories.values():
        segments = [
            (
                100 * (s.start - coverage.start) / span,
                max(0.15, 100 * s.duration / span),
                f"{c.name}: {format_timecode(s.start)} - {format_timecode(s.end)}",
                s.start,
            )
            for s in c.segments
        ]
        colour = _NULL_COLOUR if c.null else next(colours)
        rulesets = (sources or {}).get(c.name, ())
        detector = (detectors or {}).get(c.name, "")
        found.append(Lane(c.name, c.null, colour, segments, rulesets, detector))
    return found


def _detectors(scores: FrameScores) -> dict[str, str]:
    """Which lanes a second opinion measures: an object detector (which), or X-CLIP."""
    found = {c.name: c.detector.model for c in scores.categories if c.detector is not None}
    found.update({c.name: "X-CLIP" for c in scores.categories if c.model == XCLIP})
    return found


def _coverage(judged: Judged, scores: FrameScores) -> Coverage:
    start, end, interval = judged.window
    return coverage_from_scores(
        scores, start=start, end=end, interval_seconds=interval, begins=judged.begins
    )


def _combined(group: Sequence[Judged]) -> Timeline:
    combined = combine_scores([(j.ruleset, j.scores) for j in group])
    coverage = _coverage(group[0], combined.scores)
    detectors = _detectors(combined.scores)
    names = tuple(j.ruleset for j in group)
    sources = {
        c.name: sets
        for c, sets in zip(combined.scores.categories, combined.sources, strict=True)
        if len(sets) < len(names)
    }
    return Timeline(
        names, coverage, lanes(coverage, sources, detectors), ticks(coverage.running_time),
        combined.notes, sources,
    )  # fmt: skip


def _as_recorded(group: Sequence[Judged]) -> Timeline:
    coverage = _coverage(group[0], group[0].scores)
    names = tuple(j.ruleset for j in group)
    return Timeline(
        names, coverage, lanes(coverage, detectors=_detectors(group[0].scores)),
        ticks(coverage.running_time),
    )  # fmt: skip


def build_timelines(judged: Sequence[Judged]) -> list[Timeline]:
    """One timeline per scan and window for scores measured as ``MEASURE``; one per
    vocabulary for older ones."""
    groups: dict[tuple[object, ...], list[Judged]] = {}
    for j in judged:
        if j.scores.measure == MEASURE:
            key: tuple[object, ...] = (MEASURE, j.scan_id, j.window)
        else:
            vocabulary = categories_key(j.scores.categories, j.scores.measure)
            key = (j.scores.measure, j.scan_id, vocabulary)
        groups.setdefault(key, []).append(j)
    return [
        _combined(group) if key[0] == MEASURE else _as_recorded(group)
        for key, group in groups.items()
    ]
