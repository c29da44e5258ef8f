"""The photosensitivity check's vectorised parts against plain, line-by-line readings of
their rules, on random pictures and counts: the fast paths (candidate runs picked by
their widths before any mean is taken; transition levels from a histogram) must decide
exactly what the rule as written decides."""

from __future__ import annotations

import numpy as np
import pytest

from policy_engine.analysis.photosensitivity.flashes import AreaMeasure
from policy_engine.analysis.photosensitivity.patterns import (
    END_RUN_RATIO,
    MAX_DUTY_RATIO,
    MAX_PERIOD_SPREAD,
    MIN_RUN,
    StripeRule,
    _moving_mean,
    stripe_masks,
)

RULE = StripeRule(contrast=0.1, dark_limit=0.8, min_pairs=6)


def line_mask(line: np.ndarray, rule: StripeRule) -> np.ndarray:
    """The pattern pixels of one line, read the slow way: runs one by one, chains one by
    one, every mean from the line itself."""
    local = np.empty(line.size, dtype=np.float32)
    _moving_mean(line[None].astype(np.float32), local)
    light = line > local
    runs, start = [], 0
    for k in range(1, line.size + 1):
        if k == line.size or light[k] != light[start]:
            runs.append((start, k))
            start = k
    sizes = [stop - first for first, stop in runs]
    means = [
        float(np.sum(line[first:stop], dtype=np.float64)) / (stop - first) for first, stop in runs
    ]

    def linked(j: int) -> bool:
        a, b = sizes[j], sizes[j + 1]
        return (
            abs(means[j + 1] - means[j]) >= rule.contrast
            and min(means[j], means[j + 1]) < rule.dark_limit
            and a * MAX_DUTY_RATIO >= b
            and b * MAX_DUTY_RATIO >= a
            and min(a, b) >= MIN_RUN
        )

    mask = np.zeros(line.size, dtype=bool)
    j = 0
    while j < len(runs):
        k = j
        while k + 1 < len(runs) and linked(k):
            k += 1
        count = k - j + 1
        if count >= 2 * rule.min_pairs:
            periods = np.array([sizes[m] + sizes[m + 1] for m in range(j, k)], dtype=np.float64)
            if periods.std() / periods.mean() <= MAX_PERIOD_SPREAD:
                inner = (runs[k][0] - runs[j][1]) / (count - 2)
                begin = runs[j][1] if sizes[j] > END_RUN_RATIO * inner else runs[j][0]
                end = runs[k][0] if sizes[k] > END_RUN_RATIO * inner else runs[k][1]
                mask[begin:end] = True
        j = k + 1
    return mask


def reference_masks(pictures: np.ndarray, rule: StripeRule) -> np.ndarray:
    count, down, across = pictures.shape
    rows = np.zeros(pictures.shape, dtype=bool)
    columns = np.zeros(pictures.shape, dtype=bool)
    for i in range(count):
        for row in range(down):
            rows[i, row] = line_mask(pictures[i, row], rule)
        for column in range(across):
            columns[i, :, column] = line_mask(pictures[i, :, column], rule)
    return rows | columns


def random_pictures(rng: np.random.Generator, count: int, down: int, across: int) -> np.ndarray:
    """Texture, with stripes of random width, contrast and level over random rectangles
    (often reaching the pictures' edges, where runs and chains end), some regular enough
    and contrasted enough to be a pattern, some not quite."""
    pictures = rng.uniform(0.0, 1.0, (count, 1, 1)) * np.ones((count, down, across))
    pictures += rng.normal(0.0, rng.uniform(0.0, 0.08), (count, down, across))
    for picture in pictures:
        for _ in range(rng.integers(1, 4)):
            vertical = rng.random() < 0.5  # stripes side by side, read along the rows
            length = across if vertical else down
            width = int(rng.integers(2, max(3, length // 14)))
            span = int(min(length, rng.integers(10 * width, 16 * width)))
            first = 0 if rng.random() < 0.3 else int(rng.integers(0, length - span + 1))
            last = length if rng.random() < 0.3 and first + span >= length // 2 else first + span
            breadth = down if vertical else across
            side = int(rng.integers(0, breadth // 2))
            dark = rng.uniform(0.0, 0.85)
            light = dark + rng.uniform(0.05, 0.6)
            along = np.arange(last - first)
            widths = width + (rng.integers(-1, 2, along.size) if rng.random() < 0.3 else 0)
            stripes = np.where((along // np.maximum(widths, 1)) % 2 == 0, dark, light)
            if vertical:
                picture[side:, first:last] = stripes[None, :]
            else:
                picture[first:last, side:] = stripes[:, None]
    pictures += rng.normal(0.0, 0.01, pictures.shape)
    return np.clip(pictures, 0.0, 1.0).astype(np.float32)


def case(seed: int) -> np.ndarray:
    """A batch of 1 to 3 pictures: the scan's pattern size halved, or an odd size."""
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 4))
    if seed % 3:
        down, across = 45, 80
    else:
        down, across = int(rng.integers(16, 50)), int(rng.integers(16, 90))
    return random_pictures(rng, count, down, across)


@pytest.mark.parametrize("seed", range(12))
def test_stripe_masks_match_a_line_by_line_reading_of_the_rule(seed: int) -> None:
    pictures = case(seed)
    assert np.array_equal(stripe_masks(pictures, RULE), reference_masks(pictures, RULE))


def test_the_cases_above_hold_patterns() -> None:
    """Not a vacuous comparison: most pictures have pattern pixels, not everywhere, and
    some have none."""
    shares = [picture.mean() for seed in range(12) for picture in reference_masks(case(seed), RULE)]
    assert sum(0 < share < 0.95 for share in shares) >= len(shares) // 2
    assert 0.0 in shares


@pytest.mark.parametrize("mode", ["regions", "wcag-field"])
def test_transition_level_is_the_largest_count_that_covers_the_area(mode: str) -> None:
    """The level is the largest n such that the cells with n or more transitions cover the
    threshold area (uneven cells, as a picture whose size the grid does not divide)."""
    rng = np.random.default_rng(7)
    weights = rng.uniform(0.5, 1.5, (9, 16))
    weights /= weights.sum()
    for threshold in (0.05, 0.25, 0.5, 1.0):
        measure = AreaMeasure(mode, weights, threshold)
        for _ in range(200):
            counts = rng.integers(0, rng.integers(1, 12), (9, 16))
            expected = max(
                (n for n in range(1, int(counts.max()) + 1)
                 if measure.share(counts >= n) >= threshold - 1e-9),
                default=0,
            )  # fmt: skip
            assert measure.level(counts) == expected
