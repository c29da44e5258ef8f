"""The commands that use the database: `scan`, `reevaluate`, `rules diff`, `history`,
`show`, `override` and `db …`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from policy_engine.accounts import local_operator
from policy_engine.cli.common import (
    ConfigOpt,
    JsonOpt,
    ReportsOpt,
    app,
    db_app,
    err,
    escape,
    fail,
    open_store,
    out,
    settings_for,
    when_text,
)
from policy_engine.errors import ConfigError, PolicyEngineError
from policy_engine.escaping import visible_controls
from policy_engine.hashing import text_matches, text_sha256
from policy_engine.media.timecode import format_timecode
from policy_engine.policy.evaluate import Measurement
from policy_engine.policy.overrides import engine_ruling, review_steps, ruling_in_force


def warn(problems: list[str]) -> None:
    for problem in problems:
        err.print(f"warning: {visible_controls(problem)}", highlight=False, markup=False)


def verdict_text(schedule: str, tags: Any, review: bool) -> str:
    text = schedule + (" +review" if review else "")
    return text + (f" [{', '.join(tags)}]" if tags else "")


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
            when_text(max((d.created_at for d in mine), default=None)),
        )
    out.print(table)
    out.print(f"{len(assets)} asset(s) in {store.url}", highlight=False, markup=False)


def _print_asset_history(store: Any, asset_id: int) -> None:
    asset, scans, decisions = store.asset_history(asset_id)
    out.print(
        f"[bold]asset {asset.id}[/] {asset.content_sha256} ({asset.size_bytes} bytes),"
        f" first seen {when_text(asset.first_seen)}",
        highlight=False,
    )
    for p in asset.paths:
        out.print(
            f"  seen at {visible_controls(p.path)} ({when_text(p.first_seen)})",
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
            f"  scan {s.id} {when_text(s.started_at)} {s.status}: {detail}",
            highlight=False,
            markup=False,
        )
    for d in decisions:
        _print_decision_line(d)


def _print_decision_line(d: Any) -> None:
    out.print(
        f"  decision {d.id} {when_text(d.created_at)} ({d.cause}, scan {d.scan_id}):"
        f" {d.ruleset.name} v{d.ruleset.version} {d.ruleset.sha256[:19]}… ->"
        f" {verdict_text(d.schedule, d.tags, d.review)}",
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
        f"override {o.id} by {o.reviewer} {when_text(o.created_at)}: {level}; {tags}{settled}"
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
        f"[bold]decision {d.id}[/] ({d.cause}, {when_text(d.created_at)}):"
        f" [bold]{escape(verdict_text(d.schedule, d.tags, d.review))}[/]",
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
            f"  in force after review: {verdict_text(ruled.schedule, ruled.tags, ruled.review)}",
            highlight=False,
            markup=False,
        )
    out.print(
        f"  scan {s.id} {when_text(s.started_at)}: model {s.model_name} {s.weights_sha256} on"
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
    warn(result.report_problems)
    out.print(
        f"override {result.override_id} recorded on decision {decision}:"
        f" {verdict_text(before.schedule, before.tags, before.review)} ->"
        f" {verdict_text(after.schedule, after.tags, after.review)};"
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


@db_app.command("purge-revealed")
def db_purge_revealed(
    ctx: typer.Context,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            min=0,
            metavar="DAYS",
            help="Only pictures kept more than DAYS days ago; without it, every one.",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Delete the evidence pictures kept with their hidden regions (nudity) as they were
    (setting reveal_hidden_evidence). The pixelated thumbnails, the decisions and the
    audit log's record of who saw which picture stay."""
    from datetime import UTC, datetime, timedelta

    from policy_engine.store.evidence import RevealedPictures

    now = datetime.now(UTC)
    before = now - timedelta(days=older_than) if older_than is not None else None
    try:
        store = open_store(settings_for(ctx, {}, config))
        try:
            pictures = RevealedPictures(store)
            deleted = pictures.purge(kept_before=before)
            left, size = pictures.held()
        finally:
            store.close()
    except PolicyEngineError as exc:
        raise fail(exc) from None
    out.print(
        f"deleted {deleted} picture(s) kept with hidden regions as they were;"
        f" {left} left ({size / 1e6:.1f} MB)",
        highlight=False, markup=False,
    )  # fmt: skip
