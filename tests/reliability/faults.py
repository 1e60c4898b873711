"""What the fault-injection plugins (tests/fixtures/faulty/) use to hang, and the switch that
lets them go.

A plugin that "hangs" waits for the current release switch rather than forever: the engine must
already have given up on it at its deadline (that is what the tests check), and each test ends by
releasing whatever is still hanging (conftest.py), so that no thread or task of one test keeps
running into the next. Plugins import this module by its full name
(`tests.reliability.faults`), so they and the tests share one switch.
"""

from __future__ import annotations

import asyncio
import threading

HANG_LIMIT = 30.0  # a hang ends by itself after this long even if nobody releases it

_release = threading.Event()
_lock = threading.Lock()


def switch() -> threading.Event:
    """The current release switch: set when the running test ends."""
    return _release


def release_all() -> None:
    """Let every current hang return, and arm a fresh switch for the next test."""
    global _release
    with _lock:
        old, _release = _release, threading.Event()
    old.set()


def hang() -> None:
    """Block the calling thread until released (a sync stage, validator or import that hangs)."""
    switch().wait(HANG_LIMIT)


async def ahang() -> None:
    """Await until released; cancellation ends it (an async stage or handler that hangs)."""
    await asyncio.sleep(3600)


async def ignore_cancellation(name: str) -> None:
    """A background task that swallows every cancellation until released."""
    released = switch()
    while not released.is_set():
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            continue
