"""Answers that tell a new user what went wrong: `ingest retry` of a file the queue does
not hold, a hash prefix too short to use, and logs without APScheduler's chatter."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policy_engine import logsetup
from policy_engine.cli import app
from policy_engine.config import SHIPPED_RULES, Settings
from policy_engine.ingest import Ingestor
from policy_engine.media.synthetic import write_color_segments
from policy_engine.store import Store

runner = CliRunner()


@pytest.fixture
def quarantined(tmp_path: Path, tiny_clip_dir: Path) -> tuple[Settings, Path]:
    """A database whose queue holds one quarantined file (not a video)."""
    (tmp_path / "in").mkdir()
    broken = tmp_path / "in" / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    settings = Settings(
        db=f"sqlite:///{tmp_path / 'e.sqlite'}",
        ingest=(str(tmp_path / "in"),),
        rules=str(SHIPPED_RULES),
        reports=str(tmp_path / "reports"),
        model=str(tiny_clip_dir),
        settle_seconds=0,
        quiet_seconds=0,
        settle_wait=0,
        max_attempts=1,
    )
    with Ingestor(settings) as ingestor:
        assert ingestor.run_pass().counts.quarantined == 1
    return settings, broken


def _states(db: str) -> dict[str, str]:
    result = runner.invoke(app, ["--db", db, "ingest", "status", "--json"])
    return {Path(f["path"]).name: f["state"] for f in json.loads(result.stdout)["files"]}


def test_retry_of_a_file_not_in_the_queue_says_so_and_changes_nothing(
    quarantined: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, broken = quarantined
    missing = tmp_path / "missing.mp4"
    result = runner.invoke(app, ["--db", settings.db, "ingest", "retry", str(broken), str(missing)])
    assert result.exit_code == 2, result.output
    assert f"{missing}: not in the ingest queue" in result.stderr
    assert "0 file(s)" not in result.output
    assert _states(settings.db) == {"broken.mp4": "quarantined"}  # all or nothing


def test_retry_of_a_file_that_is_not_quarantined_says_its_state(
    quarantined: tuple[Settings, Path],
) -> None:
    settings, broken = quarantined
    good = broken.with_name("good.mp4")
    write_color_segments(good, [(1.0, (220, 20, 20))], size=(160, 90))
    with Ingestor(settings) as ingestor:
        assert ingestor.run_pass().counts.scanned == 1
    result = runner.invoke(app, ["--db", settings.db, "ingest", "retry", str(good)])
    assert result.exit_code == 2, result.output
    assert f"{good}: done, not quarantined" in result.stderr
    assert _states(settings.db) == {"broken.mp4": "quarantined", "good.mp4": "done"}


def test_a_hash_prefix_too_short_names_the_minimum(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    digest = "5a40f63ac90d627b4212dbd0795ecac033318b298ecd3cb26d56ee145dc57b4e"
    store = Store.open(db)
    try:
        store.record_asset("/in/a.mp4", f"sha256:{digest}", 10, None)
    finally:
        store.close()
    short = runner.invoke(app, ["--db", db, "history", digest[:5]])
    assert short.exit_code == 2
    assert "at least 6 hex digits" in short.stderr
    assert runner.invoke(app, ["--db", db, "history", digest[:6]]).exit_code == 0
    unknown = runner.invoke(app, ["--db", db, "history", "ffffff"])
    assert unknown.exit_code == 2 and "at least" not in unknown.stderr


def test_apscheduler_says_only_warnings() -> None:
    stream = io.StringIO()
    logsetup.configure("human", stream=stream)
    logging.getLogger("apscheduler.executors.default").info('Running job "poll" (trigger: …)')
    logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed by 0:00:05")
    logging.getLogger("policy_engine.ingest").info("run 3 completed")
    lines = stream.getvalue().splitlines()
    assert not any("Running job" in line for line in lines)
    assert any("was missed" in line for line in lines)
    assert any("run 3 completed" in line for line in lines)
