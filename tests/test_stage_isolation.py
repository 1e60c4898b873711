"""Instances never slow each other.

A quick sync stage of one instance (here: a sync tool's `execute`, which the engine runs in a
worker thread under the tool's deadline) must not wait while another instance's sync stage
runs, whether that one sleeps, spins the CPU or hangs; its outcome must reach the caller at
once, not with the next batch; and a hung stage holds a worker only until its deadline.
Measured through the real engine and the tool registry, trial by trial: the other instance's
stage is started, then the quick one is timed.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from grambot.config.settings import load_settings
from grambot.engine import Engine
from grambot.errors import StageTimeout
from grambot.registries.tools import ToolContext
from tests.helpers import REPO, Workspace, entry

# The benchmark's own sync tool (bench/stages.py measures the same stalls); overrideMs below is
# every deadline, whatever its manifest says.
STAGE_PLUGINS = REPO / "bench" / "plugins"
TRIALS = 12
SWITCH = sys.getswitchinterval()


@pytest.fixture
async def tools(workspace: Workspace) -> AsyncIterator[Engine]:
    data = {
        "pluginDirs": [str(STAGE_PLUGINS)],
        "plugins": [
            entry("a", "bench-synctool", tool_name="busy"),
            entry("b", "bench-synctool", tool_name="quick"),
        ],
        "timeouts": {"overrideMs": 1500},
    }
    workspace.settings_file.write_text(json.dumps(data))
    engine = Engine(workspace.root, builtin_dir=None, entry_points=False)
    await engine.event_engine.start()
    await engine.apply(load_settings(workspace.root))
    assert sorted(engine.loaded_ids()) == ["a", "b"]
    try:
        yield engine
    finally:
        await engine.stop(drain_deadline=1.0)


async def _call(engine: Engine, name: str, **args: Any) -> float:
    """Seconds one call of tool `name` took."""
    tool = engine.registries.tools.get(name)
    assert tool is not None
    started = time.perf_counter()
    result = await tool.execute(args, ToolContext())
    assert result.text == args.get("do", "quick")
    return time.perf_counter() - started


async def _alone(engine: Engine) -> float:
    for _ in range(3):  # warm up: a worker thread exists
        await _call(engine, "quick")
    return statistics.median([await _call(engine, "quick") for _ in range(TRIALS)])


async def _beside(engine: Engine, **busy: Any) -> list[float]:
    """The quick tool's latency, each trial while the busy tool has just started."""
    latencies = []
    for _ in range(TRIALS):
        other = asyncio.ensure_future(_call(engine, "busy", **busy))
        await asyncio.sleep(0.005)  # the busy call is running in its worker now
        latencies.append(await _call(engine, "quick"))
        await other
    return latencies


# Beside a spinning thread the quick stage competes for the GIL (the interpreter hands it over
# every switch interval): a few switch intervals, not a hand-off delay of the engine's own.
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("do", "slack"), [("sleep", 0.005), ("spin", 4 * SWITCH)], ids=["sleeping", "cpu-bound"]
)
async def test_a_quick_sync_stage_does_not_wait_for_another_instances_busy_one(
    tools: Engine, do: str, slack: float
) -> None:
    alone = await _alone(tools)
    beside = await _beside(tools, do=do, seconds=0.06)
    assert statistics.median(beside) <= alone + slack, (alone, beside)


@pytest.mark.timeout(30)
async def test_outcomes_arrive_at_once_while_another_stage_is_outstanding(
    tools: Engine,
) -> None:
    alone = await _alone(tools)
    hung = asyncio.ensure_future(_call(tools, "busy", do="sleep", seconds=1.0))
    await asyncio.sleep(0.01)
    latencies = [await _call(tools, "quick") for _ in range(TRIALS)]
    assert statistics.median(latencies) <= alone + 0.005, (alone, latencies)
    await hung


@pytest.mark.timeout(30)
async def test_hung_stages_hold_workers_only_until_their_deadline(tools: Engine) -> None:
    # Many more hung calls than any pool keeps threads for: each times out at its deadline
    # (1.5 s, counted from when it was asked, queued or not), and a quick call after them
    # finds a worker at once.
    started = time.perf_counter()
    hung = [asyncio.ensure_future(_call(tools, "busy", do="sleep", seconds=3.0)) for _ in range(64)]
    outcomes = await asyncio.gather(*hung, return_exceptions=True)
    assert all(isinstance(o, StageTimeout) for o in outcomes), outcomes
    assert time.perf_counter() - started < 2.5  # all at their own deadline, none queued past it
    assert await _call(tools, "quick") < 0.5
