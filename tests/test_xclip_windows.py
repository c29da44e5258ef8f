"""X-CLIP's windows scored as frames arrive (with a stand-in scorer): exactly the windows
of fixed_windows over the same frames, whatever the start, or of scene_windows where cuts
are reported (late, as a detector does); scored before the end; only the pictures a
window to come can use kept."""

from __future__ import annotations

import numpy as np
import pytest

from policy_engine.analysis.windows import fixed_windows, scene_windows
from policy_engine.pipeline.xclip_windows import XClipRun


class Scorer:
    """Counts calls; each window's logits are its frames' picture ids (sum, max)."""

    frames_per_window = 8

    def __init__(self) -> None:
        self.calls = 0

    def pixels(self, windows):  # type: ignore[no-untyped-def]
        return [[int(p[0, 0, 0]) for p in w] for w in windows]

    def logits(self, pixels, prompts):  # type: ignore[no-untyped-def]
        self.calls += 1
        return np.array([[sum(w), max(w)] for w in pixels], dtype=np.float32)


def run(  # type: ignore[no-untyped-def]
    times: list[float],
    end: float,
    start: float = 0.0,
    cuts: dict[int, list[float]] | None = None,
    cut_lag: float = 0.0,
):
    """Feed the frames (with the cuts reported at each frame's index), then finish."""
    scorer = Scorer()
    xclip = XClipRun(scorer, ("a", "b"), start=start, cut_lag=cut_lag)
    held = []
    for index, time in enumerate(times):
        picture = np.full((2, 2, 3), index % 256, dtype=np.uint8)
        xclip.add(time, picture, (cuts or {}).get(index, []))
        held.append(len(xclip._pictures))
    calls_before_end = scorer.calls
    all_cuts = sorted(c for found in (cuts or {}).values() for c in found)
    extents, logits, spans = xclip.finish(end, all_cuts)
    return extents, logits, calls_before_end, max(held), spans


@pytest.mark.parametrize("start", [0.0, 3.0, 101.0])
def test_the_windows_are_fixed_windows_scored_as_frames_arrive(start: float) -> None:
    times = [start + i / 2 for i in range(120)]  # 60 s at 2 fps
    end = start + 60.0
    extents, logits, early, held, spans = run(times, end, start)
    expected = [(w.start, w.end) for w in fixed_windows(times, end, 8, start=start)]
    assert np.allclose(extents, expected)
    assert spans == [w.span for w in fixed_windows(times, end, 8, start=start)]
    assert extents[0][0] == start and extents[-1][1] == end
    assert early >= 5  # most windows scored long before the end
    assert held <= 24  # the pictures of one model call's windows, never the whole film
    # each window got exactly its own frames (picture ids = frame indexes)
    first = fixed_windows(times, end, 8, start=start)[3]
    assert logits[3, 0] == sum(first.frames)


def test_a_clip_shorter_than_a_window_is_one_window_from_the_start() -> None:
    extents, _, _, _, _ = run([101.0, 101.5, 102.0, 102.5], 103.0, start=101.0)
    assert extents == [(101.0, 103.0)]


def test_with_cuts_the_windows_are_scene_windows_though_cuts_come_late() -> None:
    """Cuts at 13.2 s and 31 s, each reported three frames (1.5 s) after it happened:
    the windows are scene_windows' over the scenes, none crosses a cut, and still the
    film is never held."""
    times = [i / 2 for i in range(120)]  # 60 s at 2 fps
    cuts = {29: [13.2], 65: [31.0]}  # reported at 14.5 s and 32.5 s
    extents, logits, early, held, spans = run(times, 60.0, cuts=cuts, cut_lag=4.0)
    scenes = [(0.0, 13.2), (13.2, 31.0), (31.0, 60.0)]
    expected = scene_windows(times, scenes, 8)
    assert np.allclose(extents, [(w.start, w.end) for w in expected])
    assert np.allclose(spans, [w.span for w in expected])
    assert not any(s < cut < e for s, e in extents for cut in (13.2, 31.0))
    assert logits[5, 0] == sum(expected[5].frames)  # each window got its own frames
    assert early >= 4 and held <= 32


