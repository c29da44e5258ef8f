"""`--help` reads one way everywhere, and every command that scans takes the same
analysis flags, which then take effect."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from policy_engine.cli import app
from policy_engine.config import SHIPPED_RULES
from policy_engine.media.synthetic import write_color_segments

runner = CliRunner()


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if hasattr(command, "commands"):  # a group (Typer's own click)
        for name, sub in command.commands.items():
            found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))
assert len(COMMANDS) > 20, COMMANDS


def _help(*path: str) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "policy-engine")
def test_help_gives_flags_no_value_type_and_writes_defaults_one_way(path: tuple[str, ...]) -> None:
    text = _help(*path)
    assert "<bool>" not in text
    for line in text.splitlines():
        if re.search(r"--(json|help|force|strict|once|version)\b", line):
            assert not re.search(r"<\w+>", line), line  # a flag takes no value
    defaults = re.findall(r"default[: ]", text, flags=re.IGNORECASE)  # stating a default
    written = re.findall(r"\[default: [^\]]+\]", text)
    assert len(defaults) == len(written), text  # never "(default: 0)" nor "default 02:00"
    assert not re.search(r"\[\d+\]", text), text  # nor a bare "[32]"


def _option_names(*path: str) -> set[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}


ANALYSIS = {"--model", "--device", "--dtype", "--fps", "--sampling", "--framing"}
ANALYSIS |= {"--batch-size", "--interval", "--config", "--rules", "--pse", "--no-pse"}
WINDOW = {"--start", "--end", "--max-frames"}


def test_every_scanning_command_takes_the_shared_flags() -> None:
    assert ANALYSIS | WINDOW | {"--json", "--category", "--null"} <= _option_names("analyze")
    assert ANALYSIS | WINDOW | {"--json"} <= _option_names("scan")
    assert _option_names("schedule") >= ANALYSIS


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "clip.mp4"
    path.parent.mkdir()
    return write_color_segments(path, [(1.5, (220, 20, 20)), (1.5, (20, 200, 20))], size=(160, 90))


def _stored_scan(db: str) -> dict:
    result = runner.invoke(app, ["--db", db, "show", "1", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_scan_window_flags_take_effect(clip: Path, tiny_clip_dir: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    result = runner.invoke(
        app,
        ["--db", db, "scan", str(clip), "--model", str(tiny_clip_dir), "--device", "cpu",
         "--rules", str(SHIPPED_RULES), "--reports", str(tmp_path / "reports"),
         "--fps", "4", "--start", "1s", "--max-frames", "3", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    history = runner.invoke(app, ["--db", db, "history", "1"])
    assert re.search(r"scan 1 .* completed: 3 frames", history.stdout), history.stdout
    sampling = _stored_scan(db)["scan"]["sampling"]
    assert sampling["start"] == 1.0 and sampling["max_frames"] == 3
    assert sampling["photosensitivity"]["area"] == "regions"  # on by default, recorded


def test_schedule_analysis_flags_take_effect(clip: Path, tmp_path: Path, schedule_once) -> None:
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    result = schedule_once(
        db, clip.parent,
        "--dtype", "fp32", "--sampling", "keyframes", "--framing", "center", "--interval", "1",
        "--no-pse",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scan = _stored_scan(db)["scan"]
    assert "photosensitivity" not in scan["sampling"]  # not asked for: not part of the key
    assert scan["dtype"] == "fp32"
    assert scan["sampling"]["mode"] == "keyframes"
    assert scan["sampling"]["framing"] == "center" and scan["sampling"]["interval"] == 1.0


def test_a_scan_of_part_of_the_video_gives_a_verdict_that_says_so(
    clip: Path, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    """A window or a frame cap judges only part of a trailer: its verdict goes to review
    and names the part, whatever the rules found."""
    common = ["--model", str(tiny_clip_dir), "--device", "cpu", "--rules", str(SHIPPED_RULES),
              "--reports", str(tmp_path / "reports"), "--json"]  # fmt: skip
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    part = runner.invoke(app, ["--db", db, "scan", str(clip), "--start", "1s", *common])
    assert part.exit_code == 0, part.output
    (outcome,) = json.loads(part.stdout)
    assert outcome["verdict"]["review"] is True
    assert any(
        "part of the video only (1 s to the end)" in w for w in outcome["verdict"]["warnings"]
    )
    whole_db = f"sqlite:///{tmp_path / 'whole.sqlite'}"
    whole = runner.invoke(app, ["--db", whole_db, "scan", str(clip), *common])
    (outcome,) = json.loads(whole.stdout)
    assert not any("part of the video" in w for w in outcome["verdict"]["warnings"])
