"""The engine of one workspace: settings, catalog, registries, events, secrets and the manager,
wired together. `grambot run` drives one; tests and embedding code can drive one directly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from grambot.bot import Bot
from grambot.errors import SettingsError
from grambot.plugins.catalog import PluginCatalog, builtin_plugins_dir
from grambot.plugins.context import MemoryCache
from grambot.plugins.custom import CustomPlugins, apply_custom_plugins, check_timeout_ms
from grambot.plugins.descriptor import PluginDescriptor
from grambot.plugins.event_engine import PluginEventEngine
from grambot.plugins.events import PluginEventQueue
from grambot.plugins.manager import PluginManager
from grambot.registries import Registries
from grambot.registries.connectors import CONNECTOR_MESSAGE
from grambot.retry import retry_policy_from
from grambot.secrets import FileSecretsStore, SecretsStore, redact_instance_secrets
from grambot.settings import EngineSettings, empty_settings, load_settings

logger = logging.getLogger(__name__)

SCOUT_DIR = ".scout"


class Engine:
    def __init__(
        self,
        workspace: Path,
        *,
        secrets: SecretsStore | None = None,
        builtin_dir: Path | None = None,
        entry_points: bool = True,
        bot: bool = True,
        retries: bool = False,
    ) -> None:
        """`retries`: retry recoverable failures with backoff (the `retry` settings key);
        without it a failed instance waits for an edit."""
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
        self.custom_plugins: list[CustomPlugins] = []
        self.manager = PluginManager(
            catalog=self.catalog,
            events=self.queue,
            registries=self.registries,
            secrets=self.secrets,
            data_root=self.scout_dir / "plugins",
            cache=self.cache,
        )
        # The bot answers `connector.message` events with the `agent` of settings.json.
        self.bot = Bot(
            self.registries,
            self.scout_dir / "bot",
            lambda: self.settings.raw.get("agent"),
            redact=lambda owner, text: redact_instance_secrets(self.secrets, owner, text),
        )
        if bot:
            self.event_engine.register(CONNECTOR_MESSAGE, self.bot.on_event)

    # -- the instances (read-only views; change them through the methods below) -------------

    def instance(self, instance_id: str) -> Any:
        """The instance with this id (any state), or None."""
        return self.manager.record(instance_id)

    def state_of(self, instance_id: str) -> Any:
        return self.manager.state_of(instance_id)

    def loaded_ids(self) -> list[str]:
        """Loaded instances, in load order."""
        return self.manager.loaded_ids()

    def instances_of(self, plugin_id: str) -> list[str]:
        return self.manager.instances_of(plugin_id)

    async def reload(self, instance_ids: list[str]) -> list[str]:
        """Unload and load again these instances with their current settings."""
        return await self.manager.reload(instance_ids)

    async def retry(self, instance_id: str) -> bool:
        """Try a failed or retrying instance again now; False if it is neither."""
        state = self.manager.state_of(instance_id)
        if state is None or str(state) not in ("failed", "retrying"):
            return False
        await self.manager.reload([instance_id])
        return True

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
        self.manager.catalog = catalog
        self.manager.timeout_overrides = overrides

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

        Bad manifests are logged and kept in `catalog.problems`. See grambot.plugins.custom.
        """
        custom = CustomPlugins(
            Path(directory).resolve() if directory is not None else None,
            check_timeout_ms(timeout_ms),
        )
        self.ensure_catalog()
        self.custom_plugins.append(custom)
        return apply_custom_plugins(
            self.catalog, self.manager.timeout_overrides, custom, self.settings.plugin_dirs
        )

    async def run_plugin(self, name: str, inputs: Any, config: Any = None) -> Any:
        """Run the execute-style plugin `name` once on demand and return its result (Summit's
        `runPlugin`); raises what went wrong. See grambot.plugins.execute."""
        from grambot.plugins.execute import run_plugin

        return await run_plugin(self, name, inputs, config)

    async def apply(self, settings: EngineSettings) -> None:
        """Make the running instances match `settings` (valid entries; bad ones are logged)."""
        retry_policy, retry_problems = retry_policy_from(settings.raw, settings.path)
        for problem in (*settings.problems, *retry_problems):
            logger.error("settings: %s", problem)
        if self.retries:
            self.manager.retry_policy = retry_policy
        if settings.plugin_dirs != self.settings.plugin_dirs or not self.catalog.ids():
            self.rescan(settings)
        self.settings = settings
        self.event_engine.handler_timeout = settings.timeouts.event_handler
        await self.manager.sync_with_settings(settings)

    async def start(self) -> None:
        """Start the event engine and load what settings.json enables."""
        await self.event_engine.start()
        try:
            settings = self.read_settings()
        except SettingsError as exc:
            logger.error("cannot use the settings file; starting with no instances:\n%s", exc)
            settings = empty_settings(self.workspace)
        await self.apply(settings)

    async def stop(self, *, drain_deadline: float = 5.0) -> None:
        """Stop the event engine (draining within the deadline), let the bot finish the replies
        it holds, then unload every instance."""
        await self.event_engine.stop(drain_deadline)
        await self.bot.stop(drain_deadline)
        await self.manager.unload_all()
