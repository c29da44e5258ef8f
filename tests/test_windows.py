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


def test_windows_never_cross_a_cut() -> None:
    """A scene no longer than a window is one window; a longer one gets the fixed windows
    inside it, the last ending at its cut; the spans tile each scene, none crossing."""
    times = [i / 2 for i in range(40)]  # 20 s at 2 fps
    scenes = [(0.0, 3.5), (3.5, 3.5), (3.5, 10.0), (10.0, 20.0)]
    windows = scene_windows(times, scenes, 8)
    assert [(w.start, w.end) for w in windows] == [
        (0.0, 3.5), (3.5, 7.5), (5.5, 9.5), (6.0, 10.0),
        (10.0, 14.0), (12.0, 16.0), (14.0, 18.0), (16.0, 20.0),
    ]  # fmt: skip
    assert [w.span for w in windows] == [
        (0.0, 3.5), (3.5, 6.5), (6.5, 7.75), (7.75, 10.0),
        (10.0, 13.0), (13.0, 15.0), (15.0, 17.0), (17.0, 20.0),
    ]  # fmt: skip
    assert all(len(w.frames) == 8 for w in windows)
    # each window's frames come from its own scene only
    for window in windows:
        assert all(window.start <= times[i] < window.end for i in window.frames)


def test_a_scene_without_a_sampled_frame_has_no_window() -> None:
    """Its time goes to the window before: the spans still tile the whole time."""
    times = [0.0, 0.5, 1.0, 5.0, 5.5]
    windows = scene_windows(times, [(0.0, 1.2), (1.2, 4.9), (4.9, 6.0)], 8)
    assert [(w.start, w.end) for w in windows] == [(0.0, 1.2), (4.9, 6.0)]
    assert [w.span for w in windows] == [(0.0, 4.9), (4.9, 6.0)]


def test_windows_stored_before_spans_were_stored_still_read() -> None:
    """Format 1 (no spans: windows never met a cut) reads as the spans nearer each centre."""
    from policy_engine.analysis.windows import stored_spans, window_scores_to_json

    extents = [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0)]
    old = {"format": 1, "prompts": ["a"], "windows": [[s, e, [0.0]] for s, e in extents]}
    assert stored_spans(old) == [(0.0, 3.0), (3.0, 5.0), (5.0, 8.0)]
    spans = [(0.0, 4.0), (4.0, 6.0), (6.0, 8.0)]
    new = window_scores_to_json({}, ["a"], extents, [[0.0]] * 3, spans)
    assert stored_spans(new) == spans
