import pytest

from policy_engine.policy.thresholds import (
    format_clock,
    parse_clock,
    parse_fraction,
    parse_seconds,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5%", 0.05),
        ("0.05", 0.05),
        (0.05, 0.05),
        ("12.5 %", 0.125),
        (0, 0.0),
        (1, 1.0),
        ("100%", 1.0),
    ],
)
def test_share_forms_have_one_meaning(text: object, value: float) -> None:
    assert parse_fraction(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (5, "did you mean 5%"),
        (150, "out of range"),
        ("150%", "at most 100%"),
        (-0.1, "out of range"),
        ("five percent", "not a share"),
        (True, "not a share"),
    ],
)
def test_share_out_of_range_or_malformed(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fraction(text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("3s", 3.0), ("1.5 s", 1.5), ("00:00:03", 3.0), (2, 2.0), ("250ms", 0.25)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_seconds(text) == pytest.approx(seconds)


def test_clock_times() -> None:
    assert parse_clock("21:00") == 1260 and parse_clock("05:30") == 330
    assert format_clock(330) == "05:30"
    for bad in ("25:00", "21:60", "9pm", 2100):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_clock(bad)
