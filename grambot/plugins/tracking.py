"""Which tasks, timers and threads belong to an instance, so its unload can end them.

Every task created while an instance's code runs (and every task those tasks create) inherits
the instance's context; a task factory records it in the instance's `InstanceTasks`, so unload
can cancel what the plugin left running, and runs it under `guard`, so that what it raises is
the instance's failure. Timers (`loop.call_later`) armed from the instance's code are recorded
the same way and cancelled at unload.

Threads cannot be cancelled, so they are reported instead: at unload, `threads_running_code_of`
finds every live thread that runs the instance's code (a frame of one of its modules on the
thread's stack, or a thread class or target defined by them) and the instance logs a warning
naming each, e.g. a plugin thread that was never stopped, or a worker still stuck in a stage
that timed out. Attribution is by module name (each instance has its own namespace), so two
instances of one plugin are told apart.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from grambot.core.failures import crash, engine_cancelled

logger = logging.getLogger(__name__)
T = TypeVar("T")


TaskFailureReporter = Callable[[str, str, BaseException], None]


class InstanceTasks:
    """The asyncio tasks one instance started, held weakly.

    A background task that fails is reported through `on_failure(instance_id, task_name, exc)`
    (the manager redacts secrets and logs it), instead of asyncio's anonymous "Task exception
    was never retrieved" at garbage collection.
    """

    __slots__ = ("_tasks", "_timers", "instance_id", "on_failure")

    def __init__(self, instance_id: str, on_failure: TaskFailureReporter | None = None) -> None:
        self.instance_id = instance_id
        self._tasks: weakref.WeakSet[asyncio.Task[Any]] | None = None  # made on first task
        self._timers: weakref.WeakSet[asyncio.TimerHandle] | None = None  # on first timer
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

    @property
    def tasks(self) -> weakref.WeakSet[asyncio.Task[Any]]:
        if self._tasks is None:
            self._tasks = weakref.WeakSet()
        return self._tasks

    def add_timer(self, handle: asyncio.TimerHandle) -> None:
        if self._timers is None:
            self._timers = weakref.WeakSet()
        self._timers.add(handle)

    def cancel_timers(self) -> int:
        """Cancel the timers (`loop.call_later`/`call_at`) the instance armed; returns how many
        were still pending."""
        if self._timers is None:
            return 0
        pending = [h for h in list(self._timers) if not h.cancelled()]
        for handle in pending:
            handle.cancel()
        self._timers = None
        return len(pending)

    def pending(self) -> list[asyncio.Task[Any]]:
        if self._tasks is None:
            return []
        return [t for t in list(self._tasks) if not t.done()]

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
            and getattr(coro, "cr_code", None) is not guard.__code__
        )
        inner = coro
        if background:
            assert owner is not None
            coro = guard(coro, owner.instance_id)
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        if owner is not None and isinstance(task, asyncio.Task):
            owner.tasks.add(task)
            if background:
                task.add_done_callback(owner._task_done)
                task.add_done_callback(functools.partial(close_unstarted, inner))
        return task

    factory._grambot_tracking = True  # type: ignore[attr-defined]
    loop.set_task_factory(factory)
    _track_timers(loop)


def _track_timers(loop: asyncio.AbstractEventLoop) -> None:
    """Record every timer armed from an instance's code in that instance, so unload can cancel
    it: a `loop.call_later` callback would otherwise go on running the instance's code after
    unload. asyncio has no hook for timers (as it has the task factory), so this wraps the
    `call_at` of this one loop object (`call_later` goes through it); nothing global changes."""
    original = loop.call_at

    def call_at(
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        owner = context.get(_current_owner) if context is not None else _current_owner.get()
        if owner is None:
            return original(when, callback, *args, context=context)
        marked = functools.partial(run_marked, owner.instance_id, callback)
        handle = original(when, marked, *args, context=context)
        owner.add_timer(handle)
        return handle

    loop.call_at = call_at  # type: ignore[method-assign, assignment]


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


class OnLoop:
    """Which instance's code the event loop runs right now (None: the engine's own).

    A plain attribute, not a context variable: the loop watchdog reads it from another thread
    (grambot.watchdog), which cannot see another thread's context."""

    __slots__ = ("instance_id",)

    def __init__(self) -> None:
        self.instance_id: str | None = None


ON_LOOP = OnLoop()


def run_marked(instance_id: str, callback: Callable[..., T], *args: Any) -> T:
    """A sync call of an instance's code on the loop (a timer callback), marked in ON_LOOP."""
    previous, ON_LOOP.instance_id = ON_LOOP.instance_id, instance_id
    try:
        return callback(*args)
    finally:
        ON_LOOP.instance_id = previous


def close_unstarted(awaitable: object, _task: object = None) -> None:
    """Close `awaitable` if it is a coroutine that never started: its guard's task was
    cancelled before its first step (prompt_toolkit cancels background tasks that fast), and
    the wrapped coroutine would otherwise be collected with "was never awaited" warnings."""
    if (
        asyncio.iscoroutine(awaitable)
        and inspect.getcoroutinestate(awaitable) == inspect.CORO_CREATED
    ):
        awaitable.close()


class _Steps:
    """Awaits `awaitable` one step at a time, naming `instance_id` in ON_LOOP during each
    step: every stretch of plugin code the loop runs is attributed, however long it blocks."""

    __slots__ = ("_awaitable", "_instance_id")

    def __init__(self, awaitable: Awaitable[Any], instance_id: str) -> None:
        self._awaitable = awaitable
        self._instance_id = instance_id

    def __await__(self) -> Generator[Any, Any, Any]:
        steps = self._awaitable.__await__()
        message: Any = None
        error: BaseException | None = None
        while True:
            previous, ON_LOOP.instance_id = ON_LOOP.instance_id, self._instance_id
            try:
                yielded = steps.send(message) if error is None else steps.throw(error)
            except StopIteration as stop:
                return stop.value
            finally:
                ON_LOOP.instance_id = previous
            try:
                message, error = (yield yielded), None
            except BaseException as exc:  # thrown in by the task: cancellation, mostly
                message, error = None, exc


async def guard(awaitable: Awaitable[Any], instance_id: str | None = None) -> Any:
    """Run plugin code so that whatever BaseException it raises is its failure: asyncio would
    let SystemExit/KeyboardInterrupt out of the task and stop the loop, and a CancelledError
    nobody asked for would pass for the engine's own cancellation. With `instance_id`, each
    step is marked in ON_LOOP for the loop watchdog."""
    try:
        if instance_id is None:
            return await awaitable
        return await _Steps(awaitable, instance_id)
    except Exception:
        raise
    except BaseException as exc:
        if engine_cancelled(exc):
            raise
        raise crash(exc) from None
