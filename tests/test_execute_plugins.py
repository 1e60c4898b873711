"""Execute-style (Summit) plugins: run_plugin, settings instances as tools, the directory scan
and the rest-api-sample (grambot.contract.execute / .custom)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from grambot.containment.loader import NAMESPACE_ROOT
from grambot.core.instance import InstanceState
from grambot.engine import Engine
from grambot.errors import (
    AccessDenied,
    DefinitionError,
    PluginImportDenied,
    PluginNotFound,
    SettingsInvalid,
    StageTimeout,
)
from grambot.registries.tools import ToolContext
from tests.fakes.rest_api import fake_rest_api
from tests.helpers import Workspace, entry, failure_of, make_plugin

MANIFEST_PLUGINS = Path(__file__).parent / "fixtures" / "manifest"
SAMPLES = Path(__file__).resolve().parent.parent / "plugins" / "samples"


def write(workspace: Workspace, plugins: list[dict[str, Any]], **keys: Any) -> Any:
    return workspace.write(plugins, pluginDirs=[str(MANIFEST_PLUGINS), str(SAMPLES)], **keys)


@pytest.fixture
def summit(engine: Engine, workspace: Workspace) -> Engine:
    engine.settings = write(workspace, [])
    engine.rescan(engine.settings)
    return engine


def plugin_dir(tmp_path: Path, name: str, code: str) -> list[str]:
    """A plugin `name` whose entry x.py holds `code`, in tmp_path/plugs: the pluginDirs for it."""
    make_plugin(tmp_path / "plugs" / name, {"name": name, "entry": "x.py"}, code)
    return [str(tmp_path / "plugs")]


def namespaces_of(instance_id: str) -> list[str]:
    prefix = f"{NAMESPACE_ROOT}.{instance_id}__"
    return [name for name in sys.modules if name.startswith(prefix)]


# -- run_plugin ----------------------------------------------------------------------------------


async def test_run_plugin_runs_a_transient_instance_of_its_own_id_space(
    summit: Engine, workspace: Workspace
) -> None:
    result = await summit.run_plugin("summit-exec", {"action": "echo"}, {"tenant": "alpha"})
    assert result["inputs"] == {"action": "echo"}
    assert result["config"] == {"tenant": "alpha"}
    assert result["instance"] == "run-plugin:summit-exec" and result["manifest"] == "summit-exec"
    transient_dir = workspace.scout / "run-plugin" / "summit-exec"
    assert result["data_dir"] == str(transient_dir) and transient_dir.is_dir()
    assert not workspace.data_dir("summit-exec").exists()  # never an instance's data dir
    assert (await summit.run_plugin("summit-exec", {"action": "echo"}))["config"] == {}
    assert namespaces_of("run-plugin:summit-exec") == []  # imported fresh, forgotten after


async def test_a_hanging_execute_times_out_at_the_manifest_value(summit: Engine) -> None:
    started = time.monotonic()
    with pytest.raises(StageTimeout) as info:
        await summit.run_plugin("summit-exec", {"action": "hang"})
    assert "'run-plugin:summit-exec': execute timed out after 300 ms" in str(info.value)
    assert info.value.ms == 300 and info.value.stage == "execute"
    assert 0.25 < time.monotonic() - started < 2.0
    assert namespaces_of("run-plugin:summit-exec") == []


async def test_run_plugin_timeout_overrides(summit: Engine, workspace: Workspace) -> None:
    summit.settings = write(workspace, [], timeouts={"overrideMs": 150})
    with pytest.raises(StageTimeout, match="after 150 ms"):
        await summit.run_plugin("summit-exec", {"action": "hang"})
    summit.register_custom_plugins(MANIFEST_PLUGINS, timeout_ms=60)
    with pytest.raises(StageTimeout, match="after 60 ms"):
        await summit.run_plugin("summit-exec", {"action": "hang"})


async def test_tasks_started_by_execute_are_cancelled_after_the_run(summit: Engine) -> None:
    assert await summit.run_plugin("summit-exec", {"action": "task"}) == "started"
    # The module was forgotten; its task must not outlive the run.
    import asyncio

    leftover = [t for t in asyncio.all_tasks() if "sleep" in repr(t.get_coro()) and not t.done()]
    assert leftover == []


async def test_run_plugin_context_env_vault_cache_and_http(
    summit: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUMMIT_ALLOWED", "visible")
    monkeypatch.setenv("SUMMIT_HIDDEN", "hidden")
    env = await summit.run_plugin("summit-exec", {"action": "env", "arg": "SUMMIT_ALLOWED"})
    assert env == {"value": "visible", "visible": ["SUMMIT_ALLOWED"]}
    with pytest.raises(AccessDenied, match=r"'SUMMIT_HIDDEN'.*allowedEnv \(SUMMIT_ALLOWED\)"):
        await summit.run_plugin("summit-exec", {"action": "env", "arg": "SUMMIT_HIDDEN"})

    summit.secrets.set("run-plugin:summit-exec", "token", "own-1234")
    summit.secrets.set("summit-exec", "token", "instance-1234")  # an instance's, same id
    summit.secrets.set("shared/team", "key", "team-1234")
    summit.secrets.set("someone", "token", "theirs-1234")
    vault = "vault"
    own_path = "run-plugin:summit-exec/token"
    own = await summit.run_plugin("summit-exec", {"action": vault, "arg": own_path})
    assert own == "own-1234"
    with pytest.raises(AccessDenied, match="'summit-exec/token'"):
        await summit.run_plugin("summit-exec", {"action": vault, "arg": "summit-exec/token"})
    assert (
        await summit.run_plugin("summit-exec", {"action": vault, "arg": "shared/team/key"})
        == "team-1234"
    )
    with pytest.raises(AccessDenied, match="'someone/token'"):
        await summit.run_plugin("summit-exec", {"action": vault, "arg": "someone/token"})

    first = await summit.run_plugin("summit-exec", {"action": "cache"})
    second = await summit.run_plugin("summit-exec", {"action": "cache"})
    assert first == {"namespace": "run-plugin:summit-exec", "count": 1}
    assert second["count"] == 2  # transient instances of one plugin share its namespace
    assert len(summit.cache) == 0  # the instances' cache is never touched

    with fake_rest_api() as server:
        fetched = await summit.run_plugin(
            "summit-exec", {"action": "fetch", "arg": f"{server.url}/posts/2"}
        )
    assert fetched == {"status": 200, "body": {"id": 2, "title": "second"}}


async def test_run_plugin_errors(summit: Engine) -> None:
    with pytest.raises(PluginNotFound, match="no plugin with id 'nope'"):
        await summit.run_plugin("nope", {})
    with pytest.raises(DefinitionError, match="not execute-style"):
        await summit.run_plugin("summit-probe", {})
    with pytest.raises(PluginImportDenied, match=r"plugin 'summit-denied' .*may not import 'csv'"):
        await summit.run_plugin("summit-denied", {})
    with pytest.raises(ValueError, match="unknown action 'x'"):
        await summit.run_plugin("summit-exec", {"action": "x"})
    with pytest.raises(DefinitionError, match="config: must be a JSON object"):
        await summit.run_plugin("summit-exec", {"action": "echo"}, [1, 2])


async def test_run_plugin_builds_the_catalog_when_needed(workspace: Workspace) -> None:
    write(workspace, [])
    engine = Engine(workspace.root, builtin_dir=None, entry_points=False)
    result = await engine.run_plugin("summit-exec", {"action": "echo"})
    assert result["instance"] == "run-plugin:summit-exec"


# -- as a settings.json instance -------------------------------------------------------------------


async def test_an_enabled_instance_is_a_tool_named_after_it(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(
        write(
            workspace,
            [
                entry("exec_alpha", "summit-exec", tenant="alpha"),
                entry("exec_beta", "summit-exec", enabled=False),
            ],
        )
    )
    assert engine.state_of("exec_alpha") is InstanceState.LOADED
    tool = engine.registries.tools.get("exec_alpha")
    assert tool is not None and engine.registries.tools.owner_of("exec_alpha") == "exec_alpha"
    assert "exec_beta" not in engine.registries.tools
    assert tool.description == "Summit test plugin."
    assert tool.parameters()["required"] == ["action"]
    result = await tool.execute({"action": "echo"}, ToolContext())
    assert result.data["config"] == {"tenant": "alpha"}
    assert result.data["instance"] == "exec_alpha"
    assert json.loads(result.text) == result.data
    cached = await tool.execute({"action": "cache"}, ToolContext())
    assert cached.data == {"namespace": "exec_alpha", "count": 1}
    with pytest.raises(StageTimeout, match="tool 'exec_alpha' timed out after 300 ms"):
        await tool.execute({"action": "hang"}, ToolContext())
    await engine.apply(write(workspace, []))
    assert "exec_alpha" not in engine.registries.tools


async def test_an_execute_plugin_with_an_unusable_execute_fails_clearly(
    engine: Engine, workspace: Workspace, tmp_path: Path
) -> None:
    dirs = plugin_dir(
        tmp_path, "sync-exec", "def execute(inputs, context, config):\n    return 1\n"
    )
    await engine.apply(workspace.write([entry("s", "sync-exec")], pluginDirs=dirs))
    failure = failure_of(engine, "s")
    assert failure.kind == "invalid-plugin"
    assert "must be `async def execute(inputs, context, config)`" in failure.message


async def test_settings_schema_validates_config_both_ways(
    engine: Engine, workspace: Workspace, tmp_path: Path
) -> None:
    dirs = plugin_dir(
        tmp_path,
        "typed",
        "from pydantic import BaseModel\n"
        "class Settings(BaseModel):\n    limit: int = 3\n"
        "settings_schema = Settings\n"
        "async def execute(inputs, context, config):\n    return config.limit\n",
    )
    engine.settings = workspace.write([], pluginDirs=dirs)
    engine.rescan(engine.settings)
    assert await engine.run_plugin("typed", {}) == 3
    assert await engine.run_plugin("typed", {}, {"limit": 7}) == 7
    with pytest.raises(SettingsInvalid, match=r"config\.limit"):
        await engine.run_plugin("typed", {}, {"limit": "many"})
    await engine.apply(workspace.write([entry("t", "typed", limit="x")], pluginDirs=dirs))
    failure = failure_of(engine, "t")
    assert failure.kind == "invalid-settings"
    assert "plugins[0].settings.limit" in failure.message


# -- register_custom_plugins ---------------------------------------------------------------------


async def test_register_custom_plugins_scans_anywhere_beneath(
    engine: Engine, workspace: Workspace, tmp_path: Path
) -> None:
    root = tmp_path / "custom"
    make_plugin(root / "a", {"name": "deep-a", "entry": "index.py"})
    make_plugin(root / "x" / "y" / "b", {"name": "deep-b", "entry": "index.py"})
    engine.settings = write(workspace, [])
    found = engine.register_custom_plugins(root)
    assert sorted(d.id for d in found) == ["deep-a", "deep-b"]
    assert {d.source for d in found} == {"custom"}
    assert await engine.run_plugin("deep-b", {"n": 1}) == {"n": 1}
    # Registrations survive a catalog rescan (e.g. a pluginDirs edit).
    engine.rescan(engine.settings)
    assert "deep-a" in engine.catalog and "summit-exec" in engine.catalog


async def test_register_custom_plugins_default_is_plugin_dirs(
    engine: Engine, workspace: Workspace
) -> None:
    engine.settings = write(workspace, [])
    found = engine.register_custom_plugins(timeout_ms=90)
    assert "summit-exec" in {d.id for d in found} and "rest-api-sample" in {d.id for d in found}
    assert engine.timeout_overrides["summit-exec"] == 90
    with pytest.raises(StageTimeout, match="after 90 ms"):
        await engine.run_plugin("summit-exec", {"action": "hang"})


@pytest.mark.parametrize("bad", [0, -5, True, 1.5, "100"])
def test_register_custom_plugins_checks_the_timeout(engine: Engine, bad: Any) -> None:
    with pytest.raises(ValueError, match="timeout_ms must be an integer of at least 10 ms"):
        engine.register_custom_plugins(timeout_ms=bad)


async def test_a_bad_manifest_is_reported_with_its_file_and_field(
    engine: Engine, workspace: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "custom"
    bad = make_plugin(
        root / "bad",
        {"name": "bad", "entry": "index.py", "timeoutMs": -5, "allowedEnv": "HOME"},
    )
    make_plugin(root / "good", {"name": "good", "entry": "index.py"})
    engine.settings = write(workspace, [])
    found = engine.register_custom_plugins(root)
    assert [d.id for d in found] == ["good"]  # one broken manifest hides nothing else
    problems = {p.json_path: p for p in engine.catalog.problems if p.file == bad}
    assert set(problems) == {"timeoutMs", "allowedEnv"}
    assert problems["timeoutMs"].value == "-5"
    assert f"{bad}: timeoutMs: " in caplog.text and f"{bad}: allowedEnv: " in caplog.text


async def test_a_clashing_id_keeps_the_first(
    engine: Engine, workspace: Workspace, tmp_path: Path
) -> None:
    clash = make_plugin(tmp_path / "c" / "exec", {"name": "summit-exec", "entry": "index.py"})
    engine.settings = write(workspace, [])
    assert engine.register_custom_plugins(tmp_path / "c") == []
    descriptor = engine.catalog.get("summit-exec")
    assert descriptor is not None and descriptor.folder == (MANIFEST_PLUGINS / "exec").resolve()
    assert any(
        p.file == clash.resolve() and "defined twice" in p.message for p in engine.catalog.problems
    )


# -- the sample, in process ---------------------------------------------------------------------


async def test_rest_api_sample_in_process(summit: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_rest_api() as server:
        monkeypatch.setenv("SAMPLE_REST_API_URL", server.url)
        monkeypatch.delenv("SAMPLE_REST_API_TOKEN", raising=False)
        ok = await summit.run_plugin("rest-api-sample", {"resource": "posts", "id": 1})
        assert ok == {
            "status": 200,
            "url": f"{server.url}/posts/1",
            "data": {"id": 1, "title": "first"},
        }
        namespace = "rest-api-sample:run-plugin:rest-api-sample"  # the run-plugin cache's
        assert summit.run_plugin_cache.get(namespace, "last_status") == 200
        missing = await summit.run_plugin("rest-api-sample", {"resource": "posts", "id": 9})
        assert missing["status"] == 404
        assert summit.run_plugin_cache.get(namespace, "last_status") == 404
        monkeypatch.setenv("SAMPLE_REST_API_TOKEN", "tok-1234")
        await summit.run_plugin("rest-api-sample", {"resource": "posts"})
    assert [auth for _, auth in server.requests] == [None, None, "Bearer tok-1234"]
    with pytest.raises(ValueError, match=r"inputs\.resource must be a non-empty string"):
        await summit.run_plugin("rest-api-sample", {"id": 1})
