"""The evaluator: every condition, combinator and outcome rule, on hand-built coverage."""

from __future__ import annotations

import numpy as np
import pytest

from policy_engine.analysis.coverage import compute_coverage, coverage_from_scores
from policy_engine.analysis.scoring import Category, scores_from_probabilities
from policy_engine.policy import model as m
from policy_engine.policy.evaluate import combine, evaluate, strongest_frames
from policy_engine.policy.loader import parse_ruleset

NAMES = ["violence", "computer", "background"]
V, C, B = 0, 1, 2


def coverage(labels: list[int], fps: float = 1.0, probabilities: np.ndarray | None = None):
    times = np.arange(len(labels)) / fps
    return compute_coverage(
        times, labels, NAMES, start=0.0, end=len(labels) / fps, probabilities=probabilities
    )


def ruleset(rules: str, extra: str = "") -> m.RuleSet:
    return parse_ruleset(
        "ruleset: t\nversion: 1\n"
        "categories:\n"
        "  violence: {prompts: [people fighting]}\n"
        "  computer: {prompts: [a laptop]}\n"
        "  background: {prompts: [something else], null: true}\n"
        f"{extra}rules:\n{rules}"
    )


def rule(rule_id: str, when: str, then: str) -> str:
    return f"  - id: {rule_id}\n    when: {when}\n    then: {then}\n"


# 20 s at 1 fps: violence at 2..4 (3 s) and 10 (1 s) = 4 s = 20%; computer 12..16 = 5 s
LABELS = [B, B, V, V, V, B, B, B, B, B, V, B, C, C, C, C, C, B, B, B]


@pytest.mark.parametrize(
    ("when", "fires"),
    [
        ("{category: violence, coverage_above: 19%}", True),
        ("{category: violence, coverage_above: 20%}", False),  # strictly above
        ("{category: violence, coverage_below: 21%}", True),
        ("{category: violence, coverage_below: 20%}", False),
        ("{category: violence, seconds_above: 3.9s}", True),
        ("{category: violence, seconds_above: 4s}", False),
        ("{category: violence, longest_run_above: 2.5s}", True),
        ("{category: violence, longest_run_above: 3s}", False),
        ("{category: violence, first_seen_before: 2.5s}", True),
        ("{category: violence, first_seen_before: 2s}", False),
        ("{category: computer, first_seen_before: '00:00:13'}", True),
    ],
)
def test_each_condition(when: str, fires: bool) -> None:
    decision = evaluate(ruleset(rule("r", when, "{review: required}")), coverage(LABELS), margin=0)
    assert (decision.fired == ["r"]) is fires


def test_never_seen_is_not_first_seen_before_anything() -> None:
    cov = coverage([B] * 10)
    d = evaluate(
        ruleset(rule("r", "{category: violence, first_seen_before: 100s}", "{tag: X}")), cov
    )
    assert d.fired == [] and d.near_misses == ()


@pytest.mark.parametrize(
    ("when", "fires"),
    [
        (
            "{all: [{category: violence, coverage_above: 10%}, {category: computer, seconds_above: 4s}]}",
            True,
        ),
        (
            "{all: [{category: violence, coverage_above: 10%}, {category: computer, seconds_above: 6s}]}",
            False,
        ),
        (
            "{any: [{category: violence, coverage_above: 50%}, {category: computer, seconds_above: 4s}]}",
            True,
        ),
        (
            "{any: [{category: violence, coverage_above: 50%}, {category: computer, seconds_above: 6s}]}",
            False,
        ),
        ("{not: {category: violence, coverage_above: 50%}}", True),
        ("{not: {category: violence, coverage_above: 10%}}", False),
    ],
)
def test_combinators(when: str, fires: bool) -> None:
    decision = evaluate(ruleset(rule("r", when, "{tag: X}")), coverage(LABELS), margin=0)
    assert (decision.fired == ["r"]) is fires


def test_most_restrictive_level_wins_tags_unite_and_every_rule_is_a_reason() -> None:
    rs = ruleset(
        rule("tag-a", "{category: violence, coverage_above: 1%}", "{tags: [A, Shared]}")
        + rule("late", "{category: violence, coverage_above: 10%}", "{schedule: post-watershed}")
        + rule(
            "never",
            "{category: violence, coverage_above: 15%}",
            "{schedule: not-for-broadcast, tag: B, warning: 'Strong'}",
        )
        + rule(
            "quiet", "{category: computer, coverage_above: 90%}", "{schedule: not-for-broadcast}"
        )
        + rule(
            "tag-c", "{category: computer, coverage_above: 1%}", "{tags: [Shared, C], review: true}"
        )
    )
    d = evaluate(rs, coverage(LABELS), margin=0)
    assert d.schedule == "not-for-broadcast"
    assert d.tags == ("A", "B", "C", "Shared")
    assert d.review is True and d.warnings == ("Strong",)
    assert d.fired == ["tag-a", "late", "never", "tag-c"]
    reason = d.reasons[1]
    (measurement,) = reason.measurements
    assert (measurement.category, measurement.metric) == ("violence", m.SHARE_ABOVE)
    assert measurement.measured == pytest.approx(0.2) and measurement.threshold == pytest.approx(
        0.1
    )
    assert measurement.holds
    assert d.ruleset == "t" and d.ruleset_sha256 == rs.sha256


