import pytest

from policy_engine.media.timecode import format_timecode, parse_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "00:00:00.000"),
        (3.0006, "00:00:03.001"),
        (61.25, "00:01:01.250"),
        (3725.5, "01:02:05.500"),
    ],
)
def test_format_timecode(seconds: float, text: str) -> None:
    assert format_timecode(seconds) == text


def test_format_timecode_never_negative_and_rejects_nan() -> None:
    assert format_timecode(-0.0004) == "00:00:00.000"
    with pytest.raises(ValueError):
        format_timecode(float("nan"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3s", 3.0),
        ("1.5 s", 1.5),
        ("250ms", 0.25),
        ("2min", 120.0),
        ("00:00:03", 3.0),
        ("01:02.5", 62.5),
        ("1:00:00", 3600.0),
        ("4", 4.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "3 parsecs", "-2", "00:61:00", True, ""])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)  # type: ignore[arg-type]


def test_parse_duration_error_lists_accepted_forms() -> None:
    with pytest.raises(ValueError, match=r"00:00:03"):
        parse_duration("three seconds")
