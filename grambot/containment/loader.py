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
  redirected into the instance's namespace. Nothing global is patched: namespace modules get a
  `__builtins__` of their own (one dict shared by all namespaces) whose `__import__` hands
  their imports to their namespace, which also resolves their relative imports itself,
  without importlib's per-module machinery (see `PluginNamespace.load`).

The generation suffix keeps a reload from ever waiting on an import lock still held by a
previous, abandoned load of the same instance.

`unload()` removes every module of the namespace from `sys.modules`, the instance's loggers from
the logging manager, and clears the standard library's caches that hold strong references to
the plugin's classes (typing's `Optional[X]` arguments; inspect's class MROs on CPython 3.12.0 to
3.12.3), so that nothing the plugin defined stays reachable.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import itertools
import logging
import os
import stat
import sys
import threading
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from grambot.errors import UnsafeFile
from grambot.files import read_regular

NAMESPACE_ROOT = "grambot.instances"
MAX_MODULE_BYTES = 16 * 1024 * 1024  # a bigger plugin module is refused, never read
PLUGIN_LOGGER_ROOT = "grambot.plugin"

_generations = itertools.count(1)
ImportHook = Callable[[str, "PluginNamespace"], None]


class CodeCache:
    """Compiled code per source file, reused while the file's bytes are unchanged.

    Keyed by content, not mtime: an edit that keeps size and mtime still recompiles. One entry
    per path, so repeated edits do not grow it.

    Reading and hashing every module of every instance costs more than executing small ones,
    so an entry also keeps the file's stat signature (mtime, ctime, size, inode): when that is
    unchanged and the entry was recorded at least `RACY_SECONDS` after the file last changed,
    the file is not read again. Any write changes the ctime (which `os.utime` cannot set back),
    and the delay covers filesystems whose timestamps are coarse: a file written again within
    the same clock tick is re-read, as git does with its "racily clean" entries.
    """

    RACY_SECONDS = 2.0

    def __init__(self) -> None:
        self._entries: dict[str, _CodeEntry] = {}
        self._lock = threading.Lock()

    def get(self, path: Path | str, snapshot: LoaderSnapshot | None = None) -> CodeType:
        """The code of `path` as `snapshot` first saw it, while it is open; else as on disk."""
        key = str(path)
        if snapshot is None or not snapshot.open:
            return self._checked(key)
        code = snapshot.codes.get(key)
        if code is None:  # two threads at once take the same one
            code = snapshot.codes.setdefault(key, self._checked(key))
        return code

    def _checked(self, key: str) -> CodeType:
        entry = self._entries.get(key)
        st = os.stat(key)
        signature = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        if entry is not None and entry.trusted and entry.signature == signature:
            return entry.code
        try:
            source = read_regular(key, MAX_MODULE_BYTES)
        except UnsafeFile as exc:  # a FIFO or a device would block or never end
            raise ImportError(str(exc), path=key) from None
        digest = hashlib.blake2b(source, digest_size=16).digest()
        if entry is not None and entry.digest == digest:
            code = entry.code
        else:
            code = compile(source, key, "exec", dont_inherit=True)
        changed = max(st.st_mtime_ns, st.st_ctime_ns) / 1e9
        trusted = time.time() - changed >= self.RACY_SECONDS
        with self._lock:
            self._entries[key] = _CodeEntry(signature, digest, code, trusted)
        return code


@dataclass(slots=True, eq=False)
class _CodeEntry:
    signature: tuple[int, int, int, int]
    digest: bytes
    code: CodeType
    trusted: bool


# -- snapshots ----------------------------------------------------------------------------------


