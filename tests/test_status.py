"""status.json: coalesced atomic writes; the engine lock decides whether an engine runs."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from grambot.app.lock import EngineLock, engine_running
from grambot.app.status import StatusWriter, read_status
from grambot.engine import Engine
from grambot.errors import EngineLocked
from tests.helpers import Workspace, entry, eventually_async


async def test_many_state_changes_cost_few_writes(engine: Engine, workspace: Workspace) -> None:
    writer = StatusWriter(workspace.scout, engine, min_interval=0.1)
    try:
        started = time.monotonic()
        await engine.apply(workspace.write([entry(f"i{n}") for n in range(300)]))
        elapsed = time.monotonic() - started
        # 300 instances x (loading, loaded) = 600+ changes
        assert writer.writes <= 2 + elapsed / 0.1, (writer.writes, elapsed)

        def all_loaded() -> bool:
            states = [i["state"] for i in (read_status(workspace.scout) or {}).get("instances", [])]
            return len(states) == 300 and set(states) == {"loaded"}

        # the last change is written within the interval
        await eventually_async(all_loaded, timeout=5, interval=0.02)
    finally:
        writer.close()
    assert not (workspace.scout / "status.json").exists()


async def test_first_change_after_a_quiet_period_is_written_at_once(
    engine: Engine, workspace: Workspace
) -> None:
    writer = StatusWriter(workspace.scout, engine, min_interval=10)
    try:
        await engine.apply(workspace.write([entry("a")]))
        await asyncio.sleep(0.05)
        assert writer.writes == 1
        status = read_status(workspace.scout)
        assert status is not None and status["pid"] == writer.pid
        assert [i["instanceId"] for i in status["instances"]] == ["a"]
        writer.flush()
        status = json.loads((workspace.scout / "status.json").read_text())
        assert status["instances"][0]["state"] == "loaded"
    finally:
        writer.close(remove=False)
    assert (workspace.scout / "status.json").exists()


def test_engine_lock_is_exclusive_and_judges_running(workspace: Workspace) -> None:
    assert not engine_running(workspace.root)
    first = EngineLock(workspace.root)
    first.acquire()
    try:
        assert engine_running(workspace.root)
        with pytest.raises(EngineLocked, match="another grambot engine is already running"):
            EngineLock(workspace.root).acquire(timeout=0.05)
    finally:
        first.release()
    assert not engine_running(workspace.root)
    with EngineLock(workspace.root):
        assert engine_running(workspace.root)


def test_a_stale_status_file_does_not_mean_an_engine_runs(workspace: Workspace) -> None:
    (workspace.scout / "status.json").write_text(json.dumps({"pid": 1, "instances": []}))
    (workspace.scout / "engine.lock").write_text("")
    assert not engine_running(workspace.root)
