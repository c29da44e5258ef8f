"""Nothing is lost, with real worker processes: kill -9 in the middle of a scan, SIGTERM,
two workers on one PostgreSQL database, and a folder full of bad files (run as
root without its power to override file permissions, when the tests run as root)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from policy_engine.media.synthetic import write_color_segments

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).parent / "policy-engine"


def worker_env(home: Path, model: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        "HF_HOME": str(home / "hf"),
        "POLICY_ENGINE_MODEL": str(model),
        "POLICY_ENGINE_RULES": str(REPO_ROOT / "policy_engine" / "rules"),
        "POLICY_ENGINE_REPORTS": str(home / "reports"),
        "POLICY_ENGINE_SETTLE_SECONDS": "0.2",
        "POLICY_ENGINE_QUIET_SECONDS": "0",
        "POLICY_ENGINE_RETRY_BACKOFF": "0",
        "POLICY_ENGINE_HEARTBEAT": "0.5",
        "POLICY_ENGINE_CLAIM_TIMEOUT": "20",
        "POLICY_ENGINE_LOG_FORMAT": "json",
    }
    env.update(extra)
    return env


def start_worker(db: str, folder: Path, env: dict[str, str], **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [str(CLI), "--db", db, "schedule", "--once", "--ingest", str(folder)],
        env=env,
        cwd=env["HOME"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finish(worker: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    _, stderr = worker.communicate(timeout=timeout)
    return worker.returncode, stderr


def query(db: str, sql: str) -> list[tuple]:
    engine = create_engine(db.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def wait_for_running_scan(path: Path, worker: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()[1][-3000:]
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as connection:
                if connection.execute(
                    "select count(*) from scans where status='running'"
                ).fetchone()[0]:
                    return
        except sqlite3.Error:
            pass  # not created yet, or busy
        time.sleep(0.01)
    raise AssertionError("no scan started in time")


def every_asset_has_one_completed_scan_and_one_decision_per_rule_set(db: str) -> int:
    scans = query(
        db,
        "select asset_id, count(*) from scans where status='completed' group by asset_id",
    )
    assert scans and all(n == 1 for _, n in scans), scans
    decisions = query(
        db, "select asset_id, ruleset_name, count(*) from decisions group by asset_id, ruleset_name"
    )
    assert all(n == 1 for *_, n in decisions), decisions
    assert {a for a, *_ in decisions} == {a for a, _ in scans}
    assert query(db, "select count(*) from scans where status='running'") == [(0,)]
    assert query(db, "select count(*) from ingest_runs where status='running'") == [(0,)]
    return len(scans)


def touch_all(folder: Path) -> None:
    now = time.time()
    for video in folder.iterdir():
        os.utime(video, (now, now))


def live_workers(db: str) -> int:
    try:
        return query(db, "select count(*) from ingest_workers where stopped_at is null")[0][0]
    except DBAPIError:  # the first worker has not created the tables yet
        return 0


@pytest.fixture
def videos(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        write_color_segments(
            folder / f"trailer-{i}.mp4",
            [(3.0, (40 * i, 200 - 30 * i, 90)), (3.0, (200, 40 * i, 20))],
            size=(160, 90),
        )
    yield folder


def test_kill_9_mid_scan_then_restart_loses_nothing_and_doubles_nothing(
    tmp_path: Path, tiny_clip_dir: Path, videos: Path
) -> None:
    db_path = tmp_path / "engine.sqlite"
    db = f"sqlite:///{db_path}"
    env = worker_env(tmp_path, tiny_clip_dir, POLICY_ENGINE_FPS="8")
    worker = start_worker(db, videos, env)
    wait_for_running_scan(db_path, worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait()

    restarted = start_worker(db, videos, env)
    code, log = finish(restarted)
    assert code == 0, log[-3000:]
    assert every_asset_has_one_completed_scan_and_one_decision_per_rule_set(db) == 5
    interrupted = query(db, "select error from scans where status='failed'")
    assert len(interrupted) == 1 and "interrupted: worker" in interrupted[0][0]
    assert "no longer exists" in interrupted[0][0]  # noticed at once, not after the timeout
    assert query(db, "select state, count(*) from ingest_files group by state") == [("done", 5)]
    died = query(db, "select status, error from ingest_runs order by id")[0]
    assert died[0] == "failed" and "the worker died" in died[1]


def test_sigterm_finishes_the_file_in_hand_and_exits_cleanly(
    tmp_path: Path, tiny_clip_dir: Path, videos: Path
) -> None:
    db_path = tmp_path / "engine.sqlite"
    db = f"sqlite:///{db_path}"
    env = worker_env(tmp_path, tiny_clip_dir, POLICY_ENGINE_FPS="8")
    worker = start_worker(db, videos, env)
    wait_for_running_scan(db_path, worker)
    worker.send_signal(signal.SIGTERM)
    code, log = finish(worker, timeout=60)
    assert code == 0, log[-3000:]
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any("SIGTERM" in line["message"] for line in lines)
    assert query(db, "select status from ingest_runs") == [("stopped",)]
    assert query(db, "select count(*) from scans where status != 'completed'") == [(0,)]
    done = query(db, "select count(*) from ingest_files where state='done'")[0][0]
    assert 1 <= done < 5
    assert query(db, "select stop_reason from ingest_workers") == [("stopped on request",)]

    code, log = finish(start_worker(db, videos, env))
    assert code == 0, log[-3000:]
    assert every_asset_has_one_completed_scan_and_one_decision_per_rule_set(db) == 5


def test_two_workers_on_postgresql_scan_each_asset_exactly_once(
    tmp_path: Path, tiny_clip_dir: Path, postgres_url: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(20):
        write_color_segments(
            folder / f"promo-{i:02d}.mp4",
            [(2.0, (12 * i, 255 - 12 * i, (37 * i) % 256)), (2.0, ((90 * i) % 256, 30, 200))],
            size=(160, 90),
        )
    shutil.copy(folder / "promo-00.mp4", folder / "promo-00 copy.mp4")  # same content twice
    shutil.copy(folder / "promo-07.mp4", folder / "zz-promo-07 again.mp4")
    # the files are "still being written" until both workers are up (start-up takes
    # seconds, far more under load), then quiet: both are claiming from the same moment
    env = worker_env(
        tmp_path, tiny_clip_dir, POLICY_ENGINE_FPS="8", POLICY_ENGINE_QUIET_SECONDS="3"
    )
    touch_all(folder)
    workers = [start_worker(postgres_url, folder, env) for _ in range(2)]
    deadline = time.monotonic() + 180
    while live_workers(postgres_url) < 2:
        assert all(w.poll() is None for w in workers), workers[0].communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the workers did not start in 3 minutes"
        touch_all(folder)
        time.sleep(0.5)
    touch_all(folder)
    logs = []
    for worker in workers:
        code, log = finish(worker)
        assert code == 0, log[-3000:]
        logs.append(log)
    assert every_asset_has_one_completed_scan_and_one_decision_per_rule_set(postgres_url) == 20
    assert query(postgres_url, "select count(*) from scans") == [(20,)]  # none failed, none twice
    assert query(postgres_url, "select state, count(*) from ingest_files group by state") == [
        ("done", 22)
    ]
    per_worker = query(
        postgres_url, "select worker_id, count(*) from scans group by worker_id order by 2"
    )
    assert len(per_worker) == 2, f"one worker did everything: {per_worker}\n" + "\n---\n".join(
        "\n".join(line[:220] for line in log.splitlines()[:40]) for log in logs
    )
    runs = query(postgres_url, "select scanned, reused from ingest_runs")
    assert sum(s for s, _ in runs) == 20 and sum(r for _, r in runs) == 2


def _without_permission_override() -> None:
    """In the child, before exec: drop root's power to ignore file permissions
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a mode-000 file is unreadable."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_folder_of_bad_files_and_hostile_names_finishes_with_reasons(
    tmp_path: Path, tiny_clip_dir: Path
) -> None:
    _bad_folder_run(tmp_path, tiny_clip_dir)


