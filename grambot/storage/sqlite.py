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

import msgspec

from grambot.registries.connectors import IncomingMessage
from grambot.storage.base import MISSING, InboxEntry, Job
from grambot.storage.database import Database

__all__ = [
    "SqliteInbox",
    "SqliteKeyValue",
    "SqliteSchedule",
    "decode_message",
    "encode_message",
]


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
            ),
            single=True,
        )


def drop_namespace(conn: sqlite3.Connection, namespace: str) -> int:
    return int(conn.execute("DELETE FROM kv WHERE namespace=?", (namespace,)).rowcount)


# -- inbox ----------------------------------------------------------------------------------


def _decode_hook(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(kind)


# msgspec reads and writes the dataclass's own fields (the rows' format since the first schema)
# an order of magnitude faster than json with hand-made dicts: a message is encoded at each
# accept and decoded at each claim. What JSON cannot hold in `extra` is written as its str().
_encode_message = msgspec.json.Encoder(enc_hook=str).encode
_decode_message = msgspec.json.Decoder(IncomingMessage, dec_hook=_decode_hook).decode


def encode_message(message: IncomingMessage) -> str:
    return _encode_message(message).decode()


def decode_message(data: str | bytes) -> IncomingMessage:
    return _decode_message(data)


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
        return self.db.run(lambda conn: claim_next(conn, connector_id, chat_id, now), single=True)

    def mark_sending(self, entry_id: int) -> asyncio.Future[Any]:
        now = self.clock()
        return self.db.run(lambda conn: mark(conn, entry_id, "sending", now), single=True)

    def mark_done(self, entry_id: int) -> asyncio.Future[Any]:
        now = self.clock()
        return self.db.run(lambda conn: mark(conn, entry_id, "done", now), single=True)

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

        def op(conn: sqlite3.Connection) -> list[InboxEntry]:
            conn.execute(
                f"UPDATE inbox SET state='accepted', updated_at=? WHERE {_OPEN} AND "
                "state='handling'",
                (now,),
            )
            rows = conn.execute(
                f"UPDATE inbox SET state='uncertain', updated_at=? WHERE {_OPEN} AND "
                "state='sending' RETURNING id, message, accepted_at",
                (now,),
            ).fetchall()
            entries = [InboxEntry(r[0], decode_message(r[1]), "uncertain", r[2]) for r in rows]
            return sorted(entries, key=lambda e: e.id)

        return self.db.run(op)

    def prune(self, before: float) -> asyncio.Future[int]:
        """Forget `done` and `uncertain` entries last changed before `before`."""
        return self.db.run(lambda conn: prune_inbox(conn, before), single=True)

    def counts(self, connector_id: str | None = None) -> asyncio.Future[dict[str, int]]:
        return self.db.run(lambda conn: inbox_counts(conn, connector_id))

    def drop_connector(self, connector_id: str) -> asyncio.Future[int]:
        return self.db.run(lambda conn: drop_inbox(conn, connector_id))

    def entries(self) -> asyncio.Future[list[InboxEntry]]:
        """Every entry still kept, oldest first (inspection and tests)."""
        return self.db.run(inbox_entries)


def claim_next(
    conn: sqlite3.Connection, connector_id: str, chat_id: str, now: float
) -> InboxEntry | None:
    """The chat's oldest `accepted` entry, now `handling`."""
    row = conn.execute(
        "SELECT id, message, accepted_at FROM inbox WHERE connector=? AND chat=? AND "
        "state='accepted' ORDER BY id LIMIT 1",
        (connector_id, chat_id),
    ).fetchone()
    if row is None:
        return None
    conn.execute("UPDATE inbox SET state='handling', updated_at=? WHERE id=?", (now, row[0]))
    return InboxEntry(row[0], decode_message(row[1]), "handling", row[2])


def mark(conn: sqlite3.Connection, entry_id: int, state: str, now: float) -> None:
    conn.execute("UPDATE inbox SET state=?, updated_at=? WHERE id=?", (state, now, entry_id))


# The open entries (not `done`): a partial index holds them, so counting them and finding those
# in a state reads only them, never the done ones (the bulk: kept DONE_KEPT_DAYS to deduplicate
# redeliveries). SQLite uses that index only when a query repeats its condition.
_OPEN = "state != 'done'"


def inbox_counts(conn: sqlite3.Connection, connector_id: str | None = None) -> dict[str, int]:
    """Open entries per state (`done` is not counted)."""
    if connector_id is None:
        rows = conn.execute(f"SELECT state, COUNT(*) FROM inbox WHERE {_OPEN} GROUP BY state")
    else:  # `+connector`: through the open entries, not all of the connector's
        rows = conn.execute(
            f"SELECT state, COUNT(*) FROM inbox WHERE {_OPEN} AND +connector=? GROUP BY state",
            (connector_id,),
        )
    return {str(state): int(count) for state, count in rows.fetchall()}


def prune_inbox(conn: sqlite3.Connection, before: float) -> int:
    return int(
        conn.execute(
            "DELETE FROM inbox WHERE state IN ('done', 'uncertain') AND updated_at < ?", (before,)
        ).rowcount
    )


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

    def count(self) -> asyncio.Future[int]:
        return self.db.run(
            lambda conn: int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]), single=True
        )

    def owners(self) -> asyncio.Future[set[str]]:
        return self.db.run(
            lambda conn: {row[0] for row in conn.execute("SELECT DISTINCT owner FROM jobs")},
            single=True,
        )

    def drop_owner(self, owner: str) -> asyncio.Future[int]:
        return self.db.run(lambda conn: drop_jobs(conn, owner))


def drop_jobs(conn: sqlite3.Connection, owner: str, prefix: str = "") -> int:
    return int(
        conn.execute(
            "DELETE FROM jobs WHERE owner=? AND name LIKE ? ESCAPE '\\'", (owner, _like(prefix))
        ).rowcount
    )
