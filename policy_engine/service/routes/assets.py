"""The catalogue, one asset, and questions about what an asset shows."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

# Imported with the app, not by a worker's first request: the pipeline brings torch in
# (seconds), which would stall every request queued behind that first one.
from policy_engine.analysis.ask import DEFAULT_THRESHOLD
from policy_engine.pipeline.ask import ask as ask_store
from policy_engine.pipeline.catalogue import AssetFilter, list_assets
from policy_engine.policy.evaluate import combine
from policy_engine.service.deps import PRINTABLE, Reader, utc
from policy_engine.service.problems import Problem
from policy_engine.service.resources import resources

router = APIRouter(prefix="/api/v1/assets", tags=["assets"])


@router.get("")
def assets(
    request: Request,
    caller: Reader,
    verdict: Annotated[str | None, Query(max_length=64, pattern=PRINTABLE)] = None,
    review: Annotated[bool | None, Query(description="Review pending.")] = None,
    tag: Annotated[str | None, Query(max_length=100, pattern=PRINTABLE)] = None,
    ruleset: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
    rule: Annotated[
        str | None, Query(max_length=200, pattern=PRINTABLE, description="A rule that fired.")
    ] = None,
    name: Annotated[
        str | None, Query(max_length=500, pattern=PRINTABLE, description="Text in a path.")
    ] = None,
    scanned_since: datetime | None = None,
    scanned_until: datetime | None = None,
    territory: Annotated[
        str | None, Query(max_length=64, pattern=PRINTABLE, description="e.g. uk")
    ] = None,
    airs_at: Annotated[
        datetime | None,
        Query(description="With territory: may air then (no zone: the territory's)."),
    ] = None,
    cursor: Annotated[int, Query(ge=0, description="`next_cursor` of the page before.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """The catalogue: assets with their verdict in force, filtered, by pages. Follow
    `next_cursor` until it is null (a page may hold fewer items than `limit`)."""
    if (territory is None) != (airs_at is None):
        raise Problem(422, "invalid", "territory and airs_at go together",
                      errors=[{"field": "airs_at" if airs_at is None else "territory",
                               "message": "give both or neither"}])  # fmt: skip
    wanted = AssetFilter(
        verdict=verdict, review=review, tag=tag, ruleset=ruleset, rule=rule, name=name,
        scanned_since=utc(scanned_since), scanned_until=utc(scanned_until),
        territory=territory, airs_at=airs_at,
    )  # fmt: skip
    page = list_assets(resources(request).store(), wanted, after=cursor, limit=limit)
    return {"items": page.items, "next_cursor": page.cursor}


@router.get("/{asset_id}")
def asset(asset_id: int, request: Request, caller: Reader) -> dict[str, Any]:
    """One asset: where it was seen, its verdict in force, each rule set's current
    decision (rules fired, rulings with who made them), its scans and its report."""
    store = resources(request).store()
    found = store.asset(asset_id)
    if found is None:
        raise Problem(404, "no-such-asset", f"no asset {asset_id}")
    current = store.current_decisions([asset_id])
    scans = store.scan_summaries(asset_id)
    reports = store.reports(asset_id)
    rulings = {name: d.ruled() for (_, name), d in current.items()}
    return {
        "id": asset_id,
        "path": found.path,
        "content_sha256": found.content_sha256,
        "verdict": combine(list(rulings.values())) if rulings else None,
        "decisions": [
            {"id": d.id, "ruleset": name, "ruleset_version": d.ruleset_version,
             "schedule": rulings[name].schedule, "tags": list(rulings[name].tags),
             "review": rulings[name].review, "fired": list(d.fired),
             "overrides": [asdict(o) for o in d.overrides],
             "url": f"/api/v1/decisions/{d.id}"}
            for (_, name), d in sorted(current.items())
        ],
        "scans": [
            {"id": sc.id, "status": sc.status, "finished_at": sc.finished_at,
             "model": sc.model_name, "weights_sha256": sc.weights_sha256,
             "error": sc.error, "photosensitivity": _flashes(sc.photosensitivity),
             "scenes": sc.scenes}
            for sc in scans
        ],
        "scenes": f"/api/v1/assets/{asset_id}/scenes",
        "report": {"path": reports[-1].path, "sha256": reports[-1].sha256}
        if reports else None,
    }  # fmt: skip


@router.get("/{asset_id}/ask")
def ask(
    asset_id: int,
    request: Request,
    caller: Reader,
    q: Annotated[
        str,
        Query(min_length=1, max_length=500, pattern=PRINTABLE, description="What to look for."),
    ],
    threshold: Annotated[float, Query(gt=0.0, lt=1.0)] = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """Does the asset show ``q``, when first, for how long: from stored frame
    embeddings with the text model alone (no video is opened)."""
    engine = resources(request)
    store = engine.store()
    if store.asset(asset_id) is None:
        raise Problem(404, "no-such-asset", f"no asset {asset_id}")
    result = ask_store(store, engine.models(), asset_id, q, threshold=threshold)
    return {
        "asset_id": result.asset_id,
        "scan_id": result.scan_id,
        "model": result.model,
        "weights_sha256": result.weights_sha256,
        "other_weights": list(result.other_weights),
        **result.answer.to_dict(),
    }


@router.get("/{asset_id}/scenes")
def scenes(asset_id: int, request: Request, caller: Reader) -> dict[str, Any]:
    """The scenes of the asset's latest completed scan: span, frames sampled inside, the
    keyframe's (blurred) picture, and more like each scene."""
    from policy_engine.store.scenes import Scenes

    store = resources(request).store()
    if store.asset(asset_id) is None:
        raise Problem(404, "no-such-asset", f"no asset {asset_id}")
    scan_id = next((s.id for s in store.asset_scans(asset_id)), None)  # the newest first
    found = Scenes(store).of_scan(scan_id) if scan_id is not None else []
    detection = store.scan(scan_id).scenes if scan_id is not None else None
    return {
        "asset_id": asset_id, "scan_id": scan_id, "detection": detection,
        "scenes": [
            {"index": sc.index, "start": sc.start, "end": sc.end, "frames": sc.frame_count,
             "keyframe": sc.keyframe,
             "thumbnail": f"/api/v1/scans/{sc.scan_id}/frames/{sc.keyframe}/thumbnail",
             "similar": f"/api/v1/scans/{sc.scan_id}/frames/{sc.keyframe}/similar?kind=scenes"}
            for sc in found
        ],
    }  # fmt: skip


def _flashes(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The photosensitivity check of a scan: verdict, failing and warning intervals and
    the worst second (the per-second series stays in the report)."""
    if stored is None:
        return None
    return {k: stored.get(k) for k in ("verdict", "intervals", "worst_second", "settings")}
