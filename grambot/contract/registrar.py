"""The registrar of one instance: what it registered, so unload can remove exactly that.

Once its instance is unloaded the registrar is closed: a registration from code of the instance
that still runs (a thread, a late callback) is refused with a RegistrationError and logged, so
nothing of an unloaded instance is ever reachable through a registry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from grambot.errors import RegistrationError
from grambot.registries import Registries
from grambot.registries.base import Registry
from grambot.registries.connectors import Connector
from grambot.registries.images import ImageProvider
from grambot.registries.inference import InferenceProvider
from grambot.registries.tools import Tool

logger = logging.getLogger(__name__)

KINDS = ("connectors", "inference", "tools", "images")
_LOCK = threading.Lock()  # every registrar's bookkeeping (short; never held over plugin code)


class PluginRegistrar:
    """`api.registrar`. Connectors and providers are keyed by the instance id unless a key is
    given; tools by their name. Another instance's key is a RegistrationConflict."""

    def __init__(
        self,
        instance_id: str,
        registries: Registries,
        *,
        wrap: Callable[[str, Any], Any] | None = None,
        on_register: Callable[[str, str], None] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self._registries = registries
        self._wrap = wrap  # (kind, item) -> what the registry holds (grambot.containment.guards)
        self._on_register = on_register  # (kind, key), after each registration
        # kind -> keys, filled on first registration (most instances register one kind or none)
        self._owned: dict[str, list[str]] = {}
        self._lock = _LOCK
        self._closed = False

    # -- registering ---------------------------------------------------------------------------

    def register_connector(self, connector: Connector, *, key: str | None = None) -> str:
        _check(connector, Connector, "connector", "start(), stop() and send_message()")
        return self._add("connectors", self._registries.connectors, key, connector)

    def register_inference_provider(
        self, provider: InferenceProvider, *, key: str | None = None
    ) -> str:
        _check(provider, InferenceProvider, "inference provider", "id, label, models(), complete()")
        return self._add("inference", self._registries.inference, key, provider)

    def register_tool(self, tool: Tool) -> str:
        _check(tool, Tool, "tool", "name, description, parameters() and execute()")
        return self._add("tools", self._registries.tools, tool.name, tool)

    def register_image_provider(self, provider: ImageProvider, *, key: str | None = None) -> str:
        _check(provider, ImageProvider, "image provider", "id and generate()")
        return self._add("images", self._registries.images, key, provider)

    # -- unregistering -------------------------------------------------------------------------

    def unregister_connector(self, key: str | None = None) -> None:
        self._remove("connectors", self._registries.connectors, key or self.instance_id)

    def unregister_inference_provider(self, key: str | None = None) -> None:
        self._remove("inference", self._registries.inference, key or self.instance_id)

    def unregister_tool(self, name: str) -> None:
        self._remove("tools", self._registries.tools, name)

    def unregister_image_provider(self, key: str | None = None) -> None:
        self._remove("images", self._registries.images, key or self.instance_id)

    def close(self) -> None:
        """Remove everything this instance registered and refuse any later (un)registration."""
        with self._lock:
            self._closed = True
        self.clear()

    def clear(self) -> None:
        """Remove everything this instance registered (unload, or a failed load)."""
        registries = self._registry_map()
        with self._lock:
            owned = self._owned
            self._owned = {}
        for kind, keys in owned.items():
            for key in keys:
                registries[kind].unregister(key, self.instance_id)

    def registrations(self) -> dict[str, list[str]]:
        """What this instance holds now, per kind (status.json's `registrations`)."""
        with self._lock:
            return {kind: list(self._owned.get(kind, ())) for kind in KINDS}

    # -- internals -----------------------------------------------------------------------------

    def _registry_map(self) -> dict[str, Registry[Any]]:
        r = self._registries
        return {
            "connectors": r.connectors,
            "inference": r.inference,
            "tools": r.tools,
            "images": r.images,
        }

    def _add(self, kind: str, registry: Registry[Any], key: str | None, item: Any) -> str:
        key = key or self.instance_id
        if not isinstance(key, str) or not key:
            raise RegistrationError(f"instance {self.instance_id!r}: {kind} key must be a string")
        if self._wrap is not None:
            item = self._wrap(kind, item)
        with self._lock:  # held across: close() cannot slip in between the check and the add
            refused = self._closed
            if not refused:
                registry.register(key, self.instance_id, item)
                keys = self._owned.setdefault(kind, [])
                if key not in keys:
                    keys.append(key)
        if refused:
            message = (
                f"instance {self.instance_id!r} is unloaded: registering {registry.kind} {key!r} "
                "is refused"
            )
            logger.error("%s", message)
            raise RegistrationError(message)
        if self._on_register is not None:
            self._on_register(kind, key)
        return key

    def _remove(self, kind: str, registry: Registry[Any], key: str) -> None:
        """Remove a key this registrar registered: a closed registrar (an unloaded load of the
        instance) may not touch what a newer load of the same instance registered."""
        with self._lock:
            closed = self._closed
            keys = self._owned.get(kind)
            mine = keys is not None and key in keys
            if mine and not closed:
                assert keys is not None
                keys.remove(key)
        if closed:
            message = (
                f"instance {self.instance_id!r} is unloaded: unregistering {registry.kind} "
                f"{key!r} is refused"
            )
            logger.error("%s", message)
            raise RegistrationError(message)
        if mine:
            registry.unregister(key, self.instance_id)
        elif registry.owner_of(key) == self.instance_id:
            raise RegistrationError(
                f"instance {self.instance_id!r}: {registry.kind} {key!r} was registered by "
                "another load of this instance; not removed"
            )
        elif key in registry:
            registry.unregister(key, self.instance_id)  # raises: another instance owns it


def _check(item: Any, protocol: type, what: str, needs: str) -> None:
    if not isinstance(item, protocol):
        raise RegistrationError(f"{type(item).__name__} is not a {what}: a {what} needs {needs}")
