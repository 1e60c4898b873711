"""The plugin catalog: every plugin.json grambot can see, keyed by plugin id.

Plugins come from three places, in this order (the first of two with one id wins):
built-ins (direct subfolders of the built-in folder), pluginDirs (searched recursively) and
installed distributions' `grambot.plugins` entry points. Discovery never imports plugin code
and never touches sys.path; a bad descriptor is recorded in `problems` and skipped, so one
broken plugin never hides the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grambot
from grambot.errors import CatalogError, DescriptorError, Problem

if TYPE_CHECKING:  # descriptor.py (pydantic) is imported when a plugin.json is first read
    from grambot.config.descriptor import PluginDescriptor

    DescriptorLoader = Callable[..., PluginDescriptor]

__all__ = ["ENTRY_POINT_GROUP", "PluginCatalog", "builtin_plugins_dir"]

ENTRY_POINT_GROUP = "grambot.plugins"
DESCRIPTOR_NAME = "plugin.json"  # = grambot.config.descriptor.DESCRIPTOR_NAME

_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", ".venv", "venv"})
MAX_FOLDER_DEPTH = 32  # levels of folders below a pluginDir searched for plugin.json


def builtin_plugins_dir() -> Path | None:
    """The folder of built-in plugins: installed, or the checkout's `builtin_plugins/`."""
    package_dir = Path(grambot.__file__).parent
    installed = package_dir / "_builtin_plugins"
    if installed.is_dir():
        return installed
    checkout = Path(grambot.__file__).resolve().parent.parent / "builtin_plugins"
    if checkout.is_dir():
        return checkout
    return None


class PluginCatalog:
    """Plugin descriptors by id, plus the problems met while discovering them."""

    def __init__(self, *, loader: DescriptorLoader | None = None) -> None:
        self._by_id: dict[str, PluginDescriptor] = {}
        self.problems: list[Problem] = []
        self._loader = loader  # another way to read a plugin.json (grambot.cli.plugin_list)
        # plugin id -> source folder of its editable install (--reload-plugins watches it)
        self.sources: dict[str, Path] = {}

    @classmethod
    def discover(
        cls,
        *,
        builtin_dir: Path | None,
        plugin_dirs: Sequence[Path],
        entry_points: bool = True,
        loader: DescriptorLoader | None = None,
    ) -> PluginCatalog:
        """Collect built-ins, then each pluginDir in order, then entry-point plugins.
        `loader`: reads a plugin.json instead of `load_descriptor` (same arguments)."""
        catalog = cls(loader=loader)
        if builtin_dir is not None:
            catalog._scan_builtins(Path(builtin_dir))
        for directory in plugin_dirs:
            catalog.scan_directory(Path(directory), source="pluginDir")
        if entry_points:
            catalog._scan_entry_points()
        return catalog

    def add(self, descriptor: PluginDescriptor) -> None:
        """Add `descriptor`; `CatalogError` naming both plugin.json files if its id is taken."""
        existing = self._by_id.get(descriptor.id)
        if existing is not None:
            message = (
                f"plugin id {descriptor.id!r} is defined twice: {existing.descriptor_path} "
                f"and {descriptor.descriptor_path}; the first is used"
            )
            raise CatalogError([Problem(descriptor.descriptor_path, "id", message)])
        self._by_id[descriptor.id] = descriptor

    def scan_directory(self, directory: Path, *, source: str) -> None:
        """Add every plugin folder beneath `directory`; problems are recorded, not raised."""
        directory = Path(directory)
        if not directory.exists():
            return
        if not directory.is_dir():
            self.problems.append(Problem(directory, "", "is not a directory"))
            return
        for descriptor_path in self._walk(directory, set()):
            self._load_and_add(descriptor_path, source=source)

    def get(self, plugin_id: str) -> PluginDescriptor | None:
        return self._by_id.get(plugin_id)

    def __contains__(self, plugin_id: object) -> bool:
        return plugin_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def ids(self) -> list[str]:
        return sorted(self._by_id)

    def descriptors(self) -> list[PluginDescriptor]:
        return [self._by_id[plugin_id] for plugin_id in self.ids()]

    def __repr__(self) -> str:
        return f"PluginCatalog(ids={self.ids()!r}, problems={len(self.problems)})"

    # -- discovery ---------------------------------------------------------------------------

    def _load_and_add(
        self, descriptor_path: Path, *, source: str, package_name: str | None = None
    ) -> None:
        if self._loader is None:
            from grambot.config.descriptor import load_descriptor

            self._loader = load_descriptor
        try:
            descriptor = self._loader(descriptor_path, source=source, package_name=package_name)
            self.add(descriptor)
        except (DescriptorError, CatalogError) as exc:
            self.problems.extend(exc.problems)

    def _scan_builtins(self, builtin_dir: Path) -> None:
        if not builtin_dir.is_dir():
            return
        for child in self._subfolders(builtin_dir):
            descriptor_path = child / DESCRIPTOR_NAME
            if descriptor_path.is_file():
                self._load_and_add(descriptor_path, source="builtin")

    def _walk(self, root: Path, seen: set[Path]) -> Iterator[Path]:
        """plugin.json paths beneath `root`, depth first, by name; stops at plugin folders.

        Iterative (a tree of any depth cannot exhaust the stack), and no deeper than
        MAX_FOLDER_DEPTH levels below `root`: the first folder past it is reported once."""
        stack: list[tuple[Path, int]] = [(root, 0)]
        too_deep: Path | None = None
        while stack:
            directory, depth = stack.pop()
            real = directory.resolve()
            if real in seen:  # a symlink loop, or two links to one folder
                continue
            seen.add(real)
            descriptor_path = directory / DESCRIPTOR_NAME
            if os.path.lexists(descriptor_path) and not descriptor_path.is_dir():
                yield descriptor_path  # read (or refused: a FIFO, a device) by load_descriptor
                continue
            children = self._subfolders(directory)
            if children and depth >= MAX_FOLDER_DEPTH:
                too_deep = too_deep or directory
                continue
            stack.extend((child, depth + 1) for child in reversed(children))
        if too_deep is not None:
            self.problems.append(
                Problem(
                    too_deep,
                    "",
                    f"folders nested deeper than {MAX_FOLDER_DEPTH} levels below {root}; "
                    "not searched further (move plugin folders higher up)",
                )
            )

    def _subfolders(self, directory: Path) -> list[Path]:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as exc:
            self.problems.append(Problem(directory, "", f"cannot be listed: {exc.strerror or exc}"))
            return []
        folders = []
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _SKIPPED_DIRS:
                continue
            try:
                if entry.is_dir():
                    folders.append(Path(entry.path))
            except OSError:
                continue
        return folders

    def _scan_entry_points(self) -> None:
        """Installed distributions' plugins (grambot.config.packages: a package holding
        plugin.json, or `module:object`); editable installs' source folders in `sources`."""
        from grambot.config.packages import entry_point_plugins

        for found in entry_point_plugins(self.problems):
            before = set(self._by_id)
            if found.descriptor_path is not None:
                self._load_and_add(
                    found.descriptor_path, source="entry-point", package_name=found.package_name
                )
            else:
                try:
                    self.add(found.descriptor)  # type: ignore[arg-type]  # a PluginDescriptor
                except CatalogError as exc:
                    self.problems.extend(exc.problems)
                    continue
            if found.source is not None:
                for plugin_id in set(self._by_id) - before:
                    self.sources[plugin_id] = found.source
