"""The nightly pass under pressure: rows locked by another worker, files still being
written, database errors it survives (locks, restarts, outages), deaths while a model
loads, and exceptions of any kind. Each test failed before the fix it stands for."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import make_url, select, text
from test_ingest import settings_for_test as settings_for

from policy_engine.hashing import file_sha256
from policy_engine.ingest import Ingestor
from policy_engine.media.synthetic import write_color_segments
from policy_engine.pipeline.scan import Scanner
from policy_engine.store import Store
from policy_engine.store.database import make_engine
from policy_engine.store.ingest import (
    DONE,
    QUARANTINED,
    IngestQueue,
    Observation,
    QueueTiming,
)
from policy_engine.store.schema import IngestFile, IngestRun, Scan

REPO_ROOT = Path(__file__).resolve().parent.parent


def rows(db: str, query) -> list:
    store = Store.open(db)
    try:
        with store._transaction() as s:
            return list(s.execute(query).all())
    finally:
        store.close()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_color_segments(
        tmp_path / "source.mp4", [(2.0, (220, 20, 20)), (2.0, (20, 20, 220))], size=(160, 90)
    )


@pytest.fixture
def folder_of_three(tmp_path: Path, clip: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        write_color_segments(folder / f"promo-{i}.mp4", [(1.5, colour)], size=(160, 90))
    return folder


# -- a pass ends only when nothing is due, held or settling ------------------------------------
def test_rows_locked_for_a_moment_by_another_worker_do_not_end_the_pass(
    tmp_path: Path, tiny_clip_dir: Path, folder_of_three: Path, postgres_url: str, monkeypatch
) -> None:
    """The two-worker flake: SKIP LOCKED returns nothing while another worker's look at
    the folder holds every row locked, and the pass took that for 'nothing left'."""
    other_worker = make_engine(postgres_url)
    original = IngestQueue.claim_next
    held = threading.Event()

    def claim_next_while_rows_are_locked(self, folders, *, skip=()):
        if not held.is_set():
            held.set()
            connection = other_worker.connect()
            connection.execute(text("SELECT id FROM ingest_files FOR UPDATE"))
            threading.Timer(0.6, connection.close).start()  # its transaction ends
        return original(self, folders, skip=skip)

    monkeypatch.setattr(IngestQueue, "claim_next", claim_next_while_rows_are_locked)
    settings = settings_for(
        tmp_path, postgres_url, tiny_clip_dir, folder_of_three, settle_seconds=0.0
    )  # due at once, so that only the locks can keep them from this worker
    with Ingestor(settings) as ingestor:
        result = ingestor.run_pass()
    other_worker.dispose()
    assert held.is_set()
    assert result.status == "completed"
    assert (result.counts.scanned, result.counts.skipped) == (3, 0)


def test_a_file_growing_while_another_is_scanned_settles_instead_of_spinning(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path, monkeypatch
) -> None:
    """A file claimed from its stale record, seen to have changed, was given back with no
    delay and claimed again at once, for ever, at 100% CPU: the folder was never looked at
    again and settle_wait never checked."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip, folder / "a-first.mp4")
    data = clip.read_bytes()
    growing = folder / "b-growing.mp4"
    step = len(data) // 20 + 1
    growing.write_bytes(data[:step])
    original_scan = Scanner.scan_file
    claims: list[str] = []
    original_claim = IngestQueue.claim_next

    def slow_scan(self, path, **kwargs):
        if path.name == "a-first.mp4":
            time.sleep(2.5)  # long enough for the growing file's record to look settled
        return original_scan(self, path, **kwargs)

    def counted_claim(self, folders, *, skip=()):
        claim = original_claim(self, folders, skip=skip)
        if claim is not None:
            claims.append(Path(claim.path).name)
        return claim

    monkeypatch.setattr(Scanner, "scan_file", slow_scan)
    monkeypatch.setattr(IngestQueue, "claim_next", counted_claim)

    def write_slowly() -> None:
        with open(growing, "ab") as handle:
            for i in range(step, len(data), step):
                time.sleep(0.1)
                handle.write(data[i : i + step])
                handle.flush()

    writer = threading.Thread(target=write_slowly)
    settings = settings_for(
        tmp_path, f"sqlite:///{tmp_path / 'e.sqlite'}", tiny_clip_dir, folder,
        settle_seconds=1.0, quiet_seconds=1.0, settle_wait=30.0,
    )  # fmt: skip
    results: list = []
    with Ingestor(settings) as ingestor:
        writer.start()
        worker = threading.Thread(target=lambda: results.append(ingestor.run_pass()))
        worker.start()
        worker.join(timeout=60)
        spinning = worker.is_alive()
        ingestor.signals.request()  # end a spinning pass so the test can report it
        worker.join(timeout=30)
    writer.join()
    assert not spinning, f"the pass spun: {len(claims)} claims, {claims[-3:]}"
    assert claims.count("b-growing.mp4") <= 3, claims
    (result,) = results
    assert result.status == "completed" and result.counts.failed == 0
    assert result.counts.scanned + result.counts.reused == 2  # the same content: reused
    by_name = {Path(o.path).name: o for o in result.outcomes}
    assert by_name["b-growing.mp4"].content_sha256 == file_sha256(clip)  # the whole file


