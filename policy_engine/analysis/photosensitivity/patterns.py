"""Regular spatial patterns: stripes of light and dark, in any orientation. Pure.

The luminance picture, block-averaged to about 160 pixels across, is read row by row and
column by column. Along each line, pixels are split into light and dark against a local
mean (a moving average a quarter of the line long, so that a pattern next to a plain
surround still straddles it), giving runs. Neighbouring runs form a link when they
differ by the flash contrast (0.1 relative) with the darker below the dark limit and
neither is more than four times the other (a duty cycle from 20 % to 80 %). A chain of
links with at least `min_pairs` light-dark pairs whose periods (light + dark widths) vary
by no more than a third marks its span of the line as pattern. Rows catch vertical and
diagonal stripes (and checkerboards, concentric circles and spirals along their rows);
columns catch horizontal ones. The pattern's area is the share of the picture so marked.

Not seen: stripes finer than about two working pixels each (some 40 pairs across the
screen), which average out to grey at this resolution, and radial "sunburst" sectors,
whose widths change along every line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MAX_DUTY_RATIO = 4  # longest / shortest run of a light-dark link
MIN_RUN = 2  # pixels of the working picture
MAX_PERIOD_SPREAD = 1 / 3  # coefficient of variation of the periods of a chain
END_RUN_RATIO = 1.5  # an end run wider than this many inner runs is not part of the pattern


@dataclass(frozen=True)
class StripeRule:
    contrast: float  # relative luminance between light and dark
    dark_limit: float  # the darker stripes must be below this
    min_pairs: int


def stripe_masks(pictures: np.ndarray, rule: StripeRule) -> np.ndarray:
    """Pixels of each picture (N, down, across) that are part of a regular pattern of
    stripes.

    The rows and the columns of every picture are laid end to end in one stream, so that
    each step below is one numpy operation per batch whatever the number of lines (no
    run or chain crosses the start of a line, so pictures cannot mix)."""
    count, down, across = pictures.shape
    size = count * down * across
    geometry = _geometry(count, down, across)
    columns = np.ascontiguousarray(pictures.transpose(0, 2, 1), dtype=np.float32)
    stream = np.empty(2 * size, dtype=np.float32)
    stream[:size] = pictures.ravel()
    stream[size:] = columns.ravel()
    local = np.empty(2 * size, dtype=np.float32)
    _moving_mean(stream[:size].reshape(count * down, across), local[:size])
    _moving_mean(columns.reshape(count * across, down), local[size:])
    light = stream > local
    starts = geometry.line_start.copy()
    starts[1:] |= light[1:] != light[:-1]
    marked = _chains(starts, stream, geometry.line_start, rule)
    if marked is None:
        return np.zeros(pictures.shape, dtype=bool)
    rows = marked[:size].reshape(count, down, across)
    return rows | marked[size:].reshape(count, across, down).transpose(0, 2, 1)


@dataclass(frozen=True)
class _Geometry:
    line_start: np.ndarray  # True where a row or a column starts in the stream


@lru_cache(maxsize=8)
def _geometry(count: int, down: int, across: int) -> _Geometry:
    size = count * down * across
    line_start = np.zeros(2 * size, dtype=bool)
    line_start[0:size:across] = True
    line_start[size::down] = True
    return _Geometry(line_start=line_start)


def _chains(
    starts: np.ndarray, stream: np.ndarray, line_start: np.ndarray, rule: StripeRule
) -> np.ndarray | None:
    """The stretches of the stream covered by long, regular chains of light-dark runs."""
    first = np.flatnonzero(starts)  # where each run starts
    total = starts.size
    chain_runs = 2 * rule.min_pairs
    if first.size < chain_runs:
        return None
    stop = np.empty_like(first)
    stop[:-1], stop[-1] = first[1:], total
    size = stop - first
    # Links by the runs' widths alone are a superset of the real ones, and only the runs
    # of long chains of them (a few percent of a natural picture's) can be in a pattern:
    # their means, and the contrast tests, are all that is computed.
    widths = _width_links(~line_start[first[1:]], size)
    head, count = _long_chains(widths, chain_runs)
    if not head.size:
        return None
    run = _members(head, count)  # the runs of the candidate chains, in order
    # their pixels gathered, each run's mean in float64 (a few thousand pixels a batch:
    # casting the whole stream, or summing it whole, cost more than all the rest)
    widths_of_run = size[run]
    pixels = np.take(stream, _members(first[run], widths_of_run)).astype(np.float64)
    offsets = np.cumsum(widths_of_run) - widths_of_run
    mean = np.add.reduceat(pixels, offsets) / widths_of_run
    within = np.flatnonzero(np.diff(run) == 1)  # a candidate run and the next
    link = np.zeros_like(widths)
    pair = run[within]
    link[pair] = widths[pair] & _contrasting(mean[within], mean[within + 1], rule)
    head, count = _long_chains(link, chain_runs)
    if not head.size:
        return None  # the usual case: no chain of enough stripes anywhere
    regular = _regular_chains(head, count, size)
    if not regular.any():
        return None
    head, count = head[regular], count[regular]
    tail = head + count - 1
    begin, end = first[head], stop[tail]
    # a chain's end runs are often the plain surround beside the stripes: leave out an
    # end run much wider than the runs inside the chain
    inner = (first[tail] - stop[head]) / (count - 2)
    begin = np.where(size[head] > END_RUN_RATIO * inner, stop[head], begin)
    end = np.where(size[tail] > END_RUN_RATIO * inner, first[tail], end)
    edges = np.zeros(total + 1, dtype=np.int32)
    np.add.at(edges, begin, 1)
    np.add.at(edges, end, -1)
    return np.cumsum(edges[:-1]) > 0


def _moving_mean(lines: np.ndarray, out: np.ndarray) -> None:
    """Into ``out``: the mean of each pixel's neighbourhood along its line (a row of ``lines``), a
    quarter of the line long (shorter at the ends, where the line cuts it). OpenCV's box
    filter sums the windows in one vectorised pass; a running sum in numpy took several
    passes over the picture, and on 160x90 pictures this was the check's largest cost."""
    import cv2  # installed for scene detection; imported here to keep the import light

    length = lines.shape[1]
    width = min(max(3, length // 4) | 1, length - 1 + length % 2)  # odd, within the line
    sums = cv2.boxFilter(lines, -1, (width, 1), normalize=False, borderType=cv2.BORDER_CONSTANT)
    np.divide(sums, _window_counts(length, width), out=out.reshape(lines.shape))


@lru_cache(maxsize=16)
def _window_counts(length: int, width: int) -> np.ndarray:
    """How many pixels of the line each centred window of ``width`` covers."""
    half = width // 2
    position = np.arange(length)
    return (np.minimum(position + half, length - 1) - np.maximum(position - half, 0) + 1).astype(
        np.float32
    )


def _width_links(same_line: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Whether each run and the next (on the same line) have widths a pair of stripes can
    have: neither more than four times the other (a duty cycle from 20 % to 80 %)."""
    a, b = size[:-1], size[1:]
    wide = size >= MIN_RUN  # single pixels are noise at this resolution
    links = same_line & wide[:-1] & wide[1:]
    links &= a * MAX_DUTY_RATIO >= b
    links &= b * MAX_DUTY_RATIO >= a
    return links


def _contrasting(mean: np.ndarray, following: np.ndarray, rule: StripeRule) -> np.ndarray:
    """Whether runs of these means form a light-dark pair: they differ by the contrast
    and the darker is below the dark limit."""
    contrast = np.abs(following - mean) >= rule.contrast
    return contrast & (np.minimum(following, mean) < rule.dark_limit)


def _long_chains(link: np.ndarray, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """(first run, number of runs) of each chain of linked runs at least `runs` long."""
    chain_start = np.flatnonzero(np.concatenate(([True], ~link)))
    count = np.empty_like(chain_start)
    count[:-1], count[-1] = chain_start[1:] - chain_start[:-1], link.size + 1 - chain_start[-1]
    long_enough = count >= runs
    return chain_start[long_enough], count[long_enough]


def _members(head: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The indices of spans given as (first index, length), span after span: the runs
    of chains, or the pixels of runs."""
    offset = np.cumsum(count) - count
    return np.arange(count.sum()) - np.repeat(offset - head, count)


def _regular_chains(head: np.ndarray, count: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Chains (first run, number of runs) whose light + dark periods are about even (a
    pattern, not clutter). Every run of a chain is linked to the next."""
    links = count - 1
    owner = np.repeat(np.arange(head.size), links)
    run = _members(head, links)  # each linked run (all but the last of its chain)
    period = (size[run] + size[run + 1]).astype(np.float64)
    total = np.bincount(owner, weights=period, minlength=head.size)
    squares = np.bincount(owner, weights=period * period, minlength=head.size)
    average = total / links
    spread = np.sqrt(np.maximum(squares / links - average * average, 0.0)) / average
    return spread <= MAX_PERIOD_SPREAD


class PatternDetector:
    """Pattern area of each frame, and whether a pattern moves or flickers."""

    def __init__(self, rule: StripeRule, area_threshold: float) -> None:
        self.rule = rule
        self.area_threshold = area_threshold
        self._previous: tuple[np.ndarray, np.ndarray] | None = None

    def step_many(self, pictures: np.ndarray | None, count: int) -> list[tuple[float, bool]]:
        """(area, moving) for each of a batch of `count` pictures (N, down, across) in
        presentation order; None when the pictures are too small to hold a pattern."""
        if pictures is None:
            self._previous = None
            return [(0.0, False)] * count
        masks = stripe_masks(pictures, self.rule)
        areas = masks.reshape(count, -1).mean(axis=1)
        return [self._step(pictures[i], masks[i], float(areas[i])) for i in range(count)]

    def _step(self, picture: np.ndarray, mask: np.ndarray, area: float) -> tuple[float, bool]:
        """Moving when a pattern here and in the last frame changed by at least half the
        flash contrast on average over its area."""
        present = area >= self.area_threshold - 1e-9  # as summarise() reads it
        moving = False
        previous = self._previous
        if present and previous is not None and previous[0].shape == picture.shape:
            both = mask & previous[1]
            if both.any():
                change = np.abs(picture[both] - previous[0][both]).mean()
                moving = bool(change >= self.rule.contrast / 2)
        self._previous = (picture, mask) if present else None
        return area, moving
