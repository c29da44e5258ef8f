"""Detector categories in rule files, and their numbers from stored detections. Pure: no
model runs here (tests/test_detector_scan.py scans with one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from policy_engine.analysis.detections import (
    NUDENET,
    NUDENET_EXPOSED,
    Detection,
    DetectorSpec,
    category_column,
    detections_from_json,
    detections_to_json,
    with_detector_columns,
)
from policy_engine.analysis.scoring import Category, scores_from_probabilities
from policy_engine.policy.explain import explain
from policy_engine.policy.loader import RuleSetError, parse_ruleset

RULES = """\
ruleset: detectors
categories:
  violence: {prompts: [people fighting]}
  background: {prompts: [something else], null: true}
  nudity:
    detector: {model: nudenet-320n}
  knives:
    detector:
      model: models/knife.onnx
      classes: [knife]
      min_confidence: 60%
      min_area: 1%
rules:
  - id: nudity-not-before-watershed
    when: {category: nudity, seconds_above: 0}
    then: {schedule: post-watershed}
  - id: knives
    when: {category: knives, coverage_above: 5%}
    then: {tag: Weapons}
tests:
  - name: a knife for a tenth of the time is tagged
    duration: 60
    coverage: {knives: 10%}
    expect: {tags: [Weapons]}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RuleSetError) as caught:
        parse_ruleset(text, "/rules/r.yaml")
    return [str(p) for p in caught.value.problems]


def test_detector_categories_load_beside_clips() -> None:
    rs = parse_ruleset(RULES, "/rules/r.yaml")
    assert [c.name for c in rs.categories] == ["violence", "background"]
    nudity, knives = rs.detectors
    assert nudity.detector == DetectorSpec(NUDENET, NUDENET_EXPOSED, hide=True)
    assert knives.detector is not None
    assert knives.detector.classes == ("knife",) and not knives.detector.hide
    assert knives.detector.min_confidence == pytest.approx(0.6)
    assert knives.detector.min_area == pytest.approx(0.01)
    assert knives.detector.model_path == str(Path("/rules/models/knife.onnx"))
    assert rs.category("knives") is knives
    text = explain(rs)
    assert "knives (detector /rules/models/knife.onnx): knife at confidence 60%" in text
    assert "pixelated in every picture shown" in text


def test_detector_category_mistakes_are_named_with_their_line() -> None:
    both = RULES.replace(
        "detector: {model: nudenet-320n}", "detector: {model: nudenet-320n}\n    prompts: [x]"
    )
    assert any(":6:" in p and "not both" in p for p in problems(both))
    unknown_class = RULES.replace(
        "detector: {model: nudenet-320n}", "detector: {model: nudenet-320n, classes: [BREASTS]}"
    )
    (found,) = [p for p in problems(unknown_class) if "BREASTS" in p]
    assert ":6:" in found and "FEMALE_BREAST_EXPOSED" in found
    weak = RULES.replace("min_confidence: 60%", "min_confidence: 10%")
    assert any(":11:" in p and "min_confidence" in p for p in problems(weak))
    typo = RULES.replace("min_area: 1%", "min_aera: 1%")
    assert any(":12:" in p and "did you mean 'min_area'" in p for p in problems(typo))
    only = "ruleset: x\ncategories:\n  n: {detector: {model: nudenet-320n}}\nrules: []\n"
    assert any("at least one CLIP category with prompts" in p for p in problems(only))


def frames() -> list[list[Detection]]:
    knife = Detection("knife.onnx", "knife", 0.9, (0.1, 0.1, 0.3, 0.3))  # 4% of the picture
    speck = Detection("knife.onnx", "knife", 0.95, (0.5, 0.5, 0.52, 0.52))
    weak = Detection("knife.onnx", "knife", 0.4, (0.1, 0.1, 0.5, 0.5))
    other = Detection("other.onnx", "knife", 0.99, (0.0, 0.0, 1.0, 1.0))
    return [[], [knife], [speck], [weak, other], [knife, speck]]


def test_a_frame_counts_by_its_best_qualifying_detection() -> None:
    spec = DetectorSpec("knife.onnx", ("knife",), min_confidence=0.5, min_area=0.01)
    np.testing.assert_allclose(category_column(frames(), spec), [0, 0.9, 0, 0.4, 0.9], atol=1e-6)
    loose = DetectorSpec("knife.onnx", ("knife",), min_confidence=0.3)
    np.testing.assert_allclose(
        category_column(frames(), loose), [0, 0.9, 0.95, 0.4, 0.95], atol=1e-6
    )


