"""Real clips from ../shared/media: real codecs, containers, portrait, NTSC, audio, and a
container whose frame rate is wrong. Skipped with a reason where the folder is absent."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from policy_engine.media.framing import Framing
from policy_engine.media.video import FrameSampler, SamplingMode, SamplingSpec, probe

pytestmark = pytest.mark.media

CLIPS = {
    # name: (decoded frames, width, height, has audio)
    "sintel_ffmpegc.mp4": (652, 848, 480, True),
    "bbb_mov_bbb.mp4": (250, 320, 176, True),
    "opencvpy_faces.mp4": (241, 1280, 720, False),
    "opencvpy_slow_traffic_small.mp4": (914, 640, 360, True),
    "laptop_darshithachinta.mp4": (90, 720, 1280, False),
    "explosion_kaboom.mp4": (400, 720, 720, False),
    "vtest_small.avi": (341, 1280, 720, True),
}


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_probe_real_clip(shared_media: Path, name: str) -> None:
    frames, width, height, audio = CLIPS[name]
    info = probe(shared_media / name)
    assert (info.width, info.height, info.has_audio, info.codec) == (width, height, audio, "h264")
    assert info.duration and info.duration > 2


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_every_clip_decodes_completely_with_increasing_times(shared_media: Path, name: str) -> None:
    sampler = FrameSampler(shared_media / name, SamplingSpec(mode=SamplingMode.ALL), size=32)
    times = [f.time for f in sampler]
    assert len(times) == CLIPS[name][0]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[0] >= 0 and times[-1] < sampler.info.duration


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_one_fps_gives_ceil_duration_samples(shared_media: Path, name: str) -> None:
    sampler = FrameSampler(shared_media / name, SamplingSpec(fps=1.0), size=32)
    frames = list(sampler)
    duration = sampler.info.duration
    assert abs(len(frames) - math.ceil(duration)) <= 1
    times = [f.time for f in frames]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert all(0 <= t <= duration for t in times)
    # each sample is the frame nearest its target (within half a frame interval)
    step = 1 / (sampler.summary.measured_fps or 25)
    for k, t in enumerate(times):
        assert abs(t - k) <= step / 2 + 1e-6 or (k == 0 and t == sampler.summary.first_time)


def test_vtest_avi_times_come_from_the_stream_not_the_container_rate(shared_media: Path) -> None:
    """The AVI claims 50 fps; its 341 frames are really ~25 fps over 13.6 s. Times from
    index / 50 would end at 6.8 s; decode-order timestamps would go backwards."""
    path = shared_media / "vtest_small.avi"
    info = probe(path)
    assert info.fps == pytest.approx(50.0)  # what the container claims
    sampler = FrameSampler(path, SamplingSpec(mode=SamplingMode.ALL), size=32)
    times = np.array([f.time for f in sampler])
    assert sampler.summary.timestamps_reordered  # the container's stamps were shuffled
    assert times[-1] == pytest.approx(13.62, abs=0.05)
    assert np.median(np.diff(times)) == pytest.approx(0.04, abs=1e-6)  # 25 fps
    assert sampler.summary.measured_fps == pytest.approx(25.0, abs=0.5)
    at_1fps = [f.time for f in FrameSampler(path, SamplingSpec(fps=1.0), size=32)]
    assert at_1fps[1:] == pytest.approx(list(range(1, 14)), abs=0.021)


def test_portrait_clip_letterboxed_without_cropping(shared_media: Path) -> None:
    sampler = FrameSampler(
        shared_media / "laptop_darshithachinta.mp4", SamplingSpec(fps=1.0), size=224
    )
    first = next(iter(sampler))
    plan = sampler.summary.plans[0]
    assert (plan.scaled_width, plan.scaled_height) == (126, 224)
    pad_columns = first.pixels[0, :, : plan.offsets[0][0]]
    assert (pad_columns == 0).all()  # pad_value default: the sides are padding, not picture


def test_tiles_on_real_wide_clip(shared_media: Path) -> None:
    sampler = FrameSampler(
        shared_media / "sintel_ffmpegc.mp4", SamplingSpec(fps=0.5), size=224, framing=Framing.TILES
    )
    frames = list(sampler)
    assert frames[0].pixels.shape == (2, 224, 224, 3)


def test_keyframe_sampling_on_real_clip(shared_media: Path) -> None:
    sampler = FrameSampler(
        shared_media / "sintel_ffmpegc.mp4", SamplingSpec(mode=SamplingMode.KEYFRAMES), size=32
    )
    frames = list(sampler)
    assert sampler.summary.decoded_frames == len(frames) < 652 / 4
    assert sampler.window_end == pytest.approx(sampler.info.duration)
