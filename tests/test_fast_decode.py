"""Fast decoding (skip_frame=NONREF): fewer frames decoded, each sample at most a frame or
two from its target and the distance recorded; never with the checks that need every
frame; exact decoding stays the default and keeps its reuse key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policy_engine.api import analysis_options
from policy_engine.cli import app
from policy_engine.config import Settings
from policy_engine.errors import ConfigError
from policy_engine.media.synthetic import write_moving_pattern
from policy_engine.media.taps import PictureTap
from policy_engine.media.video import FrameSampler, SamplingMode, SamplingSpec
from policy_engine.pipeline.scan import sampling_record

FPS = 25


@pytest.fixture(scope="module")
def b_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """x264's veryfast preset: B-frames, some of them never referenced."""
    path = tmp_path_factory.mktemp("videos") / "moving.mp4"
    return write_moving_pattern(path, seconds=4.0, size=(320, 180), fps=FPS)


def sample(path: Path, spec: SamplingSpec) -> FrameSampler:
    sampler = FrameSampler(path, spec, size=32)
    assert len(list(sampler)) == 8  # 2 fps over 4 s either way
    return sampler


def test_fast_decoding_skips_frames_and_records_how_far_samples_moved(b_frames: Path) -> None:
    exact = sample(b_frames, SamplingSpec(fps=2.0)).summary
    fast = sample(b_frames, SamplingSpec(fps=2.0, fast_decode=True)).summary
    assert exact.decoded_frames == 4 * FPS and not exact.nonref_skipped
    assert fast.nonref_skipped and fast.decoded_frames < exact.decoded_frames
    assert exact.largest_offset <= 0.5 / FPS + 1e-9  # the nearest frame, always
    assert exact.largest_offset < fast.largest_offset <= 3 / FPS + 1e-9


def test_checks_on_every_frame_refuse_fast_decoding(b_frames: Path, tmp_path: Path) -> None:
    tap = PictureTap(lambda time, picture: None, 16)
    spec = SamplingSpec(fps=2.0, fast_decode=True)
    with pytest.raises(ValueError, match="every-frame checks"):
        list(FrameSampler(b_frames, spec, size=32, every_frame=tap))
    with pytest.raises(ValueError, match="needs every frame"):
        SamplingSpec(mode=SamplingMode.ALL, fast_decode=True)
    with pytest.raises(ConfigError, match="photosensitivity check and scene detection.*--no-pse"):
        analysis_options(Settings(fast_decode=True))
    with pytest.raises(ConfigError, match="frames that scene detection must see"):
        analysis_options(Settings(fast_decode=True, pse=False))
    options = analysis_options(Settings(fast_decode=True, pse=False, scenes=False))
    assert options.sampling.fast_decode


def test_a_fast_scan_is_not_reused_as_an_exact_one_and_exact_keys_are_unchanged() -> None:
    exact, exact_key = sampling_record(analysis_options(Settings(pse=False, scenes=False)))
    fast, fast_key = sampling_record(
        analysis_options(Settings(fast_decode=True, pse=False, scenes=False))
    )
    assert fast_key != exact_key
    assert "decode" not in exact and fast["decode"] == "fast (skip_frame=NONREF)"


def test_analyze_fast_decode_from_the_command_line(
    b_frames: Path, tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLICY_ENGINE_SCENES", "false")
    args = ["analyze", str(b_frames), "--model", str(tiny_clip_dir), "--device", "cpu", "--json"]
    result = CliRunner().invoke(app, [*args, "--fast-decode", "--no-pse"])
    assert result.exit_code == 0, result.stderr
    decoding = json.loads(result.stdout)["decoding"]
    assert decoding["skip_frame"] == "NONREF" and decoding["decoded_frames"] < 4 * FPS
    assert 0 < decoding["largest_offset_s"] <= 3 / FPS + 1e-6
    refused = CliRunner().invoke(app, [*args, "--fast-decode"])
    assert refused.exit_code == 2 and "--no-pse" in refused.stderr
