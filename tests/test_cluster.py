"""Scans on a real local Ray cluster (two CPUs, two actors) over PostgreSQL: the same
decisions as the local executor, exactly once when an actor is killed with SIGKILL in
the middle of a scan, the nightly pass handing its files to the cluster, and one
database connection per actor."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from policy_engine.cli.common import load_rulesets
from policy_engine.config import SHIPPED_RULES, Settings
from policy_engine.media.synthetic import write_color_segments
from policy_engine.pipeline.scan import Scanner
from policy_engine.store import Store
from policy_engine.store.database import make_engine
from policy_engine.store.ingest import DONE, IngestQueue
from policy_engine.workers.claims import StopSignals
from policy_engine.workers.cluster import ScanCluster
from policy_engine.workers.cluster_scan import queue_files, scan_on_cluster
from policy_engine.workers.worker import timing_of

ray = pytest.importorskip("ray", reason="the cluster tier needs the [ray] extra")
pytestmark = pytest.mark.cluster

SHARED_CLIPS = ("bbb_mov_bbb.mp4", "laptop_darshithachinta.mp4", "explosion_kaboom.mp4")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray instance for the module (its start-up costs seconds); its workers'
    caches in a temporary folder, never the user's home."""
    cache = tmp_path_factory.mktemp("ray-cache")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"XDG_CACHE_HOME": str(cache), "HF_HOME": str(cache / "hf")}},
    )
    yield
    ray.shutdown()


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    """Short clips of different content; the real ones from ../shared where present."""
    folder = tmp_path / "clips"
    folder.mkdir()
    made = [
        write_color_segments(folder / "red-green.mp4", [(2, (200, 30, 30)), (2, (30, 200, 30))]),
        write_color_segments(folder / "blue.mp4", [(3, (20, 20, 220))], size=(160, 90)),
        write_color_segments(
            folder / "grey flashes.mp4", [(0.2, (250,) * 3), (0.2, (10,) * 3)] * 6
        ),
    ]
    shared = Path(__file__).resolve().parents[2] / "shared" / "media"
    for name in SHARED_CLIPS:
        if (shared / name).is_file():
            made.append(Path(shutil.copy(shared / name, folder / name)))
    return made


def settings_for(db: str, model: Path, tmp_path: Path, **more: object) -> Settings:
    return replace(
        Settings(), db=db, model=str(model), device="cpu", rules=str(SHIPPED_RULES),
        reports=str(tmp_path / "reports"), executor="ray", heartbeat=0.5,
        claim_timeout=20.0, retry_backoff=0.0, settle_seconds=0.0, quiet_seconds=0.0,
        **more,
    )  # fmt: skip


def rulesets() -> list:
    return load_rulesets(SHIPPED_RULES)


def decided(outcome) -> list[dict]:
    """What a scan decided, without the ids and times that differ between databases."""
    return [
        {k: v for k, v in d.to_dict().items() if k not in ("created_at",)}
        for _, d in outcome.decisions
    ]


