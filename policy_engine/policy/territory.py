"""Territory windows: when a schedule level may air, and whether a planned slot is
permitted. Pure (zoneinfo from the standard library).

Levels are ordered, least restrictive first. In each territory the first level may air
at any time; a level with a window may air inside it (windows may cross midnight, e.g.
21:00-05:30); any other level may not air there at all (e.g. not-for-broadcast).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
