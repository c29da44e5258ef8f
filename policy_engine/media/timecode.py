"""Timecodes and durations: formatting for people, parsing what editors write. Pure."""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_UNIT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h)\s*$", re.IGNORECASE)
_CLOCK_RE = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")


def format_timecode(seconds: float) -> str:
    """``HH:MM:SS.mmm`` (millisecond precision, rounded, never negative)."""
    if not math.isfinite(seconds):
        raise ValueError(f"cannot format a non-finite time: {seconds!r}")
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def parse_duration(text: str | int | float) -> float:
    """Seconds from ``3``, ``2.5``, ``"3s"``, ``"1.5 s"``, ``"250ms"``, ``"2min"``,
    ``"00:00:03"``, ``"01:02.5"`` (MM:SS) or ``"1:00:00"``.

    Raises ValueError with the accepted forms when the text is none of them.
    """
    if isinstance(text, bool):
        raise ValueError(f"a duration must be a number of seconds, not {text!r}")
    value = float(text) if isinstance(text, (int, float)) else _parse_duration_text(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a duration must be a finite number of seconds >= 0, got {text!r}")
    return value


def _parse_duration_text(text: str) -> float:
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        pass
    unit = _UNIT_RE.match(stripped)
    if unit:
        return float(unit.group(1)) * _DURATION_UNITS[unit.group(2).lower()]
    clock = _CLOCK_RE.match(stripped)
    if clock:
        hours = int(clock.group(1) or 0)
        minutes = int(clock.group(2))
        secs = float(clock.group(3))
        if minutes >= 60 or secs >= 60:
            raise ValueError(f"{text!r}: minutes and seconds must be below 60")
        return hours * 3600 + minutes * 60 + secs
    raise ValueError(
        f"{text!r} is not a duration; write seconds (3, 1.5), a unit (3s, 1.5 s, 250ms, 2min)"
        " or a clock time (00:00:03, 01:02.5)"
    )
