"""Sample a video's frames by presentation time (PyAV); probing is in media/probe.py.

Why PyAV and not supervision/OpenCV: OpenCV's frame generator yields no timestamps and
decodes every frame it skips anyway; PyAV gives each frame's pts and time base, FFmpeg's
frame threading, and a converter (swscale) that resizes while it converts colour, so only
the frames we keep are converted, straight to the model's input size.

Time contract: a frame's time is its presentation timestamp (pts x time_base), measured
from the container's start, never index / nominal fps. Decoders emit frames in
presentation order; some containers (AVI with B-frames) carry decode-order timestamps
that the decoder hands out shuffled, so timestamps are re-sorted through a small window
(``_PtsReorder``): for well-formed streams that is the identity.
"""

from __future__ import annotations

import heapq
import io
import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
from PIL import Image

from policy_engine.errors import MediaError
from policy_engine.media.framing import FramePlan, Framing, apply_plan, plan_framing
from policy_engine.media.probe import (
    VideoInfo,
    _ffmpeg_message,
    _open,
    _origin_seconds,
    _rate,
    _video_stream,
    probe,
)
from policy_engine.media.scene_sampling import SceneChooser
from policy_engine.media.taps import PictureTap, TapFanOut, as_taps, convert, tap_size

__all__ = [
    "FrameSampler", "PictureTap", "SampledFrame", "SamplingMode", "SamplingSpec", "VideoInfo",
    "probe",
]  # fmt: skip

# Decoders may emit frames up to this many frames "early" with respect to the (wrong)
# timestamps of a decode-order container; H.264 reorder depth is at most 16.
_REORDER_DEPTH = 16
# A stream that ends this much before its declared duration is reported as truncated.
_TRUNCATION_TOLERANCE_S = 1.0
_TRUNCATION_TOLERANCE_FRACTION = 0.05


class SamplingMode(str, Enum):
    FPS = "fps"  # one frame per 1/fps seconds of presentation time (nearest frame)
    ALL = "all"  # every decoded frame
    KEYFRAMES = "keyframes"  # decode keyframes only (fast; irregular times are fine)
    # the middle of every scene (and one per scene_gap seconds of a long one), at most fps
    # frames a second: needs a scene detector on the same decode (see scene_sampling.py)
    SCENES = "scenes"


@dataclass(frozen=True)
class SamplingSpec:
    mode: SamplingMode = SamplingMode.FPS
    fps: float = 2.0
    start: float = 0.0
    end: float | None = None
    max_frames: int | None = None
    scene_gap: float = 10.0  # scenes mode: a long scene gets one frame per this many seconds
    # fps mode: FFmpeg skips non-reference frames (skip_frame=NONREF): decoding is faster,
    # and a sample may be a frame or two further from its target (the scan records by how
    # much); checks that need every frame cannot run with it
    fast_decode: bool = False

    def __post_init__(self) -> None:
        rated = self.mode in (SamplingMode.FPS, SamplingMode.SCENES)
        if rated and not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"sampling fps must be a positive number, got {self.fps!r}")
        if not (self.scene_gap > 0 and math.isfinite(self.scene_gap)):
            raise ValueError(f"scene gap must be a positive number of seconds: {self.scene_gap}")
        if self.start < 0:
            raise ValueError(f"sampling start must be >= 0 s, got {self.start}")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"sampling end ({self.end} s) must be after start ({self.start} s)")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max frames must be at least 1, got {self.max_frames}")
        if self.fast_decode and self.mode is not SamplingMode.FPS:
            raise ValueError(
                f"fast decoding is for fps sampling; {self.mode.value} sampling needs every"
                " frame (or, for keyframes, decodes key frames only already)"
            )

    def describe(self) -> dict[str, Any]:
        rated = self.mode in (SamplingMode.FPS, SamplingMode.SCENES)
        described = {
            "mode": self.mode.value,
            "fps": self.fps if rated else None,
            "start": self.start,
            "end": self.end,
            "max_frames": self.max_frames,
        }
        if self.mode is SamplingMode.SCENES:  # only here: other scans keep their reuse key
            described["scene_gap"] = self.scene_gap
        if self.fast_decode:  # likewise: exact scans keep theirs
            described["decode"] = "fast (skip_frame=NONREF)"
        return described


