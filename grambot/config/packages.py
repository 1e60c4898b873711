"""Plugins shipped as Python packages: the `grambot.plugins` entry points (docs/plugin-packages.md).

An installed distribution names its plugins in the `grambot.plugins` entry-point group, in
either form:

    [project.entry-points."grambot.plugins"]
    weather = "grambot_weather"                 # a package holding plugin.json
    clock = "grambot_clock.plugin:plugin"       # module:object, no plugin.json needed

* **package**: the value is an importable package (`pkg` or `pkg.sub`) whose folder holds a
  plugin.json (installed as package data), read like any other.
* **module:object**: the value names a module and the object in it that is the plugin (a
  `grambot.Plugin`, an object with `create`, or an execute-style module's `execute`). The plugin
  id is the entry point's name; its name, description and version come from the distribution's
  metadata; the plugin folder is the top-level package's. Manifest fields (`allowedEnv`,
  `timeoutMs`, ...) need the plugin.json form.

Either way the package's own absolute imports (`from grambot_weather.helper import x`) stay
inside the instance's namespace. Locating a plugin never imports it: packages are found on
sys.path folder by folder (`importlib.util.find_spec` of the top-level name only).

A distribution installed in editable mode (`pip install -e`) records its source folder in
`direct_url.json`; `editable_source` finds it, and `grambot run --reload-plugins` watches it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from urllib.parse import unquote, urlparse

from grambot.errors import Problem

__all__ = ["EntryPointPlugin", "editable_source", "entry_point_plugins"]

GROUP = "grambot.plugins"
DESCRIPTOR_NAME = "plugin.json"


@dataclass(frozen=True)
class EntryPointPlugin:
    """One entry point, located: read `descriptor_path` (package form) or use `descriptor`."""

    name: str
    value: str
    package_name: str
    descriptor_path: Path | None = None  # package form
    descriptor: object | None = None  # module:object form: a PluginDescriptor
    source: Path | None = None  # the editable install's source folder


def entry_point_plugins(problems: list[Problem]) -> Iterator[EntryPointPlugin]:
    """Every `grambot.plugins` entry point of the installed distributions, located; what cannot
    be located is appended to `problems` (naming the entry point) and skipped."""
    seen: set[tuple[str, str]] = set()
    for entry_point in importlib.metadata.entry_points(group=GROUP):
        key = (entry_point.name, entry_point.value)
        if key in seen:  # one distribution seen twice on sys.path (e.g. editable + build dir)
            continue
        seen.add(key)
        where = f"entry point {entry_point.name!r} = {entry_point.value!r} ({GROUP})"
        try:
            located = _locate(entry_point, where)
        except _Unusable as exc:
            problems.append(Problem(exc.path, "", f"{where}: {exc}"))
            continue
        yield located


class _Unusable(Exception):
    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


def _locate(entry_point: importlib.metadata.EntryPoint, where: str) -> EntryPointPlugin:
    value = entry_point.value.strip()
    module, _, attribute = (part.strip() for part in value.partition(":"))
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts) or (":" in value and not attribute):
        raise _Unusable(
            "must name a package holding plugin.json ('mypkg') or a module and its plugin "
            "object ('mypkg.plugin:plugin')"
        )
    if attribute and not all(p.isidentifier() for p in attribute.split(".")):
        raise _Unusable(f"{attribute!r} is not an attribute name")
    top = _top_folder(parts[0])
    source = editable_source(entry_point.dist)
    if not attribute:  # the package form
        folder = _subfolder(top, parts[1:], module)
        descriptor_path = folder / DESCRIPTOR_NAME
        if not descriptor_path.is_file():
            raise _Unusable(f"package {module!r} has no {DESCRIPTOR_NAME} in {folder}", folder)
        return EntryPointPlugin(
            entry_point.name, value, module, descriptor_path=descriptor_path, source=source
        )
    entry_path = _module_file(top, parts[1:], module)
    descriptor = _synthesized(entry_point, top, entry_path, attribute, parts[0])
    return EntryPointPlugin(entry_point.name, value, parts[0], descriptor=descriptor, source=source)


def _top_folder(name: str) -> Path:
    """The folder of the top-level package `name` (found, not imported)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        raise _Unusable(f"cannot be located: {exc}") from None
    if spec is None:
        raise _Unusable(f"package {name!r} is not installed")
    locations = list(spec.submodule_search_locations or [])
    if not locations:
        raise _Unusable(f"{name!r} is a module, not a package (a plugin is a package)")
    return Path(locations[0])


def _subfolder(top: Path, parts: list[str], module: str) -> Path:
    folder = top
    for part in parts:
        folder = folder / part
        if not folder.is_dir():
            raise _Unusable(f"package {module!r} is not installed (no folder {folder})")
    return folder


def _module_file(top: Path, parts: list[str], module: str) -> Path:
    if not parts:
        init = top / "__init__.py"
        if init.is_file():
            return init
        raise _Unusable(f"package {module!r} has no __init__.py in {top}", top)
    folder = _subfolder(top, parts[:-1], module)
    for candidate in (folder / f"{parts[-1]}.py", folder / parts[-1] / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise _Unusable(f"module {module!r} is not installed (no {parts[-1]}.py in {folder})", folder)


def _synthesized(
    entry_point: importlib.metadata.EntryPoint,
    top: Path,
    entry_path: Path,
    attribute: str,
    package: str,
) -> object:
    from grambot.config.descriptor import PLUGIN_ID_PATTERN, PluginDescriptor
    from grambot.config.names import is_valid_id

    if not is_valid_id(entry_point.name):
        raise _Unusable(f"its name is the plugin id and must match {PLUGIN_ID_PATTERN}")
    metadata = entry_point.dist.metadata if entry_point.dist is not None else None
    version = metadata["Version"] if metadata is not None else None
    summary = (metadata["Summary"] if metadata is not None else None) or ""
    folder = top.resolve()
    entry_path = entry_path.resolve()
    entry = entry_path.relative_to(folder).as_posix()
    raw = {"id": entry_point.name, "name": entry_point.name, "entry": entry}
    raw |= {"description": summary, "version": version} if version else {"description": summary}
    return PluginDescriptor(
        id=entry_point.name,
        name=entry_point.name,
        description=summary,
        entry=entry,
        folder=folder,
        entry_path=entry_path,
        descriptor_path=entry_path,  # no plugin.json: the module stands for it in messages
        source="entry-point",
        package_name=package,
        version=version,
        attribute=attribute,
        raw=MappingProxyType(raw),
    )


def editable_source(dist: importlib.metadata.Distribution | None) -> Path | None:
    """The source folder of a distribution installed in editable mode (`pip install -e`),
    from its `direct_url.json` (PEP 610); None otherwise."""
    if dist is None:
        return None
    try:
        text = dist.read_text("direct_url.json")
        data = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not (data.get("dir_info") or {}).get("editable"):
        return None
    url = urlparse(str(data.get("url", "")))
    if url.scheme != "file":
        return None
    folder = Path(unquote(url.path))
    return folder if folder.is_dir() else None
