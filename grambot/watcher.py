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
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grambot.errors import SettingsError
from grambot.settings import EngineSettings, parse_settings, settings_path

if TYPE_CHECKING:
    import asyncio

__all__ = ["LiveRead", "read_live_settings", "watch_files", "watch_trees"]

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
        data = path.read_bytes()
    except FileNotFoundError:
        return LiveRead("transient", "", reason="is missing")
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
