"""Search the archive: frames or scenes ranked by similarity to a text, an uploaded
picture (or both), or a stored frame, from the stored embeddings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from policy_engine.errors import ConfigError
from policy_engine.search import DEFAULT_LIMIT, DEFAULT_WEIGHT, MAX_LIMIT
from policy_engine.service.deps import PRINTABLE, Reader, utc
from policy_engine.service.problems import Problem
from policy_engine.service.resources import resources

router = APIRouter(prefix="/api/v1", tags=["search"])

IMAGE_PATH = "/api/v1/search/image"
MAX_IMAGE_BYTES = 10 * 1024 * 1024

Kind = Annotated[Literal["frames", "scenes"], Query(description="Rank frames or scenes.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Assets = Annotated[list[int] | None, Query(description="Only these assets (repeatable).")]
Verdict = Annotated[
    str | None, Query(max_length=64, pattern=PRINTABLE, description="The level in force.")
]
Text = Annotated[
    str | None,
    Query(min_length=1, max_length=500, pattern=PRINTABLE, description="What to look for."),
]
Weight = Annotated[float, Query(ge=0.0, le=1.0, description="The text's share with an image.")]


@router.get("/search")
def search(
    request: Request,
    caller: Reader,
    q: Text = None,
    kind: Kind = "frames",
    asset: Assets = None,
    verdict: Verdict = None,
    since: Annotated[datetime | None, Query(description="Scanned since.")] = None,
    limit: Limit = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Frames (or scenes) of every asset's latest scan most like the text `q`. Only
    embeddings of the configured model's weights are searched; `other_weights` counts
    the assets whose latest scan used others. Each hit links its (blurred) picture."""
    if q is None or not q.strip():
        raise _invalid("q", "give the text to search for (or POST a picture to /search/image)")
    return _run(request, text=q, kind=kind, asset_ids=asset, verdict=verdict,
                since=utc(since), limit=limit)  # fmt: skip


@router.post(IMAGE_PATH.removeprefix("/api/v1"))
async def search_image(
    request: Request,
    caller: Reader,
    q: Text = None,
    weight: Weight = DEFAULT_WEIGHT,
    kind: Kind = "frames",
    asset: Assets = None,
    verdict: Verdict = None,
    since: Annotated[datetime | None, Query(description="Scanned since.")] = None,
    limit: Limit = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """The picture in the request body (JPEG, PNG, …; at most 10 MiB), alone or combined
    with the text `q` (`weight`: the text's share). Loads the image model."""
    picture = await _body(request)
    return await run_in_threadpool(
        lambda: _run(request, text=q, image=picture, weight=weight, kind=kind, asset_ids=asset,
                     verdict=verdict, since=utc(since), limit=limit)
    )  # fmt: skip


@router.get("/scans/{scan_id}/frames/{index}/similar")
def similar(
    scan_id: Annotated[int, PathParam(ge=1, le=10**15)],  # what every database's ids hold
    index: Annotated[int, PathParam(ge=0, le=10**9)],
    request: Request,
    caller: Reader,
    kind: Kind = "frames",
    asset: Assets = None,
    verdict: Verdict = None,
    limit: Limit = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """More like this stored frame (no model is loaded): frames or scenes made with the
    same weights as the frame's scan."""
    return _run(request, like=(scan_id, index), kind=kind, asset_ids=asset, verdict=verdict,
                limit=limit)  # fmt: skip


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
        raise Problem(413, "too-large", f"a picture may be at most {MAX_IMAGE_BYTES} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > MAX_IMAGE_BYTES:
            raise Problem(413, "too-large", f"a picture may be at most {MAX_IMAGE_BYTES} bytes")
    if not data:
        raise _invalid("body", "send the picture as the request body")
    return bytes(data)


def _run(request: Request, **wanted: Any) -> dict[str, Any]:
    from policy_engine.pipeline.search import SearchRequest
    from policy_engine.pipeline.search import search as search_store

    engine = resources(request)
    store = engine.store()
    like = wanted.get("like")
    if like is not None and not _has_frame(store, *like):
        raise Problem(404, "no-such-frame", f"scan {like[0]} has no frame {like[1]}")
    try:
        result = search_store(store, engine.models(), engine.settings, SearchRequest(**wanted))
    except ConfigError as exc:
        field = "body" if "image" in str(exc) else "q"
        raise _invalid(field, str(exc)) from None
    return {
        "kind": result.kind,
        "backend": result.backend,
        "weights_sha256": result.weights_sha256,
        "searched_assets": result.searched_assets,
        "other_weights": result.other_weights,
        "hits": [_hit(h) for h in result.hits],
    }


def _has_frame(store: Any, scan_id: int, index: int) -> bool:
    from policy_engine.store.search import SearchRows

    return SearchRows(store).frame_vector(scan_id, index) is not None


def _hit(hit: Any) -> dict[str, Any]:
    return {
        **hit.to_dict(),
        "asset": f"/api/v1/assets/{hit.asset_id}",
        "thumbnail": f"/api/v1/scans/{hit.scan_id}/frames/{hit.frame}/thumbnail",
        "similar": f"/api/v1/scans/{hit.scan_id}/frames/{hit.frame}/similar",
    }


def _invalid(field: str, message: str) -> Problem:
    return Problem(422, "invalid", f"{field}: {message}",
                   errors=[{"field": field, "message": message}])  # fmt: skip
