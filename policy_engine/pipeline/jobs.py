"""Handing files to the engine from outside: a path on the server (under the configured
``job_roots`` only) or an upload (spooled to ``job_spool``, capped), queued as an
analysis job that the ingest workers scan (see ``store.jobs``)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

from policy_engine.config import Settings
from policy_engine.errors import ConfigError, PolicyEngineError
from policy_engine.media.formats import VIDEO_PATTERNS
from policy_engine.pipeline.webhooks import check_url, deliver
from policy_engine.store import Store
from policy_engine.store.jobs import Jobs, JobView

_SAFE = re.compile(r"[^A-Za-z0-9._ -]+")


class PathNotAllowed(PolicyEngineError):
    """A path outside every configured job root (or none configured)."""


class TooLarge(PolicyEngineError):
    """An upload over the configured cap."""


def submit_path(
    settings: Settings,
    store: Store,
    path: str,
    *,
    created_by: str,
    key: str | None,
    webhook_url: str | None = None,
) -> tuple[JobView, bool]:
    """Queue a file on the server; it must lie under one of ``job_roots`` once every
    link is resolved (a link out of a root is outside it)."""
    if not settings.job_roots:
        raise PathNotAllowed("no job_roots are configured: this server takes no paths")
    try:
        file = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        raise ConfigError(f"path {path!r}: no such file on the server") from None
    roots = [Path(r).resolve() for r in settings.job_roots]
    if not any(file.is_relative_to(root) for root in roots):
        raise PathNotAllowed(f"path {path!r} is outside the allowed roots")
    if not file.is_file():
        raise ConfigError(f"path {path!r} is not a file")
    if webhook_url is not None:
        check_url(webhook_url, settings.webhook_hosts, settings.webhook_signing_key)
    stat = file.stat()
    return Jobs(store).submit(
        str(file), source="path", name=file.name, created_by=created_by,
        idempotency_key=key, size=stat.st_size, mtime_ns=stat.st_mtime_ns,
        webhook_url=webhook_url,
    )  # fmt: skip


def announce_finished(settings: Settings, store: Store, queue_id: int) -> str | None:
    """After a worker finished (or gave up on) a queue row: if it is a job that asked for
    a webhook, deliver it; returns a problem to report, or None."""
    jobs = Jobs(store)
    wanted = jobs.webhook_of(queue_id)
    if wanted is None:
        return None
    job_id, url = wanted
    view = jobs.get(job_id)
    assert view is not None
    payload = {"event": "analysis.finished", "job": job_payload(store, view)}
    attempts, error = deliver(url, settings.webhook_signing_key, payload)
    jobs.record_webhook(job_id, attempts, error)
    return None if error is None else f"webhook for job {job_id} to {url} failed: {error}"


def job_payload(store: Store, view: JobView) -> dict[str, object]:
    """A job as clients see it: with the asset, its verdict and decisions once done."""
    from dataclasses import asdict

    from policy_engine.policy.evaluate import combine

    data: dict[str, object] = asdict(view)
    if view.status == "succeeded" and view.asset_id is not None:
        current = store.current_decisions([view.asset_id])
        rulings = [d.ruled() for d in current.values()]
        data["verdict"] = combine(rulings) if rulings else None
        data["decisions"] = [
            {"id": d.id, "ruleset": name, "schedule": d.ruled().schedule}
            for (_, name), d in sorted(current.items())
        ]
    return data


async def spool_upload(
    settings: Settings, chunks: AsyncIterator[bytes], name: str, declared: int | None
) -> Path:
    """Write an upload to the spool as it arrives; over the cap (declared, or counted
    while reading) it is refused and nothing is left on disk."""
    cap = int(settings.upload_max_mb * 1024 * 1024)
    if declared is not None and declared > cap:
        raise TooLarge(f"the upload is {declared} bytes; the limit is {cap}")
    safe = _SAFE.sub("_", Path(name).name).strip(" .")[:120] or "upload"
    if not any(Path(safe.lower()).match(p) for p in VIDEO_PATTERNS):
        raise ConfigError(f"name {name!r}: give the video's file name, e.g. promo.mp4")
    folder = (
        Path(settings.job_spool).resolve() / f"{time.strftime('%Y%m%d')}-{secrets.token_hex(8)}"
    )
    folder.mkdir(parents=True)
    target = folder / safe
    written = 0
    try:
        with open(target, "wb") as out:
            async for chunk in chunks:
                written += len(chunk)
                if written > cap:
                    raise TooLarge(f"the upload is over the limit of {cap} bytes")
                out.write(chunk)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if written == 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise ConfigError("the upload is empty")
    old = time.time() - 24 * 3600  # complete now: no need to wait for it to settle
    os.utime(target, (old, old))
    return target


def submit_upload(
    store: Store, file: Path, *, name: str, created_by: str, key: str | None
) -> tuple[JobView, bool]:
    stat = file.stat()
    job, new = Jobs(store).submit(
        str(file), source="upload", name=name, created_by=created_by, idempotency_key=key,
        size=stat.st_size, mtime_ns=stat.st_mtime_ns,
    )  # fmt: skip
    if not new:  # the same upload again: the first one is the job; drop this copy
        shutil.rmtree(file.parent, ignore_errors=True)
    return job, new
