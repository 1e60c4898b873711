"""The child process of one process-isolated instance: the plugin runs here, through the same
loader and the same `InProcessGeneration` as in process, and everything it hands the engine
crosses the pipe (grambot.isolation.wire).

    engine -> child   {"id", "op": prepare | create | hook | start | teardown | call | cancel
                       | ping, ...}
                      {"re": id, "ok" | "error": ...}   the answer to a durable request
    child -> engine   {"re": id, "ok" | "error" | "failure": ...}   the answer to a request
                      {"op": hello | registered | unregistered | events | log | health
                       | secret | stop | task | schedule-handle}    what the plugin did
                      {"op": durable, "id", ...}   api.store/inbox/schedule (isolation.durable)

Its `Services` are the child's own: registries that tell the engine of each registration, an
event queue that sends events in batches, the instance's secrets as the engine gave them (its
own, and the shared ones its manifest may read; a write goes back to the engine), a cache of its
own, and durable state that stays in the engine (grambot.isolation.durable). A MemoryError
anywhere ends it with MEMORY_EXIT (the engine reports `memory-limit`); the end of the pipe
ends it (the engine is gone or let it go).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import socket
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from grambot.config.catalog import PluginCatalog
from grambot.config.descriptor import load_descriptor
from grambot.config.settings import InstanceConfig, Timeouts
from grambot.containment.boundary import describe, format_details
from grambot.containment.stages import Progress
from grambot.containment.tracking import install_task_tracking
from grambot.contract.context import MemoryCache
from grambot.contract.durable import DurableHandles, DurableServices
from grambot.core.failures import Failure, classify
from grambot.core.generation import Applied, Services
from grambot.core.inprocess import InProcessGeneration
from grambot.errors import FrameTooLarge
from grambot.events.event import PluginEvent, PluginEventQueue
from grambot.isolation import calls, confine, durable
from grambot.isolation.wire import Channel
from grambot.masking import MASK
from grambot.registries import Registries

__all__ = ["MEMORY_EXIT", "SANDBOX_EXIT", "main"]

MEMORY_EXIT = 86  # a MemoryError ended it: `memory-limit`
SANDBOX_EXIT = 87  # `sandbox: required` and no sandbox here: `sandbox-unavailable`
HOOKS = ("load", "unload", "reconfigure", "check")


def main(fd: int, request: dict[str, Any], *, parent: int) -> int:
    """Confine this process, then serve the engine over the socket `fd`; the exit code."""
    try:
        sandbox = confine.apply(request["confine"], parent)
    except confine.SandboxRefused as exc:
        sys.stderr.write(f"grambot: instance {request['config']['instance_id']}: {exc}\n")
        return SANDBOX_EXIT
    try:
        return asyncio.run(Child(fd, request, sandbox).run())
    except MemoryError:
        return MEMORY_EXIT


def _memory_error(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, MemoryError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class _Events(PluginEventQueue):
    """The plugin's events, sent to the engine's queue in batches (one message per loop turn,
    not one write per event)."""

    __slots__ = ("_child", "_pending")

    def __init__(self, child: Child) -> None:
        super().__init__()
        self._child = child
        self._pending: list[list[Any]] = []

    def emit(self, plugin_id: str, instance_id: str, type: str, payload: Any = None) -> PluginEvent:
        event = PluginEvent(plugin_id, instance_id, type, payload)
        first = not self._pending
        self._pending.append([type, payload])
        if first:
            self._child.soon(self.flush)
        return event

    def flush(self) -> None:
        if self._pending:
            items, self._pending = self._pending, []
            self._child.send({"op": "events", "items": calls.encode_result(items)})


class _Secrets:
    """The secrets the engine gave this instance; writes go back to the engine."""

    def __init__(self, values: dict[str, dict[str, str]], child: Child) -> None:
        self._values = values
        self._child = child

    def get(self, instance_id: str, key: str) -> str | None:
        return self._values.get(instance_id, {}).get(key)

    def keys(self, instance_id: str) -> list[str]:
        return sorted(self._values.get(instance_id, {}))

    def set(self, instance_id: str, key: str, value: str) -> None:
        self._values.setdefault(instance_id, {})[key] = value
        self._child.send({"op": "secret", "instance": instance_id, "key": key, "value": value})

    def delete(self, instance_id: str, key: str) -> bool:
        had = self._values.get(instance_id, {}).pop(key, None) is not None
        self._child.send({"op": "secret", "instance": instance_id, "key": key, "value": None})
        return had


class _LogForwarder(logging.Handler):
    def __init__(self, child: Child) -> None:
        super().__init__()
        self._child = child

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self._child.send(
                {"op": "log", "name": record.name, "level": record.levelno, "text": text}
            )
        except Exception:
            self.handleError(record)


def _registry_meta(kind: str, item: Any) -> dict[str, Any]:
    """What the engine's proxy answers without asking the child (its quick sync methods)."""
    if kind == "tools":
        meta: dict[str, Any] = {"name": item.name, "description": item.description}
        try:
            meta["parameters"] = item.parameters()
        except Exception as exc:
            meta["parametersError"] = describe(exc)
        return meta
    if kind == "inference":
        return {"id": item.id, "label": item.label, "models": list(item.models())}
    if kind == "images":
        return {"id": item.id}
    return {}


