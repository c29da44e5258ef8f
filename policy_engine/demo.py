"""Everything the offline demo needs, made once: a tiny checkpoint and an ingest folder
with two generated trailers and one broken file (to show that a bad file fails alone)."""

from __future__ import annotations

from pathlib import Path

from policy_engine.errors import MediaError

_DEMO_CLIPS = {
    "demo-trailer.mp4": [(3.0, (200, 30, 30)), (4.0, (30, 160, 60)), (3.0, (40, 60, 200))],
    "demo-nature.mp4": [(5.0, (30, 160, 60)), (3.0, (40, 60, 200))],
}


def prepare_demo(workdir: Path, video: Path | None = None) -> tuple[Path, list[Path]]:
    """(tiny model folder, files to scan): the given video, else the demo ingest folder."""
    from policy_engine.media.synthetic import write_color_segments
    from policy_engine.models.tiny import make_tiny_clip

    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = workdir / "tiny-clip"
    if not (model_dir / "config.json").is_file():
        make_tiny_clip(model_dir)
    if video is not None:
        if not video.is_file():
            raise MediaError(video, "file not found")
        return model_dir, [video]
    ingest = workdir / "ingest"
    ingest.mkdir(exist_ok=True)
    for name, segments in _DEMO_CLIPS.items():
        if not (ingest / name).is_file():
            write_color_segments(ingest / name, segments, size=(320, 180))
    broken = ingest / "broken-transfer.mp4"
    if not broken.is_file():
        broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))  # a header, no video
    return model_dir, sorted(ingest.iterdir())
