"""The built-ins' live-check hooks share one shape: make a fresh object for the instance, open
its connection (what `load` does, without registering anything), ask the service one cheap
question, close it. `run_check` is that shape; each built-in's object provides `connect()`,
`check() -> str` and `unload()`."""

from __future__ import annotations

from typing import Any, Protocol


class Checkable(Protocol):
    async def connect(self) -> None: ...

    async def check(self) -> str: ...

    async def unload(self) -> None: ...


async def run_check(thing: Checkable) -> str:
    """Connect, check, always close; what `check()` says, or its ServiceError."""
    await thing.connect()
    try:
        return await thing.check()
    finally:
        await thing.unload()


def model_ids(page: Any, limit: int = 3) -> str:
    """`3 models (a, b, c, ...)` from an SDK's model list page."""
    ids = [str(getattr(m, "id", m)) for m in (getattr(page, "data", None) or [])]
    more = ", ..." if len(ids) > limit else ""
    listed = f" ({', '.join(ids[:limit])}{more})" if ids else ""
    return f"the key works: {len(ids)} model(s){listed}"
