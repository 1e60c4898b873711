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

from grambot.errors import StageTimeout
from grambot.plugins import stages
from grambot.plugins.stages import InstanceTasks, instance_context, run_stage


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
        gc.collect()
        assert ref() is None
