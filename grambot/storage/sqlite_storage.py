"""`SqliteStorage`: the stores on one `.scout/state.db`, and what tools do with the file
(an online backup, purging one instance, inspecting the inbox)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

from grambot.storage.base import InboxEntry
from grambot.storage.conversations import SqliteConversations, drop_conversations
from grambot.storage.database import Database, Synchronous
from grambot.storage.sqlite import (
    SqliteInbox,
    SqliteKeyValue,
    SqliteSchedule,
    drop_inbox,
    drop_jobs,
    inbox_counts,
    inbox_entries,
)
from grambot.storage.turns import SqliteChatTurns

__all__ = ["STORAGE_FILE", "SqliteStorage", "open_storage"]

STORAGE_FILE = "state.db"


class SqliteStorage:
    """What the engine persists, on one SQLite database (opened on first use)."""

    def __init__(self, path: Path, *, synchronous: Synchronous = "normal") -> None:
        self.path = path
        self.db = Database(path, synchronous=synchronous)
        self.kv = SqliteKeyValue(self.db)
        self.inbox = SqliteInbox(self.db)
        self.schedule = SqliteSchedule(self.db)
        self.conversations = SqliteConversations(self.db)
        self.turns = SqliteChatTurns(self.db, self.conversations)

    def open(self) -> None:
        """Open now (create, migrate); raises StateError / SchemaTooNew."""
        self.db.open()

    async def set_synchronous(self, level: Synchronous) -> None:
        if level == self.db.synchronous:
            return
        self.db.synchronous = level
        if self.db.is_open:
            value = "FULL" if level == "full" else "NORMAL"
            await self.db.run_raw(lambda conn: conn.execute(f"PRAGMA synchronous={value}"))

    async def close(self) -> None:
        await self.db.aclose()

    # -- tools (synchronous: the CLI and tests) ------------------------------------------------

    def __enter__(self) -> SqliteStorage:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.db.close()

    def inbox_entries(self) -> list[InboxEntry]:
        return self.db.run_sync(inbox_entries)

    def inbox_counts(self) -> dict[str, int]:
        return self.db.run_sync(inbox_counts)

    def backup_to(self, target: Path) -> None:
        """A consistent copy of the live database (SQLite's online backup API), to `target`."""

        def op(conn: sqlite3.Connection) -> None:
            out = sqlite3.connect(target)
            try:
                conn.backup(out)
            finally:
                out.close()

        self.db.run_sync(op, raw=True)

    def purge_instance(self, instance_id: str) -> dict[str, int]:
        """Delete everything stored for `instance_id`: its store (namespace `<id>` or
        `<prefix>:<id>`), its inbox entries and conversations (as a connector), its jobs and
        the bot's reminders and time zones in its chats."""

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            removed: dict[str, Any] = {
                "store value(s)": int(
                    conn.execute(
                        "DELETE FROM kv WHERE namespace=? OR namespace LIKE ? ESCAPE '\\'",
                        (instance_id, "%:" + instance_id.replace("_", "\\_")),
                    ).rowcount
                ),
                "inbox entr(y/ies)": drop_inbox(conn, instance_id),
                "conversation message(s)": drop_conversations(conn, instance_id),
                "job(s)": drop_jobs(conn, instance_id)
                + drop_jobs(conn, "@bot", f"chat:{instance_id}:"),
            }
            conn.execute(
                "DELETE FROM kv WHERE namespace='@bot' AND key LIKE ?", (f"tz:{instance_id}:%",)
            )
            return removed

        return self.db.run_sync(op)


def open_storage(path: Path, *, synchronous: Synchronous = "normal") -> SqliteStorage:
    """A SqliteStorage for `path` (use it as a context manager from synchronous code)."""
    return SqliteStorage(path, synchronous=synchronous)
