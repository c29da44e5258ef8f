"""The daemon: APScheduler 3 runs ingest passes nightly (cron, default 02:00 in the
configured time zone) and, optionally, every ``poll`` seconds.

Jobs live in the same database (table ``scheduler_jobs``), so a run missed while the
daemon was down still happens when it comes back, if within ``misfire_grace``; missed
runs are coalesced into one and only one pass runs at a time. With several daemons on
one PostgreSQL database, the first keeps the schedule in the database and the others
keep the same schedule in memory: all wake at 02:00 and share the files through claims.

SIGTERM/SIGINT once: finish the file in hand, record the run, exit. Twice: give the file
back unfinished (it keeps its place in the queue), record the run, exit.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from policy_engine.config import Settings
from policy_engine.errors import ConfigError
from policy_engine.ingest import Ingestor, PassResult, StopSignals

log = logging.getLogger(__name__)

JOB_FUNCTION = "policy_engine.scheduler:scheduled_pass"  # stored by reference, not pickled
NIGHTLY, POLL = "nightly", "poll"
JOB_STORE_LEASE = "scheduler:job-store"

_active: Ingestor | None = None  # the worker the stored jobs run on, in this process


def scheduled_pass(kind: str) -> None:
    """What the stored jobs call: one pass on this process's worker."""
    ingestor = _active
    if ingestor is None:
        log.warning("%s job fired but no worker is running in this process", kind)
        return
    ingestor.run_pass(kind)


# -- configuration --------------------------------------------------------------------------
def resolve_timezone(name: str) -> tzinfo:
    if name in ("", "local"):
        from tzlocal import get_localzone

        return get_localzone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"timezone {name!r} is not a known time zone; use an IANA name such as"
            " Europe/London or America/New_York, or 'local'"
        ) from None


_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _cron_day(value: str) -> int:
    lowered = value.strip().lower()
    if lowered[:3] in _CRON_DAYS and not lowered.isdigit():
        return _CRON_DAYS.index(lowered[:3])
    number = int(lowered)
    if not 0 <= number <= 7:
        raise ValueError(f"day of week {value!r} is not 0-7 or a day name")
    return number % 7  # 0 and 7 are both Sunday


def cron_weekdays(field: str) -> str:
    """A crontab day-of-week field as day names. Cron counts from Sunday = 0 (7 too);
    APScheduler 3 counts numbers from Monday = 0, so numbers are never passed through."""
    if field.strip() == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step {step_text!r} must be positive")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            start, end = base.split("-", 1)
            first, last = _cron_day(start), _cron_day(end)
            last = 7 if end.strip() == "7" else last  # 5-7: Friday to Sunday
        else:
            first = _cron_day(base)
            last = 6 if step_text else first
        if last < first:
            raise ValueError(f"day range {base!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_CRON_DAYS[day] for day in sorted(days))


def nightly_trigger(settings: Settings) -> Any:
    """The cron trigger for ``settings.schedule`` (minute hour day month weekday, with
    weekdays as cron counts them) in the configured time zone."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        fields = settings.schedule.split()
        if len(fields) != 5:
            raise ValueError(f"it has {len(fields)} fields, not 5")
        minute, hour, day, month, weekday = fields
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=cron_weekdays(weekday),
            timezone=resolve_timezone(settings.timezone),
        )
    except ValueError as exc:
        raise ConfigError(
            f"schedule {settings.schedule!r} is not a cron expression (minute hour day month"
            f" weekday, e.g. '0 2 * * *' for 02:00 every day): {exc}"
        ) from None


def poll_trigger(settings: Settings) -> Any | None:
    from apscheduler.triggers.interval import IntervalTrigger

    if settings.poll < 0:
        raise ConfigError(f"poll must be 0 (off) or a number of seconds, got {settings.poll}")
    if not settings.poll:
        return None
    return IntervalTrigger(seconds=settings.poll, timezone=resolve_timezone(settings.timezone))


def _trigger_key(trigger: Any) -> tuple[str, ...]:
    interval = getattr(trigger, "interval_length", None)
    if interval is not None:
        return ("interval", str(interval))
    return (str(trigger), str(getattr(trigger, "timezone", "")))


def _grace(settings: Settings) -> int | None:
    return int(settings.misfire_grace) or None  # APScheduler: None = no limit


def build_scheduler(settings: Settings, job_store: Any | None) -> Any:
    """A BackgroundScheduler with one worker thread, coalescing, one instance at a time."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    if settings.misfire_grace < 0:
        raise ConfigError(f"misfire_grace must not be negative, got {settings.misfire_grace}")
    return BackgroundScheduler(
        jobstores={"default": job_store} if job_store is not None else None,
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": _grace(settings),
        },
        timezone=resolve_timezone(settings.timezone),
    )


