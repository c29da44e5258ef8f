"""Zero-shot scoring: frame embeddings x prompt embeddings -> category probabilities.

Each category is measured against the null class alone ("one against null"): per frame,
a softmax at CLIP's logit scale over the category's prompts and the null prompts, each
side weighed by the mean of its prompts' exponentials, not their sum (so a category does
not gain by having more prompts than the null class, nor lose by having fewer); the
category's probability is the share its side takes, and the frame *shows* it where that
is more than one half (it describes the frame better than "nothing in particular").
So a category's numbers depend on its own prompts and the null prompts only, never on
which other categories sit beside it in a rule set: the same category measures the same
in every rule set with the same null class, a category added to a set changes nothing
already measured, and a frame may show several categories at once (a gun in a fight).

The null class is the rule set's null categories' prompts (``DEFAULT_NULL_PROMPTS`` for
a set that declares none). A null category is shown where nothing else is (the best
matching one, where a set has several); its probability column is what the strongest
category leaves (``1 - max p``), split between null categories by each one's share
against all null prompts (strongest crop, renormalised).

Frames analysed as several crops (``tiles`` framing) take, per category, the maximum over
crops: an object on one side of the picture is not diluted by the empty other side.

``LEGACY_MEASURE`` names the earlier reading (one softmax over every prompt of a set,
each frame labelled with its most probable category): score sets stored that way are
still read that way, so a decision made on them keeps showing the numbers it was made on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policy_engine.analysis.detections import DetectorSpec
from policy_engine.hashing import text_sha256

XCLIP = "xclip"  # a category's model: X-CLIP, per window of video
MEASURE = "one-vs-null/1"  # how probabilities are made now: part of every score set's key
LEGACY_MEASURE = "softmax-all/0"  # before: one softmax over all of a set's prompts
SHOWN_AT = 0.5  # a frame shows a category whose probability against null exceeds this
# What a category must beat in a set without a null category of its own.
DEFAULT_NULL_PROMPTS: tuple[str, ...] = (
    "a photo of something else",
    "an ordinary everyday scene",
    "a blank screen",
)
NOTHING = -1  # the label of a frame that shows nothing, in a set without a null category


@dataclass(frozen=True)
class Category:
    """A category measured by CLIP against its prompts, or (``detector``) by an object
    detector's boxes (analysis/detections.py): never both."""

    name: str
    prompts: tuple[str, ...]
    null: bool = False
    detector: DetectorSpec | None = None
    # "xclip": its prompts are scored per window of video by X-CLIP (analysis/windows.py),
    # not per frame by CLIP
    model: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a category needs a name")
        if self.model not in ("", XCLIP):
            raise ValueError(f"category {self.name!r}: model must be xclip or left out")
        if self.model == XCLIP and (self.null or self.detector is not None):
            raise ValueError(f"category {self.name!r}: an X-CLIP category has prompts, no null")
        if self.detector is not None:
            if self.prompts or self.null:
                raise ValueError(
                    f"category {self.name!r} is measured by a detector: it has no prompts and"
                    " is not null"
                )
        elif not self.prompts:
            raise ValueError(f"category {self.name!r} has no prompts")


@dataclass(frozen=True)
class FrameScores:
    """Per-frame category probabilities (F, K), what each frame shows (F, K) and its
    dominant label (F,) for K categories."""

    categories: tuple[Category, ...]
    times: np.ndarray  # (F,) presentation times, seconds
    probabilities: np.ndarray  # (F, K)
    labels: np.ndarray  # (F,) the most probable category shown (NOTHING: none shown)
    shown: np.ndarray  # (F, K) bool: the frame shows the category
    measure: str = MEASURE

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]

    def label_names(self) -> list[str | None]:
        names = self.category_names
        return [names[i] if i != NOTHING else None for i in self.labels]


def null_prompts(categories: Sequence[Category]) -> tuple[str, ...]:
    """What every category of the set is measured against."""
    found = tuple(p for c in categories if c.null for p in c.prompts)
    return found or DEFAULT_NULL_PROMPTS


def flatten_prompts(categories: Sequence[Category]) -> tuple[list[str], np.ndarray]:
    """Every prompt to embed, in order, and for each the index of its category
    (``NOTHING`` for the default null prompts of a set without a null category)."""
    prompts: list[str] = []
    owner: list[int] = []
    for index, category in enumerate(categories):
        prompts.extend(category.prompts)
        owner.extend([index] * len(category.prompts))
    if not any(c.null for c in categories):
        prompts.extend(DEFAULT_NULL_PROMPTS)
        owner.extend([NOTHING] * len(DEFAULT_NULL_PROMPTS))
    return prompts, np.asarray(owner, dtype=np.int64)


