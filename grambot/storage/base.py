"""The storage seams: what the engine persists, as small Protocols (DESIGN §1).

    KeyValueStore      per namespace: get / set (JSON values, TTL) / delete / keys and items
                       by prefix / compare-and-set       (api.store; the bot's chat settings)
    Inbox              accepted → handling → sending → done (or uncertain)    (api.inbox, bot)
    Schedule           jobs keyed by (owner, name) with payload and next run  (api.schedule)
    ConversationStore  a chat's messages, append-only, trimmed and aged       (the bot)
    ChatTurns          the bot's step between two replies of a chat: the last one done and
                       its messages kept, the next one claimed with its history, at once

Every method returns an awaitable (the SQLite default returns plain futures, so gathering
several costs no task), so an implementation may sit on a thread (SQLite, the default:
grambot.storage.sqlite) or on the network (Redis, later). Nothing outside grambot/storage
knows how they are stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from grambot.errors import SchemaTooNew, StateError
from grambot.registries.connectors import IncomingMessage
from grambot.registries.inference import ChatMessage

__all__ = [
    "DONE_KEPT_DAYS",
    "MISSING",
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
    "StateError",
]

InboxState = Literal["accepted", "handling", "sending", "done", "uncertain"]
DONE_KEPT_DAYS = 30  # done and uncertain inbox entries are kept this long (deduplication)
MissedPolicy = Literal["run-once", "skip"]
JobKind = Literal["every", "cron", "at"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()  # what KeyValueStore.get returns for an absent or expired key


class KeyValueStore(Protocol):
    """JSON values under (namespace, key); a TTL in seconds makes a value expire."""

    def get(self, namespace: str, key: str) -> Awaitable[Any]:
        """The value, or MISSING."""
        ...

    def set(
        self, namespace: str, key: str, value: Any, *, ttl: float | None = None
    ) -> Awaitable[None]: ...

    def delete(self, namespace: str, key: str) -> Awaitable[bool]: ...

    def items(self, namespace: str, prefix: str = "") -> Awaitable[list[tuple[str, Any]]]:
        """Live (key, value) pairs whose key starts with `prefix`, in key order."""
        ...

    def compare_and_set(
        self, namespace: str, key: str, expected: Any, value: Any, *, ttl: float | None = None
    ) -> Awaitable[bool]:
        """Set `value` only if the current value equals `expected` (MISSING: absent)."""
        ...

    def drop_namespace(self, namespace: str) -> Awaitable[int]: ...

    def sweep(self) -> Awaitable[int]:
        """Delete the values past their TTL (invisible already); returns how many."""
        ...


@dataclass(frozen=True)
class InboxEntry:
    id: int  # increasing in acceptance order
    message: IncomingMessage
    state: InboxState
    accepted_at: float


class Inbox(Protocol):
    """Messages from connectors, durable before the connector acknowledges upstream.

    `accept` is idempotent on (connector, chat, message id) (a message without an id is never
    deduplicated); `claim_next(connector, chat)` hands out the oldest `accepted` message of a
    chat and marks it `handling`; a reply is marked `sending` before it goes out and `done`
    after. `recover()` runs once at start: `handling` goes back to `accepted` (handled again),
    `sending` becomes `uncertain` (the reply may or may not have gone out: never resent)."""

    def accept(self, message: IncomingMessage, *, dedupe: bool = True) -> Awaitable[bool]:
        """True when new, False for a duplicate (`dedupe=False`: always new)."""
        ...

    def claim_next(self, connector_id: str, chat_id: str) -> Awaitable[InboxEntry | None]: ...

    def mark_sending(self, entry_id: int) -> Awaitable[None]: ...

    def mark_done(self, entry_id: int) -> Awaitable[None]: ...

    def pending_chats(self) -> Awaitable[list[tuple[str, str]]]:
        """(connector, chat) pairs that have `accepted` messages, oldest first."""
        ...

    def recover(self) -> Awaitable[list[InboxEntry]]:
        """At start: returns the entries just marked `uncertain`."""
        ...

    def counts(self, connector_id: str | None = None) -> Awaitable[dict[str, int]]:
        """Open entries per state, of one connector's chats or all (`done` ones are not
        counted: they are kept a while only to recognise redeliveries)."""
        ...

    def prune(self, before: float) -> Awaitable[int]:
        """Forget `done` and `uncertain` entries last changed before `before`."""
        ...

    def drop_connector(self, connector_id: str) -> Awaitable[int]: ...


@dataclass(frozen=True)
class Job:
    """A scheduled job of `owner` (an instance id; `@bot` for the bot's reminders)."""

    owner: str
    name: str
    kind: JobKind
    spec: str  # seconds (every), a cron expression (cron), an ISO 8601 time (at)
    next_run: float | None  # epoch seconds; None: nothing due (an `at` job that ran)
    payload: Any = None
    tz: str | None = None  # cron jobs: the zone the expression is read in
    missed: MissedPolicy = "run-once"
    retries: int = 3
    retry_delay: float = 60.0
    attempt: int = 0  # failed attempts of the current run
    last_run: float | None = None
    last_error: str | None = None
    created_at: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


class Schedule(Protocol):
    def put(self, job: Job) -> Awaitable[None]:
        """Insert or replace the job keyed by (owner, name)."""
        ...

    def get(self, owner: str, name: str) -> Awaitable[Job | None]: ...

    def remove(self, owner: str, name: str) -> Awaitable[bool]: ...

    def jobs(self, owner: str | None = None, prefix: str = "") -> Awaitable[list[Job]]: ...

    def count(self) -> Awaitable[int]:
        """How many jobs are stored (of every owner)."""
        ...

    def owners(self) -> Awaitable[set[str]]:
        """The owners with at least one stored job."""
        ...

    def drop_owner(self, owner: str) -> Awaitable[int]: ...


class ConversationStore(Protocol):
    """The messages of a (connector, chat) conversation, oldest first."""

    def load(
        self, connector_id: str, chat_id: str, *, limit: int, since: float | None = None
    ) -> Awaitable[list[ChatMessage]]: ...

    def append(
        self, connector_id: str, chat_id: str, messages: Sequence[ChatMessage], *, keep: int
    ) -> Awaitable[None]:
        """Add `messages` (stamped now) and keep the chat's last `keep` (at least: it may be
        trimmed to them every few appends rather than at each)."""
        ...

    def forget(self, connector_id: str, chat_id: str) -> Awaitable[None]: ...

    def prune(self, before: float) -> Awaitable[int]:
        """Drop messages older than `before` (retention); returns how many."""
        ...

    def drop_connector(self, connector_id: str) -> Awaitable[int]: ...


@dataclass(frozen=True)
class Finished:
    """A message whose reply went out: its entry becomes `done`, the conversation gains
    `messages` and keeps the chat's last `keep`."""

    entry_id: int
    messages: Sequence[ChatMessage]
    keep: int


class ChatTurns(Protocol):
    """The bot's step between two replies of a chat, as one transaction (one round trip).
    With `Inbox.accept` and `Inbox.mark_sending`, a message costs three."""

    def next_turn(
        self,
        connector_id: str,
        chat_id: str,
        *,
        finished: Finished | None = None,
        claim: bool = True,
        history: int,
        since: float | None = None,
    ) -> Awaitable[tuple[InboxEntry | None, list[ChatMessage]]]:
        """Finish `finished` (if given); then, if `claim`, claim the chat's oldest `accepted`
        message and load the last `history` messages of its conversation (those stamped at
        or after `since`) to answer it with. `(None, [])` when nothing was claimed."""
        ...
