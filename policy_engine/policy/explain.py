"""A rule set in plain words, for editors and reviewers. Pure."""

from __future__ import annotations

from policy_engine.policy import model as m
from policy_engine.policy.territory import earliest_slot
from policy_engine.policy.thresholds import format_fraction, format_seconds


def describe_condition(condition: m.Condition) -> str:
    if isinstance(condition, m.Clause):
        fmt = format_fraction if condition.metric in m.FRACTION_METRICS else format_seconds
        words = m.METRIC_WORDS[condition.metric].format(t=fmt(condition.threshold))
        return f"{condition.category} {words}"
    if isinstance(condition, m.CheckClause):
        return f"the {condition.check} check comes out {condition.result} or worse"
    if isinstance(condition, m.NotOf):
        return f"it is not the case that {describe_condition(condition.part)}"
    joiner = " and " if isinstance(condition, m.AllOf) else " or "
    parts = [describe_condition(p) for p in condition.parts]
    return parts[0] if len(parts) == 1 else "(" + joiner.join(parts) + ")"


def describe_outcome(outcome: m.Outcome) -> str:
    parts = []
    if outcome.schedule:
        parts.append(f"schedule at least {outcome.schedule}")
    if outcome.tags:
        parts.append("tag " + ", ".join(outcome.tags))
    if outcome.review:
        parts.append("require human review")
    if outcome.warning:
        parts.append(f'on-air warning "{outcome.warning}"')
    return "; ".join(parts)


def explain(ruleset: m.RuleSet) -> str:
    lines = [f"Rule set {ruleset.name} (version {ruleset.version or '-'}), {ruleset.sha256[:19]}…"]
    if ruleset.description:
        lines.append(f"  {ruleset.description}")
    lines.append("")
    lines.append("Categories looked for:")
    for c in ruleset.categories:
        kind = " (null: absorbs frames that match nothing else)" if c.null else ""
        lines.append(f"  {c.name}{kind}: " + "; ".join(f'"{p}"' for p in c.prompts))
    for c in ruleset.xclip:
        lines.append(
            f"  {c.name} (X-CLIP, per window of video): " + "; ".join(f'"{p}"' for p in c.prompts)
        )
    for c in ruleset.detectors:
        d = c.detector
        assert d is not None
        area = f", boxes of at least {d.min_area:.0%} of the picture" if d.min_area else ""
        hidden = ", pixelated in every picture shown" if d.hide else ""
        lines.append(
            f"  {c.name} (detector {d.model}): {', '.join(d.classes)} at confidence"
            f" {d.min_confidence:.0%} or more{area}{hidden}"
        )
    lines.append("")
    lines.append("Rules (the most restrictive schedule of all rules that fire applies):")
    for rule in ruleset.rules:
        ref = f" [{rule.reference}]" if rule.reference else ""
        lines.append(f"  {rule.id}{ref}")
        if rule.description:
            lines.append(f"    {rule.description}")
        lines.append(f"    if {describe_condition(rule.when)}")
        lines.append(f"    then {describe_outcome(rule.then)}")
    lines.append("")
    lines.append(f"Schedule levels, least restrictive first: {' < '.join(ruleset.levels)}")
    for territory in ruleset.territories:
        spans = []
        for level in ruleset.levels:
            slot = earliest_slot(level, ruleset.levels, territory)
            spans.append(f"{level}: {slot.window or slot.earliest}")
        lines.append(f"  {territory.name} ({territory.timezone}): " + "; ".join(spans))
    lines.append(
        f"Near misses: rules within {format_fraction(ruleset.near_miss_margin)} of a threshold"
        " are reported for review."
    )
    if ruleset.tests:
        lines.append(f"Test cases: {len(ruleset.tests)} (run `policy-engine rules test`).")
    return "\n".join(lines)
