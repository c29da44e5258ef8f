"""Rules on checks measured on every frame (photosensitivity): parsed strictly, evaluated
from the stored result, near misses, evidence, and never cleared when not measured."""

from __future__ import annotations

import numpy as np
import pytest
from test_evaluate import NAMES, B, coverage, rule, ruleset

from policy_engine.analysis.scoring import Category, scores_from_probabilities
from policy_engine.policy.evaluate import evaluate
from policy_engine.policy.explain import explain
from policy_engine.policy.loader import RuleSetError, parse_ruleset
from policy_engine.policy.ruletests import run_test

FAILS = rule(
    "seizures", "{check: photosensitivity, result: fail}",
    "{schedule: not-for-broadcast, review: required}",
)  # fmt: skip
WARNS = rule("close", "{check: photosensitivity, result: warning}", "{review: required}")
CLEAN = coverage([B] * 10)


def found(verdict: str, *intervals: tuple[float, str]) -> dict:
    return {"photosensitivity": {"verdict": verdict, "intervals": [
        {"start": start, "end": start + 1, "kind": "flash", "severity": severity,
         "flashes_per_second": 4.0, "area": 0.5}
        for start, severity in intervals
    ]}}  # fmt: skip


@pytest.mark.parametrize(
    ("verdict", "fired"),
    [("pass", []), ("warning", ["close"]), ("fail", ["seizures", "close"])],
)
def test_a_check_clause_holds_at_its_result_or_worse(verdict: str, fired: list[str]) -> None:
    decision = evaluate(ruleset(FAILS + WARNS), CLEAN, checks=found(verdict))
    assert decision.fired == fired
    assert decision.schedule == ("not-for-broadcast" if "seizures" in fired else "unrestricted")
    assert not decision.warnings


def test_a_warning_is_a_near_miss_of_failing_but_a_pass_is_no_near_miss() -> None:
    near = evaluate(ruleset(FAILS), CLEAN, checks=found("warning"))
    assert [r.rule_id for r in near.near_misses] == ["seizures"]
    assert near.near_misses[0].measurements[0].describe() == (
        "photosensitivity result fail or worse: measured warning"
    )
    assert evaluate(ruleset(WARNS), CLEAN, checks=found("pass")).near_misses == ()


def test_a_check_that_was_not_measured_cannot_clear_the_video() -> None:
    for checks in (None, {}, {"photosensitivity": {"verdict": "unknown"}}):
        decision = evaluate(ruleset(FAILS), CLEAN, checks=checks)
        assert decision.fired == [] and decision.review is True
        assert decision.warnings == (
            "photosensitivity was not checked on this scan: review it, or scan again with"
            " the check on",
        )
    # a rule set that asks nothing of the check does not care
    plain = rule("v", "{category: violence, coverage_above: 5%}", "{review: required}")
    assert evaluate(ruleset(plain), CLEAN, checks=None).review is False


def test_checks_combine_with_categories_and_not() -> None:
    when = "{all: [{check: photosensitivity, result: warning}, {not: {category: background, coverage_above: 99%}}]}"  # noqa: E501
    rules = ruleset(rule("mixed", when, "{tag: Flashing}"))
    assert evaluate(rules, coverage([0, B, B, B]), checks=found("fail")).tags == ("Flashing",)
    assert evaluate(rules, CLEAN, checks=found("fail")).tags == ()
    negated = ruleset(rule("calm", "{not: {check: photosensitivity, result: warning}}", "{tag: Calm}"))  # noqa: E501
    assert evaluate(negated, CLEAN, checks=found("pass")).tags == ("Calm",)


def test_evidence_is_the_failing_intervals_at_their_nearest_sampled_frames() -> None:
    times = np.arange(10) * 0.5
    scores = scores_from_probabilities(
        tuple(Category(n, ("x",)) for n in NAMES), times, np.full((10, 3), 1 / 3)
    )
    checks = found("fail", (1.1, "warning"), (3.2, "fail"))
    [reason] = evaluate(ruleset(FAILS), CLEAN, scores, checks=checks).reasons
    assert [(e.time, e.frame) for e in reason.evidence] == [(3.2, 6)]  # the failing one only
    [_, warned] = evaluate(ruleset(FAILS + WARNS), CLEAN, scores, checks=checks).reasons
    assert [e.frame for e in warned.evidence] == [2, 6]  # 1.1 s is nearest 1.0 s


def test_check_clauses_are_parsed_strictly_with_positions() -> None:
    cases = {
        "{check: photosensitivty, result: fail}": "did you mean 'photosensitivity'",
        "{check: photosensitivity, result: pass}": "one of: warning | fail",
        "{check: photosensitivity}": "needs 'result'",
        "{check: photosensitivity, result: fail, category: violence}": "unknown key 'category'",
    }
    for when, message in cases.items():
        with pytest.raises(RuleSetError) as raised:
            ruleset(rule("r", when, "{review: required}"))
        text = str(raised.value)
        assert message in text and ":9:" in text, text  # line 9: the rule's `when`


def test_editors_state_check_results_in_test_cases_and_explain_says_what_a_rule_means() -> None:
    rules = ruleset(
        FAILS,
        extra="tests:\n"
        "  - name: flashing fails\n    coverage: {background: 100%}\n"
        "    checks: {photosensitivity: fail}\n"
        "    expect: {schedule: not-for-broadcast, fired: [seizures]}\n"
        "  - name: unstated checks pass\n    coverage: {background: 100%}\n"
        "    expect: {schedule: unrestricted, review: false, fired: []}\n",
    )
    assert all(run_test(rules, case).passed for case in rules.tests)
    assert "if the photosensitivity check comes out fail or worse" in explain(rules)
    with pytest.raises(RuleSetError, match="photosensitivity result 'maybe'"):
        parse_ruleset(
            "ruleset: t\nversion: 1\ncategories:\n  b: {prompts: [x], null: true}\nrules:\n"
            + FAILS + "tests:\n  - name: x\n    coverage: {b: 100%}\n"
            "    checks: {photosensitivity: maybe}\n    expect: {review: true}\n"
        )
