"""The engine of one workspace: settings, catalog, registries, events, secrets and the manager,
wired together. `grambot run` drives one; tests and embedding code can drive one directly."""

from __future__ import annotations

import logging
from pathlib import Path

from grambot.errors import SettingsError
from grambot.plugins.catalog import PluginCatalog, builtin_plugins_dir
from grambot.plugins.event_engine import PluginEventEngine
from grambot.plugins.events import PluginEventQueue
from grambot.plugins.manager import PluginManager
from grambot.registries import Registries
from grambot.retry import retry_policy_from
from grambot.secrets import FileSecretsStore, SecretsStore
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
        self.manager = PluginManager(
            catalog=self.catalog,
            events=self.queue,
            registries=self.registries,
            secrets=self.secrets,
            data_root=self.scout_dir / "plugins",
        )

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
        self.catalog = catalog
        self.manager.catalog = catalog

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
        """Stop the event engine (draining within the deadline), then unload every instance."""
        await self.event_engine.stop(drain_deadline)
        await self.manager.unload_all()
