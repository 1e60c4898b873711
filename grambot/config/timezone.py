"""Time zones by IANA name, as settings.json and the reminders name them."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["zone"]


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone `name` (default UTC); ValueError naming it when unknown."""
    if name is None or name in ("UTC", "Etc/UTC"):
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' or "
            "'America/New_York'"
        ) from None
