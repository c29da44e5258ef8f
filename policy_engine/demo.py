"""Everything the offline demo needs: a tiny checkpoint and a clip, made once."""

from __future__ import annotations

from pathlib import Path

from policy_engine.errors import MediaError

_DEMO_SEGMENTS = [(3.0, (200, 30, 30)), (4.0, (30, 160, 60)), (3.0, (40, 60, 200))]


def prepare_demo(workdir: Path, video: Path | None = None) -> tuple[Path, Path]:
    """(tiny model folder, clip): the shared sample trailer if present, else generated."""
    from policy_engine.media.synthetic import write_color_segments
    from policy_engine.models.tiny import make_tiny_clip

    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = workdir / "tiny-clip"
    if not (model_dir / "config.json").is_file():
        make_tiny_clip(model_dir)
    if video is not None:
        if not video.is_file():
            raise MediaError(video, "file not found")
        return model_dir, video
    clip = workdir / "demo-clip.mp4"
    if not clip.is_file():
        write_color_segments(clip, _DEMO_SEGMENTS, size=(320, 180))
    return model_dir, clip
