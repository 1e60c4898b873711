"""One SQLite database, one connection, one thread: the event loop never waits for the disk.

Every operation is a function of the connection queued to the database's thread. The thread
takes everything queued at once and runs it as one transaction (group commit): under load many
messages share one commit, and a lone operation pays a thread hand-off and a commit (WAL with
`synchronous=NORMAL` writes the log without an fsync; the fsync happens at checkpoints, which
another thread runs: grambot.storage.checkpoint). Each operation runs under a SAVEPOINT, so
one that fails is undone alone and the others commit. Results go back to the event loop with
one `call_soon_threadsafe` per batch.

Operations submitted from an event loop are handed over once per turn of that loop (a callback
queued at the first one), not one by one: the thread then starts once the loop has queued what
it had to, instead of competing with it for the GIL statement by statement (a thread that
releases the GIL at every statement waits for a busy loop thread each time to take it back).

The schema is versioned with `PRAGMA user_version` and migrated forward at open, each migration
in its own transaction; a database whose version is above what this grambot knows is refused
(`SchemaTooNew`), never touched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from grambot.errors import SchemaTooNew, StateError
from grambot.storage.checkpoint import Checkpointer

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Database", "Synchronous"]

logger = logging.getLogger("grambot.storage")
T = TypeVar("T")
Synchronous = Literal["normal", "full"]
Op = Callable[[sqlite3.Connection], Any]

# Each entry moves the schema from version i to i + 1. Append only: never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE kv (
        namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires_at REAL,
        PRIMARY KEY (namespace, key)) WITHOUT ROWID;
    CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, connector TEXT NOT NULL, chat TEXT NOT NULL,
        message_key TEXT, state TEXT NOT NULL, message TEXT NOT NULL,
        accepted_at REAL NOT NULL, updated_at REAL NOT NULL);
    CREATE UNIQUE INDEX inbox_dedupe ON inbox (connector, chat, message_key);
    CREATE INDEX inbox_queue ON inbox (connector, chat, state, id);
    CREATE INDEX inbox_state ON inbox (state, updated_at);
    CREATE TABLE jobs (
        owner TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, spec TEXT NOT NULL,
        next_run REAL, payload TEXT, tz TEXT, missed TEXT NOT NULL, retries INTEGER NOT NULL,
        retry_delay REAL NOT NULL, attempt INTEGER NOT NULL, last_run REAL, last_error TEXT,
        created_at REAL NOT NULL, meta TEXT NOT NULL,
        PRIMARY KEY (owner, name)) WITHOUT ROWID;
    CREATE TABLE conversation (
        id INTEGER PRIMARY KEY AUTOINCREMENT, connector TEXT NOT NULL, chat TEXT NOT NULL,
        at REAL NOT NULL, message TEXT NOT NULL);
    CREATE INDEX conversation_chat ON conversation (connector, chat, id);
    CREATE INDEX conversation_age ON conversation (at);
    """,
    # 2: the inbox indexed by what its queries look for, so that a message's moves between
    # states touch small indexes: the waiting messages of a chat (claims), the open ones
    # (recovery, counts), the finished ones by age (pruning).
    """
    DROP INDEX inbox_queue;
    DROP INDEX inbox_state;
    CREATE INDEX inbox_waiting ON inbox (connector, chat, id) WHERE state = 'accepted';
    CREATE INDEX inbox_open ON inbox (state) WHERE state != 'done';
    CREATE INDEX inbox_aged ON inbox (updated_at) WHERE state IN ('done', 'uncertain');
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
MAX_BATCH = 1024  # operations in one transaction at most (about: hand-overs are not split)
_STOP: Any = object()
_ENGINE_CONTEXT = contextvars.Context()  # hand-overs are the engine's work, whoever queued


class _Waiter:
    """Where one operation's outcome goes: a loop's future, or a thread's. `raw`: the operation
    runs alone, outside any transaction (a PRAGMA that cannot run inside one, a backup)."""

    __slots__ = ("future", "loop", "raw", "single")

    def __init__(
        self,
        future: asyncio.Future[Any] | concurrent.futures.Future[Any],
        loop: asyncio.AbstractEventLoop | None,
        raw: bool = False,
        single: bool = False,
    ) -> None:
        self.future = future
        self.loop = loop
        self.raw = raw
        self.single = single  # one statement: atomic by itself, no savepoint needed


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue  # its awaiter was cancelled
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class Database:
    def __init__(self, path: Path, *, synchronous: Synchronous = "normal") -> None:
        self.path = path
        self.synchronous: Synchronous = synchronous
        self._queue: queue.SimpleQueue[list[tuple[Op, _Waiter]] | Any] = queue.SimpleQueue()
        self._outbox: dict[asyncio.AbstractEventLoop, list[tuple[Op, _Waiter]]] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._open_error: BaseException | None = None
        self._closed = False
        self.batches = 0  # transactions committed (for benchmarks: ops / batches)
        self.ops = 0
        self._checkpointer: Checkpointer | None = None

    # -- use -----------------------------------------------------------------------------------

    def run(
        self, op: Callable[[sqlite3.Connection], T], *, single: bool = False
    ) -> asyncio.Future[T]:
        """Queue `op(connection)` to the database's thread, to run inside a transaction; a
        future of its result (a plain future, not a coroutine: gathering several costs no
        task). `single`: `op` executes one statement (SQLite undoes a failed statement by
        itself, so it needs no savepoint of its own)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._check_open()
        outbox = self._outbox.get(loop)
        if outbox is None:  # the first of this turn of the loop: hand them over at its end
            outbox = self._outbox[loop] = []
            loop.call_soon(self._flush, loop, context=_ENGINE_CONTEXT)
        outbox.append((op, _Waiter(future, loop, single=single)))
        return future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        outbox = self._outbox.pop(loop, None)
        if outbox:
            self._queue.put(outbox)

    async def run_raw(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """`op(connection)` alone, outside any transaction."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._flush(loop)  # after what this loop queued before
        self._submit(op, _Waiter(future, loop, raw=True))
        return await future

    def run_sync(
        self, op: Callable[[sqlite3.Connection], T], timeout: float = 60.0, *, raw: bool = False
    ) -> T:
        """The same from a thread that is not an event loop's (the CLI, tests)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._submit(op, _Waiter(future, None, raw=raw))
        return future.result(timeout)

    def _check_open(self) -> None:
        if self._thread is None:
            self.open()
        if self._closed:
            raise StateError(f"{self.path}: the state database is closed")

    def _submit(self, op: Op, waiter: _Waiter) -> None:
        self._check_open()
        self._queue.put([(op, waiter)])

    def open(self) -> None:
        """Open (create, migrate) in the database's thread; raises what opening raised."""
        with self._lock:
            if self._thread is not None:
                if self._open_error is not None:
                    raise self._open_error
                return
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._main, args=(ready,), name="grambot-state", daemon=True
            )
            self._thread.start()
            ready.wait()
            if self._open_error is not None:
                self._closed = True
                raise self._open_error

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then close the connection (idempotent)."""
        thread = self._thread
        if thread is None or self._closed:
            self._closed = True
            return
        self._closed = True
        self._queue.put(_STOP)
        thread.join(timeout)

    async def aclose(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._closed:
            self._closed = True
            return
        self._flush(asyncio.get_running_loop())  # what this loop queued is done before
        await asyncio.to_thread(self.close, timeout)

    @property
    def is_open(self) -> bool:
        return self._thread is not None and not self._closed

    # -- the thread ----------------------------------------------------------------------------

    def _main(self, ready: threading.Event) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._open_error = exc
            ready.set()
            return
        checkpointer: Checkpointer | None = Checkpointer(self.path)
        try:
            assert checkpointer is not None
            checkpointer.start()
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's work now
        except sqlite3.Error as exc:
            logger.warning("state database %s: checkpoints stay in commits: %s", self.path, exc)
            checkpointer = None
        self._checkpointer = checkpointer
        ready.set()
        try:
            self._serve(conn)
        finally:
            if checkpointer is not None:
                checkpointer.stop()
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # conversations and tokens live here: owner only
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot open the state database: {exc}") from None
        try:
            check_version(conn, self.path)  # before anything writes to the file
            configure(conn, self.synchronous)
            migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    def _serve(self, conn: sqlite3.Connection) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        held: Any = None  # what was taken while filling a batch and must run after it
        while True:
            item = held if held is not None else get()
            held = None
            if item is _STOP:
                return
            if item[0][1].raw:  # a raw operation comes alone
                self._run_raw(conn, *item[0])
                continue
            batch = list(item)
            while len(batch) < MAX_BATCH:
                try:
                    more = get_nowait()
                except queue.Empty:
                    break
                if more is _STOP or more[0][1].raw:
                    held = more
                    break
                batch += more
            self._run_batch(conn, batch)

    def _run_raw(self, conn: sqlite3.Connection, op: Op, waiter: _Waiter) -> None:
        try:
            outcome: tuple[_Waiter, Any, BaseException | None] = (waiter, op(conn), None)
        except BaseException as exc:
            outcome = (waiter, None, _wrapped(exc, self.path))
        self._deliver([outcome])

    def _run_batch(self, conn: sqlite3.Connection, batch: list[tuple[Op, _Waiter]]) -> None:
        outcomes: list[tuple[_Waiter, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            error = StateError(f"{self.path}: cannot write: {exc}")
            self._deliver([(w, None, error) for _, w in batch])
            return
        single = len(batch) == 1
        for op, waiter in batch:
            guarded = not single and not waiter.single
            try:
                if guarded:
                    conn.execute("SAVEPOINT op")
                result = op(conn)
                if guarded:
                    conn.execute("RELEASE op")
                outcomes.append((waiter, result, None))
            except BaseException as exc:
                if guarded:
                    try:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                    except sqlite3.Error:
                        pass
                outcomes.append((waiter, None, _wrapped(exc, self.path)))
        try:
            if single and outcomes[0][2] is not None:
                conn.execute("ROLLBACK")
            else:
                conn.execute("COMMIT")
                if self._checkpointer is not None:
                    self._checkpointer.committed()
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = StateError(f"{self.path}: commit failed: {exc}")
            outcomes = [(w, None, error) for w, _, _ in outcomes]
        self.batches += 1
        self.ops += len(batch)
        self._deliver(outcomes)

    def _deliver(self, outcomes: list[tuple[_Waiter, Any, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for waiter, result, error in outcomes:
            if waiter.loop is None:
                future = waiter.future
                assert isinstance(future, concurrent.futures.Future)
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)
            else:
                by_loop.setdefault(waiter.loop, []).append((waiter.future, result, error))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, items)


def _wrapped(exc: BaseException, path: Path) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        return StateError(f"{path}: {type(exc).__name__}: {exc}")
    return exc


def configure(conn: sqlite3.Connection, synchronous: Synchronous) -> None:
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StateError(f"cannot use the state database: {exc}") from None
    if str(mode).lower() != "wal":
        logger.warning("state database: journal_mode is %s, not wal", mode)
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=10000")


def check_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of the file; SchemaTooNew when a newer grambot wrote it."""
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{path}: not a usable SQLite database ({exc})") from None
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path}: the state database has schema version {found}, written by a newer "
            f"grambot; this one knows versions up to {SCHEMA_VERSION}. Upgrade grambot, or "
            "restore a backup this version made (docs/state.md: Backup and restore); the file "
            "was not changed"
        )
    return found


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found."""
    found = check_version(conn, path)
    for version in range(found, SCHEMA_VERSION):
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        logger.info(
            "state database %s: schema %d -> %d (%.1f ms)",
            path,
            version,
            version + 1,
            (time.perf_counter() - started) * 1000,
        )
    return found


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
