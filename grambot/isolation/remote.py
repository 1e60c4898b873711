"""`ProcessGeneration`: one load of a process-isolated instance, as the engine holds it.

It implements the generation contract (grambot.core.generation), so `Instance` calls the same
steps as on an `InProcessGeneration` (import and validate, create, load/unload hooks, connector
start, the one teardown), and each step becomes a request to the child, which runs an
`InProcessGeneration` there (grambot.isolation.child). What stays in the engine: the registrar
(the registries hold proxies of what the child registered), the instance's event emitter, its
health, the tasks of calls in flight (so unload cancels them), and the child itself: its pipe,
heartbeat, limits and end.

A step past its deadline (plus `GRACE`, for the child's own typed timeout to arrive first)
kills the child: a hung sync stage ends with its process instead of being abandoned. When the
child ends unasked, its proxies are removed at once, calls in flight fail with `ProcessLost`
(the bot apologises), and the instance is told (`on_lost`) so it can fail with the reason and
be restarted with the engine's retry backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import shutil
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from grambot.config.descriptor import PluginDescriptor
from grambot.config.settings import InstanceConfig
from grambot.containment.limits import Limit
from grambot.containment.loader import LoaderSnapshot
from grambot.containment.stages import Progress
from grambot.containment.tracking import TaskFailureReporter
from grambot.contract.api import InstanceEvents, PluginApi
from grambot.contract.context import cache_namespace
from grambot.contract.durable import DurableHandles
from grambot.core.failures import Failure
from grambot.core.generation import (
    NOT_CREATED,
    GenerationBase,
    OnLost,
    Services,
    contained,
    engine_handles,
)
from grambot.errors import (
    CallCancelled,
    ChildEnded,
    IsolatedFailure,
    ProcessLost,
    RegistrationError,
    StageTimeout,
    ZygoteError,
)
from grambot.isolation import calls, durable
from grambot.isolation.forkserver import ForkServer
from grambot.isolation.process import ChildProcess
from grambot.isolation.proxies import (
    RemoteConnector,
    RemoteImageProvider,
    RemoteProvider,
    RemoteTool,
)
from grambot.isolation.spec import Enforcement, Spec, config_fields
from grambot.isolation.wire import Channel
from grambot.masking import MASK

__all__ = ["GRACE", "RETRYABLE", "Host", "ProcessGeneration"]

logger = logging.getLogger("grambot.instance")

GRACE = 0.5  # past a step's deadline, before the engine stops waiting for the child's answer
CANCEL_ACK = 1.0  # a cancelled call the child does not acknowledge within this: it is killed
STOP_GRACE = 1.0  # after its teardown, to exit (SIGTERM, then SIGKILL)
LOST_CALLS_WAIT = 0.1  # for calls in flight to fail on their own once the child ended
RETRYABLE = frozenset({"crashed", "killed", "memory-limit", "cpu-limit", "unresponsive", "timeout"})


class Host(Protocol):
    """What a ProcessGeneration needs of the backend that made it
    (grambot.isolation.backend.ProcessIsolation)."""

    forkserver: ForkServer
    heartbeat_interval: float  # between pings of a child
    unresponsive_after: float  # a ping unanswered this long: the child is killed

    def request(self, generation: ProcessGeneration) -> tuple[dict[str, Any], str]:
        """The fork request of this load's child, and its private temporary folder."""
        ...

    def release(self, generation: ProcessGeneration) -> None:
        """No child came of the request: what it reserved (its cgroup) goes."""
        ...

    def record_exit(self, instance_id: str, reason: str) -> None: ...


