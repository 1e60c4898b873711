"""Edge cases of an instance's lifecycle, each once a defect: a plugin's loop callbacks raising
SystemExit or KeyboardInterrupt; conflicts retried at most once per edit; the engine's own
timers never taken for a plugin's; a misspelt instanceId key; held entries, ignored edits and
invalid new entries in status; what a plugin thread schedules, emits or unregisters after
unload; cancellation leaving nothing behind; tool parameters that are not a dict; a plugin
cancelling itself; the agent's model disabled or removed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from grambot import CONNECTOR_MESSAGE
from grambot.app.status import StatusWriter
from grambot.engine import Engine
from tests.helpers import FIXTURE_PLUGINS, Workspace, entry, eventually, eventually_async
from tests.runproc import cli, running, workspace_with


async def _settle(seconds: float = 0.2) -> None:
    await asyncio.sleep(seconds)


# -- a plugin's loop callbacks raising SystemExit or KeyboardInterrupt -----------------------------


@pytest.mark.parametrize("mode", ["timer-exit", "soon-exit"])
async def test_a_loop_callback_raising_system_exit_is_the_plugins_failure(
    engine: Engine, workspace: Workspace, mode: str
) -> None:
    await engine.apply(workspace.write([entry("r", "rogue", mode=mode), entry("p")]))
    await _settle()
    instance = engine.instance("r")
    assert instance is not None and str(instance.state) == "loaded"
    health = instance.to_status()["health"]
    assert health["healthy"] is False and "SystemExit" in health["lastError"]["message"]
    await engine.apply(workspace.write([entry("p"), entry("q")]))  # the engine goes on
    assert str(engine.state_of("q")) == "loaded"


def test_keyboard_interrupt_in_a_plugin_timer_never_ends_grambot_run(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("r", "rogue", mode="timer-exit"), entry("m", "marker")])
    with running(ws) as engine:
        eventually(lambda: "SystemExit" in engine.output, what="the failure logged")
        assert engine.proc.poll() is None
        engine.write([entry("m", "marker"), entry("m2", "marker")])
        engine.wait_states({"m": "loaded", "m2": "loaded"})


# -- conflicts retried at most once per edit -------------------------------------------------------


async def test_a_conflict_for_a_key_nobody_holds_is_not_retried_in_a_loop(
    retrying: Engine, workspace: Workspace
) -> None:
    hour = {"initialDelay": 3600, "maxDelay": 3600}
    await retrying.apply(
        workspace.write([entry("a", "rogue", mode="phantom-conflict")], retry=hour)
    )
    assert workspace.calls("a").count("load") == 1
    assert str(retrying.state_of("a")) == "retrying"


async def test_instances_conflicting_with_each_other_are_retried_at_most_once_per_edit(
    retrying: Engine, workspace: Workspace
) -> None:
    hour = {"initialDelay": 3600, "maxDelay": 3600}
    pair = [entry("a", "rogue", mode="conflict-a"), entry("b", "rogue", mode="conflict-b")]
    await retrying.apply(workspace.write(pair, retry=hour))
    loads = workspace.calls("a").count("load") + workspace.calls("b").count("load")
    assert loads <= 4, (workspace.calls("a"), workspace.calls("b"))


# -- the engine's own timers are not a plugin's ----------------------------------------------------


async def test_a_plugin_reporting_health_never_freezes_status_json(
    engine: Engine, workspace: Workspace
) -> None:
    writer = StatusWriter(workspace.scout, engine, min_interval=0.05, heartbeat=3600)
    try:
        await engine.apply(workspace.write([entry("a", "rogue", mode="health-error")]))
        await engine.apply(workspace.write([entry("b")]))
        await _settle(0.3)
        on_disk = json.loads((workspace.scout / "status.json").read_text())
        assert {i["instanceId"]: i["state"] for i in on_disk["instances"]} == {"b": "loaded"}
    finally:
        writer.close()


# -- a misspelt instanceId key ---------------------------------------------------------------------


async def test_a_misspelt_instance_id_key_stops_nothing(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("a")]))
    broken = {"instanceID": "a", "pluginId": "probe", "settings": {}}
    await engine.apply(workspace.write([broken]))
    instance = engine.instance("a")
    assert instance is not None and str(instance.state) == "loaded"
    assert workspace.calls("a") == ["create", "load"]
    assert any("instanceId" in p for p in instance.held), instance.held


# -- held entries, ignored edits and invalid new entries in status ---------------------------------


async def test_a_reload_keeps_an_entry_held(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(workspace.write([entry("a", label="x")]))
    await engine.apply(workspace.write([entry("a", label=5)]))
    assert engine.instance("a").held  # type: ignore[union-attr]
    await engine.reload(["a"])
    assert engine.instance("a").held  # type: ignore[union-attr]  # the file still says label: 5


async def test_an_invalid_new_entry_shows_in_status(engine: Engine, workspace: Workspace) -> None:
    writer = StatusWriter(workspace.scout, engine, min_interval=0.05, heartbeat=3600)
    try:
        await engine.apply(
            workspace.write(
                [entry("a"), {"instanceId": "b", "pluginId": "probe", "enabled": "yes"}]
            )
        )
        writer.write_now()
        on_disk = json.loads((workspace.scout / "status.json").read_text())
        assert any("plugins[1].enabled" in p for p in on_disk["settingsProblems"]), on_disk
    finally:
        writer.close()


def test_restoring_the_file_after_an_ignored_edit_clears_it(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("m", "marker")])
    with running(ws) as engine:
        good = engine.settings_file.read_text()
        engine.settings_file.write_text("{ broken")
        eventually(lambda: (engine.status() or {}).get("ignoredEdit"), what="ignoredEdit")
        engine.settings_file.write_text(good)
        eventually(lambda: (engine.status() or {}).get("ignoredEdit") is None, what="cleared")


# -- a plugin thread's work after unload -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["thread-work", "thread-emit"])
async def test_nothing_a_plugin_thread_scheduled_runs_after_unload(
    engine: Engine, workspace: Workspace, mode: str
) -> None:
    ticks: list[Any] = []
    engine.event_engine.register("rogue.tick", ticks.append)
    await engine.apply(workspace.write([entry("r", "rogue", mode=mode)]))
    await eventually_async(lambda: len(ticks) >= 4, timeout=2)
    assert len(ticks) >= 4
    await engine.apply(workspace.write([]))
    await asyncio.sleep(0.1)
    seen = len(ticks)
    await asyncio.sleep(0.3)
    assert len(ticks) == seen, f"{len(ticks) - seen} ticks after unload"


async def test_a_stale_load_cannot_unregister_the_new_loads_tool(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(
        workspace.write([entry("r", "rogue", mode="stale-unregister", tool_name="t")])
    )
    # reloaded at once: the old load's thread will try to unregister `t` from the new one
    await engine.apply(workspace.write([entry("r", "rogue", tool_name="t", label="new")]))
    await asyncio.sleep(0.5)
    assert "t" in engine.registries.tools
    assert engine.instance("r").registrations()["tools"] == ["t"]  # type: ignore[union-attr]
    assert "stale-unregister-refused:RegistrationError" in workspace.calls("r")


# -- cancellation leaves nothing behind ------------------------------------------------------------


def _namespaces() -> list[str]:
    return [n for n in sys.modules if n.startswith("grambot.instances.") and n.count(".") == 2]


async def test_a_cancelled_load_leaves_nothing_and_the_next_apply_loads_it(
    engine: Engine, workspace: Workspace
) -> None:
    settings = workspace.write([entry("h", hang_in="load", tool_name="ht")])
    applying = asyncio.ensure_future(engine.apply(settings))
    await asyncio.sleep(0.3)
    applying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await applying
    assert "ht" not in engine.registries.tools
    assert str(engine.state_of("h")) != "loading"
    await engine.apply(workspace.write([entry("h", tool_name="ht")]))
    assert str(engine.state_of("h")) == "loaded"


async def test_a_cancelled_unload_still_removes_what_the_instance_left(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("h", hang_in="unload", tool_name="ht")]))
    applying = asyncio.ensure_future(engine.apply(workspace.write([])))
    await asyncio.sleep(0.3)
    applying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await applying
    assert "ht" not in engine.registries.tools
    assert _namespaces() == []


async def test_a_cancelled_validation_leaks_no_namespace(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("a", label="1"), entry("b", label="1")]))
    before = sorted(_namespaces())
    # b's new entry validates quickly, a's hangs in its settings validator
    folder = workspace.root / "slow"
    folder.mkdir()
    edit = [entry("a", "faulty", validator="hang"), entry("b", label="2")]
    data = {"pluginDirs": [str(FIXTURE_PLUGINS), str(FIXTURE_PLUGINS.parent / "faulty")]}
    workspace.settings_file.write_text(json.dumps({**data, "plugins": edit}))
    from grambot.config.settings import load_settings

    applying = asyncio.ensure_future(engine.apply(load_settings(workspace.root)))
    await asyncio.sleep(0.5)
    applying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await applying
    assert sorted(_namespaces()) == before


# -- tool parameters that are not a dict -----------------------------------------------------------


async def test_a_tool_whose_parameters_are_not_a_dict_is_left_out(
    engine: Engine, workspace: Workspace
) -> None:
    plugins = [
        entry("chat", "fakechat"),
        entry("brain", "rogue", provider=True),
        entry("t", "rogue", tool_name="bad_tool", parameters_none=True),
    ]
    await engine.apply(workspace.write(plugins, agent={"inference": "brain"}))
    tool = engine.registries.tools.get("bad_tool")
    assert tool is not None
    with pytest.raises(TypeError):
        tool.parameters()
    connector = engine.registries.connectors.get("chat")
    assert connector is not None
    engine.queue.emit("fakechat", "chat", CONNECTOR_MESSAGE, {"chatId": "c", "text": "hi"})
    await eventually_async(lambda: connector.sent, timeout=3)
    assert connector.sent and connector.sent[0][1] == "ok: hi"


# -- a plugin cancelling itself --------------------------------------------------------------------


async def test_a_plugin_cancelling_itself_is_not_blamed_on_an_unload(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("r", "rogue", mode="self-cancel")]))
    instance = engine.instance("r")
    assert instance is not None and instance.failure is not None
    assert "unloaded meanwhile" not in instance.failure.message, instance.failure.message
    assert "cancel" in instance.failure.message.lower()


# -- the agent's model disabled or removed ---------------------------------------------------------


def test_disabling_or_removing_the_agents_model_is_explained(tmp_path: Path) -> None:
    ws = workspace_with(
        tmp_path, [entry("p", "echo"), entry("q", "echo")], agent={"inference": "p"}
    )
    disabled = cli(ws, "disable", "p")
    assert disabled.returncode == 0 and "agent.inference names 'p'" in disabled.stderr
    validated = cli(ws, "validate")
    assert validated.returncode == 0 and "agent.inference names 'p'" in validated.stderr
    removed = cli(ws, "remove", "p")
    assert removed.returncode == 1
    assert "agent.inference names instance 'p'" in removed.stderr
    assert "grambot agent --set inference=" in removed.stderr
