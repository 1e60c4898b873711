"""1. Event throughput and emit→handler latency.

grambot: a plugin-side `api.events.emit` (InstanceEvents) into a PluginEventQueue, dispatched by
a PluginEventEngine to one trivial handler. Baseline: a raw asyncio.Queue moving the same number
of plain objects from a producer task to a consumer task. Both producers have the same shape
(put, and give the loop a turn every 256 items) and both runs use a fresh event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bench.common import Result, alternate, bounded, percentile, ratio
from grambot.contract.api import InstanceEvents
from grambot.events.event import PluginEvent, PluginEventQueue
from grambot.events.queue import PluginEventEngine

GROUP = "events"
BATCH = 256  # producers yield to the loop after this many items
RATE = 10_000  # events/s for the latency run


# -- throughput -----------------------------------------------------------------------------


async def _raw_throughput(n: int) -> float:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()

    async def consumer() -> None:
        count = 0
        while True:
            await queue.get()
            count += 1
            if count == n:
                done.set_result(time.perf_counter())
                return

    task = asyncio.create_task(consumer())
    await asyncio.sleep(0)
    start = time.perf_counter()
    put = queue.put_nowait
    for i in range(n):
        put(i)
        if i % BATCH == BATCH - 1:
            await asyncio.sleep(0)
    end = await done
    await task
    return n / (end - start)


async def _grambot_throughput(n: int, *, async_handler: bool) -> float:
    queue = PluginEventQueue()
    engine = PluginEventEngine(queue)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    count = 0

    def sync_handler(event: PluginEvent) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set_result(time.perf_counter())

    async def handler(event: PluginEvent) -> None:
        sync_handler(event)

    engine.register("bench.tick", handler if async_handler else sync_handler)
    await engine.start()
    emit = InstanceEvents(queue, "bench-trio", "bench-1").emit  # what a plugin's api.events is
    await asyncio.sleep(0)
    start = time.perf_counter()
    for i in range(n):
        emit("bench.tick", i)
        if i % BATCH == BATCH - 1:
            await asyncio.sleep(0)
    end = await done
    await engine.stop()
    return n / (end - start)


def _throughput(n: int, rounds: int, async_handler: bool) -> tuple[list[float], list[float]]:
    return alternate(
        lambda: asyncio.run(_grambot_throughput(n, async_handler=async_handler)),
        lambda: asyncio.run(_raw_throughput(n)),
        rounds,
    )


# -- latency at a fixed rate ----------------------------------------------------------------


async def _paced(emit: Callable[[int], object], n: int) -> None:
    """Emit `n` items at RATE/s on average: whatever is due, then sleep until the next one."""
    clock = time.perf_counter_ns
    start = clock()
    sent = 0
    while sent < n:
        due = min(n, (clock() - start) * RATE // 1_000_000_000 + 1)
        while sent < due:
            emit(clock())
            sent += 1
        next_at = start + sent * 1_000_000_000 // RATE
        await asyncio.sleep(max(0, next_at - clock()) / 1e9)


async def _raw_latency(n: int) -> list[float]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    lat: list[float] = []

    async def consumer() -> None:
        clock = time.perf_counter_ns
        for _ in range(n):
            lat.append(clock() - await queue.get())

    task = asyncio.create_task(consumer())
    await _paced(queue.put_nowait, n)
    await task
    return lat


async def _grambot_latency(n: int) -> list[float]:
    queue = PluginEventQueue()
    engine = PluginEventEngine(queue)
    lat: list[float] = []
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    clock = time.perf_counter_ns

    async def handler(event: PluginEvent) -> None:
        lat.append(clock() - event.payload)
        if len(lat) == n:
            done.set_result(None)

    engine.register("bench.tick", handler)
    await engine.start()
    events = InstanceEvents(queue, "bench-trio", "bench-1")
    await _paced(lambda t: events.emit("bench.tick", t), n)
    await done
    await engine.stop()
    return lat


def run(quick: bool) -> list[Result]:
    n = 5_000 if quick else 200_000
    rounds = 1 if quick else 7
    results: list[Result] = []
    for async_handler in (True, False):
        gb, raw = _throughput(n, rounds, async_handler)
        value, baseline = max(gb), max(raw)
        r = ratio(value, baseline)
        kind = "async" if async_handler else "sync"
        results.append(
            Result(
                name=f"event throughput, one trivial {kind} handler (vs raw asyncio.Queue)",
                value=round(value),
                baseline=round(baseline),
                ratio=r,
                target="ratio >= 0.5",
                unit="events/s",
                meets=r is not None and r >= 0.5,
                notes=f"{n} events, best of {rounds} alternated runs each",
                group=GROUP,
                details={
                    "grambot_runs": [round(x) for x in gb],
                    "raw_runs": [round(x) for x in raw],
                },
            )
        )

    seconds = 0.1 if quick else 1.0
    count = int(RATE * seconds)
    lat_rounds = 1 if quick else 3
    gb_lat: list[float] = []
    raw_lat: list[float] = []
    for i in range(lat_rounds):
        if i % 2 == 0:
            gb_lat.extend(asyncio.run(_grambot_latency(count)))
            raw_lat.extend(asyncio.run(_raw_latency(count)))
        else:
            raw_lat.extend(asyncio.run(_raw_latency(count)))
            gb_lat.extend(asyncio.run(_grambot_latency(count)))
    for p, limit in ((50, 100.0), (99, 1000.0)):
        value = percentile(gb_lat, p) / 1000
        baseline = percentile(raw_lat, p) / 1000
        results.append(
            bounded(
                f"emit→handler latency p{p} at {RATE // 1000}k events/s (vs raw asyncio.Queue)",
                value,
                baseline,
                limit=limit,
                unit="µs",
                digits=1,
                notes=f"{lat_rounds} x {count} events paced on the loop (asyncio sleeps ≥ 1 ms, so "
                "events leave in small bursts); async handler",
                group=GROUP,
            )
        )
    return results
