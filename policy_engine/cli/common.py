"""Shared by every command: the Typer apps, consoles, exit codes, option types, and
the small helpers that turn flags into settings, rule sets and a store."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape as escape_markup
from rich.progress import ProgressColumn, Task
from rich.text import Text
from typer.core import TyperOption

from policy_engine.config import Settings, load_settings
from policy_engine.errors import ConfigError, exit_code
from policy_engine.escaping import visible_controls
from policy_engine.models.checkpoint import DEFAULT_MODEL

app = typer.Typer(
    name="policy-engine",
    help="Broadcast-compliance and watershed policy engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Model utilities.", no_args_is_help=True)
app.add_typer(model_app, name="model")
rules_app = typer.Typer(help="Editors' tools for rule files.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
db_app = typer.Typer(help="The database: schema migrations and status.", no_args_is_help=True)
app.add_typer(db_app, name="db")

# Off a terminal (pipes, CI logs) rich would wrap tables at 80 columns.
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


# -- help rendering ----------------------------------------------------------------------
def _flag_shows_no_type(original: Any) -> Any:
    """Typer's Rich help prints a value type for every option, flags included
    (``--json <bool>``), which reads as if a flag took a value; its plain help leaves
    flags untyped, and so does ours."""

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        return original(self, ctx)

    return display_type_rich


TyperOption.display_type_rich = _flag_shows_no_type(  # type: ignore[method-assign]
    TyperOption.display_type_rich
)


# -- shared options (the public flag names other commands reuse) --------------------------
# These default to None (a flag left out defers to the settings file and env), so each help
# states the built-in default itself, written as Typer writes its own: "[default: …]".
CategoryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--category",
        "-c",
        help="NAME=prompt,prompt,... (repeatable). Prompts are captions, e.g."
        " 'violence=people fighting,a person being shot'.",
        show_default=False,
    ),
]
NullOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--null", help="Mark a --category as null (absorbs 'nothing matched').", show_default=False
    ),
]
RulesOpt = Annotated[
    Path | None,
    typer.Option("--rules", help="Rule-set YAML file: its categories, sampling and rules."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help=f"Hugging Face id or local checkpoint folder. \\[default: {DEFAULT_MODEL}]",
    ),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto | hpu | cuda | mps | cpu \\[default: auto]")
]
DtypeOpt = Annotated[
    str | None, typer.Option("--dtype", help="auto | fp32 | bf16 | fp16 \\[default: auto]")
]
RuntimeOpt = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        help="What runs the image tower: auto (OpenVINO on the CPU where installed, else"
        " torch) | torch | openvino \\[default: auto]",
    ),
]
FpsOpt = Annotated[
    float | None,
    typer.Option("--fps", help="Frames sampled per second of video. \\[default: 2]"),
]
SamplingOpt = Annotated[
    str | None,
    typer.Option("--sampling", help="fps | all | keyframes | scenes \\[default: fps]"),
]
FramingOpt = Annotated[
    str | None,
    typer.Option("--framing", help="letterbox | tiles | center | squash \\[default: letterbox]"),
]
StartOpt = Annotated[
    str | None,
    typer.Option("--start", help="Start of the window (3s, 1.5 s, 00:01:00). \\[default: 0]"),
]
EndOpt = Annotated[
    str | None,
    typer.Option("--end", help="End of the window. \\[default: the end of the video]"),
]
MaxFramesOpt = Annotated[
    int | None,
    typer.Option(
        "--max-frames",
        help="At most this many samples (spaced wider). \\[default: no limit]",
    ),
]
BatchSizeOpt = Annotated[
    int | None, typer.Option("--batch-size", help="Images per model call. \\[default: 32]")
]
IntervalOpt = Annotated[
    float | None,
    typer.Option("--interval", help="Seconds per interval of dominant labels. \\[default: 10]"),
]
PseOpt = Annotated[
    bool | None,
    typer.Option(
        "--pse/--no-pse",
        help="Check every frame for flashes and patterns (photosensitivity). \\[default: on]",
        show_default=False,
    ),
]
FastDecodeOpt = Annotated[
    bool | None,
    typer.Option(
        "--fast-decode/--exact-decode",
        help="fps sampling: skip non-reference frames when decoding (faster; a sample may be"
        " a frame or two from its target, recorded with the scan). Needs --no-pse and"
        " scenes off. \\[default: exact]",
        show_default=False,
    ),
]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="Where the work runs: local (this process) | ray (a Ray cluster: an actor per"
        " accelerator for scans, parts of the archive for reevaluate; needs PostgreSQL)"
        " \\[default: local]",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --executor ray: auto (the cluster this node belongs to) | ray://head:10001"
        " \\[default: start Ray on this machine]",
    ),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Settings file (TOML or YAML).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@dataclass(frozen=True)
class Window:
    """The part of each video analysed (--start, --end, --max-frames)."""

    start: str | None = None
    end: str | None = None
    max_frames: int | None = None


def escape(text: str) -> str:
    """Text from outside, for Rich output: markup escaped, control characters shown as
    escapes (a file name with a newline stays on its row)."""
    return escape_markup(visible_controls(text))


def fail(exc: BaseException) -> typer.Exit:
    code = exit_code(exc)
    # the message may quote outside text: never read as markup, and no control character
    # (a terminal escape in a file name) reaches the terminal; its own line breaks stay
    shown = "\n".join(visible_controls(line) for line in str(exc).split("\n"))
    err.print(f"[bold red]error:[/] {escape_markup(shown)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_rulesets(path: Path) -> list[Any]:
    """The rule sets of a file or folder; any broken file stops the command (exit 2)."""
    from policy_engine.policy.loader import RuleSetError, load_catalogue

    rulesets, problems = load_catalogue([path])
    if problems:
        raise RuleSetError(problems)
    if not rulesets:
        raise ConfigError(f"--rules {path}: no rule files (*.yaml) found")
    return rulesets


def settings_for(ctx: typer.Context, flags: dict[str, Any], config: Path | None) -> Settings:
    """Settings from flags (None = not given), the global --db, env and settings file."""
    db = (ctx.find_root().obj or {}).get("db") if ctx is not None else None
    return load_settings({**flags, "db": db}, config_file=config)


def open_store(settings: Settings) -> Any:
    """The configured database; a new one is created (and said so), an old one refused."""
    from policy_engine.store import Store

    return Store.open(settings.db, on_create=lambda note: err.print(note, highlight=False))


# -- what several commands take: rules, reports, model, dates ------------------------------
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


def rulesets_for(settings: Settings, rules: Path | None) -> list[Any]:
    if rules is None and (note := settings.rules_note()):
        err.print(note, highlight=False, markup=False, soft_wrap=True)
    return load_rulesets(rules or Path(settings.rules))


def model_provider(
    settings: Settings, on_loading: Callable[[str | None], None] | None = None
) -> Any:
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

    return ModelProvider.from_settings(settings, while_loading=announced)


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since {value!r}: write a date (2026-11-01) or date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when_text(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


# -- progress columns that know a total may not be known yet ------------------------------
class SecondsColumn(ProgressColumn):
    """Seconds of video done out of the total; only the seconds done while the total is
    unknown (a task starts before the video's duration is read)."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text(f"{task.completed:.1f} s")
        return Text(f"{task.completed:.1f}/{task.total:.1f} s")


class CountColumn(ProgressColumn):
    """``done/total``; nothing at all while the total is unknown (never ``0/?``)."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total)}")
