"""Plugin events and the queue that carries them to the event engine.

A :class:`PluginEvent` is a small ``__slots__`` object: creating one costs a counter step and a
``time.time()`` call; its id string and the ISO-8601 timestamp are only formatted when read.

:class:`PluginEventQueue` is a ``collections.deque`` plus a single waiter future for the one
consumer (the :class:`~grambot.events.queue.PluginEventEngine`).  ``emit`` may be called
from the event-loop thread, from worker threads (sync plugin code) and before any loop exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

__all__ = ["PluginEvent", "PluginEventQueue"]

logger = logging.getLogger(__name__)


def _new_prefix() -> str:
    return f"ev-{secrets.token_hex(2)}-"


_id_prefix = _new_prefix()
_id_counter = itertools.count(1)  # next() on itertools.count is atomic under the GIL


def _reseed_after_fork() -> None:
    global _id_prefix, _id_counter
    _id_prefix = _new_prefix()
    _id_counter = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_after_fork)


class PluginEvent:
    """One event emitted by a plugin instance; ids are unique within the process."""

    __slots__ = ("_n", "_prefix", "created", "instance_id", "payload", "plugin_id", "type")

    plugin_id: str
    instance_id: str
    type: str
    payload: Any
    created: float

    def __init__(self, plugin_id: str, instance_id: str, type: str, payload: Any = None) -> None:
        self._prefix = _id_prefix
        self._n = next(_id_counter)
        self.plugin_id = plugin_id
        self.instance_id = instance_id
        self.type = type
        self.payload = payload
        self.created = time.time()

    @property
    def id(self) -> str:
        """Unique within the process, e.g. ``ev-3f2a-17``."""
        return f"{self._prefix}{self._n}"

    @property
    def created_at(self) -> str:
        """Creation time as ISO-8601 in UTC, e.g. ``2026-11-21T21:37:43.123456+00:00``."""
        return datetime.fromtimestamp(self.created, tz=UTC).isoformat()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pluginId": self.plugin_id,
            "instanceId": self.instance_id,
            "type": self.type,
            "payload": self.payload,
            "createdAt": self.created_at,
        }

    def __repr__(self) -> str:
        return (
            f"PluginEvent(id={self.id!r}, type={self.type!r}, "
            f"plugin_id={self.plugin_id!r}, instance_id={self.instance_id!r})"
        )


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class PluginEventQueue:
    """FIFO of :class:`PluginEvent` with one asynchronous consumer.

    Producers call :meth:`emit` (any thread, any time).  The single consumer calls
    :meth:`get` (waits) or :meth:`get_nowait`; both return ``None`` once the queue is closed
    and empty.  After :meth:`close`, :meth:`emit` logs a warning and drops the event.
    """

    __slots__ = ("_closed", "_items", "_loop_thread", "_waiter")

    def __init__(self) -> None:
        self._items: deque[PluginEvent] = deque()
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._loop_thread: int | None = None

    def emit(self, plugin_id: str, instance_id: str, type: str, payload: Any = None) -> PluginEvent:
        """Queue an event and return it at once (the event is returned even when dropped)."""
        event = PluginEvent(plugin_id, instance_id, type, payload)
        if self._closed:
            logger.warning(
                "Dropping event %s (%s) from instance %s of plugin %s: the event queue is "
                "closed (emit before the engine stops)",
                event.id,
                type,
                instance_id,
                plugin_id,
            )
            return event
        self._items.append(event)
        # The append happens before this read, and the consumer re-checks the deque after
        # arming its waiter, so a wakeup cannot be lost.
        if self._waiter is not None:
            self._wake()
        return event

    def close(self) -> None:
        """Stop intake; the consumer still receives what is already queued."""
        self._closed = True
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def get_nowait(self) -> PluginEvent | None:
        """Next event, or ``None`` when none is waiting."""
        items = self._items
        return items.popleft() if items else None

    async def get(self) -> PluginEvent | None:
        """Next event, waiting for one; ``None`` once the queue is closed and empty.

        Only one coroutine may wait at a time (single consumer).
        """
        items = self._items
        while True:
            if items:
                return items.popleft()
            if self._closed:
                return None
            loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            if items or self._closed:  # re-check after arming: an emit may have raced us
                self._waiter = None
                continue
            try:
                await waiter
            finally:
                self._waiter = None

    def drain_nowait(self) -> list[PluginEvent]:
        """Remove and return every waiting event (used for the shutdown report)."""
        drained: list[PluginEvent] = []
        items = self._items
        while items:
            drained.append(items.popleft())
        return drained

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        self._waiter = None
        if threading.get_ident() == self._loop_thread:
            _release(waiter)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            waiter.get_loop().call_soon_threadsafe(_release, waiter)
