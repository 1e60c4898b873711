"""`api.store` and `api.inbox`: an instance's durable state (docs/state.md).

`api.store` is a persistent key-value store in the instance's own namespace (the cache's:
`<cacheKeyPrefix>:<instanceId>`), JSON values, optional TTL. `api.inbox.accept(message)` makes
an incoming message durable before the connector acknowledges it upstream; the bot answers it.
Both are coroutines (the default store is SQLite on its own thread; a later one may be remote):
use them from async code. After the instance unloads, both refuse (`RegistrationError`).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from grambot.errors import RegistrationError
from grambot.registries.connectors import IncomingMessage
from grambot.storage.base import MISSING, Inbox, KeyValueStore

if TYPE_CHECKING:
    from grambot.scheduling import InstanceSchedule

__all__ = ["MISSING", "DurableHandles", "DurableServices", "InstanceInbox", "InstanceStore"]

# (connector id, chat id): a message of that chat is in the inbox
AcceptedHook = Callable[[str, str], None]


def _key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"store keys are non-empty strings, got {key!r}")
    return key


class Door:
    """Refuses use once its instance is unloaded (the durable handles in process, and their
    proxies in a process-isolated child)."""

    __slots__ = ("_closed", "_instance_id", "_what")

    def __init__(self, instance_id: str, what: str) -> None:
        self._instance_id = instance_id
        self._what = what
        self._closed = False

    def close(self) -> None:
        self._closed = True

    def check(self) -> None:
        if self._closed:
            raise RegistrationError(
                f"instance {self._instance_id!r} is unloaded: its {self._what} is closed"
            )


class InstanceStore:
    """`api.store`: `await get/set/delete/keys/items/compare_and_set`, in this instance's
    namespace only. Values are JSON (dicts, lists, strings, numbers, booleans, None)."""

    MISSING = MISSING  # compare_and_set(key, MISSING, value): set only if absent

    __slots__ = ("_backend", "_door", "namespace")

    def __init__(self, backend: KeyValueStore, namespace: str, instance_id: str) -> None:
        self._backend = backend
        self.namespace = namespace
        self._door = Door(instance_id, "api.store")

    async def get(self, key: str, default: Any = None) -> Any:
        self._door.check()
        value = await self._backend.get(self.namespace, _key(key))
        return default if value is MISSING else value

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store `value` under `key`, for `ttl` seconds if given (else until deleted)."""
        self._door.check()
        if ttl is not None and not ttl > 0:
            raise ValueError(f"store ttl must be a number of seconds > 0, got {ttl!r}")
        await self._backend.set(self.namespace, _key(key), value, ttl=ttl)

    async def delete(self, key: str) -> bool:
        self._door.check()
        return await self._backend.delete(self.namespace, _key(key))

    async def keys(self, prefix: str = "") -> list[str]:
        self._door.check()
        return [k for k, _ in await self._backend.items(self.namespace, prefix)]

    async def items(self, prefix: str = "") -> dict[str, Any]:
        self._door.check()
        return dict(await self._backend.items(self.namespace, prefix))

    async def compare_and_set(
        self, key: str, expected: Any, value: Any, *, ttl: float | None = None
    ) -> bool:
        """Set `value` only if the current value equals `expected` (`api.store.MISSING`: only
        if absent); True if it was set."""
        self._door.check()
        return await self._backend.compare_and_set(
            self.namespace, _key(key), expected, value, ttl=ttl
        )

    def close(self) -> None:
        self._door.close()

    def __repr__(self) -> str:
        return f"InstanceStore({self.namespace!r})"


class InstanceInbox:
    """`api.inbox`: `await accept(message)` before acknowledging it upstream. True when new,
    False when it was accepted before (same connector, chat and message id)."""

    __slots__ = ("_door", "_inbox", "_instance_id", "_on_accepted")

    def __init__(self, inbox: Inbox, instance_id: str, on_accepted: AcceptedHook) -> None:
        self._inbox = inbox
        self._instance_id = instance_id
        self._on_accepted = on_accepted
        self._door = Door(instance_id, "api.inbox")

    async def accept(self, message: IncomingMessage) -> bool:
        self._door.check()
        if not isinstance(message, IncomingMessage):
            raise TypeError(f"api.inbox.accept takes an IncomingMessage, got {message!r}")
        if message.connector_id != self._instance_id:
            raise ValueError(
                f"instance {self._instance_id!r}: a message's connector_id must be the "
                f"instance id (its connector's key), got {message.connector_id!r}"
            )
        new = await self._inbox.accept(message)
        # the bot's work is the engine's, not this instance's: wake it in a context of its own
        asyncio.get_running_loop().call_soon(
            self._on_accepted,
            message.connector_id,
            message.chat_id,
            context=contextvars.Context(),
        )
        return new

    async def outstanding(self) -> int:
        """How many messages this connector accepted that the bot has not finished with
        (accepted, being answered, or with a reply on its way)."""
        self._door.check()
        counts = await self._inbox.counts(self._instance_id)
        return sum(counts.get(state, 0) for state in ("accepted", "handling", "sending"))

    def close(self) -> None:
        self._door.close()


class DurableServices:
    """What the engine lends every instance for durable state."""

    def __init__(
        self,
        kv: KeyValueStore,
        inbox: Inbox,
        on_accepted: AcceptedHook,
        schedule_for: Callable[[str, contextvars.Context], InstanceSchedule] | None = None,
    ) -> None:
        self.kv = kv
        self.inbox = inbox
        self.on_accepted = on_accepted
        self.schedule_for = schedule_for

    def handles(
        self, instance_id: str, namespace: str, context: contextvars.Context
    ) -> DurableHandles:
        schedule = self.schedule_for(instance_id, context) if self.schedule_for else None
        return DurableHandles(
            InstanceStore(self.kv, namespace, instance_id),
            InstanceInbox(self.inbox, instance_id, self.on_accepted),
            schedule,
        )


class DurableHandles:
    """One load's `api.store`, `api.inbox` and `api.schedule`; closed at its unload (the
    schedule's jobs pause until the next load)."""

    __slots__ = ("inbox", "schedule", "store")

    def __init__(
        self, store: InstanceStore, inbox: InstanceInbox, schedule: InstanceSchedule | None
    ) -> None:
        self.store = store
        self.inbox = inbox
        self.schedule = schedule

    def loaded(self) -> None:
        if self.schedule is not None:
            self.schedule.activate()

    def close(self) -> None:
        self.store.close()
        self.inbox.close()
        if self.schedule is not None:
            self.schedule.close()
