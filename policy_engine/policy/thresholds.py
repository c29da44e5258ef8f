"""Threshold values as editors write them. Pure.

Coverage thresholds: ``5%`` or ``0.05`` mean the same thing: a bare number is a
*fraction* of the running time (0 to 1), a number with ``%`` is a percentage (0 to 100%).
``5`` alone is refused (it would mean 500%): write ``5%``.
Durations: ``3`` or ``3s``, ``1.5 s``, ``250ms``, ``2min``, ``00:00:03``, ``01:02.5``.
Clock times: ``21:00``, ``05:30``.
"""

from __future__ import annotations

import math
import re

from policy_engine.media.timecode import parse_duration

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def parse_fraction(value: object) -> float:
    """A share of running time in 0..1 from ``5%``, ``0.05`` or ``0``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a share; write a percentage such as 5%")
    if isinstance(value, (int, float)):
        fraction = float(value)
        if not math.isfinite(fraction) or not 0 <= fraction <= 1:
            hint = (
                f" (did you mean {value}%?)"
                if isinstance(value, (int, float)) and 1 < value <= 100
                else ""
            )
            raise ValueError(
                f"{value!r} is out of range: a bare number is a fraction from 0 to 1{hint};"
                " or write a percentage such as 5%"
            )
        return fraction
    if isinstance(value, str):
        try:
            return parse_fraction(float(value))
        except ValueError as exc:
            if "out of range" in str(exc):
                raise
        match = _PERCENT.match(value)
        if match:
            percent = float(match.group(1))
            if percent > 100:
                raise ValueError(f"{value!r} is out of range: a share is at most 100%")
            return percent / 100
    raise ValueError(f"{value!r} is not a share; write a percentage (5%) or a fraction (0.05)")


def parse_seconds(value: object) -> float:
    """A duration in seconds (see module doc for the forms)."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return parse_duration(value)
    raise ValueError(f"{value!r} is not a duration; write 3s, 1.5 s or 00:00:03")


def parse_clock(value: object) -> int:
    """Minutes after midnight from ``HH:MM`` (00:00 to 24:00)."""
    if isinstance(value, str):
        match = _CLOCK.match(value)
        if match:
            hours, minutes = int(match.group(1)), int(match.group(2))
            if minutes < 60 and (hours < 24 or (hours == 24 and minutes == 0)):
                return hours * 60 + minutes
    raise ValueError(f"{value!r} is not a clock time; write HH:MM, e.g. 21:00")


def format_fraction(value: float) -> str:
    return f"{100 * value:.4g}%"


def format_seconds(value: float) -> str:
    return f"{value:g} s"


def format_clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
