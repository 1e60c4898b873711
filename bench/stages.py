"""6. Instances never slow each other: a quick sync stage beside another instance's sync stage.

Two instances of `bench/plugins/synctool`, each registering a tool whose `execute` is a plain
function (the engine runs it as a stage in a worker thread, under the tool's deadline). The
quick tool's call latency is measured trial by trial while the other instance's tool has just
started a call that sleeps (`time.sleep(0.05)`) or spins the CPU for 50 ms; the baseline is the
same quick call alone, measured in the same run (alternating blocks of trials).

Targets (issue 13): beside a sleeping stage, p50 <= alone + 1 ms; beside a CPU-bound one,
p50 <= alone + 2 x `sys.getswitchinterval()` (the GIL is handed over every switch interval:
that much waiting is the interpreter's, not the engine's).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_PLUGINS, Result, percentile, ratio
from grambot.engine import Engine
from grambot.registries.tools import ToolContext
from grambot.settings import load_settings

GROUP = "stages"
BUSY_SECONDS = 0.05
HEAD_START = 0.005  # the busy call is running in its worker before the quick one is asked


async def _call(engine: Engine, name: str, args: dict[str, Any]) -> float:
    tool = engine.registries.tools.get(name)
    assert tool is not None
    started = time.perf_counter()
    await tool.execute(args, ToolContext())
    return time.perf_counter() - started


async def _trials(engine: Engine, busy: dict[str, Any] | None, n: int) -> list[float]:
    latencies = []
    for _ in range(n):
        other = None
        if busy is not None:
            other = asyncio.ensure_future(_call(engine, "busy", busy))
            await asyncio.sleep(HEAD_START)
        else:
            await asyncio.sleep(HEAD_START)  # the same rhythm as the contended trials
        latencies.append(await _call(engine, "quick", {"do": "quick"}))
        if other is not None:
            await other
    return latencies


async def _measure(root: Path, trials: int, blocks: int) -> dict[str, list[float]]:
    engine = Engine(root, builtin_dir=None, entry_points=False)
    await engine.event_engine.start()
    try:
        await engine.apply(load_settings(root))
        if sorted(engine.loaded_ids()) != ["busy-owner", "quick-owner"]:
            raise RuntimeError(f"loaded {engine.loaded_ids()}")
        await _trials(engine, None, 5)  # warm-up
        got: dict[str, list[float]] = {"alone": [], "sleep": [], "spin": []}
        busy = {
            "alone": None,
            "sleep": {"do": "sleep", "seconds": BUSY_SECONDS},
            "spin": {"do": "spin", "seconds": BUSY_SECONDS},
        }
        for block in range(blocks):  # alternate, so that machine noise hits all three alike
            order = ["alone", "sleep", "spin"] if block % 2 == 0 else ["spin", "sleep", "alone"]
            for kind in order:
                got[kind] += await _trials(engine, busy[kind], trials)
        return got
    finally:
        await engine.stop(drain_deadline=1.0)


def run(quick: bool) -> list[Result]:
    trials, blocks = (5, 2) if quick else (25, 8)
    with tempfile.TemporaryDirectory(prefix="grambot-bench-") as tmp:
        root = Path(tmp)
        (root / ".scout").mkdir()
        plugins = [
            {
                "instanceId": "busy-owner",
                "pluginId": "bench-synctool",
                "settings": {"tool_name": "busy"},
            },
            {
                "instanceId": "quick-owner",
                "pluginId": "bench-synctool",
                "settings": {"tool_name": "quick"},
            },
        ]
        (root / ".scout" / "settings.json").write_text(
            json.dumps({"pluginDirs": [str(BENCH_PLUGINS)], "plugins": plugins})
        )
        got = asyncio.run(_measure(root, trials, blocks))
    switch = sys.getswitchinterval()
    alone = percentile(got["alone"], 50)
    results = []
    for kind, what, allowance, target in (
        ("sleep", "sleeping (time.sleep(0.05))", 0.001, "value <= baseline + 1 ms"),
        (
            "spin",
            "CPU-bound (50 ms)",
            2 * switch,
            f"value <= baseline + 2 x switch interval ({2 * switch * 1000:g} ms)",
        ),
    ):
        p50 = percentile(got[kind], 50)
        results.append(
            Result(
                name=f"quick sync stage p50 beside another instance's {what} sync stage (vs alone)",
                value=round(p50 * 1000, 3),
                baseline=round(alone * 1000, 3),
                ratio=ratio(p50, alone),
                target=target,
                unit="ms",
                meets=p50 <= alone + allowance,
                notes=f"{len(got[kind])} trials in {blocks} blocks alternating with "
                f"{len(got['alone'])} alone; the other call starts {HEAD_START * 1000:g} ms "
                f"before the quick one; p95 {percentile(got[kind], 95) * 1000:.2f} ms, max "
                f"{max(got[kind]) * 1000:.2f} ms (alone p95 "
                f"{percentile(got['alone'], 95) * 1000:.2f} ms)",
                group=GROUP,
                details={
                    "contended_ms": [round(x * 1000, 3) for x in got[kind]],
                    "alone_ms": [round(x * 1000, 3) for x in got["alone"]],
                    "switch_interval_s": switch,
                },
            )
        )
    return results
