"""What names a plugin and where its files are, without pydantic: the part of a descriptor
(grambot.config.descriptor) that the cached plugin listing keeps too (grambot.cli.plugin_list),
which must not import pydantic to answer from its cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["PluginIdentity"]


@dataclass(frozen=True, kw_only=True)
class PluginIdentity:
    id: str
    name: str
    description: str
    entry: str
    folder: Path
    entry_path: Path
    descriptor_path: Path
    source: str
