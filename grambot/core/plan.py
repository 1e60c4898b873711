"""Reconcile, the pure half: what must happen to make the instances match settings.json.

`plan(current, desired, catalog)` looks at what is (per known instance: its entry, state,
failure kind and load order; an `Instance` or a `Current` tuple), what the file wants
(`EngineSettings`) and which plugins exist, and returns a `Step` for each instance that changes
(and the entries it keeps as they are). It does no I/O and calls no plugin code, so every rule is
unit-tested on its own (tests/test_plan.py); `PluginManager` executes the plan. It allocates
nothing per unchanged instance: a reconcile of 1 changed entry among 1000 stays cheap.

Rules, per instance id:

* gone from the file (and not held)            REMOVE   unload if running, forget it (HOLD
                                                         while an invalid entry has no
                                                         readable instanceId: it may be it)
* its entry is invalid as written               HOLD     whatever runs keeps running as it was
* disabled                                      DISABLE  unload if running
* its plugin is unknown, and it runs            HOLD     (a misspelt pluginId stops nothing)
* its plugin is unknown, and it does not run    REJECT   `failed (plugin-not-found)`
* not running (new, disabled, failed, retrying)
  and its entry changed or it never ran         LOAD
* running, and its entry changed as data        REPLACE  the new entry is imported and its
                                                         settings validated first: only if they
                                                         pass is the old one unloaded (else HOLD)
* failed because its plugin was missing,
  which now exists, or because its load was
  cancelled (shutdown, a caller gave up)        LOAD
* anything else (equal as data: key order)      KEEP     a pending retry stays pending
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import NamedTuple, Protocol

from grambot.config.settings import EngineSettings, InstanceConfig
from grambot.core.instance import InstanceState
from grambot.errors import PluginNotFound

__all__ = ["Action", "Known", "Plan", "Step", "plan"]


class Action(StrEnum):
    KEEP = "keep"
    LOAD = "load"
    REPLACE = "replace"
    DISABLE = "disable"
    REMOVE = "remove"
    HOLD = "hold"
    REJECT = "reject"


class Known(Protocol):
    """What plan reads of an instance (`Instance` and `Current` both have it)."""

    @property
    def config(self) -> InstanceConfig: ...
    @property
    def state(self) -> InstanceState: ...
    @property
    def failure_kind(self) -> str | None: ...
    @property
    def load_seq(self) -> int: ...


class Step(NamedTuple):
    instance_id: str
    action: Action
    config: InstanceConfig | None = None  # the entry to apply (None for REMOVE and HOLD)
    problems: tuple[str, ...] = ()  # why it is held or rejected


class Plan(NamedTuple):
    steps: tuple[Step, ...]  # one per instance that changes
    kept: tuple[InstanceConfig, ...] = ()  # KEEP: entries equal as data to what is there

    def of(self, *actions: Action) -> list[Step]:
        return [s for s in self.steps if s.action in actions]

    def action_of(self, instance_id: str) -> Action | None:
        if any(c.instance_id == instance_id for c in self.kept):
            return Action.KEEP
        return next((s.action for s in self.steps if s.instance_id == instance_id), None)


def differs(old: InstanceConfig, new: InstanceConfig) -> bool:
    """Whether an entry changed in what the instance is made of (key order never counts)."""
    return (
        old.plugin_id != new.plugin_id
        or old.settings != new.settings
        or old.settings_version != new.settings_version
        or (not _same_isolation(old, new) and old.isolation_spec != new.isolation_spec)
    )


def _same_isolation(old: InstanceConfig, new: InstanceConfig) -> bool:
    """Equal isolation fields, hence an equal spec (so every field `isolation_spec` reads is
    compared here). Every edit compares every entry, and building their two spec tuples made
    that comparison twice as slow."""
    return (
        old.isolation == new.isolation
        and old.isolation_default == new.isolation_default
        and old.memory_mb == new.memory_mb
        and old.sandbox == new.sandbox
        and old.cpu_seconds == new.cpu_seconds
        and old.max_processes == new.max_processes
    )


def plan(current: Mapping[str, Known], desired: EngineSettings, catalog: Collection[str]) -> Plan:
    steps: list[Step] = []
    kept: list[InstanceConfig] = []
    held = desired.held
    wanted = {c.instance_id for c in desired.instances}
    for instance_id in current:
        if instance_id in held:
            steps.append(Step(instance_id, Action.HOLD, problems=held[instance_id]))
        elif instance_id not in wanted and desired.unidentified:
            steps.append(Step(instance_id, Action.HOLD, problems=(_maybe(desired),)))
        elif instance_id not in wanted:
            steps.append(Step(instance_id, Action.REMOVE))
    for config in desired.instances:
        step = _step(current.get(config.instance_id), config, catalog)
        if step is None:
            kept.append(config)
        else:
            steps.append(step)
    return Plan(tuple(steps), tuple(kept))


def _maybe(desired: EngineSettings) -> str:
    paths = ", ".join(desired.unidentified)
    return (
        f"not in the file as far as can be read, but {paths} has no readable instanceId and "
        "may be this instance: it keeps running until that entry is fixed"
    )


def _step(now: Known | None, config: InstanceConfig, catalog: Collection[str]) -> Step | None:
    """The step of one entry, or None to keep it as it is."""
    instance_id = config.instance_id
    if not config.enabled:
        return Step(instance_id, Action.DISABLE, config)
    running = now is not None and now.state is InstanceState.LOADED
    if config.plugin_id not in catalog:
        problem = str(PluginNotFound(config.plugin_id, instance_id, sorted(catalog)))
        if running:
            return Step(instance_id, Action.HOLD, problems=(problem,))
        unchanged = now is not None and not differs(now.config, config)
        if unchanged and now is not None and now.failure_kind == "plugin-not-found":
            return None  # rejected already
        return Step(instance_id, Action.REJECT, config, (problem,))
    if now is None or now.state is InstanceState.DISABLED:
        return Step(instance_id, Action.LOAD, config)
    if differs(now.config, config):
        return Step(instance_id, Action.REPLACE if running else Action.LOAD, config)
    if now.state is InstanceState.FAILED and now.failure_kind in ("plugin-not-found", "cancelled"):
        return Step(instance_id, Action.LOAD, config)  # its plugin appeared / its load was cut
    return None  # KEEP
