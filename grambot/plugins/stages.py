"""Running plugin code under a deadline, and knowing which tasks an instance started.

Async stages run as tasks in the instance's context, cancelled on expiry. (Their first step is
not taken inline on the caller's task: code that ties state to the current task, like anyio's
cancel scopes inside httpx, breaks when a coroutine moves to another task halfway.) Sync
stages run in daemon worker threads: a thread that hangs cannot be killed, so it is abandoned
(and reported) instead of waited on, and neither reconciles nor process exit wait for it.
Workers are reused, so a fast sync `create()` costs a queue hand-off, not a thread start.

A reconcile that loads many instances at once must not start a thread per instance (a thread
start costs more than loading a small plugin, and a thousand threads fight for the GIL), nor wait
for the event loop between one job and the next: jobs queue in the pool, and at most
`YOUNG_LIMIT` workers run *young* jobs (started less than `YOUNG_SECONDS` ago) while the others
wait in the queue. A job that grows old (it blocks, or hangs) stops counting, so another worker
starts and a hung stage never holds the queue up for more than `YOUNG_SECONDS`. A stage's
deadline starts when its job starts, not while it waits in the queue.

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

    __slots__ = ("_tasks", "instance_id", "on_failure")

    def __init__(self, instance_id: str, on_failure: TaskFailureReporter | None = None) -> None:
        self.instance_id = instance_id
        self._tasks: weakref.WeakSet[asyncio.Task[Any]] | None = None  # made on first task
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


YOUNG_LIMIT = 1
YOUNG_SECONDS = 0.05


class _WorkerPool:
    """Daemon threads for sync plugin code; a hung call only costs its own thread.

    Jobs always travel through the queue (never as Thread args, which a Thread keeps until it
    exits), so a finished job, and the plugin objects it returned, is not pinned by a worker.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # workers waiting for a job
        self._pending = 0  # jobs queued and not yet taken
        self._started: dict[int, float] = {}  # worker ident -> when its job started
        self._names = itertools.count(1)

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._pending += 1
        self._jobs.put(job)
        self.kick()

    def kick(self) -> None:
        """Start a worker if jobs wait, none is idle and fewer than `limit` run young jobs."""
        with self._lock:
            if self._pending <= self._idle:
                return
            if self._threads - self._old() >= self.limit:
                return
            self._threads += 1
        name = f"grambot-stage-{next(self._names)}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def pending(self) -> int:
        return self._pending

    def _old(self) -> int:
        cutoff = time.monotonic() - YOUNG_SECONDS
        return sum(1 for started in self._started.values() if started < cutoff)

    def _work(self) -> None:
        ident = threading.get_ident()
        while True:
            with self._lock:
                self._idle += 1
            try:
                job: Callable[[], None] | None = self._jobs.get(timeout=30.0)
            except queue.Empty:
                with self._lock:
                    if self._pending == 0:
                        self._idle -= 1
                        self._threads -= 1
                        return
                job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                self._pending -= 1
                self._started[ident] = time.monotonic()
            assert job is not None
            try:
                job()
            except BaseException:  # jobs catch plugin errors; this is a bug of ours: keep going
                logger.exception("stage worker: a job failed")
            finally:
                job = None  # do not pin the finished job while parked
                with self._lock:
                    del self._started[ident]


_POOL = _WorkerPool(YOUNG_LIMIT)

# loops whose kicker is armed (a marker, not the timer: a handle would keep its loop alive)
_kickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, bool] = weakref.WeakKeyDictionary()


def _arm_kicker(loop: asyncio.AbstractEventLoop) -> None:
    """While jobs wait in the pool or outcomes are due, tick every YOUNG_SECONDS (one timer
    per loop, not one per job): kick the pool, so that jobs queued behind old ones get a new
    worker, and deliver the outcomes that did not wake the loop (see _Inbox)."""
    if loop in _kickers:
        return

    def tick() -> None:
        _POOL.kick()
        inbox = _inbox(loop)
        inbox.drain()
        if _POOL.pending() or inbox.outstanding:
            loop.call_later(YOUNG_SECONDS, tick)
        else:
            _kickers.pop(loop, None)

    _kickers[loop] = True
    loop.call_later(YOUNG_SECONDS, tick)


class _Inbox:
    """Outcomes of the sync calls made from one event loop, handed over in batches.

    Waking the loop (a self-pipe write, then the loop thread taking the GIL back from the busy
    worker) costs more than a small job. So an outcome wakes the loop only when it is the last
    one the loop is waiting for, or when `BATCH` have gathered; otherwise the loop's kicker
    (which ticks every YOUNG_SECONDS while calls are outstanding) delivers it at the latest.
    """

    BATCH = 32

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # weak: this is the value of a loop-keyed weak dict
        self._items: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._scheduled = False
        self.outstanding = 0  # calls submitted from this loop whose outcome has not arrived

    def expect(self, call: _SyncCall) -> None:
        """On the loop, before `call` is submitted."""
        with self._lock:
            self.outstanding += 1
            call.counted = True

    def forget(self, call: _SyncCall) -> None:
        """On the loop, when nobody waits for `call` any more (it timed out, or is done)."""
        with self._lock:
            if call.counted:
                call.counted = False
                self.outstanding -= 1

    def put(self, call: _SyncCall) -> None:
        """From a worker thread: `call` has its outcome."""
        with self._lock:
            if call.counted:
                call.counted = False
                self.outstanding -= 1
            self._items.append(call.settle)
            if self._scheduled:
                return
            if self.outstanding > 0 and len(self._items) < self.BATCH:
                return  # more are coming; the kicker delivers these at the latest
            self._scheduled = True
        loop = self._loop()
        if loop is None:
            return  # the loop is gone: nobody is waiting for the outcome
        # If the loop closed while this stage hung, nobody is waiting for the outcome.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        """On the loop."""
        with self._lock:
            batch, self._items = self._items, []
            self._scheduled = False
        for settle in batch:
            settle()


