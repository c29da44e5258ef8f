"""Search the archive: "which trailers show a person smoking?" over every stored frame (or
scene) of every asset's current scan, from stored embeddings.

The query is a unit vector from the text tower (a description), the image tower (an
uploaded picture, framed as scans frame theirs), their normalised weighted sum, or a
stored frame ("more like this"); no stored video is ever decoded again. Only embeddings
made with the query's weights (hash) are searched, and the answer says how many assets'
current scans were made with others. A re-scan supersedes an asset's earlier scans: only
each asset's latest completed scan is searched.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from policy_engine.analysis.scenes import unit_rows
from policy_engine.errors import ConfigError, PolicyEngineError
from policy_engine.policy.evaluate import combine
from policy_engine.search import DEFAULT_LIMIT, DEFAULT_WEIGHT, MAX_LIMIT, open_index
from policy_engine.store.search import FRAMES, KINDS, SCENES, CurrentScan, SearchRows

__all__ = ["DEFAULT_LIMIT", "DEFAULT_WEIGHT", "MAX_LIMIT", "Hit", "SearchRequest", "search"]


@dataclass(frozen=True)
class SearchRequest:
    text: str | None = None
    image: bytes | None = None  # an encoded picture (JPEG, PNG, ...)
    like: tuple[int, int] | None = None  # (scan id, frame index): more like this frame
    weight: float = DEFAULT_WEIGHT
    kind: str = FRAMES  # frames | scenes
    asset_ids: tuple[int, ...] | None = None
    verdict: str | None = None  # the level in force, e.g. post-watershed
    since: datetime | None = None  # current scans finished since
    limit: int = DEFAULT_LIMIT

    def check(self) -> None:
        given = [self.text is not None, self.image is not None, self.like is not None]
        if self.text is not None and not self.text.strip():
            raise ConfigError("search for something: the text is empty")
        if not any(given):
            raise ConfigError("search needs a text, an image (--image) or a frame (--like)")
        if self.like is not None and any(given[:2]):
            raise ConfigError("--like searches from a stored frame alone; drop the text or image")
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError(f"--weight must be between 0 and 1, got {self.weight}")
        if self.kind not in KINDS:
            raise ConfigError(f"search kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ConfigError(f"--limit must be between 1 and {MAX_LIMIT}, got {self.limit}")


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    asset_id: int
    path: str
    scan_id: int
    kind: str
    frame: int  # the frame's index; for a scene, its keyframe's
    time: float  # the frame's time; for a scene, its start
    end: float | None = None  # a scene's end
    scene: int | None = None  # a scene's index

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SearchResult:
    hits: list[Hit]
    weights_sha256: str
    backend: str
    kind: str
    searched_assets: int  # current scans made with these weights that the filters kept
    other_weights: dict[str, int] = field(default_factory=dict)  # weights -> assets
    index: dict[str, Any] = field(default_factory=dict)


def search(store: Any, models: Any, settings: Any, request: SearchRequest) -> SearchResult:
    request.check()
    query, weights = query_vector(store, models, request)
    current = SearchRows(store).current_scans()
    others: dict[str, int] = {}
    for scan in current:
        if scan.weights_sha256 != weights:
            others[scan.weights_sha256] = others.get(scan.weights_sha256, 0) + 1
    allowed = _filtered(store, [s for s in current if s.weights_sha256 == weights], request)
    index = open_index(store, settings.search_backend, request.kind, weights, settings.search_cache)
    extra = 1 if request.like is not None and request.kind == FRAMES else 0
    matches = index.search(query, request.limit + extra, np.array(sorted(allowed), np.int64))
    hits = _hits(store, request.kind, matches, allowed)
    if extra:  # more like this frame: not the frame itself
        hits = [h for h in hits if (h.scan_id, h.frame) != request.like][: request.limit]
        hits = [replace(h, rank=rank) for rank, h in enumerate(hits, start=1)]
    return SearchResult(
        hits=hits,
        weights_sha256=weights,
        backend=settings.search_backend,
        kind=request.kind,
        searched_assets=len(allowed),
        other_weights=others,
        index=index.describe(),
    )


def update_indexes(store: Any, settings: Any, outcomes: Any) -> list[str]:
    """After a batch of scans: add the new rows to the persisted HNSW or pgvector index
    now, so that the next search need not (the exact cache catches up at query time).
    Returns problems in words; an index that cannot be updated never fails the batch."""
    if settings.search_backend not in ("hnsw", "pgvector"):
        return []
    scanned = [o.scan_id for o in outcomes if o.status == "scanned" and o.scan_id is not None]
    if not scanned:
        return []
    problems = []
    weights = {store.scan(scan_id).weights_sha256 for scan_id in scanned}
    for weight in sorted(weights):
        for kind in KINDS:
            try:
                open_index(store, settings.search_backend, kind, weight, settings.search_cache)
            except (PolicyEngineError, OSError) as exc:
                problems.append(
                    f"the {settings.search_backend} {kind} index was not updated: {exc}"
                )
    return problems


# -- the query -----------------------------------------------------------------------------
def query_vector(store: Any, models: Any, request: SearchRequest) -> tuple[np.ndarray, str]:
    """The query's unit vector and the weights it was made with."""
    if request.like is not None:
        scan_id, index = request.like
        found = SearchRows(store).frame_vector(scan_id, index)
        if found is None:
            raise ConfigError(f"--like {scan_id}:{index}: scan {scan_id} has no frame {index}")
        return found
    weights = models.checkpoint().weights_sha256  # reads the hash, loads no weights
    parts: list[np.ndarray] = []
    shares: list[float] = []
    if request.text is not None:
        checkpoint = models.checkpoint()
        encoder = models.prompt_encoder(weights, checkpoint.name, checkpoint.path)
        parts.append(encoder.embed_texts([request.text], keep=False)[0])  # a user's words
        shares.append(request.weight if request.image is not None else 1.0)
    if request.image is not None:
        parts.append(image_vector(models.embedder(), request.image))
        shares.append(1.0 - request.weight if request.text is not None else 1.0)
    combined = sum(share * unit_rows(part) for share, part in zip(shares, parts))
    if not np.linalg.norm(combined) > 0:
        raise ConfigError("--weight leaves nothing of the query (text and image cancel out)")
    return unit_rows(np.asarray(combined)), weights


