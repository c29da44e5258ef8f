"""Windows of video for clip-level models: exactly the model's frame count per window,
picked by presentation time; spans that tile the analysed time once."""

from __future__ import annotations

import pytest

from policy_engine.analysis.windows import fixed_windows, pick_frames, scene_windows

NTSC = 30000 / 1001


def test_a_window_gets_exactly_the_models_count_picked_by_time() -> None:
    times = [i / 2 for i in range(20)]  # 2 frames a second
    assert pick_frames(times, 0.0, 4.0, 8) == tuple(range(8))
    # fewer frames than the model takes: the nearest ones inside the window repeat
    # (the frame at 1.0 s is nearer the last instants, but outside [0, 1))
    assert pick_frames(times, 0.0, 1.0, 8) == (0, 0, 1, 1, 1, 1, 1, 1)
    # more: spread evenly by time, not the first eight
    picked = pick_frames([i / NTSC for i in range(120)], 0.0, 4.0, 8)
    assert len(picked) == 8 and picked[0] < 8 and picked[-1] > 110
    with pytest.raises(ValueError, match="at least one frame"):
        pick_frames(times, 0.0, 1.0, 0)
    with pytest.raises(ValueError, match="no sampled frame"):
        pick_frames(times, 20.0, 21.0, 8)


def test_overlapping_windows_stand_for_spans_that_tile_the_time_once() -> None:
    times = [i / 2 for i in range(20)]
    windows = fixed_windows(times, 10.0, 8, length=4.0, hop=2.0)
    assert [(w.start, w.end) for w in windows] == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert [w.span for w in windows] == [(0, 3), (3, 5), (5, 7), (7, 10)]
    assert all(len(w.frames) == 8 for w in windows)
    assert windows[1].frames == tuple(range(4, 12))


def test_a_video_shorter_than_a_window_is_one_window() -> None:
    (window,) = fixed_windows([0.0, 0.5, 1.0, 1.5, 2.5], 3.0, 8)
    assert (window.start, window.end, window.span) == (0.0, 3.0, (0.0, 3.0))
    assert len(window.frames) == 8


def test_windows_without_a_sampled_frame_are_left_out() -> None:
    times = [0.0, 0.5, 1.0, 1.5, 8.0, 8.5, 9.0, 9.5]  # nothing sampled from 2 s to 8 s
    windows = fixed_windows(times, 10.0, 8, length=2.0, hop=2.0)
    assert [(w.start, w.end) for w in windows] == [(0, 2), (8, 10)]
    assert windows[0].span == (0, 5) and windows[1].span == (5, 10)


def test_one_window_per_scene() -> None:
    times = [i / 2 for i in range(20)]
    windows = scene_windows(times, [(0.0, 3.5), (3.5, 3.5), (3.5, 10.0)], 8)
    assert [(w.start, w.end) for w in windows] == [(0.0, 3.5), (3.5, 10.0)]
    assert [w.span for w in windows] == [(0.0, 3.5), (3.5, 10.0)]  # each its own scene