class LoaderSnapshot:
    """One view of the plugin files, for the loads that are handed it: while it is open, each
    plugin file and folder is checked against the disk once.

    The manager opens one around each batch of loads and passes it to every load of the batch
    (`PluginNamespace.import_entry`): the instances it loads see the same code (an edit made
    meanwhile applies from the next batch), and the stat calls that would otherwise check every
    module of every instance again (each one a GIL hand-off for the worker thread doing the
    import) happen once per file. Without a snapshot, or once it is closed, every use checks.

    It keeps what it handed out (path -> code, folder -> listing), so two snapshots open at once
    (two engines reconciling) each see the files as they first read them. Thread-safe: the
    loads of a batch import in several stage workers at once; an entry is added with
    `dict.setdefault` (the first one stays), and `open` only ever goes from True to False.
    """

    __slots__ = ("codes", "listings", "open")

    def __init__(self) -> None:
        self.open = True
        self.codes: dict[str, CodeType] = {}
        self.listings: dict[str, tuple[frozenset[str], frozenset[str]] | None] = {}

    def __enter__(self) -> LoaderSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.open = False
        self.codes.clear()  # the code stays in CODE_CACHE; this view is done
        self.listings.clear()


# The finder below is on sys.meta_path and Python's import system is one per process, so the
# code it executes (CODE_CACHE) and the folder listings it reads (_listings) are kept per
# process too: module-level, shared by every engine, keyed by path and checked against the disk.
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
        self.folder_str = str(folder)
        self.name = f"{NAMESPACE_ROOT}.{instance_id}__{next(_generations)}"
        self._prefix = self.name + "."
        self.self_package = package_name
        self.import_hook = import_hook
        self.modules: set[str] = set()  # names the finder gave a spec for
        self._lock = threading.RLock()  # one per namespace: imports inside it cannot deadlock
        self.loader = _InstanceLoader(self)
        self._loaded = False
        self.snapshot: LoaderSnapshot | None = None  # the view its imports read the files in
        _refresh_builtins()

    # -- importing -----------------------------------------------------------------------------

    def import_entry(self, entry_path: Path, snapshot: LoaderSnapshot | None = None) -> ModuleType:
        """Import the entry module (and, through it, its helpers) into this namespace; while
        `snapshot` is open, this namespace's imports read the files as it sees them."""
        self.snapshot = snapshot
        _FINDER.add(self)
        self._loaded = True
        return self.load(self.name + _entry_suffix(self.folder_str, str(entry_path)))

    def load(self, fullname: str) -> ModuleType:
        """This namespace's module `fullname`, executed on first use (parents first).

        Does what importlib does for these modules (spec from our finder, module attributes,
        sys.modules, the parent's attribute) without its per-module lock objects, meta-path
        walk and bytecode-cache path computations, which cost about as much as executing a
        small module. Importing inside a namespace is serialised by the namespace's own lock;
        importlib's path (`importlib.import_module` of a namespace module) takes it too.
        """
        module = sys.modules.get(fullname)
        if module is not None:
            if not getattr(module.__spec__, "_initializing", False):
                return module
            with self._lock:  # another thread is executing it: wait (same thread: circular)
                return sys.modules.get(fullname, module)
        with self._lock:
            module = sys.modules.get(fullname)
            if module is not None:
                return module
            parent, _, child = fullname.rpartition(".")
            parent_module = self.load(parent) if fullname != self.name else None
            spec = _FINDER.find_spec(fullname)
            if spec is None or spec.loader is None:
                raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
            module = ModuleType(fullname)
            module.__spec__ = spec
            module.__loader__ = spec.loader
            if spec.submodule_search_locations is not None:
                module.__package__ = fullname
                module.__path__ = spec.submodule_search_locations
            else:
                module.__package__ = parent
            if spec.has_location and spec.origin is not None:
                module.__file__ = spec.origin
            spec._initializing = True  # type: ignore[attr-defined]
            sys.modules[fullname] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(fullname, None)
                raise
            finally:
                spec._initializing = False  # type: ignore[attr-defined]
            module = sys.modules.get(fullname, module)
            if parent_module is not None:
                setattr(parent_module, child, module)
            return module

    def _import(
        self,
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        """`__import__` for this namespace's modules: its own relative imports directly,
        self-imports redirected, allowlists checked; anything else as usual."""
        if level > 0:
            package = globals.get("__package__") if globals is not None else None
            if fromlist and package and (package == self.name or package.startswith(self._prefix)):
                bits = package.rsplit(".", level - 1)
                target = bits[0] if not name else f"{bits[0]}.{name}"
                if len(bits) == level and (target == self.name or target.startswith(self._prefix)):
                    return self._from(target, fromlist)
            return _real_import(name, globals, locals, fromlist, level)
        own = self.self_package
        if own is not None and (name == own or name.startswith(own + ".")):
            target = self.name + name[len(own) :]
            module = _real_import(target, globals, locals, fromlist, 0)
            return module if fromlist else sys.modules[self.name]
        if self.import_hook is not None:
            self.import_hook(name, self)
        return _real_import(name, globals, locals, fromlist, level)

    def _from(self, target: str, fromlist: Sequence[str]) -> ModuleType:
        """`from <target> import a, b`: submodules not yet attributes are imported."""
        module = self.load(target)
        if hasattr(module, "__path__"):
            for item in fromlist:
                if item == "*" or hasattr(module, item):
                    continue  # `*`: importlib would read __all__; plugins rarely do this
                try:
                    self.load(f"{target}.{item}")
                except ModuleNotFoundError as exc:
                    if exc.name != f"{target}.{item}":
                        raise
                    # not a submodule: `from . import x` then fails with "cannot import name"
        return module

    # -- unloading -----------------------------------------------------------------------------

    def module_names(self) -> list[str]:
        """This namespace's modules now in sys.modules (the finder records every one it made:
        no scan of sys.modules, which holds every other instance's modules too)."""
        modules = sys.modules
        return sorted(n for n in self.modules if n in modules)

    def unload(self) -> None:
        """Forget every module, logger and cache entry that could keep this namespace alive."""
        _FINDER.remove(self)
        for module_name in self.module_names():
            sys.modules.pop(module_name, None)
        _FINDER.disown(self)
        self.modules.clear()
        parent = sys.modules.get(NAMESPACE_ROOT)
        if parent is not None:
            parent.__dict__.pop(self.name.rpartition(".")[2], None)
        remove_loggers(self.name, instance_logger_name(self.instance_id))
        _clear_stdlib_caches()
        self._loaded = False


@functools.lru_cache(maxsize=256)
def _entry_suffix(folder: str, entry_path: str) -> str:
    """`.sub.module` for `folder/sub/module.py` ("" for `folder/__init__.py`): the same for
    every instance of a plugin, so computed once (pathlib is slow)."""
    relative = Path(entry_path).relative_to(folder).with_suffix("")
    return "".join(f".{p}" for p in relative.parts if p != "__init__")


def instance_logger_name(instance_id: str) -> str:
    return f"{PLUGIN_LOGGER_ROOT}.{instance_id}"


def remove_loggers(*prefixes: str) -> None:
    """Drop loggers named `prefix` or `prefix.*` from the logging manager."""
    manager = logging.Logger.manager
    exact = set(prefixes)
    children = tuple(p + "." for p in prefixes)
    lock = getattr(logging, "_lock", None)
    if lock is not None:
        lock.acquire()
    try:
        loggers = manager.loggerDict
        doomed = [name for name in loggers if name in exact or name.startswith(children)]
        removed = [(name, loggers.pop(name)) for name in doomed]
        for name, logger in removed:
            if not isinstance(logger, logging.Logger):
                continue  # a placeholder: only loggers are listed in other placeholders
            # Placeholders for ancestor names keep a map of their descendant loggers.
            parts = name.split(".")
            for i in range(len(parts) - 1, 0, -1):
                holder = loggers.get(".".join(parts[:i]))
                if isinstance(holder, logging.PlaceHolder):
                    holder.loggerMap.pop(logger, None)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
    finally:
        if lock is not None:
            lock.release()


def _clear_stdlib_caches() -> None:
    """Empty the standard library's memo caches that keep classes alive."""
    # typing memoises Optional[X], list[X], ... with strong references to X.
    for clear in getattr(typing, "_cleanups", ()):
        clear()
    # From 3.12, isinstance() against a runtime-checkable Protocol (the registrar's checks of
    # every tool, connector and provider) calls inspect.getattr_static, which memoises each
    # class's MRO in an lru_cache of 128 entries. CPython 3.12.0 to 3.12.3 key it by the MRO
    # tuple itself, a strong reference to the class (gh-118013; later versions key it by weak
    # references). inspect is not imported for this: without it there is no cache.
    inspect = sys.modules.get("inspect")
    shadowed = getattr(inspect, "_shadowed_dict_from_mro_tuple", None)
    if shadowed is not None:
        shadowed.cache_clear()


class _InstanceLoader(importlib.abc.Loader):
    """Executes a namespace's modules; one per namespace (a module's file is its spec's
    origin, None for a package folder without `__init__.py`)."""

    def __init__(self, namespace: PluginNamespace) -> None:
        self.namespace = namespace

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__["__builtins__"] = _BUILTINS
        spec = module.__spec__
        if spec is not None and spec.has_location and spec.origin is not None:
            code = CODE_CACHE.get(spec.origin, self.namespace.snapshot)
            with self.namespace._lock:
                exec(code, module.__dict__)

    def get_source(self, fullname: str) -> str | None:
        module = sys.modules.get(fullname)
        spec = getattr(module, "__spec__", None)
        if spec is None or not spec.has_location or spec.origin is None:
            return None
        try:  # tracebacks ask for it: never block on a file swapped for a FIFO
            return read_regular(spec.origin, MAX_MODULE_BYTES).decode("utf-8")
        except (OSError, UnsafeFile, UnicodeDecodeError):
            return None


class _InstanceFinder(importlib.abc.MetaPathFinder):
    """Answers only for `grambot.instances.<ns>[.sub...]`; everything else passes by."""

    def __init__(self) -> None:
        self._namespaces: dict[str, PluginNamespace] = {}
        self._owners: dict[str, PluginNamespace] = {}  # module name -> its namespace
        self._prefix = NAMESPACE_ROOT + "."

    def add(self, namespace: PluginNamespace) -> None:
        self._namespaces[namespace.name] = namespace

    def remove(self, namespace: PluginNamespace) -> None:
        self._namespaces.pop(namespace.name, None)

    def owner(self, module_name: str) -> PluginNamespace | None:
        return self._owners.get(module_name)

    def _own(self, fullname: str, namespace: PluginNamespace) -> None:
        namespace.modules.add(fullname)
        self._owners[fullname] = namespace

    def disown(self, namespace: PluginNamespace) -> None:
        for name in namespace.modules:
            if self._owners.get(name) is namespace:
                del self._owners[name]

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(self._prefix):
            return None
        parts = fullname.split(".")
        namespace = self._namespaces.get(".".join(parts[:3]))
        if namespace is None:
            return None
        relative = parts[3:]
        if relative:
            folder = os.sep.join([namespace.folder_str, *relative[:-1]])
            listing = _listing(folder, namespace.snapshot)
            if listing is None:
                return None
            files, folders = listing
            name = relative[-1]
            if name in folders:
                base = f"{folder}{os.sep}{name}"
            elif name + ".py" in files:
                source = f"{folder}{os.sep}{name}.py"
                spec = importlib.machinery.ModuleSpec(fullname, namespace.loader)
                spec.origin = source
                spec.has_location = True
                self._own(fullname, namespace)
                return spec
            else:
                return None
        else:
            base = namespace.folder_str
        inner = _listing(base, namespace.snapshot)
        if inner is None:
            return None
        init = f"{base}{os.sep}__init__.py" if "__init__.py" in inner[0] else None
        spec = importlib.machinery.ModuleSpec(fullname, namespace.loader, is_package=True)
        spec.submodule_search_locations = [base]
        if init is not None:
            spec.origin = init
            spec.has_location = True
        self._own(fullname, namespace)
        return spec


# folder -> (mtime_ns, trusted, files, folders)
_listings: dict[str, tuple[int, bool, frozenset[str], frozenset[str]]] = {}


def _listing(
    folder: str, snapshot: LoaderSnapshot | None
) -> tuple[frozenset[str], frozenset[str]] | None:
    """`_checked_listing(folder)` as `snapshot` first saw it, while it is open."""
    if snapshot is None or not snapshot.open:
        return _checked_listing(folder)
    listings = snapshot.listings
    if folder in listings:
        return listings[folder]
    return listings.setdefault(folder, _checked_listing(folder))


def _checked_listing(folder: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """(file names, folder names) in `folder`, or None if it is not a folder.

    Cached while the folder's mtime is unchanged (adding, removing or renaming an entry
    changes it), with the same racily-clean rule as CodeCache: one stat instead of two per
    module imported.
    """
    cached = _listings.get(folder)
    try:
        st = os.stat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    if cached is not None and cached[1] and cached[0] == st.st_mtime_ns:
        return cached[2], cached[3]
    files: set[str] = set()
    folders: set[str] = set()
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_dir():
                        folders.add(entry.name)
                    else:  # a FIFO or a device too: reading it is refused with its path
                        files.add(entry.name)
                except OSError:
                    continue
    except OSError:
        return None
    trusted = time.time() - st.st_mtime_ns / 1e9 >= CodeCache.RACY_SECONDS
    result = (frozenset(files), frozenset(folders))
    _listings[folder] = (st.st_mtime_ns, trusted, *result)
    return result


def _install_finder() -> _InstanceFinder:
    for finder in sys.meta_path:
        if type(finder).__name__ == "_InstanceFinder" and isinstance(finder, _InstanceFinder):
            return finder
    finder = _InstanceFinder()
    sys.meta_path.insert(0, finder)
    return finder


_FINDER = _install_finder()


def _real_import(
    name: str,
    globals: Mapping[str, Any] | None = None,
    locals: Mapping[str, Any] | None = None,
    fromlist: Sequence[str] | None = (),
    level: int = 0,
) -> ModuleType:
    return builtins.__import__(name, globals, locals, fromlist, level)


def _namespace_import(
    name: str,
    globals: Mapping[str, Any] | None = None,
    locals: Mapping[str, Any] | None = None,
    fromlist: Sequence[str] | None = (),
    level: int = 0,
) -> ModuleType:
    """The `__import__` of every namespace module: hands over to the module's namespace."""
    if globals is None:  # an explicit `__import__(name)` call: the caller's module decides
        globals = sys._getframe(1).f_globals
    module_name = globals.get("__name__")
    namespace = _FINDER.owner(module_name) if isinstance(module_name, str) else None
    if namespace is None or (
        level == 0 and namespace.self_package is None and namespace.import_hook is None
    ):
        return builtins.__import__(name, globals, locals, fromlist, level)
    return namespace._import(name, globals, locals, fromlist, level)


# The `__builtins__` of every namespace module: the builtins with `__import__` replaced. One
# dict for all of them (a copy per instance would cost 5 KB each), refreshed whenever a
# namespace is created so that later additions to builtins show up. Nothing global is patched.
_BUILTINS: dict[str, Any] = {}


_BUILTINS_SEEN = [-1]  # len(builtins.__dict__) at the last refresh


def _refresh_builtins() -> None:
    # Only when builtins gained or lost a name: writing into a dict that a thousand modules
    # use as __builtins__ is not free (it showed as 80 us a load in bench/scale.py).
    if len(builtins.__dict__) == _BUILTINS_SEEN[0]:
        return
    _BUILTINS.update(builtins.__dict__)
    _BUILTINS["__import__"] = _namespace_import
    _BUILTINS_SEEN[0] = len(builtins.__dict__)


_refresh_builtins()
