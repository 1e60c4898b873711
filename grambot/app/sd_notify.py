"""systemd's notify protocol, in the few lines it takes (no dependency).

Under a unit with `Type=notify`, systemd passes `NOTIFY_SOCKET` (a path, or `@name` for an
abstract socket) and, with `WatchdogSec=`, `WATCHDOG_USEC` (and `WATCHDOG_PID`, the process it
means). `grambot run` sends, as datagrams of `KEY=VALUE` lines:

* `READY=1` once the first reconcile is done (systemd then counts the unit as started);
* `WATCHDOG=1` every `WATCHDOG_USEC / 2`, **from a timer on the event loop**: while plugin code
  blocks the loop the pings stop, and after `WatchdogSec` systemd ends the process (SIGABRT)
  and, with `Restart=on-failure`, starts it again. A thread would keep pinging a frozen engine;
* `STOPPING=1` when the shutdown begins.

Without `NOTIFY_SOCKET` nothing is sent: `from_environ` returns None.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["SystemdNotifier"]

logger = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, address: str, watchdog_usec: int | None = None) -> None:
        """`address` as systemd gives it (`/run/...` or `@abstract`)."""
        self.address = address
        self._target = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setblocking(False)  # sent from the event loop: never wait on systemd
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> SystemdNotifier | None:
        """The notifier systemd asks for, or None when not run under `Type=notify`."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address or not (address.startswith(("/", "@"))):
            return None
        usec: int | None = None
        watchdog_pid = env.get("WATCHDOG_PID", "")
        mine = not watchdog_pid or watchdog_pid == str(pid if pid is not None else os.getpid())
        with contextlib.suppress(ValueError):
            usec = int(env.get("WATCHDOG_USEC", "")) if mine else None
        return cls(address, usec if usec and usec > 0 else None)

    def send(self, *states: str) -> bool:
        """Send `states` (e.g. "READY=1") as one datagram; False (logged once) if it failed."""
        try:
            self._socket.sendto("\n".join(states).encode(), self._target)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                logger.warning("cannot notify systemd at %s: %s", self.address, exc)
            return False
        return True

    def start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ping `WATCHDOG=1` every half `WATCHDOG_USEC` from `loop` (nothing without it)."""
        if self.watchdog_interval is None:
            return
        interval = self.watchdog_interval

        def ping() -> None:
            self.send("WATCHDOG=1")
            self._timer = loop.call_later(interval, ping)

        ping()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._socket.close()
