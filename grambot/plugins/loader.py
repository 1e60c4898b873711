"""Loads a plugin's modules into a namespace of their own, one per instance.

Each instance gets a package `grambot.instances.<instanceId>__<generation>` whose `__path__` is
the plugin folder. A meta-path finder that answers only for names under `grambot.instances.`
loads that package's modules from code compiled once per process and keyed by the file's
content, so:

* relative imports (`from .helper import x`) work and give the instance its own helper module;
* module globals are never shared between two instances, while third-party packages
  (pydantic, httpx) are imported once as usual;
* tracebacks, dataclasses, pydantic models and `typing.get_type_hints` see real modules with
  real file names;
* an installed plugin package importing itself absolutely (`from myplugin.helper import x`) is
  redirected into the instance's namespace through a per-module `__builtins__` whose
  `__import__` rewrites only that package's name. Nothing global is patched.

The generation suffix keeps a reload from ever waiting on an import lock still held by a
previous, abandoned load of the same instance.

`unload()` removes every module of the namespace from `sys.modules`, the instance's loggers from
the logging manager, and clears typing's caches (which hold strong references to `Optional[X]`
arguments), so that nothing the plugin defined stays reachable.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import itertools
import logging
import sys
import threading
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

NAMESPACE_ROOT = "grambot.instances"
PLUGIN_LOGGER_ROOT = "grambot.plugin"

_generations = itertools.count(1)
ImportHook = Callable[[str, "PluginNamespace"], None]


class CodeCache:
    """Compiled code per source file, reused while the file's bytes are unchanged.

    Keyed by content, not mtime: an edit that keeps size and mtime still recompiles. One entry
    per path, so repeated edits do not grow it.
    """

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[bytes, CodeType]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> CodeType:
        source = path.read_bytes()
        digest = hashlib.blake2b(source, digest_size=16).digest()
        entry = self._entries.get(path)
        if entry is not None and entry[0] == digest:
            return entry[1]
        code = compile(source, str(path), "exec", dont_inherit=True)
        with self._lock:
            self._entries[path] = (digest, code)
        return code


CODE_CACHE = CodeCache()


class PluginNamespace:
    """The modules of one loaded instance, under one package name."""

    def __init__(
        self,
        instance_id: str,
        folder: Path,
        *,
        package_name: str | None = None,
        import_hook: ImportHook | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.folder = folder
        self.name = f"{NAMESPACE_ROOT}.{instance_id}__{next(_generations)}"
        self.self_package = package_name
        self.import_hook = import_hook
        self.builtins: dict[str, Any] | None = None
        if package_name is not None or import_hook is not None:
            self.builtins = dict(builtins.__dict__)
            self.builtins["__import__"] = self._import
        self._loaded = False

    # -- importing -----------------------------------------------------------------------------

    def import_entry(self, entry_path: Path) -> ModuleType:
        """Import the entry module (and, through it, its helpers) into this namespace."""
        relative = entry_path.relative_to(self.folder).with_suffix("")
        parts = [p for p in relative.parts if p != "__init__"]
        _FINDER.add(self)
        self._loaded = True
        module_name = ".".join([self.name, *parts]) if parts else self.name
        return importlib.import_module(module_name)

    def _import(
        self,
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> ModuleType:
        """`__import__` for this namespace's modules: redirect self-imports, check allowlists."""
        if level == 0:
            own = self.self_package
            if own is not None and (name == own or name.startswith(own + ".")):
                target = self.name + name[len(own) :]
                module = builtins.__import__(target, globals, locals, fromlist, 0)
                return module if fromlist else sys.modules[self.name]
            if self.import_hook is not None:
                self.import_hook(name, self)
        return builtins.__import__(name, globals, locals, fromlist, level)

    # -- unloading -----------------------------------------------------------------------------

    def module_names(self) -> list[str]:
        prefix = self.name + "."
        return [n for n in list(sys.modules) if n == self.name or n.startswith(prefix)]

    def unload(self) -> None:
        """Forget every module, logger and cache entry that could keep this namespace alive."""
        _FINDER.remove(self)
        for module_name in self.module_names():
            sys.modules.pop(module_name, None)
        parent = sys.modules.get(NAMESPACE_ROOT)
        if parent is not None:
            parent.__dict__.pop(self.name.rpartition(".")[2], None)
        remove_loggers(self.name, instance_logger_name(self.instance_id))
        _clear_typing_caches()
        self._loaded = False


