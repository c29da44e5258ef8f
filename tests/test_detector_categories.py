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
    assert "knives (detector models/knife.onnx): knife at confidence 60%" in text
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
    assert any("at least one category with prompts" in p for p in problems(only))


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
    stored = detections_to_json({"knife.onnx": {"weights_sha256": "sha256:x"}}, frames())
    ran, again = detections_from_json(stored)
    assert ran == {"knife.onnx"} and again == frames()
    merged = with_detector_columns(scores, [knives], again)
    assert merged.category_names == ["violence", "knives"]
    assert merged.shown[:, 1].tolist() == [False, True, False, False, True]
    assert merged.shown[:, 0].all() and np.array_equal(merged.labels, scores.labels)
    with pytest.raises(ValueError, match="detections for 4 frames"):
        with_detector_columns(scores, [knives], again[:4])
    with pytest.raises(ValueError, match="not null"):
        Category("x", (), null=True, detector=knives.detector)
