"""Unload leaves nothing of the instance running: its timers are cancelled, and what it tries
to register afterwards is refused (and logged), so nothing of it is reachable or callable."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from grambot.engine import Engine
from tests.helpers import Workspace, entry, eventually_async


async def test_a_timer_of_the_instance_stops_at_unload_and_the_instance_is_freed(
    engine: Engine, workspace: Workspace
) -> None:
    ticks: list[Any] = []
    engine.event_engine.register("rogue.tick", ticks.append)
    engine.secrets.set("h", "token", "tick-secret")
    await engine.apply(workspace.write([entry("h", "rogue", mode="timer", tool_name="tt")]))
    await eventually_async(lambda: len(ticks) >= 3, timeout=2)
    assert len(ticks) >= 3
    tool = engine.registries.tools.get("tt")
    assert tool is not None
    plugin_object = weakref.ref(tool.wrapped.owner)
    del tool
    await engine.apply(workspace.write([entry("h", "rogue", enabled=False)]))
    seen = len(ticks)
    await asyncio.sleep(0.2)  # ten timer periods
    assert len(ticks) == seen, "the instance's timer kept running after unload"
    ticks.clear()
    gc.collect()
    assert plugin_object() is None, gc.get_referrers(plugin_object())


async def test_a_registration_after_unload_is_refused(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(workspace.write([entry("h", "rogue", mode="late-register")]))
    await engine.apply(workspace.write([]))  # unloaded before its thread registers
    await eventually_async(lambda: "late-register" in " ".join(workspace.calls("h")), timeout=2)
    assert "late_tool" not in engine.registries.tools
    assert workspace.calls("h")[-1] == "late-register-refused:RegistrationError"
