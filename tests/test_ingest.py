"""The nightly ingest in one process: discovery, settling, identity by content, claims,
leases, retries and quarantine, rule files that break, run records."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from policy_engine.config import Settings
from policy_engine.errors import ConfigError, WorkerBusyError
from policy_engine.hashing import file_sha256
from policy_engine.ingest import Ingestor, StopSignals, discover, timing_of
from policy_engine.media.synthetic import write_color_segments
from policy_engine.store import ScanModel, Store
from policy_engine.store.ingest import (
    CLAIMED,
    DONE,
    QUARANTINED,
    RETRY,
    WAITING,
    IngestQueue,
    Observation,
    QueueTiming,
    process_scope,
)
from policy_engine.store.schema import AssetPath, DecisionRecord, IngestRun, IngestWorker, Scan

REPO_ROOT = Path(__file__).resolve().parent.parent


def settings_for_test(tmp_path: Path, db: str, model: Path, *folders: Path, **changes) -> Settings:
    base = Settings(
        model=str(model),
        db=db,
        ingest=tuple(str(f) for f in folders),
        rules=str(REPO_ROOT / "policy_engine" / "rules"),
        reports=str(tmp_path / "reports"),
        settle_seconds=0.2,
        quiet_seconds=0.0,
        settle_wait=10.0,
        retry_backoff=0.0,
        heartbeat=0.5,
        claim_timeout=5.0,
    )
    return replace(base, **changes)


def run_pass(settings: Settings, trigger: str = "once"):
    with Ingestor(settings) as ingestor:
        return ingestor.run_pass(trigger)


def scans_by_path(db: str) -> dict[str, list[str]]:
    store = Store.open(db)
    try:
        with store._transaction() as s:
            rows = s.execute(select(Scan.path, Scan.status).order_by(Scan.id)).all()
    finally:
        store.close()
    found: dict[str, list[str]] = {}
    for path, status in rows:
        found.setdefault(Path(path).name, []).append(status)
    return found


def count(db: str, query) -> int:
    store = Store.open(db)
    try:
        with store._transaction() as s:
            return int(s.scalar(query))
    finally:
        store.close()


def run_record(db: str, run_id: int) -> IngestRun:
    store = Store.open(db)
    try:
        with store._transaction() as s:
            return s.get_one(IngestRun, run_id)
    finally:
        store.close()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_color_segments(
        tmp_path / "source.mp4", [(2.0, (220, 20, 20)), (2.0, (20, 20, 220))], size=(160, 90)
    )


# -- discovery ------------------------------------------------------------------------------
def test_discovery_applies_patterns_and_skips_what_is_not_a_finished_video(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "deep" / "er").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    for name in ("a.MP4", "b.mov", "c.txt", "d.mp4.part", "~e.mp4", ".f.mp4", "deep/g.mxf",
                 "deep/er/h.mkv", ".hidden/i.mp4", "proxies.mp4"):  # fmt: skip
        (folder / name).write_bytes(b"x")
    os.mkfifo(folder / "pipe.mp4")  # opening a FIFO would block the worker forever
    settings = replace(Settings(), exclude=("*.part", "~*", "proxies.*"))
    seen, problems = discover(settings, str(folder))
    names = sorted(Path(o.path).relative_to(folder).as_posix() for o in seen)
    assert names == ["a.MP4", "b.mov", "deep/er/h.mkv", "deep/g.mxf"]
    assert problems == []
    flat, _ = discover(replace(settings, recursive=False), str(folder))
    assert sorted(Path(o.path).name for o in flat) == ["a.MP4", "b.mov"]


def test_a_file_name_that_is_not_utf8_is_reported_not_fatal(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(b"x")
    with open(os.path.join(os.fsencode(folder), b"bad-\xff.mp4"), "wb") as handle:
        handle.write(b"x")
    seen, problems = discover(Settings(), str(folder))
    assert [Path(o.path).name for o in seen] == ["good.mp4"]
    assert len(problems) == 1 and "not valid UTF-8" in problems[0] and "bad-\\xff" in problems[0]


def test_a_missing_ingest_folder_is_reported_and_the_others_are_scanned(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path
) -> None:
    good = tmp_path / "in"
    good.mkdir()
    shutil.copy(clip, good / "trailer.mp4")
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    settings = settings_for_test(tmp_path, db, tiny_clip_dir, tmp_path / "nowhere", good)
    result = run_pass(settings)
    assert result.status == "completed" and result.counts.scanned == 1
    assert any("nowhere does not exist" in p for p in result.problems)
    summary = result.summary.read_text()
    assert "nowhere does not exist" in summary and "trailer.mp4" in summary
    assert any("nowhere does not exist" in p for p in run_record(db, result.run_id).problems)


# -- settling -------------------------------------------------------------------------------
def test_a_file_still_being_written_is_scanned_once_complete(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    target = folder / "arriving.mp4"
    data = clip.read_bytes()
    chunks = [data[i : i + len(data) // 12 + 1] for i in range(0, len(data), len(data) // 12 + 1)]
    target.write_bytes(chunks[0])

    def copy_slowly() -> None:
        with open(target, "ab") as handle:
            for chunk in chunks[1:]:
                time.sleep(0.15)
                handle.write(chunk)
                handle.flush()

    writer = threading.Thread(target=copy_slowly)
    writer.start()
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    result = run_pass(settings_for_test(tmp_path, db, tiny_clip_dir, folder, settle_seconds=0.5))
    writer.join()
    assert scans_by_path(db) == {"arriving.mp4": ["completed"]}  # never a truncated scan
    assert result.counts.scanned == 1 and result.counts.failed == 0
    assert result.outcomes[0].content_sha256 == file_sha256(clip)


def test_a_file_not_yet_settled_is_left_for_the_next_run_and_said(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip, folder / "fresh.mp4")  # modified just now
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    settings = settings_for_test(
        tmp_path, db, tiny_clip_dir, folder, quiet_seconds=60.0, settle_wait=0.0
    )
    result = run_pass(settings)
    assert scans_by_path(db) == {}
    assert result.counts.waiting == 1 and result.counts.seen == 1
    assert any("still being written" in p and "fresh.mp4" in p for p in result.problems)
    an_hour_ago = time.time() - 3600
    os.utime(folder / "fresh.mp4", (an_hour_ago, an_hour_ago))  # the copy finished long ago
    result = run_pass(replace(settings, settle_wait=5.0))
    assert scans_by_path(db) == {"fresh.mp4": ["completed"]}


# -- identity by content --------------------------------------------------------------------
def test_copies_and_renames_reuse_the_scan_and_a_changed_file_is_a_new_version(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip, folder / "promo.mp4")
    shutil.copy(clip, folder / "promo (copy).mp4")
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    settings = settings_for_test(tmp_path, db, tiny_clip_dir, folder)
    first = run_pass(settings)
    assert sorted(o.status for o in first.outcomes) == ["reused", "scanned"]
    assert len({o.asset_id for o in first.outcomes}) == 1
    asset = first.outcomes[0].asset_id
    assert (
        count(db, select(func.count()).select_from(AssetPath).where(AssetPath.asset_id == asset))
        == 2
    )
    decisions = count(db, select(func.count()).select_from(DecisionRecord))

    (folder / "promo (copy).mp4").rename(folder / "promo-final.mp4")  # renamed: same content
    second = run_pass(settings)
    assert [o.status for o in second.outcomes] == ["reused"]
    assert second.outcomes[0].asset_id == asset
    assert count(db, select(func.count()).select_from(DecisionRecord)) == decisions

    write_color_segments(folder / "promo.mp4", [(3.0, (20, 200, 20))], size=(160, 90))
    third = run_pass(settings)  # new content at the same path: a new asset, scanned
    assert [o.status for o in third.outcomes] == ["scanned"]
    assert third.outcomes[0].asset_id != asset
    assert third.counts.new == 1 and third.counts.skipped == 1


# -- failures -------------------------------------------------------------------------------
def test_failures_are_retried_then_quarantined_and_a_fixed_file_is_picked_up(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    shutil.copy(clip, folder / "good.mp4")
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    settings = settings_for_test(tmp_path, db, tiny_clip_dir, folder, max_attempts=2)

    first = run_pass(settings)
    assert first.counts.failed == 1 and first.counts.scanned == 1
    second = run_pass(settings)
    assert second.counts.failed == 1 and second.counts.quarantined == 1
    assert any("broken.mp4 quarantined after 2" in p for p in second.problems)
    third = run_pass(settings)
    assert third.counts.failed == 0 and third.counts.skipped == 2
    assert scans_by_path(db)["broken.mp4"] == ["failed", "failed"]

    store = Store.open(db)
    queue = IngestQueue(store, timing_of(settings))
    row = next(f for f in queue.files() if f.path.endswith("broken.mp4"))
    assert row.state == QUARANTINED and "not a readable video" in (row.last_error or "")
    store.close()

    shutil.copy(clip, folder / "broken.mp4")  # replaced by a good copy: a new version
    fourth = run_pass(settings)
    assert [o.status for o in fourth.outcomes] == ["reused"]


def test_retry_backoff_doubles_and_a_quarantined_file_can_be_released(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'e.sqlite'}")
    clock = [datetime(2026, 11, 22, 2, 0, tzinfo=UTC)]
    timing = QueueTiming(0, 0, 60, max_attempts=3, retry_backoff=10)
    queue = IngestQueue(store, timing, now=lambda: clock[0])
    queue.register()
    queue.observe("/in", [Observation("/in/x.mp4", "/in", 5, 1)])
    waits = []
    for _ in range(3):
        claim = queue.claim_next(["/in"])
        assert claim is not None
        state = queue.finish(claim, error="unreadable")
        row = queue.files()[0]
        if row.next_attempt_at:
            waits.append((row.next_attempt_at - clock[0]).total_seconds())
            assert queue.claim_next(["/in"]) is None  # not due yet
            clock[0] = row.next_attempt_at
    assert waits == [10.0, 20.0] and state == QUARANTINED
    assert queue.claim_next(["/in"]) is None
    assert queue.retry(["/in/x.mp4"]) == 1
    assert queue.claim_next(["/in"]) is not None
    queue.stop()
    store.close()


def test_a_file_becoming_due_while_the_backlog_is_read_is_not_lost_between_readings(
    tmp_path: Path,
) -> None:
    """A pass ends when nothing is due, held or settling. Judged at two instants, a file
    that settled between them was neither, and the pass ended with it due (seen under
    load with two workers: one left at once and the other scanned everything)."""
    store = Store.open(f"sqlite:///{tmp_path / 'e.sqlite'}")
    start = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    readings = iter([start + timedelta(seconds=s) for s in (0.9, 1.1, 1.3, 1.5)])
    clock = [start]
    queue = IngestQueue(store, QueueTiming(1, 0, 60, 3, 0), now=lambda: clock[0])
    queue.register()
    queue.observe("/in", [Observation("/in/x.mp4", "/in", 5, 1)])
    assert queue.claim_next(["/in"]) is None  # settling for 1 s
    queue.now = lambda: next(readings)  # it settles while the backlog is being read
    backlog = queue.backlog(["/in"])
    assert backlog.due or backlog.settling, "the file is neither due nor settling"
    queue.now = lambda: clock[0]
    queue.stop()
    store.close()


# -- claims and leases ----------------------------------------------------------------------
def test_two_workers_never_claim_the_same_file(postgres_url: str) -> None:
    stores = [Store.open(postgres_url) for _ in range(2)]
    timing = QueueTiming(0, 0, 60, 3, 0)
    queues = [IngestQueue(s, timing) for s in stores]
    for q in queues:
        q.register()
    files = [Observation(f"/in/{i}.mp4", "/in", 10, 1) for i in range(40)]
    queues[0].observe("/in", files)
    queues[1].observe("/in", files)  # the same look from the other worker: no duplicates
    claimed: list[list[str]] = [[], []]

    def drain(index: int) -> None:
        while (claim := queues[index].claim_next(["/in"])) is not None:
            claimed[index].append(claim.path)
            queues[index].finish(claim, error=None)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed[0] + claimed[1]) == sorted(o.path for o in files)
    assert not set(claimed[0]) & set(claimed[1])
    assert {f.state for f in queues[0].files()} == {DONE}
    for q, s in zip(queues, stores, strict=True):
        q.stop()
        s.close()


def test_a_silent_workers_claims_are_taken_over_after_the_timeout(db_url: str) -> None:
    store = Store.open(db_url)
    clock = [datetime(2026, 11, 22, 2, 0, tzinfo=UTC)]
    timing = QueueTiming(0, 0, claim_timeout=60, max_attempts=2, retry_backoff=0)
    dead, alive = (IngestQueue(store, timing, now=lambda: clock[0]) for _ in range(2))
    dead.sqlite = alive.sqlite = False  # two workers on one database, as on PostgreSQL
    dead.register()
    dead.observe("/in", [Observation("/in/x.mp4", "/in", 5, 1)])
    claim = dead.claim_next(["/in"])
    assert claim is not None
    scan_id = store.start_scan(
        path="/in/x.mp4", asset_id=None, sampling={}, sampling_key="k",
        model=ScanModel("m", "p", "w"),
        software_version="t", worker_id=dead.worker_id,
    )  # fmt: skip
    alive.register()
    assert alive.claim_next(["/in"]) is None  # claimed, and its worker is still in time
    clock[0] += timedelta(seconds=30)
    alive.heartbeat()
    assert [r.worker_id for r in alive.reap()] == []
    clock[0] += timedelta(seconds=45)  # dead has been silent for 75 s > 60 s
    assert [r.worker_id for r in alive.reap()] == [dead.worker_id]
    assert store.scan(scan_id).status == "failed"
    assert "interrupted: worker" in (store.scan(scan_id).error or "")
    again = alive.claim_next(["/in"])
    assert again is not None and again.attempts == 2  # the death counted as an attempt
    assert dead.heartbeat() is False  # the dead worker learns it was presumed dead
    assert dead.finish(claim, error=None) is None  # and can no longer finish its claim
    store.close()


def test_a_worker_whose_process_is_gone_is_reaped_at_once(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'e.sqlite'}")
    queue = IngestQueue(store, QueueTiming(0, 0, 3600, 3, 0))
    child = subprocess.Popen(["true"])
    child.wait()
    with store._transaction() as s:
        s.add(
            IngestWorker(
                id="ghost", host="h", pid=child.pid, scope=process_scope(), software_version="t",
            )
        )  # fmt: skip
    assert [r.worker_id for r in queue.reap()] == ["ghost"]
    store.close()


def test_sqlite_allows_one_worker_at_a_time_and_says_so(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    store = Store.open(db)
    timing = QueueTiming(0, 0, 60, 3, 0)
    first, second = IngestQueue(store, timing), IngestQueue(store, timing)
    first.register()
    with pytest.raises(WorkerBusyError, match="SQLite allows one ingest worker at a time"):
        second.register()
    first.stop()
    third = IngestQueue(store, timing)
    third.register()  # the lock went with the first worker
    third.stop()
    store.close()


def test_a_content_lease_is_exclusive_until_released(postgres_url: str) -> None:
    store = Store.open(postgres_url)
    timing = QueueTiming(0, 0, 60, 3, 0)
    a, b = IngestQueue(store, timing), IngestQueue(store, timing)
    a.register()
    b.register()
    key = a.content_lease("sha256:" + "ab" * 32)
    assert a.acquire(key) is None
    holder = b.acquire(key)
    assert holder is not None and holder.id == a.worker_id
    a.release(key)
    assert b.acquire(key) is None
    a.stop()
    b.stop()
    store.close()


# -- rules ----------------------------------------------------------------------------------
def test_a_broken_rule_file_leaves_its_last_good_version_in_force(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path
) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO_ROOT / "policy_engine" / "rules", rules)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip, folder / "one.mp4")
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    settings = settings_for_test(tmp_path, db, tiny_clip_dir, folder, rules=str(rules))
    first = run_pass(settings)
    rule_file = sorted(p for p in rules.glob("*.yaml") if ".tests." not in p.name)[0]
    rule_file.write_text(rule_file.read_text() + "\n  - this: [is not, valid\n")
    (rules / "brand-new.yaml").write_text("name: [broken\n")
    write_color_segments(folder / "two.mp4", [(2.0, (20, 200, 20))], size=(160, 90))
    second = run_pass(settings)
    assert second.status == "completed" and second.counts.scanned == 1
    assert any(
        f"rule file {rule_file} failed to load" in p and "last good version" in p
        for p in second.problems
    )
    about_new = [p for p in second.problems if "brand-new.yaml" in p]
    assert len(about_new) == 1 and "no earlier version" in about_new[0]  # said once
    assert len(second.outcomes[0].decisions) == len(first.outcomes[0].decisions)
    assert "last good version" in second.summary.read_text()


# -- runs and stopping ----------------------------------------------------------------------
def test_each_run_is_recorded_with_its_counts(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip, folder / "a.mp4")
    (folder / "b.mp4").write_bytes(b"")
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    result = run_pass(settings_for_test(tmp_path, db, tiny_clip_dir, folder), trigger="nightly")
    run = run_record(db, result.run_id)
    assert (run.trigger, run.status, run.seen, run.new, run.scanned, run.failed) == (
        "nightly", "completed", 2, 2, 1, 1,
    )  # fmt: skip
    assert run.finished_at is not None and run.summary_path == str(result.summary)


def test_a_stop_request_finishes_the_file_in_hand_and_leaves_the_rest_queued(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_color_segments(folder / f"{i}.mp4", [(2.0, (i * 80, 20, 20))], size=(160, 90))
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    signals = StopSignals()
    settings = settings_for_test(tmp_path, db, tiny_clip_dir, folder)
    with Ingestor(settings, signals=signals) as ingestor:
        from policy_engine.pipeline import scan as scan_module

        original = scan_module.Scanner.scan_file

        def scan_then_stop(self, path, **kwargs):  # the signal arrives during the first scan
            signals.request()
            return original(self, path, **kwargs)

        scan_module.Scanner.scan_file = scan_then_stop
        try:
            result = ingestor.run_pass()
        finally:
            scan_module.Scanner.scan_file = original
    assert result.status == "stopped" and result.counts.scanned == 1
    assert scans_by_path(db) == {"0.mp4": ["completed"]}
    store = Store.open(db)
    states = sorted(f.state for f in IngestQueue(store, timing_of(settings)).files())
    store.close()
    assert states == [DONE, WAITING, WAITING]


def test_a_second_stop_request_gives_the_file_back_without_an_attempt(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip, folder / "a.mp4")
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    signals = StopSignals()
    signals.request()
    settings = settings_for_test(tmp_path, db, tiny_clip_dir, folder)
    with Ingestor(settings, signals=signals) as ingestor:
        signals.stop.clear()  # let the pass start, then abandon at the first progress call
        signals.abandon.set()
        result = ingestor.run_pass()
    assert result.status == "stopped"
    assert scans_by_path(db) == {"a.mp4": ["failed"]}  # recorded as interrupted
    store = Store.open(db)
    row = IngestQueue(store, timing_of(settings)).files()[0]
    with store._transaction() as s:
        error = s.scalar(select(Scan.error))
    store.close()
    assert (row.state, row.attempts, error) == (WAITING, 0, "interrupted")


def test_settings_that_cannot_work_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="claim_timeout"):
        timing_of(replace(Settings(), heartbeat=30, claim_timeout=40))
    with pytest.raises(ConfigError, match="no ingest folders"):
        Ingestor(replace(Settings(), db=f"sqlite:///{tmp_path / 'e.sqlite'}"))


def test_claim_states_are_visible(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'e.sqlite'}")
    queue = IngestQueue(store, QueueTiming(0, 0, 60, 3, 0))
    queue.register()
    queue.observe("/in", [Observation("/in/a.mp4", "/in", 1, 1)])
    claim = queue.claim_next(["/in"])
    assert claim is not None and queue.counts_by_state() == {CLAIMED: 1}
    queue.finish(claim, error="x")
    assert queue.counts_by_state() == {RETRY: 1}
    queue.stop()
    store.close()


def test_a_worker_presumed_dead_rejoins_under_a_new_name(
    tmp_path: Path, tiny_clip_dir: Path, clip: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip, folder / "a.mp4")
    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    settings = settings_for_test(tmp_path, db, tiny_clip_dir, folder)
    with Ingestor(settings) as ingestor:
        first = ingestor.queue.worker_id
        an_hour_later = IngestQueue(
            ingestor.store, timing_of(settings), now=lambda: datetime.now(UTC) + timedelta(hours=1)
        )
        assert [r.worker_id for r in an_hour_later.reap()] == [
            first
        ]  # as another worker would, seeing no heartbeat
        deadline = time.monotonic() + 10
        while not ingestor.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ingestor.lost  # its heartbeat found out
        result = ingestor.run_pass()
        assert ingestor.queue.worker_id != first
    assert result.status == "completed" and result.counts.scanned == 1
