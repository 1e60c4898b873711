"""Which tasks, timers and threads belong to an instance, so its unload can end them.

Every task created while an instance's code runs (and every task those tasks create) inherits
the instance's context; a task factory records it in the instance's `InstanceTasks`, so unload
can cancel what the plugin left running, and runs it under `guard`, so that what it raises is
the instance's failure. Callbacks the instance's code puts on the loop (`call_later`/`call_at`
timers, `call_soon`, `call_soon_threadsafe`) are recorded the same way, cancelled at unload,
and run contained: a SystemExit or KeyboardInterrupt they raise is the instance's failure, not
the loop's. Work put on the loop from a thread of the plugin carries no context: it is
attributed by the module that defined the callback or coroutine (each instance has its own
namespace, `grambot.instances.<id>__<n>`).

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

from grambot.containment.boundary import crash, engine_cancelled

logger = logging.getLogger(__name__)
T = TypeVar("T")


TaskFailureReporter = Callable[[str, str, BaseException], None]


class InstanceTasks:
    """The asyncio tasks one instance started, held weakly.

    A background task that fails is reported through `on_failure(instance_id, task_name, exc)`
    (the manager redacts secrets and logs it), instead of asyncio's anonymous "Task exception
    was never retrieved" at garbage collection.
    """

    __slots__ = (
        "__weakref__",
        "_tasks",
        "_timers",
        "closing",
        "context",
        "instance_id",
        "on_failure",
    )

    def __init__(self, instance_id: str, on_failure: TaskFailureReporter | None = None) -> None:
        self.instance_id = instance_id
        self._tasks: weakref.WeakSet[asyncio.Task[Any]] | None = None  # made on first task
        self._timers: weakref.WeakSet[asyncio.Handle] | None = None  # on first callback
        self.on_failure = on_failure
        self.closing = False  # its unload has begun: whatever ends now ends because of it
        self.context: contextvars.Context | None = None  # set by instance_context

    def report(self, what: str, exc: BaseException) -> None:
        """A task or callback of the instance failed (logged with the instance, its health)."""
        if self.on_failure is not None:
            self.on_failure(self.instance_id, what, exc)
        else:
            logger.error("instance %s: %s failed", self.instance_id, what, exc_info=exc)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()  # retrieved: asyncio will not log it again
        if exc is not None:
            self.report(task.get_name(), exc)

    @property
    def tasks(self) -> weakref.WeakSet[asyncio.Task[Any]]:
        if self._tasks is None:
            self._tasks = weakref.WeakSet()
        return self._tasks

    def add_timer(self, handle: asyncio.Handle) -> None:
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

    def abandon(self) -> None:
        """Cancel every pending task and callback now, without waiting (an interrupted unload)."""
        self.closing = True
        self.cancel_timers()
        current = asyncio.current_task()
        for task in self.pending():
            if task is not current:
                task.cancel()

    async def cancel_all(self, grace: float) -> list[str]:
        """Cancel pending tasks; returns the names of those still running after `grace`."""
        self.closing = True
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


# namespace package name (grambot.instances.<id>__<n>) -> the tasks of that load
_BY_NAMESPACE: weakref.WeakValueDictionary[str, InstanceTasks] = weakref.WeakValueDictionary()
_NAMESPACE_PREFIX = "grambot.instances."


def instance_context(tasks: InstanceTasks, namespace: str | None = None) -> contextvars.Context:
    """A context in which code runs as `tasks.instance_id` (its new tasks are tracked); with
    `namespace`, work its modules put on the loop without a context is attributed to it too."""
    context = contextvars.copy_context()
    context.run(_current_owner.set, tasks)
    tasks.context = context
    if namespace is not None:
        _BY_NAMESPACE[namespace] = tasks
    return context


def _owner_of(thing: object) -> InstanceTasks | None:
    """The instance whose module defined `thing` (a callback or a coroutine), if any."""
    while isinstance(thing, functools.partial):
        thing = thing.func
    frame = getattr(thing, "cr_frame", None)
    module = frame.f_globals.get("__name__") if frame is not None else None
    if module is None:
        module = getattr(thing, "__module__", None)
    if not isinstance(module, str) or not module.startswith(_NAMESPACE_PREFIX):
        return None
    package = ".".join(module.split(".", 3)[:3])
    return _BY_NAMESPACE.get(package)


def owner_in(context: contextvars.Context) -> InstanceTasks | None:
    """The instance `context` runs code of, if any."""
    return context.get(_current_owner)


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
        if owner is None and (owner := _owner_of(coro)) is not None and owner.context is not None:
            # a coroutine of the instance scheduled from outside its context (from a thread:
            # run_coroutine_threadsafe): run it as the instance's, so its children are too
            kwargs["context"] = owner.context
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
    """Record every callback an instance's code puts on this loop (`call_at`, which
    `call_later` goes through, `call_soon` and `call_soon_threadsafe`) in that instance, so its
    unload cancels it, and run it contained. asyncio has no hook for this (as it has the task
    factory for tasks), so the three methods of this one loop object are wrapped; nothing global
    changes and the engine's own callbacks pass through untouched."""

    def owner_of(callback: object, context: contextvars.Context | None) -> InstanceTasks | None:
        # On the loop's thread, code runs in its instance's context (stages, tasks, contained
        # callbacks): the context says whose it is. asyncio's own callbacks (a task's step, a
        # future's callbacks) are governed by their task, not by us.
        owner = context.get(_current_owner) if context is not None else _current_owner.get()
        if owner is None or _machinery(callback):
            return None
        return owner

    call_at, call_soon, call_soon_threadsafe = (
        loop.call_at,
        loop.call_soon,
        loop.call_soon_threadsafe,
    )

    def tracked_call_at(
        when: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        owner = owner_of(callback, context)
        if owner is None:
            return call_at(when, callback, *args, context=context)
        handle = call_at(when, _contained(owner, callback), *args, context=context)
        owner.add_timer(handle)
        return handle

    def tracked_call_soon(
        callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        owner = owner_of(callback, context)
        if owner is None:
            return call_soon(callback, *args, context=context)
        handle = call_soon(_contained(owner, callback), *args, context=context)
        owner.add_timer(handle)
        return handle

    def tracked_threadsafe(
        callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        owner = None if _machinery(callback) else _owner_of(callback)  # no context from a thread
        if owner is None:
            return call_soon_threadsafe(callback, *args, context=context)
        if context is None:
            context = owner.context
        handle = call_soon_threadsafe(_contained(owner, callback), *args, context=context)
        owner.add_timer(handle)
        return handle

    loop.call_at = tracked_call_at  # type: ignore[method-assign, assignment]
    loop.call_soon = tracked_call_soon  # type: ignore[method-assign, assignment]
    loop.call_soon_threadsafe = tracked_threadsafe  # type: ignore[method-assign, assignment]


def _machinery(callback: object) -> bool:
    """asyncio's own callbacks (task steps and wakeups, future callbacks, sleep timers)."""
    if isinstance(getattr(callback, "__self__", None), asyncio.Future):
        return True
    module = getattr(callback, "__module__", None)
    return isinstance(module, str) and module.startswith(("asyncio", "_asyncio"))


def _contained(owner: InstanceTasks, callback: Callable[..., object]) -> Callable[..., object]:
    """`callback` run as `owner`'s code on the loop: marked for the watchdog, refused once the
    instance is closing, and whatever it raises reported as the instance's failure (a
    SystemExit would otherwise stop the loop)."""

    def run(*args: Any) -> object:
        if owner.closing:
            return None
        previous, ON_LOOP.instance_id = ON_LOOP.instance_id, owner.instance_id
        try:
            return callback(*args)
        except BaseException as exc:
            if engine_cancelled(exc):
                raise
            name = getattr(callback, "__qualname__", None) or repr(callback)
            owner.report(f"callback {name}", crash(exc) if not isinstance(exc, Exception) else exc)
            return None
        finally:
            ON_LOOP.instance_id = previous

    return run


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
    (grambot.app.watchdog), which cannot see another thread's context."""

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
