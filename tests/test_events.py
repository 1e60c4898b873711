"""Tests for grambot.events.event and grambot.events.queue."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from grambot.events.event import PluginEvent, PluginEventQueue
from grambot.events.queue import PluginEventEngine
from tests.helpers import eventually_async


@pytest.fixture
def queue() -> PluginEventQueue:
    return PluginEventQueue()


@pytest.fixture
async def engine(queue: PluginEventQueue) -> AsyncIterator[PluginEventEngine]:
    eng = PluginEventEngine(queue, handler_timeout=0.2)
    yield eng
    if eng.running:
        await eng.stop(deadline=1.0)


async def test_event_before_and_after_start(
    queue: PluginEventQueue, engine: PluginEventEngine
) -> None:
    seen: list[str] = []
    engine.register("ping", lambda e: seen.append(e.id))
    early = queue.emit("p", "i1", "ping")
    assert len(queue) == 1
    await engine.start()
    assert engine.running
    await eventually_async(lambda: seen == [early.id], timeout=5)
    late = queue.emit("p", "i1", "ping")
    await eventually_async(lambda: seen == [early.id, late.id], timeout=5)
    assert engine.handled == 2


async def test_strict_order_sync_and_async(
    queue: PluginEventQueue, engine: PluginEventEngine
) -> None:
    seen: list[tuple[str, int]] = []

    def sync_handler(e: PluginEvent) -> None:
        seen.append(("sync", e.payload))

    async def async_handler(e: PluginEvent) -> None:
        if e.payload % 7 == 0:
            await asyncio.sleep(0)
        seen.append(("async", e.payload))

    engine.register("n", sync_handler)
    engine.register("n", async_handler)
    await engine.start()
    for n in range(1000):
        queue.emit("p", "i", "n", n)
    await eventually_async(lambda: engine.handled == 1000, timeout=5)
    expected = [(kind, n) for n in range(1000) for kind in ("sync", "async")]
    assert seen == expected


async def test_type_handlers_before_catch_all(
    queue: PluginEventQueue, engine: PluginEventEngine
) -> None:
    seen: list[str] = []
    engine.register(None, lambda e: seen.append("all-1"))
    engine.register("a", lambda e: seen.append("a-1"))
    engine.register("b", lambda e: seen.append("b"))
    engine.register("a", lambda e: seen.append("a-2"))
    engine.register(None, lambda e: seen.append("all-2"))
    await engine.start()
    queue.emit("p", "i", "a")
    queue.emit("p", "i", "c")
    await eventually_async(lambda: engine.handled == 2, timeout=5)
    assert seen == ["a-1", "a-2", "all-1", "all-2", "all-1", "all-2"]


async def test_unsubscribe(queue: PluginEventQueue, engine: PluginEventEngine) -> None:
    seen: list[str] = []
    off_typed = engine.register("a", lambda e: seen.append("typed"))
    off_all = engine.register(None, lambda e: seen.append("all"))
    await engine.start()
    queue.emit("p", "i", "a")
    await eventually_async(lambda: engine.handled == 1, timeout=5)
    off_typed()
    off_all()
    off_typed()  # idempotent
    off_all()
    queue.emit("p", "i", "a")
    await eventually_async(lambda: engine.handled == 2, timeout=5)
    assert seen == ["typed", "all"]


async def test_unsubscribe_from_inside_handler(
    queue: PluginEventQueue, engine: PluginEventEngine
) -> None:
    seen: list[str] = []

    def once(e: PluginEvent) -> None:
        seen.append("once")
        off()

    off = engine.register("a", once)
    engine.register("a", lambda e: seen.append("other"))
    await engine.start()
    queue.emit("p", "i", "a")
    queue.emit("p", "i", "a")
    await eventually_async(lambda: engine.handled == 2, timeout=5)
    assert seen == ["once", "other", "other"]


@pytest.mark.parametrize("is_async", [False, True])
async def test_raising_handler_is_logged_and_engine_continues(
    queue: PluginEventQueue,
    engine: PluginEventEngine,
    caplog: pytest.LogCaptureFixture,
    is_async: bool,
) -> None:
    seen: list[str] = []

    def boom_sync(e: PluginEvent) -> None:
        raise ValueError("boom")

    async def boom_async(e: PluginEvent) -> None:
        raise ValueError("boom")

    engine.register("a", boom_async if is_async else boom_sync)
    engine.register("a", lambda e: seen.append(e.id))
    await engine.start()
    with caplog.at_level(logging.ERROR, logger="grambot.events.queue"):
        bad = queue.emit("p", "inst-7", "a")
        good = queue.emit("p", "inst-7", "a")
        await eventually_async(lambda: engine.handled == 2, timeout=5)
    assert seen == [bad.id, good.id]  # the next handler of the same event still ran
    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 2
    assert bad.id in failures[0].getMessage()
    assert "inst-7" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], ValueError)


async def test_sync_handler_returning_awaitable_is_awaited(
    queue: PluginEventQueue, engine: PluginEventEngine
) -> None:
    seen: list[str] = []

    async def later(e: PluginEvent) -> None:
        await asyncio.sleep(0)
        seen.append(e.id)

    engine.register("a", lambda e: later(e))
    await engine.start()
    ev = queue.emit("p", "i", "a")
    await eventually_async(lambda: engine.handled == 1, timeout=5)
    assert seen == [ev.id]


async def test_hanging_handler_times_out(
    queue: PluginEventQueue, engine: PluginEventEngine, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    async def handler(e: PluginEvent) -> None:
        if e.payload == "hang":
            await asyncio.Event().wait()
        seen.append(e.id)

    engine.register("a", handler)
    await engine.start()
    with caplog.at_level(logging.ERROR, logger="grambot.events.queue"):
        started = time.monotonic()
        hung = queue.emit("p", "inst-h", "a", "hang")
        ok = queue.emit("p", "inst-h", "a", "ok")
        await eventually_async(lambda: engine.handled == 2, timeout=5)
        elapsed = time.monotonic() - started
    assert seen == [ok.id]
    assert 0.15 < elapsed < 1.5
    messages = [r.getMessage() for r in caplog.records]
    assert any("timed out" in m and hung.id in m and "inst-h" in m for m in messages)
    assert engine.running
    task = engine._task
    assert task is not None and task.cancelling() == 0
    # the engine still stops cleanly afterwards (a real cancellation still works)
    assert await engine.stop(deadline=1.0) == 0
    assert not engine.running


async def test_emit_from_other_thread(queue: PluginEventQueue, engine: PluginEventEngine) -> None:
    seen: list[int] = []
    engine.register("t", lambda e: seen.append(e.payload))
    await engine.start()
    await asyncio.sleep(0.01)  # consumer parked on its waiter

    def produce() -> None:
        for n in range(500):
            queue.emit("p", "i", "t", n)

    threads = [threading.Thread(target=produce) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    await eventually_async(lambda: engine.handled == 1000, timeout=5)
    assert sorted(seen) == sorted(list(range(500)) * 2)

    # a single emit from a thread while the consumer waits wakes it up
    thread = threading.Thread(target=queue.emit, args=("p", "i", "t", -1))
    thread.start()
    thread.join()
    await eventually_async(lambda: engine.handled == 1001, timeout=5)
    assert seen[-1] == -1


async def test_stop_drains_queued_events(
    queue: PluginEventQueue, engine: PluginEventEngine
) -> None:
    seen: list[int] = []

    async def slow(e: PluginEvent) -> None:
        await asyncio.sleep(0.001)
        seen.append(e.payload)

    engine.register("a", slow)
    await engine.start()
    for n in range(50):
        queue.emit("p", "i", "a", n)
    assert await engine.stop(deadline=3.0) == 0
    assert seen == list(range(50))
    assert not engine.running


async def test_stop_with_hanging_handler_returns_within_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = PluginEventQueue()
    engine = PluginEventEngine(queue, handler_timeout=30.0)

    async def hang(e: PluginEvent) -> None:
        await asyncio.Event().wait()

    engine.register("a", hang)
    await engine.start()
    events = [queue.emit("p", "inst-s", "a", n) for n in range(3)]
    await asyncio.sleep(0.02)
    with caplog.at_level(logging.WARNING, logger="grambot.events.queue"):
        started = time.monotonic()
        leftover = await engine.stop(deadline=0.3)
        elapsed = time.monotonic() - started
    assert elapsed < 0.45
    assert leftover == 3  # the interrupted event plus the two still queued
    report = " ".join(r.getMessage() for r in caplog.records)
    assert "3 unhandled" in report
    for ev in events:
        assert ev.id in report
    assert not engine.running


async def test_stop_without_start_reports_queued(queue: PluginEventQueue) -> None:
    engine = PluginEventEngine(queue)
    queue.emit("p", "i", "a")
    assert await engine.stop(deadline=0.1) == 1
    assert len(queue) == 0


async def test_emit_after_stop_is_dropped_with_warning(
    queue: PluginEventQueue, engine: PluginEventEngine, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    engine.register(None, lambda e: seen.append(e.id))
    await engine.start()
    await engine.stop(deadline=1.0)
    with caplog.at_level(logging.WARNING, logger="grambot.events.event"):
        ev = queue.emit("p", "inst-late", "late-type")
    assert isinstance(ev, PluginEvent)
    assert len(queue) == 0
    assert seen == []
    [record] = [r for r in caplog.records if r.name == "grambot.events.event"]
    assert record.levelno == logging.WARNING
    assert "inst-late" in record.getMessage()
    assert "late-type" in record.getMessage()


async def test_start_twice_is_an_error(engine: PluginEventEngine) -> None:
    await engine.start()
    with pytest.raises(RuntimeError, match="already running"):
        await engine.start()


def test_handler_timeout_must_be_positive(queue: PluginEventQueue) -> None:
    with pytest.raises(ValueError, match="handler_timeout"):
        PluginEventEngine(queue, handler_timeout=0)


def test_ids_unique(queue: PluginEventQueue) -> None:
    ids = {queue.emit("p", "i", "a").id for _ in range(10000)}
    assert len(ids) == 10000
    assert len(queue) == 10000


def test_created_at_is_iso_utc(queue: PluginEventQueue) -> None:
    before = datetime.now(UTC)
    ev = queue.emit("p", "i", "a", {"k": 1})
    parsed = datetime.fromisoformat(ev.created_at)
    assert parsed.utcoffset() == timedelta(0)
    assert abs(parsed - before) < timedelta(seconds=5)
    assert ev.to_dict() == {
        "id": ev.id,
        "pluginId": "p",
        "instanceId": "i",
        "type": "a",
        "payload": {"k": 1},
        "createdAt": ev.created_at,
    }


def test_event_has_slots() -> None:
    ev = PluginEvent("p", "i", "a")
    assert not hasattr(ev, "__dict__")
