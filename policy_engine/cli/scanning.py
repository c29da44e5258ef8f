"""`scan` and `demo`: the main job over files, here or on a Ray cluster."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from policy_engine.cli.common import (
    BatchSizeOpt,
    ConfigOpt,
    CountColumn,
    DeviceOpt,
    DtypeOpt,
    EndOpt,
    ExecutorOpt,
    FastDecodeOpt,
    FpsOpt,
    FramingOpt,
    IntervalOpt,
    JsonOpt,
    MaxFramesOpt,
    ModelOpt,
    Paths,
    PseOpt,
    RayAddressOpt,
    ReportsOpt,
    RulesPathOpt,
    RuntimeOpt,
    SamplingOpt,
    StartOpt,
    Window,
    app,
    err,
    escape,
    fail,
    model_provider,
    open_store,
    out,
    rulesets_for,
    settings_for,
)  # fmt: skip
from policy_engine.config import Settings
from policy_engine.errors import ConfigError, PolicyEngineError
from policy_engine.workers.executor import executor_of


# -- scan -------------------------------------------------------------------------------------
class _ProgressListener:
    """Two bars on a terminal: files done, and seconds of the current file; while the
    model loads (seconds to minutes, before the first frame) the file's bar says so."""

    def __init__(self, progress: Progress) -> None:
        self.bars = progress
        self.files: TaskID = progress.add_task("files", total=None)
        self.current: TaskID | None = None
        self.current_name = ""

    def file_started(self, path: Path, index: int, total: int) -> None:
        self.bars.update(self.files, total=total, completed=index)
        if self.current is not None:
            self.bars.remove_task(self.current)
        self.current_name = escape(path.name[:50])
        self.current = self.bars.add_task(self.current_name, total=None)

    def model_loading(self, note: str | None) -> None:
        """Show ``note`` in place of the file's name (None: loaded, the name again); drawn
        at once, since a refresh could come only after the load."""
        if self.current is not None:
            shown = f"{self.current_name}: {escape(note)}" if note else self.current_name
            self.bars.update(self.current, description=shown, refresh=True)

    def progress(self, done: float, total: float) -> None:
        if self.current is not None:
            self.bars.update(self.current, completed=done, total=total)

    def file_finished(self, outcome: Any) -> None:
        self.bars.advance(self.files)
        mark = {"failed": "[red]failed[/]", "reused": "reused"}.get(outcome.status, "scanned")
        self.bars.console.print(f"{mark} {escape(outcome.path)}", highlight=False)


@app.command()
def scan(
    ctx: typer.Context,
    paths: Paths,
    rules: RulesPathOpt = None,
    reports: ReportsOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Scan again even if already scanned alike.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Exit 1 if any file failed (else 0 however many failed)."),
    ] = False,
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
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Scan videos: sample, classify, measure, decide against the rule sets, store, report.
    The categories are the rule sets' (see `analyze --category` for ad-hoc ones)."""
    from policy_engine.pipeline.scan import find_videos

    try:
        settings = settings_for(
            ctx,
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
                "executor": executor,
                "ray_address": ray_address,
                "reports": str(reports) if reports else None,
            },
            config,
        )
        rulesets = rulesets_for(settings, rules)
        files = find_videos(
            paths,
            outside_links=settings.outside_links,
            on_error=lambda problem: err.print(f"warning: {problem}", markup=False),
        )
        if not files:
            raise ConfigError(f"no video files in {', '.join(map(str, paths))}")
        outcomes = scan_files(
            settings,
            rulesets,
            files,
            force=force,
            quiet=as_json,
            window=Window(start, end, max_frames),
        )
    except PolicyEngineError as exc:
        raise fail(exc) from None
    if as_json:
        sys.stdout.write(json.dumps([o.to_dict() for o in outcomes], indent=2, default=str) + "\n")
    else:
        _print_scan_summary(outcomes, Path(settings.reports))
    if strict and any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


