"""`cpuSeconds`: the CPU time a child may use during one stage or one call.

RLIMIT_CPU cannot say this: it counts the whole life of the process (a child that served a
thousand calls would be killed on the next one) and only ever ends it. So the engine samples
the child's CPU time (utime + stime of /proc/<pid>/stat, every thread of it, with that of the
children it waited for and of the processes in its cgroup) while a stage or a call is in
flight, and kills the child once one of them has used more than the limit since it began.
Sampling runs only while something is in flight, every `period` (a tenth of the limit,
between 20 and 100 ms): a read of a few small files.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Callable

__all__ = ["CpuMeter", "cpu_seconds"]

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, reaped: bool = False) -> float | None:
    """The CPU time process `pid` used so far (None: it is gone); `reaped`: with that of its
    children it has waited for."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields 14 and 15 of proc(5) (16 and 17: of its waited-for children), counted from the
    # state (field 3) here
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


class CpuMeter:
    """Watches the CPU time of child `pid` while stages and calls (`begin`, `end`) are in flight;
    calls `over(detail)` once when one of them used more than `limit` seconds. The CPU the child
    uses between two samples is shared equally among what was in flight then (a call that only
    waits, a model answer, is not charged with the others' work; with N at once, a spinning one
    is stopped after at most N times the limit). The child's time includes what it forked: the
    children it waited for, and the processes `members` lists (those of its cgroup), so that a
    fork cannot spin for a call unseen."""

    def __init__(
        self,
        pid: int,
        limit: float,
        over: Callable[[str], None],
        members: Callable[[], set[int]] | None = None,
    ) -> None:
        self.pid = pid
        self._members = members
        self.limit = limit
        self.period = min(0.1, max(0.02, limit / 10))
        self._over = over
        self._used: dict[int, float] = {}  # what is in flight -> its share of CPU so far
        self._last = 0.0  # the child's CPU time at the last sample
        self._task: asyncio.Task[None] | None = None

    def _now(self) -> float | None:
        now = cpu_seconds(self.pid, reaped=True)
        if now is None or self._members is None:
            return now
        for pid in self._members() - {self.pid}:
            now += cpu_seconds(pid) or 0.0
        return now

    def _charge(self, now: float) -> None:
        """Share the CPU used since the last sample among what is in flight."""
        used, self._last = max(0.0, now - self._last), now  # a fork that ended leaves the sum
        if self._used:
            share = used / len(self._used)
            for key in self._used:
                self._used[key] += share

    def begin(self, key: int) -> None:
        now = self._now()
        if now is None:
            return
        if self._used:
            self._charge(now)  # what ran until now is theirs, not this one's
        else:
            self._last = now
        self._used[key] = 0.0
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._watch(), name=f"grambot-cpu-{self.pid}", context=contextvars.Context()
            )

    def end(self, key: int) -> None:
        self._used.pop(key, None)

    def close(self) -> None:
        self._used.clear()
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        while self._used:
            await asyncio.sleep(self.period)
            now = self._now()
            if now is None or not self._used:
                return
            self._charge(now)
            worst = max(self._used.values())
            if worst > self.limit:
                self._used.clear()
                self._over(
                    f"it used {worst:.2f} s of CPU in one stage or call (cpuSeconds {self.limit:g})"
                )
                return
