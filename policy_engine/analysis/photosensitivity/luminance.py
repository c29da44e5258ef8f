"""Per-frame measurements: relative luminance and red saturation, per cell of a grid. Pure.

8-bit sRGB goes to linear light through the sRGB curve (a 256-entry table, as IRIS's
sRGBValues), then Y = 0.2126 R + 0.7152 G + 0.0722 B. A pixel is saturated red when
R / (R + G + B) >= 0.8 in linear light, and its red value is then (R - G - B) x 320
(IRIS's RedSaturation), otherwise 0.

Speed: the luminance of two neighbouring pixels is the sum of three table look-ups on the
picture's bytes read as 16-bit pairs (r0 g0 | b0 r1 | g1 b1), which halves the look-ups
of one per channel. Red is computed only on the few pixels an 8-bit test lets through.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

Y_WEIGHTS = (0.2126, 0.7152, 0.0722)
RED_SCALE = np.float32(320.0)


def srgb_to_linear() -> np.ndarray:
    """The sRGB transfer curve for each 8-bit value, float32 like IRIS's table."""
    v = np.arange(256, dtype=np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


LINEAR = srgb_to_linear()
_Y_BY_CHANNEL = tuple((LINEAR * np.float32(w)).astype(np.float32) for w in Y_WEIGHTS)
GRAY_LUMINANCE = LINEAR  # the weights sum to 1: a grey pixel's luminance is its linear value


@lru_cache(maxsize=1)
def _pair_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Luminance of the byte pairs (r0,g0), (b0,r1), (g1,b1) of two pixels, little-endian."""
    pair = np.arange(65536)
    low, high = pair & 255, pair >> 8
    yr, yg, yb = _Y_BY_CHANNEL
    return (yr[low] + yg[high], yb[low] + yr[high], yg[low] + yb[high])


@lru_cache(maxsize=8)
def _red_limit(saturation: float) -> np.ndarray:
    """For each max(g, b), the largest r that cannot be a saturated red (uint8).

    R / (R + G + B) >= s needs R >= s / (1 - s) * (G + B) >= s / (1 - s) * max(G, B); the
    ratio is taken a little low so that the test never drops a pixel the exact one keeps.
    """
    ratio = saturation / (1.0 - saturation) * (1.0 - 1e-3)
    need = ratio * LINEAR.astype(np.float64)
    # first r whose linear value reaches the need, also r >= 1 (red must be positive)
    first = np.searchsorted(LINEAR.astype(np.float64), need, side="left")
    first = np.maximum(first, 1)
    return np.clip(first - 1, 0, 255).astype(np.uint8)


def _edges(length: int, parts: int) -> np.ndarray:
    """parts + 1 strictly increasing integer edges over [0, length] (parts <= length)."""
    return (np.arange(parts + 1, dtype=np.int64) * length) // parts


@dataclass(frozen=True)
class Layout:
    """How a picture of one size maps onto the grid of cells."""

    height: int
    width: int
    cells_across: int
    cells_down: int
    row_edges: np.ndarray  # in pixel rows
    unit_edges: np.ndarray  # in units of `unit` pixel columns
    column_edges: np.ndarray  # in pixel columns
    unit: int  # 2: luminance comes in pixel pairs; 1: one value per pixel
    odd_column: bool  # a last pixel column outside the pairs, in the last cell column
    cell_pixels: np.ndarray  # (down, across) pixel counts
    row_cell: np.ndarray  # cell row of each pixel row
    column_cell: np.ndarray  # cell column of each pixel column

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def weights(self) -> np.ndarray:
        """Share of the picture in each cell."""
        return self.cell_pixels / float(self.pixels)

    @classmethod
    def build(cls, height: int, width: int, grid: tuple[int, int], unit: int) -> Layout:
        units = width // unit
        odd = width - units * unit > 0
        across = max(1, min(grid[0], units)) if units else 1
        down = max(1, min(grid[1], height))
        row_edges = _edges(height, down)
        unit_edges = _edges(units, across) if units else np.zeros(2, dtype=np.int64)
        column_edges = unit_edges * unit
        if odd:
            column_edges = column_edges.copy()
            column_edges[-1] = width
        rows = np.diff(row_edges)
        columns = np.diff(column_edges)
        row_cell = np.repeat(np.arange(down), rows)
        column_cell = np.repeat(np.arange(across), columns)
        return cls(
            height=height,
            width=width,
            cells_across=across,
            cells_down=down,
            row_edges=row_edges,
            unit_edges=unit_edges,
            column_edges=column_edges,
            unit=unit,
            odd_column=odd,
            cell_pixels=np.outer(rows, columns).astype(np.float64),
            row_cell=row_cell,
            column_cell=column_cell,
        )

    def cell_sums(self, values: np.ndarray, last_column: np.ndarray | None) -> np.ndarray:
        """Sums over each cell of per-unit values (..., height, units) plus the odd column
        (..., height): leading axes are pictures of a batch."""
        leading = values.shape[:-2]
        sums = np.zeros((*leading, self.cells_down, self.cells_across), dtype=np.float64)
        if values.shape[-1]:
            # columns first: the second reduction then runs over a narrow array
            across = np.add.reduceat(values, self.unit_edges[:-1], axis=-1)
            sums += np.add.reduceat(across, self.row_edges[:-1], axis=-2)
        if last_column is not None:
            sums[..., -1] += np.add.reduceat(last_column, self.row_edges[:-1], axis=-1)
        return sums

    def pixel_cell_sums(self, plane: np.ndarray) -> np.ndarray:
        """Sums over each cell of per-pixel values (height, width)."""
        across = np.add.reduceat(plane, self.column_edges[:-1], axis=1, dtype=np.float64)
        return np.add.reduceat(across, self.row_edges[:-1], axis=0)

    def cell_index(self, pixel: np.ndarray) -> np.ndarray:
        """The flat cell index of each flat pixel index."""
        rows, columns = np.divmod(pixel, self.width)
        return self.row_cell[rows] * self.cells_across + self.column_cell[columns]


@dataclass
class FrameMeasures:
    layout: Layout
    cell_luminance: np.ndarray  # (down, across) mean relative luminance
    cell_red: np.ndarray  # (down, across) mean red value
    average_luminance: float
    average_red: float
    changed_share: float  # share of pixels whose colour changed (only when tracked)
    red_changed_share: float  # share of pixels whose red value changed (only when tracked)

    @property
    def pixels(self) -> int:
        return self.layout.pixels


@dataclass
class BatchMeasures:
    """The measures of a batch of pictures of one size, in presentation order."""

    frames: list[FrameMeasures]
    # (pictures, down, across) luminance at the pattern detector's resolution; None when
    # not asked for or the pictures are too small to hold a pattern
    pattern_images: np.ndarray | None


def as_picture(picture: np.ndarray) -> np.ndarray:
    """The picture as uint8 (H, W, 3) RGB or (H, W) grey; raises ValueError otherwise."""
    array = np.asarray(picture)
    if array.dtype != np.uint8:
        raise ValueError(f"pictures must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]  # alpha plays no part in what is shown
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"pictures must be HxWx3 RGB or HxW grey, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"empty picture of shape {array.shape}")
    return np.ascontiguousarray(array)


@dataclass
class RedPixels:
    """The red values of a picture: sparse (flat index, value) when few pixels are red,
    else a dense plane."""

    index: np.ndarray
    value: np.ndarray
    plane: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return self.plane is None and not self.index.size

    def dense(self, pixels: int) -> np.ndarray:
        if self.plane is not None:
            return self.plane.ravel()
        values = np.zeros(pixels, dtype=np.float32)
        values[self.index] = self.value
        return values


NO_RED = RedPixels(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
DENSE_RED_SHARE = 1 / 8  # above this share of candidate pixels, compute every pixel


class _Buffers:
    """Scratch arrays for a batch of pictures of one size: fresh multi-megabyte
    temporaries cost more in page faults than the arithmetic done in them."""

    def __init__(self, capacity: int, height: int, width: int, *, track_pixels: bool) -> None:
        self.capacity, self.size = capacity, (height, width)
        pairs = width // 2
        self.units = np.empty((capacity, height, pairs), dtype=np.float32)
        self.scratch = np.empty((capacity, height, pairs), dtype=np.float32)
        self.byte = np.empty((capacity, height, width), dtype=np.uint8)
        self.limit = np.empty((capacity, height, width), dtype=np.uint8)
        self.flag = np.empty((capacity, height, width), dtype=bool)
        # the last picture, only for IRIS's count of changed pixels
        shape = (height, width, 3) if track_pixels else (0, 0, 3)
        self.flags3 = np.empty(shape, dtype=bool)
        self.previous = np.empty(shape, dtype=np.uint8)
        self._red: list[np.ndarray] = []  # made when a picture is mostly red
        self._red_mask = np.empty(0, dtype=bool)
        self._red_turn = 0

    def red_planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """R, G, B, a value plane and a mask of one picture; the value plane alternates
        between two so that the last frame's red values survive this frame's (IRIS mode,
        one picture a batch, compares them)."""
        if not self._red:
            self._red = [np.empty(self.size, dtype=np.float32) for _ in range(5)]
            self._red_mask = np.empty(self.size, dtype=bool)
        self._red_turn ^= 1
        r, g, b = self._red[:3]
        return r, g, b, self._red[3 + self._red_turn], self._red_mask


class FrameMeasurer:
    """Turns pictures into per-cell means; keeps the last picture only when asked to
    count changed pixels (IRIS's flash-area test), never a history of pictures.

    Pictures are measured in batches: at the scan's 160x90 numpy's cost per call, not the
    arithmetic, was most of a picture's time, and a batch pays it once."""

    def __init__(
        self,
        grid: tuple[int, int],
        *,
        red_saturation: float,
        track_pixels: bool,
        pattern_width: int | None,
    ) -> None:
        self.grid = grid
        self.red_saturation = red_saturation
        self.track_pixels = track_pixels
        self.pattern_width = pattern_width
        self._layouts: dict[tuple[int, int, int], Layout] = {}
        self._buffers: _Buffers | None = None
        self._previous_shape: tuple[int, ...] | None = None
        self._previous_red = NO_RED

    def layout(self, height: int, width: int, unit: int) -> Layout:
        key = (height, width, unit)
        if key not in self._layouts:
            self._layouts[key] = Layout.build(height, width, self.grid, unit)
        return self._layouts[key]

    def _buffers_for(self, count: int, height: int, width: int) -> _Buffers:
        buffers = self._buffers
        if buffers is None or buffers.size != (height, width) or buffers.capacity < count:
            buffers = _Buffers(count, height, width, track_pixels=self.track_pixels)
            self._buffers = buffers
        return buffers

    def measure(self, picture: np.ndarray) -> FrameMeasures:
        """One picture's measures (see measure_many)."""
        return self.measure_many(as_picture(picture)[None]).frames[0]

    def measure_many(self, pictures: np.ndarray) -> BatchMeasures:
        """Measures of a batch of pictures of one size: uint8 (N, H, W, 3) RGB or
        (N, H, W) grey, as as_picture() leaves them. With track_pixels, N must be 1 (the
        changed-pixel count compares each picture with the one before)."""
        count, height, width = pictures.shape[:3]
        if self.track_pixels and count != 1:
            raise ValueError("counting changed pixels measures one picture at a time")
        buffers = self._buffers_for(count, height, width)
        if pictures.ndim == 3:
            units, last, unit = np.take(GRAY_LUMINANCE, pictures, mode="clip"), None, 1
        elif self.pattern_width and width < 2 * self.pattern_width:
            # narrow (the scan's 160 wide): pixel pairs would halve the finest stripes
            # the pattern detector sees; per pixel is as cheap at this size
            units, last, unit = _pixel_luminance(pictures), None, 1
        else:
            (units, last), unit = _pair_luminance(pictures, buffers), 2
        layout = self.layout(height, width, unit)
        luminance_sums = layout.cell_sums(units, last)
        if pictures.ndim == 3:
            red_sums, reds = np.zeros_like(luminance_sums), [NO_RED]
        else:
            red_sums, reds = _red_sums(pictures, self.red_saturation, layout, buffers)
        pixels = float(layout.pixels)
        frames = []
        for index in range(count):
            luminance, red = luminance_sums[index], red_sums[index]
            changed = red_changed = 0.0
            if self.track_pixels:
                changed, red_changed = self._changes(pictures[index], reds[index])
            frames.append(
                FrameMeasures(
                    layout=layout,
                    cell_luminance=luminance / layout.cell_pixels,
                    cell_red=red / layout.cell_pixels,
                    average_luminance=float(luminance.sum() / pixels),
                    average_red=float(red.sum() / pixels),
                    changed_share=changed,
                    red_changed_share=red_changed,
                )
            )
        patterns = self._pattern_images(units, unit) if self.pattern_width else None
        return BatchMeasures(frames, patterns)

    def _changes(self, array: np.ndarray, red: RedPixels) -> tuple[float, float]:
        """Shares of pixels whose luminance, and whose red value, changed since the last
        picture (IRIS counts the non-zero pixels of the difference of the two frames)."""
        height, width = array.shape[:2]
        pixels = height * width
        colour = array if array.ndim == 3 else np.repeat(array[:, :, None], 3, axis=2)
        buffers = self._buffers_for(1, height, width)
        previous_shape, self._previous_shape = self._previous_shape, colour.shape
        previous_red, self._previous_red = self._previous_red, red
        if previous_shape is None:
            np.copyto(buffers.previous, colour)
            return 0.0, 0.0  # the first frame has nothing to differ from
        if previous_shape != colour.shape:
            np.copyto(buffers.previous, colour)
            return 1.0, 1.0  # a new picture size: every pixel is new
        flags3, moved = buffers.flags3, buffers.flag[0]
        np.not_equal(colour, buffers.previous, out=flags3)
        np.logical_or(flags3[:, :, 0], flags3[:, :, 1], out=moved)
        np.logical_or(moved, flags3[:, :, 2], out=moved)
        changed = np.count_nonzero(moved) / pixels
        np.copyto(buffers.previous, colour)
        if red.empty and previous_red.empty:
            return changed, 0.0
        return changed, np.count_nonzero(red.dense(pixels) != previous_red.dense(pixels)) / pixels

    def _pattern_images(self, units: np.ndarray, unit: int) -> np.ndarray | None:
        """Block means of the luminance (N, height, units) down to about pattern_width
        pixels across."""
        assert self.pattern_width is not None
        height, count = units.shape[1:]
        block = max(1, count * unit // self.pattern_width // unit)  # in units
        rows_per = block * unit  # square blocks of pixels
        down, across = height // rows_per, count // block
        if down < 8 or across < 8:
            return None  # too small a picture to hold a pattern of stripes
        # strided adds: a handful of whole-array operations however many blocks
        columns = units[:, : down * rows_per, 0 : across * block : block].copy()
        for offset in range(1, block):
            columns += units[:, : down * rows_per, offset : across * block : block]
        blocks = columns[:, 0::rows_per].copy()
        for offset in range(1, rows_per):
            blocks += columns[:, offset::rows_per]
        blocks /= np.float32(rows_per * block * unit)
        return blocks


def _pixel_luminance(pictures: np.ndarray) -> np.ndarray:
    """Luminance of each pixel (..., height, width), float32: OpenCV's table look-up per
    channel, then the channels summed by its colour transform, in the order numpy adds
    them ((R + G) + B; equal bit for bit over all 2^24 colours) at a third of the time."""
    import cv2  # installed for scene detection; imported here to keep the import light

    shape = pictures.shape[:-1]
    lines = np.ascontiguousarray(pictures).reshape(-1, shape[-1], 3)
    return cv2.transform(cv2.LUT(lines, _luminance_lut()), _ONES).reshape(shape)


@lru_cache(maxsize=1)
def _luminance_lut() -> np.ndarray:
    """Each channel's weighted linear value, as OpenCV's 3-channel look-up table."""
    return np.stack(_Y_BY_CHANNEL, axis=-1).reshape(1, 256, 3)


_ONES = np.ones((1, 3), dtype=np.float32)


def _pair_luminance(
    pictures: np.ndarray, buffers: _Buffers
) -> tuple[np.ndarray, np.ndarray | None]:
    """Summed luminance of each pair of pixels in a row (N, height, width // 2), and of
    the last column if the width is odd (N, height)."""
    count, height, width, _ = pictures.shape
    pairs = width // 2
    units = buffers.units[:count]
    if pairs:
        data = pictures.reshape(count, height, width * 3)[:, :, : pairs * 6]
        words = data.view("<u2").reshape(count, height, pairs, 3)
        first, middle, last_pair = _pair_tables()
        scratch = buffers.scratch[:count]
        np.take(first, words[..., 0], mode="clip", out=units)
        np.add(units, np.take(middle, words[..., 1], mode="clip", out=scratch), out=units)
        np.add(units, np.take(last_pair, words[..., 2], mode="clip", out=scratch), out=units)
    last = None
    if width % 2:
        last = _pixel_luminance(pictures[:, :, -1:])[:, :, 0]
    return units, last


def _red_sums(
    pictures: np.ndarray, saturation: float, layout: Layout, buffers: _Buffers
) -> tuple[np.ndarray, list[RedPixels]]:
    """Per-cell sums of the red values of saturated red pixels (IRIS's RedSaturation),
    (N, down, across), and each picture's red pixels. An 8-bit test finds the few pixels
    that may be saturated red and the exact test runs on those; a picture where many may
    be is computed whole."""
    count = pictures.shape[0]
    cells = layout.cells_down * layout.cells_across
    sums = np.zeros((count, layout.cells_down, layout.cells_across))
    reds = [NO_RED] * count
    others, limit, candidate = buffers.byte[:count], buffers.limit[:count], buffers.flag[:count]
    np.maximum(pictures[..., 1], pictures[..., 2], out=others)
    np.take(_red_limit(saturation), others, mode="clip", out=limit)
    np.greater(pictures[..., 0], limit, out=candidate)
    per_picture = np.count_nonzero(candidate.reshape(count, -1), axis=1)
    if not per_picture.any():
        return sums, reds
    for index in np.flatnonzero(per_picture > DENSE_RED_SHARE * layout.pixels):
        plane = _red_plane(pictures[index], saturation, buffers)
        sums[index] = layout.pixel_cell_sums(plane)
        reds[index] = RedPixels(NO_RED.index, NO_RED.value, plane)
        candidate[index] = False
    candidates = np.flatnonzero(candidate)
    if candidates.size:
        linear = np.take(LINEAR, np.take(pictures.reshape(-1, 3), candidates, axis=0))
        value, keep = _red_values(linear[:, 0], linear[:, 1], linear[:, 2], saturation)
        picture, pixel = np.divmod(candidates[keep], layout.pixels)
        value = value[keep]
        cell = picture * cells + layout.cell_index(pixel)
        sums += np.bincount(cell, weights=value, minlength=sums.size).reshape(sums.shape)
        if count == 1:  # only IRIS mode (one picture a batch) reads the pixels
            reds[0] = RedPixels(pixel, value)
    return sums, reds


def _red_values(
    r: np.ndarray, g: np.ndarray, b: np.ndarray, saturation: float
) -> tuple[np.ndarray, np.ndarray]:
    """IRIS's formula in float32: red = ((R - G) - B) x 320 where R / ((R + G) + B) >= s."""
    with np.errstate(invalid="ignore", divide="ignore"):
        saturated = r / ((r + g) + b) >= np.float32(saturation)
    value = ((r - g) - b) * RED_SCALE
    return value, saturated & (value > 0)


def _red_plane(array: np.ndarray, saturation: float, buffers: _Buffers) -> np.ndarray:
    """Red values of every pixel of one picture, for pictures where red is everywhere (in
    place: fresh picture-sized temporaries would cost more than the arithmetic)."""
    r, g, b, value, not_saturated = buffers.red_planes()
    for channel, plane in enumerate((r, g, b)):
        np.take(LINEAR, array[:, :, channel], mode="clip", out=plane)
    np.add(r, g, out=value)
    np.add(value, b, out=value)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(r, value, out=value)
    # black gives 0 / 0: NaN is not less, but its value below is 0 all the same
    np.less(value, np.float32(saturation), out=not_saturated)
    np.subtract(r, g, out=value)
    np.subtract(value, b, out=value)
    np.multiply(value, RED_SCALE, out=value)
    value[not_saturated] = 0.0
    np.maximum(value, 0.0, out=value)
    return value
