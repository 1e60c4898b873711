"""Gemini image sizes are aspect ratios: map `16:9` or `WIDTHxHEIGHT` to one it knows."""

from __future__ import annotations

import math
import re

RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
_RATIO = re.compile(r"^([1-9][0-9]*):([1-9][0-9]*)$")
_PIXELS = re.compile(r"^([1-9][0-9]*)x([1-9][0-9]*)$")


def aspect_ratio(size: str) -> str:
    """`16:9` as is (if Gemini knows it); `1920x1080` → the nearest known ratio."""
    if size in RATIOS:
        return size
    match = _RATIO.match(size) or _PIXELS.match(size)
    if match is None:
        raise ValueError(f"size must be an aspect ratio like 16:9 or WIDTHxHEIGHT (got {size!r})")
    wanted = math.log(int(match[1]) / int(match[2]))
    return min(
        RATIOS, key=lambda r: abs(math.log(int(r.split(":")[0]) / int(r.split(":")[1])) - wanted)
    )
