"""The generation contract: what an `Instance` holds of one load, wherever its code runs.

An `Instance` (grambot.core.instance) owns at most one current `Generation`: what one load
made, dropped whole when it unloads. Two kinds implement the Protocol below, and the core
knows only the Protocol:

    InProcessGeneration   grambot.core.inprocess: the plugin's own import namespace here
    ProcessGeneration     grambot.isolation.remote: a child process runs the plugin; the
                          engine holds proxies of what it registered

`grambot.core.loading` picks between them (`new_generation`) and runs the load sequence once
(`bring_up`), for load, reload and check. What both kinds keep on the engine's side is made by
`engine_handles` (deadlines, health, tasks, guarded registrar), and a teardown step of either
is run by `contained`. `Services` is what the engine lends every generation; it is frozen, and
what changes over time (catalog, timeouts, engine settings, retry policy) is read through
`Applied`, which the Engine alone replaces.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from grambot.config.catalog import PluginCatalog
from grambot.config.descriptor import PluginDescriptor
from grambot.config.settings import InstanceConfig, Timeouts
from grambot.containment.boundary import describe, engine_cancelled
from grambot.containment.guards import (
    GuardedConnector,
    GuardedImageProvider,
    GuardedProvider,
    GuardedTool,
)
from grambot.containment.limits import Deadline, Limit, PluginDeadlines, plugin_deadlines
from grambot.containment.loader import LoaderSnapshot
from grambot.containment.stages import Progress, StagePool, run_stage
from grambot.containment.tracking import InstanceTasks, TaskFailureReporter, instance_context
from grambot.contract.api import PluginApi
from grambot.contract.context import CacheBackend
from grambot.contract.durable import DurableHandles, DurableServices
from grambot.contract.health import InstanceHealth
from grambot.contract.registrar import PluginRegistrar
from grambot.core.failures import Failure
from grambot.events.event import PluginEventQueue
from grambot.masking import MASK
from grambot.registries import Registries
from grambot.retry import RetryPolicy
from grambot.secrets.store import SecretsStore

__all__ = [
    "NOT_CREATED",
    "Applied",
    "EngineHandles",
    "Generation",
    "GenerationBase",
    "Isolation",
    "OnLost",
    "Services",
    "contained",
    "engine_handles",
]

logger = logging.getLogger("grambot.instance")

NOT_CREATED: Any = object()  # the import step left an async create() to the event loop


class Generation(Protocol):
    """One load of an instance: its live handles, and the steps that make and undo them. The
    Instance decides which steps to run and what state follows."""

    config: InstanceConfig
    descriptor: PluginDescriptor
    deadlines: PluginDeadlines
    health: InstanceHealth
    registrar: PluginRegistrar
    settings: Any  # the validated settings model (a marker where the child holds it)
    migrated: tuple[int, int] | None  # (from, to): migrated in memory
    ignored: tuple[str, ...]  # settings keys its schema drops (misspelt, likely)
    api: PluginApi | None
    plugin_object: Any  # NOT_CREATED until `create` ran
    started: list[Any]  # connectors started, in order
    durable: DurableHandles | None  # its api.store/inbox/schedule

    @property
    def instance_id(self) -> str: ...

    @property
    def created(self) -> bool: ...

    async def import_and_validate(
        self, progress: Progress, *, create: bool, snapshot: LoaderSnapshot | None = None
    ) -> None:
        """Import the entry, read its `plugin`, validate the settings (and, when `create` and
        the plugin's `create` is sync, create too): one deadline, the create deadline."""
        ...

    async def create(self, progress: Progress) -> None: ...

    async def call(self, hook: str, progress: Progress) -> None:
        """The plugin object's optional `load`/`unload` hook."""
        ...

    async def stage(
        self,
        fn: Callable[..., Any],
        stage: str,
        limit: Limit,
        *args: Any,
        progress: Progress | None = None,
    ) -> Any:
        """`fn(*args)` as this instance's code, done within `limit` from now."""
        ...

    async def validate(self, config: InstanceConfig) -> tuple[Any, tuple[int, int] | None]:
        """`config`'s settings migrated and validated by this load's plugin (no import)."""
        ...

    def reconfigured(
        self, config: InstanceConfig, settings: Any, migrated: tuple[int, int] | None
    ) -> None:
        """The plugin accepted `config` in place: its settings are these from now on."""
        ...

    async def run_check(self, progress: Progress) -> str:
        """The plugin's `check(api)` hook on this load (grambot check); what it said."""
        ...

    async def teardown(self, *, call_unload: bool, redact: Callable[[str], str]) -> None:
        """Undo everything this load did, each step contained; interrupted, it still releases
        what it can without waiting before it lets the cancellation through."""
        ...

    def abandon(self) -> None:
        """Release at once, without waiting, what is left of this load."""
        ...

    def discard(self) -> None:
        """Forget a load that was prepared but will not load."""
        ...


OnLost = Callable[[Generation, Failure], None]  # a load's process ended unasked


class Isolation(Protocol):
    """Where an instance's code runs (grambot.isolation.backend.ProcessIsolation): the one seam
    between the core and process isolation."""

    def generation(
        self,
        services: Services,
        config: InstanceConfig,
        on_task_failure: TaskFailureReporter,
        on_lost: OnLost,
    ) -> Generation | None:
        """A generation that runs `config` elsewhere, or None to load it in this process."""
        ...

    def status(self, instance_id: str, generation: Generation | None) -> dict[str, Any]: ...

    async def prestart(self, configs: Iterable[InstanceConfig], services: Services) -> None:
        """Start now what loading these entries elsewhere will need (so the first such load
        does not wait for it)."""
        ...


@dataclass(frozen=True)
class Applied:
    """What the engine applied last and every next load reads: the Engine alone replaces it
    (on `apply` and on a catalog rescan); nothing else writes it."""

    catalog: PluginCatalog = field(default_factory=PluginCatalog)
    timeouts: Timeouts = field(default_factory=Timeouts)
    timeout_overrides: Mapping[str, int] = field(default_factory=dict)  # plugin id -> ms
    engine_settings: Mapping[str, Any] = field(default_factory=dict)
    retry_policy: RetryPolicy | None = None  # None: a failure stays `failed` until an edit


@dataclass(frozen=True)
class Services:
    """What the engine lends every instance. Frozen: what changes is read through `applied`."""

    registries: Registries
    events: PluginEventQueue
    secrets: SecretsStore
    cache: CacheBackend
    data_root: Path
    applied: Callable[[], Applied]  # what the engine applied last, from its one owner
    on_change: Callable[[], None] = lambda: None
    # (instance id, reason, unless other connectors) -> stopping? (Engine.request_stop)
    request_stop: Callable[[str, str, bool], bool] = lambda instance_id, reason, sole: False
    load_order: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    durable: DurableServices | None = None  # api.store / api.inbox / api.schedule (issue 16)
    isolation: Isolation | None = None  # None: every instance runs in this process
    # the workers of its instances' sync stages (the Engine's own; a pool of its own by default)
    stage_pool: StagePool = field(default_factory=StagePool)

    @property
    def catalog(self) -> PluginCatalog:
        return self.applied().catalog

    @property
    def timeouts(self) -> Timeouts:
        return self.applied().timeouts

    @property
    def timeout_overrides(self) -> Mapping[str, int]:
        return self.applied().timeout_overrides

    @property
    def engine_settings(self) -> Mapping[str, Any]:
        return self.applied().engine_settings

    @property
    def retry_policy(self) -> RetryPolicy | None:
        return self.applied().retry_policy


class GenerationBase:
    """What the in-process and the isolated generation share: their identity, and a stage
    run as the instance's code in its context (grambot.containment.stages)."""

    config: InstanceConfig
    services: Services
    context: contextvars.Context
    plugin_object: Any

    @property
    def instance_id(self) -> str:
        return self.config.instance_id

    @property
    def created(self) -> bool:
        return self.plugin_object is not NOT_CREATED

    async def stage(
        self,
        fn: Callable[..., Any],
        stage: str,
        limit: Limit,
        *args: Any,
        progress: Progress | None = None,
    ) -> Any:
        """`fn(*args)` as this instance's code, done within `limit` from now."""
        return await run_stage(
            fn,
            *args,
            pool=self.services.stage_pool,
            instance_id=self.instance_id,
            stage=stage,
            deadline=Deadline.after(limit),
            context=self.context,
            progress=progress,
        )


@dataclass(frozen=True)
class EngineHandles:
    """What the engine keeps of every load, wherever its code runs."""

    deadlines: PluginDeadlines
    health: InstanceHealth
    tasks: InstanceTasks  # its tasks and timers (cancelled at unload)
    context: contextvars.Context  # what runs as the instance's code runs in it
    registrar: PluginRegistrar  # registry entries guarded (grambot.containment.guards)


def engine_handles(
    services: Services,
    config: InstanceConfig,
    descriptor: PluginDescriptor,
    on_task_failure: TaskFailureReporter,
    namespace: str | None = None,
) -> EngineHandles:
    """The engine's handles of one load of `config` (`namespace`: its modules' package, when
    they are imported in this process)."""
    instance_id = config.instance_id
    deadlines = plugin_deadlines(
        descriptor, services.timeouts, services.timeout_overrides.get(descriptor.id)
    )
    health = InstanceHealth(
        lambda text: MASK.redact_instance(services.secrets, instance_id, text), services.on_change
    )

    def task_failed(instance_id: str, what: str, exc: BaseException) -> None:
        # a background task or loop callback of this load crashed: the instance is unhealthy
        # (and it is logged). A closure, not a method: contexts of finished tasks may outlive
        # the generation and must not pin it (nor the plugin's objects).
        health.error(exc, f"{what} crashed")
        on_task_failure(instance_id, what, exc)

    tasks = InstanceTasks(instance_id, on_failure=task_failed)
    context = instance_context(tasks, namespace)
    wrap = functools.partial(_guard, instance_id, deadlines.tool, context, services.stage_pool)
    registrar = PluginRegistrar(instance_id, services.registries, wrap=wrap)
    return EngineHandles(deadlines, health, tasks, context, registrar)


async def contained(instance_id: str, what: str, step: Any, redact: Callable[[str], str]) -> None:
    """Await one teardown step; its failure is logged, never raised (shutdown excepted)."""
    try:
        await step
    except BaseException as exc:
        if engine_cancelled(exc):
            raise
        logger.error("instance %s: %s failed: %s", instance_id, what, redact(describe(exc)))


def _guard(
    instance_id: str,
    tool_limit: Limit,
    context: contextvars.Context,
    pool: StagePool,
    kind: str,
    item: Any,
) -> Any:
    """What the registry holds for `item` (grambot.containment.guards)."""
    if kind == "tools":
        return GuardedTool(item, instance_id, tool_limit, context, pool)
    if kind == "inference":
        return GuardedProvider(item, instance_id, context)
    if kind == "images":
        return GuardedImageProvider(item, instance_id, context)
    return GuardedConnector(item, instance_id, context)