def test_nothing_fires_gives_the_least_restrictive_level() -> None:
    d = evaluate(
        ruleset(
            rule("r", "{category: violence, coverage_above: 90%}", "{schedule: post-watershed}")
        ),
        coverage(LABELS),
    )
    assert (d.schedule, d.tags, d.review, d.reasons) == ("unrestricted", (), False, ())
    assert [s.earliest for s in d.slots] == ["any time", "any time"]


def test_slots_follow_the_schedule() -> None:
    d = evaluate(
        ruleset(
            rule("r", "{category: violence, coverage_above: 5%}", "{schedule: post-watershed}")
        ),
        coverage(LABELS),
    )
    assert [(s.territory, s.earliest) for s in d.slots] == [("UK", "21:00"), ("US", "22:00")]


def test_near_misses_within_the_margin() -> None:
    rs = ruleset(
        rule("close", "{category: violence, coverage_above: 22%}", "{schedule: post-watershed}")
        + rule("far", "{category: violence, coverage_above: 40%}", "{schedule: post-watershed}")
        + rule("below", "{category: computer, coverage_below: 22%}", "{tag: Rare}")
        + rule("late", "{category: computer, first_seen_before: 11s}", "{tag: Early}"),
        extra="near_miss_margin: 25%\n",
    )
    d = evaluate(rs, coverage(LABELS))
    # violence 20% vs 22%: within 25% of the threshold; vs 40%: not.
    # computer 25% vs below 22%: 22% x 1.25 = 27.5% -> near. first seen 12 s vs 11 s -> near.
    assert d.fired == [] and d.schedule == "unrestricted"
    assert [r.rule_id for r in d.near_misses] == ["close", "below", "late"]
    assert evaluate(rs, coverage(LABELS), margin=0).near_misses == ()


def test_near_miss_inside_not_tightens() -> None:
    # not(violence > 18%) is false (20% > 18%); eased by 25% it would need violence <= 22.5%,
    # i.e. not(violence > 22.5%): true -> a near miss.
    rs = ruleset(rule("r", "{not: {category: violence, coverage_above: 18%}}", "{tag: Calm}"))
    d = evaluate(rs, coverage(LABELS), margin=0.25)
    assert d.fired == [] and [r.rule_id for r in d.near_misses] == ["r"]


def test_evidence_is_the_strongest_frames_of_the_category() -> None:
    probs = np.full((20, 3), 0.1)
    probs[:, B] = 0.8
    for i, p in {2: 0.6, 3: 0.9, 4: 0.7, 10: 0.5}.items():
        probs[i] = [p, 0.05, 0.95 - p]
    probs[15, V] = 0.45  # high for violence but not shown: after the frames that show it
    scores = scores_from_probabilities(
        tuple(Category(n, ("x",), null=n == "background") for n in NAMES),
        np.arange(20.0),
        probs,
    )
    cov = coverage_from_scores(scores, start=0, end=20)
    rs = ruleset(rule("r", "{category: violence, coverage_above: 5%}", "{tag: V}"))
    (reason,) = evaluate(rs, cov, scores, evidence_frames=3).reasons
    assert [(e.time, round(e.probability, 2)) for e in reason.evidence] == [
        (3.0, 0.9),
        (4.0, 0.7),
        (2.0, 0.6),
    ]
    five = strongest_frames(scores, "violence", 5)
    assert [e.time for e in five] == [3.0, 4.0, 2.0, 10.0, 15.0]


def test_combine_several_rule_sets() -> None:
    a = evaluate(
        ruleset(
            rule("late", "{category: violence, coverage_above: 5%}", "{schedule: post-watershed}")
        ),
        coverage(LABELS),
    )
    b = evaluate(
        ruleset(
            rule(
                "tech",
                "{category: computer, coverage_above: 10%}",
                "{tag: Technology, review: yes}",
            )
        ),
        coverage(LABELS),
    )
    assert combine([a, b]) == {
        "schedule": "post-watershed",
        "tags": ["Technology"],
        "review": True,
        "warnings": [],
    }
