""" "Did you mean …?" for names a person typed: instance ids, plugin ids, tools, commands."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`"; did you mean 'x'?"` for the closest of `choices` (case ignored), or `""`."""
    options = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(name.lower(), options, n=1, cutoff=0.6)
    return f"; did you mean {options[close[0]]!r}?" if close else ""
