"""Capped exponential backoff with jitter for instances whose failure may pass by waiting.

The delay before attempt n (n = 1 for the first retry) is
`min(maxDelay, initialDelay * 2 ** (n - 1))`, scaled by a random factor in
`[1 - jitter, 1 + jitter]` and capped again at `maxDelay`. Settings key:

    "retry": {"initialDelay": 1, "maxDelay": 300}

(seconds; both > 0). An invalid `retry` key is reported as a problem and the defaults apply.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grambot.errors import Problem

__all__ = ["RetryPolicy", "retry_policy_from"]


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
        spread = 1.0 - self.jitter + 2.0 * self.jitter * rand()
        return min(self.cap, base * spread)


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
    raw = engine_settings.get("retry")
    if raw is None:
        return RetryPolicy(), []
    if not isinstance(raw, Mapping):
        return RetryPolicy(), [Problem(file, "retry", "retry must be an object", repr(raw))]
    problems: list[Problem] = []
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