_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = weakref.WeakKeyDictionary()


def _inbox(loop: asyncio.AbstractEventLoop) -> _Inbox:
    inbox = _inboxes.get(loop)
    if inbox is None:
        inbox = _inboxes[loop] = _Inbox(loop)
    return inbox


class Progress:
    """Which step a multi-step stage call is in; read when it fails or times out."""

    __slots__ = ("stage",)

    def __init__(self, stage: str) -> None:
        self.stage = stage


async def run_stage(
    fn: Callable[..., Any],
    *args: Any,
    instance_id: str,
    stage: str,
    timeout: float,
    context: contextvars.Context,
    progress: Progress | None = None,
    timeout_ms: int | None = None,
) -> Any:
    """Call `fn(*args)` (sync or async) as `stage` of `instance_id` within `timeout` seconds.

    Raises StageTimeout on expiry ("timed out after N ms" when `timeout_ms` says the deadline
    came from a millisecond value); exceptions of `fn` propagate unchanged. When `fn` runs
    several steps, it may record the current one in `progress` (set to `stage` first): a
    timeout then names that step.
    """
    if progress is None:
        progress = Progress(stage)
    else:
        progress.stage = stage
    deadline = time.monotonic() + timeout
    limit = _Limit(timeout, timeout_ms)
    if inspect.iscoroutinefunction(fn):
        result = await _await_in_context(fn(*args), instance_id, stage, limit, deadline, context)
        return result
    result = await _call_in_thread(fn, args, instance_id, progress, limit, context)
    if inspect.isawaitable(result):
        result = await _await_in_context(
            result, instance_id, progress.stage, limit, deadline, context
        )
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


class _SyncCall:
    """One sync stage call: run by a worker thread, settled on the loop.

    The worker reaches the plugin's callable, its result and the future only through these
    fields, and each is cleared once it has served (the call by the worker, the result by
    `settle`, the future by the caller once it has the outcome): a worker that has not yet run
    on after the hand-off must not keep an unloaded instance's objects alive.
    """

    __slots__ = (
        "args",
        "context",
        "counted",
        "fn",
        "future",
        "inbox",
        "loop",
        "ok",
        "started",
        "timeout",
        "timer",
        "value",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        context: contextvars.Context,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
    ) -> None:
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] | None = args
        self.context = context
        self.loop = loop
        self.inbox = _inbox(loop)
        self.future: asyncio.Future[Any] | None = loop.create_future()
        self.timeout = timeout
        self.started: float | None = None  # monotonic time the worker started the call
        self.ok = False
        self.value: Any = None
        self.counted = False  # counted in the inbox's outstanding calls
        self.timer = loop.call_later(timeout, self.check_deadline)

    def __call__(self) -> None:
        """In a worker thread."""
        self.started = time.monotonic()
        fn, args = self.fn, self.args
        self.fn = self.args = None
        assert fn is not None and args is not None
        try:
            value = self.context.run(fn, *args)
            ok = True
        except Exception as exc:
            value, ok = exc, False
        except BaseException as exc:  # SystemExit in a plugin must not stop the engine
            value, ok = RuntimeError(f"plugin raised {type(exc).__name__}"), False
        del fn, args
        self.ok, self.value = ok, value
        del value
        self.inbox.put(self)

    def settle(self) -> None:
        """On the loop: hand the outcome to the waiting caller."""
        value, self.value = self.value, None
        future = self.future
        if future is None or future.done():
            return
        if self.ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def check_deadline(self) -> None:
        """On the loop, when the deadline may have passed; the clock starts with the job."""
        future = self.future
        if future is None or future.done():
            return
        now = time.monotonic()
        due = (self.started if self.started is not None else now) + self.timeout
        if due > now:
            self.timer = self.loop.call_later(due - now, self.check_deadline)
        else:
            future.set_exception(_Expired())


async def _call_in_thread(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    instance_id: str,
    progress: Progress,
    limit: _Limit,
    context: contextvars.Context,
) -> Any:
    call = _SyncCall(fn, args, context, asyncio.get_running_loop(), limit.seconds)
    future = call.future
    assert future is not None
    call.inbox.expect(call)
    _POOL.submit(call)
    _arm_kicker(call.loop)
    try:
        return await future
    except _Expired:
        logger.warning(
            "instance %s: %s timed out after %s; its thread is abandoned (threads cannot be "
            "killed) and keeps running in the background",
            instance_id,
            progress.stage,
            limit,
        )
        raise limit.expired(instance_id, progress.stage) from None
    finally:
        call.timer.cancel()
        call.inbox.forget(call)
        call.future = None
        del future


class _Expired(Exception):
    """A sync stage ran past its deadline (internal; surfaces as StageTimeout)."""