class ProcessGeneration(GenerationBase):
    """What one load of a process-isolated instance made (see the module docstring); nothing
    of the plugin is imported in the engine."""

    def __init__(
        self,
        backend: Host,
        services: Services,
        config: InstanceConfig,
        descriptor: PluginDescriptor,
        spec: Spec,
        on_task_failure: TaskFailureReporter,
        on_lost: OnLost,
    ) -> None:
        instance_id = config.instance_id
        self.backend = backend
        self.spec = spec
        self.services = services
        self.config = config
        self.descriptor = descriptor
        handles = engine_handles(services, config, descriptor, on_task_failure)
        self.deadlines = handles.deadlines
        self.health = handles.health
        self.tasks = handles.tasks
        self.context = handles.context
        self.registrar = handles.registrar
        self._on_lost = on_lost
        self.settings: Any = None  # never the model: the child holds it
        self.migrated: tuple[int, int] | None = None
        self.ignored: tuple[str, ...] = ()  # settings keys its schema drops: the child's to say
        self.api: PluginApi | None = None  # the child's
        self.events = InstanceEvents(services.events, config.plugin_id, instance_id)
        self.plugin_object: Any = NOT_CREATED
        self.started: list[Any] = []
        self.durable: DurableHandles | None = None
        self.process: ChildProcess | None = None
        self.sandbox: str | None = None
        self.limits: Enforcement | None = None  # its cgroup and limits (backend.request)
        self.started_at: float | None = None
        self._hello: asyncio.Future[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._refused: BaseException | None = None  # a registration the engine refused
        self._tmp: str | None = None

    # -- loading, step by step -------------------------------------------------------------

    async def import_and_validate(
        self, progress: Progress, *, create: bool, snapshot: LoaderSnapshot | None = None
    ) -> None:
        # `snapshot` is this process's view of the files: the child reads them on its own
        progress.stage = "import"
        limit = self.deadlines.create
        durable_services = self.services.durable
        if durable_services is not None:  # the child's api.store/inbox/schedule are these
            namespace = cache_namespace(self.descriptor, self.instance_id)
            self.durable = durable_services.handles(self.instance_id, namespace, self.context)
        async with self._deadline(limit, progress):
            await self._spawn()
            answer = await self._ask({"op": "prepare", "create": create}, progress)
        self._described(answer)

    async def create(self, progress: Progress) -> None:
        progress.stage = "create"
        async with self._deadline(self.deadlines.create, progress):
            self._described(await self._ask({"op": "create"}, progress))

    async def call(self, hook: str, progress: Progress) -> None:
        progress.stage = hook
        if not callable(getattr(self.plugin_object, hook, None)):
            return
        limit = self.deadlines.load if hook == "load" else self.deadlines.unload
        async with self._deadline(limit, progress):
            await self._ask({"op": "hook", "name": hook}, progress)

    async def validate(self, config: InstanceConfig) -> tuple[Any, tuple[int, int] | None]:
        """`config`'s settings migrated and validated in the child, which keeps them for the
        `reconfigure` that follows; the settings here are only a marker (the engine never
        holds an isolated plugin's settings model)."""
        progress = Progress("settings validation")
        async with self._deadline(self.deadlines.create, progress):
            answer = await self._ask({"op": "validate", "config": config_fields(config)}, progress)
        migrated = answer["migrated"]
        return _IN_CHILD, (migrated[0], migrated[1]) if migrated else None

    def reconfigured(
        self, config: InstanceConfig, settings: Any, migrated: tuple[int, int] | None
    ) -> None:
        self.config, self.settings, self.migrated = config, settings, migrated

    async def _reconfigure(self, settings: Any) -> bool:
        """The plugin's `reconfigure` in the child, with the settings `validate` left there
        (Instance.reconfigure runs this as the stage, under the load deadline)."""
        answer = await self._ask({"op": "reconfigure"}, Progress("reconfigure"))
        return answer is True

    async def run_check(self, progress: Progress) -> str:
        """The plugin's `check` hook, in the child (grambot check of an isolated entry)."""
        progress.stage = "check"
        async with self._deadline(self.deadlines.load, progress):
            return str(await self._ask({"op": "check"}, progress))

    async def start_connector(self, key: str) -> None:
        """A connector's `start`, as the child's stage (RemoteConnector.start)."""
        progress = Progress("connector start")
        async with self._deadline(self.deadlines.load, progress):
            await self._ask({"op": "start", "key": key}, progress)

    def _described(self, answer: Any) -> None:
        if answer["created"]:
            self.plugin_object = _RemoteObject(answer["hooks"], self._reconfigure)
        migrated = answer["migrated"]
        self.migrated = (migrated[0], migrated[1]) if migrated else None

    @contextlib.asynccontextmanager
    async def _deadline(self, limit: Limit, progress: Progress) -> Any:
        """The step within `limit` (+ GRACE): past it, the child is killed, and the step
        is a timeout at the stage it was in."""
        try:
            async with asyncio.timeout(limit.seconds + GRACE):
                yield
        except TimeoutError:
            if self.process is not None:
                self.process.kill("timeout")
            raise StageTimeout(
                self.instance_id, progress.stage, limit.seconds, ms=limit.ms
            ) from None

    async def _ask(self, message: dict[str, Any], progress: Progress) -> Any:
        process = self.process
        assert process is not None
        try:
            answer = await process.ask(message)
        except ChildEnded as exc:
            raise self._ended(exc.reason, exc.detail, progress.stage) from None
        if self._refused is not None:  # a registration the engine refused fails the step
            refused, self._refused = self._refused, None
            raise refused
        failure = answer.get("failure")
        if failure is not None:
            conflict = failure["conflict"]
            raise IsolatedFailure(
                failure["kind"],
                failure["message"],
                recoverable=failure["recoverable"],
                stage=failure["stage"],
                details=failure["details"],
                conflict=(conflict[0], conflict[1], conflict[2]) if conflict else None,
            )
        return answer.get("ok")

    def _ended(self, reason: str, detail: str, stage: str) -> IsolatedFailure:
        return IsolatedFailure(
            reason,
            f"instance {self.instance_id!r}: its process ended during {stage}: {detail}",
            recoverable=reason in RETRYABLE,
            stage=stage,
        )

    # -- the child -------------------------------------------------------------------------

    async def _spawn(self) -> None:
        backend = self.backend
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            request, self._tmp = backend.request(self)
            try:
                pid = await backend.forkserver.spawn(request, theirs)
            except BaseException as exc:
                ours.close()
                backend.release(self)  # no child (or one nobody will talk to): no cgroup
                if isinstance(exc, ZygoteError):
                    raise IsolatedFailure("zygote-failed", str(exc), recoverable=True) from None
                raise
        finally:
            theirs.close()
        self.started_at = time.time()
        channel = await Channel.over(ours)
        loop = asyncio.get_running_loop()
        self._hello = loop.create_future()
        self.process = ChildProcess(
            backend.forkserver, pid, channel, self._on_message, self._on_end, self.limits
        )
        ended = self.process.ended
        hello: asyncio.Future[Any] = self._hello
        await asyncio.wait([hello, ended], return_when=asyncio.FIRST_COMPLETED)
        if not hello.done():
            reason, detail = ended.result()
            raise self._ended(reason, detail, "import")
        self._heartbeat = loop.create_task(
            self.process.beat(
                backend.heartbeat_interval,
                backend.unresponsive_after,
                f"instance {self.instance_id}",
            ),
            name=f"grambot-heartbeat:{self.instance_id}",
            context=contextvars.Context(),  # the engine's, never counted as the instance's
        )

    def _on_message(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "events":
            emit = self.events.emit
            for type_, payload in message["items"]:
                emit(type_, payload)
        elif op == "log":
            self._log(message)
        elif op == "registered":
            self._register(message)
        elif op == "unregistered":
            self._unregister(message["kind"], message["key"])
        elif op == "hello":
            self.sandbox = message["sandbox"]
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(None)
        elif op == "health":
            self._health(message["status"])
        elif op == "secret":
            self._secret(message)
        elif op == "durable":
            self._serve_durable(message)
        elif op == "schedule-handle":
            if self.durable is not None and self.durable.schedule is not None:
                name = message["name"]
                self.durable.schedule.handle(name, self._job_handler(name))
        elif op == "stop":
            self.services.request_stop(self.instance_id, message["reason"], message["unlessOthers"])
        elif op == "task":
            self.health.error(message["error"], f"{message['what']} crashed")
            logger.error(
                "instance %s: background task %s failed: %s\n%s",
                self.instance_id,
                message["what"],
                self._redact(message["error"]),
                self._redact(message["details"]),
            )

    def _on_end(self, reason: str, detail: str) -> None:
        """The pipe ended. Unasked: its proxies go at once, the instance is told."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if reason == "stopped":
            return
        self.backend.record_exit(self.instance_id, reason)
        self.registrar.close()  # nothing reaches it any more: calls in flight fail already
        message = f"instance {self.instance_id!r}: its process ended: {detail}"
        logger.error("%s", message)
        self._on_lost(self, Failure(reason, "running", message, reason in RETRYABLE))

    # -- what the child tells --------------------------------------------------------------

    def _register(self, message: dict[str, Any]) -> None:
        kind, key = message["kind"], message["key"]
        registrar = self.registrar
        try:
            if kind == "tools":
                registrar.register_tool(RemoteTool(key, message, self._call))
            elif kind == "inference":
                registrar.register_inference_provider(
                    RemoteProvider(key, message, self._call), key=key
                )
            elif kind == "images":
                registrar.register_image_provider(
                    RemoteImageProvider(key, message, self._call), key=key
                )
            elif kind == "connectors":
                connector = RemoteConnector(key, self._call, self.start_connector)
                registrar.register_connector(connector, key=key)
        except RegistrationError as exc:
            if self._refused is None:
                self._refused = exc

    def _unregister(self, kind: str, key: str) -> None:
        registrar = self.registrar
        with contextlib.suppress(RegistrationError):
            if kind == "tools":
                registrar.unregister_tool(key)
            elif kind == "inference":
                registrar.unregister_inference_provider(key)
            elif kind == "images":
                registrar.unregister_image_provider(key)
            elif kind == "connectors":
                registrar.unregister_connector(key)

    def _log(self, message: dict[str, Any]) -> None:
        name = str(message["name"])
        level = int(message["level"])
        target = logging.getLogger(name if name != "root" else "grambot.plugin")
        if target.isEnabledFor(level):
            target.log(level, "%s", self._redact(str(message["text"])))

    def _health(self, status: dict[str, Any]) -> None:
        error, ok = status.get("lastError"), status.get("lastOk")
        if status.get("healthy") and ok is not None:
            self.health.ok(ok["what"])
        elif error is not None:
            self.health.error(error["message"])

    def _secret(self, message: dict[str, Any]) -> None:
        """`api.secrets.set/delete` in the child: its own secrets only."""
        owner, key, value = message["instance"], message["key"], message["value"]
        if owner != self.instance_id:
            logger.error(
                "instance %s: its process asked to change a secret of %r: refused",
                self.instance_id,
                owner,
            )
            return
        secrets = self.services.secrets
        if value is None:
            secrets.delete(owner, key)
        else:
            MASK.add([value])
            secrets.set(owner, key, value)

    def _redact(self, text: str) -> str:
        return MASK.redact_instance(self.services.secrets, self.instance_id, text)

    def _serve_durable(self, message: dict[str, Any]) -> None:
        """api.store/inbox/schedule of the child, run on this instance's own handles."""
        process = self.process
        assert process is not None

        async def serve() -> None:
            try:
                result = await durable.serve(
                    self.durable,
                    self._job_handler,
                    message["target"],
                    message["method"],
                    message["args"],
                    message["kwargs"],
                )
                answer: dict[str, Any] = {"re": message["id"], "ok": result}
            except Exception as exc:
                answer = {"re": message["id"], "error": calls.encode_error(exc)}
            with contextlib.suppress(ChildEnded, ConnectionError):
                process.send(answer)

        # the instance's work: its unload cancels what is still in flight
        asyncio.get_running_loop().create_task(serve(), context=self.context)

    def _job_handler(self, name: str) -> Any:
        """The scheduler's handler for the child's job handler `name`: a call into the child."""
        return functools.partial(self._call, "schedule", name, "run")

    # -- calls into registered objects -----------------------------------------------------

    async def _call(self, kind: str, key: str, method: str, *args: Any, **kwargs: Any) -> Any:
        process = self.process
        what = f"{method} of {kind} {key!r}"
        if kwargs.get("files"):  # a reply's files: the child may read only its own folders
            own = [self.services.data_root / self.instance_id]
            kwargs["files"], lent = await asyncio.to_thread(
                calls.lend_files, kwargs["files"], own, self._tmp
            )
            if lent:
                try:
                    return await self._call(kind, key, method, *args, **kwargs)
                finally:
                    for folder in lent:
                        shutil.rmtree(folder, ignore_errors=True)
        if process is None or not process.alive:
            reason = process.ended.result()[0] if process is not None else "stopped"
            raise ProcessLost(self.instance_id, what, reason)
        request_id = process.next_id()
        answer = process.expect(request_id, metered=True)
        message = {
            "op": "call",
            "id": request_id,
            "kind": kind,
            "key": key,
            "method": method,
            "args": calls.encode_args(args, kwargs),
        }
        try:
            process.send(message)
            reply = await answer
        except ChildEnded as exc:
            process.forget(request_id)
            raise ProcessLost(self.instance_id, what, exc.reason) from None
        except asyncio.CancelledError:
            process.cancel(request_id, CANCEL_ACK, f"instance {self.instance_id}")
            raise
        except BaseException:
            process.forget(request_id)
            raise
        if "ok" in reply:
            return calls.decode_result(kind, method, reply["ok"])
        if "error" in reply:
            raise calls.decode_error(reply["error"])
        raise CallCancelled(self.instance_id, what)

    # -- the one teardown ------------------------------------------------------------------

    async def teardown(self, *, call_unload: bool, redact: Callable[[str], str]) -> None:
        try:
            process = self.process
            if process is not None and process.alive:
                ask = self._teardown_child(process, call_unload)
                await contained(self.instance_id, "teardown in its process", ask, redact)
                await process.stop(STOP_GRACE)
            elif process is not None and (pending := self.tasks.pending()):
                # it ended unasked: calls in flight are failing with ProcessLost already; let
                # them say so (a few loop turns) rather than cancel them into CallCancelled
                await asyncio.wait(pending, timeout=LOST_CALLS_WAIT)
            self._close_doors()
            await self.tasks.cancel_all(grace=min(1.0, self.deadlines.unload.seconds))
        except BaseException:
            self.abandon()
            raise
        finally:
            self._forget()

    async def _teardown_child(self, process: ChildProcess, call_unload: bool) -> None:
        progress = Progress("unload")
        # connectors stop and unload run in the child, each under the unload deadline
        limit = Limit(self.deadlines.unload.seconds * 2 + 1.0)
        async with self._deadline(limit, progress):
            await self._ask({"op": "teardown", "unload": call_unload}, progress)

    def _close_doors(self) -> None:
        """No registration, unregistration or event of this load is accepted any more."""
        try:
            self.registrar.close()
        except RegistrationError as exc:  # a registry entry it no longer owns: never fatal
            logger.error("instance %s: %s", self.instance_id, exc)
        self.events.close()
        if self.durable is not None:  # api.store/inbox refuse from now on; its jobs pause
            self.durable.close()

    def abandon(self) -> None:
        if self.process is not None:
            self.process.kill("stopped")
        self._close_doors()
        self.tasks.abandon()
        self._forget()

    def discard(self) -> None:
        self.abandon()

    def _forget(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- status ----------------------------------------------------------------------------

    def to_status(self) -> dict[str, Any]:
        process = self.process
        alive = process is not None and process.alive
        return {
            "pid": process.pid if alive and process is not None else None,
            "rssBytes": process.rss_bytes() if alive and process is not None else None,
            "sandbox": self.sandbox,
        }


class _RemoteObject:
    """The engine's stand-in for the object `create` returned in the child: it has the
    hooks the child's object has (so the engine calls only those); `reconfigure` crosses."""

    def __init__(self, hooks: list[str], reconfigure: Callable[[Any], Any]) -> None:
        for hook in hooks:
            if hook in ("load", "unload"):
                setattr(self, hook, _present)
            elif hook == "reconfigure":
                self.reconfigure = reconfigure


def _present() -> None:
    """A marker: the hook exists in the child."""


_IN_CHILD: Any = object()  # the validated settings of a reconfigure: the child holds them
