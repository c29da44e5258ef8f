"""Evidence pictures: a frame with a detector's boxes and labels drawn by supervision's
annotators, and the regions of classes that must not be shown (nudity) pixelated before
the picture leaves the engine: a compliance report must not itself be explicit material.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from typing import TYPE_CHECKING

import numpy as np

from policy_engine.models.detector import subset

if TYPE_CHECKING:
    import supervision as sv

# blocks of this share of the picture's shorter side: coarse enough that nothing of the
# region survives, at any thumbnail size (and never under 6 pixels)
PIXEL_SHARE = 1 / 20


def draw_evidence(
    picture: np.ndarray,
    detections: sv.Detections,
    *,
    hidden_classes: Collection[str] = (),
    reveal: bool = False,
) -> np.ndarray:
    """A copy of the RGB picture with every detection boxed and labelled (class and
    confidence); the boxes of `hidden_classes` pixelated unless `reveal` (for authorised
    reviewers in the app only)."""
    import supervision as sv

    if picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(
            f"evidence pictures are uint8 RGB (height, width, 3), got {picture.dtype}"
            f" {picture.shape}"
        )
    # supervision draws in OpenCV's BGR order (its palette's colours are BGR there)
    scene = np.ascontiguousarray(picture[..., ::-1])
    if len(detections) == 0:
        return np.ascontiguousarray(scene[..., ::-1])
    names = detections.data["class_name"]
    hidden = np.fromiter((name in hidden_classes for name in names), bool, len(names))
    if hidden.any() and not reveal:
        pixel = max(6, round(min(scene.shape[:2]) * PIXEL_SHARE))
        regions = subset(detections, hidden)
        # blurred first: supervision's pixelation samples (linear, then nearest), and a
        # fine pattern would survive it aliased; blurred over a block, each block is the
        # mean of what it covers
        scene = sv.BlurAnnotator(kernel_size=pixel).annotate(scene, regions)
        scene = sv.PixelateAnnotator(pixel_size=pixel).annotate(scene, regions)
    scene = sv.BoxAnnotator(thickness=2).annotate(scene, detections)
    labels = [
        f"{name} {confidence:.2f}"
        for name, confidence in zip(names, np.asarray(detections.confidence), strict=True)
    ]
    scene = sv.LabelAnnotator(text_scale=0.4, text_padding=3).annotate(
        scene, detections, labels=labels
    )
    return np.ascontiguousarray(scene[..., ::-1])


def evidence_jpeg(
    picture: np.ndarray,
    detections: sv.Detections,
    *,
    hidden_classes: Collection[str] = (),
    reveal: bool = False,
    quality: int = 80,
) -> bytes:
    """draw_evidence's picture as JPEG bytes, the form thumbnails are stored and sent in."""
    from PIL import Image

    scene = draw_evidence(picture, detections, hidden_classes=hidden_classes, reveal=reveal)
    buffer = io.BytesIO()
    Image.fromarray(scene).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
