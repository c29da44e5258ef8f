"""Probe a video: container-level facts without decoding it (PyAV), and opening one with
a readable reason for every way a file can fail to be a video.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from policy_engine.errors import MediaError


@dataclass(frozen=True)
class VideoInfo:
    path: str
    size_bytes: int
    container: str
    duration: float | None  # seconds, as declared by the container/stream
    fps: float | None  # the stream's declared average frame rate (containers can be wrong)
    guessed_fps: float | None  # FFmpeg's guess from the timestamps (r_frame_rate)
    width: int
    height: int
    codec: str
    rotation: int  # display rotation, degrees counter-clockwise
    sample_aspect_ratio: float
    has_audio: bool
    frame_count: int | None  # as declared; None when the container does not say

    @property
    def display_size(self) -> tuple[int, int]:
        w = round(self.width * self.sample_aspect_ratio)
        return (self.height, w) if round(self.rotation / 90) % 2 else (w, self.height)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise MediaError(path, "file not found")
    if path.is_dir():
        raise MediaError(path, "is a folder, not a video file")
    if not os.access(path, os.R_OK):
        raise MediaError(path, "cannot be read: permission denied")
    if path.stat().st_size == 0:
        raise MediaError(
            path, "file is empty (0 bytes): probably still being copied or a failed transfer"
        )


def _open(path: Path) -> Any:
    _check_readable(path)
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise MediaError(path, f"not a readable video file ({_ffmpeg_message(exc)})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise MediaError(path, f"cannot be opened: {exc}") from exc


def _ffmpeg_message(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":", 1)[0] if "Errno" in text else text


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise MediaError(path, f"contains no video stream (streams found: {', '.join(kinds)})")
    return container.streams.video[0]


def _rate(value: Fraction | None) -> float | None:
    return float(value) if value else None


def _origin_seconds(container: Any) -> float:
    """The container's start (seconds): times are measured from it, as players show them."""
    start = container.start_time
    return start / av.time_base if start not in (None, 0) else 0.0


def _declared_duration(container: Any, stream: Any) -> float | None:
    if container.duration:
        return container.duration / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def probe(path: str | Path) -> VideoInfo:
    """Container-level facts about a video, without decoding it. Raises MediaError."""
    path = Path(path)
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        ctx = stream.codec_context
        sar = ctx.sample_aspect_ratio
        return VideoInfo(
            path=str(path),
            size_bytes=path.stat().st_size,
            container=container.format.name,
            duration=_declared_duration(container, stream),
            fps=_rate(stream.average_rate) or _rate(stream.guessed_rate),
            guessed_fps=_rate(stream.guessed_rate),
            width=ctx.width,
            height=ctx.height,
            codec=ctx.name,
            rotation=_first_frame_rotation(container, stream),
            sample_aspect_ratio=float(sar) if sar else 1.0,
            has_audio=bool(container.streams.audio),
            frame_count=stream.frames or None,
        )
    finally:
        container.close()


def _first_frame_rotation(container: Any, stream: Any) -> int:
    """Display rotation (the display matrix travels as frame side data: read one frame)."""
    try:
        for frame in container.decode(stream):
            return int(frame.rotation or 0)
    except av.FFmpegError:
        pass  # an undecodable file is reported by the sampler, with its reason
    return 0
