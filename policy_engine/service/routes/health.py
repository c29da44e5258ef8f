"""Liveness and readiness, for a process supervisor and a load balancer."""

from __future__ import annotations

from fastapi import APIRouter, Request

from policy_engine.errors import StoreError
from policy_engine.service.problems import Problem
from policy_engine.service.resources import resources

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers (for a liveness probe)."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> dict[str, str]:
    """The database is reachable and its schema is this software's (for a load
    balancer): 503 otherwise, saying why."""
    from policy_engine.store.database import current_revision, head_revision

    try:
        store = resources(request).store()
        current, head = current_revision(store.engine), head_revision()
    except StoreError as exc:
        raise Problem(503, "not-ready", str(exc)) from None
    if current != head:
        raise Problem(503, "not-ready", f"database schema {current}, this software {head}")
    ready = {"status": "ready", "schema": current}
    backend = resources(request).settings.search_backend
    if backend == "pgvector":  # detected here, at start-up; only search depends on it
        from policy_engine.store.vectors import PgVectors

        why = PgVectors(store).unavailable()
        ready["search"] = f"pgvector unavailable: {why}" if why else "pgvector"
    else:
        ready["search"] = backend
    return ready
