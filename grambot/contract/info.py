"""`InstanceInfo`: which instance a plugin object is (`api.instance`), shared by the api and
the runtime helpers behind it (grambot.contract.context)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InstanceInfo"]


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    plugin_id: str
    enabled: bool
