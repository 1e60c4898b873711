"""PluginManager: makes the running instances match the enabled entries of settings.json.

Reconciles are serialized by one lock (a newer request supersedes one still waiting), so an
instance is never loaded twice. Within a reconcile, instances that went away, were disabled or
changed (plugin id or settings, compared as data) are unloaded in reverse load order, then new
and changed ones load concurrently. Each instance is independent: whatever goes wrong puts that
instance in `failed` with a typed reason and the reconcile carries on.

Loading one instance:  import entry → validate settings → create(api) → load()
under deadlines (stages.run_stage): the first three share the create deadline and, when `create`
is sync, run as one call in one worker thread (a thread hand-off costs more than loading a small
plugin); an async `create` runs on the loop with what is left of that deadline. If any step
fails, what was done is undone: unload() if the instance was created, its registrations
removed, its tasks cancelled, its modules and loggers forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import inspect
import itertools
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from grambot.errors import PluginNotFound, RegistrationError, StageTimeout
from grambot.plugins.allowlist import module_guard
from grambot.plugins.api import InstanceEvents, InstanceInfo, PluginApi
from grambot.plugins.catalog import PluginCatalog
from grambot.plugins.context import CacheBackend, MemoryCache, PluginRuntime
from grambot.plugins.definition import (
    DefinitionError,
    Plugin,
    SettingsInvalid,
    read_definition,
    validate_settings,
)
from grambot.plugins.descriptor import PluginDescriptor
from grambot.plugins.events import PluginEventQueue
from grambot.plugins.limits import DeadlineTool, PluginDeadlines, plugin_deadlines
from grambot.plugins.loader import PluginNamespace
from grambot.plugins.loader import snapshot as loader_snapshot
from grambot.plugins.registrar import KINDS, PluginRegistrar
from grambot.plugins.stages import (
    InstanceTasks,
    Progress,
    install_task_tracking,
    instance_context,
    run_stage,
    wait_for_threads,
)
from grambot.registries import Registries
from grambot.retry import RetryPolicy
from grambot.secrets import InstanceSecrets, SecretsStore, redact_instance_secrets
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
    deadlines: PluginDeadlines
    plugin_object: Any = None
    runtime: PluginRuntime | None = None  # env/http/cache/vault; its http client closes on unload
    started_connectors: list[Any] = field(default_factory=list)


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
    retry_handle: asyncio.TimerHandle | None = None

    def cancel_retry(self) -> None:
        if self.retry_handle is not None:
            self.retry_handle.cancel()
            self.retry_handle = None
        self.next_attempt_at = None


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
        cache: CacheBackend | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.catalog = catalog
        self.events = events
        self.registries = registries
        self.secrets = secrets
        self.data_root = data_root
        self.timeouts = timeouts or Timeouts()
        self.cache: CacheBackend = cache if cache is not None else MemoryCache()
        # plugin id -> deadline in ms from register_custom_plugins(timeout_ms=...)
        self.timeout_overrides: dict[str, int] = {}
        # None: a failed instance stays `failed` until an edit (recoverable or not).
        self.retry_policy: RetryPolicy | None = retry
        self._retry_tasks: set[asyncio.Task[None]] = set()
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

    async def reload(self, instance_ids: list[str]) -> list[str]:
        """Unload (if running) and load again these instances with their current settings.

        Covers loaded, failed and retrying instances (a pending retry is cancelled); disabled
        and unknown ids are skipped. Returns the ids it reloaded.
        """
        async with self._lock:
            chosen = [
                r
                for i in dict.fromkeys(instance_ids)
                if (r := self._records.get(i)) is not None and r.state is not InstanceState.DISABLED
            ]
            for record in sorted(chosen, key=lambda r: r.load_seq, reverse=True):
                record.cancel_retry()
                if record.live is not None:
                    await self._unload(record)
            if chosen:
                await asyncio.gather(*(self._load(r.config) for r in chosen))
            return [r.config.instance_id for r in chosen]

    def instances_of(self, plugin_id: str) -> list[str]:
        """Ids of the instances (any state) of `plugin_id`."""
        return [i for i, r in self._records.items() if r.config.plugin_id == plugin_id]

    async def unload_all(self) -> None:
        """Unload every instance, last loaded first (shutdown). Pending retries are dropped."""
        for record in self._records.values():
            record.cancel_retry()
        for task in list(self._retry_tasks):
            task.cancel()
        async with self._lock:
            for record in self._records.values():
                record.cancel_retry()
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

        for instance_id, record in self._records.items():
            config = desired.get(instance_id)
            if instance_id not in held and (
                config is None or not config.enabled or _differs(record.config, config)
            ):
                record.cancel_retry()  # an edit of the entry applies at once

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
                if current is not None and current.state is InstanceState.DISABLED:
                    current.config = config  # still disabled: keep its `since`
                else:
                    self._records[config.instance_id] = InstanceRecord(
                        config, InstanceState.DISABLED
                    )
            elif (
                current is None
                or current.state is InstanceState.DISABLED
                or _differs(current.config, config)
                or self._plugin_appeared(current)
            ):
                if current is not None:
                    current.cancel_retry()
                starting.append(config)
            else:
                current.config = config  # equal as data; keep the running instance
        self._changed()
        if starting:
            with loader_snapshot(), _old_heap_set_aside(len(starting)):
                await asyncio.gather(*(self._load(config) for config in starting))
            await self._start_connectors([c.instance_id for c in starting])

    def _plugin_appeared(self, record: InstanceRecord) -> bool:
        """A failed instance whose unknown plugin is now in the catalog (after a rescan)."""
        failure = record.failure
        return (
            record.state is InstanceState.FAILED
            and failure is not None
            and failure.kind == "plugin-not-found"
            and record.config.plugin_id in self.catalog
        )

    async def _load(self, config: InstanceConfig, attempt: int = 0) -> None:
        instance_id = config.instance_id
        record = InstanceRecord(config, InstanceState.LOADING, attempt=attempt)
        self._records[instance_id] = record
        self._changed()
        progress = Progress("lookup")
        try:
            descriptor = self.catalog.get(config.plugin_id)
            if descriptor is None:
                raise PluginNotFound(config.plugin_id, instance_id, self.catalog.ids())
            deadlines = plugin_deadlines(
                descriptor, self.timeouts, self.timeout_overrides.get(descriptor.id)
            )
            tasks = InstanceTasks(instance_id, on_failure=self._task_failed)
            context = instance_context(tasks)

            def wrap_tool(tool: Any) -> Any:
                return DeadlineTool(tool, instance_id, deadlines.tool, context)

            live = _Live(
                namespace=PluginNamespace(
                    instance_id,
                    descriptor.folder,
                    package_name=descriptor.package_name,
                    import_hook=module_guard(descriptor, instance_id),
                ),
                registrar=PluginRegistrar(instance_id, self.registries, wrap_tool=wrap_tool),
                tasks=tasks,
                context=context,
                deadlines=deadlines,
            )
            record.live = live

            create_limit = deadlines.create
            deadline = time.monotonic() + create_limit.seconds

            def prepare() -> tuple[Plugin, PluginApi, Any]:
                # import → settings validation → create, in one worker-thread hand-off when
                # `create` is sync (one deadline covers the three)
                module = live.namespace.import_entry(descriptor.entry_path)
                definition = read_definition(module)
                del module
                progress.stage = "settings validation"
                settings_model = validate_settings(
                    definition.settings_schema, config.settings, f"{config.json_path}.settings"
                )
                api = self._make_api(config, settings_model, live, descriptor)
                if inspect.iscoroutinefunction(definition.create):
                    return definition, api, _NOT_CREATED
                progress.stage = "create"
                return definition, api, definition.create(api)

            definition, api, created = await run_stage(
                prepare,
                instance_id=instance_id,
                stage="import",
                timeout=create_limit.seconds,
                timeout_ms=create_limit.ms,
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
                    timeout_ms=create_limit.ms,
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
                    timeout=deadlines.load.seconds,
                    timeout_ms=deadlines.load.ms,
                    context=live.context,
                    progress=progress,
                )
                del load
        except Exception as exc:  # one instance's failure never stops the reconcile
            failure = self._failure(instance_id, progress.stage, exc)
            del exc
            await self._fail(record, failure)
            return
        record.load_seq = next(self._load_seq)
        record.attempt = 0
        self._set(record, InstanceState.LOADED)
        logger.info(
            "instance %s (plugin %s) loaded%s",
            instance_id,
            config.plugin_id,
            f" after {attempt} retries" if attempt else "",
        )

    # -- retries -------------------------------------------------------------------------------

    def _schedule_retry(self, record: InstanceRecord, failure: Failure) -> None:
        """Put `record` in `retrying` and arm a timer for its next attempt."""
        assert self.retry_policy is not None
        record.attempt += 1
        delay = self.retry_policy.delay(record.attempt)
        record.next_attempt_at = time.time() + delay
        loop = asyncio.get_running_loop()
        record.retry_handle = loop.call_later(
            delay, self._fire_retry, record, context=contextvars.Context()
        )
        self._set(record, InstanceState.RETRYING, failure)
        config = record.config
        if record.attempt == 1:  # the first failure in full; later ones in one line (no spam)
            logger.error(
                "instance %s (plugin %s) failed at %s: %s; retrying in %.3g s%s",
                config.instance_id,
                config.plugin_id,
                failure.stage,
                failure.message,
                delay,
                f"\n{failure.details}" if failure.details else "",
            )
        else:
            logger.warning(
                "instance %s (plugin %s): retry %d failed at %s: %s; next attempt in %.3g s",
                config.instance_id,
                config.plugin_id,
                record.attempt - 1,
                failure.stage,
                failure.message,
                delay,
            )

    def _fire_retry(self, record: InstanceRecord) -> None:
        record.retry_handle = None
        task = asyncio.get_running_loop().create_task(
            self._retry(record), name=f"grambot-retry:{record.config.instance_id}"
        )
        self._retry_tasks.add(task)
        task.add_done_callback(self._retry_tasks.discard)

    async def _retry(self, record: InstanceRecord) -> None:
        async with self._lock:
            instance_id = record.config.instance_id
            if self._records.get(instance_id) is not record or (
                record.state is not InstanceState.RETRYING or record.retry_handle is not None
            ):
                return  # edited, removed or rescheduled meanwhile
            logger.info("instance %s: retry %d", instance_id, record.attempt)
            await self._load(record.config, attempt=record.attempt)
            await self._start_connectors([instance_id])

    async def _fail(self, record: InstanceRecord, failure: Failure) -> None:
        """Undo what a failed load did; then retry it later (a failure that may pass, when
        retries are on) or put it in `failed` with its reason."""
        if record.live is not None:
            await self._teardown(record, call_unload=record.live.plugin_object is not None)
        if self._records.get(record.config.instance_id) is not record:
            return  # replaced meanwhile (shutdown): nothing to report or retry
        if failure.recoverable and self.retry_policy is not None:
            self._schedule_retry(record, failure)
            return
        self._set(record, InstanceState.FAILED, failure)
        logger.error(
            "instance %s (plugin %s) failed at %s: %s%s",
            record.config.instance_id,
            record.config.plugin_id,
            failure.stage,
            failure.message,
            f"\n{failure.details}" if failure.details else "",
        )

    async def _start_connectors(self, instance_ids: list[str]) -> None:
        """Start the connectors these instances registered, once the whole reconcile loaded:
        so no message arrives before the inference providers and tools it needs are there."""
        for instance_id in instance_ids:
            record = self._records.get(instance_id)
            if record is None or record.state is not InstanceState.LOADED or record.live is None:
                continue
            live = record.live
            for key in live.registrar.registrations()["connectors"]:
                connector = self.registries.connectors.get(key)
                if connector is None or connector in live.started_connectors:
                    continue
                try:
                    await run_stage(
                        connector.start,
                        instance_id=instance_id,
                        stage="connector start",
                        timeout=live.deadlines.load.seconds,
                        timeout_ms=live.deadlines.load.ms,
                        context=live.context,
                    )
                except Exception as exc:
                    failure = self._failure(instance_id, "connector start", exc)
                    del exc
                    await self._fail(record, failure)
                    break
                live.started_connectors.append(connector)

    def _make_api(
        self,
        config: InstanceConfig,
        settings_model: Any,
        live: _Live,
        descriptor: PluginDescriptor,
    ) -> PluginApi:
        data_dir = self.data_root / config.instance_id  # created on first use (api.data_dir)
        info = InstanceInfo(config.instance_id, config.plugin_id, config.enabled)
        live.runtime = PluginRuntime(
            instance=info,
            manifest=descriptor,
            secrets=self.secrets,
            cache=self.cache,
            data_dir=data_dir,
        )
        return PluginApi(
            instance=info,
            settings=settings_model,
            engine_settings=self._engine_settings,
            registrar=live.registrar,
            secrets=InstanceSecrets(self.secrets, config.instance_id),
            events=InstanceEvents(self.events, config.plugin_id, config.instance_id),
            data_dir=data_dir,
            runtime=live.runtime,
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
        while live.started_connectors:  # stop intake before the plugin's own unload
            connector = live.started_connectors.pop()
            try:
                await run_stage(
                    connector.stop,
                    instance_id=instance_id,
                    stage="connector stop",
                    timeout=live.deadlines.unload.seconds,
                    timeout_ms=live.deadlines.unload.ms,
                    context=live.context,
                )
            except Exception as exc:
                logger.error(
                    "instance %s: connector stop failed: %s",
                    instance_id,
                    self._redact(instance_id, _describe(exc)),
                )
        unload = getattr(live.plugin_object, "unload", None) if call_unload else None
        if callable(unload):
            try:
                await run_stage(
                    unload,
                    instance_id=instance_id,
                    stage="unload",
                    timeout=live.deadlines.unload.seconds,
                    timeout_ms=live.deadlines.unload.ms,
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
        grace = min(1.0, self.timeouts.unload)
        deadline = time.monotonic() + grace
        leftover = await live.tasks.cancel_all(grace=grace)
        if leftover:
            logger.warning(
                "instance %s: tasks still running after cancellation: %s",
                instance_id,
                ", ".join(leftover),
            )
        if live.runtime is not None:
            try:
                async with asyncio.timeout(live.deadlines.unload.seconds):
                    await live.runtime.aclose()
            except Exception as exc:  # a client that fails to close must not block unload
                logger.error("instance %s: closing api.http failed: %s", instance_id, exc)
        threads = await wait_for_threads(live.namespace.name, deadline)
        if threads:
            logger.warning(
                "instance %s: threads still running its code after unload (threads cannot be "
                "stopped from outside; the plugin must end them in unload()): %s",
                instance_id,
                ", ".join(threads),
            )
        live.namespace.unload()
        record.live = None

    def _task_failed(self, instance_id: str, task_name: str, exc: BaseException) -> None:
        details = self._redact(instance_id, "".join(traceback.format_exception(exc)).rstrip())
        logger.error(
            "instance %s: background task %s failed: %s\n%s",
            instance_id,
            task_name,
            self._redact(instance_id, _describe(exc)),
            details,
        )

    # -- state ---------------------------------------------------------------------------------

    def _set(
        self, record: InstanceRecord, state: InstanceState, failure: Failure | None = None
    ) -> None:
        if state is not InstanceState.RETRYING:
            record.next_attempt_at = None
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
        if isinstance(exc, RegistrationError):
            return Failure(
                "registration-conflict", stage, message, recoverable=True, details=details
            )
        kind, recoverable = _STAGE_FAILURES.get(stage, ("load-error", True))
        return Failure(kind, stage, message, recoverable=recoverable, details=details)

    def _redact(self, instance_id: str, text: str) -> str:
        """Replace this instance's secret values in `text` (plugin errors may quote them)."""
        return redact_instance_secrets(self.secrets, instance_id, text)