# -- deaths and quarantine ------------------------------------------------------------------
def test_a_death_while_loading_the_model_does_not_count_against_the_file(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'e.sqlite'}")
    clock = [datetime(2026, 11, 22, 2, 0, tzinfo=UTC)]
    timing = QueueTiming(0, 0, claim_timeout=60, max_attempts=2, retry_backoff=0)
    survivor = IngestQueue(store, timing, now=lambda: clock[0])
    survivor.sqlite = False  # several workers on one database, as on PostgreSQL
    survivor.register()
    survivor.observe("/in", [Observation("/in/healthy.mp4", "/in", 5, 1)])
    for _ in range(3):  # killed three times while loading the model (out of memory, say)
        victim = IngestQueue(store, timing, now=lambda: clock[0])
        victim.sqlite = False
        victim.register()
        claim = victim.claim_next(["/in"])
        assert claim is not None and claim.attempts == 1
        loading = victim.loading_model()
        loading.__enter__()  # and never leaves it: the process dies here
        clock[0] += timedelta(seconds=90)
        survivor.heartbeat()
        (reaped,) = survivor.reap()
        assert reaped.worker_id == victim.worker_id and reaped.quarantined == ()
    (row,) = survivor.files()
    assert row.state != QUARANTINED and row.attempts == 0
    store.close()


