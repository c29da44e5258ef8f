"""``policy-engine``: a thin command line over the Python API (pipeline, models, policy).

Exit codes: 0 ok, 1 unexpected error, 2 bad usage or settings, 3 unreadable video,
4 model or device problem.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from policy_engine import __version__
from policy_engine.analysis.scoring import Category
from policy_engine.config import Settings, load_settings
from policy_engine.errors import (
    ConfigError,
    DeviceUnavailableError,
    MediaError,
    ModelError,
    PolicyEngineError,
)
from policy_engine.media.timecode import format_timecode

app = typer.Typer(
    name="policy-engine",
    help="Broadcast-compliance and watershed policy engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Model utilities.", no_args_is_help=True)
app.add_typer(model_app, name="model")

# Off a terminal (pipes, CI logs) rich would wrap tables at 80 columns.
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

_EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (ConfigError, 2),
    (MediaError, 3),
    (ModelError, 4),
    (DeviceUnavailableError, 4),
]


# -- shared options (the public flag names other commands reuse) --------------------------
CategoryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--category",
        "-c",
        help="NAME=prompt,prompt,... (repeatable). Prompts are captions, e.g."
        " 'violence=people fighting,a person being shot'.",
    ),
]
NullOpt = Annotated[
    list[str] | None,
    typer.Option("--null", help="Mark a --category as null (absorbs 'nothing matched')."),
]
RulesOpt = Annotated[
    Path | None,
    typer.Option("--rules", help="Rule-set YAML file: its categories, sampling and rules."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="Hugging Face id or local checkpoint folder.", show_default=False),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto | hpu | cuda | mps | cpu [default: auto]")
]
DtypeOpt = Annotated[
    str | None, typer.Option("--dtype", help="auto | fp32 | bf16 | fp16 [default: auto]")
]
FpsOpt = Annotated[
    float | None, typer.Option("--fps", help="Frames sampled per second of video [default: 2]")
]
SamplingOpt = Annotated[
    str | None,
    typer.Option("--sampling", help="fps | all | keyframes [default: fps]"),
]
FramingOpt = Annotated[
    str | None,
    typer.Option("--framing", help="letterbox | tiles | center | squash [default: letterbox]"),
]


def _fail(exc: BaseException) -> typer.Exit:
    code = next((c for kind, c in _EXIT_CODES if isinstance(exc, kind)), 1)
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


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
    fps: FpsOpt = None,
    sampling: SamplingOpt = None,
    framing: FramingOpt = None,
    start: Annotated[str | None, typer.Option(help="Start of the window (3s, 00:01:00).")] = None,
    end: Annotated[str | None, typer.Option(help="End of the window.")] = None,
    max_frames: Annotated[int | None, typer.Option(help="At most this many samples.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per model call [32].")] = None,
    interval: Annotated[float | None, typer.Option(help="Seconds per interval [10].")] = None,
    config: Annotated[Path | None, typer.Option(help="Settings file (TOML).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    frames: Annotated[bool, typer.Option(help="With --json: per-frame probabilities.")] = False,
) -> None:
    """Per-category coverage of one video: share of running time, first seen, runs."""
    try:
        settings = load_settings(
            {
                "model": model,
                "device": device,
                "dtype": dtype,
                "fps": fps,
                "sampling": sampling,
                "framing": framing,
                "batch_size": batch_size,
                "interval": interval,
            },
            config_file=config,
        )
        rulesets: list[Any] = []
        if rules is not None:
            if category:
                raise ConfigError("give either --category or --rules, not both")
            from policy_engine.api import settings_for_ruleset

            rulesets = _load_rulesets(rules)
            settings = settings_for_ruleset(settings, rulesets[0])
            categories = list(rulesets[0].categories)
        else:
            categories = _categories(category, null)
        result, decisions = _analyse_and_decide(
            video, categories, rulesets, settings, start, end, max_frames, as_json
        )
    except PolicyEngineError as exc:
        raise _fail(exc) from None
    _report(result, decisions, as_json=as_json, frames=frames)


def _load_rulesets(path: Path) -> list[Any]:
    """The rule sets of a file or folder; any broken file stops the command (exit 2)."""
    from policy_engine.policy.loader import RuleSetError, load_catalogue

    rulesets, problems = load_catalogue([path])
    if problems:
        raise RuleSetError(problems)
    if not rulesets:
        raise ConfigError(f"--rules {path}: no rule files (*.yaml) found")
    return rulesets


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
    from policy_engine.api import analysis_options, load_embedder
    from policy_engine.pipeline import analyze_video, decide

    options = analysis_options(settings, start=start, end=end, max_frames=max_frames)
    with err.status(f"loading model {settings.model} …", spinner="dots"):
        embedder = load_embedder(settings)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.1f} s"),
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

        result = analyze_video(video, categories, embedder, options, progress=update)
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
    out.print(f"[bold]{video.path}[/]", highlight=False)
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
        f" (asked {model.device_asked}), {model.dtype};"
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


rules_app = typer.Typer(help="Editors' tools for rule files.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
RulePaths = Annotated[
    list[Path] | None,
    typer.Argument(help="Rule files or folders [default: the configured rules folder]."),
]


def _rule_paths(paths: list[Path] | None) -> list[Path]:
    return list(paths) if paths else [Path(load_settings().rules)]


@rules_app.command("validate")
def rules_validate(paths: RulePaths = None) -> None:
    """Load rule files and report every error (file:line:column); exit 2 on any."""
    from policy_engine.policy.loader import load_catalogue, rule_files

    try:
        files = rule_files(_rule_paths(paths))
        if not files:
            raise ConfigError(f"no rule files (*.yaml) in {', '.join(map(str, paths or []))}")
        rulesets, problems = load_catalogue(files)
    except PolicyEngineError as exc:
        raise _fail(exc) from None
    for ruleset in rulesets:
        out.print(
            f"ok  {ruleset.path}: {ruleset.name} v{ruleset.version}, {len(ruleset.categories)}"
            f" categories, {len(ruleset.rules)} rules, {len(ruleset.tests)} tests,"
            f" {ruleset.sha256[:19]}…",
            highlight=False,
        )
    for problem in problems:
        err.print(f"[red]error[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        err.print(f"{len(problems)} problem(s); the rule sets above them are unaffected.")
        raise typer.Exit(2)


@rules_app.command("test")
def rules_test(paths: RulePaths = None) -> None:
    """Run each rule file's test cases (coverage numbers in, expected decision out)."""
    from policy_engine.policy.loader import load_catalogue
    from policy_engine.policy.ruletests import run_tests

    rulesets, problems = load_catalogue(_rule_paths(paths))
    for problem in problems:
        err.print(f"[red]error[/] {problem}", highlight=False, soft_wrap=True)
    passed = failed = 0
    for ruleset in rulesets:
        if not ruleset.tests:
            out.print(f"[yellow]no tests[/] {ruleset.name} ({ruleset.path})", highlight=False)
        for outcome in run_tests(ruleset):
            if outcome.passed:
                passed += 1
                out.print(f"[green]pass[/] {ruleset.name}: {outcome.name}", highlight=False)
                continue
            failed += 1
            out.print(
                f"[red]FAIL[/] {ruleset.name}: {outcome.name} ({outcome.source})", highlight=False
            )
            for failure in outcome.failures:
                out.print(f"       {failure}", highlight=False)
    out.print(f"{passed} passed, {failed} failed")
    if failed or problems:
        raise typer.Exit(1 if failed else 2)


