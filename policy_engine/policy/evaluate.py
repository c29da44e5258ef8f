"""Evaluating a rule set against coverage: a decision with its reasons. Pure.

Several rules firing: the most restrictive schedule level wins, tags are united, review
is required if any fired rule asks for it, and every fired rule is a reason with the
measured values, the thresholds and its evidence frames. Rules that did not fire but
would have with every threshold eased by the near-miss margin are listed as near misses,
so reviewers see borderline cases.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from policy_engine.analysis.coverage import CategoryCoverage, Coverage
from policy_engine.analysis.scoring import FrameScores
from policy_engine.media.timecode import format_timecode
from policy_engine.policy import model as m
from policy_engine.policy.territory import Slot, earliest_slot
from policy_engine.policy.thresholds import format_fraction, format_seconds

DEFAULT_EVIDENCE_FRAMES = 3

# What the every-frame checks found, by check name: the stored summary of each (its
# ``verdict`` and failing ``intervals``). A check that is absent was not measured.
Checks = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Measurement:
    """One clause of a rule, measured."""

    category: str
    metric: str
    measured: float | None  # None: the category never appeared (first_seen)
    threshold: float
    holds: bool

    def describe(self) -> str:
        if self.metric == m.CHECK_METRIC:
            results = m.CHECKS.get(self.category, ())
            wanted = results[int(self.threshold)] if results else self.threshold
            found = "not measured" if self.measured is None else results[int(self.measured)]
            return f"{self.category} result {wanted} or worse: measured {found}"
        fmt = format_fraction if self.metric in m.FRACTION_METRICS else format_seconds
        measured = "never" if self.measured is None else fmt(self.measured)
        return f"{self.category} {self.metric} {fmt(self.threshold)}: measured {measured}"


@dataclass(frozen=True)
class Evidence:
    category: str
    time: float
    probability: float
    frame: int  # index of the sampled frame (its stored thumbnail)


@dataclass(frozen=True)
class Reason:
    rule_id: str
    description: str
    reference: str
    outcome: m.Outcome
    measurements: tuple[Measurement, ...]
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class Decision:
    ruleset: str
    ruleset_version: str
    ruleset_sha256: str
    schedule: str
    tags: tuple[str, ...]
    review: bool
    warnings: tuple[str, ...]
    reasons: tuple[Reason, ...]
    near_misses: tuple[Reason, ...]
    slots: tuple[Slot, ...] = field(default_factory=tuple)
    measure: str | None = None  # how the frame scores were measured (None: none given)

    @property
    def fired(self) -> list[str]:
        return [r.rule_id for r in self.reasons]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(clause: m.Clause, coverage: CategoryCoverage | None) -> float | None:
    if coverage is None:
        return None if clause.metric == m.FIRST_SEEN_BEFORE else 0.0
    return {
        m.SHARE_ABOVE: coverage.share,
        m.SHARE_BELOW: coverage.share,
        m.SECONDS_ABOVE: coverage.seconds,
        m.LONGEST_RUN_ABOVE: coverage.longest_run,
        m.FIRST_SEEN_BEFORE: coverage.first_seen,
    }[clause.metric]


def clause_holds(clause: m.Clause, measured: float | None, slack: float = 0.0) -> bool:
    """Whether the clause holds; ``slack`` > 0 eases the threshold by that fraction (for
    near misses), < 0 tightens it (inside a ``not``)."""
    if measured is None:
        return False
    t = clause.threshold
    if clause.metric in (m.SHARE_BELOW, m.FIRST_SEEN_BEFORE):
        return measured < t * (1 + slack)
    return measured > t * (1 - slack)


def check_rank(clause: m.CheckClause, checks: Checks) -> int | None:
    """How the check came out (0 pass, 1 warning, 2 fail); None: not measured."""
    found = checks.get(clause.check)
    results = m.CHECKS[clause.check]
    if found is None or found.get("verdict") not in results:
        return None
    return results.index(found["verdict"])


def check_holds(clause: m.CheckClause, rank: int | None, slack: float = 0.0) -> bool:
    """A near miss of ``fail`` is a ``warning``; nothing is a near miss of ``warning``."""
    if rank is None:
        return False
    wanted = clause.rank - 1 if slack > 0 and clause.rank > 1 else clause.rank
    return rank >= wanted


def holds(
    condition: m.Condition, coverage: Coverage, slack: float = 0.0, checks: Checks | None = None
) -> bool:
    if isinstance(condition, m.Clause):
        value = measure(condition, coverage.categories.get(condition.category))
        return clause_holds(condition, value, slack)
    if isinstance(condition, m.CheckClause):
        return check_holds(condition, check_rank(condition, checks or {}), slack)
    if isinstance(condition, m.AllOf):
        return all(holds(part, coverage, slack, checks) for part in condition.parts)
    if isinstance(condition, m.AnyOf):
        return any(holds(part, coverage, slack, checks) for part in condition.parts)
    return not holds(condition.part, coverage, -slack, checks)


def clauses(condition: m.Condition) -> Iterator[m.Clause | m.CheckClause]:
    if isinstance(condition, m.Clause | m.CheckClause):
        yield condition
    elif isinstance(condition, m.NotOf):
        yield from clauses(condition.part)
    else:
        for part in condition.parts:
            yield from clauses(part)


def strongest_frames(scores: FrameScores | None, category: str, count: int) -> list[Evidence]:
    """The sampled frames most probably showing ``category`` (those that show it first)."""
    if scores is None or category not in scores.category_names or len(scores.times) == 0:
        return []
    index = scores.category_names.index(category)
    probs = scores.probabilities[:, index]
    shown = scores.shown[:, index]
    # frames that show it first, then by probability, strongest first
    order = np.lexsort((-probs, ~shown))[:count]
    return [Evidence(category, float(scores.times[i]), float(probs[i]), int(i)) for i in order]


def check_evidence(
    clause: m.CheckClause, checks: Checks, scores: FrameScores | None, count: int
) -> list[Evidence]:
    """The check's worst intervals, each shown by the sampled frame nearest its start."""
    found = checks.get(clause.check) or {}
    intervals = [  # a fail is shown by failing intervals, a warning by any
        i for i in found.get("intervals", ())
        if clause.result != "fail" or i.get("severity", "fail") == "fail"
    ]  # fmt: skip
    if scores is None or len(scores.times) == 0:
        return []
    evidence = []
    for interval in intervals[:count]:
        frame = int(np.argmin(np.abs(np.asarray(scores.times) - float(interval["start"]))))
        evidence.append(
            Evidence(f"{clause.check}: {interval.get('kind', '')}".rstrip(": "),
                     float(interval["start"]), 1.0, frame)
        )  # fmt: skip
    return evidence


