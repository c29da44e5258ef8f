"""X-CLIP categories through a real scan (tiny X-CLIP and tiny CLIP built here): windows
scored from the sampled frames, stored, joined as a column, re-evaluated from the store
without the video; a prompt never scored is reported, not passed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from policy_engine.analysis.scenes import SceneSettings
from policy_engine.analysis.windows import fixed_windows
from policy_engine.media.synthetic import write_color_segments
from policy_engine.media.video import SamplingSpec
from policy_engine.models.provider import ModelProvider
from policy_engine.models.tiny import make_tiny_xclip
from policy_engine.pipeline import AnalysisOptions
from policy_engine.pipeline.judging import reevaluate
from policy_engine.pipeline.scan import Scanner
from policy_engine.policy.loader import RuleSetError, parse_ruleset
from policy_engine.store import Store

RULES = """\
ruleset: actions
categories:
  violence: {{prompts: [people fighting]}}
  background: {{prompts: [something else], null: true}}
  punching:
    prompts: [{prompt}]
    model: xclip
rules:
  - id: punching-late
    when: {{category: punching, coverage_above: {threshold}}}
    then: {{schedule: post-watershed}}
"""


def rules(threshold: str = "0%", prompt: str = "a person punching someone"):
    return parse_ruleset(RULES.format(threshold=threshold, prompt=prompt), "actions.yaml")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("actions")
    segments = [(4.0, (200, 30, 30)), (6.0, (30, 30, 200))]
    return write_color_segments(folder / "actions.mp4", segments, size=(320, 180))


@pytest.fixture(scope="module")
def xclip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_xclip(tmp_path_factory.mktemp("models") / "tiny-xclip")


def provider(clip: Path, xclip: Path) -> ModelProvider:
    return ModelProvider(
        str(clip), device="cpu", dtype="fp32", batch_size=8, xclip_model=str(xclip)
    )


def test_xclip_categories_are_scored_per_window_stored_and_reevaluated(
    store: Store, tiny_clip_dir: Path, xclip_dir: Path, video: Path, tmp_path: Path
) -> None:
    clip = tmp_path / "actions.mp4"
    clip.write_bytes(video.read_bytes())
    models = provider(tiny_clip_dir, xclip_dir)
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0))
    reports = tmp_path / "reports"
    outcome = Scanner(store, [rules()], models, options, reports_dir=reports).scan_file(clip)
    assert outcome.status == "scanned", outcome.error
    [(_, decision)] = outcome.decisions
    [scan] = store.completed_scans(scan_ids=[outcome.scan_id])
    stored = store.scan_xclip([scan.id])[scan.id]
    assert stored is not None and stored["identity"]["frames"] == 8
    assert stored["prompts"] == ["a person punching someone", "something else"]
    # the windows the pure function gives for the same frames: 4 s every 2 s
    expected = [(w.start, w.end) for w in fixed_windows(list(scan.times), 10.0, 8)]
    assert [(w[0], w[1]) for w in stored["windows"]] == expected == [
        (0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0)
    ]  # fmt: skip
    assert all(len(w[2]) == 2 for w in stored["windows"])
    # whatever the random weights say, a 0% threshold fires exactly when a window shows it
    logits = np.array([w[2] for w in stored["windows"]])
    shows = bool((1 / (1 + np.exp(logits[:, 1] - logits[:, 0])) > 0.5).any())
    assert (decision.schedule == "post-watershed") == shows
    assert "punching (X-CLIP)" in Path(outcome.report or "").read_text()

    clip.unlink()  # thresholds from the store, not the video
    result = reevaluate(store, [rules(threshold="100%")], None)
    assert not result.problems
    assert all(c.after.schedule == "unrestricted" for c in result.changes)
    new_prompt = reevaluate(store, [rules(prompt="a person falling")], None)
    [(_, problem)] = new_prompt.problems
    assert "X-CLIP did not score its prompts" in problem and "--force" in problem


def test_with_scene_detection_xclip_windows_never_cross_a_cut(
    store: Store, tiny_clip_dir: Path, xclip_dir: Path, video: Path, tmp_path: Path
) -> None:
    """The red-to-blue cut at 4 s: the red scene is one window, the blue one the fixed
    windows inside it; the spans are stored and tile each scene."""
    clip = tmp_path / "actions.mp4"
    clip.write_bytes(video.read_bytes())
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0), scenes=SceneSettings())
    scanner = Scanner(store, [rules()], provider(tiny_clip_dir, xclip_dir), options)
    outcome = scanner.scan_file(clip)
    assert outcome.status == "scanned", outcome.error
    [scan] = store.completed_scans(scan_ids=[outcome.scan_id])
    stored = store.scan_xclip([scan.id])[scan.id]
    assert stored is not None and stored["format"] == 2
    assert [(w[0], w[1]) for w in stored["windows"]] == [(0.0, 4.0), (4.0, 8.0), (6.0, 10.0)]
    assert [tuple(w[3]) for w in stored["windows"]] == [(0.0, 4.0), (4.0, 7.0), (7.0, 10.0)]


def test_a_long_fade_to_black_cut_late_by_the_threshold_detector_scans(
    store: Store, tiny_clip_dir: Path, xclip_dir: Path, tmp_path: Path
) -> None:
    """PySceneDetect's threshold detector cuts a 15 s black stretch at its middle (13.5 s,
    off the 2 s grid of windows) once it ends, 7.5 s after the cut: the scan completes
    and the spans tile the time (tests/test_xclip_windows.py holds the cases where such
    a cut once asked for a picture already let go)."""
    clip = write_color_segments(
        tmp_path / "fade.mp4",
        [(6.0, (200, 200, 200)), (15.0, (0, 0, 0)), (5.0, (200, 200, 200))],
        size=(160, 90),
    )
    scenes = SceneSettings(detector="threshold")
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0), scenes=scenes)
    scanner = Scanner(store, [rules()], provider(tiny_clip_dir, xclip_dir), options)
    outcome = scanner.scan_file(clip)
    assert outcome.status == "scanned", outcome.error
    [scan] = store.completed_scans(scan_ids=[outcome.scan_id])
    stored = store.scan_xclip([scan.id])[scan.id]
    assert stored is not None
    spans = [tuple(w[3]) for w in stored["windows"]]
    assert spans[0][0] == 0.0 and spans[-1][1] == 26.0
    assert all(a[1] == b[0] and a[1] > a[0] for a, b in zip(spans, spans[1:]))


def test_xclip_category_mistakes_are_named() -> None:
    text = RULES.format(threshold="5%", prompt="x").replace("model: xclip", "model: xlcip")
    with pytest.raises(RuleSetError, match="did you mean 'xclip'"):
        parse_ruleset(text, "actions.yaml")
    ruleset = rules()
    assert [c.name for c in ruleset.xclip] == ["punching"]
    assert ruleset.category("punching").model == "xclip"


def test_one_rule_over_clip_xclip_and_detector_categories_is_reevaluated_from_the_store(
    store: Store, tiny_clip_dir: Path, xclip_dir: Path, tmp_path: Path
) -> None:
    """A rule reading all three kinds, the detector's the one over its threshold: scanned
    once, then re-evaluated with the video gone and no model loaded."""
    pytest.importorskip("onnxruntime", reason="the `detectors` extra is not installed")
    pytest.importorskip("onnx", reason="the `test` extra (onnx) is not installed")
    from tiny_detector import tiny_detector

    knife = tiny_detector(tmp_path / "knife.onnx")
    text = """\
