"""Running plugin code under a deadline.

Every stage runs under one kind of deadline: an absolute `Deadline` (grambot.containment.limits;
trio's `move_on_at` is the model), the moment it must be done by, fixed when the stage is asked
for. Whatever the stage waits for (a worker, the event loop) counts against it.

Async stages run as tasks in the instance's context, cancelled at the deadline. (Their first
step is not taken inline on the caller's task: code that ties state to the current task, like
anyio's cancel scopes inside httpx, breaks when a coroutine moves to another task halfway.) A
stage that finished only after blocking the loop past its deadline is a timeout all the same:
deadlines are judged by the wall clock.

Sync stages run in daemon worker threads, and start at once: an idle worker takes the job, or a
new worker starts, as long as fewer than `CAPACITY` jobs run within their deadlines. A job
holds its unit of capacity until it finishes or its deadline passes. Then it is abandoned (a
thread that hangs cannot be killed: it runs on, uncounted, and nothing waits for it, neither
reconciles nor process exit) and another job may take its place; a job still queued at its
deadline never runs. So sync stages of one instance never wait for another's (unless
`CAPACITY` of them run at once), and the outcome of each reaches the loop the moment it is
ready, with a wake-up of its own (`loop.call_soon_threadsafe`, as anyio's `to_thread` does).
Workers are reused, so a quick sync `create()` costs a hand-off, not a thread start; a worker
idle for `IDLE_SECONDS` ends.

The workers are a `StagePool` the caller passes to every stage: the Engine makes one and lends
it to its instances (`Services.stage_pool`); code that runs a stage without an engine makes its
own (`StagePool()`), and `close()` lets its idle workers go when it is done with it.

Why `CAPACITY` is 8, not more: Python threads share one interpreter lock, so more workers add
nothing to CPU-bound work, and when a reconcile loads a thousand instances, every worker runs
another instance's import interleaved with the others: measured (bench scale), 32 workers made
that load 15-20 % slower than 8 did (ratio to its floor 1.57-1.64 against 1.34-1.43). Eight
covers the stages that wait rather than compute (an SDK import, a network check, a hung call
until its deadline) of the instances of a real bot.

Not fewer for imports alone: on CPython 3.11 eight imports at once convoy on
`functools.cached_property`'s class-wide lock, which pydantic's model building takes (3.12
dropped it), and a lane of 2 import workers made a burst of 1000 loads steadier; but imports
include settings validation and a sync `create`, plugin code that hangs, and two hung imports
then held every other instance's import until its deadline (tests/reliability caught it).

Stages run in the instance's context (grambot.containment.tracking), so what they start is the
instance's; whatever BaseException plugin code raises comes out as `PluginCrash` (the engine's
own cancellation excepted), and a stage cancelled by its instance's unload as `CallCancelled`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from grambot.containment.boundary import crash
from grambot.containment.limits import NEVER, Deadline
from grambot.containment.tracking import close_unstarted, guard, owner_in, run_marked
from grambot.errors import CallCancelled, PluginCrash

__all__ = ["CAPACITY", "IDLE_SECONDS", "Progress", "StagePool", "call_plugin", "run_stage"]

logger = logging.getLogger(__name__)

CAPACITY = 8  # sync stages running within their deadlines at once (see the docstring)
IDLE_SECONDS = 30.0  # a worker with nothing to do for this long ends

_QUEUED, _RUNNING, _DONE, _DROPPED = range(4)


class Progress:
    """Which step a multi-step stage call is in; read when it fails or times out."""

    __slots__ = ("stage",)

    def __init__(self, stage: str) -> None:
        self.stage = stage


async def run_stage(
    fn: Callable[..., Any],
    *args: Any,
    pool: StagePool,
    instance_id: str,
    stage: str,
    deadline: Deadline,
    context: contextvars.Context,
    progress: Progress | None = None,
) -> Any:
    """Call `fn(*args)` (sync or async) as `stage` of `instance_id`, done by `deadline`; a sync
    `fn` runs in one of `pool`'s workers.

    Raises StageTimeout once the deadline passed; exceptions of `fn` propagate unchanged. When
    `fn` runs several steps, it may record the current one in `progress` (set to `stage`
    first): a timeout then names that step.
    """
    if progress is None:
        progress = Progress(stage)
    else:
        progress.stage = stage
    if inspect.iscoroutinefunction(fn):
        return await _await_in_context(fn(*args), instance_id, stage, deadline, context)
    result = await _call_in_thread(pool, fn, args, instance_id, progress, deadline, context)
    if inspect.isawaitable(result):
        result = await _await_in_context(result, instance_id, progress.stage, deadline, context)
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
    return await _await_in_context(result, instance_id, what, NEVER, context)


# -- async stages ------------------------------------------------------------------------------


def _engine_cancelled_now() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _cancelled(instance_id: str, stage: str, context: contextvars.Context) -> NoReturn:
    """A stage task cancelled, not by our caller: by the instance's unload, or its own code."""
    owner = owner_in(context)
    if owner is not None and owner.closing:
        raise CallCancelled(instance_id, stage)
    raise PluginCrash("CancelledError", f"the plugin's own code cancelled its {stage}")


