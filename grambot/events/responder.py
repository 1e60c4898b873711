"""The seam the bot attaches to: what answers the messages connectors accept into the inbox.

The engine knows only this Protocol; `grambot.bot.attach_bot(engine)` builds the bot and
attaches it (`grambot run` and `grambot.testing` do). An engine with nothing attached still
loads and reconciles its instances; messages are accepted into the inbox and wait there.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Responder"]


class Responder(Protocol):
    def wake(self, connector_id: str, chat_id: str) -> None:
        """A message of this chat is in the inbox (api.inbox.accept calls this)."""

    async def recover(self) -> None:
        """The storage is open, no connector runs yet: take over what the last run left."""

    async def resume(self) -> None:
        """The first reconcile is done: answer what waits."""

    async def stop(self, deadline: float) -> None:
        """Stop answering; replies in progress may finish within `deadline` seconds."""

    def status(self) -> dict[str, Any]:
        """The inbox in status.json."""

    @property
    def stored_jobs(self) -> int:
        """Scheduled jobs in the storage (every owner's), as last counted."""
