"""Which files are videos, by name: one list for `scan FOLDER` and the nightly ingest."""

from __future__ import annotations

VIDEO_PATTERNS: tuple[str, ...] = (
    "*.mp4", "*.m4v", "*.mov", "*.mxf", "*.mkv", "*.avi", "*.webm",
    "*.ts", "*.mts", "*.m2ts", "*.mpg", "*.mpeg", "*.wmv", "*.flv",
)  # fmt: skip
