"""One worker task per busy chat: messages of a chat are answered in order, chats in parallel.

A worker is started when a message of its chat is in the inbox and ends when its chat has been
idle for `idle()` seconds (or its connector is gone); the next message starts a new one, so an
engine that has seen a million chats holds tasks only for the busy ones. Workers are the
engine's work: they run in a context of their own, never in the plugin's that woke them.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from enum import Enum

from grambot.containment.boundary import engine_cancelled, format_details

__all__ = ["Chat", "ChatWorkers", "Served"]

logger = logging.getLogger("grambot.bot")

Chat = tuple[str, str]  # (connector id, chat id)


class Served(Enum):
    EMPTY = "empty"  # nothing waits (any more): wait for a wake-up, or end when idle
    GONE = "gone"  # its connector is not registered: end (a reload wakes it again)


class ChatWorkers:
    def __init__(self, serve: Callable[[Chat], Awaitable[Served]], idle: Callable[[], float]):
        self._serve = serve
        self._idle = idle
        self._workers: dict[Chat, asyncio.Task[None]] = {}
        self._wakes: dict[Chat, asyncio.Event] = {}
        self.sending: set[Chat] = set()  # chats whose reply is going out (not to be cut)
        self.stopping = False

    def __len__(self) -> int:
        return len(self._workers)

    def wake(self, chat: Chat) -> None:
        """A message of `chat` may be waiting: make sure a worker looks."""
        if self.stopping:
            return
        event = self._wakes.get(chat)
        if event is None:
            event = self._wakes[chat] = asyncio.Event()
        event.set()
        worker = self._workers.get(chat)
        if worker is None or worker.done():
            self._workers[chat] = asyncio.get_running_loop().create_task(
                self._run(chat, event),
                name=f"bot:{chat[0]}:{chat[1]}",
                context=contextvars.Context(),
            )

    async def _run(self, chat: Chat, event: asyncio.Event) -> None:
        try:
            while not self.stopping:
                event.clear()
                try:
                    served = await self._serve(chat)
                except BaseException as exc:  # a chat's failure never ends its worker
                    if engine_cancelled(exc):
                        raise
                    logger.error(
                        "bot: chat %s/%s failed",
                        *chat,
                        extra={
                            "event": "bot.failed",
                            "chat": chat[1],
                            "details": format_details(exc),
                        },
                    )
                    del exc
                    await asyncio.sleep(1.0)
                    continue
                if served is Served.GONE:
                    return
                try:
                    await asyncio.wait_for(event.wait(), self._idle())
                except TimeoutError:
                    if not event.is_set():
                        return  # idle: the next message starts a new worker
        finally:
            if self._workers.get(chat) is asyncio.current_task():
                del self._workers[chat]
                self._wakes.pop(chat, None)

    async def stop(self, deadline: float, send_grace: float = 10.0) -> int:
        """Stop taking messages; let turns in progress finish within `deadline`, then cancel
        those not sending (their message stays in the inbox, handled again at the next
        start); a reply already going out gets `send_grace` more. Returns how many were cut."""
        self.stopping = True
        for event in self._wakes.values():
            event.set()
        workers = dict(self._workers)
        if not workers:
            return 0
        _, pending = await asyncio.wait(workers.values(), timeout=deadline)
        sending = [t for c, t in workers.items() if t in pending and c in self.sending]
        if sending:
            _, late = await asyncio.wait(sending, timeout=send_grace)
            pending = (pending - set(sending)) | late
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        self._workers.clear()
        self._wakes.clear()
        return len(pending)
