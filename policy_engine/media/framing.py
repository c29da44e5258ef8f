"""How a video picture becomes the model's square input(s). Pure numpy, no decoding.

CLIP was trained on centre-cropped squares, and its stock processor crops the centre
square of every frame: on a 16:9 picture that drops 44% of the image, the sides, where
a weapon or a screen may well be. For compliance that is the wrong default.

Modes (``--framing``):

``letterbox`` (default)
    The whole picture, scaled to fit the square and padded with the model's mean
    colour (which normalises to zero). Nothing is dropped; one model pass per frame.
    Thin content is seen at a lower resolution (a 16:9 frame uses 224x126 pixels).
``tiles``
    Square crops at full model resolution that together cover the whole picture
    (two for 16:9, one for a square). Per-frame probabilities are the maximum over
    tiles, so an object on one side is not diluted. Costs one model pass per tile.
``center``
    CLIP's stock behaviour: scale the short side to the model size, keep the centre
    square. Drops the sides; offered for comparison with published CLIP numbers.
``squash``
    Stretch the whole picture to the square, distorting the aspect ratio.

The resize itself happens in the decoder's converter (swscale), on the frames that are
sampled only; this module says to what size, then places the result in the square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np


class Framing(str, Enum):
    LETTERBOX = "letterbox"
    TILES = "tiles"
    CENTER = "center"
    SQUASH = "squash"


# Tiling a picture whose long side exceeds the square by less than this fraction would
# add a whole model pass to see a sliver: one centred tile is used instead.
_TILE_SLACK = 0.05


@dataclass(frozen=True)
class FramePlan:
    """Everything needed to turn one decoded picture into model squares.

    ``scaled_width``/``scaled_height`` are in the coded orientation (what the converter
    produces); ``quarter_turns`` rotates that to display orientation (counter-clockwise,
    numpy's ``rot90`` convention); ``offsets`` are the top-left corners of the square
    windows in the displayed, scaled picture (for letterbox: where the picture goes
    inside the square).
    """

    framing: Framing
    size: int
    scaled_width: int
    scaled_height: int
    quarter_turns: int
    offsets: tuple[tuple[int, int], ...]
    pad_value: tuple[int, int, int]

    @property
    def crops_per_frame(self) -> int:
        return len(self.offsets)


def plan_framing(
    coded_width: int,
    coded_height: int,
    size: int,
    framing: Framing = Framing.LETTERBOX,
    *,
    sample_aspect_ratio: float = 1.0,
    rotation_degrees: int = 0,
    pad_value: tuple[int, int, int] = (0, 0, 0),
) -> FramePlan:
    """Plan the converter size and the square windows for a picture.

    ``sample_aspect_ratio`` corrects anamorphic pixels (e.g. 64:45 PAL widescreen) so the
    picture is judged at its display shape; ``rotation_degrees`` is the stream's display
    rotation (counter-clockwise, as FFmpeg reports it).
    """
    if coded_width <= 0 or coded_height <= 0:
        raise ValueError(f"picture size must be positive, got {coded_width}x{coded_height}")
    if size <= 0:
        raise ValueError(f"model input size must be positive, got {size}")
    quarter_turns = round(rotation_degrees / 90) % 4
    sar = sample_aspect_ratio if sample_aspect_ratio > 0 else 1.0
    display_w, display_h = coded_width * sar, float(coded_height)
    if quarter_turns % 2:
        display_w, display_h = display_h, display_w

    scaled_w, scaled_h, offsets = _windows(framing, display_w, display_h, size)
    coded_scaled = (scaled_h, scaled_w) if quarter_turns % 2 else (scaled_w, scaled_h)
    return FramePlan(
        framing=framing,
        size=size,
        scaled_width=coded_scaled[0],
        scaled_height=coded_scaled[1],
        quarter_turns=quarter_turns,
        offsets=offsets,
        pad_value=pad_value,
    )


def _windows(
    framing: Framing, width: float, height: float, size: int
) -> tuple[int, int, tuple[tuple[int, int], ...]]:
    """Scaled display size and window offsets for one framing mode."""
    if framing is Framing.SQUASH:
        return size, size, ((0, 0),)
    if framing is Framing.LETTERBOX:
        scale = size / max(width, height)
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        return w, h, (((size - w) // 2, (size - h) // 2),)
    # center and tiles: short side to the model size, windows along the long side
    scale = size / min(width, height)
    w, h = max(size, round(width * scale)), max(size, round(height * scale))
    long_side = max(w, h)
    count = 1
    if framing is Framing.TILES and long_side > size * (1 + _TILE_SLACK):
        count = math.ceil(long_side / size)
    if count == 1:
        starts = [(long_side - size) // 2]
    else:
        starts = [round(i * (long_side - size) / (count - 1)) for i in range(count)]
    if w >= h:
        return w, h, tuple((s, (h - size) // 2) for s in starts)
    return w, h, tuple(((w - size) // 2, s) for s in starts)


def apply_plan(plan: FramePlan, scaled: np.ndarray) -> np.ndarray:
    """Squares of shape (crops, size, size, 3) uint8 from a converter output (H, W, 3)."""
    picture = np.rot90(scaled, k=plan.quarter_turns) if plan.quarter_turns else scaled
    size = plan.size
    out = np.empty((plan.crops_per_frame, size, size, 3), dtype=np.uint8)
    if plan.framing is Framing.LETTERBOX:
        x, y = plan.offsets[0]
        h, w = picture.shape[:2]
        out[0] = plan.pad_value
        out[0, y : y + h, x : x + w] = picture
        return out
    for i, (x, y) in enumerate(plan.offsets):
        out[i] = picture[y : y + size, x : x + size]
    return out