def scan_files(
    settings: Settings,
    rulesets: list[Any],
    files: list[Path],
    *,
    force: bool,
    quiet: bool,
    window: Window | None = None,
) -> list[Any]:
    """The main job over ``files`` with a progress display (used by `scan` and `demo`)."""
    from policy_engine.api import analysis_options, settings_for_ruleset
    from policy_engine.reporting import write_run_summary

    settings = settings_for_ruleset(settings, rulesets[0])
    options = analysis_options(settings, **asdict(window or Window()))
    on_cluster = executor_of(settings) == "ray"
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        CountColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
        transient=True,
    )
    started = datetime.now(UTC)
    store = None if on_cluster else open_store(settings)  # the cluster's driver opens its own
    try:
        with progress:
            if store is None:
                window_options = asdict(window or Window())
                outcomes = _scan_on_cluster(
                    settings, rulesets, files, force, window_options, progress
                )
            else:
                outcomes = _scan_here(settings, rulesets, files, force, progress, store, options)
        from policy_engine.pipeline.search import update_indexes

        store = store or open_store(settings)
        for problem in update_indexes(store, settings, outcomes):
            err.print(f"warning: {problem}", markup=False)
    finally:
        if store is not None:
            store.close()
    for outcome in outcomes:
        if outcome.report_error:
            err.print(f"warning: {outcome.path}: {outcome.report_error}", markup=False)
    try:
        summary = write_run_summary(outcomes, Path(settings.reports), started=started)
    except OSError as exc:  # the scans and decisions are stored all the same
        err.print(f"warning: the run summary could not be written: {exc}", markup=False)
    else:
        err.print(f"run summary: {summary}", highlight=False, markup=False)
    return outcomes


def _scan_here(
    settings: Settings,
    rulesets: list[Any],
    files: list[Path],
    force: bool,
    progress: Progress,
    store: Any,
    options: Any,
) -> list[Any]:
    from policy_engine.pipeline.scan import Scanner

    listener = _ProgressListener(progress)
    scanner = Scanner(
        store,
        rulesets,
        model_provider(settings, on_loading=listener.model_loading),
        options,
        reports_dir=Path(settings.reports),
        force=force,
        listener=listener,  # type: ignore[arg-type]
    )
    return scanner.scan(files)


def _scan_on_cluster(
    settings: Settings,
    rulesets: list[Any],
    files: list[Path],
    force: bool,
    window: dict[str, Any],
    progress: Progress,
) -> list[Any]:
    """One bar over the whole batch, advanced as the cluster's results come in."""
    from policy_engine.workers.cluster_scan import scan_on_cluster

    bar = progress.add_task("files (Ray)", total=len(files))

    def finished(outcome: Any) -> None:
        progress.advance(bar)
        mark = {"failed": "[red]failed[/]", "reused": "reused"}.get(outcome.status, "scanned")
        progress.console.print(f"{mark} {escape(outcome.path)}", highlight=False)

    return scan_on_cluster(
        settings, rulesets, files, force=force, window=window, on_result=finished
    )


def _print_scan_summary(outcomes: list[Any], reports: Path) -> None:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("file", no_wrap=True)  # a path is an identifier: never broken
    for column in ("status", "verdict", "tags", "review", "time"):
        table.add_column(column, justify="right" if column == "time" else "left")
    for o in outcomes:
        verdict = o.verdict
        table.add_row(
            escape(o.path),
            o.status,
            verdict["schedule"] if verdict else f"[red]{escape(o.error or '')}[/]",
            escape(", ".join(verdict["tags"])) if verdict else "",
            "REVIEW" if verdict and verdict["review"] else "",
            f"{o.seconds:.1f} s",
        )
    out.print(table)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("scanned", "reused", "failed")}
    out.print(
        f"{len(outcomes)} file(s): {counts['scanned']} scanned, {counts['reused']} reused"
        f" (already scanned alike; --force to redo), {counts['failed']} failed."
        f" Reports in {reports}/",
        highlight=False,
        markup=False,
    )


@app.command()
def demo(
    ctx: typer.Context,
    workdir: Annotated[
        Path, typer.Option(help="Where the demo's model, ingest folder and database go.")
    ] = Path(".demo"),
    video: Annotated[
        Path | None, typer.Argument(help="A video. \\[default: generated ones]")
    ] = None,
) -> None:
    """The main job, offline: a tiny model scans generated trailers (and a broken file)
    into a database, decides against the rules (the shipped rule sets unless configured)
    and writes the reports."""
    from policy_engine.demo import prepare_demo

    try:
        model_dir, files = prepare_demo(workdir, video)
        settings = settings_for(ctx, {"model": str(model_dir)}, None)
        if settings.source_of("db") == "default":
            settings = replace(settings, db=f"sqlite:///{workdir / 'policy-engine.sqlite'}")
        err.print(
            f"demo: tiny random-weight model at {model_dir} (labels mean nothing); real use:"
            " policy-engine scan INGEST --model openai/clip-vit-base-patch32 (see README)",
            highlight=False,
            markup=False,
        )
        rulesets = rulesets_for(settings, None)
        outcomes = scan_files(settings, rulesets, files, force=False, quiet=False)
    except PolicyEngineError as exc:
        raise fail(exc) from None
    _print_scan_summary(outcomes, Path(settings.reports))
    out.print(
        f"database {settings.db}: try `policy-engine --db {settings.db} history`",
        highlight=False,
        markup=False,
    )
