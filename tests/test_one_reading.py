"""One reading of an asset (issue: the review app): a category with the same prompts
measures the same in every rule set, the report shows it once, and a decision made on
the earlier measure keeps showing the numbers it was made on."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from policy_engine.analysis.combined import combine_scores
from policy_engine.analysis.scoring import (
    LEGACY_MEASURE,
    MEASURE,
    Category,
    categories_key,
    category_records,
    scores_from_probabilities,
)
from policy_engine.config import SHIPPED_RULES
from policy_engine.media.video import SamplingSpec
from policy_engine.models.provider import ModelProvider
from policy_engine.pipeline import AnalysisOptions
from policy_engine.pipeline.scan import Scanner
from policy_engine.policy.consistency import measurement_conflicts
from policy_engine.policy.evaluate import evaluate
from policy_engine.policy.loader import load_catalogue, parse_ruleset
from policy_engine.reporting import build_asset_report, render_asset_report
from policy_engine.store import NewDecision, Store
from policy_engine.store.synthetic import seed_scan


@pytest.fixture
def shipped_scan(store: Store, tiny_clip_dir: Path, colour_video: Path, tmp_path: Path):
    rulesets, problems = load_catalogue([SHIPPED_RULES])
    assert not problems
    scanner = Scanner(
        store, rulesets, ModelProvider(str(tiny_clip_dir), device="cpu", dtype="fp32"),
        AnalysisOptions(sampling=SamplingSpec(fps=4.0)), reports_dir=tmp_path / "reports",
    )  # fmt: skip
    [outcome] = scanner.scan([colour_video])
    assert outcome.status == "scanned", outcome.error
    return store, rulesets, outcome


def test_the_shipped_sets_measure_violence_once_and_the_report_shows_it_once(
    shipped_scan,
) -> None:
    store, rulesets, outcome = shipped_scan
    report = build_asset_report(store, outcome.asset_id)
    sections = {s.decision.ruleset_name: s for s in report.sections}
    assert {s.measure for s in report.sections} == {MEASURE}
    # recorded with each decision, and said in its JSON (`show --json`, the API)
    from policy_engine.pipeline.review import decision_summary

    assert {decision_summary(s.decision)["measure"] for s in report.sections} == {MEASURE}
    uk, us = sections["uk-trailers"], sections["us-broadcast"]
    for name in ("violence", "blood_gore", "drugs", "sexual_content"):
        assert np.array_equal(
            uk.scores.probabilities[:, uk.scores.category_names.index(name)],
            us.scores.probabilities[:, us.scores.category_names.index(name)],
        ), name
        assert uk.coverage[name].share == us.coverage[name].share
    # one timeline over the three sets, each category once, saying who measures it
    [timeline] = report.timelines
    assert set(timeline.rulesets) == {"genre-tags", "uk-trailers", "us-broadcast"}
    lane_names = [lane.name for lane in timeline.lanes]
    assert len(lane_names) == len(set(lane_names)) and "violence" in lane_names
    assert timeline.sources["violence"] == ("uk-trailers", "us-broadcast")
    assert timeline.coverage["violence"].share == uk.coverage["violence"].share
    assert not timeline.notes
    html = render_asset_report(report)
    coverage_table = html[html.index('id="coverage"') :]
    assert len(re.findall(r"<tr><td>violence</td>", coverage_table)) == 1
    assert html.count("what each frame shows along the running time") == 1


def test_one_name_measured_two_ways_is_shown_apart_and_validate_warns(tmp_path: Path) -> None:
    def ruleset(name: str, prompts: str, null: str) -> str:
        return (
            f"ruleset: {name}\nversion: 1\ncategories:\n"
            f"  violence: {{prompts: [{prompts}]}}\n"
            f"  background: {{prompts: [{null}], null: true}}\n"
            "rules:\n  - id: v\n    when: {category: violence, coverage_above: 5%}\n"
            "    then: {review: required}\n"
        )

    texts = {
        "a": ruleset("a", "a fight", "people talking"),
        "b": ruleset("b", "a fight, a shooting", "people talking"),
        "c": ruleset("c", "a fight", "a landscape"),
    }
    for name, text in texts.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    sets = [parse_ruleset(t, f"{n}.yaml") for n, t in texts.items()]
    conflicts = measurement_conflicts(sets)
    assert len(conflicts) == 2
    assert "in a (a.yaml) and b (b.yaml): its prompts differ" in conflicts[0]
    assert "null prompts differ (people talking against a landscape)" in conflicts[1]
    assert measurement_conflicts(sets[:1] * 2) == []

    rng = np.random.default_rng(1)
    probs = rng.random((10, 2)).astype(np.float32)
    combined = combine_scores(
        [(s.name, scores_from_probabilities(s.categories, np.arange(10.0), probs)) for s in sets]
    )
    names = combined.scores.category_names
    assert names == ["violence", "violence (b)", "violence (c)", "background"]
    assert combined.sources == (("a",), ("b",), ("c",), ("a", "b", "c"))
    assert len(combined.notes) == 2
    # the null lane holds the frames that show none of them
    assert np.array_equal(combined.scores.shown[:, -1], ~combined.scores.shown[:, :-1].any(1))

    from policy_engine.cli import app

    result = CliRunner().invoke(app, ["rules", "validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.count("warning") == 2 and "measures differently" in result.output


def test_the_shipped_sets_validate_without_measurement_warnings() -> None:
    rulesets, _ = load_catalogue([SHIPPED_RULES])
    assert measurement_conflicts(rulesets) == []


LEGACY_RULES = """\
ruleset: house
version: 1
categories:
  violence: {prompts: ["a fight"]}
  computer: {prompts: ["a laptop"]}
  background: {prompts: ["something else"], null: true}
