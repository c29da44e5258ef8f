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
    assert spans[extents.index((8.0, 12.0))] == (9.0, 10.0)  # stands for its scene only
    assert spans[extents.index((10.0, 14.0))] == (10.0, 13.0)  # the next scene's first
    assert spans[0][0] == 0.0 and spans[-1][1] == 30.0
    assert all(a[1] == b[0] and a[1] > a[0] for a, b in zip(spans, spans[1:]))
    assert not any(lo < 10.0 < hi for lo, hi in spans)