def image_vector(embedder: Any, data: bytes) -> np.ndarray:
    """An uploaded picture, letterboxed to the model's square as scans frame theirs."""
    from PIL import Image, UnidentifiedImageError

    from policy_engine.media.framing import Framing, apply_plan, plan_framing

    try:
        with Image.open(io.BytesIO(data)) as opened:
            picture = opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ConfigError(f"the image could not be read as a picture ({exc})") from None
    size = embedder.image_input.size
    plan = plan_framing(
        picture.width, picture.height, size, Framing.LETTERBOX,
        pad_value=embedder.image_input.pad_value,
    )  # fmt: skip
    scaled = picture.resize((plan.scaled_width, plan.scaled_height), Image.Resampling.BOX)
    pixels = apply_plan(plan, np.asarray(scaled, dtype=np.uint8))
    return unit_rows(embedder.embed_images(pixels).mean(axis=0))


# -- which scans -----------------------------------------------------------------------------
def _filtered(store: Any, current: list[CurrentScan], request: SearchRequest) -> dict[int, Any]:
    """Current scans of these weights that the filters keep, by scan id."""
    kept = [
        s
        for s in current
        if (request.asset_ids is None or s.asset_id in request.asset_ids)
        and (request.since is None or s.finished_at >= request.since)
    ]
    if request.verdict is not None:
        rulings: dict[int, list[Any]] = {}
        assets = [s.asset_id for s in kept]
        for first in range(0, len(assets), 500):  # IN lists well under every database's limit
            for (asset_id, _), decision in store.current_decisions(
                assets[first : first + 500]
            ).items():
                rulings.setdefault(asset_id, []).append(decision.ruled())
        kept = [
            s for s in kept
            if s.asset_id in rulings and combine(rulings[s.asset_id])["schedule"] == request.verdict
        ]  # fmt: skip
    return {s.scan_id: s for s in kept}


def _hits(store: Any, kind: str, matches: list[Any], scans: dict[int, Any]) -> list[Hit]:
    details = SearchRows(store).details(kind, [m.id for m in matches])
    hits = []
    for rank, match in enumerate(matches, start=1):
        scan_id, index, start, end, keyframe = details[match.id]
        scan = scans[scan_id]
        hits.append(
            Hit(
                rank=rank, score=round(match.score, 6), asset_id=scan.asset_id, path=scan.path,
                scan_id=scan_id, kind=kind, frame=keyframe if kind == SCENES else index,
                time=start, end=end if kind == SCENES else None,
                scene=index if kind == SCENES else None,
            )
        )  # fmt: skip
    return hits
