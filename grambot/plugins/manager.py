"""PluginManager: makes the running instances match the enabled entries of settings.json.

Reconciles are serialized by one lock (a newer request supersedes one still waiting), so an
instance is never loaded twice. Within a reconcile, instances that went away, were disabled or
changed (plugin id or settings, compared as data) are unloaded in reverse load order, then new
and changed ones load concurrently. Each instance is independent: whatever goes wrong puts that
instance in `failed` with a typed reason and the reconcile carries on.

Loading one instance:  import entry → validate settings → create(api) → load()
under deadlines (stages.run_stage): the first three share `timeouts.create` and, when `create` is
sync, run as one call in one worker thread (a thread hand-off costs more than loading a small
plugin); an async `create` runs on the loop with what is left of that deadline. If any step
fails, what was done is undone: unload() if the instance was created, its registrations
removed, its tasks cancelled, its modules and loggers forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import itertools
import logging
import operator
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from grambot.errors import PluginNotFound, RegistrationError, StageTimeout
from grambot.plugins.api import InstanceEvents, InstanceInfo, PluginApi
from grambot.plugins.catalog import PluginCatalog
from grambot.plugins.definition import (
    DefinitionError,
    Plugin,
    SettingsInvalid,
    read_definition,
    validate_settings,
)
from grambot.plugins.events import PluginEventQueue
from grambot.plugins.loader import PluginNamespace
from grambot.plugins.loader import snapshot as loader_snapshot
from grambot.plugins.registrar import KINDS, PluginRegistrar
from grambot.plugins.stages import (
    InstanceTasks,
    Progress,
    install_task_tracking,
    instance_context,
    run_stage,
)
from grambot.registries import Registries
from grambot.secrets import InstanceSecrets, SecretsStore
from grambot.settings import EngineSettings, InstanceConfig, Timeouts

logger = logging.getLogger(__name__)

_NOT_CREATED: Any = object()  # prepare() left an async create() to the event loop


class InstanceState(StrEnum):
    DISABLED = "disabled"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"
    RETRYING = "retrying"
    UNLOADING = "unloading"


@dataclass(frozen=True)
class Failure:
    """Why an instance is not running. `recoverable`: may pass by waiting (worth a retry)."""

    kind: str
    stage: str
    message: str
    recoverable: bool
    details: str = ""  # traceback text: never the exception object, which would pin frames


@dataclass
class _Live:
    """Handles of a created (or being created) instance; dropped whole on unload."""

    namespace: PluginNamespace
    registrar: PluginRegistrar
    tasks: InstanceTasks
    context: Any
    plugin_object: Any = None


@dataclass
class InstanceRecord:
    config: InstanceConfig
    state: InstanceState
    since: float = field(default_factory=time.time)
    failure: Failure | None = None
    load_seq: int = 0
    attempt: int = 0
    next_attempt_at: float | None = None
    live: _Live | None = None


@dataclass(frozen=True)
class InstanceStatus:
    instance_id: str
    plugin_id: str
    state: InstanceState
    since: str
    error: str | None
    registrations: dict[str, list[str]]
    attempt: int = 0
    next_attempt_at: str | None = None
    failure: Failure | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "pluginId": self.plugin_id,
            "state": str(self.state),
            "error": self.error,
            "since": self.since,
            "registrations": self.registrations,
            "attempt": self.attempt,
            "nextAttemptAt": self.next_attempt_at,
        }


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


class PluginManager:
    def __init__(
        self,
        *,
        catalog: PluginCatalog,
        events: PluginEventQueue,
        registries: Registries,
        secrets: SecretsStore,
        data_root: Path,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.catalog = catalog
        self.events = events
        self.registries = registries
        self.secrets = secrets
        self.data_root = data_root
        self.timeouts = timeouts or Timeouts()
        self._records: dict[str, InstanceRecord] = {}
        self._lock = asyncio.Lock()
        self._latest: EngineSettings | None = None
        self._engine_settings: Any = {}
        self._load_seq = itertools.count(1)
        self._listeners: list[Callable[[], None]] = []

    # -- public --------------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` after every state change; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def record(self, instance_id: str) -> InstanceRecord | None:
        return self._records.get(instance_id)

    def state_of(self, instance_id: str) -> InstanceState | None:
        record = self._records.get(instance_id)
        return record.state if record is not None else None

    def loaded_ids(self) -> list[str]:
        """Loaded instances in load order."""
        loaded = [r for r in self._records.values() if r.state is InstanceState.LOADED]
        return [r.config.instance_id for r in sorted(loaded, key=lambda r: r.load_seq)]

    def statuses(self) -> list[InstanceStatus]:
        return [self._status(r) for r in self._records.values()]

    async def sync_with_settings(self, settings: EngineSettings) -> bool:
        """Reconcile with `settings`. Returns False if a newer call superseded this one."""
        self._latest = settings
        async with self._lock:
            if settings is not self._latest:
                return False
            await self._reconcile(settings)
            return True

    async def unload_all(self) -> None:
        """Unload every instance, last loaded first (shutdown)."""
        async with self._lock:
            for record in sorted(self._records.values(), key=lambda r: r.load_seq, reverse=True):
                if record.live is not None:
                    await self._unload(record)
            self._records.clear()
            self._changed()

    # -- reconcile -----------------------------------------------------------------------------

    async def _reconcile(self, settings: EngineSettings) -> None:
        install_task_tracking(asyncio.get_running_loop())
        self._engine_settings = settings.raw
        self.timeouts = settings.timeouts
        desired = {c.instance_id: c for c in settings.instances}
        held = settings.held_instance_ids

        stopping = [
            record
            for instance_id, record in self._records.items()
            if instance_id not in held
            and record.live is not None
            and _must_stop(record, desired.get(instance_id))
        ]
        for record in sorted(stopping, key=lambda r: r.load_seq, reverse=True):
            await self._unload(record)

        for instance_id in list(self._records):
            if instance_id not in desired and instance_id not in held:
                del self._records[instance_id]

        starting: list[InstanceConfig] = []
        for config in settings.instances:
            current = self._records.get(config.instance_id)
            if not config.enabled:
                self._records[config.instance_id] = InstanceRecord(config, InstanceState.DISABLED)
            elif (
                current is None
                or current.state is InstanceState.DISABLED
                or _differs(current.config, config)
            ):
                starting.append(config)
            else:
                current.config = config  # equal as data; keep the running instance
        self._changed()
        if starting:
            with loader_snapshot(), _old_heap_set_aside(len(starting)):
                await asyncio.gather(*(self._load(config) for config in starting))

    async def _load(self, config: InstanceConfig) -> None:
        instance_id = config.instance_id
        record = InstanceRecord(config, InstanceState.LOADING)
        self._records[instance_id] = record
        self._changed()
        progress = Progress("lookup")
        try:
            descriptor = self.catalog.get(config.plugin_id)
            if descriptor is None:
                raise PluginNotFound(config.plugin_id, instance_id, self.catalog.ids())
            tasks = InstanceTasks(instance_id)
            live = _Live(
                namespace=PluginNamespace(
                    instance_id, descriptor.folder, package_name=descriptor.package_name
                ),
                registrar=PluginRegistrar(instance_id, self.registries),
                tasks=tasks,
                context=instance_context(tasks),
            )
            record.live = live
            timeouts = self.timeouts
            deadline = time.monotonic() + timeouts.create

            def prepare() -> tuple[Plugin, PluginApi, Any]:
                # import → settings validation → create, in one worker-thread hand-off when
                # `create` is sync (one deadline covers the three: `timeouts.create`)
                module = live.namespace.import_entry(descriptor.entry_path)
                definition = read_definition(module)
                del module
                progress.stage = "settings validation"
                settings_model = validate_settings(
                    definition.settings_schema, config.settings, f"{config.json_path}.settings"
                )
                api = self._make_api(config, settings_model, live)
                if inspect.iscoroutinefunction(definition.create):
                    return definition, api, _NOT_CREATED
                progress.stage = "create"
                return definition, api, definition.create(api)

            definition, api, created = await run_stage(
                prepare,
                instance_id=instance_id,
                stage="import",
                timeout=timeouts.create,
                context=live.context,
                progress=progress,
            )
            if created is _NOT_CREATED:
                created = await run_stage(
                    definition.create,
                    api,
                    instance_id=instance_id,
                    stage="create",
                    timeout=max(0.0, deadline - time.monotonic()),
                    context=live.context,
                    progress=progress,
                )
            live.plugin_object = created
            del definition, api, created
            load = getattr(live.plugin_object, "load", None)
            if callable(load):
                await run_stage(
                    load,
                    instance_id=instance_id,
                    stage="load",
                    timeout=timeouts.load,
                    context=live.context,
                    progress=progress,
                )
                del load
        except Exception as exc:  # one instance's failure never stops the reconcile
            failure = self._failure(instance_id, progress.stage, exc)
            del exc
            if record.live is not None:
                await self._teardown(record, call_unload=record.live.plugin_object is not None)
            self._set(record, InstanceState.FAILED, failure)
            logger.error(
                "instance %s (plugin %s) failed at %s: %s%s",
                instance_id,
                config.plugin_id,
                failure.stage,
                failure.message,
                f"\n{failure.details}" if failure.details else "",
            )
            return
        record.load_seq = next(self._load_seq)
        self._set(record, InstanceState.LOADED)
        logger.info("instance %s (plugin %s) loaded", instance_id, config.plugin_id)

    def _make_api(self, config: InstanceConfig, settings_model: Any, live: _Live) -> PluginApi:
        return PluginApi(
            instance=InstanceInfo(config.instance_id, config.plugin_id, config.enabled),
            settings=settings_model,
            engine_settings=self._engine_settings,
            registrar=live.registrar,
            secrets=InstanceSecrets(self.secrets, config.instance_id),
            events=InstanceEvents(self.events, config.plugin_id, config.instance_id),
            data_dir=functools.partial(operator.truediv, self.data_root, config.instance_id),
        )

    async def _unload(self, record: InstanceRecord) -> None:
        self._set(record, InstanceState.UNLOADING)
        await self._teardown(record, call_unload=True)
        self._set(record, InstanceState.DISABLED)
        logger.info(
            "instance %s (plugin %s) unloaded", record.config.instance_id, record.config.plugin_id
        )

    async def _teardown(self, record: InstanceRecord, *, call_unload: bool) -> None:
        live = record.live
        if live is None:
            return
        instance_id = record.config.instance_id
        unload = getattr(live.plugin_object, "unload", None) if call_unload else None
        if callable(unload):
            try:
                await run_stage(
                    unload,
                    instance_id=instance_id,
                    stage="unload",
                    timeout=self.timeouts.unload,
                    context=live.context,
                )
            except Exception as exc:  # an unload failure must not keep the instance half-alive
                logger.error(
                    "instance %s: unload failed: %s",
                    instance_id,
                    self._redact(instance_id, _describe(exc)),
                )
        try:
            live.registrar.clear()
        except RegistrationError as exc:
            logger.error("instance %s: %s", instance_id, exc)
        leftover = await live.tasks.cancel_all(grace=min(1.0, self.timeouts.unload))
        if leftover:
            logger.warning(
                "instance %s: tasks still running after cancellation: %s",
                instance_id,
                ", ".join(leftover),
            )
        live.namespace.unload()
        record.live = None

    # -- state ---------------------------------------------------------------------------------

    def _set(
        self, record: InstanceRecord, state: InstanceState, failure: Failure | None = None
    ) -> None:
        record.state = state
        record.failure = failure
        record.since = time.time()
        self._changed()

    def _changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                logger.exception("state listener failed")

    def _status(self, record: InstanceRecord) -> InstanceStatus:
        live = record.live
        registrations = (
            live.registrar.registrations() if live is not None else {kind: [] for kind in KINDS}
        )
        return InstanceStatus(
            instance_id=record.config.instance_id,
            plugin_id=record.config.plugin_id,
            state=record.state,
            since=iso(record.since),
            error=record.failure.message if record.failure else None,
            registrations=registrations,
            attempt=record.attempt,
            next_attempt_at=iso(record.next_attempt_at) if record.next_attempt_at else None,
            failure=record.failure,
        )

    def _failure(self, instance_id: str, stage: str, exc: Exception) -> Failure:
        if isinstance(exc, PluginNotFound):
            return Failure("plugin-not-found", stage, str(exc), recoverable=False)
        if isinstance(exc, StageTimeout):
            return Failure("timeout", exc.stage, str(exc), recoverable=True)
        if isinstance(exc, SettingsInvalid):
            return Failure("invalid-settings", stage, str(exc), recoverable=False)
        if isinstance(exc, DefinitionError):
            return Failure("invalid-plugin", stage, str(exc), recoverable=False)
        details = self._redact(instance_id, "".join(traceback.format_exception(exc)).rstrip())
        message = self._redact(instance_id, _describe(exc))
        if stage == "import":
            return Failure("import-error", stage, message, recoverable=False, details=details)
        if isinstance(exc, RegistrationError):
            return Failure(
                "registration-conflict", stage, message, recoverable=True, details=details
            )
        return Failure(f"{stage}-error", stage, message, recoverable=True, details=details)

    def _redact(self, instance_id: str, text: str) -> str:
        """Replace this instance's secret values in `text` (plugin errors may quote them)."""
        try:
            values = [self.secrets.get(instance_id, k) for k in self.secrets.keys(instance_id)]
        except Exception:  # an unreadable store must not hide the original error
            return text
        for value in values:
            if value and len(value) >= 4:
                text = text.replace(value, "***")
        return text


BURST = 64  # loads in one reconcile from which the old heap is set aside (gc.freeze)


@contextlib.contextmanager
def _old_heap_set_aside(loads: int) -> Iterator[None]:
    """While many instances load, keep the collector from rescanning what existed before.

    Each full collection walks every tracked object; loading N instances grows the heap by N
    instances' modules and classes and triggers full collections along the way, so without
    this a big reconcile spends a growing share of its time rescanning objects that were old
    before it started. `gc.freeze()` parks them (objects created during the loads are
    collected as usual) and `gc.unfreeze()` puts them back into the oldest generation, where
    the next full collection sees them again: nothing becomes uncollectable. Left alone when
    someone else in the process froze objects (unfreeze would release theirs too).
    """
    if loads < BURST or gc.get_freeze_count() != 0:
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _differs(old: InstanceConfig, new: InstanceConfig) -> bool:
    return old.plugin_id != new.plugin_id or old.settings != new.settings


def _must_stop(record: InstanceRecord, config: InstanceConfig | None) -> bool:
    return config is None or not config.enabled or _differs(record.config, config)
