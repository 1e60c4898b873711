"""The SQLite `ChatTurns` (grambot.storage.base): between two replies of a chat, the last
message's `done` and conversation and the next message's claim and history in one operation,
so they share a transaction and a hand-off to the database's thread."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable

from grambot.registries.inference import ChatMessage
from grambot.storage.base import Finished, InboxEntry
from grambot.storage.conversations import SqliteConversations, append_messages, load_history
from grambot.storage.database import Database
from grambot.storage.sqlite import claim_next, mark

__all__ = ["SqliteChatTurns"]

Step = tuple[InboxEntry | None, list[ChatMessage]]


class SqliteChatTurns:
    def __init__(
        self,
        db: Database,
        conversations: SqliteConversations,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.rows = conversations.rows
        self.clock = clock

    def next_turn(
        self,
        connector_id: str,
        chat_id: str,
        *,
        finished: Finished | None = None,
        claim: bool = True,
        history: int,
        since: float | None = None,
    ) -> asyncio.Future[Step]:
        now = self.clock()
        rows = self.rows

        def op(conn: sqlite3.Connection) -> Step:
            if finished is not None:
                if finished.messages:
                    append_messages(
                        conn,
                        rows,
                        connector_id,
                        chat_id,
                        finished.messages,
                        now,
                        finished.keep,
                    )
                mark(conn, finished.entry_id, "done", now)
            entry = claim_next(conn, connector_id, chat_id, now) if claim else None
            if entry is None:
                return None, []
            return entry, load_history(conn, rows.decoded, connector_id, chat_id, history, since)

        return self.db.run(op)
