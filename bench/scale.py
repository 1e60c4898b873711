"""2. Instance scale: load N instances of a 3-module plugin through the manager.

The engine is made as `grambot run` makes it: with the application's collector hook
(grambot.app.collector), which sets the collector aside while a burst loads. The same load by
an embedded Engine, which leaves the interpreter alone, is measured too (in the notes).

Floor (same run, alternated): the three already-compiled code objects of the same plugin
executed into N fresh sets of module dicts (a package module plus three modules, registered in
sys.modules so the relative imports resolve) plus N plain `create()` calls. That is the least
any loader giving each instance its own module globals has to do.

Then memory per loaded instance (tracemalloc, in a separate pass: tracing slows everything), and
a reconcile that changes 1 of the N instances against the full load time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tempfile
import time
import tracemalloc
import types
from pathlib import Path
from typing import Any

from bench.common import BENCH_PLUGINS, Result, alternate, median, ratio
from grambot.app.collector import collector_set_aside
from grambot.config.settings import EngineSettings, load_settings
from grambot.containment.loader import CODE_CACHE
from grambot.engine import Engine

GROUP = "scale"
PLUGIN = BENCH_PLUGINS / "trio"
MODULES = ("models", "helper", "plugin")  # plugin.py imports the other two relatively
# the load's ratio to its floor, with the collector hook of `grambot run` and nothing else of
# the interpreter changed (no switch interval, no lock of a dependency's; issue 24)
LOAD_TARGET = 1.75


class _FloorApi:
    __slots__ = ("settings",)

    def __init__(self, settings: Any) -> None:
        self.settings = settings


class Floor:
    """Exec the compiled modules into fresh dicts; `create()` each plugin."""

    def __init__(self) -> None:
        self.codes = {m: CODE_CACHE.get(PLUGIN / f"{m}.py") for m in MODULES}
        self.names: list[str] = []
        self.objects: list[Any] = []
        self._seq = 0

    def load(self, n: int) -> float:
        folder = str(PLUGIN)
        codes = [(m, self.codes[m], str(PLUGIN / f"{m}.py")) for m in MODULES]
        modules = sys.modules
        start = time.perf_counter()
        for _ in range(n):
            self._seq += 1
            pkg_name = f"bench_floor_{self._seq}"
            package = types.ModuleType(pkg_name)
            package.__path__ = [folder]
            package.__package__ = pkg_name
            modules[pkg_name] = package
            self.names.append(pkg_name)
            module = package
            for name, code, file in codes:
                full = f"{pkg_name}.{name}"
                module = types.ModuleType(full)
                module.__package__ = pkg_name
                module.__file__ = file
                modules[full] = module
                self.names.append(full)
                exec(code, module.__dict__)
                setattr(package, name, module)
            self.objects.append(module.plugin.create(_FloorApi(None)))
        return time.perf_counter() - start

    def clear(self) -> None:
        for name in self.names:
            sys.modules.pop(name, None)
        self.names.clear()
        self.objects.clear()


class Workspace:
    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="grambot-bench-")
        self.root = Path(self._tmp.name)
        (self.root / ".scout").mkdir()

    def settings(self, n: int, *, changed: int | None = None, variant: int = 0) -> EngineSettings:
        plugins = [
            {
                "instanceId": f"trio-{i}",
                "pluginId": "bench-trio",
                "settings": {"greeting": f"v{variant}" if i == changed else "hi", "repeat": 2},
            }
            for i in range(n)
        ]
        data = {"pluginDirs": [str(BENCH_PLUGINS)], "plugins": plugins}
        (self.root / ".scout" / "settings.json").write_text(json.dumps(data))
        return load_settings(self.root)

    def engine(self, *, embedded: bool = False) -> Engine:
        """As `grambot run` makes it, or (`embedded`) with no hook of the application's."""
        around_loads = None if embedded else collector_set_aside
        return Engine(self.root, builtin_dir=None, entry_points=False, around_loads=around_loads)

    def cleanup(self) -> None:
        self._tmp.cleanup()


async def _load_all(
    engine: Engine, settings: EngineSettings, cpu: list[float] | None = None
) -> float:
    start, start_cpu = time.perf_counter(), time.process_time()
    await engine.apply(settings)
    elapsed = time.perf_counter() - start
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    loaded = len(engine.loaded_ids())
    if loaded != len(settings.instances):
        raise RuntimeError(f"only {loaded} of {len(settings.instances)} instances loaded")
    return elapsed


def _grambot_load(
    ws: Workspace,
    settings: EngineSettings,
    cpu: list[float] | None = None,
    *,
    embedded: bool = False,
) -> float:
    async def go() -> float:
        engine = ws.engine(embedded=embedded)
        try:
            return await _load_all(engine, settings, cpu)
        finally:
            await engine.stop(drain_deadline=1.0)

    return asyncio.run(go())


def _floor_load(floor: Floor, n: int, cpu: list[float] | None = None) -> float:
    start_cpu = time.process_time()
    try:
        return floor.load(n)
    finally:
        if cpu is not None:
            cpu.append(time.process_time() - start_cpu)
        floor.clear()