def test_detector_columns_join_clips_and_survive_the_store() -> None:
    clip = Category("violence", ("people fighting",))
    times = np.arange(5, dtype=np.float64)
    scores = scores_from_probabilities([clip], times, np.full((5, 1), 0.7))
    knives = Category("knives", (), detector=DetectorSpec("knife.onnx", ("knife",), min_area=0.01))
    identities = {"knife.onnx": {"classes": ["knife", "fork"]}, "other.onnx": {}}
    stored = detections_to_json(identities, frames())
    ran, again = detections_from_json(stored)
    assert ran == {"knife.onnx", "other.onnx"} and again == frames()
    assert stored["models"][0]["classes"] == ["knife", "fork"]
    assert stored["frames"][1] == [[0, 0, 0.9, 0.1, 0.1, 0.3, 0.3]]  # indexes, not names
    merged = with_detector_columns(scores, [knives], again)
    assert merged.category_names == ["violence", "knives"]
    assert merged.shown[:, 1].tolist() == [False, True, False, False, True]
    assert merged.shown[:, 0].all()
    # read as a whole: the detector's frames may take the dominant label where it is surer
    assert merged.label_names() == ["violence", "knives", "violence", "violence", "knives"]
    with pytest.raises(ValueError, match="detections for 4 frames"):
        with_detector_columns(scores, [knives], again[:4])
    with pytest.raises(ValueError, match="not null"):
        Category("x", (), null=True, detector=knives.detector)


DISAGREEING = """\
ruleset: second-opinions
review_on_disagreement: {review}
categories:
  sexual_content: {{prompts: [explicit sexual content]}}
  background: {{prompts: [something else], null: true}}
  nudity:
    detector: {{model: nudenet-320n, second_opinion_for: {opinion}}}
rules:
  - id: sexual-content-late
    when: {{category: sexual_content, coverage_above: 10%}}
    then: {{schedule: post-watershed}}
"""


def coverage_of(times: list[float], clip: list[bool], detector: list[bool]):
    """Coverage of 1 s frames where CLIP shows sexual content and the detector nudity."""
    from policy_engine.analysis.coverage import coverage_from_scores

    categories = [
        Category("sexual_content", ("explicit sexual content",)),
        Category("background", ("something else",), null=True),
        Category("nudity", (), detector=DetectorSpec(NUDENET, NUDENET_EXPOSED)),
    ]
    probs = np.array(
        [[0.9 if c else 0.1, 0.0, 0.8 if d else 0.0] for c, d in zip(clip, detector, strict=True)]
    )
    scores = scores_from_probabilities(categories, np.array(times), probs)
    return coverage_from_scores(scores, start=0.0, end=len(times), interval_seconds=10.0)


def test_clip_and_its_second_opinion_disagreeing_far_requires_review_saying_where() -> None:
    from policy_engine.policy.evaluate import evaluate

    rs = parse_ruleset(DISAGREEING.format(review="true", opinion="sexual_content"), "s.yaml")
    times = [float(t) for t in range(20)]
    clip = [5 <= t < 9 for t in range(20)]  # 20% of the running time
    decision = evaluate(rs, coverage_of(times, clip, [False] * 20))
    assert decision.fired == ["sexual-content-late"] and decision.review
    [warning] = decision.warnings
    assert "CLIP (sexual_content) and the detector nudenet-320n (nudity) disagree" in warning
    assert (
        "20% against 0%" in warning
        and "CLIP alone (sexual_content) at 00:00:05-00:00:09" in warning
    )
    # both see it: no dispute
    agreeing = evaluate(rs, coverage_of(times, clip, clip))
    assert not agreeing.review and not agreeing.warnings
    # the detector a little under the threshold is not far below: no dispute either
    some = [6 <= t < 8 for t in range(20)]  # 10%: not above, but not under 2.5%
    assert not evaluate(rs, coverage_of(times, clip, some)).review
    # the other way: the detector sees it, CLIP does not, so the rule did not fire
    missed = evaluate(rs, coverage_of(times, [False] * 20, clip))
    assert missed.fired == [] and missed.review
    assert "0% against 20%" in missed.warnings[0]
    assert "the detector alone (nudity) at 00:00:05-00:00:09" in missed.warnings[0]
    # off unless the rule set asks for it
    off = parse_ruleset(DISAGREEING.format(review="false", opinion="sexual_content"), "s.yaml")
    assert not evaluate(off, coverage_of(times, clip, [False] * 20)).review


def test_a_second_opinion_must_name_a_category_with_prompts() -> None:
    found = problems(DISAGREEING.format(review="true", opinion="sexual_contnet"))
    [problem] = found
    assert ":7:" in problem and "did you mean 'sexual_content'" in problem
    nothing = DISAGREEING.format(review="true", opinion='""')
    [problem] = problems(nothing)
    assert ":2:" in problem and "needs a second opinion" in problem


def test_a_separate_tests_file_names_detector_categories(tmp_path: Path) -> None:
    from policy_engine.policy.loader import load_ruleset

    rules = tmp_path / "r.yaml"
    rules.write_text(RULES.split("tests:")[0])
    (tmp_path / "r.tests.yaml").write_text(
        "tests:\n  - name: knives tagged\n    duration: 60\n"
        "    coverage: {knives: 10%}\n    expect: {tags: [Weapons]}\n"
    )
    ruleset = load_ruleset(rules)
    assert [t.name for t in ruleset.tests] == ["knives tagged"]
