"""Accounts through the API (admin role)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from policy_engine.service.deps import Admin
from policy_engine.service.resources import resources

router = APIRouter(prefix="/api/v1", tags=["accounts"])


@router.get("/tokens")
def tokens(request: Request, caller: Admin) -> list[dict[str, Any]]:
    """Every API token (never its secret)."""
    return [vars(t) for t in resources(request).accounts().tokens()]