@dataclass
class SampledFrame:
    index: int  # order among sampled frames
    time: float  # presentation time, seconds from the start of the video
    pts: int | None
    pixels: np.ndarray  # (crops, size, size, 3) uint8, ready for the model
    thumbnail: bytes | None = None  # JPEG of the whole picture, display orientation
    # the whole picture as RGB (long side ``picture_size``, display orientation), for
    # object detectors; None unless asked for
    picture: np.ndarray | None = None
    # scenes sampling: where the time this frame stands for starts (its scene's cut, or its
    # part of a long scene), so coverage stays time-weighted; None: at its own time
    stands_from: float | None = None
    # fps and all sampling with scene detection: the cuts the detector reported since the
    # previous sampled frame (times ascending; a cut may be reported a little late)
    cuts: tuple[float, ...] = ()


class CutSource(Protocol):
    """A scene detector fed by the sampler's decode pass: its ``tap`` sees every frame;
    ``take_cuts`` hands over the cut times found since it was last asked (a detector may
    report a cut a few frames late); ``finish`` says the stream has ended."""

    @property
    def tap(self) -> PictureTap: ...

    def start(self, info: VideoInfo) -> None: ...

    def take_cuts(self) -> list[float]: ...

    def finish(self) -> list[float]: ...


class _PtsReorder:
    """Pairs frames (in presentation order) with their sorted timestamps.

    Frames go in as decoded; they come out delayed by up to ``depth`` frames, each with
    the smallest timestamp not yet handed out. For monotonic streams this changes nothing.
    """

    def __init__(self, depth: int = _REORDER_DEPTH) -> None:
        self._depth = depth
        self._frames: deque[Any] = deque()
        self._pts: list[int] = []
        self.reordered = False
        self._last_in: int | None = None

    def push(self, frame: Any, pts: int) -> Iterator[tuple[Any, int]]:
        if self._last_in is not None and pts < self._last_in:
            self.reordered = True
        self._last_in = pts
        self._frames.append(frame)
        heapq.heappush(self._pts, pts)
        if len(self._frames) > self._depth:
            yield self._frames.popleft(), heapq.heappop(self._pts)

    def flush(self) -> Iterator[tuple[Any, int]]:
        while self._frames:
            yield self._frames.popleft(), heapq.heappop(self._pts)


@dataclass
class SamplingSummary:
    """What decoding found out, filled in as the sampler runs."""

    decoded_frames: int = 0
    sampled_frames: int = 0
    first_time: float | None = None
    end_time: float | None = None  # end of the last decoded frame (its time + duration)
    timestamps_reordered: bool = False
    missing_timestamps: int = 0
    stopped_early: bool = False  # max_frames reached before the end of the video
    keyframes_only: bool = False  # only keyframes were decoded
    nonref_skipped: bool = False  # non-reference frames were not decoded (fast decoding)
    largest_offset: float = 0.0  # fps sampling: the furthest a sample is from its target, s
    plans: list[FramePlan] = field(default_factory=list)

    @property
    def measured_fps(self) -> float | None:
        """Frame rate measured from the decoded timestamps (every-frame decoding only)."""
        if self.keyframes_only or self.decoded_frames < 2:
            return None
        if self.first_time is None or self.end_time is None:
            return None
        return self.decoded_frames / (self.end_time - self.first_time)


