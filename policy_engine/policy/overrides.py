"""How reviewers' overrides combine with a decision (pure: no I/O).

An override starts from the verdict in force, that is the engine's decision with every
earlier override of it applied in order, and changes only what it names: the schedule
level, or the tag set. Whatever it does not name stays as the earlier overrides left it.
Any override settles the review. The history shows each override's before and after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Ruling:
    """What is in force for one rule set (what `policy.evaluate.combine` reads)."""

    schedule: str
    tags: tuple[str, ...]
    review: bool
    warnings: tuple[str, ...]

    def overruled(self, schedule: str | None, tags: Sequence[str] | None) -> Ruling:
        """This ruling after an override: it sets the level and tags it names, keeps
        what it does not name (the ruling in force, not the engine's decision), and
        settles the review."""
        return Ruling(
            schedule=schedule or self.schedule,
            tags=tuple(tags) if tags is not None else self.tags,
            review=False,
            warnings=self.warnings,
        )


class OverrideLike(Protocol):
    schedule: str | None
    tags: Sequence[str] | None


def review_steps(
    decision: Ruling, overrides: Sequence[OverrideLike]
) -> list[tuple[Ruling, Ruling]]:
    """(in force before, in force after) for each override of a decision, in order:
    each override starts from the verdict the one before it left."""
    steps = []
    before = decision
    for override in overrides:
        after = before.overruled(override.schedule, override.tags)
        steps.append((before, after))
        before = after
    return steps


def engine_ruling(decision: Any) -> Ruling:
    """A decision (row or view) as the engine made it, before any override."""
    return Ruling(
        schedule=decision.schedule,
        tags=tuple(decision.tags),
        review=decision.review,
        warnings=tuple(decision.warnings),
    )


def ruling_in_force(decision: Any) -> Ruling:
    """A decision (row or view) with all its overrides applied in order."""
    steps = review_steps(engine_ruling(decision), decision.overrides)
    return steps[-1][1] if steps else engine_ruling(decision)
