"""Running plugin code under a deadline, and knowing which tasks an instance started.

Async stages run as tasks in the instance's context and are cancelled on expiry. Sync stages run
in daemon worker threads: a thread that hangs cannot be killed, so it is abandoned (and reported)
instead of waited on, and neither reconciles nor process exit wait for it. Workers are reused, so
a fast sync `create()` costs a queue hand-off, not a thread start.

Every task created while a stage runs (and every task those tasks create) inherits the
instance's context; a task factory records it in the instance's `InstanceTasks`, so unload can
cancel what the plugin left running.

Threads cannot be cancelled, so they are reported instead: at unload, `threads_running_code_of`
finds every live thread that runs the instance's code (a frame of one of its modules on the
thread's stack, or a thread class or target defined by them) and the manager logs a warning
naming each, e.g. a plugin thread that was never stopped, or a worker still stuck in a stage
that timed out. Attribution is by module name (each instance has its own namespace), so nothing
global is patched and two instances of one plugin are told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import itertools
import logging
import queue
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from grambot.errors import StageTimeout

logger = logging.getLogger(__name__)


TaskFailureReporter = Callable[[str, str, BaseException], None]


class InstanceTasks:
    """The asyncio tasks one instance started, held weakly.

    A background task that fails is reported through `on_failure(instance_id, task_name, exc)`
    (the manager redacts secrets and logs it), instead of asyncio's anonymous "Task exception
    was never retrieved" at garbage collection.
    """

    def __init__(self, instance_id: str, on_failure: TaskFailureReporter | None = None) -> None:
        self.instance_id = instance_id
        self.tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self.on_failure = on_failure

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()  # retrieved: asyncio will not log it again
        if exc is None:
            return
        if self.on_failure is not None:
            self.on_failure(self.instance_id, task.get_name(), exc)
        else:
            logger.error(
                "instance %s: background task %s failed",
                self.instance_id,
                task.get_name(),
                exc_info=exc,
            )

    def pending(self) -> list[asyncio.Task[Any]]:
        return [t for t in list(self.tasks) if not t.done()]

    async def cancel_all(self, grace: float) -> list[str]:
        """Cancel pending tasks; returns the names of those still running after `grace`."""
        current = asyncio.current_task()
        pending = [t for t in self.pending() if t is not current]
        for task in pending:
            task.cancel()
        if not pending:
            return []
        _, still = await asyncio.wait(pending, timeout=grace)
        return sorted(t.get_name() for t in still)


_current_owner: contextvars.ContextVar[InstanceTasks | None] = contextvars.ContextVar(
    "grambot_instance", default=None
)


def instance_context(tasks: InstanceTasks) -> contextvars.Context:
    """A context in which code runs as `tasks.instance_id` (its new tasks are tracked)."""
    context = contextvars.copy_context()
    context.run(_current_owner.set, tasks)
    return context


def current_instance_id() -> str | None:
    owner = _current_owner.get()
    return owner.instance_id if owner is not None else None


def install_task_tracking(loop: asyncio.AbstractEventLoop) -> None:
    """Chain a task factory that records each task in its creator's instance (idempotent).

    A background task of an instance runs under the same guard as its stages: SystemExit or
    KeyboardInterrupt raised in it would otherwise propagate out of the event loop and stop
    the whole engine. Its failure is reported by name (`InstanceTasks.on_failure`).
    """
    previous = loop.get_task_factory()
    if getattr(previous, "_grambot_tracking", False):
        return

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        context = kwargs.get("context")
        owner = context.get(_current_owner) if context is not None else _current_owner.get()
        # Stage tasks come already guarded, and run_stage consumes their outcome.
        background = (
            owner is not None
            and asyncio.iscoroutine(coro)
            and getattr(coro, "cr_code", None) is not _guard.__code__
        )
        if background:
            coro = _guard(coro)
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        if owner is not None and isinstance(task, asyncio.Task):
            owner.tasks.add(task)
            if background:
                task.add_done_callback(owner._task_done)
        return task

    factory._grambot_tracking = True  # type: ignore[attr-defined]
    loop.set_task_factory(factory)


def threads_running_code_of(namespace: str) -> list[str]:
    """Names of live threads (but the caller's) running code of module `namespace` or below.

    A thread counts when one of its frames belongs to such a module, or when its class or its
    target (a `Timer`'s function too) was defined there. Non-daemon threads are marked: they
    also keep the process from exiting.
    """
    prefix = namespace + "."

    def ours(module: object) -> bool:
        return isinstance(module, str) and (module == namespace or module.startswith(prefix))

    frames = sys._current_frames()
    current = threading.get_ident()
    found: list[str] = []
    for thread in threading.enumerate():
        if thread.ident is None or thread.ident == current:
            continue
        target = getattr(thread, "_target", None) or getattr(thread, "function", None)
        hit = ours(type(thread).__module__) or ours(getattr(target, "__module__", None))
        frame = frames.get(thread.ident)
        while frame is not None and not hit:
            hit = ours(frame.f_globals.get("__name__"))
            frame = frame.f_back
        if hit:
            found.append(thread.name if thread.daemon else f"{thread.name} (non-daemon)")
    del frames
    return sorted(found)


async def wait_for_threads(namespace: str, deadline: float) -> list[str]:
    """`threads_running_code_of(namespace)`, polled until none is left or `deadline` (monotonic)."""
    names = threads_running_code_of(namespace)
    while names and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        names = threads_running_code_of(namespace)
    return names


class _WorkerPool:
    """Daemon threads for sync plugin code; a hung call only costs its own thread.

    Jobs always travel through the queue (never as Thread args, which a Thread keeps until it
    exits), so a finished job, and the plugin objects it returned, is not pinned by a worker.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()
        self._names = itertools.count(1)

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1  # reserve an idle worker for this job
        self._jobs.put(job)
        if spawn:
            name = f"grambot-stage-{next(self._names)}"
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        job: Callable[[], None] | None = self._jobs.get()
        while job is not None:
            job()
            job = None  # do not pin the finished job while parked
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=30.0)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0 and self._jobs.empty():
                        self._idle -= 1
                        return
                job = self._jobs.get()


_POOL = _WorkerPool()


async def run_stage(
    fn: Callable[..., Any],
    *args: Any,
    instance_id: str,
    stage: str,
    timeout: float,
    context: contextvars.Context,
    timeout_ms: int | None = None,
) -> Any:
    """Call `fn(*args)` (sync or async) as `stage` of `instance_id` within `timeout` seconds.

    Raises StageTimeout on expiry ("timed out after N ms" when `timeout_ms` says the deadline
    came from a millisecond value); exceptions of `fn` propagate unchanged.
    """
    deadline = time.monotonic() + timeout
    limit = _Limit(timeout, timeout_ms)
    if inspect.iscoroutinefunction(fn):
        result = await _await_in_context(fn(*args), instance_id, stage, limit, deadline, context)
        return result
    result = await _call_in_thread(fn, args, instance_id, stage, limit, context)
    if inspect.isawaitable(result):
        result = await _await_in_context(result, instance_id, stage, limit, deadline, context)
    return result


class _Limit:
    """A stage's deadline as given: seconds, and the milliseconds it came from (if any)."""

    __slots__ = ("ms", "seconds")

    def __init__(self, seconds: float, ms: int | None) -> None:
        self.seconds = seconds
        self.ms = ms

    def __str__(self) -> str:
        return f"{self.ms} ms" if self.ms is not None else f"{self.seconds:g} s"

    def expired(self, instance_id: str, stage: str) -> StageTimeout:
        return StageTimeout(instance_id, stage, self.seconds, ms=self.ms)


async def _await_in_context(
    awaitable: Awaitable[Any],
    instance_id: str,
    stage: str,
    limit: _Limit,
    deadline: float,
    context: contextvars.Context,
) -> Any:
    loop = asyncio.get_running_loop()
    task = loop.create_task(_guard(awaitable), name=f"{instance_id}:{stage}", context=context)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        logger.warning(
            "instance %s: %s timed out after %s; its task was cancelled", instance_id, stage, limit
        )
        raise limit.expired(instance_id, stage)
    return task.result()


async def _guard(awaitable: Awaitable[Any]) -> Any:
    # asyncio lets SystemExit/KeyboardInterrupt out of a task and stops the loop: a plugin that
    # raises one must not stop the engine.
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as exc:
        raise RuntimeError(f"plugin raised {type(exc).__name__}") from None


async def _call_in_thread(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    instance_id: str,
    stage: str,
    limit: _Limit,
    context: contextvars.Context,
) -> Any:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    # The worker reaches the call, its outcome and the future only through these lists, which
    # are emptied as they are used: once `settle` ran, a worker that has not yet returned from
    # `job` (it may not get the GIL for a while) pins nothing the plugin made.
    call: list[Any] = [fn, args]
    waiting: list[asyncio.Future[Any]] = [future]
    del fn, args

    def settle(box: list[tuple[bool, Any]]) -> None:
        ok, value = box.pop()
        waiter = waiting.pop()
        if waiter.done():
            return
        if ok:
            waiter.set_result(value)
        else:
            waiter.set_exception(value)

    def job() -> None:
        target, target_args = call
        call.clear()
        box: list[tuple[bool, Any]] = []
        try:
            box.append((True, context.run(target, *target_args)))
        except Exception as exc:
            box.append((False, exc))
        except BaseException as exc:  # SystemExit in a plugin must not stop the engine
            box.append((False, RuntimeError(f"plugin raised {type(exc).__name__}")))
        del target, target_args
        # If the loop closed while this stage hung, nobody is waiting for the outcome.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, box)

    _POOL.submit(job)
    try:
        return await asyncio.wait_for(future, limit.seconds)
    except TimeoutError:
        logger.warning(
            "instance %s: %s timed out after %s; its thread is abandoned (threads cannot be "
            "killed) and keeps running in the background",
            instance_id,
            stage,
            limit,
        )
        raise limit.expired(instance_id, stage) from None
