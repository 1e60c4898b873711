"""When a job runs next: every N seconds, a cron expression in a time zone (cronsim), or once at
a given time. Pure functions of the job's spec and a wall-clock instant (epoch seconds).

cronsim reads the expression in the job's zone: a daily 02:30 job on the night clocks spring
forward runs at 03:00 (the first minute that exists), and on the night they fall back it runs
once, at the first 02:30, as cron does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from grambot.config.timezone import zone

__all__ = ["check_cron", "next_run", "parse_at", "zone"]


def check_cron(expression: str) -> None:
    """ValueError with cronsim's reason when `expression` is not a valid 5-field cron line."""
    from cronsim import CronSim, CronSimError

    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None


def _next_cron(expression: str, tz: str | None, after: float) -> float:
    from cronsim import CronSim

    start = datetime.fromtimestamp(after, zone(tz)).replace(microsecond=0)
    return next(CronSim(expression, start)).timestamp()


def parse_at(when: Any, tz: str | None = None) -> float:
    """`when` (an aware datetime, an ISO 8601 string, or epoch seconds) as epoch seconds; a
    naive time is read in `tz` (default UTC)."""
    if isinstance(when, int | float) and not isinstance(when, bool):
        return float(when)
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"invalid time {when!r}: use ISO 8601, e.g. 2026-12-01T08:00:00+01:00"
            ) from None
    if not isinstance(when, datetime):
        raise TypeError(f"a time is a datetime, an ISO 8601 string or epoch seconds: {when!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone(tz))
    return float(when.timestamp())


def next_run(kind: str, spec: str, tz: str | None, after: float) -> float | None:
    """The first run strictly after `after` (None: an `at` job has no further run)."""
    if kind == "every":
        return after + float(spec)
    if kind == "cron":
        return _next_cron(spec, tz, after)
    return None


def describe(kind: str, spec: str, tz: str | None) -> str:
    if kind == "every":
        return f"every {timedelta(seconds=float(spec))}"
    if kind == "cron":
        return f"cron '{spec}' ({tz or 'UTC'})"
    return f"at {spec}"
