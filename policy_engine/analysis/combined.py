"""One reading of an asset across rule sets. Pure.

Each category is measured against its set's null class alone (see ``scoring``), so a
category with the same prompts and the same null prompts has the same numbers in every
rule set. Combining keeps one column per distinct measurement, names the rule sets that
share it, and adds one null column: the frames that show none of them. Where two sets
give one name to different measurements, both stay, told apart by their set's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policy_engine.analysis.scoring import (
    MEASURE,
    Category,
    FrameScores,
    measurement_key,
    null_prompts,
    scores_from_probabilities,
)


@dataclass(frozen=True)
class CombinedScores:
    scores: FrameScores  # one column per distinct measurement, then the null column
    sources: tuple[tuple[str, ...], ...]  # per column: the rule sets that measure it
    # (the null column: every set)
    notes: tuple[str, ...]  # where one name means two measurements


def _null_name(sets: Sequence[tuple[str, FrameScores]], taken: Sequence[Category]) -> str:
    """The sets' null category name where they agree on one, else "none of these";
    never the name of a category shown beside it."""
    names = {c.name for _, s in sets for c in s.categories if c.null}
    name = names.pop() if len(names) == 1 else "none of these"
    return name if all(c.name != name for c in taken) else f"{name} (null)"


def combine_scores(sets: Sequence[tuple[str, FrameScores]]) -> CombinedScores:
    """Combine rule sets' scores of the same frames, measured as ``MEASURE``."""
    if not sets:
        raise ValueError("nothing to combine")
    times = sets[0][1].times
    for name, scores in sets:
        if scores.measure != MEASURE or not np.array_equal(scores.times, times):
            raise ValueError(f"{name}: only scores of the same frames measured as {MEASURE}")
    keys: dict[str, int] = {}
    categories: list[Category] = []
    probabilities: list[np.ndarray] = []
    sources: list[list[str]] = []
    notes: list[str] = []
    for set_name, scores in sets:
        for index, category in enumerate(scores.categories):
            if category.null:
                continue
            key = measurement_key(category, scores.categories)
            if key in keys:
                sources[keys[key]].append(set_name)
                continue
            label = category.name
            if any(c.name == label for c in categories):
                label = f"{category.name} ({set_name})"
                notes.append(
                    f"{category.name} in {set_name} is measured with other prompts or"
                    " another null class than in the set before it: shown apart"
                )
            keys[key] = len(categories)
            categories.append(
                Category(label, category.prompts, detector=category.detector, model=category.model)
            )
            probabilities.append(scores.probabilities[:, index])
            sources.append([set_name])
    null = Category(_null_name(sets, categories), null_prompts(sets[0][1].categories), True)
    categories.append(null)
    sources.append([name for name, _ in sets])
    real = np.stack(probabilities, axis=1) if probabilities else np.zeros((len(times), 0))
    leftover = 1.0 - real.max(axis=1) if real.shape[1] else np.ones(len(times))
    # read as any scores are: each set's columns are its stored float32 numbers, so what
    # each frame shows is what that set's own reading showed
    combined = scores_from_probabilities(categories, times, np.column_stack([real, leftover]))
    return CombinedScores(combined, tuple(tuple(s) for s in sources), tuple(notes))
