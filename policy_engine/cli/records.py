"""The commands that use the database: `scan`, `reevaluate`, `rules diff`, `history`,
`show`, `override` and `db …`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from policy_engine.accounts import local_operator
from policy_engine.cli.common import (
    BatchSizeOpt,
    ConfigOpt,
    CountColumn,
    DeviceOpt,
    DtypeOpt,
    EndOpt,
    FpsOpt,
    FramingOpt,
    IntervalOpt,
    JsonOpt,
    MaxFramesOpt,
    ModelOpt,
    PseOpt,
    RuntimeOpt,
    SamplingOpt,
    StartOpt,
    Window,
    app,
    db_app,
    err,
    escape,
    fail,
    load_rulesets,
    open_store,
    out,
    rules_app,
    settings_for,
)
from policy_engine.config import Settings
from policy_engine.errors import ConfigError, PolicyEngineError
from policy_engine.escaping import visible_controls
from policy_engine.hashing import text_matches, text_sha256
from policy_engine.media.timecode import format_timecode
from policy_engine.policy.evaluate import Measurement
from policy_engine.policy.overrides import engine_ruling, review_steps, ruling_in_force

RulesPathOpt = Annotated[
    Path | None,
    typer.Option(
        "--rules",
        help="Rule file or folder. \\[default: the configured rules, else the shipped rule sets]",
    ),
]
ReportsOpt = Annotated[
    Path | None, typer.Option("--reports", help="Report folder. \\[default: reports]")
]
Paths = Annotated[list[Path], typer.Argument(help="Video files or folders (searched recursively).")]


def _rulesets(settings: Settings, rules: Path | None) -> list[Any]:
    if rules is None and (note := settings.rules_note()):
        err.print(note, highlight=False, markup=False, soft_wrap=True)
    return load_rulesets(rules or Path(settings.rules))


def _models(settings: Settings, on_loading: Callable[[str | None], None] | None = None) -> Any:
    """The configured model, loaded when first needed; ``on_loading`` hears
    "loading model NAME …" before the image model loads and None once it has."""
    from policy_engine.models.provider import ModelProvider

    if settings.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {settings.batch_size}")

    @contextmanager
    def announced(what: str) -> Iterator[None]:
        if on_loading is None:
            yield
            return
        on_loading(what)
        try:
            yield
        finally:
            on_loading(None)

    return ModelProvider(
        settings.model,
        device=settings.device,
        dtype=settings.dtype,
        runtime=settings.runtime,
        batch_size=settings.batch_size,
        while_loading=announced,
    )


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since {value!r}: write a date (2026-11-01) or date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


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
                "reports": str(reports) if reports else None,
            },
            config,
        )
        rulesets = _rulesets(settings, rules)
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
    from policy_engine.pipeline.scan import Scanner
    from policy_engine.reporting import write_run_summary

    settings = settings_for_ruleset(settings, rulesets[0])
    options = analysis_options(settings, **asdict(window or Window()))
    store = open_store(settings)
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
    try:
        with progress:
            listener = _ProgressListener(progress)
            scanner = Scanner(
                store,
                rulesets,
                _models(settings, on_loading=listener.model_loading),
                options,
                reports_dir=Path(settings.reports),
                force=force,
                listener=listener,  # type: ignore[arg-type]
            )
            outcomes = scanner.scan(files)
        from policy_engine.pipeline.search import update_indexes

        for problem in update_indexes(store, settings, outcomes):
            err.print(f"warning: {problem}", markup=False)
    finally:
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
        outcomes = scan_files(settings, _rulesets(settings, None), files, force=False, quiet=False)
    except PolicyEngineError as exc:
        raise fail(exc) from None
    _print_scan_summary(outcomes, Path(settings.reports))
    out.print(
        f"database {settings.db}: try `policy-engine --db {settings.db} history`",
        highlight=False,
        markup=False,
    )


# -- re-evaluation ----------------------------------------------------------------------------
@app.command()
def reevaluate(
    ctx: typer.Context,
    rules: RulesPathOpt = None,
    since: Annotated[
        str | None, typer.Option(help="Only scans finished since this date (2026-11-01).")
    ] = None,
    always: Annotated[
        bool, typer.Option("--always", help="Record a decision even where nothing changed.")
    ] = False,
    reports: ReportsOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply the current rule sets to stored scans (no video, no image model); record
    new decisions where the outcome changed, show what changed and why, and rewrite the
    reports (and index) of the assets that got a new decision."""
    _reevaluate(
        ctx, rules, since, always, model, device, dtype, config, as_json, reports, dry_run=False
    )


