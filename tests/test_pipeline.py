"""End to end: a generated video through the tiny model to coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from policy_engine.analysis.scoring import Category
from policy_engine.errors import MediaError
from policy_engine.media.video import SamplingMode, SamplingSpec
from policy_engine.models.clip import ClipEmbedder
from policy_engine.pipeline import AnalysisOptions, analyze_video

CATS = [
    Category("reddish", ("a red picture",)),
    Category("other", ("something else",), null=True),
]


@pytest.fixture(scope="module")
def embedder(tiny_clip_dir: Path) -> ClipEmbedder:
    return ClipEmbedder.load(str(tiny_clip_dir), device="cpu", dtype="fp32", batch_size=8)


def test_analyze_video_end_to_end(colour_video: Path, embedder: ClipEmbedder) -> None:
    seen: list[tuple[float, float]] = []
    result = analyze_video(
        colour_video, CATS, embedder, progress=lambda done, total: seen.append((done, total))
    )
    assert len(result.times) == 20 and result.scores.probabilities.shape == (20, 2)
    assert result.coverage.running_time == pytest.approx(10.0)
    shares = [c.share for c in result.coverage.categories.values()]
    assert sum(shares) == pytest.approx(1.0)
    assert result.model.weights_sha256.startswith("sha256:")
    assert seen[-1] == (pytest.approx(10.0), pytest.approx(10.0))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))  # progress never goes back
    data = result.to_dict(frames=True)
    assert data["model"]["device_used"] == "cpu" and len(data["frames"]) == 20


def test_labels_follow_content(colour_video: Path, embedder: ClipEmbedder) -> None:
    # With random weights labels mean nothing, but identical pictures get identical
    # scores: the three colour segments must give three constant label runs.
    result = analyze_video(colour_video, CATS, embedder)
    probs = result.scores.probabilities
    for lo, hi in ((0, 6), (6, 14), (14, 20)):
        assert np.allclose(probs[lo:hi], probs[lo], atol=1e-4)
    assert not np.allclose(probs[0], probs[10], atol=1e-3)


def test_every_frame_and_2fps_agree_on_coverage(colour_video: Path, embedder) -> None:
    fps2 = analyze_video(colour_video, CATS, embedder)
    every = analyze_video(
        colour_video, CATS, embedder, AnalysisOptions(sampling=SamplingSpec(mode=SamplingMode.ALL))
    )
    assert len(every.times) == 250
    for name in ("reddish", "other"):
        assert every.coverage[name].share == pytest.approx(fps2.coverage[name].share, abs=0.03)


def test_bad_file_raises_media_error(tmp_path: Path, embedder: ClipEmbedder) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 300)
    with pytest.raises(MediaError):
        analyze_video(path, CATS, embedder)


def test_a_bad_file_leaves_no_photosensitivity_thread_behind(
    tmp_path: Path, colour_video: Path, embedder: ClipEmbedder
) -> None:
    """A nightly worker meets thousands of files: one that cannot be opened must not
    leave the every-frame check's thread waiting for pictures that never come."""
    import threading

    from policy_engine.analysis.photosensitivity import PseSettings

    def taps() -> int:
        return sum(t.name == "policy-engine-tap" for t in threading.enumerate())

    before = taps()
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 300)
    options = AnalysisOptions(photosensitivity=PseSettings())
    for _ in range(3):
        with pytest.raises(MediaError):
            analyze_video(path, CATS, embedder, options)
    result = analyze_video(colour_video, CATS, embedder, options)  # and a good one after
    assert result.photosensitivity is not None
    assert taps() == before


def test_decoder_errors_surface_in_the_callers_thread(
    colour_video: Path, embedder: ClipEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(self, frame):  # noqa: ANN001
        raise MediaError(colour_video, "decoding failed after 3 frames (simulated)")

    monkeypatch.setattr("policy_engine.media.video.FrameSampler._convert", explode)
    with pytest.raises(MediaError, match="simulated"):
        analyze_video(colour_video, CATS, embedder)


def test_rescoring_from_embeddings_equals_a_fresh_analysis(
    colour_video: Path, embedder: ClipEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from policy_engine.pipeline import rescore

    other = [
        Category("bluish", ("a blue picture", "the sea")),
        Category("greenish", ("a green field",)),
        Category("rest", ("something else",), null=True),
    ]
    first = analyze_video(colour_video, CATS, embedder)
    fresh = analyze_video(colour_video, other, embedder)

    def no_decoding(*_args, **_kwargs):
        raise AssertionError("rescoring must not decode or run the image tower")

    monkeypatch.setattr("policy_engine.media.video.FrameSampler.__iter__", no_decoding)
    monkeypatch.setattr(embedder, "embed_images", no_decoding)
    scores, coverage = rescore(first, other, embedder)
    assert np.allclose(scores.probabilities, fresh.scores.probabilities, atol=1e-6)
    assert coverage.to_dict() == fresh.coverage.to_dict()


def test_decide_judges_each_rule_set_on_its_own_categories(
    colour_video: Path, embedder: ClipEmbedder
) -> None:
    from policy_engine.pipeline import decide
    from policy_engine.policy.loader import parse_ruleset

    def ruleset(name: str, category: str) -> object:
        return parse_ruleset(
            f"ruleset: {name}\ncategories:\n  {category}: {{prompts: [a red picture]}}\n"
            "  rest: {prompts: [something else], null: true}\nrules:\n"
            f"  - id: r\n    when: {{not: {{category: {category}, coverage_above: 100%}}}}\n"
            "    then: {tag: Seen}\n"
        )

    result = analyze_video(colour_video, CATS, embedder)
    a, b = decide(result, [ruleset("a", "reddish"), ruleset("b", "crimson")], embedder)
    assert (a.ruleset, b.ruleset) == ("a", "b")
    assert a.reasons[0].measurements[0].category == "reddish"
    assert b.reasons[0].measurements[0].category == "crimson"