def test_a_cut_reported_later_than_the_lag_still_tiles_the_time_once() -> None:
    """A cut at 10 s reported at 20 s (a long fade): a window scored across it stays,
    but every span keeps to its scene and the spans tile the time exactly once."""
    times = [i / 2 for i in range(60)]  # 30 s
    extents, _, _, _, spans = run(times, 30.0, cuts={40: [10.0]}, cut_lag=2.0)
    assert (6.0, 10.0) in extents  # the scene closed at 10 s: its last window ends there
    assert (8.0, 12.0) in extents  # scored across the cut before it was reported
    assert spans[extents.index((8.0, 12.0))] == (8.5, 10.0)  # stands for its scene only
    assert spans[extents.index((10.0, 14.0))] == (10.0, 13.0)  # the next scene's first
    assert spans[0][0] == 0.0 and spans[-1][1] == 30.0
    assert all(a[1] == b[0] and a[1] > a[0] for a, b in zip(spans, spans[1:]))
    assert not any(lo < 10.0 < hi for lo, hi in spans)


def test_a_cut_off_the_window_grid_reported_late_needs_no_picture_already_gone() -> None:
    """A cut at 9.3 s reported at 15 s (the threshold detector cuts a long fade at its
    middle once it ends): no window ending at the cut is asked for (its pictures are
    gone); the next scene's windows start at or after it; nothing crosses back."""
    times = [i / 2 for i in range(60)]
    extents, _, _, held, spans = run(times, 30.0, cuts={30: [9.3]}, cut_lag=4.0)
    assert held <= 32
    after = [(s, e) for s, e in extents if e > 9.3 and s >= 9.3 - 1e-9]
    assert after and min(s for s, _ in after) >= 9.3 - 1e-9
    assert all(hi > lo for lo, hi in spans) and not any(lo < 9.3 < hi for lo, hi in spans)
    assert spans[0][0] == 0.0 and spans[-1][1] == 30.0
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def scene_of(time: float, cuts: list[float]) -> int:
    import bisect

    return bisect.bisect_right(cuts, time + 1e-9)


def test_cuts_reported_at_any_delay_never_fail_and_spans_tile_the_time() -> None:
    """Random cuts reported up to 12 s late, in any order, at four frame rates and two
    starts (a fixed seed): never an error; spans in order, each positive, none across a cut, tiling the
    analysed time; every window's frames inside it."""
    import random

    generator = random.Random(15)
    for _ in range(300):
        fps = generator.choice([1.0, 2.0, 2.5, 4.0])
        start = generator.choice([0.0, 3.3])
        length = generator.uniform(5, 40)
        times = [start + i / fps for i in range(int(length * fps))]
        end = start + length
        cuts = sorted(round(start + generator.uniform(0.3, length - 0.1), 3) for _ in range(4))
        reported: dict[int, list[float]] = {}
        for cut in cuts:
            late = cut + generator.uniform(0, 12)
            at = next((i for i, t in enumerate(times) if t >= late), None)
            if at is not None:
                reported.setdefault(at, []).append(cut)
        scorer = Scorer()
        xclip = XClipRun(scorer, ("a", "b"), start=start, cut_lag=4.0)
        for index, time in enumerate(times):
            picture = np.full((1, 1, 3), index % 256, dtype=np.uint8)
            xclip.add(time, picture, sorted(reported.get(index, [])))
        extents, logits, spans = xclip.finish(end, cuts)
        assert spans[0][0] == start and spans[-1][1] == end
        assert all(hi > lo for lo, hi in spans)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        # each frame stands with a window of its own scene, where its scene has one
        starts = [s for s, _ in extents]
        for time in times:
            [window] = [i for i, (lo, hi) in enumerate(spans) if lo <= time < hi or time == end]
            own = scene_of(time, cuts)
            if any(scene_of(s, cuts) == own for s in starts):
                assert scene_of(starts[window], cuts) == own
        for (s, e), row in zip(extents, logits):  # its last frame (the largest id) inside
            assert s - 1e-9 <= times[int(row[1])] < e + 1e-9
