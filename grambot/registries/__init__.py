"""The four registries plugins fill through their registrar."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grambot.registries.base import Registry
from grambot.registries.connectors import ConnectorRegistry
from grambot.registries.images import ImageGenerationRegistry
from grambot.registries.inference import InferenceRegistry
from grambot.registries.tools import ToolRegistry


@dataclass
class Registries:
    connectors: ConnectorRegistry = field(default_factory=ConnectorRegistry)
    inference: InferenceRegistry = field(default_factory=InferenceRegistry)
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    images: ImageGenerationRegistry = field(default_factory=ImageGenerationRegistry)

    def by_kind(self, kind: str) -> Registry[Any] | None:
        """The registry whose `kind` is this ("connector", "tool", ...), as errors name it."""
        for registry in (self.connectors, self.inference, self.tools, self.images):
            if registry.kind == kind:
                return registry
        return None


__all__ = [
    "ConnectorRegistry",
    "ImageGenerationRegistry",
    "InferenceRegistry",
    "Registries",
    "ToolRegistry",
]