def categories_key(categories: Sequence[Category], measure: str = MEASURE) -> str:
    """A fingerprint of what scoring depends on: how it measures, and names, prompts,
    null flags, in order. Probabilities stored under one key are valid for any category
    set with that key."""
    records = [[c.name, list(c.prompts), c.null] for c in categories]
    if measure == LEGACY_MEASURE:  # the fingerprint score sets were stored under before
        canonical = json.dumps(records, ensure_ascii=False)
    else:
        canonical = json.dumps(
            {"measure": measure, "categories": records, "null": list(null_prompts(categories))},
            ensure_ascii=False,
        )
    return text_sha256(canonical)


def measurement_key(category: Category, categories: Sequence[Category]) -> str:
    """What one category's numbers depend on (its prompts and its set's null prompts, in
    any order: the measure takes their means): two categories with the same key measure
    the same on the same frames."""
    if category.detector is not None:  # its detector's boxes, whatever sits beside it
        return text_sha256(json.dumps(["detector", category.detector.key()], sort_keys=True))
    if category.model == XCLIP:
        canonical_x = [XCLIP, sorted(category.prompts), sorted(null_prompts(categories))]
        return text_sha256(json.dumps(canonical_x, ensure_ascii=False))
    canonical = [
        MEASURE, sorted(category.prompts), category.null, sorted(null_prompts(categories))
    ]  # fmt: skip
    return text_sha256(json.dumps(canonical, ensure_ascii=False))


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
    if all(c.null for c in categories):
        raise ValueError("every category is null: at least one must be something to look for")


def own_share(logits: np.ndarray, own: np.ndarray, null: np.ndarray) -> np.ndarray:
    """The share the ``own`` prompts take against the ``null`` prompts (indexes into the
    last axis of ``logits``), each side the mean of its exponentials. Shifted by the
    larger of the two maxima: exact, and it depends on these prompts' logits alone."""
    own_logits, null_logits = logits[..., own], logits[..., null]
    top = np.maximum(own_logits.max(axis=-1), null_logits.max(axis=-1))[..., None]
    mine = np.exp(own_logits - top).mean(axis=-1)
    return mine / (mine + np.exp(null_logits - top).mean(axis=-1))


def _null_split(logits: np.ndarray, owner: np.ndarray, nulls: np.ndarray) -> np.ndarray:
    """(F, N): how the null categories share the frame among themselves (each against
    all null prompts, strongest crop, renormalised)."""
    columns = [np.flatnonzero(owner == k) for k in nulls]
    everything = np.concatenate(columns)
    split = np.stack([own_share(logits, own, everything) for own in columns], axis=-1)
    strongest = split.max(axis=1)
    return strongest / strongest.sum(axis=1, keepdims=True)


def category_probabilities(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    prompt_owner: np.ndarray,
    null_flags: Sequence[bool],
    logit_scale: float,
) -> np.ndarray:
    """(F, K) probabilities from unit image embeddings (F, D) or (F, C, D) for C crops;
    ``prompt_owner`` as ``flatten_prompts`` gives it, ``null_flags`` one per category."""
    embeddings = image_embeddings
    if embeddings.ndim == 2:
        embeddings = embeddings[:, None, :]
    if embeddings.ndim != 3:
        raise ValueError(f"image embeddings must be (F, D) or (F, C, D), got {embeddings.shape}")
    owner = np.asarray(prompt_owner, dtype=np.int64)
    if text_embeddings.shape[0] != len(owner):
        raise ValueError("one text embedding per prompt is needed")
    nullish = np.asarray(null_flags, dtype=bool)
    # float64: a category's numbers must not depend on the other prompts beside it
    logits = logit_scale * np.einsum(
        "fcd,pd->fcp", embeddings.astype(np.float64), text_embeddings.astype(np.float64)
    )
    null_prompt = np.flatnonzero((owner == NOTHING) | nullish[np.maximum(owner, 0)])
    probs = np.zeros((len(embeddings), len(nullish)), dtype=np.float64)
    for k in np.flatnonzero(~nullish):
        probs[:, k] = own_share(logits, np.flatnonzero(owner == k), null_prompt).max(axis=1)
    nulls = np.flatnonzero(nullish)
    if len(nulls) and len(probs):
        left = 1.0 - probs[:, ~nullish].max(axis=1)
        probs[:, nulls] = left[:, None] * _null_split(logits, owner, nulls)
    return probs


