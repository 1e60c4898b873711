"""`api.store`, `api.inbox` and `api.schedule` of a process-isolated instance, over the pipe.

The state stays in the engine: the child's handles only forward each operation as a request
(`{"op": "durable", "id", "target", "method", "args", "kwargs"}`), and the engine runs it on the
instance's own handles (`serve`): its own store namespace (the child cannot name another), its
own inbox (the bot is woken as in process), its own jobs. A job's handler stays in the child:
the engine's scheduler holds a proxy per handler name that calls it through the pipe, under
the scheduler's timeout and retries, as in process. Errors come back with their type when it is
one plugins catch (ValueError, TypeError, LookupError, RegistrationError).
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any

from grambot.contract.durable import MISSING, Door, DurableHandles
from grambot.errors import RegistrationError
from grambot.isolation import calls
from grambot.registries.connectors import IncomingMessage
from grambot.scheduling.scheduler import Handler
from grambot.storage.base import Job

__all__ = ["RemoteInbox", "RemoteSchedule", "RemoteStore", "serve"]

# (target, method, args, kwargs) -> the engine's answer
Ask = Callable[[str, str, list[Any], dict[str, Any]], Awaitable[Any]]
_TYPES: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "TypeError": TypeError,
    "LookupError": LookupError,
    "KeyError": KeyError,
    "RegistrationError": RegistrationError,
}


def error_of(error: dict[str, Any]) -> Exception:
    """The engine's error as the plugin would have seen it in process."""
    kind = _TYPES.get(str(error.get("type")))
    if kind is None:
        return calls.decode_error(error)
    return kind(str(error["message"]).removeprefix(f"{error['type']}: "))


class RemoteStore(Door):
    """`api.store` in the child (grambot.contract.durable.InstanceStore's methods)."""

    MISSING = MISSING

    def __init__(self, ask: Ask, instance_id: str, namespace: str) -> None:
        super().__init__(instance_id, "api.store")
        self._ask = ask
        self.namespace = namespace

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.check()
        return await self._ask("store", method, list(args), kwargs)

    async def get(self, key: str, default: Any = None) -> Any:
        found, value = await self._call("get", key)
        return value if found else default

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        await self._call("set", key, value, ttl=ttl)

    async def delete(self, key: str) -> bool:
        return bool(await self._call("delete", key))

    async def keys(self, prefix: str = "") -> list[str]:
        return list(await self._call("keys", prefix))

    async def items(self, prefix: str = "") -> dict[str, Any]:
        return dict(await self._call("items", prefix))

    async def compare_and_set(
        self, key: str, expected: Any, value: Any, *, ttl: float | None = None
    ) -> bool:
        absent = expected is MISSING
        return bool(
            await self._call("cas", key, absent, None if absent else expected, value, ttl=ttl)
        )

    def __repr__(self) -> str:
        return f"InstanceStore({self.namespace!r})"


class RemoteInbox(Door):
    """`api.inbox` in the child."""

    def __init__(self, ask: Ask, instance_id: str) -> None:
        super().__init__(instance_id, "api.inbox")
        self._ask = ask

    async def accept(self, message: IncomingMessage) -> bool:
        self.check()
        if not isinstance(message, IncomingMessage):
            raise TypeError(f"api.inbox.accept takes an IncomingMessage, got {message!r}")
        return bool(await self._ask("inbox", "accept", [calls.encode_result(message)], {}))

    async def outstanding(self) -> int:
        self.check()
        return int(await self._ask("inbox", "outstanding", [], {}))


