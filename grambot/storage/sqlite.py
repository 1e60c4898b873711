"""The embedded default of the storage seams: one SQLite file, `.scout/state.db`.

Each class implements one Protocol of grambot.storage.base over a shared `Database` (one
thread, group commit). JSON is encoded by the caller where a bad value should fail at the
call (store values), and in the database's thread where the data may be big (conversations).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grambot.registries.connectors import Attachment, IncomingMessage
from grambot.registries.inference import ChatMessage, ToolCall
from grambot.storage.base import MISSING, InboxEntry, Job
from grambot.storage.database import Database

__all__ = [
    "SqliteConversations",
    "SqliteInbox",
    "SqliteKeyValue",
    "SqliteSchedule",
    "decode_message",
    "encode_message",
]

DONE_KEPT_DAYS = 30  # done and uncertain inbox rows are kept this long (deduplication)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# -- key-value ------------------------------------------------------------------------------


class SqliteKeyValue:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def get(self, namespace: str, key: str) -> asyncio.Future[Any]:
        now = self.clock()

        def op(conn: sqlite3.Connection) -> Any:
            row = conn.execute(
                "SELECT value, expires_at FROM kv WHERE namespace=? AND key=?", (namespace, key)
            ).fetchone()
            if row is None or (row[1] is not None and row[1] <= now):
                return MISSING
            return json.loads(row[0])

        return self.db.run(op, single=True)

    def set(
        self, namespace: str, key: str, value: Any, *, ttl: float | None = None
    ) -> asyncio.Future[Any]:
        data = _dumps(value)
        expires = None if ttl is None else self.clock() + ttl

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO kv (namespace, key, value, expires_at) VALUES (?,?,?,?)",
                (namespace, key, data, expires),
            )

        return self.db.run(op, single=True)

    def delete(self, namespace: str, key: str) -> asyncio.Future[bool]:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM kv WHERE namespace=? AND key=?", (namespace, key))
            return cur.rowcount > 0

        return self.db.run(op, single=True)

    def items(self, namespace: str, prefix: str = "") -> asyncio.Future[list[tuple[str, Any]]]:
        now = self.clock()

        def op(conn: sqlite3.Connection) -> list[tuple[str, Any]]:
            rows = conn.execute(
                "SELECT key, value FROM kv WHERE namespace=? AND key LIKE ? ESCAPE '\\' "
                "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key",
                (namespace, _like(prefix), now),
            ).fetchall()
            return [(k, json.loads(v)) for k, v in rows]

        return self.db.run(op, single=True)

    def compare_and_set(
        self, namespace: str, key: str, expected: Any, value: Any, *, ttl: float | None = None
    ) -> asyncio.Future[bool]:
        data = _dumps(value)
        now = self.clock()
        expires = None if ttl is None else now + ttl

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT value, expires_at FROM kv WHERE namespace=? AND key=?", (namespace, key)
            ).fetchone()
            live = row is not None and (row[1] is None or row[1] > now)
            current = json.loads(row[0]) if live else MISSING
            if (current is MISSING) != (expected is MISSING) or (
                current is not MISSING and current != expected
            ):
                return False
            conn.execute(
                "INSERT OR REPLACE INTO kv (namespace, key, value, expires_at) VALUES (?,?,?,?)",
                (namespace, key, data, expires),
            )
            return True

        return self.db.run(op)

    def drop_namespace(self, namespace: str) -> asyncio.Future[int]:
        return self.db.run(lambda conn: drop_namespace(conn, namespace))

    def sweep(self) -> asyncio.Future[int]:
        """Delete expired values (they are invisible already)."""
        now = self.clock()
        return self.db.run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
                ).rowcount
            )
        )


def drop_namespace(conn: sqlite3.Connection, namespace: str) -> int:
    return int(conn.execute("DELETE FROM kv WHERE namespace=?", (namespace,)).rowcount)


# -- inbox ----------------------------------------------------------------------------------


def encode_message(message: IncomingMessage) -> str:
    return json.dumps(
        {
            "connector_id": message.connector_id,
            "chat_id": message.chat_id,
            "sender": message.sender,
            "text": message.text,
            "message_id": message.message_id,
            "attachments": [
                {"path": str(a.path), "mime_type": a.mime_type, "name": a.name}
                for a in message.attachments
            ],
            "extra": message.extra,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )


def decode_message(data: str) -> IncomingMessage:
    raw = json.loads(data)
    return IncomingMessage(
        connector_id=raw["connector_id"],
        chat_id=raw["chat_id"],
        sender=raw.get("sender", ""),
        text=raw.get("text", ""),
        message_id=raw.get("message_id"),
        attachments=tuple(
            Attachment(path=Path(a["path"]), mime_type=a["mime_type"], name=a.get("name"))
            for a in raw.get("attachments", ())
        ),
        extra=dict(raw.get("extra") or {}),
    )


class SqliteInbox:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def accept(self, message: IncomingMessage, *, dedupe: bool = True) -> asyncio.Future[bool]:
        data = encode_message(message)
        key = message.message_id if dedupe else None
        now = self.clock()

        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO inbox (connector, chat, message_key, state, message, "
                "accepted_at, updated_at) VALUES (?,?,?,'accepted',?,?,?)",
                (message.connector_id, message.chat_id, key, data, now, now),
            )
            return cur.rowcount > 0

        return self.db.run(op, single=True)

    def claim_next(self, connector_id: str, chat_id: str) -> asyncio.Future[InboxEntry | None]:
        now = self.clock()

        def op(conn: sqlite3.Connection) -> InboxEntry | None:
            row = conn.execute(
                "UPDATE inbox SET state='handling', updated_at=? WHERE id = (SELECT id FROM inbox "
                "WHERE connector=? AND chat=? AND state='accepted' ORDER BY id LIMIT 1) "
                "RETURNING id, message, accepted_at",
                (now, connector_id, chat_id),
            ).fetchone()
            if row is None:
                return None
            return InboxEntry(row[0], decode_message(row[1]), "handling", row[2])

        return self.db.run(op, single=True)

    def _mark(self, entry_id: int, state: str) -> asyncio.Future[Any]:
        now = self.clock()
        return self.db.run(
            lambda conn: conn.execute(
                "UPDATE inbox SET state=?, updated_at=? WHERE id=?", (state, now, entry_id)
            ),
            single=True,
        )

    def mark_sending(self, entry_id: int) -> asyncio.Future[Any]:
        return self._mark(entry_id, "sending")

    def mark_done(self, entry_id: int) -> asyncio.Future[Any]:
        return self._mark(entry_id, "done")

    def pending_chats(self) -> asyncio.Future[list[tuple[str, str]]]:
        def op(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = conn.execute(
                "SELECT connector, chat, MIN(id) AS first FROM inbox WHERE state='accepted' "
                "GROUP BY connector, chat ORDER BY first"
            ).fetchall()
            return [(r[0], r[1]) for r in rows]

        return self.db.run(op)

    def recover(self) -> asyncio.Future[list[InboxEntry]]:
        now = self.clock()
        kept_after = now - DONE_KEPT_DAYS * 86400

        def op(conn: sqlite3.Connection) -> list[InboxEntry]:
            conn.execute(
                "UPDATE inbox SET state='accepted', updated_at=? WHERE state='handling'", (now,)
            )
            rows = conn.execute(
                "UPDATE inbox SET state='uncertain', updated_at=? WHERE state='sending' "
                "RETURNING id, message, accepted_at",
                (now,),
            ).fetchall()
            conn.execute(
                "DELETE FROM inbox WHERE state IN ('done', 'uncertain') AND updated_at < ?",
                (kept_after,),
            )
            entries = [InboxEntry(r[0], decode_message(r[1]), "uncertain", r[2]) for r in rows]
            return sorted(entries, key=lambda e: e.id)

        return self.db.run(op)

    def counts(self, connector_id: str | None = None) -> asyncio.Future[dict[str, int]]:
        return self.db.run(lambda conn: inbox_counts(conn, connector_id))

    def drop_connector(self, connector_id: str) -> asyncio.Future[int]:
        return self.db.run(lambda conn: drop_inbox(conn, connector_id))

    def entries(self) -> asyncio.Future[list[InboxEntry]]:
        """Every entry still kept, oldest first (inspection and tests)."""
        return self.db.run(inbox_entries)


def inbox_counts(conn: sqlite3.Connection, connector_id: str | None = None) -> dict[str, int]:
    if connector_id is None:
        rows = conn.execute("SELECT state, COUNT(*) FROM inbox GROUP BY state").fetchall()
    else:
        rows = conn.execute(
            "SELECT state, COUNT(*) FROM inbox WHERE connector=? GROUP BY state", (connector_id,)
        ).fetchall()
    return {str(state): int(count) for state, count in rows}


def inbox_entries(conn: sqlite3.Connection) -> list[InboxEntry]:
    rows = conn.execute("SELECT id, message, state, accepted_at FROM inbox ORDER BY id").fetchall()
    return [InboxEntry(r[0], decode_message(r[1]), r[2], r[3]) for r in rows]


def drop_inbox(conn: sqlite3.Connection, connector_id: str) -> int:
    return int(conn.execute("DELETE FROM inbox WHERE connector=?", (connector_id,)).rowcount)


# -- schedule -------------------------------------------------------------------------------

_JOB_COLUMNS = (
    "owner, name, kind, spec, next_run, payload, tz, missed, retries, retry_delay, attempt, "
    "last_run, last_error, created_at, meta"
)


def _job(row: Sequence[Any]) -> Job:
    return Job(
        owner=row[0],
        name=row[1],
        kind=row[2],
        spec=row[3],
        next_run=row[4],
        payload=json.loads(row[5]) if row[5] is not None else None,
        tz=row[6],
        missed=row[7],
        retries=row[8],
        retry_delay=row[9],
        attempt=row[10],
        last_run=row[11],
        last_error=row[12],
        created_at=row[13],
        meta=json.loads(row[14]),
    )


class SqliteSchedule:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, job: Job) -> asyncio.Future[Any]:
        payload = None if job.payload is None else _dumps(job.payload)
        meta = _dumps(job.meta)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT OR REPLACE INTO jobs ({_JOB_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job.owner,
                    job.name,
                    job.kind,
                    job.spec,
                    job.next_run,
                    payload,
                    job.tz,
                    job.missed,
                    job.retries,
                    job.retry_delay,
                    job.attempt,
                    job.last_run,
                    job.last_error,
                    job.created_at,
                    meta,
                ),
            )

        return self.db.run(op)

    def get(self, owner: str, name: str) -> asyncio.Future[Job | None]:
        def op(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE owner=? AND name=?", (owner, name)
            ).fetchone()
            return None if row is None else _job(row)

        return self.db.run(op)

    def remove(self, owner: str, name: str) -> asyncio.Future[bool]:
        return self.db.run(
            lambda conn: (
                conn.execute("DELETE FROM jobs WHERE owner=? AND name=?", (owner, name)).rowcount
                > 0
            )
        )

    def jobs(self, owner: str | None = None, prefix: str = "") -> asyncio.Future[list[Job]]:
        def op(conn: sqlite3.Connection) -> list[Job]:
            if owner is None:
                rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY owner, name")
            else:
                rows = conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE owner=? AND name LIKE ? ESCAPE '\\' "
                    "ORDER BY name",
                    (owner, _like(prefix)),
                )
            return [_job(r) for r in rows.fetchall()]

        return self.db.run(op)

    def drop_owner(self, owner: str) -> asyncio.Future[int]:
        return self.db.run(lambda conn: drop_jobs(conn, owner))


def drop_jobs(conn: sqlite3.Connection, owner: str, prefix: str = "") -> int:
    return int(
        conn.execute(
            "DELETE FROM jobs WHERE owner=? AND name LIKE ? ESCAPE '\\'", (owner, _like(prefix))
        ).rowcount
    )


# -- conversations --------------------------------------------------------------------------


def _message_dict(message: ChatMessage) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        ],
        "tool_call_id": message.tool_call_id,
        "is_error": message.is_error,
    }


def chat_message(item: dict[str, Any]) -> ChatMessage:
    calls = tuple(
        ToolCall(c["id"], c["name"], dict(c["arguments"])) for c in item.get("tool_calls", ())
    )
    return ChatMessage(
        role=item["role"],
        content=item.get("content", ""),
        tool_calls=calls,
        tool_call_id=item.get("tool_call_id"),
        is_error=bool(item.get("is_error", False)),
    )


class SqliteConversations:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def load(
        self, connector_id: str, chat_id: str, *, limit: int, since: float | None = None
    ) -> asyncio.Future[list[ChatMessage]]:
        def op(conn: sqlite3.Connection) -> list[ChatMessage]:
            rows = conn.execute(
                "SELECT message FROM conversation WHERE connector=? AND chat=? AND at >= ? "
                "ORDER BY id DESC LIMIT ?",
                (connector_id, chat_id, since if since is not None else float("-inf"), limit),
            ).fetchall()
            return [chat_message(json.loads(r[0])) for r in reversed(rows)]

        return self.db.run(op, single=True)

    def append(
        self, connector_id: str, chat_id: str, messages: Sequence[ChatMessage], *, keep: int
    ) -> asyncio.Future[Any]:
        items = list(messages)  # frozen messages: safe to read from the database's thread
        now = self.clock()

        def op(conn: sqlite3.Connection) -> None:
            append_messages(conn, connector_id, chat_id, items, now, keep)

        return self.db.run(op)

    def forget(self, connector_id: str, chat_id: str) -> asyncio.Future[Any]:
        return self.db.run(
            lambda conn: conn.execute(
                "DELETE FROM conversation WHERE connector=? AND chat=?", (connector_id, chat_id)
            )
        )

    def prune(self, before: float) -> asyncio.Future[int]:
        return self.db.run(
            lambda conn: conn.execute("DELETE FROM conversation WHERE at < ?", (before,)).rowcount
        )

    def drop_connector(self, connector_id: str) -> asyncio.Future[int]:
        return self.db.run(lambda conn: drop_conversations(conn, connector_id))

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


def append_messages(
    conn: sqlite3.Connection,
    connector_id: str,
    chat_id: str,
    messages: Sequence[ChatMessage],
    at: float,
    keep: int,
) -> None:
    conn.executemany(
        "INSERT INTO conversation (connector, chat, at, message) VALUES (?,?,?,?)",
        [(connector_id, chat_id, at, _dumps(_message_dict(m))) for m in messages],
    )
    conn.execute(
        "DELETE FROM conversation WHERE connector=? AND chat=? AND id <= (SELECT id FROM "
        "conversation WHERE connector=? AND chat=? ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (connector_id, chat_id, connector_id, chat_id, keep),
    )


def drop_conversations(conn: sqlite3.Connection, connector_id: str) -> int:
    return int(conn.execute("DELETE FROM conversation WHERE connector=?", (connector_id,)).rowcount)
