"""What a plugin instance is given: `api`, and nothing past it (DESIGN §2)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grambot.containment.loader import instance_logger_name
from grambot.contract.info import InstanceInfo as InstanceInfo  # re-exported: grambot.InstanceInfo

if TYPE_CHECKING:
    import httpx

    from grambot.config.descriptor import PluginDescriptor
    from grambot.contract.context import InstanceCache, InstanceEnv, InstanceVault, PluginRuntime
    from grambot.contract.durable import DurableHandles, InstanceInbox, InstanceStore
    from grambot.contract.health import InstanceHealth
    from grambot.contract.registrar import PluginRegistrar
    from grambot.events.event import PluginEvent, PluginEventQueue
    from grambot.scheduling import InstanceSchedule
    from grambot.secrets.store import InstanceSecrets


class InstanceEvents:
    """`api.events`: emit events as this instance. `emit(type, payload=None)` returns the
    event at once, from any thread."""

    __slots__ = ("_instance_id", "_plugin_id", "_queue", "_refused", "emit")

    emit: Callable[..., PluginEvent]

    def __init__(self, queue: PluginEventQueue, plugin_id: str, instance_id: str) -> None:
        self._queue = queue
        self._plugin_id = plugin_id
        self._instance_id = instance_id
        self._refused = 0
        # the queue's own emit with this instance's ids bound: no extra Python frame per event
        self.emit = functools.partial(queue.emit, plugin_id, instance_id)

    def close(self) -> None:
        """The instance is unloaded: what its leftover code emits from now on is dropped (the
        first such event is logged)."""
        self.emit = self._closed_emit

    def _closed_emit(self, type: str, payload: Any = None) -> PluginEvent:
        from grambot.events.event import PluginEvent

        self._refused += 1
        if self._refused == 1:
            logging.getLogger(__name__).error(
                "instance %s is unloaded: its event %r (and any later one) is dropped",
                self._instance_id,
                type,
            )
        return PluginEvent(self._plugin_id, self._instance_id, type, payload)


class PluginApi:
    """The whole surface a plugin instance may use."""

    __slots__ = (
        "_data_dir",
        "_data_dir_made",
        "_durable",
        "_logger",
        "_request_stop",
        "_runtime",
        "engine_settings",
        "events",
        "health",
        "instance",
        "registrar",
        "secrets",
        "settings",
    )

    def __init__(
        self,
        *,
        instance: InstanceInfo,
        settings: Any,
        engine_settings: Mapping[str, Any],
        registrar: PluginRegistrar,
        secrets: InstanceSecrets,
        events: InstanceEvents,
        data_dir: Path | Callable[[], Path],
        runtime: PluginRuntime | None = None,
        health: InstanceHealth | None = None,
        durable: DurableHandles | None = None,
        request_stop: Callable[[str, bool], bool] | None = None,
    ) -> None:
        if health is None:
            from grambot.contract.health import InstanceHealth

            health = InstanceHealth()
        self.health = health  # ok(what) / error(exc): the health of its long-running work
        self.instance = instance
        self.settings = settings
        self.engine_settings = engine_settings
        self.registrar = registrar
        self.secrets = secrets
        self.events = events
        self._data_dir = data_dir  # or a function making the path, called on first use
        self._data_dir_made = False
        self._logger: logging.Logger | None = None
        self._runtime = runtime
        self._durable = durable
        self._request_stop = request_stop

    @property
    def data_dir(self) -> Path:
        """`.scout/plugins/<instanceId>/`, created on first use (a mkdir per loaded instance
        costs more than loading a small plugin, and most plugins never write files)."""
        if not self._data_dir_made:
            path = self._data_dir if isinstance(self._data_dir, Path) else self._data_dir()
            path.mkdir(parents=True, exist_ok=True)
            self._data_dir = path
            self._data_dir_made = True
        assert isinstance(self._data_dir, Path)
        return self._data_dir

    @property
    def logger(self) -> logging.Logger:
        """`grambot.plugin.<instanceId>`: every line names the instance; removed on unload."""
        if self._logger is None:
            self._logger = logging.getLogger(instance_logger_name(self.instance.instance_id))
        return self._logger

    def request_stop(self, reason: str, *, unless_other_connectors: bool = False) -> bool:
        """Ask whoever runs the engine (`grambot run`) to stop it, as SIGTERM would: an orderly
        shutdown that lets the bot finish the replies it holds. With `unless_other_connectors`,
        only when no other instance's connector is registered (the console at the end of its
        piped input). True when the engine is stopping; False when another connector keeps it
        running, or nothing here can stop it (an embedded engine)."""
        if self._request_stop is None:
            return False
        return self._request_stop(reason, unless_other_connectors)

    # -- the Summit runtime helpers (grambot.contract.context) -----------------------------------

    @property
    def env(self) -> InstanceEnv:
        """The environment variables the manifest's `allowedEnv` names; others are refused."""
        return runtime_of(self).env

    @property
    def http(self) -> httpx.AsyncClient:
        """An httpx.AsyncClient owned by this instance, created on first use, closed on unload."""
        return runtime_of(self).http

    @property
    def cache(self) -> InstanceCache:
        """`get/set/delete` (optional TTL) in this instance's own cache namespace."""
        return runtime_of(self).cache

    @property
    def vault(self) -> InstanceVault:
        """Secrets by path: `<instanceId>/<key>`, and `shared/...` under allowedVaultPaths."""
        return runtime_of(self).vault

    @property
    def manifest(self) -> PluginDescriptor:
        """The plugin's parsed plugin.json."""
        return runtime_of(self).manifest

    # -- durable state (grambot.contract.durable, grambot.scheduling; docs/state.md) -------------

    @property
    def store(self) -> InstanceStore:
        """A persistent key-value store of this instance: `await get/set/delete/keys(prefix)`,
        `set(..., ttl=)`; kept across restarts (`grambot remove ID --purge` deletes it)."""
        return durable_of(self).store

    @property
    def inbox(self) -> InstanceInbox:
        """`await accept(message)`: the message is durable once this returns; acknowledge it
        upstream only then. The bot answers it (at least once in, at most once out)."""
        return durable_of(self).inbox

    @property
    def schedule(self) -> InstanceSchedule:
        """Jobs owned by this instance: `await every/cron/at(name, ..., handler)`; persisted,
        re-registered by name at each load, paused while the instance is unloaded."""
        schedule = durable_of(self).schedule
        if schedule is None:
            raise RuntimeError(
                f"instance {self.instance.instance_id!r}: no scheduler runs in this engine"
            )
        return schedule

    def __repr__(self) -> str:
        return f"PluginApi(instance={self.instance.instance_id!r})"


def durable_of(api: PluginApi) -> DurableHandles:
    durable = api._durable
    if durable is None:
        raise RuntimeError(
            f"instance {api.instance.instance_id!r}: this PluginApi was made without durable "
            "state (api.store, api.inbox, api.schedule): it runs outside an engine"
        )
    return durable


def runtime_of(api: PluginApi) -> PluginRuntime:
    """The runtime context behind `api` (what an execute-style plugin gets as `context`)."""
    runtime = api._runtime
    if runtime is None:
        raise RuntimeError(
            f"instance {api.instance.instance_id!r}: this PluginApi was made without a runtime "
            "context (env, http, cache, vault, manifest)"
        )
    return runtime