def instance_logger_name(instance_id: str) -> str:
    return f"{PLUGIN_LOGGER_ROOT}.{instance_id}"


def remove_loggers(*prefixes: str) -> None:
    """Drop loggers named `prefix` or `prefix.*` from the logging manager."""
    manager = logging.Logger.manager
    lock = getattr(logging, "_lock", None)
    if lock is not None:
        lock.acquire()
    try:
        doomed = [
            name
            for name in manager.loggerDict
            if any(name == p or name.startswith(p + ".") for p in prefixes)
        ]
        removed = {manager.loggerDict.pop(name) for name in doomed}
        for holder in manager.loggerDict.values():
            # Placeholders for parent names keep a map of their child loggers.
            logger_map = getattr(holder, "loggerMap", None)
            if logger_map:
                for logger in removed & set(logger_map):
                    del logger_map[logger]
        for logger in removed:
            if isinstance(logger, logging.Logger):
                for handler in list(logger.handlers):
                    logger.removeHandler(handler)
    finally:
        if lock is not None:
            lock.release()


def _clear_typing_caches() -> None:
    # typing memoises Optional[X], list[X], ... with strong references to X.
    for clear in getattr(typing, "_cleanups", ()):
        clear()


class _InstanceLoader(importlib.abc.Loader):
    def __init__(self, namespace: PluginNamespace, path: Path | None) -> None:
        self.namespace = namespace
        self.path = path

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        if self.namespace.builtins is not None:
            module.__dict__["__builtins__"] = self.namespace.builtins
        if self.path is not None:
            exec(CODE_CACHE.get(self.path), module.__dict__)

    def get_source(self, fullname: str) -> str | None:
        return self.path.read_text(encoding="utf-8") if self.path is not None else None


class _InstanceFinder(importlib.abc.MetaPathFinder):
    """Answers only for `grambot.instances.<ns>[.sub...]`; everything else passes by."""

    def __init__(self) -> None:
        self._namespaces: dict[str, PluginNamespace] = {}
        self._prefix = NAMESPACE_ROOT + "."

    def add(self, namespace: PluginNamespace) -> None:
        self._namespaces[namespace.name] = namespace

    def remove(self, namespace: PluginNamespace) -> None:
        self._namespaces.pop(namespace.name, None)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(self._prefix):
            return None
        parts = fullname.split(".")
        namespace = self._namespaces.get(".".join(parts[:3]))
        if namespace is None:
            return None
        base = namespace.folder.joinpath(*parts[3:])
        if base.is_dir():
            init = base / "__init__.py"
            loader = _InstanceLoader(namespace, init if init.is_file() else None)
            spec = importlib.machinery.ModuleSpec(fullname, loader, is_package=True)
            spec.submodule_search_locations = [str(base)]
            if init.is_file():
                spec.origin = str(init)
                spec.has_location = True
            return spec
        source = base.with_suffix(".py")
        if not source.is_file():
            return None
        spec = importlib.machinery.ModuleSpec(fullname, _InstanceLoader(namespace, source))
        spec.origin = str(source)
        spec.has_location = True
        return spec


def _install_finder() -> _InstanceFinder:
    for finder in sys.meta_path:
        if type(finder).__name__ == "_InstanceFinder" and isinstance(finder, _InstanceFinder):
            return finder
    finder = _InstanceFinder()
    sys.meta_path.insert(0, finder)
    return finder


_FINDER = _install_finder()