rules:
  - id: violent
    when: {category: violence, coverage_above: 30%}
    then: {schedule: post-watershed}
"""


def test_a_decision_made_on_the_earlier_measure_keeps_its_numbers(store: Store) -> None:
    """Score sets stored before (one softmax over a set's prompts; each frame labelled
    with its most probable category) are read that way for the decisions made on them."""
    ruleset = parse_ruleset(LEGACY_RULES, "house.yaml")
    categories: tuple[Category, ...] = ruleset.categories
    # violence is the most probable category on half the frames, never above one half
    probs = np.tile(np.array([[0.45, 0.25, 0.30], [0.2, 0.3, 0.5]], np.float32), (10, 1))
    asset_id, scan_id = seed_scan(
        store, name="legacy", categories=categories, probabilities=probs, duration=10.0
    )
    store.save_score_sets(
        categories_key(categories, LEGACY_MEASURE), category_records(categories), {scan_id: probs}
    )
    [scan] = store.completed_scans(scan_ids=[scan_id])
    legacy = scores_from_probabilities(categories, scan.times, probs, LEGACY_MEASURE)
    from policy_engine.analysis.coverage import coverage_from_scores

    coverage = coverage_from_scores(legacy, start=0.0, end=10.0)
    decision = evaluate(ruleset, coverage)  # no scores: recorded as an old decision is
    assert decision.measure is None and decision.schedule == "post-watershed"
    store.append_decisions([NewDecision(scan_id, asset_id, ruleset, decision, "scan")])

    report = build_asset_report(store, asset_id)
    [section] = report.sections
    assert section.measure == LEGACY_MEASURE and section.decision.measure is None
    assert section.coverage["violence"].share == pytest.approx(0.5)  # as it was decided
    [timeline] = report.timelines
    assert timeline.coverage["violence"].share == pytest.approx(0.5)
    # read as now measured, the same numbers show no violence at all
    now = scores_from_probabilities(categories, scan.times, probs)
    assert not now.shown[:, 0].any()


def test_the_same_prompts_in_another_order_measure_the_same() -> None:
    background = Category("background", ("people talking", "a landscape"), null=True)
    shuffled = Category("background", ("a landscape", "people talking"), null=True)
    fight = Category("violence", ("a fight", "a shooting"))
    fought = Category("violence", ("a shooting", "a fight"))
    from policy_engine.analysis.scoring import measurement_key

    assert measurement_key(fight, [fight, background]) == measurement_key(
        fought, [fought, shuffled]
    )
    rng = np.random.default_rng(5)
    images = rng.standard_normal((40, 8)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    text = {p: v / np.linalg.norm(v) for p, v in zip(
        ["a fight", "a shooting", "people talking", "a landscape"],
        rng.standard_normal((4, 8)).astype(np.float32), strict=True)}  # fmt: skip
    from policy_engine.analysis.scoring import flatten_prompts, score_frames

    def scored(categories: list[Category]) -> np.ndarray:
        prompts, _ = flatten_prompts(categories)
        embedded = np.stack([text[p] for p in prompts])
        return score_frames(categories, np.arange(40.0), images, embedded, 100.0).probabilities

    assert np.allclose(scored([fight, background])[:, 0], scored([fought, shuffled])[:, 0])


def test_a_null_lane_never_takes_the_name_of_a_category_beside_it() -> None:
    with_null = [Category("v", ("a fight",)), Category("background", ("x",), null=True)]
    without = [Category("background", ("a landscape",))]  # a real category of that name
    probs_a = np.array([[0.9, 0.1], [0.1, 0.9]], np.float32)
    probs_b = np.array([[0.2], [0.8]], np.float32)
    combined = combine_scores([
        ("a", scores_from_probabilities(with_null, np.arange(2.0), probs_a)),
        ("b", scores_from_probabilities(without, np.arange(2.0), probs_b)),
    ])  # fmt: skip
    assert combined.scores.category_names == ["v", "background", "background (null)"]
    assert combined.scores.shown.tolist() == [[True, False, False], [False, True, False]]


def test_a_verdict_measured_anew_says_so() -> None:
    from datetime import UTC, datetime

    from policy_engine.pipeline.judging import explain_change
    from policy_engine.store import CurrentDecision

    ruleset = parse_ruleset(LEGACY_RULES, "house.yaml")
    before = CurrentDecision(
        id=1, asset_id=1, scan_id=1, ruleset_name="house", ruleset_version="1",
        ruleset_sha256=ruleset.sha256, schedule="post-watershed", tags=(), review=False,
        warnings=(), fired=("violent",), created_at=datetime.now(UTC), measure=None,
    )  # fmt: skip
    probs = np.tile(np.array([[0.45, 0.25, 0.30]], np.float32), (10, 1))
    scores = scores_from_probabilities(ruleset.categories, np.arange(10.0), probs)
    from policy_engine.analysis.coverage import coverage_from_scores

    after = evaluate(ruleset, coverage_from_scores(scores, start=0, end=10), scores)
    assert after.measure == MEASURE and after.schedule == "unrestricted"
    why = explain_change(before, after, ruleset)
    assert why[0].startswith(f"measured anew ({LEGACY_MEASURE} -> {MEASURE}")
    assert "no longer fires violent" in why
