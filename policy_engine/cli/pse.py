"""`pse`: the photosensitivity check of one video, without a model or a database."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from policy_engine.analysis.photosensitivity import PseResult
from policy_engine.cli.common import (
    ConfigOpt,
    EndOpt,
    JsonOpt,
    SecondsColumn,
    StartOpt,
    app,
    err,
    escape,
    fail,
    out,
)
from policy_engine.config import load_settings
from policy_engine.errors import ConfigError, PolicyEngineError
from policy_engine.media.timecode import format_timecode, parse_duration

VERDICT_STYLE = {"pass": "bold green", "warning": "bold yellow", "fail": "bold red"}


@app.command()
def pse(
    video: Annotated[Path, typer.Argument(help="Video file to check.")],
    area: Annotated[
        str | None,
        typer.Option(
            "--area",
            help="How the flashing area is measured: regions | frame (the whole-frame mean,"
            " as EA's IRIS) | wcag-field. \\[default: regions]",
        ),
    ] = None,
    display_peak: Annotated[
        float | None,
        typer.Option("--display-peak", help="Display white, cd/m². \\[default: 200]"),
    ] = None,
    full_size: Annotated[
        bool,
        typer.Option("--full-size", help="Measure the pictures as stored, not scaled to 160 wide."),
    ] = False,
    start: StartOpt = None,
    end: EndOpt = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 if the video fails the check.")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every frame for general flashes, red flashes and regular patterns (Ofcom
    rule 2.12, ITU-R BT.1702, WCAG 2.3.1): pass, warning or fail, with each failing
    interval."""
    from policy_engine.api import pse_settings
    from policy_engine.pipeline.photosensitivity import check_video

    try:
        settings = load_settings(
            {"pse_area": area, "pse_display_peak": display_peak}, config_file=config
        )
        window_start = parse_duration(start) if start is not None else 0.0
        window_end = parse_duration(end) if end is not None else None
        if window_end is not None and window_end <= window_start:
            raise ConfigError(f"--end ({end}) must be after --start ({start or 0})")
        check = pse_settings(settings)
        with _progress(enabled=not as_json and sys.stderr.isatty()) as progress:
            task = progress.add_task(escape(video.name), total=None)
            _, result = check_video(
                video, check, width=None if full_size else 160,
                start=window_start, end=window_end,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )  # fmt: skip
    except (PolicyEngineError, ValueError) as exc:
        raise fail(exc) from None
    if as_json:
        out.print_json(json.dumps({"path": str(video), **result.to_dict()}))
    else:
        _print(video, result)
    if strict and result.verdict == "fail":
        raise typer.Exit(1)


def _progress(*, enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), SecondsColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=not enabled,
    )  # fmt: skip


def _print(video: Path, result: PseResult) -> None:
    style = VERDICT_STYLE[result.verdict]
    out.print(
        f"{escape(str(video))}: [{style}]{result.verdict.upper()}[/]"
        f" ({result.frame_count:,} frames checked, area by {result.settings.area})",
        highlight=False,
    )
    worst = result.worst_second
    if worst is not None:
        out.print(
            f"worst second: {format_timecode(worst.start)}, {worst.luminance_transitions}"
            f" luminance and {worst.red_transitions} red transitions",
            highlight=False,
        )
    if not result.intervals:
        return
    table = Table("from", "to", "kind", "result", "flashes/s", "area", header_style="bold")
    for interval in result.intervals:
        table.add_row(
            format_timecode(interval.start),
            format_timecode(interval.end),
            interval.kind,
            interval.severity.upper() if interval.severity == "fail" else interval.severity,
            f"{interval.flashes_per_second:.1f}",
            f"{interval.area:.0%}",
        )
    out.print(table)
