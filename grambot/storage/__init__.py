"""Durable state behind small Protocols (KeyValueStore, Inbox, Schedule, ConversationStore,
ChatTurns) with an embedded default, one SQLite file `.scout/state.db` (docs/state.md). Nothing
outside this package touches SQL."""

from grambot.storage.base import (
    DONE_KEPT_DAYS,
    MISSING,
    ChatTurns,
    ConversationStore,
    Finished,
    Inbox,
    InboxEntry,
    InboxState,
    Job,
    KeyValueStore,
    MissedPolicy,
    Schedule,
    SchemaTooNew,
    StateError,
)
from grambot.storage.database import SCHEMA_VERSION, Synchronous
from grambot.storage.sqlite_storage import STORAGE_FILE, SqliteStorage, open_storage

__all__ = [
    "DONE_KEPT_DAYS",
    "MISSING",
    "SCHEMA_VERSION",
    "STORAGE_FILE",
    "ChatTurns",
    "ConversationStore",
    "Finished",
    "Inbox",
    "InboxEntry",
    "InboxState",
    "Job",
    "KeyValueStore",
    "MissedPolicy",
    "Schedule",
    "SchemaTooNew",
    "SqliteStorage",
    "StateError",
    "Synchronous",
    "open_storage",
]
