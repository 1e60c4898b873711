"""A keyed registry that remembers which instance owns each key.

The four registries (connectors, inference, tools, images) are this one class with a kind name
and a Protocol for what they hold. Ownership is the point: an instance can never replace or
remove a key another instance owns, and the registrar of an instance removes exactly its own
keys on unload. Mutations take a lock because sync plugin stages run in worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

from grambot.errors import RegistrationConflict, RegistrationError

T = TypeVar("T")


class Registry(Generic[T]):
    kind: str = "item"

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, T]] = {}
        self._lock = threading.Lock()

    def register(self, key: str, owner: str, item: T) -> None:
        with self._lock:
            current = self._entries.get(key)
            if current is not None and current[0] != owner:
                raise RegistrationConflict(self.kind, key, owner=current[0], requester=owner)
            self._entries[key] = (owner, item)

    def unregister(self, key: str, owner: str) -> None:
        with self._lock:
            current = self._entries.get(key)
            if current is None:
                return
            if current[0] != owner:
                raise RegistrationError(
                    f"instance {owner!r} cannot unregister {self.kind} {key!r}: "
                    f"it belongs to instance {current[0]!r}"
                )
            del self._entries[key]

    def get(self, key: str) -> T | None:
        entry = self._entries.get(key)
        return entry[1] if entry is not None else None

    def owner_of(self, key: str) -> str | None:
        entry = self._entries.get(key)
        return entry[0] if entry is not None else None

    def keys(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(key, item) for key, (_, item) in list(self._entries.items())]

    def keys_of(self, owner: str) -> list[str]:
        return [key for key, (who, _) in list(self._entries.items()) if who == owner]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
