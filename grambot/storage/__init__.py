"""Durable storage behind small Protocols (KeyValueStore, Inbox, Schedule, ConversationStore,
ChatTurns) with an embedded default, one SQLite file `.scout/state.db` (docs/state.md). Nothing
outside this package touches SQL."""

from grambot.storage import base
from grambot.storage.base import *  # noqa: F403  (the Protocols and records: base.__all__)
from grambot.storage.database import SCHEMA_VERSION, Synchronous
from grambot.storage.sqlite_storage import STORAGE_FILE, SqliteStorage, open_storage

__all__ = ["SCHEMA_VERSION", "STORAGE_FILE", "SqliteStorage", "Synchronous", "open_storage"]
__all__ += base.__all__
