"""Territory windows: when a schedule level may air, and whether a planned slot is
permitted. Pure (zoneinfo from the standard library).

Levels are ordered, least restrictive first. In each territory the first level may air
at any time; a level with a window may air inside it (windows may cross midnight, e.g.
21:00-05:30); any other level may not air there at all (e.g. not-for-broadcast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo

from policy_engine.policy.model import Territory
from policy_engine.policy.thresholds import format_clock

# UK: Ofcom's 21:00 watershed, until 05:30. US: the FCC's 22:00-06:00 safe harbor
# (times of the viewer's local zone; Eastern shown here, configure per feed).
DEFAULT_TERRITORIES = (
    Territory("UK", "Europe/London", {"post-watershed": (21 * 60, 5 * 60 + 30)}),
    Territory("US", "America/New_York", {"post-watershed": (22 * 60, 6 * 60)}),
)

ANY_TIME = "any time"
NOT_PERMITTED = "not permitted"


@dataclass(frozen=True)
class Slot:
    territory: str
    earliest: str  # "any time", "21:00", or "not permitted"
    window: str | None  # "21:00-05:30" when the level is confined to a window
    timezone: str


def earliest_slot(level: str, levels: tuple[str, ...], territory: Territory) -> Slot:
    if level == levels[0]:
        return Slot(territory.name, ANY_TIME, None, territory.timezone)
    window = territory.windows.get(level)
    if window is None:
        return Slot(territory.name, NOT_PERMITTED, None, territory.timezone)
    start, end = window
    return Slot(
        territory.name,
        format_clock(start),
        f"{format_clock(start)}-{format_clock(end)}",
        territory.timezone,
    )


def slot_permitted(
    level: str, levels: tuple[str, ...], territory: Territory, when: datetime
) -> bool:
    """Whether material at ``level`` may start at ``when`` in ``territory``. A naive
    datetime is read as local time in the territory's zone."""
    if level not in levels:
        raise ValueError(f"unknown schedule level {level!r}; levels: {', '.join(levels)}")
    if level == levels[0]:
        return True
    window = territory.windows.get(level)
    if window is None:
        return False
    zone = ZoneInfo(territory.timezone)
    local = when.replace(tzinfo=zone) if when.tzinfo is None else when.astimezone(zone)
    minute = local.hour * 60 + local.minute
    start, end = window
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # crosses midnight


@dataclass(frozen=True)
class CombinedSlot:
    """One territory's earliest slot over every rule set that knows the territory: the
    times all of them permit, and which rule set(s) decided it (the one whose own slot
    is the binding one)."""

    territory: str
    earliest: str
    window: str | None
    timezone: str
    decided_by: tuple[str, ...]


_DAY = 24 * 60


_ALL_DAY, _NEVER = frozenset(range(_DAY)), frozenset[int]()


@cache
def _window_minutes(start: int, end: int) -> frozenset[int]:
    if start < end:
        return frozenset(range(start, end))
    return frozenset([*range(start, _DAY), *range(0, end)])


def _permitted_minutes(slot: Slot, territory: Territory, level: str) -> frozenset[int]:
    if slot.earliest == ANY_TIME:
        return _ALL_DAY
    if slot.earliest == NOT_PERMITTED:
        return _NEVER
    return _window_minutes(*territory.windows[level])


def _as_window(minutes: frozenset[int]) -> tuple[int, int] | None:
    """The one interval (start, end) these minutes form, crossing midnight or not."""
    if not minutes or len(minutes) == _DAY:
        return None
    starts = [m for m in minutes if (m - 1) % _DAY not in minutes]
    if len(starts) != 1:
        return None  # two separate intervals: no single window describes them
    start = starts[0]
    end = start
    while end % _DAY in minutes:
        end += 1
    return start, end % _DAY


def combined_slots(
    rulings: Sequence[tuple[str, str, tuple[str, ...], Sequence[Territory]]],
) -> list[CombinedSlot]:
    """Per territory, what may air when under every rule set at once. ``rulings``: for
    each rule set (its name, the level in force under it, its levels, its territories).
    Material may start where every rule set that knows the territory lets its level in
    force start, so the combined slot is the intersection of their permitted times; it
    is decided by the rule set(s) whose own slot is that intersection (or, where windows
    only overlap, whose window starts latest)."""
    by_territory: dict[str, list[tuple[str, Slot, frozenset[int]]]] = {}
    zones: dict[str, str] = {}
    for name, level, levels, territories in rulings:
        if level not in levels:
            continue
        for territory in territories:
            slot = earliest_slot(level, levels, territory)
            by_territory.setdefault(territory.name, []).append(
                (name, slot, _permitted_minutes(slot, territory, level))
            )
            zones.setdefault(territory.name, territory.timezone)
    combined = []
    for territory, slots in by_territory.items():
        zone = zones[territory]
        allowed = slots[0][2]
        for _, _, minutes in slots[1:]:
            allowed = allowed & minutes
        if len(allowed) == _DAY:
            combined.append(CombinedSlot(territory, ANY_TIME, None, zone,
                                         tuple(sorted(n for n, _, _ in slots))))  # fmt: skip
            continue
        binding = sorted(n for n, _, minutes in slots if minutes == allowed)
        window = _as_window(allowed)
        if not allowed or window is None:
            if not binding:  # windows that do not overlap, or overlap twice
                binding = sorted(n for n, s, _ in slots if s.earliest != ANY_TIME)
            combined.append(CombinedSlot(territory, NOT_PERMITTED, None, zone, tuple(binding)))
            continue
        start, end = window
        if not binding:  # overlapping windows: the latest start decides the earliest slot
            binding = sorted(n for n, s, _ in slots if s.earliest == format_clock(start))
        combined.append(
            CombinedSlot(
                territory, format_clock(start), f"{format_clock(start)}-{format_clock(end)}",
                zone, tuple(binding),
            )
        )  # fmt: skip
    return combined