# The failure kind of an unexpected exception, by the stage it escaped from. A settings schema
# whose validator raises something other than ValueError still rejects these settings.
_STAGE_FAILURES: dict[str, tuple[str, bool]] = {
    "import": ("import-error", False),
    "settings validation": ("invalid-settings", False),
    "create": ("create-error", True),
    "load": ("load-error", True),
}


BURST = 64  # loads in one reconcile from which the old heap is set aside (gc.freeze)
# What was frozen when this module was imported counts as the interpreter's own, not someone
# else's: CPython 3.12 starts with the immortal tuples of its static types in the permanent
# generation (375 on 3.12.1; none on 3.11 and 3.13). Our first unfreeze releases them into the
# oldest generation with the rest (immortal: never collected); from then on, 0.
_frozen_by_interpreter = gc.get_freeze_count()


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
    global _frozen_by_interpreter
    if loads < BURST or gc.get_freeze_count() != _frozen_by_interpreter:
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        _frozen_by_interpreter = 0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _differs(old: InstanceConfig, new: InstanceConfig) -> bool:
    return old.plugin_id != new.plugin_id or old.settings != new.settings


def _must_stop(record: InstanceRecord, config: InstanceConfig | None) -> bool:
    return config is None or not config.enabled or _differs(record.config, config)
