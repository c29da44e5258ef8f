from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from policy_engine.policy.model import DEFAULT_LEVELS
from policy_engine.policy.territory import DEFAULT_TERRITORIES, earliest_slot, slot_permitted

UK, US = DEFAULT_TERRITORIES
LEVELS = DEFAULT_LEVELS


def test_earliest_slots() -> None:
    assert earliest_slot("unrestricted", LEVELS, UK).earliest == "any time"
    post = earliest_slot("post-watershed", LEVELS, UK)
    assert (post.earliest, post.window) == ("21:00", "21:00-05:30")
    assert earliest_slot("post-watershed", LEVELS, US).window == "22:00-06:00"
    assert earliest_slot("not-for-broadcast", LEVELS, UK).earliest == "not permitted"


@pytest.mark.parametrize(
    ("hour", "minute", "uk", "us"),
    [
        (20, 59, False, False),
        (21, 0, True, False),
        (22, 0, True, True),
        (0, 30, True, True),
        (5, 29, True, True),
        (5, 30, False, True),
        (6, 0, False, False),
        (12, 0, False, False),
    ],
)
def test_window_crossing_midnight(hour: int, minute: int, uk: bool, us: bool) -> None:
    when = datetime(2026, 11, 21, hour, minute)  # naive: local time in the territory
    assert slot_permitted("post-watershed", LEVELS, UK, when) is uk
    assert slot_permitted("post-watershed", LEVELS, US, when) is us


def test_aware_times_are_converted_to_the_territory_zone() -> None:
    # 21:30 in London is 16:30 in New York: post-watershed in the UK, not in the US feed.
    when = datetime(2026, 11, 21, 21, 30, tzinfo=ZoneInfo("Europe/London"))
    assert slot_permitted("post-watershed", LEVELS, UK, when)
    assert not slot_permitted("post-watershed", LEVELS, US, when)
    # British Summer Time: 20:30 UTC on a July evening is 21:30 in London
    summer = datetime(2026, 7, 1, 20, 30, tzinfo=ZoneInfo("UTC"))
    assert slot_permitted("post-watershed", LEVELS, UK, summer)


def test_unrestricted_always_and_not_for_broadcast_never() -> None:
    noon = datetime(2026, 11, 21, 12, 0)
    assert slot_permitted("unrestricted", LEVELS, UK, noon)
    assert not slot_permitted("not-for-broadcast", LEVELS, UK, datetime(2026, 11, 21, 23, 0))
    with pytest.raises(ValueError, match="unknown schedule level"):
        slot_permitted("adults-only", LEVELS, UK, noon)
