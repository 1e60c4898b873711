""".scout/status.json: what the running engine reports about its instances (DESIGN §3).

    {"pid": 123, "startedAt": "...", "updatedAt": "...", "heartbeatSeconds": 5,
     "ignoredEdit": null | {"at", "problems": [...]}, "settingsProblems": [...],
     "instances": [{"instanceId", "pluginId", "state", "reason", "error", "since",
     "registrations": {"connectors": [], "inference": [], "tools": [], "images": []},
     "attempt", "nextAttemptAt", "held": [...], "health": {...} | null, "stalls": 0}],
     "inbox": {"accepted", "handling", "pending", "sending", "uncertain", "uncertainAtStart",
     "activeChats"}, "schedule": {"jobs", "active"}}

`StatusWriter` listens to the engine's state changes and rewrites the file atomically (temp
file + rename), coalesced: the first change after a quiet period is written at once, later ones
at most every `min_interval` seconds, so a reconcile of 1000 instances costs a handful of writes.
The file is also rewritten every `heartbeat` seconds **from the event loop** (`updatedAt`): a
frozen loop stops the heartbeat, so a reader can tell a live engine from a stuck one
(`is_stale`: older than `STALE_BEATS` heartbeats).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grambot.errors import UnsafeFile
from grambot.files import read_regular, write_atomic

if TYPE_CHECKING:
    import asyncio

    from grambot.engine import Engine

__all__ = ["STALE_BEATS", "STATUS_NAME", "StatusWriter", "is_stale", "read_status"]

logger = logging.getLogger(__name__)

STATUS_NAME = "status.json"
STALE_BEATS = 3  # a status older than this many heartbeats (15 s by default) is stale
MAX_STATUS_BYTES = 64 * 1024 * 1024  # a status file is never this big: refused, not read


def is_stale(status: dict[str, Any], now: float | None = None) -> bool:
    """Whether the engine that wrote `status` has stopped beating (a frozen event loop)."""
    try:
        updated = datetime.fromisoformat(str(status["updatedAt"])).timestamp()
        beat = float(status.get("heartbeatSeconds") or 5.0)
    except (KeyError, ValueError, TypeError):
        return True
    return (time.time() if now is None else now) - updated > STALE_BEATS * beat


def read_status(scout_dir: Path) -> dict[str, Any] | None:
    """The status file's content, or None when it is missing or unreadable."""
    try:
        data = json.loads(read_regular(scout_dir / STATUS_NAME, MAX_STATUS_BYTES))
    except (OSError, ValueError, UnsafeFile):
        return None
    return data if isinstance(data, dict) else None


class StatusWriter:
    def __init__(
        self,
        scout_dir: Path,
        engine: Engine,
        *,
        min_interval: float = 0.25,
        pid: int | None = None,
        heartbeat: float = 5.0,
    ) -> None:
        self.path = scout_dir / STATUS_NAME
        self.engine = engine
        self.min_interval = min_interval
        self.heartbeat = heartbeat
        self._beat: asyncio.TimerHandle | None = None
        self.pid = os.getpid() if pid is None else pid
        self.started_at = datetime.now(UTC).isoformat()
        self.writes = 0
        self._last_write = float("-inf")
        self._pending: asyncio.TimerHandle | None = None
        self._remove_listener = engine.add_listener(self.mark)

    def snapshot(self) -> dict[str, Any]:
        ignored = self.engine.ignored_edit
        return {
            "pid": self.pid,
            "startedAt": self.started_at,
            "updatedAt": datetime.now(UTC).isoformat(),
            "heartbeatSeconds": self.heartbeat,
            "ignoredEdit": ignored.to_status() if ignored is not None else None,
            # problems of entries of the file in force (an entry left out, held or not)
            "settingsProblems": [str(p) for p in self.engine.settings.problems],
            "instances": [i.to_status() for i in self.engine.instances()],
            "inbox": self.engine.inbox_status(),  # durable inbox (docs/state.md)
            "schedule": self.engine.schedule_status(),
        }

    def start_heartbeat(self) -> None:
        """Rewrite the file every `heartbeat` seconds from the running loop."""
        import asyncio

        def beat() -> None:
            self.write_now()
            self._beat = asyncio.get_running_loop().call_later(self.heartbeat, beat)

        self._beat = asyncio.get_running_loop().call_later(self.heartbeat, beat)

    def mark(self) -> None:
        """Note a state change: write now if quiet long enough, else once the interval ends."""
        if self._pending is not None and not self._pending.cancelled():
            return
        import asyncio  # here, so that `grambot status` (which only reads) stays light

        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_write + self.min_interval - time.monotonic())
        self._pending = loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._pending = None
        self.write_now()

    def flush(self) -> None:
        """Write now what is pending (e.g. before announcing readiness)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self.write_now()

    def write_now(self) -> None:
        self._last_write = time.monotonic()
        payload = json.dumps(self.snapshot(), indent=2).encode() + b"\n"
        try:
            # Rewritten every heartbeat: no fsync (a crash loses a beat, never leaves a part).
            write_atomic(self.path, payload, fsync=False)
        except OSError as exc:  # a full disk must not stop the engine
            logger.error("cannot write %s: %s", self.path, exc)
            return
        self.writes += 1

    def close(self, *, remove: bool = True) -> None:
        """Stop listening; remove the file (the engine is gone) or write a last time."""
        self._remove_listener()
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        else:
            self.write_now()
