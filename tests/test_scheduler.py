"""The daemon on a fake clock (no waiting until 02:00), its stored jobs, settings
display, logs, and the `schedule` command's answers to bad set-ups."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select
from typer.testing import CliRunner

from policy_engine import logsetup, scheduler
from policy_engine.cli import app
from policy_engine.config import Settings
from policy_engine.errors import ConfigError
from policy_engine.ingest import StopSignals
from policy_engine.store import Store
from policy_engine.store.schema import IngestRun

REPO_ROOT = Path(__file__).resolve().parent.parent
LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "in").mkdir()
    return Settings(
        db=f"sqlite:///{tmp_path / 'e.sqlite'}",
        ingest=(str(tmp_path / "in"),),
        rules=str(REPO_ROOT / "policy_engine" / "rules"),
        reports=str(tmp_path / "reports"),
        timezone="Europe/London",
        settle_wait=0.0,
        heartbeat=0.5,
        claim_timeout=5.0,
    )


def runs(settings: Settings) -> list[tuple[str, datetime]]:
    store = Store.open(settings.db)
    try:
        with store._transaction() as s:
            rows = s.execute(select(IngestRun.trigger, IngestRun.started_at).order_by(IngestRun.id))
            return [(trigger, started) for trigger, started in rows]
    finally:
        store.close()


class Daemon:
    """`serve` in a thread, stopped the way a signal would stop it."""

    def __init__(self, settings: Settings) -> None:
        self.signals = StopSignals()
        self.ready = threading.Event()
        self.scheduler: Any = None
        self.thread = threading.Thread(target=self._serve, args=(settings,))
        self.error: BaseException | None = None

    def _serve(self, settings: Settings) -> None:
        try:
            scheduler.serve(settings, signals=self.signals, on_ready=self._on_ready)
        except BaseException as exc:  # surfaced in the test thread
            self.error = exc
            self.ready.set()

    def _on_ready(self, running: Any) -> None:
        self.scheduler = running
        self.ready.set()

    def __enter__(self) -> Daemon:
        self.thread.start()
        assert self.ready.wait(30), "the daemon did not start"
        if self.error:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.signals.request()
        self.thread.join(30)
        assert not self.thread.is_alive()


def wait_for(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_the_nightly_job_fires_at_two_in_the_configured_zone(settings: Settings) -> None:
    # The daemon starts an hour early: however long start-up takes on a loaded machine,
    # the next run is still 02:00 today (starting it at 01:59:59 made the test depend on
    # start-up taking under a second). Then the clock jumps to just before two.
    an_hour_early = datetime(2026, 11, 22, 1, 0, tzinfo=LONDON)
    with time_machine.travel(an_hour_early, tick=True) as clock, Daemon(settings) as daemon:
        job = daemon.scheduler.get_job(scheduler.NIGHTLY)
        assert job.next_run_time == datetime(2026, 11, 22, 2, 0, tzinfo=LONDON)
        assert not runs(settings)
        clock.move_to(datetime(2026, 11, 22, 1, 59, 59, 200_000, tzinfo=LONDON))
        daemon.scheduler.wakeup()  # it sleeps until its next run: let it look again
        assert wait_for(lambda: runs(settings))
        [(trigger, started)] = runs(settings)
    assert trigger == "nightly"
    assert started.astimezone(LONDON).strftime("%H:%M") == "02:00"


def test_missed_runs_are_coalesced_within_the_grace_and_skipped_beyond_it(
    settings: Settings,
) -> None:
    with time_machine.travel(datetime(2026, 11, 22, 1, 0, tzinfo=LONDON)), Daemon(settings):
        pass  # the job is stored with its next run at 02:00 on the 22nd
    # the daemon was down for three nights; it comes back at 02:30 on the 24th
    back = datetime(2026, 11, 24, 2, 30, tzinfo=LONDON)
    with time_machine.travel(back, tick=True), Daemon(settings) as daemon:
        assert wait_for(lambda: runs(settings))
        time.sleep(1.5)  # time for a second run, if there were to be one
        job = daemon.scheduler.get_job(scheduler.NIGHTLY)
        assert job.next_run_time == datetime(2026, 11, 25, 2, 0, tzinfo=LONDON)
    assert [trigger for trigger, _ in runs(settings)] == ["nightly"]  # one, not three
    strict = replace(settings, misfire_grace=600)  # ten minutes
    late = datetime(2026, 11, 25, 2, 30, tzinfo=LONDON)
    with time_machine.travel(late, tick=True), Daemon(strict):
        time.sleep(2.0)
    assert len(runs(settings)) == 1  # missed by 30 minutes: not made up


def test_a_changed_schedule_replaces_the_stored_job_and_poll_comes_and_goes(
    settings: Settings,
) -> None:
    with time_machine.travel(datetime(2026, 11, 22, 1, 0, tzinfo=LONDON)):
        with Daemon(replace(settings, poll=900)) as daemon:
            assert daemon.scheduler.get_job(scheduler.POLL) is not None
        with Daemon(replace(settings, schedule="30 3 * * 1-5")) as daemon:
            job = daemon.scheduler.get_job(scheduler.NIGHTLY)
            # the 22nd is a Sunday: the next weekday at 03:30 is Monday the 23rd
            assert job.next_run_time == datetime(2026, 11, 23, 3, 30, tzinfo=LONDON)
            assert daemon.scheduler.get_job(scheduler.POLL) is None


def test_the_interval_poll_runs_between_nights(settings: Settings) -> None:
    with Daemon(replace(settings, poll=1)):
        assert wait_for(lambda: len(runs(settings)) >= 2)
    assert {trigger for trigger, _ in runs(settings)} == {"poll"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schedule": "at two"}, "is not a cron expression"),
        ({"schedule": "0 25 * * *"}, "is not a cron expression"),
        ({"timezone": "Mars/Olympus"}, "not a known time zone"),
        ({"poll": -5}, "poll must be"),
    ],
)
def test_bad_schedules_are_refused_with_the_fix(
    settings: Settings, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        scheduler.serve(replace(settings, **change))


# -- the command line -----------------------------------------------------------------------
def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def test_config_show_says_where_each_setting_came_from(tmp_path: Path) -> None:
    config = tmp_path / "policy-engine.yaml"
    config.write_text(
        "policy_engine:\n  ingest: [/srv/ingest/a, /srv/ingest/b]\n  schedule: '0 3 * * *'\n"
        "  timezone: America/New_York\n"
    )
    result = invoke(
        "--db", "postgresql://ops:secret@db.example/pe",
        "config", "show", "--config", str(config), "--json",
        env={"POLICY_ENGINE_POLL": "600"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["ingest"] == {
        "value": ["/srv/ingest/a", "/srv/ingest/b"],
        "source": f"file {config}",
    }
    assert shown["poll"] == {"value": 600.0, "source": "env POLICY_ENGINE_POLL"}
    assert shown["db"]["source"] == "flag" and "secret" not in result.output
    assert shown["settle_seconds"]["source"] == "default"
    table = invoke("config", "show", "--config", str(config))
    assert "America/New_York" in table.output and f"file {config}" in table.output


def test_schedule_without_ingest_folders_says_how_to_give_them(tmp_path: Path) -> None:
    result = invoke("--db", f"sqlite:///{tmp_path / 'e.sqlite'}", "schedule", "--once")
    assert result.exit_code == 2
    assert "no ingest folders" in result.output and "--ingest" in result.output


def test_a_second_worker_on_sqlite_exits_6_and_says_why(settings: Settings, tmp_path: Path) -> None:
    with Daemon(replace(settings, schedule="0 2 1 1 *")):
        result = invoke(
            "--db", settings.db, "schedule", "--once", "--ingest", settings.ingest[0],
            "--rules", settings.rules, "--log-format", "json",
        )  # fmt: skip
    assert result.exit_code == 6
    assert "SQLite allows one ingest worker at a time" in result.output


def test_json_log_lines_carry_the_extra_fields() -> None:
    stream = io.StringIO()
    assert logsetup.configure("json", stream=stream) == "json"
    logging.getLogger("policy_engine.ingest").info(
        "run %d completed", 7, extra={"run": 7, "counts": {"seen": 3}}
    )
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["message"] == "run 7 completed" and entry["level"] == "info"
    assert entry["run"] == 7 and entry["counts"] == {"seen": 3}
    assert entry["time"].endswith("+00:00")
    logsetup.configure("human", stream=stream)
    logging.getLogger("policy_engine.ingest").warning("plain words")
    assert stream.getvalue().splitlines()[-1].endswith("WARNING plain words")
    with pytest.raises(ConfigError, match="log_format"):
        logsetup.configure("xml")


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("5-7", "sun,fri,sat"),
        ("0,6", "sun,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("MON-wed", "mon,tue,wed"),
        ("1/3", "mon,thu"),
    ],
)
def test_cron_weekdays_count_from_sunday_as_cron_does(field: str, names: str) -> None:
    assert scheduler.cron_weekdays(field) == names


def test_ingest_status_shows_a_quarantined_file_and_retry_releases_it(
    settings: Settings, tiny_clip_dir: Path
) -> None:
    from policy_engine.ingest import Ingestor

    broken = Path(settings.ingest[0]) / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    once = replace(
        settings, model=str(tiny_clip_dir), settle_seconds=0, quiet_seconds=0, max_attempts=1
    )
    with Ingestor(once) as ingestor:
        result = ingestor.run_pass()
    assert result.counts.quarantined == 1
    status = invoke("--db", settings.db, "ingest", "status", "--json")
    assert status.exit_code == 0, status.output
    shown = json.loads(status.output)
    [row] = shown["files"]
    assert row["state"] == "quarantined" and "not a readable video" in row["last_error"]
    assert shown["runs"][0]["quarantined"] == 1
    table = invoke("--db", settings.db, "ingest", "status", "--state", "quarantined")
    assert "broken.mp4" in table.output and "quarantined" in table.output
    released = invoke("--db", settings.db, "ingest", "retry", str(broken))
    assert released.exit_code == 0 and "1 file(s)" in released.output
    again = json.loads(invoke("--db", settings.db, "ingest", "status", "--json").output)
    assert again["files"][0]["state"] == "retry" and again["files"][0]["attempts"] == 0
