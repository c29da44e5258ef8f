"""The command line on a real pseudo-terminal: progress bars, spinners and Rich's terminal
rendering only run there (piped, or under CliRunner, they are switched off), so each
command that shows progress is run once on a pty."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from policy_engine.config import SHIPPED_RULES
from policy_engine.media.synthetic import write_color_segments

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def run_on_terminal(
    *args: str, cwd: Path, columns: int = 200, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """``policy-engine ARGS`` with stdin, stdout and stderr on one pseudo-terminal of
    ``columns`` columns; returns the exit code and everything shown, escapes removed."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TERM": "xterm-256color",
        "COLUMNS": str(columns),
        "LINES": "50",
        **(env or {}),
    }
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-c", "from policy_engine.cli import main; main()", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=cwd,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    shown = bytearray()
    deadline = time.monotonic() + 180  # a command that hangs fails the test, not CI
    while True:  # until the child closes the terminal (EIO on Linux)
        ready, _, _ = select.select([leader], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            process.kill()
            os.close(leader)
            raise AssertionError(
                f"no end after 180 s; shown so far:\n{shown.decode(errors='replace')}"
            )
        try:
            chunk = os.read(leader, 65536)
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    code = process.wait(timeout=120)
    return code, ANSI.sub("", shown.decode("utf-8", "replace"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s: red then green."""
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    return write_color_segments(path, [(1.5, (220, 20, 20)), (1.5, (20, 200, 20))], size=(160, 90))


def test_analyze_on_a_terminal_shows_progress_and_the_table(
    clip: Path, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    code, shown = run_on_terminal(
        "analyze", str(clip), "--model", str(tiny_clip_dir), "--device", "cpu", cwd=tmp_path
    )
    assert code == 0, shown
    assert "internal error" not in shown and "NoneType" not in shown
    assert "frames sampled" in shown and "dominant per 10 s" in shown


def test_scan_on_a_terminal_says_the_model_is_loading(
    clip: Path, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    code, shown = run_on_terminal(
        "--db", db, "scan", str(clip), "--model", str(tiny_clip_dir), "--device", "cpu",
        "--rules", str(SHIPPED_RULES), "--reports", str(tmp_path / "reports"),
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, shown
    assert "internal error" not in shown
    assert f"loading model {tiny_clip_dir} …" in shown
    assert "0/?" not in shown  # an unknown total is not shown as a count
    assert "1 file(s): 1 scanned" in shown


def test_demo_on_a_terminal(tmp_path: Path) -> None:
    """`demo` makes its own model and trailers and scans them with the progress display."""
    code, shown = run_on_terminal(
        "demo",
        "--workdir",
        str(tmp_path / "demo"),
        cwd=tmp_path,  # anywhere: the shipped rules are package data
        env={"POLICY_ENGINE_REPORTS": str(tmp_path / "reports")},
    )
    assert code == 0, shown
    assert "internal error" not in shown
    assert "loading model" in shown and "scanned" in shown


def test_history_on_100_columns_shows_the_verdict_and_the_whole_path(
    tiny_clip_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "a-rather-long-ingest-folder-name" / "trailers-for-the-autumn-schedule"
    folder.mkdir(parents=True)
    clip = write_color_segments(
        folder / "the-very-long-title-of-a-feature-trailer.mp4", [(1.0, (220, 20, 20))],
        size=(160, 90),
    )  # fmt: skip
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    code, shown = run_on_terminal(
        "--db", db, "scan", str(clip), "--model", str(tiny_clip_dir), "--device", "cpu",
        "--rules", str(SHIPPED_RULES), "--reports", str(tmp_path / "reports"), "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, shown
    code, shown = run_on_terminal("--db", db, "history", cwd=tmp_path, columns=100)
    assert code == 0, shown
    lines = shown.splitlines()
    assert all(len(line) <= 100 for line in lines), shown
    assert re.search(r"\b(unrestricted|post-watershed|not-for-broadcast)\b", shown), shown
    assert "…" not in shown, shown
    rows = [line.split("│") for line in lines if line.count("│") >= 6]
    assert str(clip) in "".join(row[1].strip() for row in rows), shown  # folded, never cut


def test_schedule_once_on_a_terminal_logs_readable_lines(
    clip: Path, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    """On a terminal the nightly run logs human lines (auto format) and finishes."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "clip.mp4").write_bytes(clip.read_bytes())
    code, shown = run_on_terminal(
        "--db", f"sqlite:///{tmp_path / 'pe.sqlite'}", "schedule", "--once",
        "--ingest", str(tmp_path / "in"), "--model", str(tiny_clip_dir), "--device", "cpu",
        "--rules", str(SHIPPED_RULES), "--reports", str(tmp_path / "reports"),
        cwd=tmp_path,
        env={"POLICY_ENGINE_SETTLE_SECONDS": "0.1", "POLICY_ENGINE_QUIET_SECONDS": "0"},
    )  # fmt: skip
    assert code == 0, shown
    assert "internal error" not in shown and '{"time"' not in shown  # human, not JSON
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO +run 1 completed", shown, re.M), shown
