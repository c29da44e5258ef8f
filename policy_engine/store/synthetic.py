"""Stored scans made without video or model, for tests and benchmarks: assets, completed
scans, frames with given embeddings and score sets with given probabilities, written
through the same repository calls a real scan uses."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from policy_engine.analysis.scoring import Category, categories_key, category_records
from policy_engine.hashing import text_sha256
from policy_engine.store.repository import ScanFrames, ScanModel, Store

SYNTHETIC_MODEL = ScanModel(
    name="synthetic",
    path="/nonexistent/synthetic-model",
    weights_sha256="sha256:" + "0" * 64,
    device_asked="cpu",
    device_used="cpu",
    dtype="fp32",
    embed_dim=16,
    logit_scale=100.0,
)


def seed_scan(
    store: Store,
    *,
    name: str,
    categories: Sequence[Category],
    probabilities: np.ndarray,
    duration: float,
    embeddings: np.ndarray | None = None,
    model: ScanModel = SYNTHETIC_MODEL,
    interval: float = 10.0,
) -> tuple[int, int]:
    """One asset with one completed scan whose F frames are evenly spread over
    ``duration`` with these (F, K) probabilities; returns (asset id, scan id)."""
    frames = len(probabilities)
    times = np.arange(frames) * (duration / frames)
    if embeddings is None:
        dim = model.embed_dim or 16
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        embeddings = rng.standard_normal((frames, dim)).astype(np.float32)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    content = text_sha256(f"synthetic asset {name}")
    asset_id = store.record_asset(f"/synthetic/{name}.mp4", content, 1000, {"duration": duration})
    scan_id = store.start_scan(
        path=f"/synthetic/{name}.mp4",
        asset_id=asset_id,
        sampling={"mode": "fps", "fps": frames / duration, "interval": interval},
        sampling_key="sha256:synthetic",
        model=model,
        software_version="synthetic",
    )
    store.complete_scan(
        scan_id,
        model=model,
        frames=ScanFrames(
            times=times,
            embeddings=[e[None, :] for e in embeddings],
            thumbnails=[None] * frames,
            window_start=0.0,
            window_end=duration,
        ),
        timings={},
        decoding={},
    )
    store.save_score_sets(
        categories_key(categories),
        category_records(categories),
        {scan_id: np.asarray(probabilities, dtype=np.float32)},
    )
    return asset_id, scan_id


def labelled_probabilities(
    labels: Sequence[int], categories: int, strength: float = 0.9
) -> np.ndarray:
    """(F, K) probabilities where frame f is labelled ``labels[f]`` with ``strength``."""
    probs = np.full((len(labels), categories), (1 - strength) / (categories - 1), np.float32)
    probs[np.arange(len(labels)), labels] = strength
    return probs
