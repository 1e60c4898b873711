"""api.schedule and api.store through the real engine (the `jobs` fixture plugin), and cron
timing across DST changes."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from grambot.engine import Engine
from grambot.errors import RegistrationError, StateError
from grambot.scheduling import Scheduler, next_run
from grambot.storage import Job
from tests.helpers import Workspace, entry, eventually_async


def _runs(workspace: Workspace, instance: str = "j") -> list[str]:
    return [c for c in workspace.calls(instance) if c.startswith("run:")]


async def test_an_every_job_runs_persists_and_pauses_while_unloaded(
    engine: Engine, workspace: Workspace
) -> None:
    jobs = [{"name": "tick", "every": 0.1}]
    await engine.apply(workspace.write([entry("j", "jobs", jobs=jobs)]))
    await eventually_async(lambda: len(_runs(workspace)) >= 2, timeout=5)
    stored = await engine.storage.schedule.get("j", "tick")
    assert stored is not None and stored.kind == "every" and stored.next_run is not None
    await engine.apply(workspace.write([entry("j", "jobs", enabled=False, jobs=jobs)]))
    paused = len(_runs(workspace))
    await asyncio.sleep(0.4)
    assert len(_runs(workspace)) == paused  # unloaded: its jobs wait
    assert await engine.storage.schedule.get("j", "tick") is not None  # and stay stored
    await engine.apply(workspace.write([entry("j", "jobs", jobs=jobs)]))
    await eventually_async(lambda: len(_runs(workspace)) > paused, timeout=5)


async def test_missed_runs_follow_the_job_policy(engine: Engine, workspace: Workspace) -> None:
    past = time.time() - 3600
    for name, missed in (("catch-up", "run-once"), ("skipper", "skip")):
        await engine.storage.schedule.put(
            Job("j", name, "every", "600.0", past, missed=missed)  # due an hour ago
        )
    jobs = [
        {"name": "catch-up", "every": 600, "missed": "run-once"},
        {"name": "skipper", "every": 600, "missed": "skip"},
    ]
    await engine.apply(workspace.write([entry("j", "jobs", jobs=jobs)]))
    await eventually_async(lambda: _runs(workspace) == ["run:catch-up:0"], timeout=5)
    await asyncio.sleep(0.2)
    assert _runs(workspace) == ["run:catch-up:0"]  # once, however many were missed
    skipper = await engine.storage.schedule.get("j", "skipper")
    assert skipper is not None and skipper.next_run is not None
    assert skipper.next_run > time.time() + 500  # moved to its next run, not run


async def test_a_stored_job_without_handler_is_logged_and_kept(
    engine: Engine, workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    await engine.storage.schedule.put(Job("j", "orphan", "every", "1.0", time.time() - 5))
    await engine.storage.schedule.put(Job("j", "remind:1", "every", "1.0", time.time() - 5))
    with caplog.at_level(logging.WARNING, "grambot.scheduler"):
        await engine.apply(workspace.write([entry("j", "jobs", handle=["remind:*"])]))
        await eventually_async(lambda: _runs(workspace) == ["run:remind:1:0"], timeout=5)
        await eventually_async(
            lambda: "stored job 'orphan' has no handler" in caplog.text, timeout=5
        )
    assert "instance j" in caplog.text
    assert await engine.storage.schedule.get("j", "orphan") is not None


async def test_a_failing_job_is_logged_and_retried_by_policy(
    engine: Engine, workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    soon = datetime.fromtimestamp(time.time() + 0.05).astimezone().isoformat()
    jobs = [{"name": "fail-once", "at": soon, "retries": 2, "retry_delay": 0.05}]
    with caplog.at_level(logging.ERROR, "grambot.scheduler"):
        await engine.apply(workspace.write([entry("j", "jobs", jobs=jobs)]))
        await eventually_async(lambda: len(_runs(workspace)) == 3, timeout=5)
        await eventually_async(lambda: "after 2 retries; dropped" in caplog.text, timeout=5)
    assert _runs(workspace) == ["run:fail-once:0", "run:fail-once:1", "run:fail-once:2"]
    assert "instance j: job 'fail-once' failed (RuntimeError: job fail-once failed" in caplog.text
    assert await engine.storage.schedule.get("j", "fail-once") is None


async def test_a_job_stored_after_the_engine_started_runs_after_a_reload(
    engine: Engine, workspace: Workspace
) -> None:
    # The scheduler reads which owners have stored jobs once: a job an instance stores later
    # must still be found when it loads again with only a handler for it.
    await engine.apply(workspace.write([entry("k", "jobs", handle=["tick"])]))
    await engine.apply(workspace.write([entry("k", "jobs", jobs=[{"name": "tick", "every": 60}])]))
    assert await engine.storage.schedule.get("k", "tick") is not None
    await engine.apply(workspace.write([entry("k", "jobs", enabled=False, handle=["tick"])]))
    job = await engine.storage.schedule.get("k", "tick")
    assert job is not None
    # due now (as if a minute had passed): it runs once the instance is loaded again
    await engine.storage.schedule.put(dataclasses.replace(job, next_run=time.time()))
    await engine.apply(workspace.write([entry("k", "jobs", handle=["tick"])]))
    await eventually_async(lambda: _runs(workspace, "k"), timeout=5)


async def test_owners_activated_before_the_owners_read_is_in_wait_for_it_in_one_task(
    engine: Engine,
) -> None:
    # A burst of loads activates its instances before the one read of which owners have
    # stored jobs is in: they wait for it together, not in a task each (bench scale: a
    # thousand tasks and shields on the loop).
    scheduler = engine.scheduler
    owners = [f"b{i}" for i in range(100)]
    await engine.storage.schedule.put(Job("b7", "tick", "every", "600.0", time.time() + 600))
    schedules = [scheduler.for_instance(o, contextvars.copy_context()) for o in owners]
    schedules[7].handle("tick", lambda run: None)
    before = asyncio.all_tasks()
    for owner in owners:
        scheduler.activate(owner)
    assert len(asyncio.all_tasks() - before) == 1
    await eventually_async(
        lambda: scheduler.active == 1, timeout=5
    )  # b7's stored job is armed all the same
    assert {owner for owner, _ in scheduler._jobs} == {"b7"}


async def test_a_failed_owners_read_neither_loses_nor_blocks_stored_jobs(
    engine: Engine,
) -> None:
    store = engine.storage.schedule

    class FirstReadFails:  # the real store, whose first owners read fails at once
        reads = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def owners(self) -> Any:
            self.reads += 1
            if self.reads == 1:
                raise StateError("the database is closed")
            return store.owners()

    scheduler = Scheduler(FirstReadFails())  # type: ignore[arg-type]
    try:
        for owner in ("f1", "f2"):
            await store.put(Job(owner, "tick", "every", "600.0", time.time() + 600))
        first = scheduler.for_instance("f1", contextvars.copy_context())
        first.handle("tick", lambda run: None)
        scheduler.activate("f1")
        await eventually_async(
            lambda: scheduler.active == 1, timeout=5
        )  # its jobs were asked for directly
        second = scheduler.for_instance("f2", contextvars.copy_context())
        second.handle("tick", lambda run: None)
        scheduler.activate("f2")  # a later activation still gets its jobs
        await eventually_async(lambda: scheduler.active == 2, timeout=5)
    finally:
        await scheduler.stop()


async def test_an_owner_unloaded_while_the_owners_read_is_pending_gets_no_jobs(
    engine: Engine,
) -> None:
    scheduler = engine.scheduler
    await engine.storage.schedule.put(Job("u1", "tick", "every", "600.0", time.time() + 600))
    schedule = scheduler.for_instance("u1", contextvars.copy_context())
    schedule.handle("tick", lambda run: None)
    scheduler.activate("u1")
    scheduler.deactivate("u1", schedule)  # unloaded before the read is in
    await asyncio.sleep(0.3)
    assert scheduler.active == 0
    again = scheduler.for_instance("u1", contextvars.copy_context())  # loaded again
    again.handle("tick", lambda run: None)
    scheduler.activate("u1")
    await eventually_async(lambda: scheduler.active == 1, timeout=5)


async def test_an_at_job_runs_once_and_is_gone(engine: Engine, workspace: Workspace) -> None:
    soon = datetime.fromtimestamp(time.time() + 0.05).astimezone().isoformat()
    await engine.apply(workspace.write([entry("j", "jobs", jobs=[{"name": "once", "at": soon}])]))
    await eventually_async(lambda: _runs(workspace) == ["run:once:0"], timeout=5)
    await eventually_async(lambda: engine.storage.schedule is not None, timeout=5)

    async def forgotten() -> bool:
        return await engine.storage.schedule.get("j", "once") is None

    await eventually_async(forgotten, timeout=1)
    assert await engine.storage.schedule.get("j", "once") is None


async def test_store_is_per_instance_persistent_and_closed_after_unload(
    workspace: Workspace,
) -> None:
    plugins = [entry("a", "jobs"), entry("b", "jobs")]
    for loads in (1, 2):
        engine = Engine(workspace.root, builtin_dir=None, entry_points=False)
        await engine.event_engine.start()
        try:
            await engine.apply(workspace.write(plugins))
            api_a = engine.instance("a").generation.plugin_object.api  # type: ignore[union-attr]
            api_b = engine.instance("b").generation.plugin_object.api  # type: ignore[union-attr]
            assert await api_a.store.get("loads") == loads  # kept across engines
            await api_a.store.set("mine", {"v": [1, 2]})
            assert await api_b.store.get("mine") is None  # namespaced per instance
            await api_a.store.set("brief", 1, ttl=0.05)
            await asyncio.sleep(0.08)
            assert await api_a.store.get("brief", "gone") == "gone"
            assert await api_a.store.keys() == ["loads", "mine"]
            assert await api_a.store.compare_and_set("cas", api_a.store.MISSING, 1)
            assert not await api_a.store.compare_and_set("cas", 5, 2)
            await api_a.store.delete("cas")
        finally:
            await engine.stop(drain_deadline=1.0)
    with pytest.raises(RegistrationError, match="unloaded"):
        await api_a.store.get("loads")


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # spring forward in Berlin: 02:30 does not exist on 2026-03-29, cron runs at 03:00
        ("2026-03-28T12:00:00+01:00", "2026-03-29T03:00:00+02:00"),
        ("2026-03-29T12:00:00+02:00", "2026-03-30T02:30:00+02:00"),
        # fall back: 02:30 happens twice on 2026-10-25, cron runs once
        ("2026-10-24T12:00:00+02:00", "2026-10-25T02:30:00+02:00"),
        ("2026-10-25T02:31:00+02:00", "2026-10-26T02:30:00+01:00"),
    ],
)
def test_cron_across_dst_changes(after: str, expected: str) -> None:
    start = datetime.fromisoformat(after).timestamp()
    got = next_run("cron", "30 2 * * *", "Europe/Berlin", start)
    assert got is not None
    when = datetime.fromtimestamp(got, ZoneInfo("Europe/Berlin"))
    assert when.isoformat() == expected


def test_a_daily_8_oclock_job_stays_at_8_local_across_dst() -> None:
    start = datetime.fromisoformat("2026-10-23T09:00:00+02:00").timestamp()
    hours = []
    for _ in range(4):
        start = next_run("cron", "0 8 * * *", "Europe/Berlin", start) or 0
        hours.append(datetime.fromtimestamp(start, ZoneInfo("Europe/Berlin")).hour)
    assert hours == [8, 8, 8, 8]
