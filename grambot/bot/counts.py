"""The inbox and the stored jobs as status.json shows them: counted again shortly after a
change (at most every 0.25 s, off the path of a reply), and the engine's listeners told."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from grambot.storage.base import Inbox, Schedule

__all__ = ["InboxCounts"]


class InboxCounts:
    def __init__(
        self,
        inbox: Inbox,
        schedule: Schedule,
        on_change: Callable[[], None],
        spawn: Callable[[Any], None],
        stopping: Callable[[], bool],
    ) -> None:
        self._inbox = inbox
        self._schedule = schedule
        self._on_change = on_change
        self._spawn = spawn  # background work, ended when the bot stops
        self.counts: dict[str, int] = {}  # open inbox entries per state, as last counted
        self.stored_jobs = 0  # scheduled jobs in the database, as last counted
        self.uncertain_at_start = 0
        self.notifying = False  # telling the listeners (our own news, not an instance's)
        self._refresh: asyncio.TimerHandle | None = None
        self._stopping = stopping

    def status(self, active_chats: int) -> dict[str, Any]:
        """For status.json: the inbox by state (as last counted), the uncertain replies found
        at start, the chats being answered."""
        counts = self.counts
        return {
            "accepted": counts.get("accepted", 0),
            "handling": counts.get("handling", 0),
            "pending": counts.get("accepted", 0) + counts.get("handling", 0),
            "sending": counts.get("sending", 0),
            "uncertain": counts.get("uncertain", 0),
            "uncertainAtStart": self.uncertain_at_start,
            "activeChats": active_chats,
        }

    def refresh_soon(self) -> None:
        """The inbox or the jobs changed: count them again shortly."""
        if self._refresh is None and not self._stopping():
            loop = asyncio.get_running_loop()
            self._refresh = loop.call_later(0.25, self._start_refresh)

    def _start_refresh(self) -> None:
        self._refresh = None
        self._spawn(self.refresh())

    async def refresh(self) -> None:
        counts, jobs = await asyncio.gather(self._inbox.counts(), self._schedule.count())
        if counts != self.counts or jobs != self.stored_jobs:
            self.counts, self.stored_jobs = counts, jobs
            self.notifying = True
            try:
                self._on_change()
            finally:
                self.notifying = False

    def stop(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
