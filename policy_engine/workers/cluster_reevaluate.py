"""``policy-engine reevaluate --executor ray``: a very large archive judged in parts.

Re-evaluation reads stored scores and decisions, never video; what costs time at
50,000 assets is reading the scores and judging them. The driver lists each asset's
latest completed scan, divides the list into parts, and runs one Ray task per part
(each with one database connection; the text tower only where a prompt changed). A
part appends its own decisions: assets never straddle parts, so no two tasks decide
about one asset. The results are merged into one ``Reevaluation``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from policy_engine.config import Settings
from policy_engine.pipeline.judging import Reevaluation
from policy_engine.policy.model import RuleSet
from policy_engine.store import Store
from policy_engine.workers.cluster import connect
from policy_engine.workers.executor import executor_of

SCANS_PER_TASK = 500


def judge_part(
    settings: Settings,
    rulesets: list[RuleSet],
    scan_ids: list[int],
    always: bool,
    dry_run: bool,
) -> Reevaluation:
    """One part, in a Ray task: its own connection, its own (lazy) model."""
    from policy_engine.models.provider import ModelProvider
    from policy_engine.pipeline.judging import reevaluate

    store = Store.open(settings.db, pool_size=1, application_name="policy-engine ray reevaluate")
    try:
        models = ModelProvider.from_settings(settings)
        return reevaluate(
            store, rulesets, models, always=always, dry_run=dry_run, scan_ids=scan_ids
        )
    finally:
        store.close()


def reevaluate_on_cluster(
    settings: Settings,
    store: Store,
    rulesets: Sequence[RuleSet],
    *,
    since: datetime | None = None,
    always: bool = False,
    dry_run: bool = False,
    per_task: int = SCANS_PER_TASK,
) -> Reevaluation:
    """The archive's latest scans judged in parts of ``per_task`` on the cluster, at
    most two parts per worker's share of CPUs in flight at once (back-pressure)."""
    executor_of(settings)
    started = time.perf_counter()
    ray, connected_here = connect(settings)
    try:
        results = _judge_in_parts(ray, settings, store, rulesets, since, always, dry_run, per_task)
    finally:
        if connected_here:
            ray.shutdown()
    return merged(list(rulesets), results, dry_run, time.perf_counter() - started)


def _judge_in_parts(
    ray: Any,
    settings: Settings,
    store: Store,
    rulesets: Sequence[RuleSet],
    since: datetime | None,
    always: bool,
    dry_run: bool,
    per_task: int,
) -> list[Reevaluation]:
    ids = store.latest_scan_ids(since=since)
    parts = [ids[i : i + per_task] for i in range(0, len(ids), per_task)]
    task = ray.remote(judge_part).options(num_cpus=settings.ray_cpus_per_worker)
    slots = max(int(ray.cluster_resources().get("CPU", 1) // settings.ray_cpus_per_worker), 1)
    rules = ray.put(list(rulesets))
    running: list[Any] = []
    results: list[Reevaluation] = []
    for part in parts:
        if len(running) >= 2 * slots:
            done, running = ray.wait(running, num_returns=1)
            results.extend(ray.get(done))
        running.append(task.remote(settings, rules, part, always, dry_run))
    results.extend(ray.get(running))
    return results


def merged(
    rulesets: list[RuleSet], parts: list[Reevaluation], dry_run: bool, seconds: float
) -> Reevaluation:
    """The parts' results as one, in the order of the archive."""
    whole = Reevaluation(
        rulesets=rulesets, scans=0, changes=[], unchanged=0, appended=0, problems=[],
        from_stored_scores=0, rescored=0, seconds=seconds, dry_run=dry_run,
    )  # fmt: skip
    for part in parts:
        whole = replace(
            whole,
            scans=whole.scans + part.scans,
            changes=whole.changes + part.changes,
            unchanged=whole.unchanged + part.unchanged,
            appended=whole.appended + part.appended,
            problems=whole.problems + part.problems,
            from_stored_scores=whole.from_stored_scores + part.from_stored_scores,
            rescored=whole.rescored + part.rescored,
            decided_assets=whole.decided_assets + part.decided_assets,
        )
    return whole
