"""Log forging: a file named with a newline (or any control character) stays on one
log line and one table row, the character shown as an escape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policy_engine.cli import app
from policy_engine.config import SHIPPED_RULES
from policy_engine.media.synthetic import write_color_segments

runner = CliRunner()
NAME = "new\nline\x1b[31m.mp4"  # a newline, and an escape sequence that would colour a terminal
SHOWN = r"new\nline\x1b[31m.mp4"


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    return write_color_segments(folder / NAME, [(1.0, (220, 20, 20))], size=(160, 90))


def _lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def _no_forged_line(text: str) -> None:
    assert not any(line.lstrip().startswith("line") for line in text.splitlines()), text
    assert "\x1b[31m" not in text


def test_a_newline_in_a_file_name_stays_on_one_log_line_and_one_row(
    hostile: Path, tiny_clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"SETTLE_SECONDS": "0.1", "QUIET_SECONDS": "0"}.items():
        monkeypatch.setenv(f"POLICY_ENGINE_{name}", value)
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    run = runner.invoke(
        app,
        ["--db", db, "schedule", "--once", "--ingest", str(hostile.parent), "--log-format",
         "human", "--model", str(tiny_clip_dir), "--device", "cpu",
         "--rules", str(SHIPPED_RULES), "--reports", str(tmp_path / "reports")],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    logged = _lines_with(run.stderr, SHOWN)
    assert logged and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in logged)
    _no_forged_line(run.stderr)

    status = runner.invoke(app, ["--db", db, "ingest", "status"], terminal_width=250)
    assert len(_lines_with(status.stdout, SHOWN)) == 1, status.stdout
    _no_forged_line(status.stdout)

    history = runner.invoke(app, ["--db", db, "history"], terminal_width=250)
    assert len(_lines_with(history.stdout, SHOWN)) == 1, history.stdout
    _no_forged_line(history.stdout)
    one = runner.invoke(app, ["--db", db, "history", "1"], terminal_width=250)
    assert len(_lines_with(one.stdout, f"seen at {hostile.parent}/{SHOWN}")) == 1, one.stdout
    _no_forged_line(one.stdout)


def test_a_newline_in_a_file_name_stays_on_its_row_of_the_scan_summary(
    hostile: Path, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        ["--db", f"sqlite:///{tmp_path / 'pe.sqlite'}", "scan", str(hostile),
         "--model", str(tiny_clip_dir), "--device", "cpu", "--rules", str(SHIPPED_RULES),
         "--reports", str(tmp_path / "reports")],
        terminal_width=250,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    row = _lines_with(result.stdout, SHOWN)
    assert len(row) == 1 and "scanned" in row[0], result.stdout
    _no_forged_line(result.stdout)


def test_an_error_about_a_hostile_name_is_one_line_and_no_markup(
    tmp_path: Path, tiny_clip_dir: Path
) -> None:
    bad = tmp_path / "[bold]new\nline.mp4"
    bad.write_bytes(b"not a video")
    result = runner.invoke(app, ["analyze", str(bad), "--model", str(tiny_clip_dir)])
    assert result.exit_code == 3, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and r"[bold]new\nline.mp4" in line
