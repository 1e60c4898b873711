"""The worker pool behind sync plugin stages: jobs start at once while capacity lasts, a hung
job holds a worker only until its deadline, deadlines are absolute (queued time counts), nothing
pinned after a hand-off."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
import warnings
import weakref
from collections.abc import Iterator

import pytest

from grambot.containment import tracking
from grambot.containment.limits import Deadline, Limit
from grambot.containment.stages import StagePool, run_stage
from grambot.containment.tracking import InstanceTasks, instance_context
from grambot.errors import PluginCrash, StageTimeout
from tests.helpers import eventually_async


def _ctx() -> contextvars.Context:
    return instance_context(InstanceTasks("pool-test"))


def _within(seconds: float) -> Deadline:
    return Deadline.after(Limit(seconds))


async def _run(pool: StagePool, fn, *args, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    return await run_stage(
        fn,
        *args,
        pool=pool,
        instance_id="pool-test",
        stage="create",
        deadline=_within(timeout),
        context=_ctx(),
    )


@pytest.fixture
def pool() -> Iterator[StagePool]:
    fresh = StagePool(4)
    yield fresh
    fresh.close()


@pytest.fixture
def one_worker() -> Iterator[StagePool]:
    fresh = StagePool(1)
    yield fresh
    fresh.close()


def _stage_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("grambot-stage-")}


async def test_many_quick_jobs_use_at_most_capacity_threads(pool: StagePool) -> None:
    names: set[str] = set()

    def job(n: int) -> int:
        names.add(threading.current_thread().name)
        return n * 2

    results = await asyncio.gather(*(_run(pool, job, n) for n in range(300)))
    assert results == [n * 2 for n in range(300)]
    assert len(names) <= pool.capacity, names  # not one thread per job


async def test_a_job_starts_at_once_beside_a_running_one(pool: StagePool) -> None:
    release = threading.Event()
    busy = asyncio.ensure_future(_run(pool, release.wait, 10.0))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    assert await _run(pool, lambda: "quick") == "quick"
    assert time.monotonic() - started < 0.02  # another worker, at once: no waiting for age
    release.set()
    assert await busy is True


async def test_jobs_beyond_capacity_wait_and_the_deadline_counts_the_wait(
    pool: StagePool,
) -> None:
    release = threading.Event()
    busy = [asyncio.ensure_future(_run(pool, release.wait, 10.0)) for _ in range(pool.capacity)]
    await asyncio.sleep(0.01)
    with pytest.raises(StageTimeout):  # queued for its whole deadline: never ran
        await _run(pool, lambda: "never", timeout=0.1)
    later = asyncio.ensure_future(_run(pool, lambda: "later"))
    await asyncio.sleep(0.05)
    assert not later.done()  # every unit of capacity is taken
    release.set()
    assert await later == "later"
    assert await asyncio.gather(*busy) == [True] * pool.capacity


async def test_a_hung_job_releases_its_capacity_at_its_deadline(pool: StagePool) -> None:
    release = threading.Event()
    hung = [_run(pool, release.wait, 10.0, timeout=0.1) for _ in range(pool.capacity)]
    outcomes = await asyncio.gather(*hung, return_exceptions=True)
    assert all(isinstance(o, StageTimeout) for o in outcomes)
    started = time.monotonic()
    assert await _run(pool, lambda: "next") == "next"  # a fresh worker: the hung ones hold nothing
    assert time.monotonic() - started < 0.5
    release.set()


async def test_timeout_fires_for_a_started_job(pool: StagePool) -> None:
    release = threading.Event()
    with pytest.raises(StageTimeout, match=r"create timed out after 0\.2"):
        await _run(pool, release.wait, 10.0, timeout=0.2)
    release.set()


async def test_a_job_done_after_its_deadline_is_a_timeout(pool: StagePool) -> None:
    def blocks_the_loop_too() -> str:
        time.sleep(0.15)
        return "late"

    loop_blocked = asyncio.ensure_future(_run(pool, blocks_the_loop_too, timeout=0.1))
    await asyncio.sleep(0.01)
    time.sleep(0.3)  # noqa: ASYNC251  # the loop cannot fire the timer: the outcome comes first
    with pytest.raises(StageTimeout):
        await loop_blocked


async def test_idle_workers_end() -> None:
    pool = StagePool(4, idle_seconds=0.1)
    before = _stage_threads()
    await asyncio.gather(*(_run(pool, time.sleep, 0.02) for _ in range(3)))
    await eventually_async(lambda: _stage_threads() <= before, timeout=2)
    assert _stage_threads() <= before


async def test_closing_a_pool_ends_its_idle_workers_and_it_still_runs_jobs() -> None:
    pool = StagePool(4)  # idle workers would stay for IDLE_SECONDS (30 s)
    before = _stage_threads()
    await asyncio.gather(*(_run(pool, time.sleep, 0.02) for _ in range(3)))
    assert _stage_threads() - before
    pool.close()
    for _ in range(100):
        if _stage_threads() <= before:
            break
        await asyncio.sleep(0.02)
    assert _stage_threads() <= before
    assert await _run(pool, lambda: "after") == "after"  # a worker starts again
    pool.close()


async def test_a_job_submitted_while_a_pool_closes_still_runs(pool: StagePool) -> None:
    await asyncio.gather(*(_run(pool, time.sleep, 0.02) for _ in range(3)))
    pool.close()  # the idle workers are told to end, and a job arrives before they do
    assert await _run(pool, lambda: "taken", timeout=1.0) == "taken"


async def test_pools_are_independent(pool: StagePool, one_worker: StagePool) -> None:
    # one engine's hung stages take nothing of another engine's workers
    release = threading.Event()
    hung = asyncio.ensure_future(_run(one_worker, release.wait, 10.0))
    await asyncio.sleep(0.01)
    try:
        assert await _run(pool, lambda: "other", timeout=0.5) == "other"
    finally:
        release.set()
    assert await hung is True


async def test_worker_keeps_no_reference_to_the_result(pool: StagePool) -> None:
    class Thing:
        pass

    for _ in range(50):
        ref = weakref.ref(await _run(pool, Thing))
        # the loop still holds the finished future (and so the result) in the callback that
        # is running this step: let it finish
        await asyncio.sleep(0)
        # Normally freed right there. A full collection (170 ms late in a whole-suite run, with
        # every test's modules in the heap) only runs when a garbage cycle may still hold it.
        if ref() is not None:
            gc.collect()
        assert ref() is None


# -- async stages: the first step runs inline, the rest in a task ---------------------------


async def test_async_stage_that_never_waits_runs_in_the_instance_context(pool: StagePool) -> None:
    tasks = InstanceTasks("eager")
    context = instance_context(tasks)
    seen: list[str | None] = []

    async def stage() -> str:
        seen.append(tracking.current_instance_id())
        asyncio.get_running_loop().create_task(asyncio.sleep(0), name="started-by-stage")
        return "done"

    tracking.install_task_tracking(asyncio.get_running_loop())
    result = await run_stage(
        stage, pool=pool, instance_id="eager", stage="load", deadline=_within(1), context=context
    )
    assert result == "done" and seen == ["eager"]
    assert [t.get_name() for t in tasks.tasks] == ["started-by-stage"]
    await asyncio.sleep(0.01)


async def test_async_stage_that_waits_carries_on_after_its_first_step(pool: StagePool) -> None:
    steps: list[str] = []

    async def stage(n: int) -> int:
        steps.append("first")
        await asyncio.sleep(0)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, fut.set_result, n)
        value = await fut
        try:
            await asyncio.sleep(0)
            raise KeyError("inner")
        except KeyError:
            steps.append("caught")
        steps.append(f"current={tracking.current_instance_id()}")
        return value * 2

    result = await run_stage(
        stage, 21, pool=pool, instance_id="w", stage="load", deadline=_within(1), context=_ctx()
    )
    assert result == 42
    assert steps == ["first", "caught", "current=pool-test"]


async def test_async_stage_timeout_cancels_it_after_the_first_step(pool: StagePool) -> None:
    cleaned = asyncio.Event()

    async def stage() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    with pytest.raises(StageTimeout, match="load timed out"):
        await run_stage(
            stage, pool=pool, instance_id="t", stage="load", deadline=_within(0.1), context=_ctx()
        )
    await asyncio.wait_for(cleaned.wait(), 1)


async def test_async_stage_errors_propagate_from_either_step(pool: StagePool) -> None:
    async def at_once() -> None:
        raise ValueError("first step")

    async def later() -> None:
        await asyncio.sleep(0)
        raise ValueError("later step")

    for fn, text in ((at_once, "first step"), (later, "later step")):
        with pytest.raises(ValueError, match=text):
            await run_stage(
                fn, pool=pool, instance_id="e", stage="load", deadline=_within(1), context=_ctx()
            )


async def test_async_stage_system_exit_becomes_an_error(pool: StagePool) -> None:
    async def bye() -> None:
        raise SystemExit(3)

    with pytest.raises(PluginCrash, match="SystemExit"):
        await run_stage(
            bye, pool=pool, instance_id="x", stage="load", deadline=_within(1), context=_ctx()
        )


def test_finished_event_loops_are_not_kept_alive(pool: StagePool) -> None:
    async def one() -> None:
        assert await _run(pool, lambda: 1) == 1

    refs = []
    for _ in range(3):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(one())
        loop.close()
        refs.append(weakref.ref(loop))
        del loop
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


async def _the_next_job_starts_at_once(pool: StagePool) -> None:
    began = time.monotonic()
    assert await _run(pool, lambda: "next", timeout=2.0) == "next"
    assert time.monotonic() - began < 0.5


async def test_a_hung_job_whose_caller_gave_up_frees_its_place(
    one_worker: StagePool,
) -> None:
    # A shutdown or a reload cancelling a load: nobody waits for the job any more, so it holds
    # no place (a few such hung jobs would otherwise block the pool until their deadlines).
    pool = one_worker
    release = threading.Event()
    hung = asyncio.ensure_future(_run(pool, release.wait, 10.0, timeout=30.0))
    await asyncio.sleep(0.05)
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    try:
        await _the_next_job_starts_at_once(pool)
    finally:
        release.set()


async def test_a_hung_job_of_a_closed_loop_frees_its_place_at_its_deadline(
    one_worker: StagePool,
) -> None:
    # Its loop closed without cancelling it: the deadline timer is gone with the loop, so the
    # place comes free by the clock.
    pool = one_worker
    release = threading.Event()

    def elsewhere() -> None:
        loop = asyncio.new_event_loop()
        pending = loop.create_task(_run(pool, release.wait, 10.0, timeout=0.2))
        loop.run_until_complete(asyncio.sleep(0.05))
        assert not pending.done()
        loop.close()  # its task neither finished nor cancelled

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Task was destroyed but it is pending"
        await asyncio.to_thread(elsewhere)
        gc.collect()
    await asyncio.sleep(0.25)  # past the hung job's deadline
    try:
        await _the_next_job_starts_at_once(pool)
    finally:
        release.set()
