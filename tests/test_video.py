"""Sampling by presentation time and bad input, on generated videos."""

from __future__ import annotations

import math
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from policy_engine.errors import MediaError
from policy_engine.media.framing import Framing
from policy_engine.media.synthetic import write_color_segments
from policy_engine.media.video import FrameSampler, SamplingMode, SamplingSpec, probe


def _sample(path: Path, **spec: object) -> tuple[FrameSampler, list]:
    sampler = FrameSampler(path, SamplingSpec(**spec), size=32)  # type: ignore[arg-type]
    return sampler, list(sampler)


def test_probe(colour_video: Path) -> None:
    info = probe(colour_video)
    assert (info.width, info.height, info.codec) == (320, 180, "h264")
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(10.0, abs=0.1)
    assert not info.has_audio and info.rotation == 0


def test_two_fps_samples_every_half_second(colour_video: Path) -> None:
    sampler, frames = _sample(colour_video, fps=2.0)
    times = [f.time for f in frames]
    assert times == pytest.approx([i * 0.5 for i in range(20)], abs=0.021)
    assert sampler.summary.decoded_frames == 250
    assert sampler.window_end == pytest.approx(10.0)
    assert frames[0].pixels.shape == (1, 32, 32, 3)


def test_sampled_pixels_show_the_right_content(colour_video: Path) -> None:
    _, frames = _sample(colour_video, fps=1.0)
    centre = [f.pixels[0, 16, 16] for f in frames]  # letterbox: the centre is picture
    dominant = ["rgb"[int(np.argmax(c))] for c in centre]
    assert dominant == list("rrrggggbbb")


def test_every_frame_and_keyframes(colour_video: Path) -> None:
    _, every = _sample(colour_video, mode=SamplingMode.ALL)
    assert len(every) == 250
    assert all(b.time > a.time for a, b in zip(every, every[1:]))
    sampler, keys = _sample(colour_video, mode=SamplingMode.KEYFRAMES)
    assert 1 <= len(keys) < 250
    assert sampler.summary.decoded_frames == len(keys)  # only keyframes were decoded
    assert sampler.summary.measured_fps is None  # keyframe spacing is no frame rate
    assert sampler.window_end == pytest.approx(10.0, abs=0.1)


def test_window_and_max_frames(colour_video: Path) -> None:
    sampler, frames = _sample(colour_video, fps=2.0, start=3.0, end=7.0)
    assert [f.time for f in frames] == pytest.approx([3 + i * 0.5 for i in range(8)], abs=0.021)
    assert sampler.window_end == pytest.approx(7.0)
    _, capped = _sample(colour_video, fps=25.0, max_frames=5)
    # max_frames spreads samples over the whole video, it does not cut the end off
    assert len(capped) == 5 and capped[-1].time == pytest.approx(8.0, abs=0.05)
    _, capped_all = _sample(colour_video, mode=SamplingMode.ALL, max_frames=4)
    assert [f.time for f in capped_all] == pytest.approx([0, 2.5, 5.0, 7.5], abs=0.05)


def test_fps_above_the_frame_rate_does_not_repeat_frames(colour_video: Path) -> None:
    _, frames = _sample(colour_video, fps=100.0)
    times = [f.time for f in frames]
    assert len(times) == len(set(times)) == 250


def test_variable_frame_rate_uses_timestamps(tmp_path: Path) -> None:
    # Frames at 0, 0.1, 0.2, then a 2 s hold, then 2.3, 2.4 (time base 1/1000).
    path = tmp_path / "vfr.mkv"
    stamps = [0, 100, 200, 2200, 2300, 2400]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, ms in enumerate(stamps):
            frame = av.VideoFrame.from_ndarray(
                np.full((64, 64, 3), i * 40, np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    _, frames = _sample(path, mode=SamplingMode.ALL)
    assert [round(f.time, 3) for f in frames] == [s / 1000 for s in stamps]
    _, at_2fps = _sample(path, fps=2.0)
    # targets 0, .5, 1, 1.5, 2: nearest are 0.2 (for .5), 0.2 again (skipped), 2.2, ...
    assert [round(f.time, 3) for f in at_2fps][:3] == [0.0, 0.2, 2.2]


def test_display_rotation_is_honoured(tmp_path: Path) -> None:
    # Coded 64x32 (landscape) with a 90-degree display matrix: shown as 32x64 portrait.
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)
        for i in range(10):
            picture = np.zeros((32, 64, 3), np.uint8)
            picture[:, :32] = 255  # left half of the coded picture is white
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    info = probe(path)
    assert info.rotation == 90 and info.display_size == (32, 64)
    sampler, frames = _sample(path, fps=1.0)
    plan = sampler.summary.plans[0]
    assert plan.quarter_turns == 1 and plan.offsets == ((8, 0),)  # portrait in the square
    square = frames[0].pixels[0]
    # 90 degrees counter-clockwise: the coded left half becomes the bottom half
    assert square[24, 16].mean() > 200 and square[8, 16].mean() < 50


# -- bad input --------------------------------------------------------------------------


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(MediaError, match="empty"):
        probe(path)


def test_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is a text file with a video extension\n" * 50)
    with pytest.raises(MediaError, match="not a readable video"):
        probe(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="folder"):
        probe(tmp_path)


def test_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 44100, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(MediaError, match="no video stream .*audio"):
        probe(path)


def test_truncated_file(colour_video: Path, tmp_path: Path) -> None:
    data = colour_video.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError) as caught:
        list(FrameSampler(path, SamplingSpec(fps=2.0), size=32))
    assert any(w in caught.value.reason for w in ("truncated", "not a readable", "corrupt"))


def test_truncated_stream_with_header_intact(tmp_path: Path) -> None:
    # An MKV cut short keeps its header; decoding stops early: reported as truncated.
    full = write_color_segments(tmp_path / "full.mkv", [(8.0, (200, 0, 0))], size=(64, 64))
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 2 // 5])
    with pytest.raises(MediaError, match="truncated|corrupt"):
        list(FrameSampler(cut, SamplingSpec(fps=2.0), size=32))


def test_unreadable_file(
    colour_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.mp4"
    shutil.copy(colour_video, path)
    path.chmod(0)
    # root reads anything: make the permission check see what a service account would
    monkeypatch.setattr("policy_engine.media.probe.os.access", lambda *_: False)
    with pytest.raises(MediaError, match="permission denied"):
        probe(path)


@pytest.mark.parametrize(
    "name", ["<script>alert(1)<script>.mp4", "trailer with spaces ü€.mp4", "-rf.mp4", "a;b|c.mp4"]
)
def test_odd_file_names(colour_video: Path, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    shutil.copy(colour_video, path)
    sampler, frames = _sample(path, fps=1.0)
    assert len(frames) == math.ceil(sampler.window_end)


def test_tiles_framing_gives_two_crops_for_wide_video(colour_video: Path) -> None:
    sampler = FrameSampler(colour_video, SamplingSpec(fps=1.0), size=32, framing=Framing.TILES)
    frames = list(sampler)
    assert frames[0].pixels.shape == (2, 32, 32, 3)


def test_sampling_spec_validation() -> None:
    with pytest.raises(ValueError):
        SamplingSpec(fps=0)
    with pytest.raises(ValueError):
        SamplingSpec(start=5, end=2)
    with pytest.raises(ValueError):
        SamplingSpec(max_frames=0)
