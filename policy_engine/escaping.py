"""Text from outside (file names, reviewers' words, error messages that quote them) shown
on one line: control characters are written as escapes, so a name with a newline cannot
split a log line or a table row, nor forge one."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, line/paragraph separators and bidirectional overrides (which
# can make a line read differently from what it holds).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible_controls(text: str) -> str:
    r"""``text`` with each control character as its Python escape (``\n``, ``\x1b``)."""
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
