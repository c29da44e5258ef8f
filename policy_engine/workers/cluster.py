"""Scans on a Ray cluster: one actor per accelerator, the database as the one record.

Each actor is a queue worker (``workers.worker``): registered in the shared PostgreSQL
database with one connection, heartbeating, holding its model for its life. The driver
hands it queue ids, one task per file; the task claims its file through the queue
before any work, scans it on the node it runs on (the video is read there, from the
same path on every node, never shipped through Ray's object store), writes its scan,
decisions and report in the store's transactions, and finishes the claim.

Exactly once, whatever fails: a task that Ray retries after its actor's death (the
actor is restarted) first reaps dead workers, so the dead actor's claim is released
and its half-written scan closed as failed; it then finds the file due again (and
scans it), or done already (and scans nothing), or held by a live worker (and leaves
it). A scan completed before the death is reused, not repeated: no second decision.

Ray is imported only here, and only when the executor is ``ray``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from policy_engine import errors
from policy_engine.config import Settings
from policy_engine.errors import ConfigError, PolicyEngineError
from policy_engine.policy.model import RuleSet
from policy_engine.workers.claims import (
    GIVEN_BACK,
    NOT_CLAIMED,
    ClaimWork,
    Handled,
    ScanAbandoned,
    StopSignals,
)
from policy_engine.workers.executor import RAY_EXTRA, ActorPlan, executor_of, plan_actors

log = logging.getLogger(__name__)

_PATCHING = threading.Lock()
RUN_ERROR = "run-error"  # a Handled kind: the worker cannot scan at all (model, database)
WAIT_POLL_S = 0.5  # how often the driver looks for a stop request while tasks run


class ClusterError(PolicyEngineError):
    """The Ray cluster cannot be reached, or every one of its workers died."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"executor ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def connect(settings: Settings) -> tuple[Any, bool]:
    """The ``ray`` module, connected: to ``ray_address`` (auto: the cluster this node
    belongs to; ray://head:10001: Ray Client), or to a Ray started here when empty; and
    whether this call started or joined it (and should ``ray.shutdown()`` when done)."""
    ray = _ray()
    if ray.is_initialized():
        return ray, False
    address = settings.ray_address.strip() or None
    try:
        with _lean_head(started_here=address in (None, "local")):
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,  # the workers' logs stay in Ray's session folder
                logging_level=logging.WARNING,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {exc}. Start one with `ray start"
            " --head` on the head node (and `ray start --address HEAD:6379` on the others),"
            " or leave ray_address empty to start Ray on this machine"
        ) from None
    return ray, True


