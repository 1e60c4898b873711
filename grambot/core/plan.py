"""Reconcile, the pure half: what must happen to make the instances match settings.json.

`plan(current, desired, catalog)` looks at what is (a `Current` per known instance), what the
file wants (`EngineSettings`) and which plugins exist, and returns one `Step` per instance. It
does no I/O and calls no plugin code, so every rule is unit-tested on its own
(tests/test_plan.py); `PluginManager` executes the plan.

Rules, per instance id:

* gone from the file (and not held)            REMOVE   unload if running, forget it
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
  which now exists                              LOAD
* anything else (equal as data: key order)      KEEP     a pending retry stays pending
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from grambot.core.instance import Current, InstanceState
from grambot.errors import PluginNotFound
from grambot.settings import EngineSettings, InstanceConfig

__all__ = ["Action", "Plan", "Step", "plan"]


class Action(StrEnum):
    KEEP = "keep"
    LOAD = "load"
    REPLACE = "replace"
    DISABLE = "disable"
    REMOVE = "remove"
    HOLD = "hold"
    REJECT = "reject"


@dataclass(frozen=True)
class Step:
    instance_id: str
    action: Action
    config: InstanceConfig | None = None  # the entry to apply (None for REMOVE and HOLD)
    problems: tuple[str, ...] = ()  # why it is held or rejected


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]

    def of(self, *actions: Action) -> list[Step]:
        return [s for s in self.steps if s.action in actions]

    def action_of(self, instance_id: str) -> Action | None:
        return next((s.action for s in self.steps if s.instance_id == instance_id), None)


def differs(old: InstanceConfig, new: InstanceConfig) -> bool:
    """Whether an entry changed in what the instance is made of (key order never counts)."""
    return old.plugin_id != new.plugin_id or old.settings != new.settings


def plan(current: Mapping[str, Current], desired: EngineSettings, catalog: Collection[str]) -> Plan:
    steps: list[Step] = []
    wanted = {c.instance_id: c for c in desired.instances}
    held = desired.held
    for instance_id in current:
        if instance_id in held:
            steps.append(Step(instance_id, Action.HOLD, problems=held[instance_id]))
        elif instance_id not in wanted:
            steps.append(Step(instance_id, Action.REMOVE))
    for config in desired.instances:
        steps.append(_step(current.get(config.instance_id), config, catalog))
    return Plan(tuple(steps))


def _step(now: Current | None, config: InstanceConfig, catalog: Collection[str]) -> Step:
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
            return Step(instance_id, Action.KEEP, config)
        return Step(instance_id, Action.REJECT, config, (problem,))
    if now is None or now.state is InstanceState.DISABLED:
        return Step(instance_id, Action.LOAD, config)
    if differs(now.config, config):
        return Step(instance_id, Action.REPLACE if running else Action.LOAD, config)
    if now.state is InstanceState.FAILED and now.failure_kind == "plugin-not-found":
        return Step(instance_id, Action.LOAD, config)  # its plugin has appeared
    return Step(instance_id, Action.KEEP, config)