ruleset: mixed
categories:
  violence: {{prompts: [people fighting]}}
  background: {{prompts: [something else], null: true}}
  punching: {{prompts: [a person punching someone], model: xclip}}
  knives:
    detector: {{model: {knife}, classes: [knife], model_classes: [knife, person]}}
rules:
  - id: any-of-three
    when:
      any:
        - {{category: violence, coverage_above: 100%}}
        - {{category: punching, coverage_above: 100%}}
        - {{category: knives, coverage_above: {t}}}
    then: {{schedule: post-watershed}}
"""
    clip = write_color_segments(  # black, then white: the tiny knife is sure on white
        tmp_path / "mixed.mp4", [(4.0, (0, 0, 0)), (6.0, (255, 255, 255))], size=(320, 180)
    )
    models = provider(tiny_clip_dir, xclip_dir)
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0))
    first = parse_ruleset(text.format(knife=knife, t="50%"), "mixed.yaml")
    outcome = Scanner(store, [first], models, options).scan_file(clip)
    assert outcome.status == "scanned", outcome.error
    [(_, decision)] = outcome.decisions
    assert decision.schedule == "post-watershed"
    measured = {m.category: m.measured for r in decision.reasons for m in r.measurements}
    assert measured["knives"] == pytest.approx(0.6)  # the white 6 s of 10
    assert 0.0 <= measured["punching"] <= 1.0  # X-CLIP's column, joined
    assert store.scan_xclip([outcome.scan_id])[outcome.scan_id] is not None
    clip.unlink()
    result = reevaluate(store, [parse_ruleset(text.format(knife=knife, t="70%"), "m.yaml")], None)
    assert not result.problems
    [change] = result.changes
    assert change.after.schedule == "unrestricted"


def test_x_clip_needs_its_model_and_fps_sampling_and_says_so(
    store: Store, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    from policy_engine.errors import ConfigError, ModelError
    from policy_engine.media.video import SamplingMode

    missing = provider(tiny_clip_dir, tmp_path / "no-xclip")
    options = AnalysisOptions(sampling=SamplingSpec(fps=2.0))
    with pytest.raises(ModelError, match="X-CLIP model .* not available .*xclip_model"):
        Scanner(store, [rules()], missing, options)
    stills = AnalysisOptions(sampling=SamplingSpec(mode=SamplingMode.KEYFRAMES))
    with pytest.raises(ConfigError, match="need fps sampling"):
        Scanner(store, [rules()], missing, stills)
