"""`reevaluate` and `rules diff`: the current rules applied to stored scans."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from policy_engine.cli.common import (
    ConfigOpt,
    DeviceOpt,
    DtypeOpt,
    ExecutorOpt,
    JsonOpt,
    ModelOpt,
    RayAddressOpt,
    ReportsOpt,
    RulesPathOpt,
    app,
    err,
    escape,
    fail,
    model_provider,
    open_store,
    out,
    parse_since,
    rules_app,
    rulesets_for,
    settings_for,
)  # fmt: skip
from policy_engine.cli.records import verdict_text, warn
from policy_engine.errors import PolicyEngineError


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
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply the current rule sets to stored scans (no video, no image model); record
    new decisions where the outcome changed, show what changed and why, and rewrite the
    reports (and index) of the assets that got a new decision."""
    _reevaluate(
        ctx, rules, since, always, model, device, dtype, config, as_json, reports,
        dry_run=False, cluster={"executor": executor, "ray_address": ray_address},
    )  # fmt: skip


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
    cluster: dict[str, str | None] | None = None,
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
                **(cluster or {}),
            },
            config,
        )
        rulesets = rulesets_for(settings, rules)
        store = open_store(settings)
        result, pages = run(
            store,
            rulesets,
            model_provider(settings),
            reports_dir=Path(settings.reports),
            since=parse_since(since),
            always=always,
            dry_run=dry_run,
            settings=settings,
        )
    except PolicyEngineError as exc:
        raise fail(exc) from None
    written = pages.written
    warn(pages.problems)
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
                verdict_text(c.before.schedule, c.before.tags, c.before.review) if c.before else "-"
            )
            table.add_row(
                escape(c.path),
                escape(c.ruleset),
                escape(before),
                escape(verdict_text(c.after.schedule, c.after.tags, c.after.review)),
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
