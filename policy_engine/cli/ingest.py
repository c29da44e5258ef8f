"""The nightly side: `schedule` (the daemon, or one pass with --once), `ingest status`,
`ingest retry` and `config show`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from policy_engine.cli.common import (
    BatchSizeOpt,
    ConfigOpt,
    DeviceOpt,
    DtypeOpt,
    ExecutorOpt,
    FastDecodeOpt,
    FpsOpt,
    FramingOpt,
    IntervalOpt,
    JsonOpt,
    ModelOpt,
    PseOpt,
    RayAddressOpt,
    ReportsOpt,
    RulesPathOpt,
    RuntimeOpt,
    SamplingOpt,
    app,
    err,
    escape,
    fail,
    out,
    settings_for,
)
from policy_engine.config import Settings
from policy_engine.errors import ConfigError, PolicyEngineError, exit_code

ingest_app = typer.Typer(
    help="The ingest queue: what is waiting, done, failed.", no_args_is_help=True
)
app.add_typer(ingest_app, name="ingest")
config_app = typer.Typer(help="Settings: what is in force and why.", no_args_is_help=True)
app.add_typer(config_app, name="config")

IngestOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--ingest",
        help="Ingest folder (repeatable); replaces the configured folders.",
        show_default=False,
    ),
]
LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="human | json | auto (human on a terminal, JSON lines otherwise) \\[default: auto]",
    ),
]


def _settings(ctx: typer.Context, config: Path | None, **flags: Any) -> Settings:
    ingest = flags.pop("ingest", None)
    given = {k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items()}
    settings = settings_for(ctx, given, config)
    if not ingest:
        return settings
    # --ingest DIR (repeatable) replaces the configured folders
    folders = tuple(str(p) for p in ingest)
    return replace(settings, ingest=folders, sources={**settings.sources, "ingest": "flag"})


@contextmanager
def _queue(settings: Settings) -> Iterator[Any]:
    """The ingest queue of the configured database, closed afterwards."""
    from policy_engine.cli.common import open_store
    from policy_engine.store.ingest import IngestQueue, QueueTiming

    store = open_store(settings)
    try:
        yield IngestQueue(store, QueueTiming.from_settings(settings))
    finally:
        store.close()


@app.command()
def schedule(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run one pass now and exit.")] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="With --once: exit 1 if any file failed or the run lists a problem (e.g. a"
            " rule file whose rules are not applied); else 0.",
        ),
    ] = False,
    ingest: IngestOpt = None,
    rules: RulesPathOpt = None,
    reports: ReportsOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    runtime: RuntimeOpt = None,
    fps: FpsOpt = None,
    sampling: SamplingOpt = None,
    framing: FramingOpt = None,
    batch_size: BatchSizeOpt = None,
    interval: IntervalOpt = None,
    pse: PseOpt = None,
    fast_decode: FastDecodeOpt = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    log_format: LogFormatOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The nightly ingest daemon: scan new trailers in the ingest folders at the scheduled
    time (02:00 unless set otherwise), or once now with --once. Stop with SIGTERM or Ctrl-C."""
    from policy_engine import logsetup, scheduler

    try:
        settings = _settings(
            ctx,
            config,
            ingest=ingest,
            rules=rules,
            reports=reports,
            model=model,
            device=device,
            dtype=dtype,
            runtime=runtime,
            fps=fps,
            sampling=sampling,
            framing=framing,
            batch_size=batch_size,
            interval=interval,
            pse=pse,
            fast_decode=fast_decode,
            executor=executor,
            ray_address=ray_address,
            log_format=log_format,
        )
        logsetup.configure(settings.log_format)
        if note := settings.rules_note():
            err.print(note, highlight=False, markup=False, soft_wrap=True)
        signals = scheduler.StopSignals()
        scheduler.install_signal_handlers(signals)
        announce = lambda note: err.print(note, highlight=False, markup=False)  # noqa: E731
        if strict and not once:
            raise ConfigError("--strict goes with --once (the daemon's runs have no exit code)")
        if not once:
            scheduler.serve(settings, signals=signals, on_create=announce)
            return
        result = scheduler.run_once(settings, signals=signals, on_create=announce)
    except PolicyEngineError as exc:
        raise fail(exc) from None
    if result.summary is not None:
        err.print(f"run summary: {result.summary}", highlight=False, markup=False)
    if result.status == "failed":  # e.g. the database went away: 5, as for any command
        raise typer.Exit(exit_code(result.failure) if result.failure else 1)
    if strict and (result.problems or any(o.status == "failed" for o in result.outcomes)):
        err.print(
            f"--strict: {len(result.problems)} problem(s) in this run (see the log and the"
            " run summary)",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(1)


@ingest_app.command("status")
def ingest_status(
    ctx: typer.Context,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Only files in this state (repeatable): waiting, claimed,"
            " done, retry, quarantined, gone.",
        ),
    ] = None,
    runs: Annotated[int, typer.Option(help="How many recent runs to list.")] = 5,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The queue: every file the ingest has seen, its state, attempts and last error;
    and the latest runs."""
    try:
        with _queue(_settings(ctx, config)) as queue:
            files, recent = queue.files(state), queue.runs(runs)
    except PolicyEngineError as exc:
        raise fail(exc) from None
    if as_json:
        data = {
            "files": [vars(f) for f in files],
            "runs": [{c.name: getattr(r, c.name) for c in r.__table__.columns} for r in recent],
        }
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    table = Table(show_edge=False, header_style="bold", title="files")
    for column in ("file", "state", "tries", "last error", "next try"):
        table.add_column(column, no_wrap=column == "file")
    for f in files:
        table.add_row(
            escape(f.path),
            f.state,
            str(f.attempts),
            escape(f.last_error or ""),
            f"{f.next_attempt_at:%Y-%m-%d %H:%M}" if f.next_attempt_at else "",
        )
    out.print(table)
    runs_table = Table(show_edge=False, header_style="bold", title="runs")
    for column in ("run", "trigger", "status", "started (UTC)", "seen", "new", "scanned",
                   "reused", "failed", "skipped", "waiting", "quarantined"):  # fmt: skip
        runs_table.add_column(column)
    for r in recent:
        runs_table.add_row(
            str(r.id), r.trigger, r.status, f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            *(str(getattr(r, n)) for n in ("seen", "new", "scanned", "reused", "failed",
                                           "skipped", "waiting", "quarantined")),
        )  # fmt: skip
    out.print(runs_table)


@ingest_app.command("retry")
def ingest_retry(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files to retry. \\[default: every quarantined one]")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Give quarantined files a fresh set of attempts at the next run."""
    wanted = [str(p.resolve()) for p in paths] if paths else None
    try:
        with _queue(_settings(ctx, config)) as queue:
            if wanted:
                _check_retryable(queue, wanted)
            count = queue.retry(wanted)
    except PolicyEngineError as exc:
        raise fail(exc) from None
    if count == 0:
        out.print("no quarantined files: nothing to retry.", highlight=False, markup=False)
        return
    out.print(f"{count} file(s) will be tried again at the next run.", highlight=False)


