"""`InProcessGeneration`: one load of an instance whose code runs in this process.

It holds what one load made: its own import namespace (`grambot.instances.<id>__<n>`), its
registrar (whose registrations are guarded, grambot.containment.guards), the tasks and timers
its code started, the settings model, the object `create` returned, its runtime helpers
(env/http/cache/vault) and the connectors it started. It implements the generation contract
(grambot.core.generation); a process-isolated instance's child runs one too
(grambot.isolation.child).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from grambot.config.settings import InstanceConfig
from grambot.containment.allowlist import module_guard
from grambot.containment.limits import Deadline
from grambot.containment.loader import LoaderSnapshot, PluginNamespace
from grambot.containment.stages import Progress, run_stage
from grambot.containment.tracking import TaskFailureReporter, wait_for_threads
from grambot.contract.api import InstanceEvents, InstanceInfo, PluginApi
from grambot.contract.context import PluginRuntime, cache_namespace
from grambot.contract.definition import Plugin, ignored_keys, migrate_settings, validate_settings
from grambot.contract.durable import DurableHandles
from grambot.contract.entry import read_definition
from grambot.core.generation import NOT_CREATED, GenerationBase, Services, contained, engine_handles
from grambot.errors import PluginNotFound, RegistrationError
from grambot.secrets.store import InstanceSecrets

__all__ = ["InProcessGeneration", "validated_settings"]

logger = logging.getLogger("grambot.instance")


class InProcessGeneration(GenerationBase):
    """What one load of an instance made in this process; dropped whole when it unloads."""

    def __init__(
        self, services: Services, config: InstanceConfig, on_task_failure: TaskFailureReporter
    ) -> None:
        descriptor = services.catalog.get(config.plugin_id)
        if descriptor is None:
            raise PluginNotFound(config.plugin_id, config.instance_id, services.catalog.ids())
        instance_id = config.instance_id
        self.services = services
        self.config = config
        self.descriptor = descriptor
        self.namespace = PluginNamespace(
            instance_id,
            descriptor.folder,
            package_name=descriptor.package_name,
            import_hook=module_guard(descriptor, instance_id),
        )
        handles = engine_handles(services, config, descriptor, on_task_failure, self.namespace.name)
        self.deadlines = handles.deadlines
        self.health = handles.health
        self.tasks = handles.tasks
        self.context = handles.context
        self.registrar = handles.registrar
        self.definition: Plugin | None = None
        self.settings: Any = None  # the validated settings model
        self.migrated: tuple[int, int] | None = None  # (from, to): migrated in memory
        self.api: PluginApi | None = None
        self.events: InstanceEvents | None = None
        self.plugin_object: Any = NOT_CREATED
        self.runtime: PluginRuntime | None = None  # its http client closes on unload
        self.started: list[Any] = []  # connectors started, in order
        self.durable: DurableHandles | None = None  # its api.store/inbox/schedule
        self.ignored: tuple[str, ...] = ()  # settings keys its schema drops (misspelt, likely)

    # -- loading, step by step -------------------------------------------------------------

    async def import_and_validate(
        self, progress: Progress, *, create: bool, snapshot: LoaderSnapshot | None = None
    ) -> None:
        """Import the entry, read its `plugin`, validate the settings; and, when `create` and
        the plugin's `create` is sync, create too, in the same worker-thread hand-off (one
        deadline, the create deadline, covers the three). `snapshot`: the import reads the
        plugin's files as its batch of loads sees them (grambot.containment.loader)."""
        config, descriptor = self.config, self.descriptor

        def prepare() -> tuple[Plugin, Any, tuple[int, int] | None, Any]:
            module = self.namespace.import_entry(descriptor.entry_path, snapshot)
            definition = read_definition(module, descriptor.attribute)
            del module
            settings, migrated = validated_settings(definition, config, progress)
            if migrated is None:  # keys a migration renamed are the migration's business
                self.ignored = tuple(ignored_keys(definition.settings_schema, config.settings))
            if not create or inspect.iscoroutinefunction(definition.create):
                return definition, settings, migrated, NOT_CREATED
            progress.stage = "create"
            api = self._make_api(settings)
            return definition, settings, migrated, definition.create(api)

        (
            self.definition,
            self.settings,
            self.migrated,
            self.plugin_object,
        ) = await run_stage(
            prepare,
            pool=self.services.stage_pool,
            instance_id=config.instance_id,
            stage="import",
            deadline=Deadline.after(self.deadlines.create),
            context=self.context,
            progress=progress,
        )

    async def create(self, progress: Progress) -> None:
        assert self.definition is not None
        api = self._make_api(self.settings)
        self.plugin_object = await self.stage(
            self.definition.create, "create", self.deadlines.create, api, progress=progress
        )

    async def call(self, hook: str, progress: Progress) -> None:
        """The plugin object's optional `load`/`unload` hook (sync or async)."""
        progress.stage = hook
        method = getattr(self.plugin_object, hook, None)
        if callable(method):
            limit = self.deadlines.load if hook == "load" else self.deadlines.unload
            await self.stage(method, hook, limit, progress=progress)

    async def run_check(self, progress: Progress) -> str:
        """The plugin's `check(api)` hook, if it has one: what it said (grambot check)."""
        definition = self.definition
        hook = definition.check if definition is not None else None
        if hook is None:
            return "loaded (the plugin has no check hook)"
        progress.stage = "check"
        result: Any = await self.stage(
            hook, "check", self.deadlines.load, self.api, progress=progress
        )
        return "" if result is None else str(result)

    async def validate(self, config: InstanceConfig) -> tuple[Any, tuple[int, int] | None]:
        """`config`'s settings migrated and validated by this generation's plugin (no import):
        the check before an in-place reconfigure. Raises as loading would."""
        assert self.definition is not None
        definition, progress = self.definition, Progress("settings migration")
        return await self.stage(  # type: ignore[no-any-return]
            validated_settings,
            "settings validation",
            self.deadlines.create,
            definition,
            config,
            progress,
            progress=progress,
        )

    def reconfigured(
        self, config: InstanceConfig, settings: Any, migrated: tuple[int, int] | None
    ) -> None:
        self.config, self.settings, self.migrated = config, settings, migrated
        if self.api is not None:
            self.api.settings = settings

    def _make_api(self, settings: Any) -> PluginApi:
        services, config = self.services, self.config
        data_dir = services.data_root / config.instance_id  # created on first use
        info = InstanceInfo(config.instance_id, config.plugin_id, config.enabled)
        self.runtime = PluginRuntime(
            instance=info,
            manifest=self.descriptor,
            secrets=services.secrets,
            cache=services.cache,
            data_dir=data_dir,
        )
        self.events = InstanceEvents(services.events, config.plugin_id, config.instance_id)
        if services.durable is not None:
            if self.durable is not None:
                self.durable.close()
            namespace = cache_namespace(self.descriptor, config.instance_id)
            self.durable = services.durable.handles(config.instance_id, namespace, self.context)
        self.api = PluginApi(
            instance=info,
            settings=settings,
            engine_settings=services.engine_settings,
            registrar=self.registrar,
            secrets=InstanceSecrets(services.secrets, config.instance_id),
            events=self.events,
            data_dir=data_dir,
            runtime=self.runtime,
            health=self.health,
            durable=self.durable,
            request_stop=functools.partial(services.request_stop, config.instance_id),
        )
        return self.api

    # -- the one teardown ------------------------------------------------------------------

    async def teardown(self, *, call_unload: bool, redact: Callable[[str], str]) -> None:
        """Undo everything this generation did, each step contained, in this order: intake
        (its connectors stop), the plugin's own unload, registrations and events (later ones
        refused), tasks and callbacks, http, threads (reported: they cannot be stopped),
        modules. Interrupted (the engine cancelled it), it still releases everything it can
        without waiting before it lets the cancellation through."""
        try:
            await self._teardown(call_unload, redact)
        except BaseException:
            self.abandon()
            raise

    async def _teardown(self, call_unload: bool, redact: Callable[[str], str]) -> None:
        iid = self.instance_id
        while self.started:
            connector = getattr(self.started.pop(), "wrapped", None)
            stop = getattr(connector, "stop", None)
            if callable(stop):
                step = self.stage(stop, "connector stop", self.deadlines.unload)
                await contained(iid, "connector stop", step, redact)
        if call_unload:
            await contained(iid, "unload", self.call("unload", Progress("unload")), redact)
        self._close_doors()
        grace = min(1.0, self.deadlines.unload.seconds)
        deadline = time.monotonic() + grace
        self.tasks.cancel_timers()
        leftover = await self.tasks.cancel_all(grace=grace)
        if leftover:
            logger.warning(
                "instance %s: tasks still running after cancellation: %s", iid, ", ".join(leftover)
            )
        if self.runtime is not None:
            await contained(iid, "closing api.http", self._close_runtime(), redact)
        threads = await wait_for_threads(self.namespace.name, deadline)
        if threads:
            logger.warning(
                "instance %s: threads still running its code after unload (threads cannot be "
                "stopped from outside; the plugin must end them in unload()): %s",
                iid,
                ", ".join(threads),
            )
        self.namespace.unload()

    def _close_doors(self) -> None:
        """No registration, unregistration or event of this load is accepted any more."""
        try:
            self.registrar.close()
        except RegistrationError as exc:  # a registry entry it no longer owns: never fatal
            logger.error("instance %s: %s", self.instance_id, exc)
        if self.events is not None:
            self.events.close()
        if self.durable is not None:  # api.store/inbox refuse from now on; its jobs pause
            self.durable.close()

    def abandon(self) -> None:
        """Release at once, without waiting, what is left of this load (an interrupted load or
        unload): registrations, events, tasks and callbacks cancelled, modules forgotten."""
        self._close_doors()
        self.tasks.abandon()
        self.namespace.unload()

    def discard(self) -> None:
        """Forget a generation that was prepared but will not load (none of its code ran
        but its modules' top level)."""
        self.abandon()

    async def _close_runtime(self) -> None:
        assert self.runtime is not None
        async with asyncio.timeout(self.deadlines.unload.seconds):
            await self.runtime.aclose()


def validated_settings(
    definition: Plugin, config: InstanceConfig, progress: Progress
) -> tuple[Any, tuple[int, int] | None]:
    """The entry's settings migrated to the plugin's settings version, then validated by its
    schema; and (from, to) when a migration happened (in memory: the file is never written)."""
    where = f"{config.json_path}.settings"
    data, migrated = config.settings, None
    if config.settings_version != definition.settings_version:
        progress.stage = "settings migration"
        data = migrate_settings(
            definition, config.settings, config.settings_version, config.json_path
        )
        migrated = (config.settings_version, definition.settings_version)
    progress.stage = "settings validation"
    return validate_settings(definition.settings_schema, data, where), migrated
