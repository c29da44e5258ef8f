"""The exit codes the README promises (policy_engine.errors.EXIT_CODES): a mistake in
what was asked is 2, a database that fails is 5, even midway through a run."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest
import sqlalchemy.exc
from typer.testing import CliRunner

from policy_engine.cli import app, main
from policy_engine.errors import StoreError
from policy_engine.media.synthetic import write_color_segments
from policy_engine.store import Store

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "clip.mp4"
    path.parent.mkdir()
    return write_color_segments(path, [(1.0, (220, 20, 20)), (1.0, (20, 200, 20))], size=(160, 90))


def _scan_args(db: str, clip: Path, model: Path, tmp_path: Path) -> list[str]:
    return ["--db", db, "scan", str(clip), "--model", str(model), "--device", "cpu",
            "--rules", str(ROOT / "rules"), "--reports", str(tmp_path / "reports")]  # fmt: skip


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
    clip: Path, tiny_clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _database_fails_midway(monkeypatch, StoreError("database pe.sqlite: disk I/O error"))
    for name, value in {
        "SETTLE_SECONDS": "0.1",
        "QUIET_SECONDS": "0",
        "LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(f"POLICY_ENGINE_{name}", value)
    db = f"sqlite:///{tmp_path / 'pe.sqlite'}"
    result = runner.invoke(
        app,
        ["--db", db, "schedule", "--once", "--ingest", str(clip.parent),
         "--model", str(tiny_clip_dir), "--device", "cpu", "--rules", str(ROOT / "rules"),
         "--reports", str(tmp_path / "reports")],
    )  # fmt: skip
    assert result.exit_code == 5, result.output
