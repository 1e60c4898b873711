"""The engine lock: one running engine per workspace.

`grambot run` holds an exclusive lock on `.scout/engine.lock` (filelock: `flock` on POSIX) for
its whole life. The kernel drops the lock when the process dies, however it dies, so the lock,
unlike a pid file, never goes stale. `grambot status` judges "is an engine running?" by trying
the lock without waiting.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from grambot.errors import EngineLocked

if TYPE_CHECKING:
    from filelock import BaseFileLock

__all__ = ["LOCK_NAME", "EngineLock", "EngineLocked", "engine_running"]

LOCK_NAME = "engine.lock"


def _file_lock(scout_dir: Path) -> BaseFileLock:
    from filelock import FileLock

    return FileLock(str(scout_dir / LOCK_NAME), thread_local=False, preserve_lock_file=True)


def recorded_pid(scout_dir: Path) -> int | None:
    """The pid in status.json, if any (informative only: the lock decides)."""
    from grambot.app.status import read_status

    pid = (read_status(scout_dir) or {}).get("pid")
    return pid if isinstance(pid, int) else None


class EngineLock:
    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.scout_dir = workspace / ".scout"
        self._lock: BaseFileLock | None = None

    def acquire(self, timeout: float = 1.0) -> None:
        """Take the lock (waiting up to `timeout` s for a brief `status` probe); EngineLocked."""
        from filelock import Timeout

        self.scout_dir.mkdir(parents=True, exist_ok=True)
        lock = _file_lock(self.scout_dir)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise EngineLocked(
                self.workspace, recorded_pid(self.scout_dir), self.scout_dir / LOCK_NAME
            ) from None
        self._lock = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> EngineLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def engine_running(workspace: Path) -> bool:
    """True when an engine holds the workspace's lock (tries it without waiting)."""
    from filelock import Timeout

    scout_dir = workspace / ".scout"
    if not (scout_dir / LOCK_NAME).exists():
        return False
    lock = _file_lock(scout_dir)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False
