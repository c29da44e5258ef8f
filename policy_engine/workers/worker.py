"""A queue worker's life: registered in the database, heartbeating, holding its model.

The ingest worker of ``policy-engine schedule`` is one; so is each actor of a Ray
cluster. Another worker that finds this one silent for longer than the claim timeout
(or, on the same machine, finds its process gone) presumes it dead and puts its files
back in the queue; a worker that learns it was presumed dead abandons the file in hand
and comes back as a new worker, rather than act on claims no longer its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from policy_engine.config import Settings
from policy_engine.errors import StoreError
from policy_engine.models.provider import ModelProvider
from policy_engine.policy.model import RuleSet
from policy_engine.store import Store
from policy_engine.store.ingest import IngestQueue, QueueTiming, Reaped
from policy_engine.workers.claims import ClaimWork, StopAwareListener, StopSignals

log = logging.getLogger(__name__)

timing_of = QueueTiming.from_settings  # the worker's timing, checked


class QueueWorker:
    """Registered on ``start()`` (or ``with``), released on ``close()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        signals: StopSignals | None = None,
        on_create: Callable[[str], None] | None = None,
        pool_size: int | None = None,
        application_name: str | None = None,
    ) -> None:
        self.settings = settings
        self.signals = signals or StopSignals()
        self.timing = timing_of(settings)
        self.store = Store.open(
            settings.db,
            on_create=on_create,
            pool_size=pool_size,
            application_name=application_name,
        )
        self.queue = IngestQueue(self.store, self.timing)
        self._models: dict[tuple[Any, ...], ModelProvider] = {}
        self._closed = threading.Event()
        self._heartbeats: threading.Thread | None = None
        self.lost = False
        self.reaped_at_start: list[Reaped] = []  # reported by the first pass

    def start(self) -> QueueWorker:
        try:
            self.reaped_at_start = self.queue.register()
        except BaseException:
            self.store.close()
            raise
        log.info("worker %s started on %s", self.queue.worker_id, self.store.url)
        self._heartbeats = threading.Thread(target=self._beat, name="ingest-heartbeat", daemon=True)
        self._heartbeats.start()
        return self

    def close(self, reason: str = "finished") -> None:
        self._closed.set()
        if self._heartbeats is not None:
            self._heartbeats.join(timeout=10)
        try:
            self.queue.stop(reason)
        except StoreError as exc:
            log.error("could not record the stop of worker %s: %s", self.queue.worker_id, exc)
        self.store.close()
        log.info("worker %s stopped (%s)", self.queue.worker_id, reason)

    def __enter__(self) -> QueueWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close("stopped on request" if self.signals.stop.is_set() else "finished")

    def _beat(self) -> None:
        while not self._closed.wait(self.settings.heartbeat):
            try:
                alive = self.queue.heartbeat()
            except StoreError as exc:
                log.warning("heartbeat failed (will retry): %s", exc)
                continue
            if not alive and not self.lost:
                self.lost = True
                log.error(
                    "worker %s was presumed dead by another worker (heartbeats too late);"
                    " abandoning the file in hand",
                    self.queue.worker_id,
                )
                self.signals.abandon.set()

    def provider(self, settings: Settings) -> ModelProvider:
        """The model for ``settings``, loaded once and kept (one model at a time)."""
        key = (settings.model, settings.device, settings.dtype, settings.runtime)
        key += (settings.batch_size,)
        if key not in self._models:
            self._models.clear()  # one model in memory at a time
            self._models[key] = ModelProvider.from_settings(
                settings,
                # a death while a model loads does not count against the file in hand
                while_loading=lambda what: self.queue.loading_model(),
            )
        return self._models[key]

    def claim_work(
        self,
        rulesets: Sequence[RuleSet],
        *,
        force: bool = False,
        window: dict[str, Any] | None = None,
    ) -> ClaimWork:
        """The steps for a claimed file under ``rulesets``, with this worker's model
        (``window``: start, end and max_frames, as ``analysis_options`` takes them)."""
        from policy_engine.api import analysis_options, settings_for_ruleset
        from policy_engine.pipeline.scan import Scanner

        settings = settings_for_ruleset(self.settings, rulesets[0])
        scanner = Scanner(
            self.store,
            rulesets,
            self.provider(settings),
            analysis_options(settings, **(window or {})),
            reports_dir=Path(settings.reports),
            force=force,
            listener=StopAwareListener(self.signals, self.queue),
            worker_id=self.queue.worker_id,
        )
        return ClaimWork(settings, self.queue, scanner)

    def rejoin(self) -> None:
        """After being presumed dead (its claims were taken over), come back as a new
        worker rather than act on claims that are no longer ours."""
        old = self.queue.worker_id
        self.queue = IngestQueue(self.store, self.timing)
        self.reaped_at_start = self.queue.register()
        self.signals.abandon.clear()
        self.lost = False
        log.warning("worker %s rejoined as %s", old, self.queue.worker_id)