async def _await_in_context(
    awaitable: Awaitable[Any],
    instance_id: str,
    stage: str,
    deadline: Deadline,
    context: contextvars.Context,
) -> Any:
    loop = asyncio.get_running_loop()
    task = loop.create_task(
        guard(awaitable, instance_id), name=f"{instance_id}:{stage}", context=context
    )
    task.add_done_callback(functools.partial(close_unstarted, awaitable))
    if deadline.at == math.inf:  # no deadline of our own (a model call): await the task directly
        try:
            return await task
        except asyncio.CancelledError:
            if _engine_cancelled_now() or not task.cancelled():
                task.cancel()
                raise  # our caller is being cancelled (and the call with it)
        _cancelled(instance_id, stage, context)
    # Wait for the task or the deadline, whichever comes first (asyncio.wait, without its
    # generality): the task is never awaited directly, so that our caller's cancellation and
    # the task's own (by the instance's unload) stay apart.
    waiter = loop.create_future()
    release = functools.partial(_release, waiter)
    task.add_done_callback(release)
    timer = loop.call_later(deadline.remaining(), release)
    try:
        await waiter
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        timer.cancel()
        task.remove_done_callback(release)
    if not task.done():
        task.cancel()
        logger.warning(
            "instance %s: %s timed out after %s; its task was cancelled",
            instance_id,
            stage,
            deadline,
        )
        raise deadline.expired(instance_id, stage)
    if task.cancelled():
        _cancelled(instance_id, stage, context)
    result = task.result()
    if deadline.passed():
        # Done, but late: it blocked the event loop past its deadline (time.sleep in async
        # code). Deadlines are judged by the wall clock, so this is a timeout all the same.
        logger.warning(
            "instance %s: %s blocked the event loop past its deadline of %s",
            instance_id,
            stage,
            deadline,
        )
        raise deadline.expired(instance_id, stage)
    return result


def _release(waiter: asyncio.Future[None], *_: Any) -> None:
    if not waiter.done():
        waiter.set_result(None)


# -- sync stages -------------------------------------------------------------------------------


class _SyncCall:
    """One sync stage call: run by a worker thread, settled on the loop.

    The worker reaches the plugin's callable, its result and the future only through these
    fields, and each is cleared once it has served (the call by the worker, the result by
    `settle`, the future by the caller once it has the outcome): a worker that has not yet run
    on after the hand-off must not keep an unloaded instance's objects alive.
    """

    __slots__ = (
        "abandoned",
        "args",
        "context",
        "deadline",
        "finished",
        "fn",
        "future",
        "loop",
        "ok",
        "state",
        "value",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        context: contextvars.Context,
        loop: asyncio.AbstractEventLoop,
        deadline: Deadline,
    ) -> None:
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] | None = args
        self.context = context
        self.loop = loop
        self.deadline = deadline
        self.future: asyncio.Future[Any] | None = loop.create_future()
        self.state = _QUEUED  # changed under the pool's lock
        self.abandoned = False  # its deadline passed while it ran: it holds no capacity
        self.finished = math.inf  # monotonic time the worker finished it
        self.ok = False
        self.value: Any = None

    def run(self) -> None:
        """In a worker thread."""
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
        self.finished = time.monotonic()
        self.ok, self.value = ok, value
        del value
        try:
            self.loop.call_soon_threadsafe(self.settle)
        except RuntimeError:  # the loop closed while this stage ran: nobody waits for it
            self.value = None

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


