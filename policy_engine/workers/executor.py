"""Where scans run, and how a Ray cluster is divided into workers (no Ray import here).

``local`` runs every scan in this process. ``ray`` runs one actor per accelerator of
a Ray cluster, each holding its model for its life; the database, shared by every node,
stays the one record of what is claimed, scanned and decided, so it must be a server
(PostgreSQL): nodes cannot share a SQLite file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policy_engine.config import Settings
from policy_engine.errors import ConfigError

EXECUTORS = ("local", "ray")
RAY_EXTRA = "pip install 'policy_engine[ray]'"


def executor_of(settings: Settings) -> str:
    """The configured executor, checked (with what else it needs)."""
    executor = settings.executor.strip().lower()
    if executor not in EXECUTORS:
        raise ConfigError(
            f"executor {settings.executor!r} ({settings.source_of('executor')}) is not one of"
            f" {', '.join(EXECUTORS)}"
        )
    if executor == "ray":
        if settings.db.strip().lower().startswith("sqlite"):
            raise ConfigError(
                f"executor ray needs a database every node can reach; {settings.db} is a"
                " SQLite file on this machine. Use PostgreSQL: --db postgresql://user@host/db"
            )
        if (
            settings.ray_workers < 0
            or settings.ray_cpus_per_worker <= 0
            or settings.ray_workers_per_accelerator < 1
        ):
            raise ConfigError(
                "ray_workers must be 0 (one per accelerator) or more, ray_cpus_per_worker"
                " positive and ray_workers_per_accelerator at least 1; got"
                f" {settings.ray_workers}, {settings.ray_cpus_per_worker:g} and"
                f" {settings.ray_workers_per_accelerator}"
            )
    return executor


@dataclass(frozen=True)
class ActorPlan:
    """How many actors to start and what each reserves on its node."""

    count: int
    accelerator: str  # GPU | HPU | CPU
    options: dict[str, Any]  # for ``ActorClass.options(...)``

    def describe(self) -> str:
        if self.accelerator == "CPU":
            return f"{self.count} worker(s) of {self.options['num_cpus']:g} CPU each"
        share = self.options.get("num_gpus") or self.options["resources"]["HPU"]
        return f"{self.count} worker(s), {share:g} {self.accelerator} each"


def plan_actors(settings: Settings, resources: dict[str, float], *, at_most: int) -> ActorPlan:
    """One actor per accelerator of the kind ``settings.device`` asks for (auto: Gaudi,
    then CUDA, then CPUs; ``ray_workers_per_accelerator`` share each card), never more
    than ``at_most`` (the files to scan) nor more than ``ray_workers`` where that is
    set. Ray names Gaudi cards ``HPU``."""
    device = settings.device.strip().lower()
    have = {kind: int(resources.get(kind, 0)) for kind in ("HPU", "GPU")}
    if device == "auto":
        kind = "HPU" if have["HPU"] else "GPU" if have["GPU"] else "CPU"
    elif device.startswith("cuda"):
        kind = "GPU"
    elif device.startswith("hpu"):
        kind = "HPU"
    else:
        kind = "CPU"
    cpus = settings.ray_cpus_per_worker
    sharing = settings.ray_workers_per_accelerator if kind != "CPU" else 1
    available = int(resources.get("CPU", 0) // cpus) if kind == "CPU" else have[kind] * sharing
    if available < 1:
        shown = ", ".join(f"{k} {v:g}" for k, v in sorted(resources.items()) if k.isupper())
        raise ConfigError(
            f"device {settings.device}: the Ray cluster has no {kind} to give a worker"
            f" ({cpus:g} CPU each; it has {shown or 'nothing'}). Add such nodes, or choose"
            " another --device"
        )
    count = min(settings.ray_workers or available, available, max(at_most, 1))
    options: dict[str, Any] = {"num_cpus": cpus}
    if kind == "GPU":
        options["num_gpus"] = 1 / sharing
    elif kind == "HPU":
        options["resources"] = {"HPU": 1 / sharing}
    return ActorPlan(count, kind, options)
