"""Hostile folders, databases that keep nothing, and a reports folder that cannot be
written: a clear problem, nothing lost, the rest processed."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policy_engine.cli import app
from policy_engine.config import Settings
from policy_engine.errors import ConfigError
from policy_engine.ingest import discover
from policy_engine.media.synthetic import write_color_segments
from policy_engine.pipeline.scan import find_videos
from policy_engine.reporting import write_atomically
from policy_engine.store import Store

runner = CliRunner()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_color_segments(tmp_path / "clip.mp4", [(1.0, (200, 30, 30))], size=(160, 90))


# -- symbolic links ---------------------------------------------------------------------------
def test_links_out_of_the_ingest_folder_are_refused_and_broken_links_reported(
    tmp_path: Path, clip: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    secret = tmp_path / "elsewhere" / "not-for-you.mp4"
    secret.parent.mkdir()
    shutil.copy(clip, secret)
    shutil.copy(clip, folder / "trailer.mp4")
    (folder / "alias.mp4").symlink_to(folder / "trailer.mp4")  # stays inside: fine
    (folder / "leak.mp4").symlink_to(secret)
    (folder / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    (folder / "loop.mp4").symlink_to(folder / "loop.mp4")
    seen, problems = discover(Settings(), str(folder))
    assert sorted(Path(o.path).name for o in seen) == ["alias.mp4", "trailer.mp4"]
    text = "\n".join(problems)
    assert "leak.mp4: symbolic link to" in text and "outside the folder" in text
    assert "outside_links" in text  # and how to allow it
    assert "dangling.mp4: symbolic link to" in text and "does not exist" in text
    assert "loop.mp4: symbolic link loop" in text
    allowed, _ = discover(replace(Settings(), outside_links=True), str(folder))
    assert "leak.mp4" in {Path(o.path).name for o in allowed}


def test_scan_of_a_folder_says_which_links_it_did_not_follow(tmp_path: Path, clip: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "leak.mp4").symlink_to(clip)
    problems: list[str] = []
    assert find_videos([folder], on_error=problems.append) == []
    assert len(problems) == 1 and "outside the folder" in problems[0]


# -- databases that keep nothing --------------------------------------------------------------
@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="in-memory SQLite database.*lost"):
        Store.open(url)
    result = runner.invoke(app, ["--db", url, "history"])
    assert result.exit_code == 2, result.output
    assert "in-memory" in result.output


# -- names that must not collide ----------------------------------------------------------------
def test_two_runs_finishing_in_the_same_second_keep_both_summaries(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from policy_engine.reporting import write_run_summary

    started = datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)
    first = write_run_summary([], tmp_path, started=started, problems=["first"], run_id=7)
    second = write_run_summary([], tmp_path, started=started, problems=["second"], run_id=8)
    plain = [write_run_summary([], tmp_path, started=started, problems=[f"p{i}"]) for i in range(2)]
    pages = {first, second, *plain}
    assert len(pages) == 4 and all(p.is_file() for p in pages)
    assert "first" in first.read_text() and "second" in second.read_text()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))  # the disk fills at 1 KB
    try:
        with pytest.raises(OSError):
            write_atomically(tmp_path / "report.html", "x" * 5000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert list(tmp_path.iterdir()) == []


# -- a reports folder that cannot be written ----------------------------------------------------
def _files_limited_to(size: int):
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


@pytest.mark.slow
def test_reports_that_cannot_be_written_are_a_problem_of_the_run_not_of_the_files(
    tmp_path: Path, tiny_clip_dir: Path, postgres_url: str
) -> None:
    from test_ingest_processes import finish, query, start_worker, worker_env

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        write_color_segments(folder / f"promo-{i}.mp4", [(1.0, (90 * i, 40, 200))], size=(160, 90))
    env = worker_env(tmp_path, tiny_clip_dir, POLICY_ENGINE_MAX_ATTEMPTS="1")
    # every file this worker writes is cut at 4 KB, as on a full disk; the database is
    # PostgreSQL, so only the reports suffer
    worker = start_worker(postgres_url, folder, env, preexec_fn=_files_limited_to(4096))
    code, log = finish(worker)
    assert code == 0, log[-3000:]
    assert query(postgres_url, "select status, count(*) from scans group by status") == [
        ("completed", 2)
    ]
    assert query(postgres_url, "select state, count(*) from ingest_files group by state") == [
        ("done", 2)
    ]  # none failed, none counted towards quarantine
    assert query(postgres_url, "select count(distinct asset_id) from decisions") == [(2,)]
    ((problems,),) = query(postgres_url, "select problems from ingest_runs")
    problems = problems if isinstance(problems, list) else json.loads(problems)
    reported = [p for p in problems if "report could not be written" in p]
    assert len(reported) == 2 and all("policy-engine report" in p for p in reported)
    assert any("run summary could not be written" in p for p in problems)
    reports = tmp_path / "reports"
    leftovers = (
        [p.name for p in reports.rglob("*") if p.suffix == ".tmp"] if reports.exists() else []
    )
    assert leftovers == []
    assert not [p for p in reports.glob("*.html") if os.path.getsize(p) == 4096]  # no half pages
    from test_ingest_processes import CLI

    ((asset,),) = query(postgres_url, "select min(asset_id) from scans")
    later = subprocess.run(  # once the folder is fixed, the page is written from the records
        [str(CLI), "--db", postgres_url, "report", str(asset)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert later.returncode == 0, later.stderr
    page = Path(later.stdout.strip())
    assert page.is_file() and "promo-" in page.read_text()


# -- one file, one path -------------------------------------------------------------------------
def test_a_path_spelt_with_dot_dot_is_stored_resolved(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path, monkeypatch
) -> None:
    from sqlalchemy import select

    from policy_engine.store.schema import AssetPath, Scan

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    shutil.copy(clip, tmp_path / "in" / "promo.mp4")
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    spelt = tmp_path / "in" / ".." / "in" / "promo.mp4"
    result = runner.invoke(
        app, ["--db", db, "scan", str(spelt), "--model", str(tiny_clip_dir), "--json"]
    )
    assert result.exit_code == 0, result.output
    store = Store.open(db)
    with store._transaction() as s:
        paths = set(s.scalars(select(AssetPath.path))) | set(s.scalars(select(Scan.path)))
    store.close()
    assert paths == {str((tmp_path / "in" / "promo.mp4").resolve())}


def test_a_linked_folder_is_reported_not_skipped_silently(tmp_path: Path, clip: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(clip, tmp_path / "elsewhere" / "promo.mp4")
    (folder / "linked").symlink_to(tmp_path / "elsewhere")
    problems: list[str] = []
    assert find_videos([folder], on_error=problems.append) == []
    assert problems == [f"{folder / 'linked'}: a linked folder; not searched"]
