"""What `grambot plugins` shows, quickly: the catalog, each plugin's settings fields (cached),
and the command that enables it.

Describing a plugin's settings means importing its entry module and building its pydantic
schema: ~30 ms a plugin, ~270 ms for the built-ins. The description depends only on the
plugin's own files and on grambot's and pydantic's versions, so it is kept in a cache file
(`$GRAMBOT_CACHE_DIR`, else `$XDG_CACHE_HOME/grambot`, else `~/.cache/grambot`;
`GRAMBOT_CACHE_DIR=off` disables it) keyed by the stat signature (path, size, mtime) of every
file of the plugin's folder, and so is the validated plugin.json. The settings file is read
only for its `pluginDirs` when it is plain enough (grambot.config.settings, with its pydantic
models, costs ~90 ms to import), so a listing from the cache imports no plugin code and not
pydantic.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grambot.config.identity import PluginIdentity
from grambot.files import write_atomic

if TYPE_CHECKING:
    from grambot.config.catalog import PluginCatalog
    from grambot.config.descriptor import PluginDescriptor

__all__ = ["PluginListing", "cache_dir", "describe", "quick_plugin_dirs"]

CACHE_NAME = "plugin-fields.json"
CACHE_FORMAT = 2
MAX_SIGNATURE_FILES = 2000  # a bigger plugin folder is described afresh every time
# = grambot.config.settings.MAX_FILE_BYTES (not imported: pydantic)
SETTINGS_MAX_BYTES = 5 * 1024 * 1024
CACHE_MAX_BYTES = 16 * 1024 * 1024  # a bigger cache file is ignored (and rewritten)
_SKIPPED = frozenset({"__pycache__", "node_modules", ".venv", "venv"})


def quick_plugin_dirs(workspace: Path) -> tuple[Path, ...] | None:
    """The `pluginDirs` of the workspace's settings file, read as plain JSON; None when the
    file is not plain enough to say (the caller then reads it properly, and reports it)."""
    from grambot.errors import UnsafeFile
    from grambot.files import read_regular

    path = workspace / ".scout" / "settings.json"
    try:
        data = json.loads(read_regular(path, SETTINGS_MAX_BYTES))
    except FileNotFoundError:
        return (workspace / "plugins",)
    except (OSError, UnsafeFile, ValueError, RecursionError):
        return None  # (a FIFO, /dev/zero, too big: grambot.config.settings says so, naming it)
    if not isinstance(data, dict):
        return None
    dirs = data.get("pluginDirs", ["plugins"])
    if not isinstance(dirs, list) or not all(isinstance(d, str) and d for d in dirs):
        return None
    return tuple(workspace / d for d in dirs)


def cache_dir() -> Path | None:
    configured = os.environ.get("GRAMBOT_CACHE_DIR")
    if configured is not None:
        return None if configured in ("", "off") else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "grambot"


class PluginListing:
    """`grambot plugins`: the catalog (plugin.json files read through the cache) and one item
    per plugin."""

    def __init__(self, cache: Path | None) -> None:
        self._cache = _Cache(cache)

    def discover(self, plugin_dirs: tuple[Path, ...]) -> PluginCatalog:
        from grambot.config.catalog import PluginCatalog, builtin_plugins_dir

        return PluginCatalog.discover(
            builtin_dir=builtin_plugins_dir(),
            plugin_dirs=plugin_dirs,
            loader=self._cache.load_descriptor,
        )

    def items(self, catalog: PluginCatalog) -> list[dict[str, Any]]:
        """Its descriptor, settings fields (or the error that prevented reading them), and
        the `enable` and `install` commands, per plugin of `catalog`."""
        from grambot.kit.sdk import missing_sdk

        items = []
        for descriptor in catalog.descriptors():
            item: dict[str, Any] = {
                "id": descriptor.id,
                "name": descriptor.name,
                "description": descriptor.description,
                "source": descriptor.source,
                "folder": str(descriptor.folder),
                "version": descriptor.version,
                "enable": f"grambot enable {descriptor.id}",
                "install": missing_sdk(descriptor.id) if descriptor.source == "builtin" else None,
            }
            item.update(self._cache.describe(descriptor))
            items.append(item)
        self._cache.save()
        return items


@dataclass(frozen=True, kw_only=True)
class _Listed(PluginIdentity):
    """The parts of a PluginDescriptor a listing uses, as cached (no pydantic needed)."""

    package_name: str | None
    version: str | None

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Listed:
        paths = ("folder", "entry_path", "descriptor_path")
        values: dict[str, Any] = {k: Path(v) if k in paths else v for k, v in data.items()}
        return cls(**values)


def _problem(file: str | None, json_path: str, message: str, value: str | None) -> Any:
    from grambot.errors import Problem

    return Problem(None if file is None else Path(file), json_path, message, value)


def describe(descriptor: PluginDescriptor | _Listed) -> dict[str, Any]:
    """`settings` (the fields) and `onboarding`, or `error`: imports the plugin."""
    from grambot.cli.plugin_info import describe_fields, read_plugin
    from grambot.errors import PluginUnreadable

    try:
        definition = read_plugin(descriptor)  # type: ignore[arg-type]  # its parts suffice
    except PluginUnreadable as exc:
        return {"error": str(exc), "settings": []}
    return {
        "settings": [f.to_dict() for f in describe_fields(definition.settings_schema)],
        "onboarding": definition.onboarding is not None,
    }


class _Cache:
    def __init__(self, folder: Path | None) -> None:
        self.path = folder / CACHE_NAME if folder is not None else None
        self.entries: dict[str, Any] = {}
        self.signatures: dict[Path, list[list[Any]] | None] = {}
        self.dirty = False
        if self.path is None:
            return
        self.key = _versions()
        from grambot.errors import UnsafeFile
        from grambot.files import read_regular

        with contextlib.suppress(
            OSError, UnsafeFile, ValueError, RecursionError, TypeError, KeyError
        ):
            data = json.loads(read_regular(self.path, CACHE_MAX_BYTES))
            if data.get("format") == CACHE_FORMAT and data.get("key") == self.key:
                self.entries = dict(data["plugins"])

    def _signature(self, folder: Path) -> list[list[Any]] | None:
        if self.path is None:
            return None
        if folder not in self.signatures:
            self.signatures[folder] = _signature(folder)
        return self.signatures[folder]

    def _entry(self, descriptor_path: Path) -> dict[str, Any] | None:
        """The cached entry of this plugin.json while its folder is unchanged."""
        signature = self._signature(descriptor_path.parent)
        entry = self.entries.get(str(descriptor_path))
        if signature is None or entry is None or entry.get("signature") != signature:
            return None
        return dict(entry)

    def _store(self, descriptor_path: Path, **values: Any) -> None:
        signature = self._signature(descriptor_path.parent)
        if signature is None:
            return
        entry = self._entry(descriptor_path) or {"signature": signature}
        entry.update(values)
        self.entries[str(descriptor_path)] = entry
        self.dirty = True

    def load_descriptor(
        self, path: Path, *, source: str, package_name: str | None = None
    ) -> Any:  # a PluginDescriptor, or its cached parts (_Listed)
        from grambot.errors import DescriptorError, Problem

        path = Path(path)
        key = f"{source}:{package_name}"
        entry = self._entry(path)
        if entry is not None and key in entry.get("read", {}):
            read = entry["read"][key]
            if "problems" in read:
                raise DescriptorError(
                    [Problem(Path(f), j, m, v) for f, j, m, v in read["problems"]]
                )
            return _Listed.from_json(read["descriptor"])
        from grambot.config.descriptor import load_descriptor

        reads = dict((entry or {}).get("read", {}))
        try:
            descriptor = load_descriptor(path, source=source, package_name=package_name)
        except DescriptorError as exc:
            problems = [
                [None if p.file is None else str(p.file), p.json_path, p.message, p.value]
                for p in exc.problems
            ]
            reads[key] = {"problems": problems}
            self._store(path, read=reads)
            raise
        listed = _Listed(
            **{name: getattr(descriptor, name) for name in _Listed.__dataclass_fields__}
        )
        reads[key] = {"descriptor": listed.to_json()}
        self._store(path, read=reads)
        return descriptor

    def describe(self, descriptor: Any) -> dict[str, Any]:
        entry = self._entry(descriptor.descriptor_path)
        if entry is not None and "description" in entry:
            return dict(entry["description"])
        description = describe(descriptor)
        self._store(descriptor.descriptor_path, description=description)
        return description

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        entries = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        data = {"format": CACHE_FORMAT, "key": self.key, "plugins": entries}
        with contextlib.suppress(OSError):  # a read-only home: describe afresh next time
            # A cache: no fsync (losing it costs a rescan), the mode a new file gets.
            write_atomic(self.path, json.dumps(data), mode=None, fsync=False, make_parents=True)


def _versions() -> str:
    """grambot's and pydantic's versions (found without importing pydantic) and Python's."""
    import importlib.metadata

    import grambot

    try:
        pydantic = importlib.metadata.version("pydantic")
    except importlib.metadata.PackageNotFoundError:
        pydantic = "?"
    return f"grambot {grambot.__version__}; pydantic {pydantic}; python {sys.version}"


def _signature(folder: Path) -> list[list[Any]] | None:
    """(relative path, size, mtime) of every file below `folder`, sorted; None if too many
    or unreadable."""
    files: list[list[Any]] = []
    try:
        for relative, st in _files(str(folder), ""):
            files.append([relative, st.st_size, st.st_mtime_ns])
            if len(files) > MAX_SIGNATURE_FILES:
                return None
    except OSError:
        return None
    return sorted(files)


def _files(folder: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _SKIPPED:
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from _files(entry.path, f"{prefix}{entry.name}/")
            elif entry.name.endswith((".pyc", ".pyo")):
                continue
            else:
                yield f"{prefix}{entry.name}", entry.stat()
