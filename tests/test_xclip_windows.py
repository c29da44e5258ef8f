"""X-CLIP's windows scored as frames arrive (with a stand-in scorer): exactly the windows
of fixed_windows over the same frames, whatever the start; scored before the end; only
the pictures a window to come can use kept."""

from __future__ import annotations

import numpy as np
import pytest

from policy_engine.analysis.windows import fixed_windows
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


def run(times: list[float], end: float, start: float = 0.0):  # type: ignore[no-untyped-def]
    scorer = Scorer()
    xclip = XClipRun(scorer, ("a", "b"), start=start)
    held = []
    for index, time in enumerate(times):
        xclip.add(time, np.full((2, 2, 3), index % 256, dtype=np.uint8))
        held.append(len(xclip._pictures))
    calls_before_end = scorer.calls
    extents, logits = xclip.finish(end)
    return extents, logits, calls_before_end, max(held)


@pytest.mark.parametrize("start", [0.0, 3.0, 101.0])
def test_the_windows_are_fixed_windows_scored_as_frames_arrive(start: float) -> None:
    times = [start + i / 2 for i in range(120)]  # 60 s at 2 fps
    end = start + 60.0
    extents, logits, early, held = run(times, end, start)
    expected = [(w.start, w.end) for w in fixed_windows(times, end, 8, start=start)]
    assert np.allclose(extents, expected)
    assert extents[0][0] == start and extents[-1][1] == end
    assert early >= 5  # most windows scored long before the end
    assert held <= 24  # the pictures of one model call's windows, never the whole film
    # each window got exactly its own frames (picture ids = frame indexes)
    first = fixed_windows(times, end, 8, start=start)[3]
    assert logits[3, 0] == sum(first.frames)


def test_a_clip_shorter_than_a_window_is_one_window_from_the_start() -> None:
    extents, _, _, _ = run([101.0, 101.5, 102.0, 102.5], 103.0, start=101.0)
    assert extents == [(101.0, 103.0)]
