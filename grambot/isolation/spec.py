"""What an isolated load is asked to be, and how its limits are kept: plain data shared by the
backend that decides it (grambot.isolation.backend), the load that spawns the child
(grambot.isolation.remote) and the handle on that child (grambot.isolation.process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grambot.config.settings import InstanceConfig
from grambot.isolation import cgroups

__all__ = ["Enforcement", "Spec", "config_fields"]


@dataclass(frozen=True)
class Spec:
    """How one instance runs out of process."""

    memory_mb: int
    sandbox: str  # "required" | "best-effort"
    cpu_seconds: float | None = None
    max_processes: int | None = None


@dataclass(frozen=True)
class Enforcement:
    """How one child's limits are kept: its cgroup (None: none could be made), and the
    mechanism of each limit for status."""

    group: cgroups.Group | None
    memory: str  # "cgroup" | "rlimit"
    processes: str | None  # "cgroup" | "rlimit" | "none (<why>)"; None: not limited
    cpu_seconds: float | None = None  # sampled by the engine (grambot.isolation.cpu)

    def to_status(self) -> dict[str, str | None]:
        return {"memory": self.memory, "processes": self.processes}


def config_fields(config: InstanceConfig) -> dict[str, Any]:
    """What a child needs of an entry (grambot.isolation.child.config_of reads it back)."""
    return {
        "instance_id": config.instance_id,
        "plugin_id": config.plugin_id,
        "settings": config.settings,
        "json_path": config.json_path,
        "settings_version": config.settings_version,
    }
