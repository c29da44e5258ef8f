"""Small RGB pictures straight from 8-bit planar YUV frames, for checks that look at
every frame (photosensitivity, scene detection): each plane is reduced first (box
averaging, or OpenCV's bilinear reduction for scene detection), and only the small
result is converted to RGB.

Why not FFmpeg's swscale, which the other conversions use: reducing a 720p frame to
320x180 RGB with its AREA scaler costs about 1.5 ms, as much as decoding the frame, and a
check that runs on every frame pays it 25 times a second. Halving a plane with OpenCV's
INTER_AREA is a plain 2x2 mean with a vectorised fast path, so a pyramid of halvings
(then one last box reduction to the exact size) costs about a tenth of that and gives the
same box means up to rounding. Formats this does not cover (10-bit, semi-planar, RGB,
palettes) return None and go through swscale.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

# 8-bit, three planes Y, Cb, Cr; the "j" formats are full range whatever the frame says
PLANAR_8BIT = {
    "yuv420p": False,
    "yuv422p": False,
    "yuv444p": False,
    "yuv440p": False,
    "yuv411p": False,
    "yuv410p": False,
    "yuvj420p": True,
    "yuvj422p": True,
    "yuvj444p": True,
    "yuvj440p": True,
}
# AVColorSpace -> (Kr, Kb)
_BT601, _BT709 = (0.299, 0.114), (0.2126, 0.0722)
_MATRICES = {1: _BT709, 4: (0.30, 0.11), 5: _BT601, 6: _BT601, 7: (0.212, 0.087)}
_UNSPECIFIED = 2
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG
_FORMATS = {"rgb24": (0, 1, 2), "bgr24": (2, 1, 0)}


def coefficients(colorspace: int, height: int) -> tuple[float, float]:
    """(Kr, Kb) of the frame's matrix. Untagged video is taken as BT.709 from 720 lines up
    and BT.601 below, as players take it; an unknown tag (BT.2020 arrives as 10-bit and
    never gets here) as BT.709."""
    if colorspace == _UNSPECIFIED:
        return _BT709 if height >= 720 else _BT601
    return _MATRICES.get(colorspace, _BT709)


@lru_cache(maxsize=32)
def yuv_to_rgb_matrix(kr: float, kb: float, *, full_range: bool, order: str = "rgb24") -> Any:
    """The 3x4 affine matrix taking (Y, Cb, Cr, 1) to 8-bit (R, G, B) or (B, G, R).
    Cached: every frame of a video asks for the same one (read-only, never changed)."""
    kg = 1.0 - kr - kb
    luma, chroma, black = (1.0, 1.0, 0.0) if full_range else (255 / 219, 255 / 224, 16.0)
    rows = np.array(
        [
            [luma, 0.0, 2 * (1 - kr) * chroma],
            [luma, -2 * (1 - kb) * kb / kg * chroma, -2 * (1 - kr) * kr / kg * chroma],
            [luma, 2 * (1 - kb) * chroma, 0.0],
        ]
    )
    offset = -(rows[:, 0] * black + (rows[:, 1] + rows[:, 2]) * 128.0)
    matrix = np.hstack([rows, offset[:, None]])[list(_FORMATS[order])].astype(np.float32)
    matrix.flags.writeable = False  # shared by every caller through the cache
    return matrix


def box_reduce(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``plane`` reduced (or, for small chroma planes, enlarged) to ``size`` (width,
    height) by box averaging: halvings while the plane is at least twice the size,
    then one last step."""
    import cv2  # OpenCV is already installed for scene detection

    width, height = size
    while plane.shape[1] >= 2 * width and plane.shape[0] >= 2 * height:
        half = (plane.shape[1] // 2, plane.shape[0] // 2)
        plane = cv2.resize(plane[: half[1] * 2, : half[0] * 2], half, interpolation=cv2.INTER_AREA)
    if plane.shape[:2] != (height, width):
        plane = cv2.resize(plane, (width, height), interpolation=cv2.INTER_AREA)
    return plane


def _planes(frame: Any) -> list[np.ndarray] | None:
    planes = []
    for plane in frame.planes[:3]:
        stride, rows, columns = plane.line_size, plane.height, plane.width
        if stride < columns or plane.buffer_size < stride * rows:
            return None  # a layout this does not read (e.g. flipped): leave it to swscale
        whole = np.frombuffer(plane, np.uint8, count=stride * rows).reshape(rows, stride)
        planes.append(whole[:, :columns])
    return planes


def linear_resize(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``plane`` resized to ``size`` with OpenCV's INTER_LINEAR: what PySceneDetect
    reduces its frames with (so its detectors' thresholds keep their meaning)."""
    import cv2

    if plane.shape[:2] == (size[1], size[0]):
        return plane
    return cv2.resize(plane, size, interpolation=cv2.INTER_LINEAR)


REDUCERS = {"AREA": box_reduce, "LINEAR": linear_resize}


MATRIX_CHOICES = ("tagged", "bt601")


def reduced_picture(
    frame: Any,
    size: tuple[int, int],
    format: str = "rgb24",
    interpolation: str = "AREA",
    matrix: str = "tagged",
) -> Any:
    """The frame as a (height, width, 3) uint8 picture of ``size``, each plane reduced by
    ``interpolation`` (AREA: box means; LINEAR: OpenCV's INTER_LINEAR), or None when the
    frame is not 8-bit planar YUV (the caller converts it another way).

    ``matrix``: ``tagged`` converts with the frame's own matrix (what a viewer sees);
    ``bt601`` as FFmpeg's converter does when nobody tells it the matrix, whatever the
    tag, which is how OpenCV and PyAV make the pictures PySceneDetect was tuned on."""
    import cv2

    full_range = PLANAR_8BIT.get(frame.format.name)
    if full_range is None or format not in _FORMATS:
        return None
    planes = _planes(frame)
    if planes is None:
        return None
    full_range = full_range or frame.color_range == _FULL_RANGE
    if interpolation == "LINEAR" and matrix == "bt601" and not full_range:
        picture = _i420_picture(planes, size, format)
        if picture is not None:
            return picture
    kr, kb = coefficients(frame.colorspace, frame.height) if matrix == "tagged" else _BT601
    reduce = REDUCERS[interpolation]
    yuv = cv2.merge([reduce(p, size) for p in planes])
    return cv2.transform(yuv, yuv_to_rgb_matrix(kr, kb, full_range=full_range, order=format))


def _i420_picture(planes: list[np.ndarray], size: tuple[int, int], format: str) -> Any:
    """4:2:0 limited-range planes reduced to ``size`` (even) as an I420 picture, then
    OpenCV's integer BT.601 conversion (each chroma sample for its 2x2 block, as FFmpeg's
    converter does): a third cheaper than reducing each chroma plane to the full size and
    converting in floating point. None for other layouts."""
    import cv2

    width, height = size
    luma, blue, red = planes
    half = ((luma.shape[0] + 1) // 2, (luma.shape[1] + 1) // 2)
    if width % 2 or height % 2 or blue.shape != half or red.shape != half:
        return None
    packed = np.empty((height * 3 // 2, width), dtype=np.uint8)
    cv2.resize(luma, size, dst=packed[:height], interpolation=cv2.INTER_LINEAR)
    quarter = (width // 2, height // 2)
    chroma = packed[height:].reshape(2, -1)  # U then V, each (height/2) x (width/2)
    for row, plane in zip(chroma, (blue, red)):
        row[:] = cv2.resize(plane, quarter, interpolation=cv2.INTER_LINEAR).ravel()
    code = cv2.COLOR_YUV2BGR_I420 if format == "bgr24" else cv2.COLOR_YUV2RGB_I420
    return cv2.cvtColor(packed, code)
