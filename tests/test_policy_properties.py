"""Property-based: evaluation is deterministic, and monotone (more of a category never
lowers the schedule level) for rule sets whose conditions all ask for "more"."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from policy_engine.analysis.coverage import CategoryCoverage, Coverage, Segment
from policy_engine.policy import model as m
from policy_engine.policy.evaluate import evaluate
from policy_engine.policy.loader import load_catalogue

RULES = Path(__file__).resolve().parent.parent / "policy_engine" / "rules"
SHIPPED, _ = load_catalogue([RULES])
CATEGORIES = ("violence", "weapons", "computer")
INCREASING = (m.SHARE_ABOVE, m.SECONDS_ABOVE, m.LONGEST_RUN_ABOVE)
DURATION = 60.0


def _coverage(
    names: tuple[str, ...], shares: dict[str, float], first: dict[str, float]
) -> Coverage:
    categories = {}
    for name in names:
        share = shares.get(name, 0.0)
        seconds = share * DURATION
        start = first.get(name, 0.0) if seconds else None
        categories[name] = CategoryCoverage(
            name=name,
            null=False,
            share=share,
            seconds=seconds,
            frames=0,
            first_seen=start,
            last_seen=None if start is None else start + seconds,
            longest_run=seconds,
            segments=(Segment(start, start + seconds),) if start is not None else (),
            peak_probability=0.0,
            peak_time=None,
        )
    return Coverage(0.0, DURATION, 0, 10.0, categories, ())


shares = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
clause = st.builds(
    m.Clause,
    category=st.sampled_from(CATEGORIES),
    metric=st.sampled_from(INCREASING),
    threshold=st.floats(min_value=0.0, max_value=1.0) | st.floats(min_value=0.0, max_value=60.0),
)
condition = st.recursive(
    clause,
    lambda inner: (
        st.builds(m.AllOf, st.lists(inner, min_size=1, max_size=3).map(tuple))
        | st.builds(m.AnyOf, st.lists(inner, min_size=1, max_size=3).map(tuple))
    ),
    max_leaves=6,
)
outcome = st.builds(
    m.Outcome,
    schedule=st.sampled_from((None, *m.DEFAULT_LEVELS)),
    tags=st.lists(st.sampled_from(("A", "B", "C")), max_size=2).map(tuple),
    review=st.booleans(),
)
generated_rulesets = st.lists(
    st.builds(m.Rule, id=st.uuids().map(str), when=condition, then=outcome), min_size=1, max_size=5
).map(
    lambda rules: m.RuleSet(
        name="generated",
        version="1",
        description="",
        categories=(),
        rules=tuple(rules),
    )
)


@settings(max_examples=200, deadline=None)
@given(generated_rulesets, st.dictionaries(st.sampled_from(CATEGORIES), shares))
def test_deterministic(ruleset: m.RuleSet, values: dict[str, float]) -> None:
    cov = _coverage(CATEGORIES, values, {})
    assert evaluate(ruleset, cov) == evaluate(ruleset, cov)


@settings(max_examples=300, deadline=None)
@given(
    generated_rulesets,
    st.dictionaries(st.sampled_from(CATEGORIES), shares),
    st.sampled_from(CATEGORIES),
    shares,
)
def test_monotone_in_share(
    ruleset: m.RuleSet, values: dict[str, float], raised: str, extra: float
) -> None:
    before = evaluate(ruleset, _coverage(CATEGORIES, values, {}))
    more = dict(values, **{raised: min(1.0, values.get(raised, 0.0) + extra)})
    after = evaluate(ruleset, _coverage(CATEGORIES, more, {}))
    assert ruleset.level_rank(after.schedule) >= ruleset.level_rank(before.schedule)
    assert set(after.fired) >= set(before.fired)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_shipped_profiles_are_monotone(data: st.DataObject) -> None:
    ruleset = data.draw(st.sampled_from(SHIPPED))
    names = tuple(c.name for c in ruleset.categories)
    values = data.draw(st.dictionaries(st.sampled_from(names), shares))
    first = data.draw(st.dictionaries(st.sampled_from(names), st.floats(0.0, 30.0)))
    raised = data.draw(st.sampled_from(names))
    extra = data.draw(shares)
    before = evaluate(ruleset, _coverage(names, values, first))
    more = dict(values, **{raised: min(1.0, values.get(raised, 0.0) + extra)})
    after = evaluate(ruleset, _coverage(names, more, first))
    assert ruleset.level_rank(after.schedule) >= ruleset.level_rank(before.schedule)
    assert after.review >= before.review


def test_shipped_rule_sets_load() -> None:
    assert {r.name for r in SHIPPED} == {"uk-trailers", "us-broadcast", "genre-tags"}
    assert all(replace(r, tests=()).rules for r in SHIPPED)
