"""Waiting before a retry: the one backoff and the one reading of how long a service asks.

`RetryPolicy` is the capped exponential backoff with jitter of everything that retries:
instances whose failure may pass by waiting, scheduled jobs, `grambot.kit.http` and the
built-ins (telegram's polling and sends). The delay before attempt n (n = 1 for the first
retry) is `min(cap, initial * factor ** (n - 1))`, scaled by a random factor in
`[1 - jitter, 1 + jitter]` and capped again; `jitter=0` gives the plain doubling, `cap=inf` an
uncapped one. The engine's settings key:

    "retry": {"initialDelay": 1, "maxDelay": 300}

(seconds; both > 0). An invalid `retry` key is reported as a problem and the defaults apply.

`retry_after` reads a service's "wait this long" (a `Retry-After` header in seconds or as an
HTTP date, Telegram's `retry_after`, a timedelta) and `retry_after_header` the headers that
carry it; anything unreadable is None, never an exception: a garbage header must not turn a
rate limit into a crash.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grambot.errors import Problem, object_at

__all__ = [
    "MAX_RETRY_AFTER",
    "RetryPolicy",
    "retry_after",
    "retry_after_header",
    "retry_policy_from",
]

# No service sensibly asks for more than a day; a bigger ask is read as a day, so timers and
# messages stay finite (every caller gives up long before: its own limit is minutes).
MAX_RETRY_AFTER = 86_400.0


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 1.0
    cap: float = 300.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        exponent = min(max(attempt, 1) - 1, 64)  # 2**64 already dwarfs any sane cap
        base = min(self.cap, self.initial * self.factor**exponent)
        if not self.jitter:
            return base
        spread = 1.0 - self.jitter + 2.0 * self.jitter * rand()
        return min(self.cap, base * spread)


def retry_after(
    value: object, *, unit: float = 1.0, now: float | None = None, cap: float = MAX_RETRY_AFTER
) -> float | None:
    """Seconds to wait from `value`: a number or numeric text (in `unit` seconds), a timedelta,
    or an HTTP date (`now`: the clock, for tests); at least 0, at most `cap`; None when
    `value` is missing or unreadable (never raises)."""
    seconds: float | None
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int | float):
        seconds = float(value) * unit
    elif isinstance(value, str | bytes):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        seconds = _number(text)
        seconds = seconds * unit if seconds is not None else _until(text, now)
    else:
        return None
    if seconds is None or math.isnan(seconds):
        return None
    return min(cap, max(0.0, seconds))


def retry_after_header(headers: Any, *, now: float | None = None) -> float | None:
    """The wait `headers` ask for: `retry-after-ms` (OpenAI's and Anthropic's), else
    `Retry-After`; None when neither is readable. `headers`: anything with `.get(name)`."""
    try:
        millis, seconds = headers.get("retry-after-ms"), headers.get("retry-after")
    except Exception:  # a headers object that cannot even be asked: nothing asked
        return None
    from_millis = retry_after(millis, unit=0.001, now=now) if millis is not None else None
    if from_millis is not None:
        return from_millis
    return retry_after(seconds, now=now) if seconds is not None else None


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


def _until(text: str, now: float | None) -> float | None:
    """Seconds from `now` to the HTTP date `text` (negative when past); None if not a date."""
    import email.utils  # only a date needs it

    try:
        moment = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000": HTTP dates are UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp() - (time.time() if now is None else now)


def _seconds(raw: Mapping[str, Any], key: str, default: float) -> tuple[float, str | None]:
    if key not in raw:
        return default, None
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default, f"retry.{key} must be a number of seconds"
    if not 0 < value < float("inf"):
        return default, f"retry.{key} must be a number greater than 0"
    return float(value), None


def retry_policy_from(
    engine_settings: Mapping[str, Any], file: Path | None = None
) -> tuple[RetryPolicy, list[Problem]]:
    """The policy of a settings file's `retry` key, and the problems found in it."""
    raw, problems = object_at(engine_settings, "retry", file)
    if problems:
        return RetryPolicy(), problems
    initial, error = _seconds(raw, "initialDelay", RetryPolicy.initial)
    if error:
        problems.append(Problem(file, "retry.initialDelay", error, repr(raw["initialDelay"])))
    cap, error = _seconds(raw, "maxDelay", RetryPolicy.cap)
    if error:
        problems.append(Problem(file, "retry.maxDelay", error, repr(raw["maxDelay"])))
    if not problems and cap < initial:
        problems.append(
            Problem(file, "retry.maxDelay", "retry.maxDelay must be ≥ initialDelay", repr(cap))
        )
    if problems:
        return RetryPolicy(), problems
    return RetryPolicy(initial=initial, cap=cap), []
