"""Leak-free unload: a 3-module plugin loaded and unloaded a thousand times in one process.

Afterwards no module of any unloaded instance is in sys.modules, no logger of theirs is in the
logging manager, no thread runs their code, and the classes of the first instance are collected.
(Memory growth over cycles is the benchmark's business, not asserted here.)
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

from grambot.config.settings import EngineSettings, parse_settings
from grambot.containment.loader import NAMESPACE_ROOT, PLUGIN_LOGGER_ROOT
from grambot.containment.tracking import threads_running_code_of
from grambot.core.instance import InstanceState
from grambot.engine import Engine
from tests.helpers import Workspace, entry
from tests.reliability.evidence import Evidence, slow_mode

# Sized for CI by default; --slow runs far more and may take minutes.
SIZED = pytest.mark.timeout(900 if slow_mode() else 60)

FAULTY_PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "faulty"
CYCLES = 5000 if slow_mode() else 1000
FAIL_EVERY = 10  # every tenth cycle the load fails after registering and starting a task


def _settings(workspace: Workspace, plugins: list[dict[str, Any]]) -> EngineSettings:
    data = {"pluginDirs": [str(FAULTY_PLUGINS)], "plugins": plugins}
    return parse_settings(json.dumps(data), path=workspace.settings_file, workspace=workspace.root)


def _instance_modules() -> list[str]:
    return [name for name in sys.modules if name.startswith(NAMESPACE_ROOT + ".")]


def _instance_loggers() -> list[str]:
    return [
        name
        for name in logging.Logger.manager.loggerDict
        if name.startswith(NAMESPACE_ROOT + ".") or name.startswith(PLUGIN_LOGGER_ROOT + ".")
    ]


@SIZED
async def test_a_thousand_load_unload_cycles_leave_nothing_behind(
    engine: Engine, workspace: Workspace, evidence: Evidence
) -> None:
    on = _settings(workspace, [entry("leak", "threemod", label="a")])
    failing = _settings(workspace, [entry("leak", "threemod", label="a", fail_load=True)])
    off = _settings(workspace, [])
    engine.rescan(on)
    manager = engine.manager
    threads_before = threading.active_count()

    await manager.sync_with_settings(on)
    tool = engine.registries.tools.get("tool-leak")
    assert tool is not None and manager.state_of("leak") is InstanceState.LOADED
    first_modules = sorted(_instance_modules())
    assert len(first_modules) == 4  # the namespace package and its three modules
    first_loggers = _instance_loggers()
    assert len(first_loggers) >= 3  # one per module (and the instance's own api.logger)
    plugin_tool = getattr(tool, "wrapped", tool)  # the engine wraps tools in a deadline
    tool_class = weakref.ref(type(plugin_tool))
    entry_module = weakref.ref(sys.modules[type(plugin_tool).__module__])
    models = next(m for m in first_modules if m.endswith(".models"))
    node_class = weakref.ref(sys.modules[models].Node)
    del tool, plugin_tool

    started = time.perf_counter()
    await manager.sync_with_settings(off)
    failed_loads = 0
    for cycle in range(1, CYCLES):
        fails = cycle % FAIL_EVERY == 0
        await manager.sync_with_settings(failing if fails else on)
        expected = InstanceState.FAILED if fails else InstanceState.LOADED
        assert manager.state_of("leak") is expected, cycle
        failed_loads += fails
        sample = cycle % 100 == 1  # checked along the way too, not just at the end
        if sample:
            loaded_tool = engine.registries.tools.get("tool-leak")
            assert loaded_tool is not None
            cycle_class = weakref.ref(type(getattr(loaded_tool, "wrapped", loaded_tool)))
            del loaded_tool
        await manager.sync_with_settings(off)
        if sample:
            assert _instance_modules() == [] and _instance_loggers() == [], cycle
            gc.collect()  # collectable as soon as the reconcile returns, not "eventually"
            assert cycle_class() is None, cycle
    seconds = time.perf_counter() - started

    assert manager.state_of("leak") is None
    assert _instance_modules() == []
    assert _instance_loggers() == []
    assert threads_running_code_of(NAMESPACE_ROOT) == []
    assert len(engine.registries.tools) == 0
    # Stage workers are reused (a few may start when a job ends just as the next is submitted):
    # their number must not grow with the cycles.
    assert threading.active_count() <= threads_before + 8, threading.enumerate()
    gc.collect()
    assert entry_module() is None
    assert tool_class() is None
    assert node_class() is None

    evidence.add(
        "leak-free unload",
        f"{CYCLES} load/unload cycles of a 3-module plugin driven through the manager "
        f"({failed_loads} of them failing at load after registering and starting a task)",
        "no module of an unloaded instance in sys.modules, no logger of theirs in the logging "
        "manager, no thread running their code, registries empty; the first instance's module "
        "and classes collected",
        cycles=CYCLES,
        seconds=round(seconds, 2),
        ms_per_cycle=round(1000 * seconds / CYCLES, 2),
    )