def _bad_folder_run(home: Path, tiny_clip_dir: Path) -> None:
    folder = home / "in"
    folder.mkdir()
    good_names = [
        "good.mp4",
        "<img src=x onerror=alert(1)> & 'quotes' \"too\".mp4",
        "-rf --leading dash.mp4",
        "new\nline.mp4",
        "ユニコード 予告編 🎬.mp4",
        "$(touch pwned) `id`; rm -rf x.mp4",
        "l" * 200 + ".mp4",
    ]
    for i, name in enumerate(good_names):  # written under a plain name, then renamed
        made = write_color_segments(
            home / "tmp.mp4", [(2.0, (30 * i, 250 - 30 * i, 60))], size=(160, 90)
        )
        made.rename(folder / name)
    whole = (folder / "good.mp4").read_bytes()
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.mp4").write_text("this is a text file with a video's name\n")
    write_color_segments(folder / "locked.mp4", [(2.0, (1, 2, 3))], size=(160, 90))
    (folder / "locked.mp4").chmod(0)
    with open(os.path.join(os.fsencode(folder), b"latin1-\xe9.mp4"), "wb") as handle:
        handle.write(whole)
    (folder / "sub").mkdir()
    (folder / "sub" / "nested.mov").write_bytes(whole)  # same content as good.mp4
    for path in [home, *home.rglob("*")]:
        if path.name != "locked.mp4":
            path.chmod(
                path.stat().st_mode | 0o755 if path.is_dir() else path.stat().st_mode | 0o644
            )

    db_path = home / "engine.sqlite"
    db = f"sqlite:///{db_path}"
    env = worker_env(home, tiny_clip_dir)
    as_root = {"preexec_fn": _without_permission_override} if os.getuid() == 0 else {}
    code, log = finish(start_worker(db, folder, env, **as_root))
    assert code == 0, log[-3000:]

    rows = query(
        db,
        "select f.path, f.state, s.status, s.error from ingest_files f"
        " left join scans s on s.id = f.scan_id",
    )
    by_name = {Path(path).name: (state, status, error) for path, state, status, error in rows}
    for name in [*good_names, "nested.mov"]:
        assert by_name[name][0] == "done", (name, by_name[name])
    reasons = {
        name: by_name[name][2] for name in ("zero.mp4", "truncated.mp4", "notes.mp4", "locked.mp4")
    }
    assert all(by_name[n][:2] == ("retry", "failed") for n in reasons), by_name
    assert "empty" in reasons["zero.mp4"]
    assert "permission denied" in reasons["locked.mp4"]
    assert all(reason for reason in reasons.values())
    decided = query(db, "select count(distinct asset_id) from decisions")[0][0]
    assert decided == len(good_names)  # nested.mov is good.mp4's content: one asset
    run = query(db, "select status, seen, scanned, reused, failed, problems from ingest_runs")[0]
    assert run[:5] == ("completed", 12, 7, 1, 4)
    problems = json.loads(run[5]) if isinstance(run[5], str) else run[5]
    assert any("latin1-\\xe9.mp4" in p and "not valid UTF-8" in p for p in problems)
    summary = (home / "reports" / "index.html").read_text()
    assert "<img src=x onerror=alert(1)>" not in summary
    assert "&lt;img src=x onerror=alert(1)&gt;" in summary
    assert not (home / "pwned").exists()