def _check_measurement(clause: m.CheckClause, checks: Checks) -> Measurement:
    rank = check_rank(clause, checks)
    return Measurement(clause.check, m.CHECK_METRIC, rank, clause.rank, check_holds(clause, rank))


def _reason(
    rule: m.Rule,
    coverage: Coverage,
    scores: FrameScores | None,
    evidence_frames: int,
    checks: Checks,
) -> Reason:
    measurements = []
    evidence: list[Evidence] = []
    for clause in clauses(rule.when):
        if isinstance(clause, m.CheckClause):
            measurements.append(_check_measurement(clause, checks))
            evidence.extend(check_evidence(clause, checks, scores, evidence_frames))
            continue
        value = measure(clause, coverage.categories.get(clause.category))
        measurements.append(
            Measurement(
                clause.category, clause.metric, value, clause.threshold, clause_holds(clause, value)
            )
        )
        if all(e.category != clause.category for e in evidence):
            evidence.extend(strongest_frames(scores, clause.category, evidence_frames))
    return Reason(
        rule_id=rule.id,
        description=rule.description,
        reference=rule.reference,
        outcome=rule.then,
        measurements=tuple(measurements),
        evidence=tuple(evidence),
    )


def evaluate(
    ruleset: m.RuleSet,
    coverage: Coverage,
    scores: FrameScores | None = None,
    *,
    margin: float | None = None,
    evidence_frames: int = DEFAULT_EVIDENCE_FRAMES,
    checks: Checks | None = None,
) -> Decision:
    """The decision ``ruleset`` makes about a video with this ``coverage`` and the
    results of the every-frame ``checks``. A rule set that relies on a check the scan did
    not measure cannot clear the video: its decision requires review and says why."""
    margin = ruleset.near_miss_margin if margin is None else margin
    checks = checks or {}
    fired = [r for r in ruleset.rules if holds(r.when, coverage, 0.0, checks)]
    close = [
        r
        for r in ruleset.rules
        if r not in fired and margin > 0 and holds(r.when, coverage, margin, checks)
    ]
    unmeasured = sorted({
        c.check for r in ruleset.rules for c in clauses(r.when)
        if isinstance(c, m.CheckClause) and check_rank(c, checks) is None
    })  # fmt: skip
    levels = [r.then.schedule for r in fired if r.then.schedule] or [ruleset.levels[0]]
    schedule = max(levels, key=ruleset.level_rank)
    tags = tuple(sorted({t for r in fired for t in r.then.tags}))
    warnings = tuple(dict.fromkeys(r.then.warning for r in fired if r.then.warning))
    warnings += tuple(
        f"{check} was not checked on this scan: review it, or scan again with the check on"
        for check in unmeasured
    )
    disagreeing = disagreements(ruleset, coverage)
    warnings += tuple(disagreeing)
    return Decision(
        ruleset=ruleset.name,
        ruleset_version=ruleset.version,
        ruleset_sha256=ruleset.sha256,
        schedule=schedule,
        tags=tags,
        review=any(r.then.review for r in fired) or bool(unmeasured) or bool(disagreeing),
        warnings=warnings,  # type: ignore[arg-type]
        reasons=tuple(_reason(r, coverage, scores, evidence_frames, checks) for r in fired),
        near_misses=tuple(_reason(r, coverage, scores, evidence_frames, checks) for r in close),
        slots=tuple(earliest_slot(schedule, ruleset.levels, t) for t in ruleset.territories),
        measure=scores.measure if scores is not None else None,
    )


