"""The engine's side of the zygote (grambot.isolation.zygote): start it, ask it for children,
hear when they exit.

One `ForkServer` per engine. It starts the zygote on first use (or at `grambot run` start when
settings.json asks for process isolation), restarts it if it died, and closes it at shutdown:
closing its socket ends the zygote, and PR_SET_PDEATHSIG ends what it forked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
from typing import Any

from grambot.errors import ZygoteError

__all__ = ["ForkServer", "ZygoteError"]

logger = logging.getLogger(__name__)

_CONTROL_BYTES = 64 * 1024
START_TIMEOUT = 30.0  # importing grambot and pydantic on a busy machine


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class ForkServer:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._ready: asyncio.Future[int] | None = None
        self._spawns: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}  # pid -> its wait status
        self._early: dict[int, int] = {}  # exits reported before anyone asked
        self._ids = itertools.count(1)
        self._starting: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._control is not None

    async def start(self) -> None:
        """Start the zygote if it is not running, and wait until it is ready."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.running:
                return
            await self._start()

    async def _start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, MALLOC_ARENA_MAX="2")  # fewer malloc arenas: less address space
        try:
            # Popen, not asyncio's subprocess: a fork+exec of a few ms, no child watcher thread
            self._proc = subprocess.Popen(  # noqa: ASYNC220
                [
                    sys.executable,
                    "-P",  # the current folder is not put on sys.path
                    "-m",
                    "grambot.isolation.zygote",
                    str(theirs.fileno()),
                    str(os.getpid()),
                ],
                pass_fds=[theirs.fileno()],
                close_fds=True,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Ctrl-C at the terminal is the engine's to handle
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._control = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._readable)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await self._ready
        except BaseException:
            self._lost("it did not start")
            raise
        logger.debug("zygote %s ready", self._proc.pid)

    async def spawn(self, request: dict[str, Any], sock: socket.socket) -> int:
        """Fork a child that runs `request` over `sock` (passed to it); its pid."""
        await self.start()
        assert self._control is not None and self._loop is not None
        spawn_id = next(self._ids)
        future: asyncio.Future[int] = self._loop.create_future()
        self._spawns[spawn_id] = future
        message = json.dumps({"spawn": spawn_id, "request": request}).encode()
        fds = [sock.fileno()]
        if request.get("stdin") and _open(0):  # only to a plugin whose manifest reads it
            fds.append(0)
        try:
            socket.send_fds(self._control, [message], fds)
        except OSError as exc:
            self._spawns.pop(spawn_id, None)
            self._lost(f"its socket failed ({exc})")
            raise ZygoteError(f"the zygote cannot be reached: {exc}") from None
        return await future

    def exit_of(self, pid: int) -> asyncio.Future[int]:
        """A future of the wait status of child `pid` (-1: the zygote ended first)."""
        assert self._loop is not None
        future = self._exits.get(pid)
        if future is None:
            future = self._exits[pid] = self._loop.create_future()
            if pid in self._early:
                future.set_result(self._early.pop(pid))
        return future

    def _readable(self) -> None:
        assert self._control is not None
        try:
            data = self._control.recv(_CONTROL_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost("it ended")
            return
        message = json.loads(data)
        if "exited" in message:
            pid, status = int(message["exited"]), int(message["status"])
            future = self._exits.pop(pid, None)
            if future is None:
                self._early[pid] = status
            elif not future.done():
                future.set_result(status)
        elif "spawned" in message:
            spawned = self._spawns.pop(int(message["spawned"]), None)
            if spawned is not None and not spawned.done():
                spawned.set_result(int(message["pid"]))
        elif "ready" in message and self._ready is not None and not self._ready.done():
            self._ready.set_result(int(message["ready"]))

    def _lost(self, why: str) -> None:
        """The zygote is gone (or never came): fail who waits; its children die with it."""
        control, proc = self._control, self._proc
        self._control, self._proc = None, None
        if control is not None:
            if self._loop is not None:
                self._loop.remove_reader(control.fileno())
            control.close()
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1.0)
            logger.debug("zygote %s: %s", proc.pid, why)
        error = ZygoteError(f"the zygote of isolated instances {why}")
        for future in [self._ready, *self._spawns.values()]:
            if future is not None and not future.done():
                future.set_exception(error)
        for future in self._exits.values():
            if not future.done():
                future.set_result(-1)
        self._spawns.clear()
        self._exits.clear()
        self._early.clear()

    def close(self) -> None:
        """End the zygote (and so every child it forked that is still there)."""
        if self._control is not None or self._proc is not None:
            self._lost("was closed")