@rules_app.command("explain")
def rules_explain(path: Annotated[Path, typer.Argument(help="A rule file.")]) -> None:
    """A readable summary of what a rule set does."""
    from policy_engine.policy.explain import explain
    from policy_engine.policy.loader import load_ruleset

    try:
        out.print(explain(load_ruleset(path)), highlight=False, markup=False)
    except PolicyEngineError as exc:
        raise _fail(exc) from None


@rules_app.command("slot")
def rules_slot(
    path: Annotated[Path, typer.Argument(help="The rule file whose levels and territories apply.")],
    level: Annotated[str, typer.Argument(help="Schedule level, e.g. post-watershed.")],
    when: Annotated[
        str, typer.Argument(help="Planned start: 2026-11-21T20:30 (local) or with offset.")
    ],
    territory: Annotated[
        list[str] | None, typer.Option("--territory", "-t", help="Only these territories.")
    ] = None,
) -> None:
    """Is a planned slot permitted? Exit 0 if it is in every territory asked, else 1."""
    from datetime import datetime

    from policy_engine.policy.loader import load_ruleset
    from policy_engine.policy.territory import slot_permitted

    try:
        ruleset = load_ruleset(path)
        try:
            start = datetime.fromisoformat(when)
        except ValueError:
            raise ConfigError(f"{when!r} is not a date-time; write 2026-11-21T20:30") from None
        if level not in ruleset.levels:
            raise ConfigError(f"unknown level {level!r}; levels: {' < '.join(ruleset.levels)}")
        chosen = [t for t in ruleset.territories if not territory or t.name in territory]
        if not chosen:
            names = ", ".join(t.name for t in ruleset.territories)
            raise ConfigError(
                f"no territory {', '.join(territory or [])} in {path}; it has {names}"
            )
    except PolicyEngineError as exc:
        raise _fail(exc) from None
    allowed = True
    for t in chosen:
        ok = slot_permitted(level, ruleset.levels, t, start)
        allowed &= ok
        verdict = "[green]permitted[/]" if ok else "[red]not permitted[/]"
        out.print(f"{t.name} ({t.timezone}): {level} at {when}: {verdict}", highlight=False)
    if not allowed:
        raise typer.Exit(1)


