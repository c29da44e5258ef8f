"""Every decoded frame, handed to the checks that need them all, from the sampler's own
decode pass: photosensitivity (flashes between key frames) and scene detection (cuts).

Each consumer says at what size and in which pixel format it wants the picture; a frame
is converted once per distinct (size, format, scaler) in one pass of FFmpeg's converter
(swscale), never twice at the same size, and the consumers of the same size share it.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policy_engine.media.yuv import MATRIX_CHOICES, reduced_picture

FORMATS = ("rgb24", "bgr24")  # bgr24: OpenCV's order, what PySceneDetect's detectors read
# reductions done plane by plane on 8-bit planar YUV (media/yuv.py), with the swscale
# scaler that stands in for each on other formats
PLANE_REDUCTIONS = {"AREA": "AREA", "LINEAR": "FAST_BILINEAR"}


@dataclass(frozen=True)
class PictureTap:
    """Every decoded frame of the window as a picture (uint8, height x width x 3), handed
    to ``receive(time, picture)`` by the same decode pass that samples: checks that need
    every frame cost a small conversion, not a second decode.

    ``width`` is the picture's width (its height follows the display aspect ratio), or
    with ``long_side`` its longer side (portrait video is reduced by its height, as
    PySceneDetect reduces frames); ``None`` keeps the stored size (for measurements that
    must match a reference tool pixel for pixel). AREA scaling averages what it shrinks,
    so a region's mean colour survives; FAST_BILINEAR is what matches OpenCV's
    ``INTER_LINEAR`` reduction, which PySceneDetect's thresholds were tuned on (AREA-scaled
    chroma gave hue jumps of 37 where OpenCV's picture gives 21 on a Sintel frame).
    ``format`` is ``rgb24`` or ``bgr24``."""

    receive: Callable[[float, np.ndarray], None]
    width: int | None = 320
    format: str = "rgb24"
    long_side: bool = False
    interpolation: str = "AREA"
    matrix: str = "tagged"  # or bt601: media.yuv.reduced_picture

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"picture format {self.format!r}: choose one of {FORMATS}")
        if self.matrix not in MATRIX_CHOICES:
            raise ValueError(f"colour matrix {self.matrix!r}: choose one of {MATRIX_CHOICES}")
        if self.width is not None and self.width < 1:
            raise ValueError(f"picture width must be at least 1, got {self.width}")


def as_taps(taps: PictureTap | Sequence[PictureTap] | None) -> tuple[PictureTap, ...]:
    if taps is None:
        return ()
    return (taps,) if isinstance(taps, PictureTap) else tuple(taps)


def tap_size(
    coded: tuple[int, int], sample_aspect_ratio: float, width: int, long_side: bool
) -> tuple[int, int]:
    """(width, height) of a tap's picture for a coded frame size, never larger than coded."""
    coded_w, coded_h = coded
    display_w = coded_w * sample_aspect_ratio
    if long_side and coded_h > display_w:  # portrait: the height is the long side
        height = min(width, coded_h)
        return max(1, round(height * coded_w / coded_h)), height
    scaled = min(width, coded_w)
    return scaled, max(1, round(scaled * coded_h / display_w))


class TapFanOut:
    """Hands one decoded frame to every tap, converting it once per (size, format)."""

    def __init__(self, taps: Sequence[PictureTap], sample_aspect_ratio: float) -> None:
        self.taps = tuple(taps)
        self._sar = sample_aspect_ratio
        self._sizes: dict[tuple[int, int, int | None, bool], tuple[int, int] | None] = {}

    def __bool__(self) -> bool:
        return bool(self.taps)

    def feed(self, frame: Any, time: float) -> None:
        pictures: dict[tuple[tuple[int, int] | None, str, str, str], np.ndarray] = {}
        for tap in self.taps:
            size = self._size(frame, tap)
            key = (size, tap.format, tap.interpolation, tap.matrix)
            picture = pictures.get(key)
            if picture is None:
                picture = pictures[key] = convert(
                    frame, size, tap.format, tap.interpolation, tap.matrix
                )
            tap.receive(time, picture)

    def _size(self, frame: Any, tap: PictureTap) -> tuple[int, int] | None:
        key = (frame.width, frame.height, tap.width, tap.long_side)
        if key not in self._sizes:  # one computation per geometry (it rarely changes)
            self._sizes[key] = (
                None
                if tap.width is None
                else tap_size((frame.width, frame.height), self._sar, tap.width, tap.long_side)
            )
        return self._sizes[key]