@rules_app.command("diff")
def rules_diff(
    ctx: typer.Context,
    new_rules: Annotated[Path, typer.Argument(help="The edited rule file or folder.")],
    since: Annotated[str | None, typer.Option(help="Only scans finished since this date.")] = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Dry run: which stored assets would change verdict if these rules were live.
    Writes nothing."""
    _reevaluate(
        ctx, new_rules, since, False, model, device, dtype, config, as_json, None, dry_run=True
    )


def _reevaluate(
    ctx: typer.Context,
    rules: Path | None,
    since: str | None,
    always: bool,
    model: str | None,
    device: str | None,
    dtype: str | None,
    config: Path | None,
    as_json: bool,
    reports: Path | None,
    *,
    dry_run: bool,
) -> None:
    from policy_engine.pipeline.review import reevaluate as run
    from policy_engine.pipeline.review import reevaluation_summary

    try:
        settings = settings_for(
            ctx,
            {
                "model": model,
                "device": device,
                "dtype": dtype,
                "reports": str(reports) if reports else None,
            },
            config,
        )
        rulesets = _rulesets(settings, rules)
        store = open_store(settings)
        result, pages = run(
            store,
            rulesets,
            _models(settings),
            reports_dir=Path(settings.reports),
            since=_since(since),
            always=always,
            dry_run=dry_run,
        )
    except PolicyEngineError as exc:
        raise fail(exc) from None
    written = pages.written
    _warn(pages.problems)
    if as_json:
        data = {**reevaluation_summary(result), "reports": [str(p) for p in written]}
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        _print_reevaluation(result)
        if written:
            folders = ", ".join(sorted({str(p.parent) for p in written}))
            out.print(
                f"{len(written)} report(s) rewritten in {folders} (and its index.html)",
                highlight=False,
                markup=False,
            )


def _warn(problems: list[str]) -> None:
    for problem in problems:
        err.print(f"warning: {visible_controls(problem)}", highlight=False, markup=False)


def _verdict_text(schedule: str, tags: Any, review: bool) -> str:
    text = schedule + (" +review" if review else "")
    return text + (f" [{', '.join(tags)}]" if tags else "")


def _print_reevaluation(result: Any) -> None:
    names = ", ".join(f"{r.name} v{r.version}" for r in result.rulesets)
    if result.dry_run:
        out.print(
            f"[bold]dry run[/] (nothing written): if {escape(names)} were live,", highlight=False
        )
    changed_assets = len({c.asset_id for c in result.changes})
    verb = "would change" if result.dry_run else "changed"
    out.print(
        f"{changed_assets} of {result.scans} scanned asset(s) {verb} verdict"
        f" ({len(result.changes)} rule-set decision(s); {result.unchanged} unchanged)",
        highlight=False,
        markup=False,
    )
    transitions: dict[tuple[str, str], int] = {}
    for c in result.changes:
        before = c.before.schedule if c.before else "(none)"
        transitions[(before, c.after.schedule)] = transitions.get((before, c.after.schedule), 0) + 1
    for (before, after), count in sorted(transitions.items()):
        if before != after:
            out.print(f"  {count} from {before} to {after}", highlight=False, markup=False)
    if result.changes:
        table = Table(show_edge=False, header_style="bold")
        for column in ("asset", "rule set", "before", "after", "why"):
            table.add_column(column, no_wrap=column == "asset")
        for c in result.changes:
            before = (
                _verdict_text(c.before.schedule, c.before.tags, c.before.review)
                if c.before
                else "-"
            )
            table.add_row(
                escape(c.path),
                escape(c.ruleset),
                escape(before),
                escape(_verdict_text(c.after.schedule, c.after.tags, c.after.review)),
                "\n".join(escape(why) for why in c.why),
            )
        out.print(table)
    for scan, problem in result.problems:
        err.print(
            f"[yellow]skipped[/] scan {scan.id} ({escape(scan.path)}): {escape(problem)}",
            highlight=False,
        )
    tail = "nothing written" if result.dry_run else f"{result.appended} decision(s) recorded"
    out.print(
        f"{result.from_stored_scores} judged on stored probabilities, {result.rescored} rescored"
        f" with the text tower; {result.seconds:.2f} s; {tail}.",
        highlight=False,
        markup=False,
    )


# -- inspecting ---------------------------------------------------------------------------------
@app.command()
def history(
    ctx: typer.Context,
    asset: Annotated[
        str | None, typer.Argument(help="Asset id, content hash (prefix) or path; all if left out.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """What was decided about an asset (or every asset), when, and under which rules."""
    try:
        store = open_store(settings_for(ctx, {}, config))
        if asset is None:
            _print_assets(store)
            return
        found = store.find_assets(asset)
        if not found:
            raise _no_asset(asset)
        for item in found:
            _print_asset_history(store, item.id)
    except PolicyEngineError as exc:
        raise fail(exc) from None


def _no_asset(ref: str) -> ConfigError:
    """No asset matches ``ref``; a hash prefix too short to be used says so."""
    from policy_engine.store.repository import HASH_PREFIX_MIN

    digits = ref.removeprefix("sha256:")
    short = not ref.isdigit() and 0 < len(digits) < HASH_PREFIX_MIN
    if short and all(c in "0123456789abcdef" for c in digits.lower()):
        return ConfigError(
            f"no asset matches {ref!r}: a content hash prefix needs at least"
            f" {HASH_PREFIX_MIN} hex digits; `policy-engine history` lists the assets"
        )
    return ConfigError(f"no asset matches {ref!r}; `policy-engine history` lists them")


def _print_assets(store: Any) -> None:
    from policy_engine.policy.model import DEFAULT_LEVELS

    assets = store.assets()
    current = store.current_decisions()
    table = Table(show_edge=False, header_style="bold")
    # On a narrow terminal the path folds over lines (whole, never cut with "…"); the
    # verdict and the other short columns stay whole on one line.
    table.add_column("asset", justify="right", no_wrap=True)
    table.add_column("path", overflow="fold")
    for column in ("content", "verdict"):
        table.add_column(column, no_wrap=True)
    table.add_column("tags")
    for column in ("review", "decided"):
        table.add_column(column, no_wrap=True)
    for a in assets:
        mine = [d for (asset_id, _), d in current.items() if asset_id == a.id]
        ruled = [d.ruled() for d in mine]
        levels = [r.schedule for r in ruled]
        ranked = [lv for lv in levels if lv in DEFAULT_LEVELS]
        schedule = (
            max(ranked, key=DEFAULT_LEVELS.index) if ranked else (levels[0] if levels else "-")
        )
        overridden = any(d.override for d in mine)
        table.add_row(
            str(a.id),
            escape(a.path),
            a.content_sha256[7:19],
            escape(schedule) + (" (overridden)" if overridden else ""),
            escape(", ".join(sorted({t for r in ruled for t in r.tags}))),
            "REVIEW" if any(r.review for r in ruled) else "",
            _when(max((d.created_at for d in mine), default=None)),
        )
    out.print(table)
    out.print(f"{len(assets)} asset(s) in {store.url}", highlight=False, markup=False)


def _print_asset_history(store: Any, asset_id: int) -> None:
    asset, scans, decisions = store.asset_history(asset_id)
    out.print(
        f"[bold]asset {asset.id}[/] {asset.content_sha256} ({asset.size_bytes} bytes),"
        f" first seen {_when(asset.first_seen)}",
        highlight=False,
    )
    for p in asset.paths:
        out.print(
            f"  seen at {visible_controls(p.path)} ({_when(p.first_seen)})",
            highlight=False,
            markup=False,
        )
    for s in scans:
        detail = (
            visible_controls(s.error or "")
            if s.status == "failed"
            else (
                f"{s.frame_count} frames, {s.model_name} {s.weights_sha256[:19]}…"
                f" on {s.device_used} (asked {s.device_asked}), {s.dtype}"
            )
        )
        out.print(
            f"  scan {s.id} {_when(s.started_at)} {s.status}: {detail}",
            highlight=False,
            markup=False,
        )
    for d in decisions:
        _print_decision_line(d)


def _print_decision_line(d: Any) -> None:
    out.print(
        f"  decision {d.id} {_when(d.created_at)} ({d.cause}, scan {d.scan_id}):"
        f" {d.ruleset.name} v{d.ruleset.version} {d.ruleset.sha256[:19]}… ->"
        f" {_verdict_text(d.schedule, d.tags, d.review)}",
        highlight=False,
        markup=False,
    )
    _warn_if_tampered(d.ruleset, "    ")
    for line in _override_lines(d):
        out.print(f"    {line}", highlight=False, markup=False)


def _warn_if_tampered(ruleset: Any, indent: str) -> None:
    if not text_matches(ruleset.text, ruleset.sha256):
        out.print(indent + _tampered_text(ruleset), style="bold red", highlight=False, markup=False)


def _override_lines(d: Any) -> list[str]:
    """Each override of a decision with the verdict in force before and after it."""
    steps = review_steps(engine_ruling(d), d.overrides)
    return [_override_text(o, before, after) for o, (before, after) in zip(d.overrides, steps)]


def _override_text(o: Any, before: Any, after: Any) -> str:
    if before.schedule != after.schedule:
        level = f"level {before.schedule} -> {after.schedule}"
    else:
        level = f"level {after.schedule} (unchanged)"
    old, new = ", ".join(before.tags), ", ".join(after.tags)
    tags = f"tags [{old}] -> [{new}]" if old != new else f"tags [{new}] (unchanged)"
    settled = "; review settled" if before.review else ""
    return (
        f"override {o.id} by {o.reviewer} {_when(o.created_at)}: {level}; {tags}{settled}"
        f" — {o.justification}"
    )


def _tampered_text(ruleset: Any) -> str:
    return (
        f"WARNING: the stored text of rule set {ruleset.name} v{ruleset.version} does not"
        f" match its hash {ruleset.sha256} (it hashes to {text_sha256(ruleset.text)}): it was"
        " edited in the database after its decisions were made; do not rely on it"
    )


@app.command()
def show(
    ctx: typer.Context,
    decision: Annotated[int, typer.Argument(help="Decision id (see `history`).")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One decision in full: verdict, reasons with evidence, rule set, model, overrides."""
    try:
        store = open_store(settings_for(ctx, {}, config))
        d = store.decision(decision)
        if d is None:
            raise ConfigError(f"no decision {decision}; `policy-engine history ASSET` lists them")
    except PolicyEngineError as exc:
        raise fail(exc) from None
    intact = text_matches(d.ruleset.text, d.ruleset.sha256)
    if as_json:
        from policy_engine.pipeline.review import decision_summary

        sys.stdout.write(json.dumps(decision_summary(d), indent=2, default=str) + "\n")
    else:
        _print_decision(d)
    if not intact:
        # a script reading --json must notice too: the records fail their integrity check
        err.print(_tampered_text(d.ruleset), style="bold red", highlight=False, markup=False)
        raise typer.Exit(5)


def _print_decision(d: Any) -> None:
    s = d.scan
    out.print(
        f"[bold]decision {d.id}[/] ({d.cause}, {_when(d.created_at)}):"
        f" [bold]{escape(_verdict_text(d.schedule, d.tags, d.review))}[/]",
        highlight=False,
    )
    out.print(
        f"  asset {d.asset_id}: {s.path} ({s.asset.content_sha256})", highlight=False, markup=False
    )
    out.print(
        f"  rule set {d.ruleset.name} v{d.ruleset.version} {d.ruleset.sha256} ({d.ruleset.path})",
        highlight=False,
        markup=False,
    )
    _warn_if_tampered(d.ruleset, "  ")
    if d.overrides:
        ruled = ruling_in_force(d)
        out.print(
            f"  in force after review: {_verdict_text(ruled.schedule, ruled.tags, ruled.review)}",
            highlight=False,
            markup=False,
        )
    out.print(
        f"  scan {s.id} {_when(s.started_at)}: model {s.model_name} {s.weights_sha256} on"
        f" {s.device_used} (asked {s.device_asked}), {s.dtype}, {s.runtime or 'torch'};"
        f" sampling {s.sampling};"
        f" policy_engine {s.software_version}",
        highlight=False,
        markup=False,
    )
    for slot in d.slots:
        out.print(
            f"  {slot['territory']}: {slot['window'] or slot['earliest']} ({slot['timezone']})",
            highlight=False,
            markup=False,
        )
    for w in d.warnings:
        out.print(f"  warning: {w}", highlight=False, markup=False)
    for r in d.reasons:
        title = "fired" if r.kind == "fired" else "near miss"
        ref = f" [{r.reference}]" if r.reference else ""
        out.print(f"  {title}: {r.rule_id}{ref} {r.description}", highlight=False, markup=False)
        for m in r.measurements:
            out.print(f"    {Measurement(**m).describe()}", highlight=False, markup=False)
        if r.evidence:
            frames = ", ".join(
                f"#{e['frame']} {format_timecode(e['time'])} p={e['probability']:.2f}"
                for e in r.evidence
            )
            out.print(f"    evidence: {frames}", highlight=False, markup=False)
    for line in _override_lines(d):
        out.print(f"  {line}", highlight=False, markup=False)


@app.command()
def override(
    ctx: typer.Context,
    decision: Annotated[int, typer.Argument(help="Decision id (see `history`).")],
    justification: Annotated[str, typer.Option("--justification", "-j", help="Why.")],
    reviewer: Annotated[
        str | None,
        typer.Option(
            "--reviewer",
            help="Who rules. \\[default: the OS user running this; recorded as acting either way]",
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="A reason code from the `override_reasons` setting."),
    ] = None,
    schedule: Annotated[
        str | None, typer.Option("--schedule", help="The level the reviewer sets.")
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="The whole tag set the reviewer sets (repeatable)."),
    ] = None,
    add_tag: Annotated[
        list[str] | None, typer.Option("--add-tag", help="A tag to add (repeatable).")
    ] = None,
    remove_tag: Annotated[
        list[str] | None, typer.Option("--remove-tag", help="A tag to remove (repeatable).")
    ] = None,
    clear_tags: Annotated[bool, typer.Option("--clear-tags", help="Set no tags.")] = False,
    reports: ReportsOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Record a reviewer's ruling on a decision (a new record; the decision is kept). It
    starts from the verdict in force (earlier overrides applied) and changes only what
    it names; the asset's report and the index are rewritten."""
    from policy_engine.pipeline.review import record_override

    try:
        settings = settings_for(ctx, {"reports": str(reports) if reports else None}, config)
        store = open_store(settings)
        operator = local_operator()
        result = record_override(
            store,
            decision,
            reviewer=operator if reviewer is None else reviewer,
            justification=justification,
            actor=operator,
            via="cli",
            reason_code=reason,
            allowed_reasons=settings.override_reasons,
            reports_dir=Path(settings.reports),
            schedule=schedule,
            tags=[] if clear_tags else (list(tag) if tag else None),
            add_tags=add_tag or (),
            remove_tags=remove_tag or (),
        )
    except PolicyEngineError as exc:
        raise fail(exc) from None
    before, after = result.before, result.after
    _warn(result.report_problems)
    out.print(
        f"override {result.override_id} recorded on decision {decision}:"
        f" {_verdict_text(before.schedule, before.tags, before.review)} ->"
        f" {_verdict_text(after.schedule, after.tags, after.review)};"
        f" report {', '.join(map(str, result.reports))}",
        highlight=False,
        markup=False,
    )


@app.command()
def report(
    ctx: typer.Context,
    assets: Annotated[
        list[str], typer.Argument(help="Asset ids, content hashes (prefix) or paths.")
    ],
    reports: ReportsOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write assets' reports again from the records (e.g. after a review)."""
    from policy_engine.pipeline.review import write_report
    from policy_engine.reporting import refresh_index

    try:
        settings = settings_for(ctx, {"reports": str(reports) if reports else None}, config)
        store = open_store(settings)
        for ref in assets:
            found = store.find_assets(ref)
            if not found:
                raise _no_asset(ref)
            for asset in found:
                path = write_report(store, asset.id, Path(settings.reports))
                out.print(f"{path}", highlight=False, markup=False)
        refresh_index(store, Path(settings.reports))
    except OSError as exc:
        where = exc.filename or settings.reports
        raise fail(ConfigError(f"cannot write the report to {where}: {exc.strerror}")) from None
    except PolicyEngineError as exc:
        raise fail(exc) from None


# -- the database -------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Bring the database's schema up to this software's (Alembic migrations)."""
    from policy_engine.store import database

    try:
        engine = database.make_engine(settings_for(ctx, {}, config).db)
        before, after = database.upgrade(engine)
    except PolicyEngineError as exc:
        raise fail(exc) from None
    where = database.describe(engine.url)
    if before == after:
        out.print(f"{where}: schema already at {after}", highlight=False, markup=False)
    else:
        out.print(
            f"{where}: schema {before or '(empty)'} -> {after}", highlight=False, markup=False
        )


@db_app.command("status")
def db_status(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """The database URL in use, its schema version and this software's."""
    from policy_engine.store import database

    try:
        settings = settings_for(ctx, {}, config)
        engine = database.make_engine(settings.db)
        current, head = database.current_revision(engine), database.head_revision()
    except PolicyEngineError as exc:
        raise fail(exc) from None
    if current == head:
        state = "up to date"
    elif current is None:
        state = "no schema yet: made on first use, or by `policy-engine db upgrade`"
    else:
        state = "behind: run `policy-engine db upgrade`"
    out.print(
        f"{database.describe(engine.url)} ({settings.source_of('db')}): schema"
        f" {current or '(none)'}, software {head}: {state}",
        highlight=False,
        markup=False,
    )
    if current is not None and current != head:
        raise typer.Exit(5)