# A second opinion disagrees where one model is over a rule's threshold and the other is
# under this share of it (or at nothing, for a threshold of nothing): a slight difference
# is two models measuring alike, not a dispute to send to a person.
FAR_BELOW = 0.25
_ABOVE_METRICS = (m.SHARE_ABOVE, m.SECONDS_ABOVE, m.LONGEST_RUN_ABOVE)


def disagreements(ruleset: m.RuleSet, coverage: Coverage) -> list[str]:
    """Where a rule reads a category on which CLIP and its second opinion (a detector
    category's ``second_opinion_for``) disagree far about that rule's threshold, one over
    it and the other far under: which models, on what, and when each saw it without the
    other. Both ways: a rule on CLIP's category that does not fire because CLIP missed
    what the detector saw is exactly what a person must look at."""
    if not ruleset.review_on_disagreement:
        return []
    pairs = {
        (spec.second_opinion_for, c.name): spec.model
        for c in ruleset.detectors
        if (spec := c.detector) is not None and spec.second_opinion_for
    }
    found: dict[tuple[str, str], str] = {}
    for rule in ruleset.rules:
        for clause in clauses(rule.when):
            if not isinstance(clause, m.Clause) or clause.metric not in _ABOVE_METRICS:
                continue
            for (clip, detector), model in pairs.items():
                if clause.category not in (clip, detector) or (clip, detector) in found:
                    continue
                a = measure(clause, coverage.categories.get(clip)) or 0.0
                b = measure(clause, coverage.categories.get(detector)) or 0.0
                t = clause.threshold
                if (a > t and b <= t * FAR_BELOW) or (b > t and a <= t * FAR_BELOW):
                    words = _disagreement(clause, clip, detector, model, a, b, coverage)
                    found[(clip, detector)] = f"{rule.id}: {words}"
    return list(found.values())


def _disagreement(
    clause: m.Clause,
    clip: str,
    detector: str,
    model: str,
    clip_value: float,
    detector_value: float,
    coverage: Coverage,
) -> str:
    show = format_fraction if clause.metric in m.FRACTION_METRICS else format_seconds
    alone = [
        (who, _only(coverage, one, other))
        for who, one, other in ((f"CLIP alone ({clip})", clip, detector),
                                (f"the detector alone ({detector})", detector, clip))
    ]  # fmt: skip
    where = "; ".join(
        f"{who} at "
        + ", ".join(f"{_clock(a)}-{_clock(b)}" for a, b in spans[:5])
        + (f" and {len(spans) - 5} more" if len(spans) > 5 else "")
        for who, spans in alone
        if spans
    )
    return (
        f"CLIP ({clip}) and the detector {model} ({detector}) disagree, review required:"
        f" {show(clip_value)} against {show(detector_value)}"
        f" ({clause.metric} {show(clause.threshold)}); {where or 'no time apart'}"
    )


def _only(coverage: Coverage, one: str, other: str) -> list[tuple[float, float]]:
    """The stretches of time where ``one`` is shown and ``other`` is not."""
    mine = coverage.categories.get(one)
    theirs = coverage.categories.get(other)
    spans = [(s.start, s.end) for s in mine.segments] if mine else []
    for cut in [(s.start, s.end) for s in theirs.segments] if theirs else []:
        spans = [piece for span in spans for piece in _minus(span, cut)]
    return [(a, b) for a, b in spans if b - a > 1e-9]


def _minus(span: tuple[float, float], cut: tuple[float, float]) -> list[tuple[float, float]]:
    (a, b), (c, d) = span, cut
    if d <= a or c >= b:
        return [span]
    return [piece for piece in ((a, c), (d, b)) if piece[1] > piece[0]]


def _clock(seconds: float) -> str:
    return format_timecode(seconds)[:8]


def combine(
    decisions: Sequence[Decision], levels: tuple[str, ...] = m.DEFAULT_LEVELS
) -> dict[str, Any]:
    """One verdict over several rule sets applied to one asset (e.g. a territory profile
    plus a tagging set): the most restrictive level on the shared scale, tags united."""
    ranked = [d.schedule for d in decisions if d.schedule in levels]
    return {
        "schedule": max(ranked, key=levels.index) if ranked else levels[0],
        "tags": sorted({t for d in decisions for t in d.tags}),
        "review": any(d.review for d in decisions),
        "warnings": list(dict.fromkeys(w for d in decisions for w in d.warnings)),
    }
