"""The worker pool behind sync plugin stages: few threads for many jobs, no head-of-line
blocking by a hung job, deadlines that start with the job, nothing pinned after a hand-off."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
import weakref

import pytest

from grambot.errors import PluginCrash, StageTimeout
from grambot.plugins import stages, tracking
from grambot.plugins.stages import run_stage
from grambot.plugins.tracking import InstanceTasks, instance_context


def _ctx() -> contextvars.Context:
    return instance_context(InstanceTasks("pool-test"))


async def _run(fn, *args, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    return await run_stage(
        fn, *args, instance_id="pool-test", stage="create", timeout=timeout, context=_ctx()
    )


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> stages._WorkerPool:
    fresh = stages._WorkerPool(1)
    monkeypatch.setattr(stages, "_POOL", fresh)
    return fresh


async def test_many_quick_jobs_use_few_threads(pool: stages._WorkerPool) -> None:
    names: set[str] = set()

    def job(n: int) -> int:
        names.add(threading.current_thread().name)
        return n * 2

    results = await asyncio.gather(*(_run(job, n) for n in range(300)))
    assert results == [n * 2 for n in range(300)]
    assert len(names) <= 3, names  # not one thread per job


async def test_a_hung_job_does_not_hold_up_the_queue(pool: stages._WorkerPool) -> None:
    release = threading.Event()
    hung = asyncio.ensure_future(_run(release.wait, 10.0))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    assert await asyncio.gather(*(_run(lambda: 1) for _ in range(5))) == [1] * 5
    assert time.monotonic() - started < 1.0  # another worker took over after YOUNG_SECONDS
    release.set()
    assert await hung is True


async def test_deadline_starts_when_the_job_starts(
    pool: stages._WorkerPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stages, "YOUNG_SECONDS", 30.0)  # no second worker: B waits for A
    slow = asyncio.ensure_future(_run(time.sleep, 0.5, timeout=5.0))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    assert await _run(lambda: "quick", timeout=0.2) == "quick"  # queued 0.5 s, ran at once
    assert time.monotonic() - started >= 0.4
    await slow


async def test_the_last_outcome_wakes_the_loop_without_the_kicker(
    pool: stages._WorkerPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stages, "YOUNG_SECONDS", 30.0)  # the kicker would be far too late
    for _ in range(3):
        assert await asyncio.wait_for(_run(lambda: "one"), 5.0) == "one"
    results = await asyncio.wait_for(asyncio.gather(*(_run(lambda: 1) for _ in range(100))), 5.0)
    assert results == [1] * 100


async def test_outcomes_behind_a_hung_call_are_delivered(pool: stages._WorkerPool) -> None:
    release = threading.Event()
    hung = asyncio.ensure_future(_run(release.wait, 10.0))
    await asyncio.sleep(0.01)
    # the hung call stays outstanding, so these outcomes do not wake the loop: the kicker does
    assert await asyncio.wait_for(_run(lambda: "late"), 5.0) == "late"
    release.set()
    assert await hung is True


async def test_timeout_still_fires_for_a_started_job(pool: stages._WorkerPool) -> None:
    release = threading.Event()
    with pytest.raises(StageTimeout, match=r"create timed out after 0\.2"):
        await _run(release.wait, 10.0, timeout=0.2)
    release.set()


async def test_worker_keeps_no_reference_to_the_result(pool: stages._WorkerPool) -> None:
    class Thing:
        pass

    for _ in range(50):
        ref = weakref.ref(await _run(Thing))
        # the loop still holds the finished future (and so the result) in the callback that
        # is running this step: let it finish
        await asyncio.sleep(0)
        # Normally freed right there. A full collection (170 ms late in a whole-suite run, with
        # every test's modules in the heap) only runs when a garbage cycle may still hold it.
        if ref() is not None:
            gc.collect()
        assert ref() is None


# -- async stages: the first step runs inline, the rest in a task ---------------------------


async def test_async_stage_that_never_waits_runs_in_the_instance_context() -> None:
    tasks = InstanceTasks("eager")
    context = instance_context(tasks)
    seen: list[str | None] = []

    async def stage() -> str:
        seen.append(tracking.current_instance_id())
        asyncio.get_running_loop().create_task(asyncio.sleep(0), name="started-by-stage")
        return "done"

    tracking.install_task_tracking(asyncio.get_running_loop())
    result = await run_stage(stage, instance_id="eager", stage="load", timeout=1, context=context)
    assert result == "done" and seen == ["eager"]
    assert [t.get_name() for t in tasks.tasks] == ["started-by-stage"]
    await asyncio.sleep(0.01)


async def test_async_stage_that_waits_carries_on_after_its_first_step() -> None:
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

    result = await run_stage(stage, 21, instance_id="w", stage="load", timeout=1, context=_ctx())
    assert result == 42
    assert steps == ["first", "caught", "current=pool-test"]


async def test_async_stage_timeout_cancels_it_after_the_first_step() -> None:
    cleaned = asyncio.Event()

    async def stage() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    with pytest.raises(StageTimeout, match="load timed out"):
        await run_stage(stage, instance_id="t", stage="load", timeout=0.1, context=_ctx())
    await asyncio.wait_for(cleaned.wait(), 1)


async def test_async_stage_errors_propagate_from_either_step() -> None:
    async def at_once() -> None:
        raise ValueError("first step")

    async def later() -> None:
        await asyncio.sleep(0)
        raise ValueError("later step")

    for fn, text in ((at_once, "first step"), (later, "later step")):
        with pytest.raises(ValueError, match=text):
            await run_stage(fn, instance_id="e", stage="load", timeout=1, context=_ctx())


async def test_async_stage_system_exit_becomes_an_error() -> None:
    async def bye() -> None:
        raise SystemExit(3)

    with pytest.raises(PluginCrash, match="SystemExit"):
        await run_stage(bye, instance_id="x", stage="load", timeout=1, context=_ctx())


def test_finished_event_loops_are_not_kept_alive() -> None:
    async def one() -> None:
        assert await _run(lambda: 1) == 1

    refs = []
    for _ in range(3):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(one())
        loop.close()
        refs.append(weakref.ref(loop))
        del loop
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
