"""An edit is validated as a whole before anything unloads; what is invalid is held.

A running instance whose new entry its plugin's schema refuses, or whose pluginId is unknown,
keeps running as it was (status shows it held, with the problem). A file without a `plugins`
key changes nothing. An invalid `agent` block keeps the last good one (never "all tools").
Every problem of an edit is reported at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from grambot import CONNECTOR_MESSAGE
from grambot.config.settings import load_settings
from grambot.engine import Engine
from grambot.errors import SettingsError
from tests.helpers import FIXTURE_PLUGINS, Workspace, entry
from tests.runproc import running, workspace_with, write_json_atomic


def _held(engine: Engine, instance_id: str) -> str:
    instance = engine.instance(instance_id)
    assert instance is not None
    return "\n".join(str(p) for p in instance.held)


async def test_settings_the_schema_refuses_keep_the_running_instance(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("p", label="x")]))
    await engine.apply(workspace.write([entry("p", label=12345)]))
    assert str(engine.state_of("p")) == "loaded"
    assert workspace.calls("p") == ["create", "load"]  # never unloaded
    held = _held(engine, "p")
    assert "plugins[0].settings.label" in held and "12345" in held, held
    # the next valid edit applies and clears the hold
    await engine.apply(workspace.write([entry("p", label="y")]))
    assert workspace.calls("p") == ["create", "load", "unload", "create", "load"]
    assert _held(engine, "p") == ""


async def test_a_misspelt_plugin_id_keeps_the_running_instance(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("p")]))
    await engine.apply(workspace.write([entry("p", "probee")]))
    assert str(engine.state_of("p")) == "loaded"
    assert workspace.calls("p") == ["create", "load"]
    assert "no plugin with id 'probee'" in _held(engine, "p")


async def test_a_new_entry_with_bad_settings_fails_without_touching_the_others(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("p")]))
    await engine.apply(workspace.write([entry("p"), entry("q", label=[1])]))
    instance = engine.instance("q")
    assert instance is not None and str(instance.state) == "failed"
    assert instance.failure is not None and instance.failure.kind == "invalid-settings"
    assert workspace.calls("q") == []  # create never called
    assert workspace.calls("p") == ["create", "load"]


def test_a_file_without_a_plugins_key_is_refused_naming_the_key(tmp_path: Path) -> None:
    scout = tmp_path / ".scout"
    scout.mkdir()
    (scout / "settings.json").write_text(json.dumps({"plugin": [entry("p")]}))
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path)
    assert "plugins" in str(caught.value) and "'plugin'" in str(caught.value)


def test_a_misspelt_plugins_key_while_running_unloads_nothing(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("m1", "marker")])
    with running(ws) as engine:
        write_json_atomic(
            engine.settings_file, {"pluginDirs": [str(FIXTURE_PLUGINS)], "plugin": []}
        )
        engine.wait_for_log("ignoring this edit")
        assert engine.states() == {"m1": "loaded"}
        assert not (ws / ".scout" / "plugins" / "m1" / "unloaded").exists()


async def _say(engine: Engine, text: str) -> str:
    connector = engine.registries.connectors.get("chat")
    assert connector is not None
    before = len(connector.sent)
    engine.queue.emit("fakechat", "chat", CONNECTOR_MESSAGE, {"chatId": "c", "text": text})
    for _ in range(500):
        if len(connector.sent) > before:
            return str(connector.sent[before][1])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no reply to {text!r}")


async def test_an_invalid_agent_block_keeps_the_last_good_one_never_all_tools(
    engine: Engine, workspace: Workspace
) -> None:
    plugins = [
        entry("chat", "fakechat"),
        entry("brain", "rogue", provider=True),
        entry("t", "rogue", tool_name="secret_tool"),
    ]
    await engine.apply(workspace.write(plugins, agent={"inference": "brain", "tools": []}))
    assert await _say(engine, "!secret_tool run") == "tool said: unknown tool 'secret_tool'"
    # one invalid key in the block: the edit is refused as a whole (naming the key), and the
    # engine keeps the last good block, never the defaults ("all tools")
    bad = {"inference": "brain", "tools": [], "maxToolSteps": "lots"}
    with pytest.raises(SettingsError) as caught:
        workspace.write(plugins, agent=bad)
    assert "agent.maxToolSteps" in str(caught.value) and "'lots'" in str(caught.value)
    assert engine.agent.tools == ()
    assert await _say(engine, "!secret_tool run") == "tool said: unknown tool 'secret_tool'"
    assert not (workspace.data_dir("t") / "sent.log").exists()


async def test_every_problem_of_an_edit_is_reported_at_once(
    engine: Engine, workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    await engine.apply(workspace.write([entry("p"), entry("q")]))
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        await engine.apply(
            workspace.write(
                [
                    entry("p", label=7),
                    entry("q", "nope"),
                    {"instanceId": "a/b", "pluginId": "probe"},
                ]
            )
        )
    messages = [r.getMessage() for r in caplog.records]
    report = [m for m in messages if "plugins[0].settings.label" in m]
    assert len(report) == 1, caplog.text  # one report naming every problem
    for problem in ("plugins[0].settings.label", "no plugin with id 'nope'", "plugins[2]"):
        assert problem in report[0], report[0]
    assert workspace.calls("p") == ["create", "load"] and workspace.calls("q") == [
        "create",
        "load",
    ]
