"""The engine's handle on one child process: its pipe, its requests in flight, how it ended.

`ChildProcess.ask(message)` sends a request and waits for its answer; every message the child
sends on its own goes to `on_message`. When the pipe ends (the child exited, was killed,
segfaulted), every request in flight fails with `ChildEnded` carrying the typed reason, read
from the exit status the zygote reports:

    reason          when
    crashed         a fatal signal (SIGSEGV, SIGABRT, SIGBUS, ...), or an exit nobody asked for
    killed          SIGKILL (or SIGTERM) from outside the engine (an operator)
    memory-limit    the child's MemoryError (RLIMIT_AS), or the OOM killer in its memory cgroup
    cpu-limit       a stage or call used more than its cpuSeconds (the engine killed it)
    sandbox-unavailable   `sandbox: required` and Landlock could not be applied
    timeout / unresponsive   the engine killed it (a stage past its deadline / no heartbeat)
    stopped         it ended as asked (teardown)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from grambot.errors import ChildEnded, FrameTooLarge
from grambot.isolation.child import MEMORY_EXIT, SANDBOX_EXIT
from grambot.isolation.cpu import CpuMeter
from grambot.isolation.forkserver import ForkServer
from grambot.isolation.spec import Enforcement
from grambot.isolation.wire import Channel

__all__ = ["ChildEnded", "ChildProcess", "reason_of"]

logger = logging.getLogger(__name__)
instance_logger = logging.getLogger("grambot.instance")  # what is about an instance's child

EXIT_STATUS_WAIT = 1.0  # how long the end of a pipe waits for the exit status to name a reason
# after the child's exit, for the rest of what it sent: then its pipe is closed from here, as
# its forked grandchildren may hold its end open (the pipe would never end on its own)
EXIT_DRAIN = 0.2
GROUP_CLOSE_WAIT = 0.5  # for killed grandchildren to leave the child's cgroup, to remove it


def reason_of(status: int | None, asked: str | None, oom: bool = False) -> tuple[str, str]:
    """(reason, what happened) from a wait status (None/-1: unknown), what the engine asked
    for (a kill for `timeout`/`unresponsive`/`cpu-limit`, or `stopped` at teardown) and
    whether the OOM killer acted in the child's memory cgroup."""
    if asked is not None and asked != "stopped":
        return asked, f"the engine killed it ({asked})"
    if status is None or status < 0:
        return ("stopped", "it ended") if asked else ("killed", "it ended (exit status unknown)")
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = _signal_name(number)
        if asked == "stopped":
            return "stopped", f"it was stopped by {name}"
        if number == signal.SIGKILL and oom:
            return "memory-limit", "the kernel killed it at its memoryMb limit (memory cgroup)"
        if number in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            return "killed", f"it was killed by {name}"
        return "crashed", f"it crashed with {name}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    if code == MEMORY_EXIT:
        return "memory-limit", "it ran out of memory (MemoryError at its memoryMb limit)"
    if code == SANDBOX_EXIT:
        return "sandbox-unavailable", "its sandbox could not be applied (sandbox: required)"
    if asked == "stopped":
        return "stopped", f"it exited with code {code}"
    return "crashed", f"it exited with code {code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class ChildProcess:
    def __init__(
        self,
        forkserver: ForkServer,
        pid: int,
        channel: Channel,
        on_message: Callable[[dict[str, Any]], None],
        on_end: Callable[[str, str], None],
        limits: Enforcement | None = None,
    ) -> None:
        self.pid = pid
        # its cgroup: closed (grandchildren killed) when it has ended
        self.group = limits.group if limits is not None else None
        cpu = limits.cpu_seconds if limits is not None else None
        members = self.group.members if self.group is not None else None
        self._meter = CpuMeter(pid, cpu, self._over_cpu, members) if cpu else None
        self._kill_detail = ""
        self._forkserver = forkserver
        self._channel = channel
        self._on_message = on_message
        self._on_end = on_end
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._asked: str | None = None  # why the engine ended it, if it did
        loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[tuple[str, str]] = loop.create_future()
        self._exit = forkserver.exit_of(pid)
        self._exit.add_done_callback(lambda _: loop.call_later(EXIT_DRAIN, channel.close))
        self._reader = asyncio.get_running_loop().create_task(
            self._read(), name=f"grambot-child-{pid}"
        )

    @property
    def alive(self) -> bool:
        return not self.ended.done()

    def next_id(self) -> int:
        return next(self._ids)

    def send(self, message: dict[str, Any]) -> None:
        """Send without waiting (FrameTooLarge past the cap; ChildEnded once it ended)."""
        if self.ended.done():
            raise ChildEnded(*self.ended.result())
        try:
            self._channel.send_nowait(message)
        except FrameTooLarge:
            raise
        except (ConnectionError, RuntimeError) as exc:
            raise ChildEnded("crashed", f"its pipe failed ({exc})") from None

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a request and wait for its answer; ChildEnded if the child ends first."""
        request_id = message["id"] = self.next_id()
        future = self.expect(request_id, metered=True)
        try:
            self.send(message)
            return await future
        finally:
            self.forget(request_id)

    def expect(self, request_id: int, metered: bool = False) -> asyncio.Future[dict[str, Any]]:
        """A future of the answer to request `request_id`; `metered`: a stage or a call, whose
        CPU time counts against cpuSeconds until it is answered."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self.ended.done():
            future.set_exception(ChildEnded(*self.ended.result()))
        else:
            self._pending[request_id] = future
            if metered and self._meter is not None:
                self._meter.begin(request_id)
        return future

    def forget(self, request_id: int) -> None:
        self._pending.pop(request_id, None)
        if self._meter is not None:
            self._meter.end(request_id)

    async def beat(self, interval: float, unresponsive_after: float, who: str) -> None:
        """Ping it every `interval`; one that does not answer within `unresponsive_after` is
        killed (`who` it is, for the log)."""
        while self.alive:
            await asyncio.sleep(interval)
            request_id = self.next_id()
            answer = self.expect(request_id)
            try:
                self.send({"op": "ping", "id": request_id})
                async with asyncio.timeout(unresponsive_after):
                    await answer
            except TimeoutError:
                instance_logger.error(
                    "%s: its process %s did not answer for %g s: killing it",
                    who,
                    self.pid,
                    unresponsive_after,
                )
                self.kill("unresponsive")
                return
            except ChildEnded:
                return
            finally:
                self.forget(request_id)

    def cancel(self, request_id: int, ack_within: float, who: str) -> None:
        """Ask it to cancel call `request_id`; kill it if it does not answer within
        `ack_within` (its answer, whatever it is, is the acknowledgement)."""
        answer = self.expect(request_id)  # the cancelled caller's future went with it
        with contextlib.suppress(ChildEnded, ConnectionError):
            self.send({"op": "cancel", "id": request_id})

        def unanswered() -> None:
            self.forget(request_id)
            if not answer.done():
                instance_logger.error(
                    "%s: its process did not acknowledge a cancelled call within %g s: killing it",
                    who,
                    ack_within,
                )
                self.kill("unresponsive")

        timer = asyncio.get_running_loop().call_later(
            ack_within, unanswered, context=contextvars.Context()
        )

        def answered(future: asyncio.Future[Any]) -> None:
            timer.cancel()
            self.forget(request_id)
            if not future.cancelled():
                future.exception()  # consumed: nobody awaits a cancelled call's answer

        answer.add_done_callback(answered)

    def _over_cpu(self, detail: str) -> None:
        logger.error("child %s: %s: killing it", self.pid, detail)
        self._kill_detail = detail
        self.kill("cpu-limit")

    def kill(self, reason: str, sig: int = signal.SIGKILL) -> None:
        """End it (`reason`: timeout, unresponsive, cpu-limit, or stopped)."""
        if self._asked is None:
            self._asked = reason
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    async def stop(self, grace: float) -> None:
        """Close its pipe (it exits at the end of it); SIGTERM, then SIGKILL, if it lingers."""
        if self._asked is None:
            self._asked = "stopped"
        self._channel.close()
        for sig, wait in ((signal.SIGTERM, grace / 2), (signal.SIGKILL, grace / 2)):
            try:
                await asyncio.wait_for(asyncio.shield(self.ended), wait)
                return
            except TimeoutError:
                self.kill("stopped", sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.ended), EXIT_STATUS_WAIT)

    async def _read(self) -> None:
        detail = ""
        try:
            while True:
                message = await self._channel.recv()
                if message is None:
                    break
                request_id = message.get("re")
                if request_id is not None:
                    future = self._pending.get(request_id)
                    self.forget(request_id)
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                try:
                    self._on_message(message)
                except Exception:
                    logger.exception("child %s: handling %s failed", self.pid, message.get("op"))
        except FrameTooLarge as exc:  # it broke the protocol: it cannot be trusted further
            detail = str(exc)
            self.kill("crashed")
        except Exception as exc:
            detail = f"its pipe failed ({exc})"
        self._channel.close()
        if self._meter is not None:
            self._meter.close()
        status: int | None = None
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            status = await asyncio.wait_for(asyncio.shield(self._exit), EXIT_STATUS_WAIT)
        if status is None:  # the pipe ended but the process did not: end it
            self.kill(self._asked or "crashed")
        group = self.group
        reason, what = reason_of(status, self._asked, group is not None and group.oom_killed())
        if group is not None:  # no grandchild outlives it; then its cgroup goes
            for _ in range(int(GROUP_CLOSE_WAIT / 0.01)):
                if group.close():
                    break
                await asyncio.sleep(0.01)
        detail = self._kill_detail or detail
        if detail:
            what = f"{what}: {detail}"
        error = ChildEnded(reason, what)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self.ended.set_result((reason, what))
        self._on_end(reason, what)

    def rss_bytes(self) -> int | None:
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None