def install_jobs(scheduler: Any, settings: Settings) -> None:
    """Add or update the nightly and poll jobs. A stored job whose trigger is unchanged is
    kept as it is, so a run missed while the daemon was down is still made up."""
    for job_id, trigger in ((NIGHTLY, nightly_trigger(settings)), (POLL, poll_trigger(settings))):
        existing = scheduler.get_job(job_id)
        if trigger is None:
            if existing is not None:
                scheduler.remove_job(job_id)
            continue
        if existing is not None and _trigger_key(existing.trigger) == _trigger_key(trigger):
            # kept with its next run time; today's misfire grace applies to it
            scheduler.modify_job(job_id, misfire_grace_time=_grace(settings))
            continue
        scheduler.add_job(
            JOB_FUNCTION,
            trigger,
            args=[job_id],
            id=job_id,
            name=f"{job_id} ingest run",
            replace_existing=True,
        )


# -- running --------------------------------------------------------------------------------
def install_signal_handlers(signals: StopSignals) -> None:
    """SIGTERM and SIGINT ask the worker to stop (twice: stop now)."""

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if signals.stop.is_set():
            log.warning("%s again: giving back the file in hand and stopping", name)
        else:
            log.warning("%s: finishing the file in hand, then stopping (again: stop now)", name)
        signals.request()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def run_once(
    settings: Settings,
    *,
    signals: StopSignals | None = None,
    on_create: Callable[[str], None] | None = None,
) -> PassResult:
    """One pass now (what ``schedule --once`` and cron users run)."""
    signals = signals or StopSignals()
    with Ingestor(settings, signals=signals, on_create=on_create) as ingestor:
        result = ingestor.run_pass("once")
    assert result is not None
    return result


def serve(
    settings: Settings,
    *,
    signals: StopSignals | None = None,
    on_create: Callable[[str], None] | None = None,
    on_ready: Callable[[Any], None] | None = None,
) -> None:
    """Run the daemon until a stop request."""
    global _active
    from policy_engine.store.ingest import job_store

    signals = signals or StopSignals()
    nightly_trigger(settings), poll_trigger(settings)  # bad settings fail before anything
    with Ingestor(settings, signals=signals, on_create=on_create) as ingestor:
        holder = ingestor.queue.acquire(JOB_STORE_LEASE)
        if holder is None:
            scheduler = build_scheduler(settings, job_store(ingestor.store))
        else:
            log.info(
                "daemon %s keeps the schedule in the database; this one keeps the same"
                " schedule in memory and shares the files through claims",
                holder.id,
            )
            scheduler = build_scheduler(settings, None)
        _active = ingestor
        try:
            scheduler.start(paused=True)
            install_jobs(scheduler, settings)
            scheduler.resume()
            for job in scheduler.get_jobs():
                log.info("%s: next run %s", job.name, job.next_run_time)
            if on_ready is not None:
                on_ready(scheduler)
            while not signals.stop.wait(1.0):
                pass
            log.info("stopping: waiting for the run in progress, if any")
            scheduler.shutdown(wait=True)
        finally:
            _active = None
            if scheduler.running:
                scheduler.shutdown(wait=False)