class RemoteSchedule(Door):
    """`api.schedule` in the child: the jobs are the engine's, the handlers stay here (the
    engine calls them through the pipe by the name they were registered under)."""

    def __init__(self, ask: Ask, tell: Callable[[dict[str, Any]], None], owner: str) -> None:
        super().__init__(owner, "schedule")
        self._ask = ask
        self._tell = tell
        self.owner = owner
        self.handlers: dict[str, Handler] = {}

    def handle(self, name: str, handler: Handler) -> None:
        self.check()
        if not callable(handler):
            raise TypeError(f"a job handler must be callable, got {handler!r}")
        self.handlers[name] = handler
        self._tell({"op": "schedule-handle", "name": name})

    async def every(
        self, name: str, seconds: float, handler: Handler | None, *a: Any, **k: Any
    ) -> Job:
        return await self._put("every", name, seconds, handler, a, k)

    async def cron(
        self, name: str, expression: str, handler: Handler | None, *a: Any, **k: Any
    ) -> Job:
        return await self._put("cron", name, expression, handler, a, k)

    async def at(self, name: str, when: Any, handler: Handler | None, *a: Any, **k: Any) -> Job:
        if isinstance(when, datetime.datetime):
            when = when.isoformat()  # naive or aware, read by the engine as in process
        return await self._put("at", name, when, handler, a, k)

    async def _put(
        self,
        method: str,
        name: str,
        timing: Any,
        handler: Handler | None,
        extra: tuple[Any, ...],
        options: dict[str, Any],
    ) -> Job:
        self.check()
        if handler is not None and not callable(handler):
            raise TypeError(f"a job handler must be callable, got {handler!r}")
        previous = self.handlers.get(name)
        if handler is not None:  # before the engine can fire it
            self.handlers[name] = handler
        try:
            raw = await self._ask(
                "schedule", method, [name, timing, handler is not None, *extra], options
            )
        except BaseException:
            if handler is not None:
                if previous is None:
                    self.handlers.pop(name, None)
                else:
                    self.handlers[name] = previous
            raise
        job: Job = calls.convert(raw, Job)
        return job

    async def cancel(self, name: str) -> bool:
        self.check()
        return bool(await self._ask("schedule", "cancel", [name], {}))

    async def jobs(self, prefix: str = "") -> list[Job]:
        self.check()
        jobs: list[Job] = calls.convert(
            await self._ask("schedule", "jobs", [prefix], {}), list[Job]
        )
        return jobs

    def handler_for(self, pattern: str) -> Handler | None:
        return self.handlers.get(pattern)

    def activate(self) -> None:
        """The engine activates the instance's jobs once it is loaded."""


# -- the engine's side --------------------------------------------------------------------------

# the engine's proxy of a handler registered in the child under a name (or "prefix*")
HandlerProxy = Callable[[str], Handler]


async def serve(
    handles: DurableHandles | None,
    proxy: HandlerProxy,
    target: str,
    method: str,
    args: list[Any],
    kwargs: dict[str, Any],
) -> Any:
    """Run a child's durable operation on its instance's own handles; the answer."""
    if handles is None:
        raise RuntimeError(
            "this engine lends no durable state (api.store, api.inbox, api.schedule)"
        )
    if target == "store":
        return await _store(handles, method, args, kwargs)
    if target == "inbox":
        if method == "accept":
            return await handles.inbox.accept(calls.convert(args[0], IncomingMessage))
        if method == "outstanding":
            return await handles.inbox.outstanding()
    if target == "schedule":
        return await _schedule(handles, proxy, method, args, kwargs)
    raise ValueError(f"{target}.{method} is not a durable operation")


async def _store(handles: DurableHandles, method: str, args: list[Any], kw: dict[str, Any]) -> Any:
    store = handles.store
    if method == "get":
        value = await store.get(args[0], MISSING)
        return [False, None] if value is MISSING else [True, value]
    if method == "set":
        return await store.set(args[0], args[1], ttl=kw.get("ttl"))
    if method == "delete":
        return await store.delete(args[0])
    if method == "keys":
        return await store.keys(args[0])
    if method == "items":
        return await store.items(args[0])
    if method == "cas":
        key, absent, expected, value = args
        return await store.compare_and_set(
            key, MISSING if absent else expected, value, ttl=kw.get("ttl")
        )
    raise ValueError(f"store.{method} is not a durable operation")


async def _schedule(
    handles: DurableHandles,
    proxy: HandlerProxy,
    method: str,
    args: list[Any],
    kwargs: dict[str, Any],
) -> Any:
    schedule = handles.schedule
    if schedule is None:
        raise RuntimeError("no scheduler runs in this engine")
    if method in ("every", "cron", "at"):
        name, timing, has_handler, *extra = args
        handler = proxy(name) if has_handler else None
        job = await getattr(schedule, method)(name, timing, handler, *extra, **kwargs)
        return calls.encode_result(job)
    if method == "cancel":
        return await schedule.cancel(args[0])
    if method == "jobs":
        return calls.encode_result(await schedule.jobs(args[0]))
    raise ValueError(f"schedule.{method} is not a durable operation")
