"""5. Load/unload cycles: does anything stay behind?

grambot: one instance of the 3-module plugin loaded and unloaded through reconciles (enabled,
then disabled), many times. Baseline, interleaved in blocks: the floor's cycle (exec the same
compiled modules into fresh dicts, create(), drop everything), which shows what the noise is.
Growth is measured per 1000 cycles, after a warm-up block, with tracemalloc (traced Python
memory) and RSS.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import tracemalloc

from bench.common import Result, median, rss_bytes
from bench.scale import Floor, Workspace
from grambot.settings import EngineSettings, load_settings

GROUP = "cycles"
BLOCK = 1000
TRACE_LIMIT_KB = 64.0  # per 1000 cycles: < 64 B a cycle, where one leaked instance is ~30 KB
RSS_LIMIT_KB = 1024.0


def _growth(samples: list[int]) -> float:
    """Typical growth per block: the median of the block-to-block differences.

    A one-off step (a cache or a dict reaching its next size) moves one difference only; a
    leak moves all of them.
    """
    diffs = [b - a for a, b in itertools.pairwise(samples)]
    return median(diffs) if diffs else 0.0


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
        for _ in range(cycles // block):
            grambot_block()
            gc.collect()
            gb_trace.append(tracemalloc.get_traced_memory()[0])
            gb_rss.append(rss_bytes())
            floor_block()
            gc.collect()
            fl_trace.append(tracemalloc.get_traced_memory()[0])
            fl_rss.append(rss_bytes())
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
    note = (
        f"{cycles} load/unload cycles of one instance via reconcile, in blocks of {block} "
        "alternating with the floor's cycles; growth = median of the per-block differences"
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
            notes=note,
            group=GROUP,
            details={"grambot_traced": gb_trace, "floor_traced": fl_trace},
        ),
        Result(
            name="RSS growth per 1000 load/unload cycles (vs the floor's cycle)",
            value=round(rss, 1),
            baseline=round(rss_base, 1),
            ratio=None,
            target=f"value <= {RSS_LIMIT_KB:g} KB",
            unit="KB/1000 cycles",
            meets=rss <= RSS_LIMIT_KB,
            notes=note,
            group=GROUP,
            details={"grambot_rss": gb_rss, "floor_rss": fl_rss},
        ),
    ]