class StagePool:
    """Daemon threads for sync plugin code (see the module docstring): at most `capacity` jobs
    running within their deadlines at once, a worker idle for `idle_seconds` ends.

    Jobs travel through a queue (never as Thread args, which a Thread keeps until it exits), so
    a finished job, and the plugin objects it returned, is not pinned by a worker. The counts
    below, kept under `_lock`, decide when another worker starts.
    """

    def __init__(self, capacity: int = CAPACITY, *, idle_seconds: float = IDLE_SECONDS) -> None:
        self.capacity = capacity
        self.idle_seconds = idle_seconds
        # None: "one idle worker ends" (close)
        self._jobs: queue.SimpleQueue[_SyncCall | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0  # jobs queued, neither taken nor dropped
        self._idle = 0  # workers waiting for a job
        self._starting = 0  # workers started, not yet waiting
        self._workers = 0  # workers alive (waiting, running a job, or abandoned with one)
        self._in_flight: set[_SyncCall] = set()  # jobs running within their deadlines
        self._names = itertools.count(1)

    def submit(self, call: _SyncCall) -> None:
        with self._lock:
            self._pending += 1
            self._release_overdue()
            start = self._short_of_workers()
            if start:
                self._starting += 1
        self._jobs.put(call)
        if start:
            self._start_worker()

    def close(self) -> None:
        """Let the workers end as soon as they are idle, not after `idle_seconds` (their owner
        stopped); running jobs finish as they would. A job submitted later starts a worker
        again."""
        with self._lock:
            workers = self._workers
        for _ in range(workers):  # one each: a worker still running takes its own when done
            self._jobs.put(None)

    def expire(self, call: _SyncCall) -> None:
        """On the loop, at `call`'s deadline or when its caller gave up: a queued job is dropped
        (it never runs); a running one is abandoned and releases its capacity, so that a job
        waiting for it can start."""
        with self._lock:
            if call.state == _QUEUED:
                self._drop(call)
                return
            if call.state != _RUNNING or call.abandoned:
                return
            self._abandon(call)
            start = self._short_of_workers()
            if start:
                self._starting += 1
        if start:
            self._start_worker()

    def _drop(self, call: _SyncCall) -> None:
        """(Under the lock.) A queued `call` will never run: the worker that takes it skips
        it, and it pins nothing meanwhile."""
        call.state = _DROPPED
        call.fn = call.args = None
        self._pending -= 1

    def _abandon(self, call: _SyncCall) -> None:
        """(Under the lock.) `call` runs past its deadline: it holds no capacity from now."""
        call.abandoned = True
        self._in_flight.discard(call)

    def _release_overdue(self) -> None:
        """(Under the lock.) Abandon the jobs whose deadline passed by the clock: the loop's
        timer that would have (`expire`) went with their loop when it closed, and a hung job
        must not hold its place for good."""
        now = time.monotonic()
        for call in [c for c in self._in_flight if c.deadline.at <= now]:
            self._abandon(call)

    def _short_of_workers(self) -> bool:
        """(Under the lock.) Jobs wait that no idle or starting worker will take, and there
        is capacity for another worker."""
        waiting = self._pending - self._idle - self._starting
        return waiting > 0 and len(self._in_flight) + self._idle + self._starting < self.capacity

    def _start_worker(self) -> None:
        name = f"grambot-stage-{next(self._names)}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        lock, jobs = self._lock, self._jobs
        with lock:
            self._starting -= 1
            self._idle += 1
            self._workers += 1
        while True:
            try:
                call = jobs.get(timeout=self.idle_seconds)
            except queue.Empty:
                with lock:
                    if self._pending <= 0:  # nothing on its way to this worker: end
                        self._idle -= 1
                        self._workers -= 1
                        return
                continue
            if call is None:  # closed: this idle worker ends
                with lock:
                    self._idle -= 1
                    self._workers -= 1
                    # a job submitted since counted on this worker: another takes it
                    start = self._short_of_workers()
                    if start:
                        self._starting += 1
                if start:
                    self._start_worker()
                return
            with lock:
                self._idle -= 1
                if call.state == _QUEUED and call.deadline.passed():  # its loop is gone
                    self._drop(call)
                if call.state == _DROPPED:  # its deadline passed while it was queued
                    self._idle += 1
                    continue
                self._pending -= 1
                call.state = _RUNNING
                self._in_flight.add(call)
            try:
                call.run()
            except BaseException:  # run() catches plugin errors; this is a bug of ours
                logger.exception("stage worker: a job failed")
            with lock:
                call.state = _DONE
                if not call.abandoned:
                    self._in_flight.discard(call)
                elif len(self._in_flight) + self._idle + self._starting >= self.capacity:
                    self._workers -= 1
                    return  # its capacity went at its deadline, and there is no room again
                self._idle += 1
            del call  # do not pin the finished job while parked


async def _call_in_thread(
    pool: StagePool,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    instance_id: str,
    progress: Progress,
    deadline: Deadline,
    context: contextvars.Context,
) -> Any:
    loop = asyncio.get_running_loop()
    call = _SyncCall(fn, args, context, loop, deadline)
    future = call.future
    assert future is not None
    pool.submit(call)
    timer = None
    if deadline.at != math.inf:
        timer = loop.call_later(deadline.remaining(), _expire, pool, call)
    try:
        result = await future
    except asyncio.CancelledError:  # the caller gave up: nobody waits for it, its place is free
        pool.expire(call)
        raise
    except _Expired:
        logger.warning(
            "instance %s: %s timed out after %s; its thread is abandoned (threads cannot be "
            "killed) and keeps running in the background",
            instance_id,
            progress.stage,
            deadline,
        )
        raise deadline.expired(instance_id, progress.stage) from None
    finally:
        if timer is not None:
            timer.cancel()
        call.future = None
        del future
    if call.finished > deadline.at:  # done after its deadline, before the loop noticed
        del result
        raise deadline.expired(instance_id, progress.stage)
    return result


def _expire(pool: StagePool, call: _SyncCall) -> None:
    pool.expire(call)
    future = call.future
    if future is not None and not future.done():
        future.set_exception(_Expired())


class _Expired(Exception):
    """A sync stage ran past its deadline (internal; surfaces as StageTimeout)."""
