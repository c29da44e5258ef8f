"""Persistence: the only package that speaks SQL (SQLAlchemy 2 + Alembic)."""

from policy_engine.store.repository import (
    AssetRow,
    CurrentDecision,
    NewDecision,
    ScanFrames,
    ScanModel,
    Store,
    StoredScan,
)

__all__ = [
    "AssetRow",
    "CurrentDecision",
    "NewDecision",
    "ScanFrames",
    "ScanModel",
    "Store",
    "StoredScan",
]
