"""The exit codes the README promises (policy_engine.errors.EXIT_CODES): a mistake in
what was asked is 2, a database that fails is 5, even midway through a run."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path

import pytest
import sqlalchemy.exc
from typer.testing import CliRunner

from policy_engine.cli import app, main
from policy_engine.config import SHIPPED_RULES
from policy_engine.errors import StoreError
from policy_engine.media.synthetic import write_color_segments
from policy_engine.store import Store

runner = CliRunner()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "clip.mp4"
    path.parent.mkdir()
    return write_color_segments(path, [(1.0, (220, 20, 20)), (1.0, (20, 200, 20))], size=(160, 90))


def _scan_args(db: str, clip: Path, model: Path, tmp_path: Path) -> list[str]:
    return ["--db", db, "scan", str(clip), "--model", str(model), "--device", "cpu",
            "--rules", str(SHIPPED_RULES), "--reports", str(tmp_path / "reports")]  # fmt: skip


@pytest.mark.parametrize(
    "flags",
    [["--reviewer", " ", "-j", "checked"], ["--reviewer", "ann", "-j", ""]],
    ids=["blank reviewer", "blank justification"],
)
def test_blank_reviewer_or_justification_is_a_usage_error(
    flags: list[str], clip: Path, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    assert runner.invoke(app, _scan_args(db, clip, tiny_clip_dir, tmp_path)).exit_code == 0
    result = runner.invoke(app, ["--db", db, "override", "1", *flags, "--schedule", "unrestricted"])
    assert result.exit_code == 2, result.output
    assert "needs the reviewer's name" in result.stderr or "needs a justification" in result.stderr


def _database_fails_midway(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """The database fails when a scan's results are stored (after the run began)."""

    def complete_scan(self: Store, *args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(Store, "complete_scan", complete_scan)


def test_a_database_failure_midway_through_scan_exits_5(
    clip: Path, tiny_clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver error that escaped the store's wording is still a database problem."""
    driver_error = sqlite3.OperationalError("disk I/O error")
    _database_fails_midway(
        monkeypatch, sqlalchemy.exc.OperationalError("UPDATE scans", {}, driver_error)
    )
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    monkeypatch.setattr(
        sys, "argv", ["policy-engine", *_scan_args(db, clip, tiny_clip_dir, tmp_path)]
    )
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 5


def test_a_database_failure_that_stops_a_nightly_run_exits_5(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schedule_once
) -> None:
    _database_fails_midway(monkeypatch, StoreError("database pe.sqlite: disk I/O error"))
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    result = schedule_once(db, clip.parent)
    assert result.exit_code == 5, result.output


@pytest.fixture
def three_seconds(tmp_path: Path) -> Path:
    return write_color_segments(
        tmp_path / "short.mp4", [(1.5, (220, 20, 20)), (1.5, (20, 200, 20))], size=(160, 90)
    )


@pytest.mark.parametrize("window", [["--start", "10s"], ["--start", "3.5s", "--end", "20s"]])
def test_a_window_past_the_end_of_the_clip_is_a_usage_error(
    window: list[str], three_seconds: Path, tiny_clip_dir: Path
) -> None:
    result = runner.invoke(
        app, ["analyze", str(three_seconds), "--model", str(tiny_clip_dir), *window]
    )
    assert result.exit_code == 2, result.output
    assert "frames sampled" not in result.stdout
    assert re.search(r"the video is 3\.\d\d s long", result.stderr), result.stderr


def test_an_end_before_the_start_is_a_usage_error(three_seconds: Path, tiny_clip_dir: Path) -> None:
    result = runner.invoke(
        app,
        ["analyze", str(three_seconds), "--model", str(tiny_clip_dir), "--start", "2s",
         "--end", "1s"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output


def test_in_a_batch_a_clip_the_window_misses_fails_alone(
    three_seconds: Path, tiny_clip_dir: Path, tmp_path: Path
) -> None:
    longer = write_color_segments(tmp_path / "long.mp4", [(5.0, (20, 20, 220))], size=(160, 90))
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    args = _scan_args(db, three_seconds, tiny_clip_dir, tmp_path)
    result = runner.invoke(app, [*args, str(longer), "--start", "4s", "--json"])
    assert result.exit_code == 0, result.output
    outcomes = {Path(o["path"]).name: o for o in json.loads(result.stdout)}
    assert outcomes["long.mp4"]["status"] == "scanned"
    assert outcomes["short.mp4"]["status"] == "failed"
    assert "the video is 3." in outcomes["short.mp4"]["error"]
