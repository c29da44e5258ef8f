"""Coverage on hand-built label sequences; every expected number is worked out by hand
in the comments."""

import numpy as np
import pytest

from policy_engine.analysis.coverage import compute_coverage, frame_spans

NAMES = ["violence", "computer", "other"]
V, C, OTHER = 0, 1, 2


def test_regular_samples() -> None:
    # 2 fps over 5 s: samples at 0.0 .. 4.5, each standing for 0.5 s.
    times = np.arange(10) * 0.5
    labels = [OTHER, V, V, V, OTHER, C, C, OTHER, V, OTHER]
    cov = compute_coverage(times, labels, NAMES, start=0.0, end=5.0, interval_seconds=2.0)
    v = cov["violence"]
    # violence: frames 1-3 (0.5..2.0) and frame 8 (4.0..4.5) -> 1.5 + 0.5 = 2.0 s
    assert v.seconds == pytest.approx(2.0)
    assert v.share == pytest.approx(0.4)
    assert v.first_seen == pytest.approx(0.5)
    assert v.last_seen == pytest.approx(4.5)
    assert v.longest_run == pytest.approx(1.5)
    assert [(s.start, s.end) for s in v.segments] == [(0.5, 2.0), (4.0, 4.5)]
    assert v.frames == 4
    c = cov["computer"]
    assert (c.seconds, c.first_seen, c.longest_run) == pytest.approx((1.0, 2.5, 1.0))
    assert sum(x.share for x in cov.categories.values()) == pytest.approx(1.0)


def test_irregular_times_are_time_weighted() -> None:
    # Keyframe-like samples: 0, 4, 5, 9 in a 12 s video.
    # spans: [0,4) other, [4,5) violence, [5,9) violence, [9,12) computer
    cov = compute_coverage([0, 4, 5, 9], [OTHER, V, V, C], NAMES, start=0, end=12)
    assert cov["violence"].seconds == pytest.approx(5.0)
    assert cov["violence"].share == pytest.approx(5 / 12)
    assert cov["violence"].longest_run == pytest.approx(5.0)  # one merged run 4..9
    assert len(cov["violence"].segments) == 1
    assert cov["computer"].seconds == pytest.approx(3.0)  # last frame runs to the end
    assert cov["other"].seconds == pytest.approx(4.0)


def test_single_frame_video() -> None:
    cov = compute_coverage([0.0], [C], NAMES, start=0.0, end=0.04)
    assert cov["computer"].share == pytest.approx(1.0)
    assert cov["computer"].seconds == pytest.approx(0.04)
    assert cov["violence"].first_seen is None and cov["violence"].longest_run == 0.0
    assert len(cov.intervals) == 1 and cov.intervals[0].label == "computer"
    assert cov.intervals[0].end == pytest.approx(0.04)


def test_first_sample_after_window_start_covers_from_start() -> None:
    # The first decoded frame is at 0.04 s (as in vtest_small.avi): it stands from 0.
    begins, ends = frame_spans(np.array([0.04, 1.0]), 0.0, 2.0)
    assert begins.tolist() == [0.0, 1.0] and ends.tolist() == [1.0, 2.0]


def test_window_clips_spans() -> None:
    # Window [10, 14): a sample at 9.98 (nearest to 10) is clipped to 10.
    cov = compute_coverage([9.98, 11.0, 12.0, 13.0], [V, OTHER, OTHER, V], NAMES, start=10, end=14)
    assert cov.running_time == pytest.approx(4.0)
    assert cov["violence"].seconds == pytest.approx(2.0)
    assert cov["violence"].first_seen == pytest.approx(10.0)


def test_unsorted_input_is_sorted_by_time() -> None:
    a = compute_coverage([0, 1, 2], [V, C, OTHER], NAMES, start=0, end=3)
    b = compute_coverage([2, 0, 1], [OTHER, V, C], NAMES, start=0, end=3)
    assert a.to_dict() == b.to_dict()


def test_dominant_label_per_interval_with_truncated_last_interval() -> None:
    # 25 s, intervals of 10 s: [0,10) [10,20) [20,25).
    # samples: 0 other, 6 violence, 14 computer, 22 violence
    # [0,10): other 6 s, violence 4 s -> other (0.6)
    # [10,20): violence 10..14 (4 s), computer 14..20 (6 s) -> computer (0.6)
    # [20,25): computer 20..22 (2 s), violence 22..25 (3 s) -> violence (0.6)
    cov = compute_coverage(
        [0, 6, 14, 22], [OTHER, V, C, V], NAMES, start=0, end=25, interval_seconds=10
    )
    got = [(i.start, i.end, i.label, round(i.fraction, 3)) for i in cov.intervals]
    assert got == [(0, 10, "other", 0.6), (10, 20, "computer", 0.6), (20, 25, "violence", 0.6)]


def test_interval_tie_goes_to_first_listed_category() -> None:
    cov = compute_coverage([0, 5], [C, V], NAMES, start=0, end=10, interval_seconds=10)
    assert cov.intervals[0].label == "violence"  # 5 s each; violence is listed first


def test_peak_probability_is_reported() -> None:
    probs = np.array([[0.1, 0.2, 0.7], [0.44, 0.1, 0.46], [0.3, 0.6, 0.1]])
    cov = compute_coverage([0, 1, 2], probs.argmax(1), NAMES, start=0, end=3, probabilities=probs)
    # violence never wins a frame, but it came close at 1 s
    assert cov["violence"].frames == 0
    assert cov["violence"].peak_probability == pytest.approx(0.44)
    assert cov["violence"].peak_time == pytest.approx(1.0)


def test_share_does_not_depend_on_sampling_rate() -> None:
    # The same 20 s story (violence 5..12 s) sampled at 1, 2 and 10 fps.
    shares = []
    for fps in (1, 2, 10):
        times = np.arange(0, 20, 1 / fps)
        labels = np.where((times >= 5) & (times < 12), V, OTHER)
        shares.append(compute_coverage(times, labels, NAMES, start=0, end=20)["violence"].share)
    assert shares == pytest.approx([0.35, 0.35, 0.35])


def test_empty_and_invalid_windows() -> None:
    cov = compute_coverage([], [], NAMES, start=0, end=5)
    assert cov["violence"].share == 0 and cov.intervals[0].label is None
    with pytest.raises(ValueError):
        compute_coverage([0], [V], NAMES, start=5, end=1)
    with pytest.raises(ValueError):
        compute_coverage([0, 1], [V], NAMES, start=0, end=2)


def test_a_frame_showing_two_categories_counts_for_both() -> None:
    """Categories are measured apart, so a fight with a gun in it is violence and
    weapons at once; a frame that shows nothing (no null category) holds no interval."""
    from policy_engine.analysis.scoring import NOTHING

    shown = np.array([[True, True], [True, False], [False, False], [False, False]])
    labels = np.array([0, 0, NOTHING, NOTHING])
    cov = compute_coverage(
        [0.0, 1.0, 2.0, 3.0], labels, ["violence", "weapons"], start=0.0, end=4.0,
        interval_seconds=2.0, shown=shown,
    )  # fmt: skip
    assert cov["violence"].share == 0.5 and cov["weapons"].share == 0.25
    assert cov["weapons"].segments[0].end == 1.0
    assert [(i.label, i.fraction) for i in cov.intervals] == [("violence", 1.0), (None, 0.0)]
