"""What a rule set is, once loaded: plain frozen dataclasses (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from policy_engine.analysis.scoring import Category

DEFAULT_LEVELS = ("unrestricted", "post-watershed", "not-for-broadcast")

# Metric keys an editor writes, and what each compares.
SHARE_ABOVE = "coverage_above"
SHARE_BELOW = "coverage_below"
SECONDS_ABOVE = "seconds_above"
LONGEST_RUN_ABOVE = "longest_run_above"
FIRST_SEEN_BEFORE = "first_seen_before"
METRICS = (SHARE_ABOVE, SHARE_BELOW, SECONDS_ABOVE, LONGEST_RUN_ABOVE, FIRST_SEEN_BEFORE)
FRACTION_METRICS = (SHARE_ABOVE, SHARE_BELOW)

METRIC_WORDS = {
    SHARE_ABOVE: "covers more than {t} of the running time",
    SHARE_BELOW: "covers less than {t} of the running time",
    SECONDS_ABOVE: "is on screen for more than {t} in total",
    LONGEST_RUN_ABOVE: "is on screen for more than {t} without a break",
    FIRST_SEEN_BEFORE: "first appears before {t}",
}


@dataclass(frozen=True)
class Clause:
    """One comparison on one category's coverage."""

    category: str
    metric: str
    threshold: float  # a fraction 0..1 for coverage, seconds otherwise
    line: int = 0


# Checks measured on every frame (not by the model), with their results from best to worst.
PHOTOSENSITIVITY = "photosensitivity"
CHECKS: dict[str, tuple[str, ...]] = {PHOTOSENSITIVITY: ("pass", "warning", "fail")}
CHECK_METRIC = "result"


@dataclass(frozen=True)
class CheckClause:
    """A condition on a check's result: it holds when the check came out at ``result``
    or worse (``{check: photosensitivity, result: warning}`` holds for a fail too)."""

    check: str
    result: str
    line: int = 0

    @property
    def rank(self) -> int:
        return CHECKS[self.check].index(self.result)


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class NotOf:
    part: Condition


Condition = Union[Clause, CheckClause, AllOf, AnyOf, NotOf]  # noqa: UP007 - runtime alias


@dataclass(frozen=True)
class Outcome:
    schedule: str | None = None
    tags: tuple[str, ...] = ()
    review: bool = False
    warning: str | None = None


@dataclass(frozen=True)
class Rule:
    id: str
    when: Condition
    then: Outcome
    description: str = ""
    reference: str = ""
    line: int = 0


@dataclass(frozen=True)
class Territory:
    """When each schedule level may air: ``windows[level] = (start, end)`` as minutes after
    local midnight; a window may cross midnight (21:00-05:30)."""

    name: str
    timezone: str
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleTest:
    """An editor's test case: coverage numbers in, the expected decision out."""

    name: str
    duration: float
    coverage: dict[str, dict[str, float]]
    expect: dict[str, Any]
    source: str  # "file:line" of the case
    margin: float | None = None
    checks: dict[str, str] = field(default_factory=dict)  # e.g. photosensitivity: fail


@dataclass(frozen=True)
class RuleSet:
    name: str
    version: str
    description: str
    categories: tuple[Category, ...]  # measured by CLIP against their prompts
    rules: tuple[Rule, ...]
    levels: tuple[str, ...] = DEFAULT_LEVELS
    detectors: tuple[Category, ...] = ()  # measured by object detectors (``detector``)
    xclip: tuple[Category, ...] = ()  # measured per window of video by X-CLIP
    # a decision that fires or nearly fires on a category whose second opinion (a
    # detector's ``second_opinion_for``) disagrees far requires review
    review_on_disagreement: bool = False
    territories: tuple[Territory, ...] = ()
    sampling: dict[str, Any] = field(default_factory=dict)
    near_miss_margin: float = 0.25
    tests: tuple[RuleTest, ...] = ()
    path: str = ""
    text: str = ""  # the exact text the hash covers
    sha256: str = ""

    def level_rank(self, level: str) -> int:
        return self.levels.index(level)

    def category(self, name: str) -> Category:
        return next(c for c in self.all_categories if c.name == name)

    @property
    def all_categories(self) -> tuple[Category, ...]:
        """CLIP's categories, then the detectors', then X-CLIP's."""
        return (*self.categories, *self.detectors, *self.xclip)

    @property
    def second_opinions(self) -> tuple[Category, ...]:
        """The categories not measured by CLIP per frame: joined to its scores."""
        return (*self.detectors, *self.xclip)
