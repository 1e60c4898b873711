"""Conversations in the state database: the SQLite `ConversationStore` (grambot.storage.base).

A chat's messages are rows of `conversation`, one JSON message each, appended after a reply and
trimmed to the chat's last `keep` once TRIM_EVERY rows have come since its last trim (a trim
walks `keep` rows of the index: at every append it cost a tenth of the inbox path's CPU), so a
chat holds at most `keep` + TRIM_EVERY rows, a few more across a restart.

Loading a history decodes only the rows it has not seen: a row's message never changes and row
ids are never reused (AUTOINCREMENT), so a message decoded once, or appended from memory, is
handed out again by its id (`DecodedMessages`, bounded) for as long as it is kept, whatever else
writes to the file (an id that a rolled-back append had taken comes again only to this
connection's next append, which replaces what was kept under it). Everything here runs on the
database's thread (grambot.storage.database); only that thread touches what is remembered.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from grambot.registries.inference import ChatMessage
from grambot.storage.database import Database

TRIM_EVERY = 8  # rows appended to a chat between two trims

__all__ = [
    "TRIM_EVERY",
    "DecodedMessages",
    "Rows",
    "SqliteConversations",
    "append_messages",
    "drop_conversations",
    "load_history",
]


# msgspec writes and reads the dataclass's own fields (the rows' format from the start), an
# order of magnitude faster than json with hand-made dicts.
_encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder(ChatMessage).decode


def encode(message: ChatMessage) -> str:
    return _encode(message).decode()


class DecodedMessages:
    """Messages by row id: at most `max_messages`, holding about `max_chars` characters of
    content; the oldest rows go first (the newest are the ones histories are made of)."""

    def __init__(self, max_messages: int = 8192, max_chars: int = 4_000_000) -> None:
        self.max_messages = max_messages
        self.max_chars = max_chars
        self._by_id: OrderedDict[int, ChatMessage] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def message(self, row_id: int, data: str | bytes) -> ChatMessage:
        """The message of row `row_id`, decoded from `data` the first time."""
        message = self._by_id.get(row_id)
        if message is None:
            message = decode(data)
            self.put(row_id, message)
        return message

    def put(self, row_id: int, message: ChatMessage) -> None:
        self._by_id[row_id] = message
        self._chars += len(message.content)
        while len(self._by_id) > self.max_messages or self._chars > self.max_chars:
            self._chars -= len(self._by_id.popitem(last=False)[1].content)


class Untrimmed:
    """Rows appended per chat since its last trim, for the chats that have some (forgotten, at
    worst, when `limit` chats have: they are trimmed TRIM_EVERY appends later)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._rows: dict[tuple[str, str], int] = {}

    def due(self, chat: tuple[str, str], added: int) -> bool:
        """Count `added` rows of `chat`; True when it is to be trimmed now."""
        rows = self._rows.pop(chat, 0) + added
        if rows >= TRIM_EVERY:
            return True
        if len(self._rows) >= self.limit:
            self._rows.clear()
        self._rows[chat] = rows
        return False


def load_history(
    conn: sqlite3.Connection,
    decoded: DecodedMessages,
    connector_id: str,
    chat_id: str,
    limit: int,
    since: float | None,
) -> list[ChatMessage]:
    """The chat's last `limit` messages stamped at or after `since`, oldest first."""
    rows = conn.execute(
        "SELECT id, message FROM conversation WHERE connector=? AND chat=? AND at >= ? "
        "ORDER BY id DESC LIMIT ?",
        (connector_id, chat_id, since if since is not None else float("-inf"), limit),
    ).fetchall()
    return [decoded.message(row_id, data) for row_id, data in reversed(rows)]


def append_messages(
    conn: sqlite3.Connection,
    rows: Rows,
    connector_id: str,
    chat_id: str,
    messages: Sequence[ChatMessage],
    at: float,
    keep: int,
) -> None:
    """Add `messages` to the chat (stamped `at`); trim it to its last `keep` when it is due."""
    for message in messages:
        cursor = conn.execute(
            "INSERT INTO conversation (connector, chat, at, message) VALUES (?,?,?,?)",
            (connector_id, chat_id, at, encode(message)),
        )
        assert cursor.lastrowid is not None
        rows.decoded.put(cursor.lastrowid, message)  # frozen: safe to hand out again
    if not rows.untrimmed.due((connector_id, chat_id), len(messages)):
        return
    conn.execute(
        "DELETE FROM conversation WHERE connector=? AND chat=? AND id <= (SELECT id FROM "
        "conversation WHERE connector=? AND chat=? ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (connector_id, chat_id, connector_id, chat_id, keep),
    )


def drop_conversations(conn: sqlite3.Connection, connector_id: str) -> int:
    return int(conn.execute("DELETE FROM conversation WHERE connector=?", (connector_id,)).rowcount)


class Rows:
    """What the database's thread remembers of the conversation rows."""

    __slots__ = ("decoded", "untrimmed")

    def __init__(self) -> None:
        self.decoded = DecodedMessages()
        self.untrimmed = Untrimmed()


class SqliteConversations:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self.rows = Rows()

    def load(
        self, connector_id: str, chat_id: str, *, limit: int, since: float | None = None
    ) -> asyncio.Future[list[ChatMessage]]:
        return self.db.run(
            lambda conn: load_history(conn, self.rows.decoded, connector_id, chat_id, limit, since),
            single=True,
        )

    def append(
        self, connector_id: str, chat_id: str, messages: Sequence[ChatMessage], *, keep: int
    ) -> asyncio.Future[Any]:
        items = list(messages)  # frozen messages: safe to read from the database's thread
        now = self.clock()
        return self.db.run(
            lambda conn: append_messages(conn, self.rows, connector_id, chat_id, items, now, keep)
        )

    def forget(self, connector_id: str, chat_id: str) -> asyncio.Future[Any]:
        return self.db.run(
            lambda conn: conn.execute(
                "DELETE FROM conversation WHERE connector=? AND chat=?", (connector_id, chat_id)
            ),
            single=True,
        )

    def prune(self, before: float) -> asyncio.Future[int]:
        return self.db.run(
            lambda conn: conn.execute("DELETE FROM conversation WHERE at < ?", (before,)).rowcount,
            single=True,
        )

    def drop_connector(self, connector_id: str) -> asyncio.Future[int]:
        return self.db.run(lambda conn: drop_conversations(conn, connector_id), single=True)

    def rename(self, old: tuple[str, str], new: tuple[str, str]) -> asyncio.Future[int]:
        """Move the messages of chat `old` to `new` when `new` has none (legacy imports)."""

        def op(conn: sqlite3.Connection) -> int:
            taken = conn.execute(
                "SELECT 1 FROM conversation WHERE connector=? AND chat=? LIMIT 1", new
            ).fetchone()
            if taken is not None:
                return 0
            return int(
                conn.execute(
                    "UPDATE conversation SET connector=?, chat=? WHERE connector=? AND chat=?",
                    (*new, *old),
                ).rowcount
            )

        return self.db.run(op)
