"""The review queue: what needs review (the longest waiting first), the near misses,
and a fixed random sample of what the engine cleared (quality control of the machine,
as A2I's sampling does); a reviewer claims an item so that no one else works on it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from policy_engine.policy.evaluate import combine
from policy_engine.policy.model import DEFAULT_LEVELS
from policy_engine.service.deps import who as author
from policy_engine.service.pages.common import Viewer, render
from policy_engine.service.resources import resources

router = APIRouter(include_in_schema=False)
SHOWN = 50  # items per part of the queue


@router.get("/queue")
def queue(request: Request, who: Viewer) -> HTMLResponse:
    from policy_engine.store.review import Reviews

    engine = resources(request)
    store = engine.store()
    reviews = Reviews(store)
    parts = {
        "review": reviews.needing_review(SHOWN),
        "near": reviews.near_misses(SHOWN),
        "sample": reviews.sample(engine.settings.review_sample, DEFAULT_LEVELS[0], SHOWN),
    }
    ids = sorted({item.asset_id for items in parts.values() for item in items})
    rows = _rows(store, ids)
    return render(
        request, "queue.html", who, parts=parts, rows=rows, claims=reviews.claims(ids),
        proposed={p.asset_id for p in reviews.proposals(asset_ids=ids)}, me=author(who.account),
        sample_rate=engine.settings.review_sample,
        claim_minutes=engine.settings.review_claim_minutes,
    )  # fmt: skip


def _rows(store: Any, ids: list[int]) -> dict[int, dict[str, Any]]:
    current = store.current_decisions(ids)
    by_asset: dict[int, list[Any]] = {}
    for (asset_id, _), decision in current.items():
        by_asset.setdefault(asset_id, []).append(decision)
    assets = store.assets_by_id(ids)
    rows = {}
    for asset_id in ids:
        asset = assets.get(asset_id)
        decisions = by_asset.get(asset_id, [])
        rows[asset_id] = {
            "path": asset.path if asset else "?",
            "verdict": combine([d.ruled() for d in decisions]) if decisions else None,
        }
    return rows
