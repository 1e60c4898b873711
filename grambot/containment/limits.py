"""Which deadline each stage of a plugin gets.

Precedence, for `create` (with import and settings validation), `load`, `unload`, every tool
execution and every `execute` run of one plugin:

1. an explicit override: `register_custom_plugins(timeout_ms=…)` for the plugins that scan found,
   else the engine-wide `timeouts.overrideMs` of settings.json;
2. the manifest's `timeoutMs`;
3. the default: settings.json `timeouts.create/load/unload` (seconds) for the lifecycle stages,
   `DEFAULT_TIMEOUT_MS` (Summit's 5000 ms) for tool executions and execute runs.

A deadline that came from a millisecond value expires with "timed out after N ms".

These are `Limit`s (durations). A stage runs under a `Deadline`, the absolute moment it must be
done by, made from its limit when the stage is asked for (grambot.containment.stages).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

from grambot.config.descriptor import PluginDescriptor
from grambot.config.settings import Timeouts
from grambot.errors import StageTimeout

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "NEVER",
    "Deadline",
    "Limit",
    "PluginDeadlines",
    "plugin_deadlines",
]

DEFAULT_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class Limit:
    """How long a stage may take, in seconds; `ms` is set when it was given in milliseconds
    (messages then say "timed out after 300 ms")."""

    seconds: float
    ms: int | None = None

    @classmethod
    def from_ms(cls, ms: int) -> Limit:
        return cls(ms / 1000, ms)

    def __str__(self) -> str:
        return f"{self.ms} ms" if self.ms is not None else f"{self.seconds:g} s"


@dataclass(frozen=True, slots=True)
class Deadline:
    """The moment a stage must be done by: an absolute `time.monotonic()` value (the event
    loop's clock), fixed when the stage is asked for (trio's `move_on_at`), whatever the stage
    then waits for. `limit` is how long it was given (for messages)."""

    at: float
    limit: Limit

    @classmethod
    def after(cls, limit: Limit) -> Deadline:
        """The deadline `limit` from now."""
        return cls(time.monotonic() + limit.seconds, limit)

    def remaining(self) -> float:
        """Seconds left (0 once it passed; inf for NEVER)."""
        return max(0.0, self.at - time.monotonic())

    def passed(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) > self.at

    def expired(self, instance_id: str, stage: str) -> StageTimeout:
        """The error of `stage` of `instance_id` having run past this deadline."""
        return StageTimeout(instance_id, stage, self.limit.seconds, ms=self.limit.ms)

    def __str__(self) -> str:
        return str(self.limit)


NEVER = Deadline(math.inf, Limit(math.inf))  # calls bounded by their caller's own deadline


@dataclass(frozen=True, slots=True)
class PluginDeadlines:
    """The limits of one plugin's stages; each call makes its `Deadline` from one of them."""

    create: Limit
    load: Limit
    unload: Limit
    tool: Limit
    execute: Limit
    source: str  # "override", "engine", "manifest" or "default": where the value came from


def plugin_deadlines(
    descriptor: PluginDescriptor | None,
    timeouts: Timeouts,
    override_ms: int | None = None,
) -> PluginDeadlines:
    """The deadlines of `descriptor`'s stages (see the module docstring for the order)."""
    ms, source = override_ms, "override"
    if ms is None:
        ms, source = timeouts.override_ms, "engine"
    if ms is None and descriptor is not None:
        ms, source = descriptor.timeout_ms, "manifest"
    return _deadlines(timeouts, ms, source if ms is not None else "default")


@functools.lru_cache(maxsize=64)
def _deadlines(timeouts: Timeouts, ms: int | None, source: str) -> PluginDeadlines:
    # Memoized: a thousand instances share a handful of (immutable) deadline sets.
    if ms is not None:
        one = Limit.from_ms(ms)
        return PluginDeadlines(one, one, one, one, one, source)
    summit = Limit.from_ms(DEFAULT_TIMEOUT_MS)
    return PluginDeadlines(
        create=Limit(timeouts.create),
        load=Limit(timeouts.load),
        unload=Limit(timeouts.unload),
        tool=summit,
        execute=summit,
        source=source,
    )
