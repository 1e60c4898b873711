"""File watching for the running engine (watchfiles), and reading settings.json while running.

Watching `.scout/settings.json` itself loses every edit after the first rename-save (the
watched inode is gone), so the `.scout/` folder is watched, non-recursively (instances write
their data below it), and events are filtered by file name. Plugin folders are watched
recursively for catalog rescans and `--reload-plugins`.

With a small `step` watchfiles reports a rename-save in ~10 ms (DESIGN §7); `debounce` bounds
how long a burst is grouped before it is reported anyway.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grambot.config.settings import MAX_FILE_BYTES, EngineSettings, parse_settings, settings_path
from grambot.errors import Problem, SettingsError, UnsafeFile
from grambot.files import read_regular

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "LiveRead",
    "PluginDirsWatch",
    "nearest_existing",
    "read_live_settings",
    "watch_appearing",
    "watch_files",
    "watch_trees",
]

logger = logging.getLogger(__name__)

STEP_MS = 5
DEBOUNCE_MS = 150
_IGNORED_DIRS = frozenset({"__pycache__", "node_modules", ".venv", "venv"})
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", ".tmp", "~")


@dataclass(frozen=True)
class LiveRead:
    """One read of settings.json by the running engine.

    `kind`: "ok" (`settings` set), "transient" (missing or empty: nothing should change) or
    "invalid" (`error` set). `digest` identifies the bytes read ("" when there were none).
    """

    kind: str
    digest: str
    settings: EngineSettings | None = None
    error: SettingsError | None = None
    reason: str = ""


def read_live_settings(workspace: Path) -> LiveRead:
    path = settings_path(workspace)
    try:
        data = read_regular(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        return LiveRead("transient", "", reason="is missing")
    except UnsafeFile as exc:  # a FIFO, a device, a huge file: never read, an invalid edit
        error = SettingsError([Problem(path, "", exc.reason)])
        return LiveRead("invalid", f"unsafe:{exc.reason}", error=error)
    except OSError as exc:
        return LiveRead("transient", "", reason=f"cannot be read ({exc.strerror or exc})")
    if not data.strip(b" \t\r\n"):
        return LiveRead("transient", "", reason="is empty")
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        settings = parse_settings(data, path=path, workspace=workspace)
    except SettingsError as exc:
        return LiveRead("invalid", digest, error=exc)
    return LiveRead("ok", digest, settings=settings)


async def watch_files(
    folders: Iterable[Path], accept: Callable[[Path], bool], stop: asyncio.Event
) -> AsyncIterator[set[Path]]:
    """Files directly in `folders` (not below) that changed and that `accept` takes, batch by
    batch, until `stop`."""
    from watchfiles import awatch

    async for changes in awatch(
        *folders,
        watch_filter=lambda _change, path: accept(Path(path)),
        debounce=DEBOUNCE_MS,
        step=STEP_MS,
        recursive=False,
        stop_event=stop,
    ):
        yield {Path(p) for _, p in changes}


def _interesting(root_parts: dict[Path, int], path: Path) -> bool:
    for root, depth in root_parts.items():
        if path.is_relative_to(root):
            rel = path.parts[depth:]
            break
    else:
        return False
    if any(p.startswith(".") or p in _IGNORED_DIRS for p in rel):
        return False
    return not path.name.endswith(_IGNORED_SUFFIXES)


async def watch_trees(roots: list[Path], stop: asyncio.Event) -> AsyncIterator[set[Path]]:
    """Paths below `roots` (existing folders) that changed; hidden, cache and temp files skipped."""
    from watchfiles import awatch

    depths = {root: len(root.parts) for root in roots}

    def accept(_change: object, path: str) -> bool:
        return _interesting(depths, Path(path))

    async for changes in awatch(
        *roots, watch_filter=accept, debounce=DEBOUNCE_MS, step=STEP_MS, stop_event=stop
    ):
        yield {Path(p) for _, p in changes}


def nearest_existing(path: Path) -> Path:
    """The closest folder at or above `path` that exists."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(path.anchor or "/")