@contextmanager
def _lean_head(*, started_here: bool) -> Iterator[None]:
    """While ``ray.init`` starts Ray on this machine for one command: without the
    autoscaler's monitor (there is nothing to autoscale) and the log monitor (logs are
    not sent to the driver). Each is a Python process whose start competes with the
    actors' for the CPUs, and stopping the monitor alone took 1.1 s of the 1.4 s that
    ``ray.shutdown()`` took here. ``ray start`` has switches for both (``--no-monitor``,
    ``--include-log-monitor``) but ``ray.init`` has none, so the two fields of the
    ``RayParams`` it builds are set as it builds them (private API: where Ray no longer
    has it, Ray starts as it comes). A cluster joined, not started, is left alone."""
    try:
        from ray._private.parameter import RayParams as params
    except ImportError:
        params = None
    if not started_here or params is None:
        yield
        return
    with _PATCHING:  # two threads starting Ray at once must not leave the patch in place
        original = params.__init__

        def lean(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            if hasattr(self, "no_monitor") and hasattr(self, "include_log_monitor"):
                self.no_monitor, self.include_log_monitor = True, False

        params.__init__ = lean
        try:
            yield
        finally:
            params.__init__ = original


def _rebuilt(kind: str, message: str) -> PolicyEngineError:
    """A worker's run error, as the same kind of error here (exit codes follow it)."""
    found = getattr(errors, kind, None)
    if isinstance(found, type) and issubclass(found, PolicyEngineError):
        try:
            return found(message)
        except TypeError:  # an error with a richer constructor (MediaError)
            pass
    return PolicyEngineError(message)


class ScanActor:
    """The body of one Ray actor (made remote by ``ScanCluster``): a queue worker with
    one database connection and its model, kept for its life."""

    def __init__(self, settings: Settings, force: bool, window: dict[str, Any]) -> None:
        from policy_engine.workers.worker import QueueWorker

        logging.basicConfig(  # into Ray's log file for this worker
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        name = f"policy-engine ray worker {socket.gethostname()}:{os.getpid()}"
        self.worker = QueueWorker(settings, pool_size=1, application_name=name).start()
        self.force = force
        self.window = window
        self._work: tuple[tuple[str, ...], ClaimWork] | None = None

    def warm(self) -> None:
        """Load the model now, while the driver is still busy (a load that fails is
        reported by the first task, which meets the same error)."""
        try:
            self.worker.provider(self.worker.settings).embedder()
        except PolicyEngineError as exc:
            log.error("the model could not be loaded: %s", exc)

    def abandon(self) -> None:
        """Give the file in hand back unfinished (a second stop request at the driver)."""
        self.worker.signals.abandon.set()

    def close(self) -> None:
        self.worker.close()

    def handle(self, queue_id: int, rulesets: list[RuleSet]) -> Handled:
        try:
            return self._handle(queue_id, rulesets)
        except ScanAbandoned:
            return Handled(queue_id, "", GIVEN_BACK, note="abandoned on request")
        except PolicyEngineError as exc:
            return Handled(queue_id, "", RUN_ERROR, note=str(exc), error_kind=type(exc).__name__)

    def _handle(self, queue_id: int, rulesets: list[RuleSet]) -> Handled:
        worker = self.worker
        if worker.lost:
            worker.rejoin()
        worker.signals.abandon.clear()
        claim = worker.queue.claim_id(queue_id)
        if claim is None:  # a dead worker (this task's first try?) may hold it: reap
            worker.queue.reap()
            claim = worker.queue.claim_id(queue_id)
        if claim is None:
            return self._not_claimed(queue_id)
        work = self._work_for(rulesets)
        if not Path(claim.file).exists():
            why = (
                f"{claim.file} cannot be seen on node {socket.gethostname()}: it was deleted,"
                " or the ingest folders are not mounted at the same paths on every node"
            )
            return work.fail(claim, why)
        return work.process(claim)

    def _not_claimed(self, queue_id: int) -> Handled:
        entry = self.worker.queue.entry(queue_id)
        if entry is None:
            return Handled(queue_id, "", NOT_CLAIMED, note="no such queue entry")
        held = f" by {entry.claimed_by}" if entry.claimed_by else ""
        return Handled(
            queue_id, entry.path, NOT_CLAIMED, state=entry.state, attempts=entry.attempts,
            note=f"{entry.state}{held}",
        )  # fmt: skip

    def _work_for(self, rulesets: list[RuleSet]) -> ClaimWork:
        key = tuple(f"{r.name}@{r.sha256}" for r in rulesets)
        if self._work is None or self._work[0] != key:
            work = self.worker.claim_work(rulesets, force=self.force, window=self.window)
            self._work = (key, work)
        return self._work[1]


class ScanCluster:
    """The driver's side: the actors, and handing them queue ids with back-pressure
    (one task per actor at a time, the rest held here), results as they complete."""

    def __init__(
        self,
        settings: Settings,
        *,
        force: bool = False,
        window: dict[str, Any] | None = None,
        at_most: int = 1 << 30,
    ) -> None:
        executor_of(settings)
        self.ray, self._connected_here = connect(settings)
        self.plan: ActorPlan = plan_actors(settings, self.ray.cluster_resources(), at_most=at_most)
        retries = settings.max_attempts  # a file that kills its worker ends in quarantine
        remote = self.ray.remote(ScanActor).options(
            max_restarts=retries + 1,
            max_task_retries=retries,
            max_concurrency=2,  # handle() and abandon() at once
            **self.plan.options,
        )
        self.actors = [remote.remote(settings, force, window or {}) for _ in range(self.plan.count)]
        for actor in self.actors:  # starting and loading take seconds: begin now
            actor.warm.remote()
        log.info("Ray cluster: %s", self.plan.describe())

    def run(
        self,
        queue_ids: Sequence[int],
        rulesets: Sequence[RuleSet],
        signals: StopSignals,
        on_result: Callable[[Handled], None],
    ) -> None:
        """Hand out ``queue_ids``; ``on_result`` gets each file's ``Handled`` as it comes.
        A stop request hands out no more; a second one gives the files in hand back. A
        worker's run error (no model, no database) stops the hand-out and is raised once
        the tasks in flight are back. ActorPool would do the hand-out, but loses which
        file a failed task held; this loop keeps that."""
        ray = self.ray
        rules = ray.put(list(rulesets))
        waiting = list(reversed(queue_ids))
        idle = list(self.actors)
        running: dict[Any, tuple[Any, int]] = {}  # task -> (actor, queue id)
        failure: PolicyEngineError | None = None
        abandoned = False
        while waiting or running:
            while waiting and idle and failure is None and not signals.stop.is_set():
                actor, queue_id = idle.pop(), waiting.pop()
                running[actor.handle.remote(queue_id, rules)] = (actor, queue_id)
            if not running:
                break
            if signals.abandon.is_set() and not abandoned:
                abandoned = True
                for actor in self.actors:
                    actor.abandon.remote()
            done, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_POLL_S)
            for task in done:
                actor, queue_id = running.pop(task)
                handled, alive = self._result(task, queue_id)
                if alive:
                    idle.append(actor)
                else:
                    self.actors.remove(actor)
                if handled.kind == RUN_ERROR:
                    failure = failure or _rebuilt(handled.error_kind, handled.note)
                    continue
                on_result(handled)
            if waiting and not self.actors:
                raise ClusterError(
                    f"every Ray worker died; {len(waiting)} file(s) were not handed out"
                    " (they stay due for the next run). See the workers' logs in Ray's"
                    " session folder (/tmp/ray/session_latest/logs)"
                )
        if failure is not None:
            raise failure

    def _result(self, task: Any, queue_id: int) -> tuple[Handled, bool]:
        """The task's Handled, and whether its actor is still alive."""
        ray = self.ray
        try:
            return ray.get(task), True
        except ray.exceptions.ActorDiedError as exc:
            why = f"its Ray worker died for good ({exc.__class__.__name__}); it is due again"
            return Handled(queue_id, "", NOT_CLAIMED, note=why), False
        except ray.exceptions.RayError as exc:  # a bug in the task: the file, not the run
            return Handled(queue_id, "", NOT_CLAIMED, note=f"the task failed: {exc}"), True

    def shutdown(self) -> None:
        """Release the actors' workers (their claims and leases) and end them."""
        ray = self.ray
        closing = [actor.close.remote() for actor in self.actors]
        try:
            ray.wait(closing, num_returns=len(closing), timeout=30)
        finally:
            for actor in self.actors:
                ray.kill(actor)
            self.actors = []
            if self._connected_here:  # now, not at exit (where Ray first sleeps 0.5 s)
                ray.shutdown()
                self._connected_here = False


__all__ = ["ClusterError", "ScanActor", "ScanCluster", "connect"]
