"""Zero-shot scoring: frame embeddings x prompt embeddings -> category probabilities.

Per frame: a softmax over *all* prompts of *all* categories at CLIP's logit scale;
a category's probability is the sum over its prompts; the label is the most probable
category. A null category ("something else") gives frames that match nothing a place to
go, so that the real categories are not forced onto every frame.

Frames analysed as several crops (``tiles`` framing) take, per category, the maximum over
crops, renormalised to sum to one: an object on one side of the picture is not diluted by
the empty other side.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policy_engine.hashing import text_sha256


@dataclass(frozen=True)
class Category:
    name: str
    prompts: tuple[str, ...]
    null: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a category needs a name")
        if not self.prompts:
            raise ValueError(f"category {self.name!r} has no prompts")


@dataclass(frozen=True)
class FrameScores:
    """Per-frame category probabilities (F, K) and labels (F,) for K categories."""

    categories: tuple[Category, ...]
    times: np.ndarray  # (F,) presentation times, seconds
    probabilities: np.ndarray  # (F, K), rows sum to 1
    labels: np.ndarray  # (F,) index of the most probable category

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]

    def label_names(self) -> list[str]:
        names = self.category_names
        return [names[i] for i in self.labels]


def flatten_prompts(categories: Sequence[Category]) -> tuple[list[str], np.ndarray]:
    """All prompts in order, and for each the index of its category."""
    prompts: list[str] = []
    owner: list[int] = []
    for index, category in enumerate(categories):
        prompts.extend(category.prompts)
        owner.extend([index] * len(category.prompts))
    return prompts, np.asarray(owner, dtype=np.int64)


def categories_key(categories: Sequence[Category]) -> str:
    """A fingerprint of what scoring depends on: names, prompts, null flags, in order.
    Probabilities stored under one key are valid for any category set with that key."""
    canonical = json.dumps(
        [[c.name, list(c.prompts), c.null] for c in categories], ensure_ascii=False
    )
    return text_sha256(canonical)


def category_records(categories: Sequence[Category]) -> list[dict[str, object]]:
    """How a category set is recorded next to probabilities stored under its key."""
    return [{"name": c.name, "prompts": list(c.prompts), "null": c.null} for c in categories]


def validate_categories(categories: Sequence[Category]) -> None:
    if not categories:
        raise ValueError("at least one category is needed to score frames")
    names = [c.name for c in categories]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate category names: {', '.join(duplicates)}")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


def category_probabilities(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    prompt_owner: np.ndarray,
    category_count: int,
    logit_scale: float,
) -> np.ndarray:
    """(F, K) probabilities from unit image embeddings (F, D) or (F, C, D) for C crops."""
    embeddings = image_embeddings
    if embeddings.ndim == 2:
        embeddings = embeddings[:, None, :]
    if embeddings.ndim != 3:
        raise ValueError(f"image embeddings must be (F, D) or (F, C, D), got {embeddings.shape}")
    if text_embeddings.shape[0] != len(prompt_owner):
        raise ValueError("one text embedding per prompt is needed")
    logits = logit_scale * np.einsum(
        "fcd,pd->fcp", embeddings.astype(np.float32), text_embeddings.astype(np.float32)
    )
    prompt_probs = _softmax(logits)  # (F, C, P)
    per_crop = np.zeros((*prompt_probs.shape[:2], category_count), dtype=np.float64)
    np.add.at(per_crop, (slice(None), slice(None), prompt_owner), prompt_probs)
    if per_crop.shape[1] == 1:
        return per_crop[:, 0, :]
    strongest = per_crop.max(axis=1)
    return strongest / strongest.sum(axis=1, keepdims=True)


def scores_from_probabilities(
    categories: Sequence[Category], times: np.ndarray, probabilities: np.ndarray
) -> FrameScores:
    """FrameScores from probabilities, as float32: what the store keeps, so decisions made
    now and re-evaluations made later from stored probabilities see the same numbers."""
    probs = np.asarray(probabilities, dtype=np.float32).reshape(len(times), len(categories))
    return FrameScores(
        categories=tuple(categories),
        times=np.asarray(times, dtype=np.float64),
        probabilities=probs,
        labels=probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64),
    )


def score_frames(
    categories: Sequence[Category],
    times: Sequence[float] | np.ndarray,
    image_embeddings: np.ndarray | Sequence[np.ndarray],
    text_embeddings: np.ndarray,
    logit_scale: float,
) -> FrameScores:
    """Score every frame against every category (text embeddings in prompt order).

    ``image_embeddings`` is (F, D), (F, C, D), or a list with one (C, D) array per frame
    when the crop count varies (it changes only if the picture's shape changes mid-stream).
    """
    validate_categories(categories)
    _, owner = flatten_prompts(categories)
    times_array = np.asarray(times, dtype=np.float64)
    if isinstance(image_embeddings, np.ndarray):
        probs = category_probabilities(
            image_embeddings, text_embeddings, owner, len(categories), logit_scale
        )
    else:
        probs = np.zeros((len(image_embeddings), len(categories)))
        by_crops: dict[int, list[int]] = {}
        for index, vectors in enumerate(image_embeddings):
            by_crops.setdefault(len(vectors), []).append(index)
        for indices in by_crops.values():
            stacked = np.stack([image_embeddings[i] for i in indices])
            probs[indices] = category_probabilities(
                stacked, text_embeddings, owner, len(categories), logit_scale
            )
    if len(times_array) != len(probs):
        raise ValueError(f"{len(times_array)} times for {len(probs)} frames")
    return scores_from_probabilities(categories, times_array, probs)
