"""The engine of one workspace, and the only facade of its instances.

`Engine` wires settings, catalog, registries, events, secrets, storage and the manager together;
the bot attaches from outside (`attach`, grambot.bot.attach_bot).
`Runtime` (grambot run), the CLI, the bot, `grambot.testing` and embedding code use its methods
(`apply`, `instance`, `instances`, `reload`, `retry`, ...), never the manager behind it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grambot.config.catalog import PluginCatalog, builtin_plugins_dir
from grambot.config.custom import CustomPlugins, apply_custom_plugins, check_timeout_ms
from grambot.config.descriptor import PluginDescriptor
from grambot.config.settings import (
    AgentSettings,
    EngineSettings,
    InstanceConfig,
    empty_settings,
    load_settings,
)
from grambot.containment.stages import StagePool
from grambot.containment.tracking import install_task_tracking
from grambot.contract.context import MemoryCache
from grambot.contract.durable import DurableServices
from grambot.core.generation import Applied

# InstanceState and CheckResult are re-exported: the app and the CLI name them through the engine
from grambot.core.instance import Instance, Services, iso
from grambot.core.instance import InstanceState as InstanceState
from grambot.core.manager import AroundLoads, PluginManager
from grambot.errors import PluginNotFound, SettingsError
from grambot.events.event import PluginEventQueue
from grambot.events.queue import PluginEventEngine
from grambot.isolation.backend import ProcessIsolation
from grambot.masking import MASK
from grambot.registries import Registries
from grambot.scheduling import Scheduler
from grambot.secrets.backends import SelectedSecretsStore, secrets_config
from grambot.secrets.store import FileSecretsStore, SecretsStore
from grambot.storage import STORAGE_FILE, SqliteStorage
from grambot.storage.retention import Retention

if TYPE_CHECKING:
    from grambot.core.check import CheckResult as CheckResult
    from grambot.events.responder import Responder

logger = logging.getLogger(__name__)

SCOUT_DIR = ".scout"


@dataclass(frozen=True)
class IgnoredEdit:
    """A settings file that could not be used at all; nothing of it was applied."""

    at: float
    problems: tuple[str, ...]

    def to_status(self) -> dict[str, Any]:
        return {"at": iso(self.at), "problems": list(self.problems)}


class Engine:
    def __init__(
        self,
        workspace: Path,
        *,
        secrets: SecretsStore | None = None,
        builtin_dir: Path | None = None,
        entry_points: bool = True,
        retries: bool = False,
        around_loads: AroundLoads | None = None,
    ) -> None:
        """`retries`: retry recoverable failures with backoff (the `retry` settings key);
        without it a failed instance waits for an edit. `around_loads(n)`: a context manager
        each batch of `n` loads runs in, for the application's own interpreter settings
        (`grambot run`'s is grambot.app.collector); the engine itself changes none."""
        self.workspace = workspace.resolve()
        self.scout_dir = self.workspace / SCOUT_DIR
        self.builtin_dir = builtin_dir if builtin_dir is not None else builtin_plugins_dir()
        self.entry_points = entry_points
        self.retries = retries
        self.settings: EngineSettings = empty_settings(self.workspace)
        self.catalog = PluginCatalog()
        self.registries = Registries()
        self.queue = PluginEventQueue()
        self.event_engine = PluginEventEngine(self.queue)
        self.secrets = secrets or FileSecretsStore(self.scout_dir / "secrets.json")
        self.cache = MemoryCache()
        self.run_plugin_cache = MemoryCache()  # run_plugin's transient instances: never shared
        self.custom_plugins: list[CustomPlugins] = []
        self._missing_dirs: tuple[Path, ...] = ()  # pluginDirs the last scan did not find
        # plugin id -> deadline in ms from register_custom_plugins(timeout_ms=...)
        self.timeout_overrides: dict[str, int] = {}
        self.ignored_edit: IgnoredEdit | None = None
        self._stop_handlers: list[Callable[[str], None]] = []
        # What every next load reads (catalog, deadlines, engine settings, retry policy): the
        # engine is its one owner, and replaces it whole (apply, rescan); Services read it.
        self.applied = Applied(self.catalog, timeout_overrides=self.timeout_overrides)
        # `"isolation": "process"` instances run in children of one zygote (docs/isolation.md)
        self.isolation = ProcessIsolation()
        # Durable storage (issue 16, docs/state.md): .scout/state.db, opened on first use.
        self.storage = SqliteStorage(self.scout_dir / STORAGE_FILE)
        self.scheduler = Scheduler(self.storage.schedule)
        # What answers the inbox (the bot), attached from outside; without one, messages are
        # accepted into the inbox and nobody answers.
        self.responder: Responder | None = None
        self._storage_opened = False
        # the worker threads of every sync plugin stage of this engine's instances
        self.stage_pool = StagePool()
        self.manager = PluginManager(
            Services(
                registries=self.registries,
                events=self.queue,
                secrets=self.secrets,
                cache=self.cache,
                data_root=self.scout_dir / "plugins",
                applied=lambda: self.applied,
                on_change=lambda: self.manager.changed(),
                request_stop=self._plugin_requests_stop,
                durable=DurableServices(
                    self.storage.kv, self.storage.inbox, self._wake, self.scheduler.for_instance
                ),
                isolation=self.isolation,
                stage_pool=self.stage_pool,
            ),
            around_loads=around_loads,
        )
        # what is kept only for a while (agent.historyDays, done inbox entries, TTLs) goes hourly
        self.retention = Retention(
            self.storage.conversations,
            self.storage.inbox,
            self.storage.kv,
            lambda: self.settings.agent.history_days,
        )

    def attach(self, responder: Responder) -> None:
        """Attach what answers the messages in the inbox (grambot.bot.attach_bot), before
        `start`: it recovers the inbox when the storage opens, resumes after the first
        reconcile and stops before the instances unload."""
        if self.responder is not None or self._storage_opened:
            raise RuntimeError("attach a responder once, before the engine starts")
        self.responder = responder

    def _wake(self, connector_id: str, chat_id: str) -> None:
        """A connector's message is in the inbox (api.inbox.accept): the responder answers."""
        if self.responder is not None:
            self.responder.wake(connector_id, chat_id)

    def changed(self) -> None:
        """Something status.json shows changed outside the instances (e.g. the inbox): tell
        the listeners."""
        self.manager.services.on_change()

    # -- the instances (read them here; change them through the methods below) -------------

    def instance(self, instance_id: str) -> Instance | None:
        """The instance with this id (any state), or None. Read it; do not call its methods."""
        return self.manager.instance(instance_id)

    def instances(self) -> list[Instance]:
        return self.manager.instances()

    def state_of(self, instance_id: str) -> InstanceState | None:
        return self.manager.state_of(instance_id)

    def loaded_ids(self) -> list[str]:
        """Loaded instances, in load order."""
        return self.manager.loaded_ids()

    def instances_of(self, plugin_id: str) -> list[str]:
        return self.manager.instances_of(plugin_id)

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` after every change of an instance; returns the remover."""
        return self.manager.add_listener(listener)

    def on_stop_request(self, handler: Callable[[str], None]) -> Callable[[], None]:
        """Call `handler(reason)` when a plugin asks the engine to stop (`grambot run` listens
        and shuts down as on SIGTERM); returns the remover. The handler may be called from
        any thread."""
        self._stop_handlers.append(handler)
        return lambda: self._stop_handlers.remove(handler)

    def request_stop(
        self,
        reason: str,
        *,
        instance_id: str | None = None,
        unless_other_connectors: bool = False,
    ) -> bool:
        """Ask whoever runs this engine to stop it (an orderly shutdown: the bot finishes the
        replies it holds). With `unless_other_connectors`, only when no connector of another
        instance than `instance_id` is registered (the console at the end of piped input).
        False when nothing stops: another connector keeps the bot running, or nobody listens
        (an engine embedded without `grambot run`)."""
        who = f"instance {instance_id}" if instance_id else "the engine's owner"
        if unless_other_connectors:
            connectors = self.registries.connectors
            owners = {connectors.owner_of(key) for key in connectors}
            others = sorted(o for o in owners if o is not None and o != instance_id)
            if others:
                logger.info(
                    "%s asks to stop the engine (%s); not stopping: the connectors of %s keep "
                    "the bot running",
                    who,
                    reason,
                    ", ".join(others),
                )
                return False
        if not self._stop_handlers:
            logger.warning("%s asks to stop the engine (%s): nothing here can stop it", who, reason)
            return False
        logger.info("%s asks to stop the engine: %s", who, reason)
        for handler in list(self._stop_handlers):
            handler(reason)
        return True

    def _plugin_requests_stop(self, instance_id: str, reason: str, unless_others: bool) -> bool:
        return self.request_stop(
            reason, instance_id=instance_id, unless_other_connectors=unless_others
        )

    @property
    def agent(self) -> AgentSettings:
        """The `agent` block in force: the last valid one."""
        return self.settings.agent

    async def reload(self, instance_ids: list[str]) -> list[str]:
        """Unload and load again these instances with their current entries; their connectors
        start again. Returns the ids reloaded (enabled instances only)."""
        return await self.manager.reload(instance_ids)

    async def retry(self, instance_id: str) -> bool:
        """Try a failed or retrying instance again now; False if it is neither."""
        return bool(await self.manager.retry_now([instance_id]))

    async def reconcile(self) -> None:
        """Apply the current settings again (after the plugin catalog changed)."""
        self.applied = self._applied_from(self.settings)
        await self.manager.sync_with_settings(self.settings)

    async def check(
        self,
        instance_id: str,
        *,
        config: InstanceConfig | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> CheckResult:
        """Check the entry of `instance_id` (or `config`) live, with the stored secrets or these
        candidate ones, without touching what runs (grambot.core.check)."""
        from grambot.core.check import CheckResult, OverlaySecrets, check_entry

        if config is None:
            config = self.settings.instance(instance_id)
        if config is None:
            known = ", ".join(c.instance_id for c in self.settings.instances) or "none"
            return CheckResult(
                instance_id,
                "?",
                False,
                "not-found",
                f"settings.json has no instance {instance_id!r} (instances: {known})",
            )
        install_task_tracking(asyncio.get_running_loop())
        overlay = OverlaySecrets(
            self.secrets, config.instance_id, secrets, on_value=lambda v: MASK.add([v])
        )
        applied = self._applied_from(self.settings)  # the settings as read, applied or not
        return await check_entry(applied, self.isolation, config, overlay, self.stage_pool)

    def note_stall(self, instance_id: str | None) -> None:
        """The loop watchdog saw this instance's code block the event loop."""
        instance = self.instance(instance_id) if instance_id is not None else None
        if instance is not None:
            instance.stalls += 1
            self.manager.services.on_change()

    def clear_ignored_edit(self) -> None:
        """The file is back to the content in use: no ignored edit any more."""
        if self.ignored_edit is not None:
            self.ignored_edit = None
            self.manager.services.on_change()

    def ignore_edit(self, error: SettingsError) -> None:
        """Record an edit of the settings file that could not be used at all (status shows
        it until the next valid edit)."""
        self.ignored_edit = IgnoredEdit(time.time(), tuple(str(p) for p in error.problems))
        self.manager.services.on_change()

    def read_settings(self) -> EngineSettings:
        """Read settings.json; raises SettingsError for a file that cannot be used at all."""
        return load_settings(self.workspace)

    def rescan(self, settings: EngineSettings) -> None:
        """Rebuild the catalog from the built-ins, `pluginDirs` and entry points."""
        catalog = PluginCatalog.discover(
            builtin_dir=self.builtin_dir,
            plugin_dirs=settings.plugin_dirs,
            entry_points=self.entry_points,
        )
        for problem in catalog.problems:
            logger.error("plugin catalog: %s", problem)
        overrides: dict[str, int] = {}
        for custom in self.custom_plugins:
            apply_custom_plugins(catalog, overrides, custom, settings.plugin_dirs)
        self.catalog = catalog
        self._missing_dirs = tuple(d for d in settings.plugin_dirs if not d.is_dir())
        self.timeout_overrides.clear()
        self.timeout_overrides.update(overrides)
        self.applied = dataclasses.replace(self.applied, catalog=catalog)

    def ensure_catalog(self) -> None:
        """Build the catalog from settings.json if it was never built (before `start`)."""
        if self.catalog.ids():
            return
        try:
            self.settings = self.read_settings()
        except SettingsError as exc:
            logger.error("cannot use the settings file; using the default pluginDirs:\n%s", exc)
        self.rescan(self.settings)

    def register_custom_plugins(
        self, directory: Path | None = None, timeout_ms: int | None = None
    ) -> list[PluginDescriptor]:
        """Add every plugin folder beneath `directory` (default: `pluginDirs`) to the catalog,
        with an optional deadline override in ms for them; returns the plugins found.

        Bad manifests are logged and kept in `catalog.problems`. See grambot.config.custom.
        """
        custom = CustomPlugins(
            Path(directory).resolve() if directory is not None else None,
            check_timeout_ms(timeout_ms),
        )
        self.ensure_catalog()
        self.custom_plugins.append(custom)
        return apply_custom_plugins(
            self.catalog, self.timeout_overrides, custom, self.settings.plugin_dirs
        )

    async def run_plugin(self, name: str, inputs: Any, config: Any = None) -> Any:
        """Run the execute-style plugin `name` once on demand and return its result (Summit's
        `runPlugin`); raises what went wrong. See grambot.contract.execute."""
        from grambot.contract.execute import TRANSIENT_DIR, run_execute_plugin

        if not self.catalog.ids():
            self.ensure_catalog()
        descriptor = self.catalog.get(name)
        if descriptor is None:
            raise PluginNotFound(name, None, self.catalog.ids())
        return await run_execute_plugin(
            descriptor,
            inputs,
            config,
            secrets=self.secrets,
            cache=self.run_plugin_cache,
            data_root=self.scout_dir / TRANSIENT_DIR,
            timeouts=self.settings.timeouts,
            override_ms=self.timeout_overrides.get(descriptor.id),
            pool=self.stage_pool,
        )

    async def apply(self, settings: EngineSettings) -> bool:
        """Make the running instances match `settings`: each entry that cannot be applied is
        held (what runs under its id keeps running as it was), and every problem of the edit is
        reported in one log record. False if a newer apply superseded this one."""
        self._select_secrets(settings)
        if self._catalog_stale(settings):
            self.rescan(settings)
        self.applied = self._applied_from(settings)
        self.settings = settings
        self.ignored_edit = None
        self.event_engine.handler_timeout = settings.timeouts.event_handler
        self.scheduler.timeout = settings.timeouts.event_handler
        first = not self._storage_opened
        if first:
            await self._open_storage()
        await self.storage.set_synchronous(settings.state_synchronous)
        applied = await self.manager.sync_with_settings(settings)
        if applied:
            self._report(settings)
        if first and self.responder is not None:
            await self.responder.resume()  # what waits in the inbox is answered from now on
        return applied

    def _applied_from(self, settings: EngineSettings) -> Applied:
        """What loads read, taken from `settings`: their deadlines and engine settings, and the
        retry policy when this engine retries (else the one it had: none)."""
        return dataclasses.replace(
            self.applied,
            timeouts=settings.timeouts,
            engine_settings=settings.raw,
            retry_policy=settings.retry if self.retries else self.applied.retry_policy,
        )

    def _catalog_stale(self, settings: EngineSettings) -> bool:
        """The one rule for a rescan before an apply: `pluginDirs` changed, the catalog was
        never built, or a pluginDir missing at the last scan exists now."""
        return (
            settings.plugin_dirs != self.settings.plugin_dirs
            or not self.catalog.ids()
            or any(folder.is_dir() for folder in self._missing_dirs)
        )

    def _select_secrets(self, settings: EngineSettings) -> None:
        """The `secrets` key: which backend the store reads (when the engine's store can
        switch; a store the embedder chose stays). An invalid key keeps the backend in use."""
        store = self.secrets
        if not isinstance(store, SelectedSecretsStore):
            return
        config, problems = secrets_config(settings.raw, settings.path)
        for problem in problems:
            logger.error("settings: %s (keeping the %s backend)", problem, store.config.backend)
        if not problems and store.select(config):
            logger.info("secrets backend: %s", store.current)

    async def _open_storage(self) -> None:
        """Open .scout/state.db (raises StateError, e.g. a database of a newer grambot) and,
        when this engine answers, recover the inbox before any connector runs."""
        self._storage_opened = True
        self.storage.db.synchronous = self.settings.state_synchronous
        await asyncio.to_thread(self.storage.open)
        if self.responder is not None:
            await self.responder.recover()
            self.retention.start()

    def _report(self, settings: EngineSettings) -> None:
        lines = [str(p) for p in settings.problems]
        for instance in self.instances():
            if not instance.held:
                continue
            shape = settings.held.get(instance.instance_id, ())
            lines += [
                f"instance {instance.instance_id} keeps running as it was: {p}"
                for p in instance.held
                if p not in shape and instance.state is InstanceState.LOADED
            ]
        if lines:
            logger.error(
                "settings: %d problem(s) in %s; the rest of the edit is applied:\n  - %s",
                len(lines),
                settings.path,
                "\n  - ".join(lines),
            )

    async def start(self) -> None:
        """Start the event engine and load what settings.json enables."""
        await self.event_engine.start()
        try:
            settings = self.read_settings()
        except SettingsError as exc:
            logger.error("cannot use the settings file; starting with no instances:\n%s", exc)
            await self.apply(empty_settings(self.workspace))
            self.ignore_edit(exc)
            return
        await self.apply(settings)

    async def stop(self, *, drain_deadline: float = 5.0) -> None:
        """Stop the event engine (draining within the deadline), let the bot finish the replies
        it holds, then unload every instance."""
        await self.event_engine.stop(drain_deadline)
        if self.responder is not None:
            await self.responder.stop(drain_deadline)
        await self.manager.unload_all()
        self.isolation.close()  # every child has stopped; the zygote goes too
        self.stage_pool.close()  # its idle workers end now, not in IDLE_SECONDS
        await self.scheduler.stop()
        await self.retention.stop()
        await self.storage.close()

    def inbox_status(self) -> dict[str, Any]:
        """The inbox in status.json (`uncertainAtStart`: replies that may or may not have gone
        out when the last run stopped)."""
        return self.responder.status() if self.responder is not None else {}

    def schedule_status(self) -> dict[str, Any]:
        """Scheduled jobs in status.json: stored (every owner's), and armed (of loaded
        instances)."""
        jobs = self.responder.stored_jobs if self.responder is not None else 0
        return {"jobs": jobs, "active": self.scheduler.active}