class FrameSampler:
    """Iterates over the sampled frames of one video; ``summary`` is complete afterwards.

    Decoding runs with FFmpeg's frame+slice threading; only sampled frames are converted,
    and the converter resizes them to the model's input size in the same pass.
    """

    def __init__(
        self,
        path: str | Path,
        spec: SamplingSpec,
        *,
        size: int,
        framing: Framing = Framing.LETTERBOX,
        pad_value: tuple[int, int, int] = (0, 0, 0),
        decode_threads: int = 0,
        thumbnail_size: int = 0,
        every_frame: PictureTap | Sequence[PictureTap] | None = None,
        cuts: CutSource | None = None,
        picture_size: int = 0,
    ) -> None:
        """``every_frame``: the taps that see every decoded frame of the window (each
        picture converted once per size and format); ``cuts``: a scene detector fed the
        same way, required by ``scenes`` sampling; ``picture_size``: each sampled frame
        also as an RGB picture of that long side (for object detectors; 0: none)."""
        self.path = Path(path)
        self.spec = spec
        self.size = size
        self.framing = framing
        self.pad_value = pad_value
        self.decode_threads = decode_threads
        self.thumbnail_size = thumbnail_size  # long side in pixels; 0: no thumbnails
        self.picture_size = picture_size
        self.summary = SamplingSummary()
        self.info = probe(self.path)
        self._plans: dict[tuple[int, int, int], FramePlan] = {}
        if spec.mode is SamplingMode.SCENES and cuts is None:
            raise ValueError("scenes sampling needs a scene detector (cuts)")
        self.cuts = cuts
        taps = as_taps(every_frame) + ((cuts.tap,) if cuts is not None else ())
        self._taps = TapFanOut(taps, self.info.sample_aspect_ratio)
        if cuts is not None:
            cuts.start(self.info)

    # -- public -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[SampledFrame]:
        container = _open(self.path)
        try:
            stream = _video_stream(container, self.path)
            self._configure(stream)
            if self.spec.mode is SamplingMode.SCENES:
                yield from self._sample_scenes(container, stream)
            else:
                yield from self._sample(container, stream)
                if self.cuts is not None:
                    self.cuts.finish()
        finally:
            container.close()
        self._check_complete()

    def pictures(self, width: int | None = 160) -> Iterator[tuple[float, np.ndarray]]:
        """Every decoded frame of the window as an RGB picture, with its time, and nothing
        sampled for a model: for checks that need every frame and no model."""
        container = _open(self.path)
        try:
            stream = _video_stream(container, self.path)
            self._configure(stream)
            for frame, time in self._timed_frames(container, stream):
                if time < self.spec.start - 1e-9:
                    continue
                if self.spec.end is not None and time >= self.spec.end:
                    break
                self._note_time(frame, time, stream)
                yield time, self._picture(frame, width)
        finally:
            container.close()
        self._check_complete()

    @property
    def window_end(self) -> float:
        """End of the analysed window: the video's end, or the spec's end if earlier."""
        end = self.summary.end_time
        if end is None or (self.summary.stopped_early and self.info.duration):
            end = self.info.duration or 0.0
        return min(end, self.spec.end) if self.spec.end is not None else end

    # -- decoding -----------------------------------------------------------------------
    def _configure(self, stream: Any) -> None:
        stream.thread_type = "AUTO"
        if self.decode_threads:
            stream.thread_count = self.decode_threads
        if self.spec.mode is SamplingMode.KEYFRAMES:
            stream.codec_context.skip_frame = "NONKEY"
            self.summary.keyframes_only = True
        if self.spec.fast_decode:
            if self._taps:
                raise ValueError("fast decoding skips frames that every-frame checks must see")
            stream.codec_context.skip_frame = "NONREF"
            self.summary.nonref_skipped = True

    def _timed_frames(self, container: Any, stream: Any) -> Iterator[tuple[Any, float]]:
        """Decoded frames with their presentation time, in presentation order."""
        time_base = stream.time_base
        origin = _origin_seconds(container)
        reorder = _PtsReorder()
        fallback_step = 1.0 / (_rate(stream.average_rate) or _rate(stream.guessed_rate) or 25.0)
        last_pts: int | None = None
        if self.spec.start > 0:
            self._seek(container, stream, origin)
        try:
            for frame in container.decode(stream):
                self.summary.decoded_frames += 1
                pts = frame.pts
                if pts is None:  # no timestamp at all: continue the sequence
                    self.summary.missing_timestamps += 1
                    step = round(fallback_step / time_base)
                    pts = (last_pts + step) if last_pts is not None else 0
                last_pts = pts
                for ready, ready_pts in reorder.push(frame, pts):
                    yield ready, float(ready_pts * time_base) - origin
                if self._past_end(float(pts * time_base) - origin - _REORDER_DEPTH * fallback_step):
                    break
        except av.FFmpegError as exc:
            raise MediaError(
                self.path,
                f"decoding failed after {self.summary.decoded_frames} frames"
                f" ({_ffmpeg_message(exc)}); the file is probably corrupt or truncated",
            ) from exc
        for ready, ready_pts in reorder.flush():
            yield ready, float(ready_pts * time_base) - origin
        self.summary.timestamps_reordered = reorder.reordered

    def _seek(self, container: Any, stream: Any, origin: float) -> None:
        # Seek to the keyframe before the window start; frames before it are dropped.
        target = int((self.spec.start + origin) / stream.time_base)
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except av.FFmpegError:
            container.seek(0)

    def _past_end(self, time: float) -> bool:
        return self.spec.end is not None and time > self.spec.end

    def _frame_duration(self, frame: Any, stream: Any) -> float:
        if frame.duration:
            return float(frame.duration * stream.time_base)
        rate = _rate(stream.average_rate) or _rate(stream.guessed_rate)
        return 1.0 / rate if rate else 0.0

    # -- sampling -----------------------------------------------------------------------
    def _sample(self, container: Any, stream: Any) -> Iterator[SampledFrame]:
        spec = self.spec
        spacing = self._min_spacing()
        next_target = spec.start
        previous: tuple[Any, float] | None = None
        last_emitted_time: float | None = None

        def emit(frame: Any, time: float) -> SampledFrame:
            nonlocal last_emitted_time
            last_emitted_time = time
            sampled = SampledFrame(
                index=self.summary.sampled_frames,
                time=time,
                pts=frame.pts,
                pixels=self._convert(frame),
                thumbnail=self._thumbnail(frame) if self.thumbnail_size else None,
                picture=self._display(frame, self.picture_size) if self.picture_size else None,
                cuts=tuple(self.cuts.take_cuts()) if self.cuts is not None else (),
            )
            self.summary.sampled_frames += 1
            return sampled

        for frame, time in self._timed_frames(container, stream):
            if time < spec.start - 1e-9 and spec.mode is not SamplingMode.FPS:
                continue
            if spec.end is not None and time >= spec.end:
                break
            self._note_time(frame, time, stream)
            if self._taps and time >= spec.start - 1e-9:
                self._taps.feed(frame, time)
            if spec.mode is SamplingMode.FPS:
                # For each target time passed, keep whichever neighbour is nearer.
                while next_target <= time and self._room_for_more():
                    chosen = self._nearest(previous, (frame, time), next_target)
                    offset = abs(chosen[1] - next_target)
                    next_target += spacing
                    fresh = chosen[1] != last_emitted_time  # fps above the frame rate
                    if fresh and chosen[1] >= spec.start - 0.5 * spacing:
                        summary = self.summary
                        summary.largest_offset = max(summary.largest_offset, offset)
                        yield emit(*chosen)
                previous = (frame, time)
            elif self._room_for_more() and time >= next_target - 1e-9:
                yield emit(frame, time)
                if spacing > 0:  # max_frames: keep to a grid so spacing does not drift
                    next_target = (
                        spec.start + (math.floor((time - spec.start) / spacing) + 1) * spacing
                    )
            if not self._room_for_more():
                self.summary.stopped_early = True
                break
        # Targets after the last frame but inside the video: the last frame stands for them.
        if (
            spec.mode is SamplingMode.FPS
            and previous is not None
            and previous[1] != last_emitted_time
            and self._room_for_more()
            and next_target < self.window_end
        ):
            yield emit(*previous)

    def _sample_scenes(self, container: Any, stream: Any) -> Iterator[SampledFrame]:
        """The middle of each scene the cut source finds, from the same decode pass."""
        spec, cuts = self.spec, self.cuts
        assert cuts is not None
        chooser = SceneChooser(spec.start, 1.0 / spec.fps, spec.scene_gap)
        for frame, time in self._timed_frames(container, stream):
            if time < spec.start - 1e-9:
                continue
            if spec.end is not None and time >= spec.end:
                break
            self._note_time(frame, time, stream)
            self._taps.feed(frame, time)
            for cut in cuts.take_cuts():
                if cut > chooser.scene_start + 1e-9:
                    yield from self._numbered(chooser.cut(cut))
            if not self._room_for_more():
                self.summary.stopped_early = True
                return
            if chooser.wants(time):
                chooser.keep(time, self._sampled(frame, time))
        for cut in cuts.finish():
            if cut > chooser.scene_start + 1e-9:
                yield from self._numbered(chooser.cut(cut))
        yield from self._numbered(chooser.finish(self.window_end))

    def _sampled(self, frame: Any, time: float) -> SampledFrame:
        """A frame converted for the model (numbered when it is chosen)."""
        thumbnail = self._thumbnail(frame) if self.thumbnail_size else None
        picture = self._display(frame, self.picture_size) if self.picture_size else None
        return SampledFrame(-1, time, frame.pts, self._convert(frame), thumbnail, picture)

    def _numbered(self, chosen: list[tuple[SampledFrame, float]]) -> Iterator[SampledFrame]:
        for sampled, stands_from in chosen:
            if not self._room_for_more():
                self.summary.stopped_early = True
                return
            sampled.stands_from = stands_from
            sampled.index = self.summary.sampled_frames
            self.summary.sampled_frames += 1
            yield sampled

    def _note_time(self, frame: Any, time: float, stream: Any) -> None:
        s = self.summary
        if s.first_time is None:
            s.first_time = time
        end = time + self._frame_duration(frame, stream)
        s.end_time = end if s.end_time is None else max(s.end_time, end)

    @staticmethod
    def _nearest(
        previous: tuple[Any, float] | None, current: tuple[Any, float], target: float
    ) -> tuple[Any, float]:
        if previous is None:
            return current
        return previous if abs(previous[1] - target) <= abs(current[1] - target) else current

    def _min_spacing(self) -> float:
        """Seconds between samples: 1/fps, widened so that max_frames spans the window."""
        spec = self.spec
        spacing = 1.0 / spec.fps if spec.mode is SamplingMode.FPS else 0.0
        if spec.max_frames:
            end = spec.end if spec.end is not None else self.info.duration
            if end:
                spacing = max(spacing, (end - spec.start) / spec.max_frames)
        return spacing

    def _room_for_more(self) -> bool:
        return self.spec.max_frames is None or self.summary.sampled_frames < self.spec.max_frames

    def _convert(self, frame: Any) -> np.ndarray:
        plan = self._plan_for(frame)
        scaled = frame.to_ndarray(
            width=plan.scaled_width,
            height=plan.scaled_height,
            format="rgb24",
            interpolation="AREA",
        )
        return apply_plan(plan, scaled)

    def _picture(self, frame: Any, width: int | None) -> np.ndarray:
        """The frame as RGB, ``width`` wide at its display aspect ratio (None: as stored)."""
        size = None
        if width is not None:
            sar = self.info.sample_aspect_ratio
            size = tap_size((frame.width, frame.height), sar, width, long_side=False)
        return convert(frame, size)

    def _thumbnail(self, frame: Any) -> bytes:
        """The whole picture, long side ``thumbnail_size``, as a JPEG (evidence for
        reviewers: what was on screen, not the model's letterboxed square)."""
        buffer = io.BytesIO()
        Image.fromarray(self._display(frame, self.thumbnail_size)).save(buffer, "JPEG", quality=80)
        return buffer.getvalue()

    def _display(self, frame: Any, long_side: int) -> np.ndarray:
        """The whole picture as shown (display aspect and orientation), RGB, its long side
        ``long_side``."""
        plan = plan_framing(
            frame.width,
            frame.height,
            long_side,
            Framing.LETTERBOX,
            sample_aspect_ratio=self.info.sample_aspect_ratio,
            rotation_degrees=frame.rotation or self.info.rotation,
        )
        scaled = frame.to_ndarray(
            width=plan.scaled_width, height=plan.scaled_height, format="rgb24"
        )
        picture = np.rot90(scaled, k=plan.quarter_turns) if plan.quarter_turns else scaled
        return np.ascontiguousarray(picture)

    def _plan_for(self, frame: Any) -> FramePlan:
        rotation = frame.rotation or self.info.rotation
        key = (frame.width, frame.height, rotation)
        plan = self._plans.get(key)  # one plan per picture geometry (it rarely changes)
        if plan is not None:
            return plan
        plan = plan_framing(
            frame.width,
            frame.height,
            self.size,
            self.framing,
            sample_aspect_ratio=self.info.sample_aspect_ratio,
            rotation_degrees=rotation,
            pad_value=self.pad_value,
        )
        self._plans[key] = plan
        self.summary.plans.append(plan)
        return plan

    def _check_complete(self) -> None:
        s = self.summary
        if s.decoded_frames == 0:
            raise MediaError(
                self.path, "no frame could be decoded: the file is corrupt, truncated or empty"
            )
        declared = self.info.duration
        if self.spec.mode is SamplingMode.KEYFRAMES:
            # Only keyframes were decoded: the last one says nothing about where the video
            # ends, so the declared duration is the end.
            if declared is not None:
                s.end_time = max(s.end_time or 0.0, declared)
            return
        if self.spec.end is not None or s.stopped_early or declared is None or s.end_time is None:
            return
        tolerance = max(_TRUNCATION_TOLERANCE_S, _TRUNCATION_TOLERANCE_FRACTION * declared)
        if s.end_time < declared - tolerance:
            raise MediaError(
                self.path,
                f"truncated: frames end at {s.end_time:.2f} s of a declared {declared:.2f} s;"
                " the copy is probably incomplete",
            )