def convert(
    frame: Any,
    size: tuple[int, int] | None,
    format: str = "rgb24",
    interpolation: str = "AREA",
    matrix: str = "tagged",
) -> np.ndarray:
    """One decoded frame as a picture of ``size`` (None: as stored) in ``format``."""
    if size is not None and interpolation in PLANE_REDUCTIONS:
        # 8-bit planar YUV: each plane reduced by OpenCV, then only the small picture
        # converted: several times cheaper than swscale's reduction of the whole frame
        picture = reduced_picture(frame, size, format, interpolation, matrix)
        if picture is not None:
            return picture  # type: ignore[no-any-return]
    if size is None:
        return frame.to_ndarray(format=format)  # type: ignore[no-any-return]
    return frame.to_ndarray(  # type: ignore[no-any-return]
        width=size[0], height=size[1], format=format,
        interpolation=PLANE_REDUCTIONS.get(interpolation, interpolation),
    )  # fmt: skip


class ReceiverThread:
    """A tap's ``receive`` run in a thread of its own, in order, so that a check on every
    frame overlaps with decoding instead of adding to it. The queue is bounded: a slow
    check holds the decoder back rather than pictures piling up. The thread starts with
    the first picture (a file that cannot be opened leaves none behind). ``close()``
    waits for the queue to drain and re-raises, in the caller's thread, what ``receive``
    raised; ``close(abandon=True)``, for a scan that failed, drops the rest and raises
    nothing (the scan's own error is the one to report)."""

    _DONE = object()

    def __init__(
        self,
        receive: Callable[[float, np.ndarray], None],
        capacity: int = 64,
        niceness: int = 0,  # steps below the caller's priority (Linux)
    ) -> None:
        self.niceness = niceness
        self._receive = receive
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._error: BaseException | None = None
        self._thread: Any = None

    def receive(self, time: float, picture: np.ndarray) -> None:
        if self._error is not None:
            raise self._error  # stop decoding for a check that has already failed
        if self._thread is None:
            import threading

            self._thread = threading.Thread(target=self._run, name="policy-engine-tap")
            self._thread.daemon = True
            self._thread.start()
        while True:  # bounded waits: a check abandoned meanwhile must not block the decoder
            try:
                self._queue.put((time, picture), timeout=0.1)
                return
            except queue.Full:
                if self._error is not None:
                    raise self._error from None

    def close(self, *, abandon: bool = False) -> None:
        """Wait for every picture to be received (or, with ``abandon``, drop the rest);
        re-raise the first error unless abandoning."""
        if abandon:
            self._error = self._error or _Abandoned()
        if self._thread is not None:
            self._queue.put(self._DONE)
            self._thread.join()
            self._thread = None
        if not abandon and self._error is not None:
            raise self._error

    def _run(self) -> None:
        _lower_priority(self.niceness)
        while (item := self._queue.get()) is not self._DONE:
            if self._error is not None:
                continue  # failed or abandoned: drain without work, so put() never blocks
            try:
                self._receive(*item)
            except BaseException as exc:  # noqa: BLE001 - re-raised by close()/receive()
                self._error = exc


class _Abandoned(Exception):
    """close(abandon=True): the pictures still queued are dropped."""


def _lower_priority(niceness: int) -> None:
    """Lower the calling thread's scheduling priority by `niceness` steps from where it
    is (Linux schedules threads one by one: a thread's own id takes a niceness of its
    own); elsewhere, nothing. Never raises a priority, whatever the process's start."""
    if niceness <= 0:
        return
    import contextlib
    import os
    import threading

    # not Linux, or not allowed: the thread keeps the process's priority
    with contextlib.suppress(AttributeError, OSError):
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))
