"""`analyze` and `demo`: one video, no database."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from policy_engine.analysis.scoring import Category
from policy_engine.cli.common import (
    BatchSizeOpt,
    CategoryOpt,
    ConfigOpt,
    DeviceOpt,
    DtypeOpt,
    EndOpt,
    FastDecodeOpt,
    FpsOpt,
    FramingOpt,
    IntervalOpt,
    JsonOpt,
    MaxFramesOpt,
    ModelOpt,
    NullOpt,
    PseOpt,
    RulesOpt,
    RuntimeOpt,
    SamplingOpt,
    SecondsColumn,
    StartOpt,
    app,
    err,
    escape,
    fail,
    load_rulesets,
    model_app,
    out,
)
from policy_engine.config import Settings, load_settings
from policy_engine.errors import (
    ConfigError,
    PolicyEngineError,
)
from policy_engine.media.timecode import format_timecode


def _parse_categories(specs: list[str], null_names: list[str]) -> list[Category]:
    categories: list[Category] = []
    for spec in specs:
        name, sep, prompt_text = spec.partition("=")
        prompts = tuple(p.strip() for p in prompt_text.split(",") if p.strip())
        if not sep or not name.strip() or not prompts:
            raise ConfigError(
                f"--category {spec!r}: write NAME=prompt,prompt (e.g. 'computer=a laptop screen')"
            )
        categories.append(Category(name.strip(), prompts, null=name.strip() in null_names))
    unknown = set(null_names) - {c.name for c in categories}
    if unknown:
        raise ConfigError(f"--null names no --category: {', '.join(sorted(unknown))}")
    return categories


def _categories(specs: list[str] | None, nulls: list[str] | None) -> list[Category]:
    from policy_engine.policy.defaults import DEFAULT_CATEGORIES, with_null_category

    if not specs:
        return list(DEFAULT_CATEGORIES)
    categories, added = with_null_category(_parse_categories(specs, nulls or []))
    if added:
        err.print(
            f"note: no null category given; added '{categories[-1].name}' so that frames"
            " matching none of yours are not forced into one (mark one with --null).",
            highlight=False,
        )
    return categories


@app.command()
def analyze(
    video: Annotated[Path, typer.Argument(help="Video file to analyse.")],
    category: CategoryOpt = None,
    null: NullOpt = None,
    rules: RulesOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    runtime: RuntimeOpt = None,
    fps: FpsOpt = None,
    sampling: SamplingOpt = None,
    framing: FramingOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    max_frames: MaxFramesOpt = None,
    batch_size: BatchSizeOpt = None,
    interval: IntervalOpt = None,
    pse: PseOpt = None,
    fast_decode: FastDecodeOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    frames: Annotated[
        bool, typer.Option("--frames", help="With --json: per-frame probabilities.")
    ] = False,
) -> None:
    """Per-category coverage of one video: share of running time, first seen, runs."""
    try:
        settings = load_settings(
            {
                "model": model,
                "device": device,
                "dtype": dtype,
                "runtime": runtime,
                "fps": fps,
                "sampling": sampling,
                "framing": framing,
                "batch_size": batch_size,
                "interval": interval,
                "pse": pse,
                "fast_decode": fast_decode,
            },
            config_file=config,
        )
        rulesets: list[Any] = []
        if rules is not None:
            if category:
                raise ConfigError("give either --category or --rules, not both")
            from policy_engine.api import settings_for_ruleset

            rulesets = load_rulesets(rules)
            settings = settings_for_ruleset(settings, rulesets[0])
            categories = list(rulesets[0].categories)
        else:
            categories = _categories(category, null)
        result, decisions = _analyse_and_decide(
            video, categories, rulesets, settings, start, end, max_frames, as_json
        )
    except PolicyEngineError as exc:
        raise fail(exc) from None
    _report(result, decisions, as_json=as_json, frames=frames)


def _analyse_and_decide(
    video: Path,
    categories: list[Category],
    rulesets: list[Any],
    settings: Settings,
    start: str | None,
    end: str | None,
    max_frames: int | None,
    quiet: bool,
) -> tuple[Any, list[Any]]:
    """Analyse once; each rule set then decides on its own categories (see pipeline.decide)."""
    from policy_engine.api import analysis_options, load_detectors, load_embedder, load_xclip
    from policy_engine.pipeline import analyze_video, decide

    options = analysis_options(settings, start=start, end=end, max_frames=max_frames)
    with err.status(f"loading model {escape(settings.model)} …", spinner="dots"):
        embedder = load_embedder(settings)
        detectors = load_detectors(settings, rulesets)
        xclip = load_xclip(settings, rulesets)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        SecondsColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task(video.name, total=None)

        def update(done: float, total: float) -> None:
            progress.update(task, completed=done, total=total)

        result = analyze_video(
            video, categories, embedder, options, progress=update, detectors=detectors,
            xclip=xclip,
        )  # fmt: skip
    return result, decide(result, rulesets, embedder)


def _report(result: Any, decisions: list[Any], *, as_json: bool, frames: bool = False) -> None:
    from policy_engine.policy.evaluate import combine

    if as_json:
        data = result.to_dict(frames=frames)
        if decisions:
            data["decisions"] = [d.to_dict() for d in decisions]
            data["verdict"] = combine(decisions)
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    _print_result(result)
    for decision in decisions:
        _print_decision(decision)
    if len(decisions) > 1:
        verdict = combine(decisions)
        out.print(
            f"\n[bold]verdict over {len(decisions)} rule sets: {verdict['schedule']}[/]"
            f"{'; REVIEW REQUIRED' if verdict['review'] else ''}"
            f"{'; tags ' + ', '.join(verdict['tags']) if verdict['tags'] else ''}",
            highlight=False,
        )


def _print_result(result: Any) -> None:
    video, model, cov = result.video, result.model, result.coverage
    wall = result.timings["total_s"]
    out.print(f"[bold]{escape(str(video.path))}[/]", highlight=False)
    sampling = result.options.sampling
    rate = f" {sampling.fps:g}/s" if sampling.mode.value == "fps" else ""
    out.print(
        f"  {video.width}x{video.height} {video.codec}, {cov.running_time:.2f} s analysed,"
        f" {cov.frame_count} frames sampled ({sampling.mode.value}{rate},"
        f" {result.options.framing.value} framing)",
        highlight=False,
    )
    out.print(
        f"  model {model.name} ({model.weights_sha256[:19]}…) on {model.device_used}"
        f" (asked {model.device_asked}), {model.dtype}, {model.runtime};"
        f" {wall:.2f} s wall, {cov.running_time / wall if wall else 0:.1f}x real time",
        highlight=False,
    )
    table = Table(show_edge=False, header_style="bold")
    for column in ("category", "share", "seconds", "first seen", "last seen", "longest run"):
        table.add_column(column, justify="left" if column == "category" else "right")
    table.add_column("segments", justify="right")
    table.add_column("peak p", justify="right")
    for c in cov.categories.values():
        table.add_row(
            c.name + (" (null)" if c.null else ""),
            f"{100 * c.share:.1f}%",
            f"{c.seconds:.2f}",
            format_timecode(c.first_seen) if c.first_seen is not None else "-",
            format_timecode(c.last_seen) if c.last_seen is not None else "-",
            f"{c.longest_run:.2f} s",
            str(len(c.segments)),
            f"{c.peak_probability:.2f}",
        )
    out.print(table)
    if cov.intervals:
        labels = "  ".join(
            f"{format_timecode(i.start)[3:8]} {i.label or '-'}" for i in cov.intervals
        )
        out.print(f"[bold]dominant per {cov.interval_seconds:g} s:[/] {labels}", highlight=False)
    _print_flashes(result)


def _print_flashes(result: Any) -> None:
    check = result.photosensitivity
    if check is None:
        why = result.photosensitivity_skipped or "off (--no-pse)"
        out.print(f"[bold]photosensitivity:[/] not checked: {escape(why)}", highlight=False)
        return
    failing = [i for i in check.intervals if i.severity == "fail"]
    spans = ", ".join(
        f"{format_timecode(i.start)}-{format_timecode(i.end)} {i.kind}" for i in failing[:5]
    )
    out.print(
        f"[bold]photosensitivity:[/] {check.verdict.upper()} ({check.frame_count} frames)"
        + (f": {spans}" + (" …" if len(failing) > 5 else "") if failing else ""),
        highlight=False,
    )


def _print_decision(decision: Any) -> None:
    from policy_engine.media.timecode import format_timecode

    out.print(
        f"\n[bold]decision ({decision.ruleset} v{decision.ruleset_version},"
        f" {decision.ruleset_sha256[:19]}…):[/] [bold]{decision.schedule}[/]"
        f"{'; REVIEW REQUIRED' if decision.review else ''}"
        f"{'; tags ' + ', '.join(decision.tags) if decision.tags else ''}",
        highlight=False,
    )
    for slot in decision.slots:
        out.print(
            f"  {slot.territory}: {slot.window or slot.earliest} ({slot.timezone})", highlight=False
        )
    for warning in decision.warnings:
        out.print(f"  warning: {warning}", highlight=False)
    for title, reasons in (("fired", decision.reasons), ("near miss", decision.near_misses)):
        for reason in reasons:
            ref = f" [{reason.reference}]" if reason.reference else ""
            measured = "; ".join(m.describe() for m in reason.measurements)
            frames = ", ".join(
                f"{format_timecode(e.time)} p={e.probability:.2f}" for e in reason.evidence
            )
            out.print(f"  {title}: {reason.rule_id}{ref}: {measured}", highlight=False)
            if frames:
                out.print(f"    evidence: {frames}", highlight=False)


@model_app.command("make-tiny")
def make_tiny(
    directory: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to.")],
) -> None:
    """Write a tiny random-weight CLIP checkpoint (offline tests and demos)."""
    from policy_engine.models.tiny import make_tiny_clip

    path = make_tiny_clip(directory)
    out.print(f"tiny CLIP checkpoint written to {path} (random weights: labels mean nothing)")