@model_app.command("make-tiny")
def make_tiny(
    directory: Annotated[Path, typer.Argument(help="Folder to write the checkpoint to.")],
) -> None:
    """Write a tiny random-weight CLIP checkpoint (offline tests and demos)."""
    from policy_engine.models.tiny import make_tiny_clip

    path = make_tiny_clip(directory)
    out.print(f"tiny CLIP checkpoint written to {path} (random weights: labels mean nothing)")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo's model and clip go.")] = Path(
        ".demo"
    ),
    video: Annotated[Path | None, typer.Argument(help="A video; default: generated.")] = None,
) -> None:
    """Run the engine end to end offline: tiny checkpoint + a generated (or given) clip."""
    from policy_engine.demo import prepare_demo

    try:
        model_dir, clip = prepare_demo(workdir, video)
        settings = load_settings({"model": str(model_dir)})
        err.print(
            f"demo: tiny random-weight model at {model_dir} (labels mean nothing); real use:"
            " --model openai/clip-vit-base-patch32 (see README)",
            highlight=False,
        )
        rules_path = Path(settings.rules)
        rulesets = _load_rulesets(rules_path) if rules_path.exists() else []
        categories = list(rulesets[0].categories) if rulesets else _categories(None, None)
        result, decisions = _analyse_and_decide(
            clip, categories, rulesets, settings, None, None, None, False
        )
    except PolicyEngineError as exc:
        raise _fail(exc) from None
    _report(result, decisions, as_json=False)


def _version(value: bool) -> None:
    if value:
        out.print(f"policy-engine {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Broadcast-compliance and watershed policy engine."""


def main() -> None:
    """Entry point: expected errors are handled per command; anything else is a bug, shown
    as one line unless POLICY_ENGINE_DEBUG is set (then with its traceback)."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - last line of defence for the user
        if os.environ.get("POLICY_ENGINE_DEBUG"):
            raise
        err.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
            "  This is a bug; rerun with POLICY_ENGINE_DEBUG=1 for the traceback and report it.",
            highlight=False,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