RETRYABLE = ("quarantined", "retry")


def _check_retryable(queue: Any, wanted: list[str]) -> None:
    """Every file named is in the queue and quarantined (or waiting for a retry); else
    nothing is changed and each one that is not is listed with why."""
    states = {f.path: f.state for f in queue.files()}
    wrong = [
        f"{path}: not in the ingest queue" if path not in states
        else f"{path}: {states[path]}, not quarantined"
        for path in wanted
        if states.get(path) not in RETRYABLE
    ]  # fmt: skip
    if wrong:
        raise ConfigError(
            "nothing retried; "
            + "; ".join(wrong)
            + ". `policy-engine ingest status --state quarantined` lists what can be retried"
        )


@config_app.command("show")
def config_show(ctx: typer.Context, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every setting in force, and where it came from (default, file, env, flag)."""
    try:
        settings = _settings(ctx, config)
    except PolicyEngineError as exc:
        raise fail(exc) from None
    rows = [
        (f.name, _shown(f.name, getattr(settings, f.name)), settings.source_of(f.name))
        for f in fields(settings)
        if f.name != "sources"
    ]
    if as_json:
        data = {name: {"value": value, "source": source} for name, value, source in rows}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    width = max(len(" ".join(v) if isinstance(v, tuple) else str(v)) for _, v, _ in rows)
    for name, value, source in rows:  # plain lines: greppable, never wrapped
        shown = " ".join(value) if isinstance(value, tuple) else str(value)
        out.print(
            f"{name:<15} {shown:<{min(width, 60)}}  ({source})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


KEYS = frozenset({"webhook_signing_key"})  # settings never shown, only whether they are set


def _shown(name: str, value: Any) -> Any:
    """A setting as shown: the database URL without its password, keys as set or not,
    the local zone named."""
    if name in KEYS:
        return "(set)" if value else "(not set)"
    if name == "db":
        from policy_engine.store.database import describe, parse_url

        return describe(parse_url(value))
    if name == "timezone" and value == "local":
        from tzlocal import get_localzone  # as the scheduler resolves it, without its imports

        return f"local ({get_localzone()})"
    return value
