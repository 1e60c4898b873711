"""WAL checkpoints off the database's thread.

A checkpoint copies what the write-ahead log holds back into the database file and syncs it to
disk: many pages and an fsync or two, milliseconds on a busy disk. SQLite's automatic one runs
inside the commit that fills the log past 1000 pages, so every operation queued behind that
commit would wait for it. Here the writing connection has automatic checkpoints turned off and
a thread of its own, with its own connection, runs a PASSIVE checkpoint (which never blocks the
writer, nor waits for it) at most every `interval` seconds while commits come. The GIL is
released while SQLite works, so the database's thread goes on meanwhile.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["Checkpointer"]

logger = logging.getLogger("grambot.storage")


class Checkpointer:
    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self.checkpoints = 0
        self._committed = threading.Event()  # set by each commit, cleared by each checkpoint
        self._stopping = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._thread = threading.Thread(target=self._run, name="grambot-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """A commit went into the log (called by the database's thread after each)."""
        if not self._committed.is_set():  # no lock taken when it is set already
            self._committed.set()

    def stop(self, timeout: float = 1.0) -> None:
        """End the thread (a checkpoint under way is interrupted) and close its connection;
        the last connection to close checkpoints what is left."""
        self._stopping.set()
        self._committed.set()
        conn, thread = self._conn, self._thread
        if conn is None or thread is None:
            return
        conn.interrupt()
        thread.join(timeout)
        if not thread.is_alive():
            conn.close()

    def _run(self) -> None:
        assert self._conn is not None
        while not self._stopping.is_set():
            self._committed.wait()
            if self._stopping.wait(self.interval):  # commits of the next moments share it
                return
            self._committed.clear()
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                if self._stopping.is_set():
                    return
                logger.warning("state database %s: checkpoint failed: %s", self.path, exc)
            else:
                self.checkpoints += 1
