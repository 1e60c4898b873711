"""The plugin event engine: one consumer task that dispatches queued events in order.

For each event, the handlers registered for its type run first (in registration order), then
the catch-all handlers.  A handler that raises is logged with the event id and the engine moves
on.  Async handlers have a deadline: instead of wrapping every call in ``asyncio.timeout`` (about
ten times slower), each call only gets a sequence number, and a watchdog task that wakes every
``handler_timeout / 4`` (at most 1 s) cancels the consumer when it has seen the same call running
for ``handler_timeout``; the consumer recognises its own timeout by that sequence number,
``uncancel()``s itself and continues.  Any other cancellation (stop)
propagates.

Synchronous handlers run on the loop thread and cannot be interrupted: a sync handler that
blocks, blocks the loop (and the watchdog).  Keep sync handlers short, or make them async and
offload blocking work to a thread.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from grambot.containment.boundary import describe, engine_cancelled
from grambot.events.event import PluginEvent, PluginEventQueue

__all__ = ["Handler", "PluginEventEngine"]

logger = logging.getLogger(__name__)

Handler: TypeAlias = Callable[[PluginEvent], Awaitable[None] | None]

_YIELD_EVERY = 256  # give the loop a turn after this many events handled without waiting
_MAX_LISTED = 20  # leftover events named in the shutdown log
_MAX_ROUTES = 1024  # cached per-type handler lists (event types are few; this bounds a flood)


class _Subscription:
    __slots__ = ("handler", "is_async", "name")

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.is_async = inspect.iscoroutinefunction(handler)
        self.name: str = getattr(handler, "__qualname__", None) or repr(handler)


class PluginEventEngine:
    """Dispatches the events of one :class:`PluginEventQueue` to registered handlers."""

    def __init__(self, queue: PluginEventQueue, *, handler_timeout: float = 30.0) -> None:
        if not handler_timeout > 0:
            raise ValueError(f"handler_timeout must be > 0 seconds, got {handler_timeout!r}")
        self._queue = queue
        self._timeout = handler_timeout
        self._typed: dict[str, tuple[_Subscription, ...]] = {}
        self._catch_all: tuple[_Subscription, ...] = ()
        # event type -> typed handlers + catch-all ones; rebuilt after every (un)register
        self._routes: dict[str, tuple[_Subscription, ...]] = {}
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._current: PluginEvent | None = None
        self._seq = 0  # sequence number of the latest async handler call
        self._running = 0  # seq of the async call being awaited now (0: none)
        self._timed_out_seq = 0  # seq the watchdog cancelled (the marker)
        self.handled = 0

    @property
    def handler_timeout(self) -> float:
        return self._timeout

    @handler_timeout.setter
    def handler_timeout(self, seconds: float) -> None:
        """Takes effect from the next handler call (settings `timeouts.eventHandler`)."""
        if not seconds > 0:
            raise ValueError(f"handler_timeout must be > 0 seconds, got {seconds!r}")
        self._timeout = seconds

    # -- registration -------------------------------------------------------------------
    def register(self, event_type: str | None, handler: Handler) -> Callable[[], None]:
        """Subscribe ``handler`` to ``event_type`` (``None``: every event); returns unsubscribe."""
        sub = _Subscription(handler)
        # Copy-on-write tuples: dispatch iterates a snapshot, so (un)registering from inside a
        # handler is safe.
        if event_type is None:
            self._catch_all = (*self._catch_all, sub)
        else:
            self._typed[event_type] = (*self._typed.get(event_type, ()), sub)
        self._routes = {}

        def unsubscribe() -> None:
            self._routes = {}
            if event_type is None:
                self._catch_all = tuple(s for s in self._catch_all if s is not sub)
                return
            remaining = tuple(s for s in self._typed.get(event_type, ()) if s is not sub)
            if remaining:
                self._typed[event_type] = remaining
            else:
                self._typed.pop(event_type, None)

        return unsubscribe

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the consumer (and its watchdog) on the running loop."""
        if self.running:
            raise RuntimeError("PluginEventEngine.start(): the engine is already running")
        self._task = asyncio.create_task(self._consume(), name="grambot-event-consumer")
        self._watchdog = asyncio.create_task(self._watch(), name="grambot-event-watchdog")

    async def stop(self, deadline: float = 5.0) -> int:
        """Close intake, drain within ``deadline`` seconds, cancel; return the leftover count.

        Leftovers are the events still queued plus the one being handled when cancelled.
        """
        self._queue.close()
        task, watchdog = self._task, self._watchdog
        if task is not None and task is asyncio.current_task():
            raise RuntimeError("PluginEventEngine.stop() cannot be awaited from an event handler")
        grace = min(0.25, deadline / 5)
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=max(deadline - grace, 0))
            if not done:
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                logger.warning(
                    "Event consumer did not exit within %s s (a handler ignores cancellation)",
                    deadline,
                )
            elif not task.cancelled() and (exc := task.exception()) is not None:
                logger.error("Event consumer crashed", exc_info=exc)
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.wait({watchdog}, timeout=grace)
        self._task = self._watchdog = None

        leftovers = self._queue.drain_nowait()
        if self._current is not None:
            leftovers.insert(0, self._current)
            self._current = None
        if leftovers:
            logger.warning(
                "Event engine stopped with %s unhandled event(s) after %s s: %s%s",
                len(leftovers),
                deadline,
                ", ".join(
                    f"{e.id} ({e.type}, instance {e.instance_id})" for e in leftovers[:_MAX_LISTED]
                ),
                " ..." if len(leftovers) > _MAX_LISTED else "",
            )
        return len(leftovers)

    # -- consumer -----------------------------------------------------------------------------
    def _route(self, event_type: str) -> tuple[_Subscription, ...]:
        """The handlers of `event_type` then the catch-all ones, cached per type."""
        route = self._typed.get(event_type, ()) + self._catch_all
        if len(self._routes) >= _MAX_ROUTES:
            self._routes = {}
        self._routes[event_type] = route
        return route

    async def _consume(self) -> None:
        queue = self._queue
        get_nowait = queue.get_nowait
        since_wait = 0
        while True:
            event = get_nowait()
            if event is None:
                event = await queue.get()
                if event is None:
                    return
                since_wait = 0
            elif since_wait >= _YIELD_EVERY:
                await asyncio.sleep(0)
                since_wait = 0
            since_wait += 1
            self._current = event
            route = self._routes.get(event.type)
            if route is None:
                route = self._route(event.type)
            for sub in route:
                try:
                    call: Any = sub.handler(event)
                except BaseException as exc:  # a handler's failure never stops the queue
                    if engine_cancelled(exc):
                        raise
                    self._log_failure(sub, event, exc)
                    del exc
                    continue
                if not sub.is_async and (call is None or not inspect.isawaitable(call)):
                    continue
                # The deadline guard, inline (no wrapper coroutine, no clock read): the
                # watchdog samples `_running` and cancels a call it sees running too long.
                self._seq = seq = self._seq + 1
                self._running = seq
                try:
                    await call
                except asyncio.CancelledError as exc:
                    self._running = 0
                    if self._timed_out_seq != seq:
                        if engine_cancelled(exc):
                            raise  # a genuine cancellation (stop)
                        self._log_failure(sub, event, exc)  # the handler raised it itself
                        del exc
                        continue
                    task = asyncio.current_task()
                    if task is not None and task.uncancel() > 0:
                        raise  # also cancelled from outside
                    logger.error(
                        "Event handler %s timed out after %s s on event %s (%s) from instance "
                        "%s; moving on",
                        sub.name,
                        self._timeout,
                        event.id,
                        event.type,
                        event.instance_id,
                        extra={
                            "event": "handler.timeout",
                            "eventType": event.type,
                            "eventId": event.id,
                        },
                    )
                except BaseException as exc:  # SystemExit & co. from a handler are its failure
                    self._running = 0
                    self._log_failure(sub, event, exc)
                    del exc
                else:
                    self._running = 0
                    if self._timed_out_seq == seq:  # the handler swallowed our cancellation
                        task = asyncio.current_task()
                        if task is not None and task.cancelling():
                            task.uncancel()
            self._current = None
            self.handled += 1

    def _log_failure(self, sub: _Subscription, event: PluginEvent, exc: BaseException) -> None:
        logger.error(
            "Event handler %s failed on event %s (%s) from instance %s of plugin %s: %s",
            sub.name,
            event.id,
            event.type,
            event.instance_id,
            event.plugin_id,
            describe(exc),
            exc_info=exc,
            extra={"event": "handler.failed", "eventType": event.type, "eventId": event.id},
        )

    async def _watch(self) -> None:
        """Cancel the consumer when one async handler call has run longer than the timeout.

        The call is identified by its sequence number: the first tick that sees a call running
        notes the time, so a call is never cut short, and is cancelled at most one interval
        after its deadline.
        """
        loop = asyncio.get_running_loop()
        watched, seen_at = 0, 0.0
        while True:
            await asyncio.sleep(min(self._timeout / 4, 1.0))
            running, task = self._running, self._task
            if running == 0 or task is None:
                watched = 0
                continue
            now = loop.time()
            if running != watched:
                watched, seen_at = running, now
            elif self._timed_out_seq != running and now - seen_at >= self._timeout:
                self._timed_out_seq = running
                task.cancel(msg=f"grambot: event handler timed out (call {running})")
