"""Image generation providers: they save files under their instance's data dir."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from grambot.registries.base import Registry


@dataclass(frozen=True)
class GeneratedImage:
    path: Path
    mime_type: str
    size_bytes: int


@runtime_checkable
class ImageProvider(Protocol):
    """Generates `count` images for `prompt`, saves them under the instance's data dir and
    returns them; raises `grambot.ServiceError` (kind `bad-request` for a call it refuses before
    asking the service)."""

    id: str

    async def generate(
        self, prompt: str, *, size: str | None = None, count: int = 1, model: str | None = None
    ) -> Sequence[GeneratedImage]: ...


class ImageGenerationRegistry(Registry[ImageProvider]):
    kind = "image provider"
