"""Retention: what the state database keeps only for a while is deleted on a schedule.

    conversation messages   older than `agent.historyDays` (when set; hidden from the model
                            from that age on already)
    inbox entries           `done` and `uncertain` ones last changed DONE_KEPT_DAYS ago (they
                            are kept that long only to recognise a redelivered message)
    store values            past their TTL (invisible already)

A pass runs when the engine starts and every `interval` seconds (an hour) after, as the
engine's own task; each delete is one indexed statement on the database's thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from grambot.errors import StateError
from grambot.storage.base import DONE_KEPT_DAYS, ConversationStore, Inbox, KeyValueStore

__all__ = ["Retention"]

logger = logging.getLogger("grambot.storage")

DAY = 86400.0


@dataclass(eq=False)
class Retention:
    conversations: ConversationStore
    inbox: Inbox
    kv: KeyValueStore
    history_days: Callable[[], float | None]
    _: KW_ONLY
    interval: float = 3600.0
    clock: Callable[[], float] = time.time
    passes: int = field(default=0, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        """Run a pass now and then every `interval` seconds, until stop()."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="grambot:retention", context=contextvars.Context()
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=1.0)

    async def run_once(self) -> dict[str, int]:
        """One pass; how many of each kind were deleted."""
        now = self.clock()
        removed: dict[str, Any] = {}
        days = self.history_days()
        if days is not None:
            removed["conversation message(s)"] = await self.conversations.prune(now - days * DAY)
        removed["inbox entr(y/ies)"] = await self.inbox.prune(now - DONE_KEPT_DAYS * DAY)
        removed["expired store value(s)"] = await self.kv.sweep()
        self.passes += 1
        if any(removed.values()):
            logger.info(
                "retention: deleted %s",
                ", ".join(f"{n} {what}" for what, n in removed.items() if n),
            )
        return removed

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except StateError as exc:  # the database is in trouble: say so, try again later
                logger.error("retention: %s", exc)
            await asyncio.sleep(self.interval)
