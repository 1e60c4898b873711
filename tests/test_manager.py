"""PluginManager: reconcile, isolation, failures and rollback (Grambot's own cases first)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from grambot.core.instance import InstanceState
from grambot.engine import Engine
from tests.helpers import Workspace, entry, eventually_async


async def test_two_instances_of_one_plugin_each_see_their_own_module_globals(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("a", "counter"), entry("b", "counter")]))
    assert engine.loaded_ids() == ["a", "b"] or set(engine.loaded_ids()) == {
        "a",
        "b",
    }
    # "1 1": the entry module's COUNT and the sibling helper's LOADS are both per instance.
    assert (workspace.data_dir("a") / "count").read_text() == "1 1"
    assert (workspace.data_dir("b") / "count").read_text() == "1 1"


async def test_entry_importing_a_sibling_helper_loads(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(workspace.write([entry("c", "counter")]))
    assert engine.state_of("c") is InstanceState.LOADED


async def test_enable_then_disable_loads_then_unloads(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(workspace.write([entry("p")]))
    assert engine.state_of("p") is InstanceState.LOADED
    await engine.apply(workspace.write([entry("p", enabled=False)]))
    assert engine.state_of("p") is InstanceState.DISABLED
    assert workspace.calls("p") == ["create", "load", "unload"]
    await engine.apply(workspace.write([]))
    assert engine.state_of("p") is None


async def test_changing_one_of_many_reloads_only_that_one(
    engine: Engine, workspace: Workspace
) -> None:
    ids = [f"i{n}" for n in range(10)]
    await engine.apply(workspace.write([entry(i, label="x") for i in ids]))
    changed = [entry(i, label="y" if i == "i3" else "x") for i in ids]
    await engine.apply(workspace.write(changed))
    for i in ids:
        expected = (
            ["create", "load", "unload", "create", "load"] if i == "i3" else ["create", "load"]
        )
        assert workspace.calls(i) == expected, i


async def test_key_order_and_reapplying_never_reload(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(workspace.write([entry("p", label="x", tool_name="t1")]))
    reordered = {
        "settings": {"tool_name": "t1", "label": "x"},
        "enabled": True,
        "pluginId": "probe",
        "instanceId": "p",
    }
    await engine.apply(workspace.write([reordered]))
    await engine.apply(workspace.write([reordered]))
    assert workspace.calls("p") == ["create", "load"]


async def test_unknown_plugin_fails_that_instance_only(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("ghost", "no-such-plugin"), entry("ok")]))
    record = engine.instance("ghost")
    assert record is not None and record.state is InstanceState.FAILED
    assert record.failure is not None and record.failure.kind == "plugin-not-found"
    assert "no-such-plugin" in record.failure.message and not record.failure.recoverable
    assert engine.state_of("ok") is InstanceState.LOADED


async def test_invalid_instance_settings_name_the_path(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("ok"), entry("bad", fail_in="sometimes")]))
    record = engine.instance("bad")
    assert record is not None and record.failure is not None
    assert record.failure.kind == "invalid-settings"
    assert "plugins[1].settings.fail_in" in record.failure.message
    assert "'sometimes'" in record.failure.message
    assert workspace.calls("bad") == []  # create was never called
    assert engine.state_of("ok") is InstanceState.LOADED


@pytest.mark.parametrize("sync_stages", [False, True])
async def test_failed_load_calls_unload_and_rolls_back_registrations(
    engine: Engine, workspace: Workspace, sync_stages: bool
) -> None:
    await engine.apply(
        workspace.write(
            [entry("bad", fail_in="load", tool_name="shared_tool", sync_stages=sync_stages)]
        )
    )
    record = engine.instance("bad")
    assert record is not None and record.state is InstanceState.FAILED
    assert record.failure is not None and record.failure.stage == "load"
    assert "probe asked to fail in load" in record.failure.message
    assert workspace.calls("bad") == ["create", "load", "unload"]
    assert "shared_tool" not in engine.registries.tools
    # The tool name is free again for a healthy instance.
    await engine.apply(
        workspace.write(
            [
                entry("bad", fail_in="load", tool_name="shared_tool", sync_stages=sync_stages),
                entry("good", tool_name="shared_tool"),
            ]
        )
    )
    assert engine.registries.tools.owner_of("shared_tool") == "good"


async def test_failed_create_does_not_call_unload(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(workspace.write([entry("bad", fail_in="create")]))
    record = engine.instance("bad")
    assert record is not None and record.failure is not None
    assert record.failure.stage == "create" and record.failure.recoverable
    assert workspace.calls("bad") == ["create"]


async def test_registration_conflict_names_both_instances(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("first", tool_name="search")]))
    await engine.apply(
        workspace.write([entry("first", tool_name="search"), entry("second", tool_name="search")])
    )
    record = engine.instance("second")
    assert record is not None and record.failure is not None
    assert "'second'" in record.failure.message and "'first'" in record.failure.message
    assert engine.registries.tools.owner_of("search") == "first"
    assert engine.state_of("first") is InstanceState.LOADED
    # The failed instance's rollback did not remove the owner's tool.
    assert "search" in engine.registries.tools


async def test_instance_cannot_unregister_another_instances_registration(
    engine: Engine, workspace: Workspace
) -> None:
    from grambot.contract.registrar import PluginRegistrar
    from grambot.errors import RegistrationError

    await engine.apply(workspace.write([entry("owner", tool_name="mine")]))
    intruder = PluginRegistrar("intruder", engine.registries)
    with pytest.raises(RegistrationError, match="belongs to instance 'owner'"):
        intruder.unregister_tool("mine")
    assert engine.registries.tools.owner_of("mine") == "owner"


@pytest.mark.parametrize(
    ("stage", "sync_stages"),
    [
        ("create", True),
        ("load", False),
        ("load", True),
    ],
)
async def test_hanging_stage_times_out_and_nothing_waits_on_it(
    engine: Engine, workspace: Workspace, stage: str, sync_stages: bool
) -> None:
    settings = workspace.write(
        [entry("hang", hang_in=stage, sync_stages=sync_stages, tool_name="t"), entry("ok")],
        timeouts={"create": 0.3, "load": 0.3, "unload": 0.3},
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    await engine.apply(settings)
    assert loop.time() - started < 2.5
    record = engine.instance("hang")
    assert record is not None and record.failure is not None
    assert record.failure.kind == "timeout"
    assert f"{stage} timed out after 0.3 s" in record.failure.message
    assert "t" not in engine.registries.tools
    assert engine.state_of("ok") is InstanceState.LOADED


async def test_hanging_unload_does_not_block_the_reconcile(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(
        workspace.write([entry("h", hang_in="unload", tool_name="t")], timeouts={"unload": 0.3})
    )
    assert engine.state_of("h") is InstanceState.LOADED
    await engine.apply(workspace.write([], timeouts={"unload": 0.3}))
    assert engine.state_of("h") is None
    assert "t" not in engine.registries.tools


async def test_concurrent_reconciles_never_load_an_instance_twice(
    engine: Engine, workspace: Workspace
) -> None:
    settings = workspace.write([entry(f"c{n}") for n in range(5)])
    engine.rescan(settings)
    await asyncio.gather(*(engine.manager.sync_with_settings(settings) for _ in range(5)))
    for n in range(5):
        assert workspace.calls(f"c{n}") == ["create", "load"]


async def test_events_emitted_by_a_plugin_reach_handlers(
    engine: Engine, workspace: Workspace
) -> None:
    seen: list[tuple[str, str, object]] = []
    engine.event_engine.register(
        "probe.hello", lambda ev: seen.append((ev.instance_id, ev.type, ev.payload))
    )
    await engine.apply(workspace.write([entry("e", emit_on_load="probe.hello", label="hi")]))
    await eventually_async(lambda: seen, timeout=0.5)
    assert seen == [("e", "probe.hello", {"label": "hi"})]


async def test_failure_is_logged_with_the_instance_name(
    engine: Engine, workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="grambot"):
        await engine.apply(workspace.write([entry("loud", fail_in="create")]))
    assert any(
        "instance loud (plugin probe) failed at create" in r.getMessage() for r in caplog.records
    )


async def test_secret_values_are_redacted_from_errors(engine: Engine, workspace: Workspace) -> None:
    engine.secrets.set("leaky", "token", "s3cr3t-value")
    # The probe quotes its label in its error: make the label the secret value.
    await engine.apply(workspace.write([entry("leaky", fail_in="create", label="s3cr3t-value")]))
    record = engine.instance("leaky")
    assert record is not None and record.failure is not None
    assert "probe asked to fail in create ***" in record.failure.message
    assert "s3cr3t-value" not in record.failure.message + record.failure.details


async def test_an_entry_that_becomes_invalid_keeps_its_instance_running(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("keep", label="a"), entry("other")]))
    broken = entry("keep", label="a")
    broken["enabled"] = "yes"  # invalid: not a boolean
    settings = workspace.write([broken])
    assert "keep" in settings.held_instance_ids and settings.problems
    await engine.apply(settings)
    assert engine.state_of("keep") is InstanceState.LOADED
    assert engine.state_of("other") is None  # removed: it is gone from the valid file
    assert workspace.calls("keep") == ["create", "load"]


async def test_connectors_start_after_load_and_stop_before_unload(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("chat", "fakechat")]))
    assert workspace.calls("chat") == ["load", "start"]
    await engine.apply(workspace.write([]))
    assert workspace.calls("chat") == ["load", "start", "stop", "unload"]


async def test_a_connector_that_cannot_start_fails_its_instance(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("chat", "fakechat", fail_start=True), entry("ok")]))
    record = engine.instance("chat")
    assert record is not None and record.failure is not None
    assert record.failure.stage == "connector start"
    assert "ConnectionError: cannot reach the chat service" in record.failure.message
    assert "chat" not in engine.registries.connectors
    assert workspace.calls("chat") == ["load", "start", "unload"]
    assert engine.state_of("ok") is InstanceState.LOADED


async def test_an_async_stage_stays_in_one_task(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(workspace.write([entry("tb", "taskbound")]))
    record = engine.instance("tb")
    assert record is not None and record.state is InstanceState.LOADED, record.failure