def test_a_quarantine_by_a_workers_death_is_listed_in_the_run_and_its_summary(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path, postgres_url: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    killer = folder / "kills-workers.mp4"
    shutil.copy(clip, killer)
    settings = settings_for(tmp_path, postgres_url, tiny_clip_dir, folder, max_attempts=1)
    store = Store.open(postgres_url)
    dead = IngestQueue(store, QueueTiming(0, 0, 5.0, 1, 0))
    dead.register()
    stat = killer.stat()
    dead.observe(
        str(folder), [Observation(str(killer), str(folder), stat.st_size, stat.st_mtime_ns)]
    )
    assert dead.claim_next([str(folder)]) is not None  # and then it died working on it
    with store._transaction() as s:
        s.execute(text("UPDATE ingest_workers SET heartbeat_at = now() - interval '1 hour'"))
    store.close()
    with Ingestor(settings) as ingestor:
        result = ingestor.run_pass()
    assert result.counts.quarantined == 1
    (line,) = [p for p in result.problems if "quarantined" in p]
    assert "kills-workers.mp4" in line and "died" in line
    assert "kills-workers.mp4 quarantined" in result.summary.read_text()


# -- nothing escapes a pass without closing it ------------------------------------------------
def test_an_unexpected_exception_closes_the_run_and_releases_the_claims(
    tmp_path: Path, tiny_clip_dir: Path, folder_of_three: Path, monkeypatch
) -> None:
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    settings = settings_for(tmp_path, db, tiny_clip_dir, folder_of_three)
    original = Scanner.scan_file
    calls = []

    def blow_up_on_the_second(self, path, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise RecursionError("maximum recursion depth exceeded")
        return original(self, path, **kwargs)

    def fails_like_a_deep_rule_file(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded while loading rules")

    with Ingestor(settings) as ingestor:
        monkeypatch.setattr("policy_engine.ingest.load_rules", fails_like_a_deep_rule_file)
        failed = ingestor.run_pass()
        assert failed.status == "failed" and "RecursionError" in failed.error
        monkeypatch.undo()
        monkeypatch.setattr(Scanner, "scan_file", blow_up_on_the_second)
        survived = ingestor.run_pass()  # a bug in one file costs that file, not the run
    assert survived.status == "completed"
    assert (survived.counts.scanned, survived.counts.failed) == (2, 1)
    runs = rows(db, select(IngestRun.status, IngestRun.error).order_by(IngestRun.id))
    assert [r.status for r in runs] == ["failed", "completed"]
    assert "RecursionError" in runs[0].error
    states = rows(db, select(IngestFile.state, IngestFile.claimed_by))
    assert all(claimed_by is None for _, claimed_by in states)


# -- database errors the worker survives ------------------------------------------------------
class RestartingServer:
    """A TCP proxy in front of the PostgreSQL server that can 'restart': every open
    connection is dropped, and new ones are closed at once until it is up again."""

    def __init__(self, postgres_url: str) -> None:
        parsed = make_url(postgres_url)
        self.target = (parsed.host or "127.0.0.1", parsed.port or 5432)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, postgres_url: str) -> str:
        """The same database, reached through this proxy."""
        parsed = make_url(postgres_url).set(host="127.0.0.1", port=self.port)
        return parsed.render_as_string(hide_password=False)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def go_down(self) -> None:
        self.up.clear()
        with self.lock:
            connections, self.open = self.open, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def restart(self, seconds: float) -> None:
        self.go_down()
        threading.Timer(seconds, self.up.set).start()

    def close(self) -> None:
        self.go_down()
        self.listener.close()


@pytest.fixture
def server(postgres_url: str):
    proxy = RestartingServer(postgres_url)
    yield proxy
    proxy.close()


def _on_first_store_of_frames(monkeypatch, action) -> None:
    original = Scanner._store_analysis
    done = threading.Event()

    def store_analysis(self, *args, **kwargs):
        if not done.is_set():
            done.set()
            action()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Scanner, "_store_analysis", store_analysis)


def test_a_postgresql_restart_of_under_a_second_mid_run_does_not_fail_it(
    tmp_path: Path, tiny_clip_dir: Path, folder_of_three: Path, postgres_url: str, server,
    monkeypatch,
) -> None:  # fmt: skip
    db = server.url(postgres_url)
    _on_first_store_of_frames(monkeypatch, lambda: server.restart(0.8))
    settings = settings_for(tmp_path, db, tiny_clip_dir, folder_of_three)
    with Ingestor(settings) as ingestor:
        result = ingestor.run_pass()
    assert result.status == "completed", result.error
    assert (result.counts.scanned, result.counts.failed) == (3, 0)
    assert {s for (s,) in rows(postgres_url, select(Scan.status))} == {"completed"}


def _assert_recovered_after_an_outage(db: str, first, second) -> None:
    assert first.status == "failed" and "database" in first.error
    assert second.status == "completed" and second.counts.scanned == 3
    runs = rows(db, select(IngestRun.status).order_by(IngestRun.id))
    assert [status for (status,) in runs] == ["failed", "completed"]
    scans = rows(db, select(Scan.path, Scan.status, Scan.error).order_by(Scan.id))
    assert [s.status for s in scans].count("failed") == 1
    (broken,) = [s for s in scans if s.status == "failed"]
    assert "database" in broken.error
    assert sorted(s.path for s in scans if s.status == "completed") == sorted(
        {s.path for s in scans}
    )
    assert {state for (state,) in rows(db, select(IngestFile.state))} == {DONE}


def test_a_database_down_longer_than_the_retries_fails_the_run_and_leaves_nothing_claimed(
    tmp_path: Path, tiny_clip_dir: Path, folder_of_three: Path, postgres_url: str, server,
    monkeypatch,
) -> None:  # fmt: skip
    monkeypatch.setattr("policy_engine.store.database.TRANSIENT_RETRY_S", 0.6)
    db = server.url(postgres_url)
    _on_first_store_of_frames(monkeypatch, server.go_down)
    settings = settings_for(tmp_path, db, tiny_clip_dir, folder_of_three)
    with Ingestor(settings) as ingestor:
        first = ingestor.run_pass("poll")
        server.up.set()  # the server is back: the daemon's next poll
        second = ingestor.run_pass("poll")
    _assert_recovered_after_an_outage(postgres_url, first, second)


def test_sqlite_locked_longer_than_the_busy_timeout_mid_scan(
    tmp_path: Path, tiny_clip_dir: Path, folder_of_three: Path, monkeypatch
) -> None:
    monkeypatch.setattr("policy_engine.store.database.SQLITE_BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr("policy_engine.store.database.TRANSIENT_RETRY_S", 0.6)
    path = tmp_path / "e.sqlite"
    db = f"sqlite:///{path}"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def lock_the_database() -> None:
        other.execute("BEGIN EXCLUSIVE")

    _on_first_store_of_frames(monkeypatch, lock_the_database)
    settings = settings_for(tmp_path, db, tiny_clip_dir, folder_of_three)
    with Ingestor(settings) as ingestor:
        first = ingestor.run_pass("poll")
        other.execute("COMMIT")  # the other job finishes
        second = ingestor.run_pass("poll")
    other.close()
    _assert_recovered_after_an_outage(db, first, second)


def test_sqlite_locked_for_a_moment_longer_than_the_busy_timeout_is_waited_out(
    tmp_path: Path, tiny_clip_dir: Path, folder_of_three: Path, monkeypatch
) -> None:
    monkeypatch.setattr("policy_engine.store.database.SQLITE_BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "e.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def lock_the_database_for_a_second() -> None:
        other.execute("BEGIN EXCLUSIVE")
        threading.Timer(1.0, lambda: other.execute("COMMIT")).start()

    _on_first_store_of_frames(monkeypatch, lock_the_database_for_a_second)
    settings = settings_for(tmp_path, f"sqlite:///{path}", tiny_clip_dir, folder_of_three)
    with Ingestor(settings) as ingestor:
        result = ingestor.run_pass()
    assert result.status == "completed" and result.counts.scanned == 3


# -- the suite itself ------------------------------------------------------------------------
def test_a_bare_pytest_runs_the_postgresql_tests_too(postgres_url: str) -> None:
    """The default server URL lives in conftest, not only in the Makefile."""
    import os
    import subprocess
    import sys

    from conftest import DEFAULT_POSTGRES_URL, POSTGRES_ENV

    if os.environ.get(POSTGRES_ENV) != DEFAULT_POSTGRES_URL:
        pytest.skip(f"{POSTGRES_ENV} points at another server than the default")
    env = {k: v for k, v in os.environ.items() if k != POSTGRES_ENV}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_store.py", "-k", "migrations_and_models_agree and postgresql"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "1 passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]


# -- found in review ---------------------------------------------------------------------------
def test_after_a_pass_the_sqlite_database_still_refuses_a_second_worker(
    tmp_path: Path, tiny_clip_dir: Path, folder_of_three: Path
) -> None:
    from policy_engine.errors import WorkerBusyError

    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    settings = settings_for(tmp_path, db, tiny_clip_dir, folder_of_three)
    with Ingestor(settings) as ingestor:
        assert ingestor.run_pass().status == "completed"  # recovers its own work first
        second = Store.open(db)
        with pytest.raises(WorkerBusyError):
            IngestQueue(second, QueueTiming(0, 0, 60, 3, 0)).register()
        second.close()


def test_a_bug_after_the_scan_row_is_started_leaves_no_scan_running(
    tmp_path: Path, tiny_clip_dir: Path, folder_of_three: Path, monkeypatch
) -> None:
    def broken_store(self, *args, **kwargs):
        raise KeyError("a bug while storing frames")

    monkeypatch.setattr(Scanner, "_store_analysis", broken_store)
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    with Ingestor(settings_for(tmp_path, db, tiny_clip_dir, folder_of_three)) as ingestor:
        result = ingestor.run_pass()
    assert result.status == "completed" and result.counts.failed == 3
    scans = rows(db, select(Scan.status, Scan.error))
    assert len(scans) == 3 and {status for status, _ in scans} == {"failed"}
    assert all("internal error: KeyError" in error for _, error in scans)


def test_a_connection_lost_during_commit_is_not_retried(postgres_url: str, monkeypatch) -> None:
    """The server may have committed: running the transaction again could record twice."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from policy_engine.store.database import CommitOutcomeUnknown

    store = Store.open(postgres_url)
    commits = []
    original = Session.commit

    def commit_then_lose_the_connection(self):
        commits.append(1)
        if len(commits) == 1:
            original(self)  # it happened, but the acknowledgement never arrived
            raise OperationalError(
                "COMMIT", {}, Exception("server closed the connection unexpectedly"),
                connection_invalidated=True,
            )  # fmt: skip
        return original(self)

    monkeypatch.setattr(Session, "commit", commit_then_lose_the_connection)
    with pytest.raises(CommitOutcomeUnknown, match="not retried"):
        store.record_asset("/in/a.mp4", "sha256:" + "a" * 64, 10, None)
    assert len(commits) == 1
    monkeypatch.undo()
    assert len(store.assets()) == 1  # recorded once, and only once
    store.close()


def test_files_held_by_a_live_worker_are_waited_for_only_within_settle_wait(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path, postgres_url: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    held = folder / "held.mp4"
    shutil.copy(clip, held)
    store = Store.open(postgres_url)
    other = IngestQueue(store, QueueTiming(0, 0, 5.0, 3, 0))
    other.register()
    stat = held.stat()
    key = str(folder.resolve())
    other.observe(key, [Observation(str(held.resolve()), key, stat.st_size, stat.st_mtime_ns)])
    assert other.claim_next([key]) is not None  # and it keeps working on it, alive
    alive = threading.Event()

    def keep_heartbeating() -> None:
        while not alive.wait(0.3):
            other.heartbeat()

    beating = threading.Thread(target=keep_heartbeating)
    beating.start()
    results: list = []
    settings = settings_for(tmp_path, postgres_url, tiny_clip_dir, folder, settle_wait=1.0)
    try:
        with Ingestor(settings) as ingestor:
            worker = threading.Thread(target=lambda: results.append(ingestor.run_pass()))
            worker.start()
            worker.join(timeout=30)
            waited_for_ever = worker.is_alive()
            ingestor.signals.request()
            worker.join(timeout=30)
    finally:
        alive.set()
        beating.join()
        other.stop()
        store.close()
    assert not waited_for_ever
    (result,) = results
    assert result.status == "completed" and result.counts.scanned == 0