def _traced(fn: Any) -> int:
    """Bytes still allocated (tracemalloc) after `fn()` returns, vs before it ran."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _memory(ws: Workspace, settings: EngineSettings, floor: Floor, n: int) -> tuple[float, float]:
    holder: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    try:
        engine = ws.engine()
        # Everything the engine allocates once (imports, the catalog) stays out of the figure.
        loop.run_until_complete(engine.event_engine.start())
        engine.rescan(settings)

        def load() -> None:
            loop.run_until_complete(engine.apply(settings))
            holder["engine"] = engine

        grambot = _traced(load)
        loop.run_until_complete(engine.stop(drain_deadline=1.0))
    finally:
        loop.close()
    holder.clear()
    try:
        base = _traced(lambda: floor.load(n))
    finally:
        floor.clear()
    return grambot / n, base / n


def _reconcile(ws: Workspace, full: EngineSettings, n: int, edits: int) -> list[float]:
    variants = [ws.settings(n, changed=n // 2, variant=v % 2 + 1) for v in range(edits)]

    async def go() -> list[float]:
        engine = ws.engine()
        await engine.event_engine.start()
        try:
            await _load_all(engine, full)
            times = []
            for settings in variants:
                start = time.perf_counter()
                await engine.apply(settings)
                times.append(time.perf_counter() - start)
            if len(engine.loaded_ids()) != n:
                raise RuntimeError("reconcile lost instances")
            return times
        finally:
            await engine.stop(drain_deadline=1.0)

    return asyncio.run(go())


def run(quick: bool) -> list[Result]:
    n = 20 if quick else 1000
    rounds = 1 if quick else 5
    ws = Workspace()
    try:
        settings = ws.settings(n)
        floor = Floor()
        _floor_load(floor, 5)  # warm-up: pydantic's lazy imports, the code cache
        _grambot_load(ws, ws.settings(5))
        gb_cpu: list[float] = []
        floor_cpu: list[float] = []
        gb, base = alternate(
            lambda: _grambot_load(ws, settings, gb_cpu),
            lambda: _floor_load(floor, n, floor_cpu),
            rounds,
        )
        embedded, embedded_base = alternate(
            lambda: _grambot_load(ws, settings, embedded=True),
            lambda: _floor_load(floor, n),
            rounds,
        )
        embedded_ratio = ratio(min(embedded), min(embedded_base))
        load_time, floor_time = min(gb), min(base)
        r = ratio(load_time, floor_time)
        cpu_ratio = ratio(min(gb_cpu), min(floor_cpu))
        results = [
            Result(
                name=f"load {n} instances of a 3-module plugin (vs exec into fresh module dicts "
                "+ create())",
                value=round(load_time * 1000, 1),
                baseline=round(floor_time * 1000, 1),
                ratio=r,
                target=f"ratio <= {LOAD_TARGET}",
                unit="ms",
                meets=r is not None and r <= LOAD_TARGET,
                notes=f"best of {rounds} alternated runs each; per instance "
                f"{load_time / n * 1000:.3f} ms vs {floor_time / n * 1000:.3f} ms; in CPU "
                f"time (process_time, which other jobs on the machine do not inflate) "
                f"{cpu_ratio or 0:.2f}x; an embedded Engine (no collector hook) "
                f"{embedded_ratio or 0:.2f}x its floor",
                group=GROUP,
                details={
                    "grambot_s": gb,
                    "floor_s": base,
                    "grambot_cpu_s": gb_cpu,
                    "floor_cpu_s": floor_cpu,
                    "cpu_ratio": cpu_ratio,
                    "embedded_s": embedded,
                    "embedded_floor_s": embedded_base,
                    "embedded_ratio": embedded_ratio,
                },
            )
        ]

        per_instance, per_floor = _memory(ws, settings, floor, n)
        results.append(
            Result(
                name="memory per loaded instance (tracemalloc; baseline: the floor's per instance)",
                value=round(per_instance / 1024, 1),
                baseline=round(per_floor / 1024, 1),
                ratio=ratio(per_instance, per_floor),
                target="value < 40 KB",
                unit="KB",
                meets=per_instance < 40 * 1024,
                notes=f"{n} instances loaded",
                group=GROUP,
            )
        )

        edits = 3 if quick else 9
        times = _reconcile(ws, settings, n, edits)
        value = median(times)
        r = ratio(value, load_time)
        results.append(
            Result(
                name=f"reconcile changing 1 of {n} instances (vs the full load)",
                value=round(value * 1000, 2),
                baseline=round(load_time * 1000, 1),
                ratio=r,
                target="ratio < 0.01",
                unit="ms",
                meets=r is not None and r < 0.01,
                notes=f"median of {edits} reconciles (unload + load of one instance); settings "
                "parsing not included",
                group=GROUP,
                details={"reconcile_s": times},
            )
        )
        return results
    finally:
        ws.cleanup()
