"""5. Load/unload cycles: does anything stay behind?

grambot: one instance of the 3-module plugin loaded and unloaded through reconciles (enabled,
then disabled), many times. Baseline, interleaved in blocks: the floor's cycle (exec the same
compiled modules into fresh dicts, create(), drop everything), which shows what the noise is.
Growth is measured per 1000 cycles, after a warm-up block, with tracemalloc (traced Python
memory) and RSS, each side's blocks measured on their own (before and after the block, after a
`gc.collect()`): a block's change is that side's alone, never the other's block in between.

The figure is the trend of a side's cumulative change over its blocks, estimated as the median
of the slopes between every pair of blocks (Theil-Sen). Allocators and caches move memory in a
saw-tooth (a dict or free list grows in one block and shrinks in the next, by hundreds of KB
either way): the median of the single block changes is then just one of the teeth, while a
leak raises every slope alike. A one-off step moves few of the pairwise slopes.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import tracemalloc
from collections.abc import Callable

from bench.common import Result, median, rss_bytes
from bench.scale import Floor, Workspace
from grambot.config.settings import EngineSettings, load_settings

GROUP = "cycles"
BLOCK = 1000
TRACE_LIMIT_KB = 64.0  # per 1000 cycles: < 64 B a cycle, where one leaked instance is ~30 KB
RSS_LIMIT_KB = 1024.0


def _growth(changes: list[int]) -> float:
    """Growth per block: the Theil-Sen slope of the cumulative sum of one side's changes."""
    totals = [0, *itertools.accumulate(changes)]
    slopes = [
        (totals[j] - totals[i]) / (j - i) for i, j in itertools.combinations(range(len(totals)), 2)
    ]
    return median(slopes) if slopes else 0.0


def _measured(block: Callable[[], None]) -> tuple[int, int]:
    """(traced, RSS) bytes `block()` leaves behind, after a collection on both sides."""
    gc.collect()
    traced, rss = tracemalloc.get_traced_memory()[0], rss_bytes()
    block()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - traced, rss_bytes() - rss


def run(quick: bool) -> list[Result]:
    cycles = 400 if quick else 10_000
    block = 100 if quick else BLOCK
    ws = Workspace()
    floor = Floor()
    loop = asyncio.new_event_loop()
    try:
        on: EngineSettings = ws.settings(1)
        path = ws.root / ".scout" / "settings.json"
        path.write_text(path.read_text().replace('"pluginId"', '"enabled": false, "pluginId"'))
        off = load_settings(ws.root)
        engine = ws.engine()
        loop.run_until_complete(engine.event_engine.start())

        def grambot_block() -> None:
            for _ in range(block):
                loop.run_until_complete(engine.apply(on))
                loop.run_until_complete(engine.apply(off))

        def floor_block() -> None:
            for _ in range(block):
                floor.load(1)
                floor.clear()

        # warm-up block (thread pool, caches), then measure
        grambot_block()
        floor_block()
        tracemalloc.start()
        gb_trace: list[int] = []
        gb_rss: list[int] = []
        fl_trace: list[int] = []
        fl_rss: list[int] = []
        for i in range(cycles // block):  # alternate which side goes first
            for side in ("grambot", "floor") if i % 2 == 0 else ("floor", "grambot"):
                if side == "grambot":
                    traced, resident = _measured(grambot_block)
                    gb_trace.append(traced)
                    gb_rss.append(resident)
                else:
                    traced, resident = _measured(floor_block)
                    fl_trace.append(traced)
                    fl_rss.append(resident)
        tracemalloc.stop()
        if engine.loaded_ids():
            raise RuntimeError("the instance is still loaded after the last cycle")
        loop.run_until_complete(engine.stop(drain_deadline=1.0))
    finally:
        loop.close()
        ws.cleanup()

    per = BLOCK / block  # scale quick-mode blocks to "per 1000 cycles"
    trace, trace_base = _growth(gb_trace) * per / 1024, _growth(fl_trace) * per / 1024
    rss, rss_base = _growth(gb_rss) * per / 1024, _growth(fl_rss) * per / 1024

    def note(changes: list[int]) -> str:
        return (
            f"{cycles} load/unload cycles of one instance via reconcile, in blocks of {block} "
            "alternating with the floor's cycles, each block measured on its own; growth = the "
            "Theil-Sen slope of a side's cumulative change over its blocks (grambot's block "
            f"changes, KB: {', '.join(f'{x / 1024:+.0f}' for x in changes)})"
        )

    return [
        Result(
            name="tracemalloc growth per 1000 load/unload cycles (vs the floor's cycle)",
            value=round(trace, 2),
            baseline=round(trace_base, 2),
            ratio=None,
            target=f"value <= {TRACE_LIMIT_KB:g} KB",
            unit="KB/1000 cycles",
            meets=trace <= TRACE_LIMIT_KB,
            notes=note(gb_trace),
            group=GROUP,
            details={"grambot_block_changes": gb_trace, "floor_block_changes": fl_trace},
        ),
        Result(
            name="RSS growth per 1000 load/unload cycles (vs the floor's cycle)",
            value=round(rss, 1),
            baseline=round(rss_base, 1),
            ratio=None,
            target=f"value <= {RSS_LIMIT_KB:g} KB",
            unit="KB/1000 cycles",
            meets=rss <= RSS_LIMIT_KB,
            notes=note(gb_rss),
            group=GROUP,
            details={"grambot_block_rss_changes": gb_rss, "floor_block_rss_changes": fl_rss},
        ),
    ]
