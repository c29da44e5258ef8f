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


# -- one earliest slot per territory over several rule sets ---------------------------------
def test_the_combined_slot_is_what_every_rule_set_permits_and_names_who_decided() -> None:
    from policy_engine.policy.model import DEFAULT_LEVELS, Territory
    from policy_engine.policy.territory import DEFAULT_TERRITORIES, combined_slots

    uk, us = DEFAULT_TERRITORIES
    late_uk = Territory("UK", "Europe/London", {"post-watershed": (22 * 60, 5 * 60 + 30)})
    levels = DEFAULT_LEVELS

    def slots(*rulings):
        return {s.territory: s for s in combined_slots(rulings)}

    agree = slots(("tags", "unrestricted", levels, (uk,)), ("trailers", "unrestricted", levels, (uk, us)))
    assert (agree["UK"].earliest, agree["UK"].decided_by) == ("any time", ("tags", "trailers"))
    assert agree["US"].decided_by == ("trailers",)
    stricter = slots(("tags", "unrestricted", levels, (uk,)), ("trailers", "post-watershed", levels, (uk,)))
    assert (stricter["UK"].earliest, stricter["UK"].window) == ("21:00", "21:00-05:30")
    assert stricter["UK"].decided_by == ("trailers",)
    banned = slots(("a", "post-watershed", levels, (uk,)), ("b", "not-for-broadcast", levels, (uk,)))
    assert (banned["UK"].earliest, banned["UK"].decided_by) == ("not permitted", ("b",))
    later = slots(("a", "post-watershed", levels, (uk,)), ("b", "post-watershed", levels, (late_uk,)))
    assert (later["UK"].earliest, later["UK"].window, later["UK"].decided_by) == (
        "22:00", "22:00-05:30", ("b",)
    )
    overlap = Territory("UK", "Europe/London", {"post-watershed": (20 * 60, 4 * 60)})
    partly = slots(("a", "post-watershed", levels, (uk,)), ("c", "post-watershed", levels, (overlap,)))
    assert (partly["UK"].earliest, partly["UK"].window, partly["UK"].decided_by) == (
        "21:00", "21:00-04:00", ("a",)
    )
