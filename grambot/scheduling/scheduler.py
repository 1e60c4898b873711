"""The scheduler: jobs owned by instances (and by the bot), persisted in the Schedule store.

A job is keyed by (owner, name) and stored with its payload and next run. Its handler lives in
memory only: at each load the plugin registers its handlers by name again (`every`, `cron`,
`at` store the job and register the handler; `handle(name)` registers a handler for jobs made
at run time, `"prefix*"` for many). Jobs of an instance run only while it is loaded: its unload
pauses them (the handles close), its next load resumes them once `load()` has returned. A
stored job with no handler after load is logged and kept.

Delivery: the next run is stored *before* a handler runs, so a crash during a run does not
repeat that run (at most once per occurrence). Runs missed while the instance was unloaded or
the engine stopped follow the job's `missed` policy: `run-once` (one catch-up run now, however
many were missed) or `skip`. A handler that raises is logged with its instance and retried
`retries` times, `retry_delay` doubling; then the job goes on with its next regular run.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from grambot.containment.boundary import describe as describe_exc
from grambot.containment.boundary import engine_cancelled
from grambot.containment.stages import call_plugin
from grambot.errors import CallCancelled, RegistrationError
from grambot.retry import RetryPolicy
from grambot.scheduling.timing import check_cron, next_run, parse_at, zone
from grambot.storage.base import Job, MissedPolicy, Schedule

__all__ = ["InstanceSchedule", "ScheduledRun", "Scheduler"]

logger = logging.getLogger("grambot.scheduler")

Handler = Callable[["ScheduledRun"], Awaitable[Any] | Any]
MAX_SLEEP = 60.0  # re-check at least this often (the wall clock may jump)
LATE = 1.0  # a run this late (seconds) at activation counts as missed


@dataclass(frozen=True)
class ScheduledRun:
    """What a handler is given."""

    name: str
    payload: Any
    due: float  # epoch seconds it was due
    attempt: int  # 0, then 1.. for retries
    owner: str


@dataclass
class _Owner:
    context: contextvars.Context | None  # None: the engine's own (the bot)
    handlers: dict[str, Handler] = dataclasses.field(default_factory=dict)  # "name" / "pre*"
    active: bool = False

    def handler_for(self, name: str) -> Handler | None:
        found = self.handlers.get(name)
        if found is not None:
            return found
        best = ""
        for pattern in self.handlers:
            if pattern.endswith("*") and name.startswith(pattern[:-1]) and len(pattern) > len(best):
                best = pattern
        return self.handlers.get(best) if best else None


class Scheduler:
    def __init__(
        self,
        store: Schedule,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.timeout = timeout
        self._owners: dict[str, _Owner] = {}
        self._jobs: dict[tuple[str, str], Job] = {}  # of active owners
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        # Owners with stored jobs: read once, at the first activation, then kept up to date
        # by `put` (this engine is the only writer; others only delete). A load of an owner
        # with none, the usual case, then costs no query (bench scale: a task and a database
        # round trip per instance). Owners activated before the read is in wait for it
        # together, in one task (a burst of loads activates hundreds meanwhile).
        self._stored_owners: asyncio.Future[set[str]] | None = None
        self._put_owners: set[str] = set()
        self._awaiting_read: dict[str, _Owner] = {}
        self.runs = 0  # handler runs (tests, status)
        self.on_change: Callable[[], None] = lambda: None  # jobs stored or armed changed

    @property
    def active(self) -> int:
        """Jobs armed: those of loaded instances (a stored job waits for its owner's load)."""
        return len(self._jobs)

    # -- owners --------------------------------------------------------------------------------

    def for_instance(self, owner: str, context: contextvars.Context) -> InstanceSchedule:
        """A fresh `api.schedule` for one load of `owner` (handlers of older loads dropped)."""
        self._owners[owner] = _Owner(context)
        self._forget(owner)
        return InstanceSchedule(self, owner)

    def engine_owner(self, owner: str) -> InstanceSchedule:
        """A schedule run in the engine's own context (the bot's reminders)."""
        self._owners[owner] = _Owner(None)
        return InstanceSchedule(self, owner)

    def activate(self, owner: str) -> None:
        record = self._owners.get(owner)
        if record is None or record.active or self._stopped:
            return
        record.active = True
        stored = self._stored_owners
        if stored is None or not stored.done() or _failed(stored):
            if not self._awaiting_read:
                self._spawn(self._after_owners_read())
            self._awaiting_read[owner] = record
        elif owner in stored.result() or owner in self._put_owners:
            self._spawn(self._load_owner(owner, record))

    def deactivate(self, owner: str, schedule: InstanceSchedule) -> None:
        record = self._owners.get(owner)
        if record is None or schedule.record is not record:
            return  # a newer load owns it now
        del self._owners[owner]
        self._awaiting_read.pop(owner, None)
        self._forget(owner)
        self._arm()
        self.on_change()

    def _forget(self, owner: str) -> None:
        for key in [k for k in self._jobs if k[0] == owner]:
            del self._jobs[key]

    async def _after_owners_read(self) -> None:
        """Read which owners have stored jobs (again, if the last read failed), then load the
        jobs of those activated meanwhile that have some. However the read ends, the owners
        waiting are taken: a later activation then starts a reader of its own."""
        stored: set[str] | None = None  # unknown: each owner's jobs are asked for directly
        try:
            read = self._stored_owners
            if read is None or _failed(read):
                read = self._stored_owners = asyncio.ensure_future(self.store.owners())
            stored = await asyncio.shield(read)
        except asyncio.CancelledError as exc:
            if engine_cancelled(exc):  # the scheduler stops
                raise
        except Exception:  # the read failed, at once or later
            pass
        finally:
            waiting, self._awaiting_read = self._awaiting_read, {}
        for owner, record in waiting.items():
            if stored is None or owner in stored or owner in self._put_owners:
                self._spawn(self._load_owner(owner, record))

    async def _load_owner(self, owner: str, record: _Owner) -> None:
        jobs = await self.store.jobs(owner)
        if self._owners.get(owner) is not record:
            return
        now = self.clock()
        for job in jobs:
            if record.handler_for(job.name) is None:
                logger.warning(
                    "instance %s: stored job %r has no handler after load (register it with "
                    "api.schedule.handle(%r, handler)); kept, not run",
                    owner,
                    job.name,
                    job.name,
                )
                continue
            if job.next_run is None:  # an `at` job whose run was interrupted: at most once
                logger.warning(
                    "instance %s: job %r was interrupted; not run again", owner, job.name
                )
                await self.store.remove(owner, job.name)
                continue
            if job.next_run < now - LATE and job.missed == "skip":
                following = next_run(job.kind, job.spec, job.tz, now)
                logger.info("instance %s: job %r missed its run; skipped", owner, job.name)
                if following is None:
                    await self.store.remove(owner, job.name)
                    continue
                job = dataclasses.replace(job, next_run=following, attempt=0)
                await self.store.put(job)
            self._jobs[(owner, job.name)] = job
        self._arm()
        self.on_change()

    # -- jobs ----------------------------------------------------------------------------------

    async def put(self, job: Job, handler: Handler | None) -> Job:
        record = self._owners.get(job.owner)
        if record is None:
            raise RegistrationError(f"instance {job.owner!r} is unloaded: its schedule is closed")
        if handler is not None:
            record.handlers[job.name] = handler
        stored = await self.store.get(job.owner, job.name)
        same = stored is not None and (stored.kind, stored.spec, stored.tz) == (
            job.kind,
            job.spec,
            job.tz,
        )
        if same and stored is not None and stored.next_run is not None:
            job = dataclasses.replace(
                job,
                next_run=stored.next_run,
                attempt=stored.attempt,
                last_run=stored.last_run,
                created_at=stored.created_at,
            )
        await self.store.put(job)
        self._put_owners.add(job.owner)
        if record.active and self._owners.get(job.owner) is record:
            self._jobs[(job.owner, job.name)] = job
            self._arm()
        self.on_change()
        return job

    async def cancel(self, owner: str, name: str) -> bool:
        self._jobs.pop((owner, name), None)
        removed = await self.store.remove(owner, name)
        self._arm()
        self.on_change()
        return removed

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = [*self._tasks, *self._running.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    # -- running -------------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(
            coro,  # type: ignore[arg-type]
            context=contextvars.Context(),  # the engine's work, whoever asked for it
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stopped:
            return
        due = [j.next_run for k, j in self._jobs.items() if j.next_run is not None]
        if not due:
            return
        delay = min(max(0.0, min(due) - self.clock()), MAX_SLEEP)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + delay, self._tick, context=contextvars.Context())

    def _tick(self) -> None:
        self._timer = None
        now = self.clock()
        for key, job in list(self._jobs.items()):
            if job.next_run is None or job.next_run > now:
                continue
            if key in self._running:
                continue  # still running: this occurrence waits for it
            task = self._spawn(self._fire(job))
            self._running[key] = task
            task.add_done_callback(self._ran(key))
        self._arm()

    def _ran(self, key: tuple[str, str]) -> Callable[[asyncio.Task[Any]], None]:
        def done(_: asyncio.Task[Any]) -> None:
            self._running.pop(key, None)

        return done

    async def _fire(self, job: Job) -> None:
        record = self._owners.get(job.owner)
        handler = record.handler_for(job.name) if record is not None else None
        key = (job.owner, job.name)
        if record is None or handler is None:
            self._jobs.pop(key, None)
            return
        now = self.clock()
        following = next_run(job.kind, job.spec, job.tz, now)
        started = dataclasses.replace(job, next_run=following, last_run=now)
        self._jobs[key] = started  # before the await: never fired twice
        await self.store.put(started)
        due = job.next_run if job.next_run is not None else now
        run = ScheduledRun(job.name, job.payload, due, job.attempt, job.owner)
        try:
            async with asyncio.timeout(self.timeout):
                await self._call(record, handler, run)
        except BaseException as exc:
            if engine_cancelled(exc) or isinstance(exc, CallCancelled):
                raise
            await self._failed(started, job.attempt, exc)
            return
        finally:
            self.runs += 1
        if job.kind == "at":
            await self.cancel(job.owner, job.name)
        elif job.attempt or job.last_error:
            await self._update(dataclasses.replace(started, attempt=0, last_error=None))

    async def _call(self, record: _Owner, handler: Handler, run: ScheduledRun) -> None:
        if record.context is None:
            result = handler(run)
            if inspect.isawaitable(result):
                await result
            return
        await call_plugin(
            handler,
            run,
            instance_id=run.owner,
            what=f"job {run.name}",
            context=record.context.copy(),
        )

    async def _failed(self, job: Job, attempt: int, exc: BaseException) -> None:
        reason = "did not finish in time" if isinstance(exc, TimeoutError) else describe_exc(exc)
        if attempt < job.retries:
            # Doubling from retry_delay, uncapped and exact (a job's owner chose the numbers).
            wait = RetryPolicy(initial=job.retry_delay, cap=math.inf, jitter=0.0).delay(attempt + 1)
            logger.error(
                "instance %s: job %r failed (%s); retry %d/%d in %g s",
                job.owner,
                job.name,
                reason,
                attempt + 1,
                job.retries,
                wait,
            )
            retry = self.clock() + wait
            upcoming = retry if job.next_run is None else min(retry, job.next_run)
            await self._update(
                dataclasses.replace(job, next_run=upcoming, attempt=attempt + 1, last_error=reason)
            )
            return
        logger.error(
            "instance %s: job %r failed (%s) after %d retries; %s",
            job.owner,
            job.name,
            reason,
            job.retries,
            "dropped" if job.kind == "at" else "waiting for its next run",
        )
        if job.kind == "at":
            await self.cancel(job.owner, job.name)
        else:
            await self._update(dataclasses.replace(job, attempt=0, last_error=reason))

    async def _update(self, job: Job) -> None:
        key = (job.owner, job.name)
        await self.store.put(job)
        if key in self._jobs:
            self._jobs[key] = job
            self._arm()


def _failed(read: asyncio.Future[Any]) -> bool:
    """The owners read ended without an answer (raised or cancelled)."""
    return read.done() and (read.cancelled() or read.exception() is not None)


class InstanceSchedule:
    """`api.schedule`: jobs owned by this instance, kept across restarts.

    `await every(name, seconds, handler)`, `await cron(name, "0 8 * * *", handler, tz=...)`,
    `await at(name, when, handler)` store the job (a job already stored under `name` with the
    same timing keeps its next run) and register `handler(run)` for it; `handle(name, handler)`
    registers a handler for jobs created earlier (`"prefix*"` for a family of names);
    `await cancel(name)`, `await jobs(prefix)`. Options: `payload` (JSON), `missed`
    (`run-once` or `skip`), `retries`, `retry_delay`.
    """

    __slots__ = ("_closed", "owner", "record", "scheduler")

    def __init__(self, scheduler: Scheduler, owner: str) -> None:
        self.scheduler = scheduler
        self.owner = owner
        self.record = scheduler._owners[owner]
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise RegistrationError(f"instance {self.owner!r} is unloaded: its schedule is closed")

    def handle(self, name: str, handler: Handler) -> None:
        self._check()
        if not callable(handler):
            raise TypeError(f"a job handler must be callable, got {handler!r}")
        self.record.handlers[
            _name(name.removesuffix("*")) + ("*" if name.endswith("*") else "")
        ] = handler

    async def every(
        self,
        name: str,
        seconds: float,
        handler: Handler | None,
        payload: Any = None,
        *,
        missed: MissedPolicy = "run-once",
        retries: int = 3,
        retry_delay: float = 60.0,
        minimum: float = 1.0,
    ) -> Job:
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < minimum:
            raise ValueError(f"job {name!r}: every needs at least {minimum:g} s, got {seconds!r}")
        first = self.scheduler.clock() + float(seconds)
        return await self._put(
            name,
            "every",
            repr(float(seconds)),
            first,
            handler,
            payload,
            None,
            missed,
            retries,
            retry_delay,
        )

    async def cron(
        self,
        name: str,
        expression: str,
        handler: Handler | None,
        payload: Any = None,
        *,
        tz: str | None = None,
        missed: MissedPolicy = "run-once",
        retries: int = 3,
        retry_delay: float = 60.0,
    ) -> Job:
        check_cron(expression)
        zone(tz)
        first = next_run("cron", expression, tz, self.scheduler.clock())
        return await self._put(
            name, "cron", expression, first, handler, payload, tz, missed, retries, retry_delay
        )

    async def at(
        self,
        name: str,
        when: Any,
        handler: Handler | None,
        payload: Any = None,
        *,
        tz: str | None = None,
        missed: MissedPolicy = "run-once",
        retries: int = 3,
        retry_delay: float = 60.0,
    ) -> Job:
        moment = parse_at(when, tz)
        return await self._put(
            name, "at", repr(moment), moment, handler, payload, tz, missed, retries, retry_delay
        )

    async def _put(
        self,
        name: str,
        kind: Any,
        spec: str,
        first: float | None,
        handler: Handler | None,
        payload: Any,
        tz: str | None,
        missed: MissedPolicy,
        retries: int,
        retry_delay: float,
    ) -> Job:
        self._check()
        if missed not in ("run-once", "skip"):
            raise ValueError(f"job {name!r}: missed is 'run-once' or 'skip', got {missed!r}")
        if handler is not None and not callable(handler):
            raise TypeError(f"a job handler must be callable, got {handler!r}")
        job = Job(
            owner=self.owner,
            name=_name(name),
            kind=kind,
            spec=spec,
            next_run=first,
            payload=payload,
            tz=tz,
            missed=missed,
            retries=max(0, int(retries)),
            retry_delay=max(0.0, float(retry_delay)),
            created_at=self.scheduler.clock(),
        )
        return await self.scheduler.put(job, handler)

    async def cancel(self, name: str) -> bool:
        self._check()
        return await self.scheduler.cancel(self.owner, _name(name))

    async def jobs(self, prefix: str = "") -> list[Job]:
        self._check()
        return await self.scheduler.store.jobs(self.owner, prefix)

    def activate(self) -> None:
        """The instance is loaded: its stored jobs run from now on."""
        if not self._closed:
            self.scheduler.activate(self.owner)

    def close(self) -> None:
        """The instance unloads: its jobs pause (they stay stored)."""
        if not self._closed:
            self._closed = True
            self.scheduler.deactivate(self.owner, self)


def _name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ValueError(f"a job name is a non-empty string of at most 200 characters: {name!r}")
    return name
