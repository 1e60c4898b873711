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
from grambot.storage.state import STATE_FILE, SqliteState, open_state

__all__ = [
    "DONE_KEPT_DAYS",
    "MISSING",
    "SCHEMA_VERSION",
    "STATE_FILE",
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
    "SqliteState",
    "StateError",
    "Synchronous",
    "open_state",
]
