"""`api.health`: how an instance reports the health of its long-running work.

A connector's polling loop or a watcher runs long after `load` returned; whether it still works
is something only the plugin knows. `ok(what)` says the work just succeeded (a poll, a send),
`error(exc)` that it just failed. The latest of the two decides `healthy`; status shows both
with their times (grambot status, status.json `health`), and `grambot status` reports an
unhealthy instance as degraded (exit 1). A background task of the instance that crashes is
recorded as an error too. Messages are masked with the instance's secrets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["InstanceHealth"]

_MAX_MESSAGE = 500


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


class InstanceHealth:
    """Thread-safe: plugins may report from worker threads."""

    __slots__ = ("_error", "_lock", "_ok", "_on_change", "_redact")

    def __init__(
        self,
        redact: Callable[[str], str] = lambda text: text,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._redact = redact
        self._on_change = on_change
        self._lock = threading.Lock()
        self._ok: tuple[float, str] | None = None
        self._error: tuple[float, str] | None = None

    def ok(self, what: str = "ok") -> None:
        """The instance's work just succeeded (`what`: e.g. "poll", "send")."""
        with self._lock:
            was_healthy = self._healthy()
            self._ok = (time.time(), str(what)[:80])
        if not was_healthy:
            self._on_change()

    def error(self, error: BaseException | str, what: str | None = None) -> None:
        """The instance's work just failed; `error` is an exception or a message."""
        if isinstance(error, BaseException):
            from grambot.containment.boundary import describe

            message = describe(error)
        else:
            message = str(error)
        if what:
            message = f"{what}: {message}"
        message = self._redact(message)[:_MAX_MESSAGE]
        with self._lock:
            self._error = (time.time(), message)
        self._on_change()

    @property
    def healthy(self) -> bool:
        with self._lock:
            return self._healthy()

    def _healthy(self) -> bool:
        return self._error is None or (self._ok is not None and self._ok[0] >= self._error[0])

    def to_status(self) -> dict[str, Any]:
        with self._lock:
            ok, error, healthy = self._ok, self._error, self._healthy()
        return {
            "healthy": healthy,
            "lastOk": {"at": _iso(ok[0]), "what": ok[1]} if ok else None,
            "lastError": {"at": _iso(error[0]), "message": error[1]} if error else None,
        }