def _forwarding(registries: Registries, child: Child) -> Registries:
    """Registries that tell the engine of every registration and removal."""
    made: dict[str, Any] = {}
    for kind, registry in (
        ("connectors", registries.connectors),
        ("inference", registries.inference),
        ("tools", registries.tools),
        ("images", registries.images),
    ):
        base: Any = type(registry)

        class Forwarding(base):  # type: ignore[misc]
            _grambot_kind = kind

            def register(self, key: str, owner: str, item: Any) -> None:
                super().register(key, owner, item)
                meta = _registry_meta(self._grambot_kind, item)
                child.send({"op": "registered", "kind": self._grambot_kind, "key": key, **meta})

            def unregister(self, key: str, owner: str) -> None:
                present = key in self
                super().unregister(key, owner)
                if present:
                    child.send({"op": "unregistered", "kind": self._grambot_kind, "key": key})

        made[kind] = Forwarding()
    return Registries(**made)


class Child:
    def __init__(self, fd: int, request: dict[str, Any], sandbox: str) -> None:
        self._sock = socket.socket(fileno=fd)
        self._request = request
        self._sandbox = sandbox
        self._channel: Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = threading.get_ident()
        self._calls: dict[int, asyncio.Task[Any]] = {}
        self._asked: dict[int, asyncio.Future[Any]] = {}  # durable requests to the engine
        self._asked_ids = 0
        self._schedule: durable.RemoteSchedule | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._generation: InProcessGeneration | None = None
        self._done = asyncio.Event()
        self.config = config_of(request["config"])
        self._pending: tuple[InstanceConfig, Any, Any] | None = None  # validated, to reconfigure
        self._events: _Events | None = None

    # -- talking to the engine -----------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Send `message` from any thread (in order with what this thread sent before)."""
        if threading.get_ident() != self._loop_thread:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._send_now, message)
        else:
            self._send_now(message)

    def soon(self, callback: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(callback)
        else:
            self._loop.call_soon(callback)

    def _send_now(self, message: dict[str, Any]) -> None:
        channel = self._channel
        if channel is None or channel.closed:
            return
        channel.send_nowait(message)

    def _reply(self, request_id: int, **answer: Any) -> None:
        if self._events is not None:
            self._events.flush()  # what the plugin emitted before it answered goes first
        try:
            self._send_now({"re": request_id, **answer})
        except FrameTooLarge as exc:
            error = {"type": "FrameTooLarge", "message": str(exc)}
            self._send_now({"re": request_id, "error": error})

    # -- the process ---------------------------------------------------------------------------

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        install_task_tracking(self._loop)
        self._channel = await Channel.over(self._sock)
        root = logging.getLogger()
        root.handlers[:] = [_LogForwarder(self)]
        root.setLevel(self._request.get("log_level", logging.INFO))
        self._services = self._make_services()
        self.send({"op": "hello", "pid": os.getpid(), "sandbox": self._sandbox})
        reader = asyncio.ensure_future(self._read())
        done = asyncio.ensure_future(self._done.wait())
        await asyncio.wait({reader, done}, return_when=asyncio.FIRST_COMPLETED)
        reader.cancel()
        done.cancel()
        return 0

    async def _read(self) -> None:
        assert self._channel is not None
        while True:
            message = await self._channel.recv()
            if message is None:
                os._exit(0)  # the engine is gone, or let this child go: nothing to tidy
            if "re" in message:
                self._answered(message)
            else:
                self._dispatch(message)

    # -- asking the engine (durable state) ----------------------------------------------------

    async def ask(self, target: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """A durable operation, run by the engine on this instance's handles."""
        assert self._loop is not None
        self._asked_ids += 1
        request_id = self._asked_ids
        future: asyncio.Future[Any] = self._loop.create_future()
        self._asked[request_id] = future
        try:
            self._send_now(
                {
                    "op": "durable",
                    "id": request_id,
                    "target": target,
                    "method": method,
                    "args": args,
                    "kwargs": kwargs,
                }
            )
            answer = await future
        finally:
            self._asked.pop(request_id, None)
        if "error" in answer:
            raise durable.error_of(answer["error"])
        return answer.get("ok")

    def _answered(self, message: dict[str, Any]) -> None:
        future = self._asked.get(message["re"])
        if future is not None and not future.done():
            future.set_result(message)

    def _durable_handles(
        self, instance_id: str, namespace: str, context: contextvars.Context
    ) -> DurableHandles:
        self._schedule = durable.RemoteSchedule(self.ask, self.send, instance_id)
        handles = (
            durable.RemoteStore(self.ask, instance_id, namespace),
            durable.RemoteInbox(self.ask, instance_id),
            self._schedule,
        )
        return DurableHandles(*handles)  # type: ignore[arg-type]  # the same methods

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ping":
            self._reply(message["id"], ok=None)
        elif op == "cancel":
            task = self._calls.get(message["id"])
            if task is not None:
                task.cancel()
        elif op == "call":
            # in the instance's context (what the call starts is the instance's); the engine
            # keeps its deadline and its guard, and cancels it by a message
            generation = self._generation
            context = generation.context.copy() if generation is not None else None
            task = self._spawn(self._call(message), context)
            self._calls[message["id"]] = task
        else:
            self._spawn(self._stage(message))

    def _spawn(self, coro: Any, context: contextvars.Context | None = None) -> asyncio.Task[Any]:
        """A task of the engine's work here (a fresh context), or of a call into the plugin
        (the instance's)."""
        assert self._loop is not None
        task = self._loop.create_task(coro, context=context or contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _make_services(self) -> Services:
        request = self._request
        plugin = request["plugin"]
        descriptor = load_descriptor(
            Path(plugin["path"]), source=plugin["source"], package_name=plugin["package"]
        )
        catalog = PluginCatalog()
        catalog.add(descriptor)
        timeouts = Timeouts(**request["timeouts"])
        overrides = {descriptor.id: request["override_ms"]} if request["override_ms"] else {}
        self._events = _Events(self)
        applied = Applied(catalog, timeouts, overrides, request["engine_settings"])
        return Services(
            registries=_forwarding(Registries(), self),
            events=self._events,
            secrets=_Secrets(request["secrets"], self),
            cache=MemoryCache(),
            data_root=Path(request["data_root"]),
            applied=lambda: applied,
            on_change=self._health_changed,
            request_stop=self._request_stop,
            durable=_RemoteDurable(self._durable_handles) if request["durable"] else None,
        )

    def _request_stop(self, instance_id: str, reason: str, unless_others: bool) -> bool:
        self.send({"op": "stop", "reason": reason, "unlessOthers": unless_others})
        return True  # the engine decides; it logs what it did

    def _health_changed(self) -> None:
        generation = self._generation
        if generation is not None:
            self.send({"op": "health", "status": generation.health.to_status()})

    def _task_failed(self, instance_id: str, what: str, exc: BaseException) -> None:
        if _memory_error(exc):
            os._exit(MEMORY_EXIT)
        self.send(
            {
                "op": "task",
                "what": what,
                "error": self._redact(describe(exc)),
                "details": self._redact(format_details(exc)),
            }
        )

    def _redact(self, text: str) -> str:
        return MASK.redact_instance(self._services.secrets, self.config.instance_id, text)

    # -- stages --------------------------------------------------------------------------------

    async def _stage(self, message: dict[str, Any]) -> None:
        op, request_id = message["op"], message["id"]
        progress = Progress(op)
        try:
            result = await self._run_stage(op, message, progress)
        except BaseException as exc:
            if _memory_error(exc):
                os._exit(MEMORY_EXIT)
            failure = classify(exc, progress.stage, self._redact)
            del exc
            self._reply(request_id, failure=_failure_fields(failure))
            return
        self._reply(request_id, ok=result)
        if op == "teardown":
            self._done.set()

    async def _run_stage(self, op: str, message: dict[str, Any], progress: Progress) -> Any:
        if op == "prepare":
            made = InProcessGeneration(self._services, self.config, self._task_failed)
            self._generation = made
            await made.import_and_validate(progress, create=message["create"])
            return self._described()
        generation = self._generation
        assert generation is not None
        if op == "create":
            await generation.create(progress)
            return self._described()
        if op == "hook":
            await generation.call(message["name"], progress)
            return None
        if op == "start":
            connector = self._services.registries.connectors.get(message["key"])
            if connector is not None and connector not in generation.started:
                progress.stage = "connector start"
                start = getattr(connector, "wrapped", connector).start
                await generation.stage(start, "connector start", generation.deadlines.load)
                generation.started.append(connector)
            return None
        if op == "teardown":
            await generation.teardown(call_unload=message["unload"], redact=self._redact)
            return None
        if op == "validate":
            config = config_of(message["config"])
            settings, migrated = await generation.validate(config)
            self._pending = (config, settings, migrated)
            return {"migrated": list(migrated) if migrated else None}
        if op == "reconfigure":
            return await self._reconfigure(generation, progress)
        if op == "check":
            return await generation.run_check(progress)
        raise ValueError(f"unknown request {op!r}")

    async def _reconfigure(self, generation: InProcessGeneration, progress: Progress) -> bool:
        """The plugin's `reconfigure` with what `validate` left (Instance.reconfigure's steps,
        here): True, and the new settings are its own from now on."""
        assert self._pending is not None, "reconfigure without validate"
        (config, settings, migrated), self._pending = self._pending, None
        progress.stage = "reconfigure"
        hook = generation.plugin_object.reconfigure
        accepted = await generation.stage(hook, "reconfigure", generation.deadlines.load, settings)
        if accepted is not True:
            return False
        generation.reconfigured(config, settings, migrated)
        self.config = config
        return True

    def _described(self) -> dict[str, Any]:
        generation = self._generation
        assert generation is not None
        plugin_object = generation.plugin_object if generation.created else None
        hooks = [h for h in HOOKS if callable(getattr(plugin_object, h, None))]
        migrated = list(generation.migrated) if generation.migrated else None
        return {"created": generation.created, "migrated": migrated, "hooks": hooks}

    # -- calls into registered objects ---------------------------------------------------------

    async def _call(self, message: dict[str, Any]) -> None:
        request_id, kind, key, method = (
            message["id"],
            message["kind"],
            message["key"],
            message["method"],
        )
        try:
            if kind == "schedule":
                registry: Any = {} if self._schedule is None else self._schedule.handlers
            else:
                registry = getattr(self._services.registries, kind)
            target = registry.get(key)
            if target is None:
                raise LookupError(f"{kind} {key!r} is not registered in this instance")
            args, kwargs = calls.decode_args(kind, method, message["args"])
            value = getattr(target, "wrapped", target)
            value = value(*args) if kind == "schedule" else getattr(value, method)(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            result = calls.encode_result(value)
        except asyncio.CancelledError:
            self._reply(request_id, cancelled=True)
            return
        except BaseException as exc:
            if _memory_error(exc):
                os._exit(MEMORY_EXIT)
            self._reply(request_id, error=calls.encode_error(exc))
            return
        finally:
            self._calls.pop(request_id, None)
        self._reply(request_id, ok=result)


class _RemoteDurable(DurableServices):
    """The child's durable services: handles whose operations the engine runs."""

    def __init__(self, make: Any) -> None:  # no store of its own
        self._make = make

    def handles(
        self, instance_id: str, namespace: str, context: contextvars.Context
    ) -> DurableHandles:
        handles: DurableHandles = self._make(instance_id, namespace, context)
        return handles


def config_of(raw: dict[str, Any]) -> InstanceConfig:
    """The entry the engine sent (grambot.isolation.backend.config_fields)."""
    return InstanceConfig(
        instance_id=raw["instance_id"],
        plugin_id=raw["plugin_id"],
        enabled=True,
        settings=raw["settings"],
        json_path=raw["json_path"],
        settings_version=raw["settings_version"],
    )


def _failure_fields(failure: Failure) -> dict[str, Any]:
    conflict = list(failure.conflict) if failure.conflict else None  # a list, as JSON has
    return {**asdict(failure), "conflict": conflict}