async def watch_appearing(folders: Iterable[Path], stop: asyncio.Event) -> AsyncIterator[set[Path]]:
    """Changes that may make one of `folders` (missing now) appear, until `stop`.

    Each missing folder is watched through its nearest existing ancestor, non-recursively,
    for the next component of its path: `a/b/c` with only `a` existing watches `a` for `b`.
    The caller looks again after each batch (the ancestor may have moved one level down)."""
    from watchfiles import awatch

    targets: dict[Path, set[Path]] = {}
    for folder in folders:
        ancestor = nearest_existing(folder)
        if ancestor == folder or not folder.is_relative_to(ancestor):
            continue
        targets.setdefault(ancestor, set()).add(ancestor / folder.relative_to(ancestor).parts[0])
    if not targets:
        return
    wanted = {p for names in targets.values() for p in names}
    async for changes in awatch(
        *targets,
        watch_filter=lambda _change, path: Path(path) in wanted,
        debounce=DEBOUNCE_MS,
        step=STEP_MS,
        recursive=False,
        stop_event=stop,
    ):
        yield {Path(p) for _, p in changes}


class PluginDirsWatch:
    """Watches the pluginDirs for the running engine: the existing ones recursively (their
    plugin files), the missing ones through their nearest existing ancestor, so that a folder
    created after start is watched as soon as it appears. `on_changes(paths)` is called on the
    loop with what changed; a folder that appeared is reported once its own watch is running
    (the caller then rescans: anything already inside is found)."""

    def __init__(self, on_changes: Callable[[set[Path]], None]) -> None:
        self._on_changes = on_changes
        self._following: tuple[tuple[Path, ...], tuple[Path, ...]] | None = None
        self._dirs: tuple[Path, ...] = ()
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def follow(self, plugin_dirs: Iterable[Path]) -> None:
        """Watch these pluginDirs (restarts the watches only when something changed)."""
        import asyncio

        self._dirs = tuple(plugin_dirs)
        existing = tuple(sorted({d.resolve() for d in self._dirs if d.is_dir()}))
        missing = tuple(sorted({d.absolute() for d in self._dirs if not d.is_dir()}))
        if (existing, missing) == self._following:
            return
        self.stop()
        self._following = (existing, missing)
        stop = self._stop = asyncio.Event()
        if existing:
            self._tasks.append(
                asyncio.create_task(self._trees(existing, stop), name="grambot-watch-plugins")
            )
        if missing:
            self._tasks.append(
                asyncio.create_task(
                    self._appearing(missing, stop), name="grambot-watch-plugin-dirs"
                )
            )

    def stop(self) -> list[asyncio.Task[None]]:
        """Stop watching; returns the tasks that are ending (to await, if one likes)."""
        if self._stop is not None:
            self._stop.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        self._stop, self._following = None, None
        return tasks

    async def _trees(self, dirs: tuple[Path, ...], stop: asyncio.Event) -> None:
        try:
            async for changed in watch_trees(list(dirs), stop):
                self._on_changes(changed)
        except Exception:
            logger.exception("watching plugin folders %s failed", ", ".join(map(str, dirs)))
            self._following = None  # the next follow() starts a new watch

    async def _appearing(self, missing: tuple[Path, ...], stop: asyncio.Event) -> None:
        import asyncio

        try:
            async for _ in watch_appearing(missing, stop):
                # Something changed on the way: look again (a folder appeared, or the nearest
                # existing ancestor moved down a level), from outside this task, which ends.
                appeared = {d for d in missing if d.is_dir()}
                self._following = None
                asyncio.get_running_loop().call_soon(self._refollow, appeared)
                return
        except Exception:
            logger.exception("watching for plugin folders %s failed", ", ".join(map(str, missing)))
            self._following = None

    def _refollow(self, appeared: set[Path]) -> None:
        import asyncio

        self.follow(self._dirs)
        if appeared:
            self._tasks.append(asyncio.create_task(self._report(appeared)))

    async def _report(self, appeared: set[Path]) -> None:
        import asyncio

        for _ in range(3):  # let the new watches start (watchfiles watches synchronously
            await asyncio.sleep(0)  # in its first step) before anyone rescans
        self._on_changes(appeared)
