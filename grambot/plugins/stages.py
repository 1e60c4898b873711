"""Running plugin code under a deadline.

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

Stages run in the instance's context (grambot.plugins.tracking), so what they start is the
instance's; whatever BaseException plugin code raises comes out as `PluginCrash` (the engine's
own cancellation excepted), and a stage cancelled by its instance's unload as `CallCancelled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import itertools
import logging
import queue
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from grambot.core.failures import crash
from grambot.errors import CallCancelled, PluginCrash, StageTimeout
from grambot.plugins.tracking import guard, owner_in, run_marked

logger = logging.getLogger(__name__)


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


async def call_plugin(
    fn: Callable[..., Any], *args: Any, instance_id: str, what: str, context: contextvars.Context
) -> Any:
    """Await the plugin method `fn(*args)` as `instance_id`'s code, with no deadline of its own
    (the caller has one: a model call has the bot's reply timeout).

    It runs as a task in the instance's context, so the instance's unload cancels it (raising
    `CallCancelled` here) and tasks it starts are the instance's; whatever BaseException it
    raises comes out as `PluginCrash`. A sync method is called inline (it must be quick).
    """
    try:
        result = context.run(run_marked, instance_id, fn, *args)
    except Exception:
        raise
    except BaseException as exc:
        raise crash(exc) from None
    if not inspect.isawaitable(result):
        return result
    return await _await_in_context(result, instance_id, what, _NO_LIMIT, None, context)


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


_NO_LIMIT = _Limit(float("inf"), None)


def engine_cancelled_now() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _cancelled(
    task: asyncio.Task[Any], instance_id: str, stage: str, context: contextvars.Context
) -> NoReturn:
    """A stage task cancelled, not by our caller: by the instance's unload, or its own code."""
    owner = owner_in(context)
    if owner is not None and owner.closing:
        raise CallCancelled(instance_id, stage)
    raise PluginCrash("CancelledError", f"the plugin's own code cancelled its {stage}")


async def _await_in_context(
    awaitable: Awaitable[Any],
    instance_id: str,
    stage: str,
    limit: _Limit,
    deadline: float | None,
    context: contextvars.Context,
) -> Any:
    loop = asyncio.get_running_loop()
    task = loop.create_task(
        guard(awaitable, instance_id), name=f"{instance_id}:{stage}", context=context
    )
    if deadline is None:  # no deadline of our own (a model call): await the task directly
        try:
            return await task
        except asyncio.CancelledError:
            if engine_cancelled_now() or not task.cancelled():
                task.cancel()
                raise  # our caller is being cancelled (and the call with it)
        return _cancelled(task, instance_id, stage, context)
    wait = max(0.0, deadline - time.monotonic())
    try:
        done, _ = await asyncio.wait({task}, timeout=wait)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        logger.warning(
            "instance %s: %s timed out after %s; its task was cancelled", instance_id, stage, limit
        )
        raise limit.expired(instance_id, stage)
    if task.cancelled():
        _cancelled(task, instance_id, stage, context)
    result = task.result()
    if deadline is not None and time.monotonic() > deadline:
        # Done, but late: it blocked the event loop past its deadline (time.sleep in async
        # code). Deadlines are judged by the wall clock, so this is a timeout all the same.
        logger.warning(
            "instance %s: %s blocked the event loop past its deadline of %s",
            instance_id,
            stage,
            limit,
        )
        raise limit.expired(instance_id, stage)
    return result


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
            value, ok = crash(exc), False
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
