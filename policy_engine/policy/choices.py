"""The one helper for "must be one of these": suggest the nearest valid word. Used by the
rule loader and by the settings file, so a typo reads the same wherever it is made.
Imports nothing but the standard library (``policy_engine.config`` uses it)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, allowed: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest of ``allowed``, or "" if none is close."""
    close = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
