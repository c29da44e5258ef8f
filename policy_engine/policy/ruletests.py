"""Editors' test cases: coverage numbers in, the expected decision out; no video, no
model. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from policy_engine.analysis.coverage import CategoryCoverage, Coverage, Segment
from policy_engine.policy import model as m
from policy_engine.policy.evaluate import Decision, evaluate


@dataclass(frozen=True)
class TestOutcome:
    ruleset: str
    name: str
    source: str
    failures: tuple[str, ...]
    decision: Decision

    @property
    def passed(self) -> bool:
        return not self.failures


def coverage_for_test(ruleset: m.RuleSet, case: m.RuleTest) -> Coverage:
    """A Coverage built from a test case's numbers. Unstated values follow from the share:
    seconds = share x duration; longest run = all of those seconds; first seen at 0 s."""
    categories = {}
    for category in ruleset.all_categories:
        given = case.coverage.get(category.name, {})
        share = given.get("share", given.get("seconds", 0.0) / case.duration)
        seconds = given.get("seconds", share * case.duration)
        longest = given.get("longest_run", seconds)
        first = given.get("first_seen", 0.0 if seconds > 0 else None)
        segments = (Segment(first, first + longest),) if first is not None and longest > 0 else ()
        categories[category.name] = CategoryCoverage(
            name=category.name,
            null=category.null,
            share=share,
            seconds=seconds,
            frames=0,
            first_seen=first,
            last_seen=segments[-1].end if segments else None,
            longest_run=longest,
            segments=segments,
            peak_probability=0.0,
            peak_time=None,
        )
    return Coverage(
        start=0.0,
        end=case.duration,
        frame_count=0,
        interval_seconds=case.duration,
        categories=categories,
        intervals=(),
    )


def run_test(ruleset: m.RuleSet, case: m.RuleTest) -> TestOutcome:
    checks = {check: {"verdict": case.checks.get(check, "pass")} for check in m.CHECKS}
    decision = evaluate(
        ruleset, coverage_for_test(ruleset, case), margin=case.margin, checks=checks
    )
    expect = case.expect
    failures = []
    if "schedule" in expect and decision.schedule != expect["schedule"]:
        failures.append(f"schedule: expected {expect['schedule']}, got {decision.schedule}")
    if "tags" in expect and set(decision.tags) != set(expect["tags"]):
        failures.append(f"tags: expected {sorted(expect['tags'])}, got {sorted(decision.tags)}")
    if "review" in expect and decision.review != expect["review"]:
        failures.append(f"review: expected {expect['review']}, got {decision.review}")
    if "fired" in expect and set(decision.fired) != set(expect["fired"]):
        failures.append(
            f"fired rules: expected {sorted(expect['fired'])}, got {sorted(decision.fired)}"
        )
    near = [r.rule_id for r in decision.near_misses]
    if "near_misses" in expect and set(near) != set(expect["near_misses"]):
        failures.append(
            f"near misses: expected {sorted(expect['near_misses'])}, got {sorted(near)}"
        )
    if "warnings" in expect and list(decision.warnings) != list(expect["warnings"]):
        failures.append(f"warnings: expected {expect['warnings']}, got {list(decision.warnings)}")
    return TestOutcome(ruleset.name, case.name, case.source, tuple(failures), decision)


def run_tests(ruleset: m.RuleSet) -> list[TestOutcome]:
    return [run_test(ruleset, case) for case in ruleset.tests]
