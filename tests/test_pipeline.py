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


def test_decoder_errors_surface_in_the_callers_thread(
    colour_video: Path, embedder: ClipEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(self, frame):  # noqa: ANN001
        raise MediaError(colour_video, "decoding failed after 3 frames (simulated)")

    monkeypatch.setattr("policy_engine.media.video.FrameSampler._convert", explode)
    with pytest.raises(MediaError, match="simulated"):
        analyze_video(colour_video, CATS, embedder)