def read_probabilities(
    probabilities: np.ndarray,
    null_flags: Sequence[bool],
    measure: str = MEASURE,
    thresholds: Sequence[float | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, shown) from (F, K) probabilities, as ``measure`` made them; a column
    with a threshold (a detector category's minimum confidence) shows where it reaches
    that, instead of where it exceeds one half."""
    probs = np.asarray(probabilities)
    count = len(probs)
    if measure == LEGACY_MEASURE:
        labels = probs.argmax(axis=1) if count else np.zeros(0, dtype=np.int64)
        shown = np.zeros(probs.shape, dtype=bool)
        shown[np.arange(count), labels] = True
        return labels, shown
    if measure != MEASURE:
        raise ValueError(f"probabilities measured as {measure!r}: this version reads {MEASURE}")
    nullish = np.asarray(null_flags, dtype=bool)
    shown = np.zeros(probs.shape, dtype=bool)
    shown[:, ~nullish] = probs[:, ~nullish] > SHOWN_AT
    for column, threshold in enumerate(thresholds or ()):
        if threshold is not None:
            shown[:, column] = probs[:, column] >= np.float32(threshold)
    anything = shown.any(axis=1)
    labels = np.full(count, NOTHING, dtype=np.int64)
    labels[anything] = np.where(shown, probs, -np.inf)[anything].argmax(axis=1)
    nulls = np.flatnonzero(nullish)
    if len(nulls) and count:
        best = nulls[probs[:, nulls].argmax(axis=1)]
        nothing = np.flatnonzero(~anything)
        labels[nothing] = best[nothing]
        shown[nothing, best[nothing]] = True
    return labels, shown


def scores_from_probabilities(
    categories: Sequence[Category],
    times: np.ndarray,
    probabilities: np.ndarray,
    measure: str = MEASURE,
) -> FrameScores:
    """FrameScores from probabilities, as float32: what the store keeps, so decisions made
    now and re-evaluations made later from stored probabilities see the same numbers."""
    probs = np.asarray(probabilities, dtype=np.float32).reshape(len(times), len(categories))
    thresholds = [c.detector.min_confidence if c.detector else None for c in categories]
    labels, shown = read_probabilities(probs, [c.null for c in categories], measure, thresholds)
    return FrameScores(
        categories=tuple(categories),
        times=np.asarray(times, dtype=np.float64),
        probabilities=probs,
        labels=labels,
        shown=shown,
        measure=measure,
    )


def score_frames(
    categories: Sequence[Category],
    times: Sequence[float] | np.ndarray,
    image_embeddings: np.ndarray | Sequence[np.ndarray],
    text_embeddings: np.ndarray,
    logit_scale: float,
) -> FrameScores:
    """Score every frame against every category (text embeddings in the order of
    ``flatten_prompts``).

    ``image_embeddings`` is (F, D), (F, C, D), or a list with one (C, D) array per frame
    when the crop count varies (it changes only if the picture's shape changes mid-stream).
    """
    validate_categories(categories)
    _, owner = flatten_prompts(categories)
    nulls = [c.null for c in categories]
    times_array = np.asarray(times, dtype=np.float64)
    if isinstance(image_embeddings, np.ndarray):
        probs = category_probabilities(image_embeddings, text_embeddings, owner, nulls, logit_scale)
    else:
        probs = np.zeros((len(image_embeddings), len(categories)))
        by_crops: dict[int, list[int]] = {}
        for index, vectors in enumerate(image_embeddings):
            by_crops.setdefault(len(vectors), []).append(index)
        for indices in by_crops.values():
            stacked = np.stack([image_embeddings[i] for i in indices])
            probs[indices] = category_probabilities(
                stacked, text_embeddings, owner, nulls, logit_scale
            )
    if len(times_array) != len(probs):
        raise ValueError(f"{len(times_array)} times for {len(probs)} frames")
    return scores_from_probabilities(categories, times_array, probs)


def join_columns(
    scores: FrameScores, categories: Sequence[Category], columns: np.ndarray
) -> FrameScores:
    """``scores`` with a column per second-opinion category appended ((F, len(categories))
    values: a detector's best confidence, X-CLIP's window probability), read again as a
    whole: a frame they show is not the null category's, and may take the dominant label.
    Scores measured the legacy way keep their own reading, with the columns beside it."""
    if not categories:
        return scores
    if len(columns) != len(scores.times):
        raise ValueError(f"columns for {len(columns)} frames, scores for {len(scores.times)}")
    probabilities = np.hstack([scores.probabilities, columns]).astype(np.float32)
    everything = (*scores.categories, *categories)
    if scores.measure == MEASURE:
        return scores_from_probabilities(everything, scores.times, probabilities)
    shown = np.stack(
        [
            columns[:, k] >= np.float32(c.detector.min_confidence)
            if c.detector
            else columns[:, k] > SHOWN_AT
            for k, c in enumerate(categories)
        ],
        axis=1,
    )
    return FrameScores(
        categories=everything,
        times=scores.times,
        probabilities=probabilities,
        labels=scores.labels,
        shown=np.hstack([scores.shown, shown]),
        measure=scores.measure,
    )
