"""Settings of the photosensitivity (PSE) check. Pure.

Luminance thresholds are given in cd/m² for a display of ``display_peak`` cd/m² (the
guidance's 200 cd/m² reference display), so 20 cd/m² is a change of 0.1 in relative
luminance and "darker image below 160 cd/m²" is below 0.8. Red thresholds are in IRIS's
red-saturation units, (R - G - B) x 320 in linear light, which do not scale with the display.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

AREA_MODES = ("regions", "frame", "wcag-field")
WINDOW_MODES = ("time", "frames")


@dataclass(frozen=True)
class PseSettings:
    display_peak: float = 200.0  # cd/m² of the reference display
    flash_delta: float = 20.0  # cd/m²: least change that makes a transition (0.1 relative)
    dark_limit: float = 160.0  # cd/m²: the darker image must be below this (0.8 relative)
    red_delta: float = 20.0  # red-saturation units
    red_saturation: float = 0.8  # R / (R + G + B) in linear light for a saturated red
    area_threshold: float = 0.25  # share of the screen (or of the WCAG field) that matters
    # "regions": per-region changed area on a grid (default); "frame": IRIS's whole-frame
    # mean with its changed-pixel count; "wcag-field": a sliding 10-degree field.
    area: str = "regions"
    # Regions across and down. 16x9 gives square cells on 16:9 pictures, each 1/144 of
    # the screen: a quarter of the screen is 36 cells, so the measured area moves in steps
    # of under 1 %, while each cell still averages enough pixels (10x10 at 160x90, the
    # scan's size) for codec noise and grain not to look like changes. "wcag-field" uses
    # three times finer cells so that its field (a third of the width and of the height)
    # is whole cells.
    grid: tuple[int, int] = (16, 9)
    # Transitions in one window that fail: more than three flashes a second, a flash being
    # a pair of opposing transitions, as Ofcom, ITU-R BT.1702, WCAG and IRIS (whose
    # MaxTransitions is 6) count them; six transitions, three flashes, are still allowed.
    fail_transitions: int = 7
    warning_transitions: int = 4  # IRIS's MinTransitions: 4 to 6 a second is the warning level
    extended_window_s: float = 5.0
    extended_share: float = 0.8  # of the window at the warning level: extended failure
    pattern_min_pairs: int = 6  # light-dark pairs: more than five
    pattern_min_seconds: float = 0.5
    # "time": windows of real time from the frame times (default). "frames": IRIS's
    # windows of round(frame rate) frames, for reproducing IRIS.
    window: str = "time"
    frame_rate: float | None = None  # for window="frames"; None: from the first two frames
    patterns: bool = True  # spatial pattern detection (IRIS ships with it off)
    pattern_width: int = 160  # width in pixels the pattern detector works at

    def __post_init__(self) -> None:
        if self.area not in AREA_MODES:
            raise ValueError(f"area must be one of {', '.join(AREA_MODES)}, got {self.area!r}")
        if self.window not in WINDOW_MODES:
            raise ValueError(
                f"window must be one of {', '.join(WINDOW_MODES)}, got {self.window!r}"
            )
        positive = ("display_peak", "flash_delta", "dark_limit", "red_delta", "extended_window_s")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        # R / (R + G + B) of 1 would leave no red at all; the shares may be the whole
        _check_share("red_saturation", self.red_saturation, allow_one=False)
        _check_share("area_threshold", self.area_threshold, allow_one=True)
        _check_share("extended_share", self.extended_share, allow_one=True)
        grid = tuple(self.grid)
        if len(grid) != 2 or not all(isinstance(g, int) and g >= 1 for g in grid):
            raise ValueError(
                f"grid must be two positive integers (across, down), got {self.grid!r}"
            )
        object.__setattr__(self, "grid", grid)
        if not (1 <= self.warning_transitions < self.fail_transitions):
            raise ValueError("need 1 <= warning_transitions < fail_transitions")
        if self.pattern_min_pairs < 1 or self.pattern_min_seconds < 0:
            raise ValueError("pattern_min_pairs must be >= 1 and pattern_min_seconds >= 0")
        if self.pattern_width < 16:
            raise ValueError(f"pattern_width must be at least 16, got {self.pattern_width}")
        if self.frame_rate is not None and not (
            math.isfinite(self.frame_rate) and self.frame_rate > 0
        ):
            raise ValueError(f"frame_rate must be positive, got {self.frame_rate!r}")

    @property
    def flash_delta_relative(self) -> float:
        return self.flash_delta / self.display_peak

    @property
    def dark_limit_relative(self) -> float:
        return self.dark_limit / self.display_peak

    @classmethod
    def iris(cls, **changes: Any) -> PseSettings:
        """IRIS-compatible settings: whole-frame mean, frame-count windows, no patterns."""
        return replace(cls(area="frame", window="frames", patterns=False), **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["grid"] = list(self.grid)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PseSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown photosensitivity settings: {', '.join(unknown)}")
        values = dict(data)
        if "grid" in values:
            values["grid"] = tuple(values["grid"])
        return cls(**values)


def _check_share(name: str, value: object, *, allow_one: bool) -> None:
    ok = isinstance(value, (int, float)) and (0 < value < 1 or (allow_one and value == 1))
    if not ok:
        bounds = "(0, 1]" if allow_one else "(0, 1)"
        raise ValueError(f"{name} must be in {bounds}, got {value!r}")


DEFAULT_SETTINGS = PseSettings()
