"""Categories used when neither --category nor --rules is given, and the null category
added when a user's categories have none (so that frames matching none of theirs have a
lane of their own)."""

from __future__ import annotations

from policy_engine.analysis.scoring import DEFAULT_NULL_PROMPTS, Category

# the null class a rule set without one is measured against, named
NULL_CATEGORY = Category(name="other", prompts=DEFAULT_NULL_PROMPTS, null=True)

DEFAULT_CATEGORIES: tuple[Category, ...] = (
    Category(
        "violence",
        ("a photo of people fighting", "a photo of a person being shot", "a bloody wound"),
    ),
    Category(
        "weapons",
        ("a photo of a gun", "a photo of a person holding a knife", "an explosion"),
    ),
    Category(
        "computer",
        ("a photo of a computer", "a photo of a laptop screen", "a person typing on a keyboard"),
    ),
    NULL_CATEGORY,
)


def with_null_category(categories: list[Category]) -> tuple[list[Category], bool]:
    """The categories, plus the default null category if none is null (and whether added)."""
    if any(c.null for c in categories):
        return categories, False
    if any(c.name == NULL_CATEGORY.name for c in categories):
        return categories, False
    return [*categories, NULL_CATEGORY], True
