"""Rule sets read together: a category name that measures differently in two of them.

Each category is measured against its own set's null class (``analysis.scoring``), so
"violence" has one number per asset only where every set gives it the same prompts and
the same null prompts. Where they differ, the report shows it twice, once per set; an
editor would rather know before.
"""

from __future__ import annotations

from collections.abc import Sequence

from policy_engine.analysis.scoring import measurement_key, null_prompts
from policy_engine.policy.model import RuleSet


def measurement_conflicts(rulesets: Sequence[RuleSet]) -> list[str]:
    """One line per category name measured differently by the sets that use it."""
    seen: dict[str, tuple[RuleSet, str]] = {}  # name -> first set using it, its key
    found = []
    for ruleset in rulesets:
        for category in ruleset.categories:
            if category.null:
                continue
            key = measurement_key(category, ruleset.categories)
            first = seen.setdefault(category.name, (ruleset, key))
            if first[1] == key:
                continue
            other = first[0]
            mine = next(c for c in other.categories if c.name == category.name)
            differs = (
                "its prompts differ"
                if mine.prompts != category.prompts
                else "the sets' null prompts differ"
                f" ({', '.join(null_prompts(other.categories))} against"
                f" {', '.join(null_prompts(ruleset.categories))})"
            )
            found.append(
                f"category {category.name!r} measures differently in {other.name}"
                f" ({other.path}) and {ruleset.name} ({ruleset.path}): {differs}. The report"
                " shows it once per set; give it the same prompts and null prompts in both"
                " to measure it once."
            )
    return found
