"""The Ray executor's decisions that need no cluster: which executor, how many actors of
which kind, the refusals that come before Ray starts, and the queue operations a
cluster's task uses (claim by id, read an entry)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from policy_engine.config import Settings, load_settings
from policy_engine.errors import ConfigError, ModelError, PolicyEngineError, StoreError
from policy_engine.store.ingest import CLAIMED, DONE, IngestQueue, Observation, QueueTiming
from policy_engine.workers.cluster import _rebuilt
from policy_engine.workers.executor import executor_of, plan_actors

PG = "postgresql://postgres@127.0.0.1:5432/test"


def on(executor: str = "ray", **more: object) -> Settings:
    return replace(Settings(), executor=executor, db=PG, **more)


# -- which executor ---------------------------------------------------------------------
def test_local_is_the_default_and_ray_is_chosen_by_setting_or_environment():
    assert executor_of(Settings()) == "local"
    settings = load_settings(env={"POLICY_ENGINE_EXECUTOR": "ray", "POLICY_ENGINE_DB": PG})
    assert executor_of(settings) == "ray"


def test_an_unknown_executor_is_refused_naming_where_it_came_from():
    settings = load_settings({"executor": "dask"})
    with pytest.raises(ConfigError, match=r"executor 'dask' \(flag\) is not one of local, ray"):
        executor_of(settings)


def test_ray_on_a_sqlite_database_is_refused_with_what_to_do():
    with pytest.raises(ConfigError, match="SQLite file on this machine. Use PostgreSQL"):
        executor_of(replace(Settings(), executor="ray"))


def test_nonsense_worker_counts_are_refused():
    with pytest.raises(ConfigError, match="ray_workers must be 0"):
        executor_of(on(ray_workers=-1))
    with pytest.raises(ConfigError, match="ray_cpus_per_worker\\s+positive"):
        executor_of(on(ray_cpus_per_worker=0))


# -- how many actors, of which kind --------------------------------------------------------
def test_auto_takes_gaudi_cards_first_then_gpus_then_cpus():
    hpu = plan_actors(on(), {"CPU": 64, "GPU": 2, "HPU": 8}, at_most=100)
    assert (hpu.count, hpu.accelerator, hpu.options["resources"]) == (8, "HPU", {"HPU": 1})
    gpu = plan_actors(on(), {"CPU": 64, "GPU": 4}, at_most=100)
    assert (gpu.count, gpu.accelerator, gpu.options["num_gpus"]) == (4, "GPU", 1)
    cpu = plan_actors(on(ray_cpus_per_worker=4), {"CPU": 18}, at_most=100)
    assert (cpu.count, cpu.accelerator, cpu.options) == (4, "CPU", {"num_cpus": 4})


def test_several_actors_can_share_a_card_each_decoding_on_its_own_cpus():
    gpu = plan_actors(on(ray_workers_per_accelerator=4), {"CPU": 64, "GPU": 2}, at_most=100)
    assert (gpu.count, gpu.options["num_gpus"]) == (8, 0.25)
    assert gpu.describe() == "8 worker(s), 0.25 GPU each"
    hpu = plan_actors(on(ray_workers_per_accelerator=2), {"CPU": 64, "HPU": 8}, at_most=100)
    assert (hpu.count, hpu.options["resources"]) == (16, {"HPU": 0.5})
    cpu = plan_actors(on(ray_workers_per_accelerator=4), {"CPU": 4}, at_most=100)
    assert cpu.count == 4  # no card to share: one per CPU share as before
    with pytest.raises(ConfigError, match="ray_workers_per_accelerator at least 1"):
        executor_of(on(ray_workers_per_accelerator=0))


def test_never_more_actors_than_files_nor_than_asked_for():
    assert plan_actors(on(), {"CPU": 16, "GPU": 8}, at_most=3).count == 3
    assert plan_actors(on(ray_workers=2), {"CPU": 16, "GPU": 8}, at_most=100).count == 2
    assert plan_actors(on(ray_workers=50), {"CPU": 16, "GPU": 8}, at_most=100).count == 8


def test_a_named_device_the_cluster_lacks_is_refused_with_what_it_has():
    with pytest.raises(ConfigError, match=r"no GPU to give a worker .*CPU 2"):
        plan_actors(on(device="cuda"), {"CPU": 2.0, "memory": 1e9}, at_most=5)
    with pytest.raises(ConfigError, match="no CPU to give a worker"):
        plan_actors(on(ray_cpus_per_worker=4), {"CPU": 2.0}, at_most=5)


def test_an_explicit_cpu_device_uses_cpus_even_beside_gpus():
    plan = plan_actors(on(device="cpu", ray_cpus_per_worker=2), {"CPU": 8, "GPU": 2}, at_most=9)
    assert (plan.count, plan.accelerator) == (4, "CPU")


# -- errors that cross from an actor ------------------------------------------------------
def test_a_workers_run_error_comes_back_as_the_same_kind_of_error():
    assert type(_rebuilt("ModelError", "no model")) is ModelError
    assert type(_rebuilt("StoreError", "db down")) is StoreError
    assert type(_rebuilt("MediaError", "odd")) is PolicyEngineError  # richer constructor
    assert type(_rebuilt("SystemExit", "not ours")) is PolicyEngineError


# -- the queue operations a task uses ------------------------------------------------------
TIMING = QueueTiming(
    settle_seconds=0, quiet_seconds=0, claim_timeout=60, max_attempts=3, retry_backoff=0
)


def test_a_task_claims_its_file_by_id_once_and_finds_it_done_afterwards(store, tmp_path):
    queue = IngestQueue(store, TIMING)
    queue.register()
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"x")
    queue.observe("folder", [Observation(str(clip), "folder", 1, 0)])
    [queue_id] = queue.due_ids(["folder"])
    claim = queue.claim_id(queue_id)
    assert claim is not None and claim.attempts == 1
    assert queue.claim_id(queue_id) is None  # a retried task does not claim it twice
    held = queue.entry(queue_id)
    assert held is not None
    assert (held.state, held.claimed_by, held.attempts) == (CLAIMED, queue.worker_id, 1)
    assert queue.due_ids(["folder"]) == []
    queue.finish(claim, error=None, content_sha256="ab" * 32)
    done = queue.entry(queue_id)
    assert done is not None and (done.state, done.content_sha256) == (DONE, "ab" * 32)
    assert queue.claim_id(queue_id) is None
    assert queue.entry(queue_id + 1000) is None
    queue.stop()


# -- the command line's refusals, before Ray starts ---------------------------------------
def test_scan_on_ray_against_sqlite_exits_2_saying_to_use_postgresql(tmp_path, colour_video):
    from typer.testing import CliRunner

    from policy_engine.cli import app

    db = f"sqlite:///{tmp_path / 'e.sqlite'}"
    result = CliRunner().invoke(app, ["--db", db, "scan", str(colour_video), "--executor", "ray"])
    assert result.exit_code == 2, result.output
    assert "executor ray needs a database every node can reach" in result.output
    assert "Use PostgreSQL" in result.output
    unknown = CliRunner().invoke(app, ["--db", db, "scan", str(colour_video), "--executor", "dask"])
    assert unknown.exit_code == 2 and "is not one of local, ray" in unknown.output


def test_a_task_claims_a_file_handed_to_it_before_it_has_settled_but_not_one_backing_off(
    store, tmp_path
):
    """Whether a file has settled is the driver's call (an ingest pass hands out only
    settled files; `scan` names its files): a task claims what it is handed, unless the
    file is backing off after a failure."""
    import time

    quiet = QueueTiming(
        settle_seconds=30, quiet_seconds=60, claim_timeout=60, max_attempts=3, retry_backoff=300
    )
    queue = IngestQueue(store, quiet)
    queue.register()
    fresh = Observation(str(tmp_path / "new.mp4"), "folder", 1, time.time_ns())
    queue.observe("folder", [fresh])
    assert queue.due_ids(["folder"]) == []  # not settled: a pass would not hand it out
    [queue_id] = IngestQueue(store, TIMING).due_ids(["folder"])  # settled at once there
    claim = queue.claim_id(queue_id)
    assert claim is not None and claim.path == fresh.path
    queue.finish(claim, error="unreadable")  # a failure: it backs off for 300 s
    backing_off = queue.entry(queue_id)
    assert backing_off is not None and backing_off.state == "retry"
    assert queue.claim_id(queue_id) is None
    queue.stop()