def assert_same(there: object, here: object, where: str = "") -> None:
    """Equal, except that measured numbers need only agree to float32 precision: the Ray
    workers run the image tower on one thread each and this process on two, from a fresh
    or a cached conversion depending on what ran before it, and sums taken in another
    order differ in their last bits (seen on an AVX2 machine after the CLI tests:
    probabilities 0.56375563 there and 0.56375557 here for the same frame)."""
    if isinstance(there, float) and isinstance(here, float):
        assert math.isclose(there, here, rel_tol=1e-5, abs_tol=1e-7), f"{where}: {there} != {here}"
    elif isinstance(there, dict) and isinstance(here, dict):
        assert there.keys() == here.keys(), where
        for key in there:
            assert_same(there[key], here[key], f"{where}.{key}")
    elif isinstance(there, (list, tuple)) and isinstance(here, (list, tuple)):
        assert type(there) is type(here) and len(there) == len(here), where
        for index, (a, b) in enumerate(zip(there, here)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert there == here, f"{where}: {there!r} != {here!r}"


def test_a_folder_scanned_on_ray_gets_the_local_executors_decisions(
    local_ray, clips, tiny_clip_dir, tmp_path, postgres_url, another_postgres_url
):
    on_ray = settings_for(postgres_url, tiny_clip_dir, tmp_path)
    streamed: list[str] = []
    remote = scan_on_cluster(on_ray, rulesets(), clips, on_result=lambda o: streamed.append(o.path))
    local_store = Store.open(another_postgres_url)
    try:
        local = Scanner(local_store, rulesets(), _provider(on_ray), _options(on_ray)).scan(clips)
    finally:
        local_store.close()
    assert sorted(streamed) == sorted(str(c.resolve()) for c in clips)  # one result per file
    assert [o.status for o in remote] == ["scanned"] * len(clips)
    for here, there in zip(local, remote, strict=True):
        assert there.error is None
        assert there.verdict == here.verdict, there.path
        assert_same(decided(there), decided(here), there.path)


def _provider(settings: Settings):
    from policy_engine.models.provider import ModelProvider

    return ModelProvider.from_settings(settings)


def _options(settings: Settings):
    from policy_engine.api import analysis_options

    return analysis_options(settings)


def test_an_actor_killed_mid_scan_leaves_exactly_one_scan_and_one_decision_per_rule_set(
    local_ray, tiny_clip_dir, tmp_path, postgres_url
):
    folder = tmp_path / "long"
    folder.mkdir()
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    files = [
        write_color_segments(
            folder / f"long-{i}.mp4", [(20.0, c), (20.0, colours[i - 1])], size=(320, 180)
        )  # fmt: skip
        for i, c in enumerate(colours)
    ]
    settings = settings_for(postgres_url, tiny_clip_dir, tmp_path)
    Store.open(postgres_url).close()  # the schema, before the poller below reads it
    engine = make_engine(postgres_url)
    result: dict = {}
    runner = threading.Thread(
        target=lambda: result.update(out=scan_on_cluster(settings, rulesets(), files)),
        daemon=True,
    )
    runner.start()
    killed = kill_a_worker_mid_scan(engine, deadline=time.monotonic() + 120)
    runner.join(timeout=180)
    assert not runner.is_alive(), "the batch did not finish after the kill"
    assert [o.status for o in result["out"]] == ["scanned"] * 3
    with engine.connect() as c:
        per_asset = c.execute(text(
            "SELECT a.id, count(*) FILTER (WHERE s.status = 'completed'),"
            " count(*) FILTER (WHERE s.status = 'failed') FROM assets a"
            " JOIN scans s ON s.asset_id = a.id GROUP BY a.id"
        )).all()  # fmt: skip
        decisions = c.execute(text(
            "SELECT asset_id, ruleset_name, count(*) FROM decisions d"
            " JOIN rulesets r ON r.id = d.ruleset_id GROUP BY asset_id, ruleset_name"
        )).all()  # fmt: skip
        dead = c.execute(
            text("SELECT status, error FROM scans WHERE id = :id"), {"id": killed["scan"]}
        ).one()
        queued = c.execute(text("SELECT state, attempts FROM ingest_files ORDER BY id")).all()
    engine.dispose()
    assert len(per_asset) == 3
    assert all(completed == 1 for _, completed, _ in per_asset), per_asset
    assert sum(failed for _, _, failed in per_asset) == 1  # the killed one, closed
    assert dead.status == "failed" and "died" in dead.error and str(killed["pid"]) in dead.error
    assert len(decisions) == 3 * len(rulesets())
    assert all(count == 1 for *_, count in decisions), decisions
    assert sorted(queued) == [(DONE, 1), (DONE, 1), (DONE, 2)]  # the death cost an attempt


def kill_a_worker_mid_scan(engine, *, deadline: float) -> dict:
    """SIGKILL the process of the worker whose scan is running, as soon as one is."""
    while time.monotonic() < deadline:
        with engine.connect() as c:
            row = c.execute(text(
                "SELECT s.id, w.pid FROM scans s JOIN ingest_workers w ON w.id = s.worker_id"
                " WHERE s.status = 'running' ORDER BY s.id LIMIT 1"
            )).first()  # fmt: skip
        if row is not None:
            os.kill(row.pid, signal.SIGKILL)
            return {"scan": row.id, "pid": row.pid}
        time.sleep(0.01)
    raise AssertionError("no scan was seen running")


def test_each_actor_holds_one_named_database_connection(
    local_ray, clips, tiny_clip_dir, tmp_path, postgres_url
):
    settings = settings_for(postgres_url, tiny_clip_dir, tmp_path)
    engine = make_engine(postgres_url)
    seen: list[dict[str, int]] = []

    def count_connections(_outcome) -> None:
        with engine.connect() as c:
            rows = c.execute(text(
                "SELECT application_name, count(*) FROM pg_stat_activity"
                " WHERE application_name LIKE 'policy-engine ray worker %'"
                " GROUP BY application_name"
            )).all()  # fmt: skip
        seen.append(dict(rows))

    scan_on_cluster(settings, rulesets(), clips[:3], on_result=count_connections)
    engine.dispose()
    assert seen and all(seen)
    assert max(len(s) for s in seen) == 2  # two actors on two CPUs
    assert all(n == 1 for s in seen for n in s.values()), seen


def test_a_file_a_node_cannot_see_fails_with_the_node_named(
    local_ray, tiny_clip_dir, tmp_path, postgres_url
):
    settings = settings_for(postgres_url, tiny_clip_dir, tmp_path, max_attempts=1)
    clip = write_color_segments(tmp_path / "gone.mp4", [(1.0, (90, 90, 90))], size=(64, 36))
    store = Store.open(settings.db)
    [queue_id] = queue_files(store, [clip])
    clip.unlink()  # as if the node had no such mount
    handled = []
    cluster = ScanCluster(settings, at_most=1)
    try:
        cluster.run([queue_id], rulesets(), StopSignals(), handled.append)
    finally:
        cluster.shutdown()
    entry = IngestQueue(store, timing_of(settings)).entry(queue_id)
    store.close()
    [only] = handled
    assert only.outcome is not None and only.outcome.status == "failed"
    assert "cannot be seen on node" in only.outcome.error
    assert "mounted at the same paths on every node" in only.outcome.error
    assert entry is not None and entry.state == "quarantined"


def test_the_nightly_pass_hands_its_files_to_the_cluster(
    local_ray, clips, schedule_once, postgres_url
):
    folder = clips[0].parent
    result = schedule_once(postgres_url, folder, "--executor", "ray")
    assert result.exit_code == 0, result.output
    engine = make_engine(postgres_url)
    with engine.connect() as c:
        scans = c.execute(text(
            "SELECT s.status, w.id, w.stop_reason FROM scans s"
            " JOIN ingest_workers w ON w.id = s.worker_id"
        )).all()  # fmt: skip
        runs = c.execute(text("SELECT worker_id, status, scanned FROM ingest_runs")).all()
    engine.dispose()
    assert [s.status for s in scans] == ["completed"] * len(clips)
    [run] = runs
    assert run.status == "completed" and run.scanned == len(clips)
    # the scans were made by the actors' workers, not by the pass's own
    assert run.worker_id not in {s.id for s in scans}
    assert all(s.stop_reason == "finished" for s in scans)  # released when the pass ended


def test_reevaluate_on_ray_appends_the_changes_a_local_dry_run_predicts(
    local_ray, clips, tiny_clip_dir, tmp_path, postgres_url
):
    from policy_engine.pipeline.judging import reevaluate
    from policy_engine.workers.cluster_reevaluate import reevaluate_on_cluster

    settings = settings_for(postgres_url, tiny_clip_dir, tmp_path)
    store = Store.open(postgres_url)
    Scanner(store, rulesets(), _provider(settings), _options(settings)).scan(clips)
    edited = tmp_path / "edited"
    edited.mkdir()
    text_of = (SHIPPED_RULES / "genre-tags.yaml").read_text()
    stricter = re.sub(r"coverage_above: \d+%", "coverage_above: 99%", text_of)
    (edited / "genre-tags.yaml").write_text(stricter.replace("version: 1", "version: 2"))
    new_rules = load_rulesets(edited)
    predicted = reevaluate(store, new_rules, _provider(settings), dry_run=True)
    done = reevaluate_on_cluster(settings, store, new_rules, per_task=1)  # a part per asset
    again = reevaluate_on_cluster(settings, store, new_rules, per_task=2)
    store.close()

    def change(c) -> tuple:
        return (c.asset_id, c.ruleset, c.after.schedule, tuple(c.after.tags), c.after.review)

    assert predicted.changes, "the stricter rules change nothing: the test shows nothing"
    assert sorted(map(change, done.changes)) == sorted(map(change, predicted.changes))
    assert done.scans == len(clips) and done.appended == len(done.changes)
    assert sorted(done.decided_assets) == sorted({c.asset_id for c in done.changes})
    assert (again.changes, again.appended, again.unchanged) == ([], 0, len(clips))


def test_the_scan_command_on_ray_in_a_real_process(clips, tiny_clip_dir, tmp_path, postgres_url):
    """The user's command, its own Ray started and stopped, on files just written (a
    command line's files need not settle as an ingest folder's do)."""
    import json
    import subprocess
    import sys

    cli = Path(sys.executable).parent / "policy-engine"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "RAY_ADDRESS": ""}
    done = subprocess.run(
        [str(cli), "--db", postgres_url, "scan", str(clips[0].parent), "--executor", "ray",
         "--model", str(tiny_clip_dir), "--device", "cpu", "--reports", str(tmp_path / "r"),
         "--json"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcomes = json.loads(done.stdout)
    assert sorted(o["path"] for o in outcomes) == sorted(str(c.resolve()) for c in clips)
    assert {o["status"] for o in outcomes} == {"scanned"}
    assert all(o["verdict"]["schedule"] for o in outcomes)
    assert "run summary:" in done.stderr


def test_a_model_the_workers_cannot_load_fails_the_batch_and_gives_the_files_back(
    local_ray, tmp_path, postgres_url
):
    """Not the files' fault: the batch fails with the model's error (exit 4 on the
    command line, as here), and the files keep their place and their attempts."""
    from policy_engine.errors import ModelError

    settings = settings_for(postgres_url, tmp_path / "no-such-model", tmp_path)
    clip = write_color_segments(tmp_path / "a.mp4", [(1.0, (90, 90, 90))], size=(64, 36))
    with pytest.raises(ModelError):
        scan_on_cluster(settings, rulesets(), [clip])
    engine = make_engine(postgres_url)
    with engine.connect() as c:
        queued = c.execute(text("SELECT state, attempts FROM ingest_files")).all()
    engine.dispose()
    assert [tuple(row) for row in queued] == [("waiting", 0)]


LEAN_PROBE = """
import json, os, sys
from dataclasses import replace
from policy_engine.config import Settings
from policy_engine.workers.cluster import connect

def descendants(root):
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            parents[int(pid)] = int(stat[1])
        except OSError:
            pass
    found, frontier = [], {root}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier}
        found.extend(frontier)
    lines = []
    for pid in found:
        try:
            lines.append(open(f"/proc/{pid}/cmdline").read().replace("\\0", " "))
        except OSError:
            pass
    return lines

ray, started = connect(replace(Settings(), executor="ray", db=sys.argv[1], ray_address=""))
import ray._private.parameter as parameter
running = descendants(os.getpid())
restored = parameter.RayParams.__init__.__name__ == "__init__"
ray.shutdown()
print(json.dumps({"started": started, "running": running, "restored": restored}))
"""


def test_ray_started_by_a_command_runs_without_its_idle_monitors(tmp_path, postgres_url):
    """The autoscaler's monitor (nothing to autoscale) and the log monitor (logs are not
    sent to the driver) are left out of a Ray the command starts for itself: stopping
    the monitor alone took most of ray.shutdown()'s 1.4 s. Ray's own processes run."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "RAY_ADDRESS": "", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", LEAN_PROBE, postgres_url],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["started"] and found["restored"]
    running = " | ".join(found["running"])
    assert "gcs_server" in running and "raylet" in running  # Ray itself is up
    assert "autoscaler/_private/monitor.py" not in running
    assert "log_monitor.py" not in running
