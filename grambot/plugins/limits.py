"""Which deadline each stage of a plugin gets.

Precedence, for `create` (with import and settings validation), `load`, `unload`, every tool
execution and every `execute` run of one plugin:

1. an explicit override: `register_custom_plugins(timeout_ms=…)` for the plugins that scan found,
   else the engine-wide `timeouts.overrideMs` of settings.json;
2. the manifest's `timeoutMs`;
3. the default: settings.json `timeouts.create/load/unload` (seconds) for the lifecycle stages,
   `DEFAULT_TIMEOUT_MS` (Summit's 5000 ms) for tool executions and execute runs.

A deadline that came from a millisecond value expires with "timed out after N ms".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from grambot.plugins.descriptor import PluginDescriptor
from grambot.settings import Timeouts

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "Deadline",
    "PluginDeadlines",
    "plugin_deadlines",
]

DEFAULT_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class Deadline:
    """A stage's time limit in seconds; `ms` is set when it was given in milliseconds."""

    seconds: float
    ms: int | None = None

    @classmethod
    def from_ms(cls, ms: int) -> Deadline:
        return cls(ms / 1000, ms)

    def __str__(self) -> str:
        return f"{self.ms} ms" if self.ms is not None else f"{self.seconds:g} s"


@dataclass(frozen=True, slots=True)
class PluginDeadlines:
    create: Deadline
    load: Deadline
    unload: Deadline
    tool: Deadline
    execute: Deadline
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
        one = Deadline.from_ms(ms)
        return PluginDeadlines(one, one, one, one, one, source)
    summit = Deadline.from_ms(DEFAULT_TIMEOUT_MS)
    return PluginDeadlines(
        create=Deadline(timeouts.create),
        load=Deadline(timeouts.load),
        unload=Deadline(timeouts.unload),
        tool=summit,
        execute=summit,
        source=source,
    )
