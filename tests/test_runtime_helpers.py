"""The runtime helpers of a plugin's api and its manifest's limits (features that come from
Summit, docs/execute-plugins.md): deadlines from the manifest, env, cache, vault, http, manifest
and allowedModules (grambot.containment.limits / .context / .allowlist)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from grambot.config.settings import EngineSettings
from grambot.containment.guards import GuardedTool
from grambot.contract.context import MemoryCache
from grambot.core.instance import InstanceState
from grambot.engine import Engine
from grambot.errors import AccessDenied, StageTimeout
from grambot.registries.tools import ToolContext
from tests.fakes.rest_api import fake_rest_api
from tests.helpers import Workspace, entry, failure_of

MANIFEST_PLUGINS = Path(__file__).parent / "fixtures" / "manifest"


def write(workspace: Workspace, plugins: list[dict[str, Any]], **keys: Any) -> Any:
    return workspace.write(plugins, pluginDirs=[str(MANIFEST_PLUGINS)], **keys)


def api_of(engine: Engine, instance_id: str) -> Any:
    record = engine.instance(instance_id)
    assert record is not None and record.generation is not None, instance_id
    return record.generation.plugin_object.api


# -- deadlines ---------------------------------------------------------------------------------


async def test_hanging_load_times_out_at_the_manifest_value(
    engine: Engine, workspace: Workspace
) -> None:
    started = time.monotonic()
    await engine.apply(write(workspace, [entry("slow", "summit-probe", hang_in="load")]))
    elapsed = time.monotonic() - started
    failure = failure_of(engine, "slow")
    assert failure.kind == "timeout" and failure.stage == "load"
    assert "load timed out after 300 ms" in failure.message
    assert 0.25 < elapsed < 2.0  # the manifest's 300 ms, not the engine's 30 s


@pytest.mark.parametrize("stage", ["create", "unload"])
async def test_create_and_unload_use_the_manifest_value(
    engine: Engine, workspace: Workspace, stage: str, caplog: pytest.LogCaptureFixture
) -> None:
    await engine.apply(write(workspace, [entry("p", "summit-probe", hang_in=stage)]))
    if stage == "create":
        failure = failure_of(engine, "p")
        assert "create timed out after 300 ms" in failure.message
    else:
        assert engine.state_of("p") is InstanceState.LOADED
        started = time.monotonic()
        await engine.apply(write(workspace, []))
        assert time.monotonic() - started < 2.0
        assert "unload timed out after 300 ms" in caplog.text


async def _failure_after_apply(engine: Engine, settings: EngineSettings) -> str:
    """Apply `settings` and return instance `p`'s failure message (it must have failed)."""
    await engine.apply(settings)
    return failure_of(engine, "p").message


async def test_engine_override_beats_the_manifest(engine: Engine, workspace: Workspace) -> None:
    settings = write(
        workspace, [entry("p", "summit-probe", hang_in="load")], timeouts={"overrideMs": 120}
    )
    assert "load timed out after 120 ms" in await _failure_after_apply(engine, settings)


async def test_register_custom_plugins_override_beats_engine_and_manifest(
    engine: Engine, workspace: Workspace
) -> None:
    settings = write(
        workspace, [entry("p", "summit-probe", hang_in="load")], timeouts={"overrideMs": 900}
    )
    engine.settings = settings
    found = engine.register_custom_plugins(MANIFEST_PLUGINS / "probe", timeout_ms=80)
    assert [d.id for d in found] == ["summit-probe"]
    assert "load timed out after 80 ms" in await _failure_after_apply(engine, settings)


async def test_without_any_ms_value_the_engine_seconds_apply(
    engine: Engine, workspace: Workspace
) -> None:
    # The `probe` plugin of tests/fixtures/plugins has no timeoutMs.
    settings = workspace.write([entry("p", hang_in="load")], timeouts={"load": 0.2})
    assert "load timed out after 0.2 s" in await _failure_after_apply(engine, settings)


async def test_every_tool_execution_runs_under_the_manifest_deadline(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(
        write(
            workspace,
            [
                entry("fast", "summit-probe", tool_name="fast_tool"),
                entry("stuck", "summit-probe", tool_name="stuck_tool", hang_in="tool"),
            ],
        )
    )
    fast = engine.registries.tools.get("fast_tool")
    assert isinstance(fast, GuardedTool) and str(fast.limit) == "300 ms"
    assert (await fast.execute({}, ToolContext())).text == "done"
    stuck = engine.registries.tools.get("stuck_tool")
    assert stuck is not None
    started = time.monotonic()
    with pytest.raises(StageTimeout, match=r"tool 'stuck_tool' timed out after 300 ms"):
        await stuck.execute({}, ToolContext())
    assert time.monotonic() - started < 2.0
    assert engine.state_of("stuck") is InstanceState.LOADED  # the instance lives on


# -- env -----------------------------------------------------------------------------------------


async def test_env_shows_only_the_allowlist(
    engine: Engine, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUMMIT_ALLOWED", "yes")
    monkeypatch.setenv("SUMMIT_SECRET", "do-not-leak")
    monkeypatch.delenv("SUMMIT_UNSET", raising=False)
    await engine.apply(write(workspace, [entry("e", "summit-probe")]))
    env = api_of(engine, "e").env
    assert env["SUMMIT_ALLOWED"] == "yes"
    assert env.get("SUMMIT_UNSET") is None and env.get("SUMMIT_UNSET", "d") == "d"
    assert list(env) == ["SUMMIT_ALLOWED"] and len(env) == 1
    assert dict(env) == {"SUMMIT_ALLOWED": "yes"}
    assert "SUMMIT_SECRET" not in env and "HOME" not in env and "PATH" not in env
    for name in ("SUMMIT_SECRET", "HOME"):
        with pytest.raises(AccessDenied) as info:
            env.get(name)
        message = str(info.value)
        assert f"'{name}'" in message and "allowedEnv (SUMMIT_ALLOWED, SUMMIT_UNSET)" in message
        assert "summit-probe" in message and "instance 'e'" in message
        assert "plugin.json" in message and info.value.name == name
    with pytest.raises(AccessDenied):
        env["SUMMIT_SECRET"]
    assert "do-not-leak" not in repr(env)


# -- cache ---------------------------------------------------------------------------------------


async def test_cache_namespaces_of_two_instances_are_disjoint(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(
        write(
            workspace,
            [
                entry("a", "summit-probe"),
                entry("b", "summit-probe"),
                entry("c", "summit-prefixed"),
                entry("d", "summit-prefixed"),
            ],
        )
    )
    caches = {i: api_of(engine, i).cache for i in "abcd"}
    for instance_id, cache in caches.items():
        assert cache.get("k") is None
        cache.set("k", instance_id)
    assert {i: c.get("k") for i, c in caches.items()} == {i: i for i in "abcd"}
    # cacheKeyPrefix names the namespace; the instance id still keeps two instances apart.
    assert caches["a"].namespace == "a" and caches["c"].namespace == "team-cache:c"
    assert caches["d"].namespace == "team-cache:d"
    assert caches["a"].delete("k") and not caches["a"].delete("k")
    assert caches["b"].get("k") == "b"
    # The cache outlives a reload of the instance (it belongs to the engine).
    await engine.apply(write(workspace, [entry("b", "summit-probe")]))
    await engine.apply(write(workspace, [entry("b", "summit-probe", tool_name="x")]))
    assert api_of(engine, "b").cache.get("k") == "b"


def test_cache_ttl_and_sweep() -> None:
    now = [100.0]
    backend = MemoryCache(clock=lambda: now[0])
    backend.set("ns", "short", 1, ttl=5)
    backend.set("ns", "long", 2, ttl=None)
    now[0] += 4.9
    assert backend.get("ns", "short") == 1
    now[0] += 0.2
    assert backend.keys("ns") == ["long"]
    for n in range(MemoryCache._SWEEP_EVERY):
        backend.set("other", f"k{n}", n, ttl=0.5)
    now[0] += 1
    backend.set("ns", "x", 0, ttl=None)
    for n in range(MemoryCache._SWEEP_EVERY - 2):
        backend.set("ns", "x", n, ttl=None)
    assert len(backend) == 2  # expired entries were swept, not kept forever


async def test_cache_rejects_bad_keys_and_ttls(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(write(workspace, [entry("a", "summit-probe")]))
    cache = api_of(engine, "a").cache
    with pytest.raises(ValueError, match="ttl"):
        cache.set("k", 1, ttl=0)
    with pytest.raises(TypeError, match="non-empty strings"):
        cache.set("", 1)


# -- vault ---------------------------------------------------------------------------------------


async def test_vault_reaches_own_and_allowed_shared_paths_only(
    engine: Engine, workspace: Workspace
) -> None:
    engine.secrets.set("v1", "token", "mine-1234")
    engine.secrets.set("other", "token", "theirs-1234")
    engine.secrets.set("shared/team", "key", "team-1234")
    engine.secrets.set("shared/teamster", "key", "no-1234")
    engine.secrets.set("shared/finance", "key", "no-5678")
    await engine.apply(write(workspace, [entry("v1", "summit-probe")]))
    vault = api_of(engine, "v1").vault
    assert vault.get("v1/token") == "mine-1234"
    assert vault.get("v1/missing") is None and vault.get("v1/missing", "d") == "d"
    assert vault.get("shared/team/key") == "team-1234"
    assert vault.require("shared/team/key") == "team-1234"
    refused = [
        "shared/finance/key",  # not under allowedVaultPaths
        "shared/teamster/key",  # a prefix matches whole segments only
        "other/token",  # another instance's: never, though the manifest lists "other/"
        "v1/../other/token",
        "shared/team",
        "token",
        "/v1/token",
    ]
    for path in refused:
        with pytest.raises(AccessDenied) as info:
            vault.get(path)
        assert repr(path) in str(info.value), path
        assert info.value.what == "vault"
    with pytest.raises(AccessDenied, match="belongs to instance 'other'"):
        vault.get("other/token")
    with pytest.raises(AccessDenied, match=r"allowedVaultPaths \(shared/team/, other/\)"):
        vault.get("shared/finance/key")
    with pytest.raises(Exception, match="grambot secrets set v1 missing"):
        vault.require("v1/missing")


# -- http ----------------------------------------------------------------------------------------


async def test_http_is_lazy_owned_and_closed_on_unload(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [entry("h", "summit-probe")]))
    record = engine.instance("h")
    assert (
        record is not None
        and record.generation is not None
        and record.generation.runtime is not None
    )
    runtime = record.generation.runtime
    assert not runtime.http_created  # loading never pays for a client
    api = api_of(engine, "h")
    with fake_rest_api() as server:
        response = await api.http.get(f"{server.url}/posts/1")
        assert response.status_code == 200 and response.json()["title"] == "first"
    client = api.http
    assert client is api.http and runtime.http_created
    await engine.apply(write(workspace, []))
    assert client.is_closed


# -- manifest and modules ------------------------------------------------------------------------


async def test_manifest_is_the_parsed_descriptor(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(write(workspace, [entry("m", "summit-probe")]))
    manifest = api_of(engine, "m").manifest
    assert manifest is engine.catalog.get("summit-probe")
    assert manifest.version == "0.1.0" and manifest.timeout_ms == 300
    assert manifest.raw["allowedEnv"] == ("SUMMIT_ALLOWED", "SUMMIT_UNSET")


async def test_allowed_modules_let_listed_grambot_and_relative_imports_through(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [entry("ok", "summit-allowed")]))
    assert engine.state_of("ok") is InstanceState.LOADED
    assert (workspace.data_dir("ok") / "loaded").exists()


@pytest.mark.parametrize("module", ["csv", "email", "jsonschema_not_here", "os.path"])
async def test_a_disallowed_import_fails_naming_plugin_and_module(
    engine: Engine, workspace: Workspace, module: str
) -> None:
    await engine.apply(write(workspace, [entry("no", "summit-allowed", late_import=module)]))
    failure = failure_of(engine, "no")
    message = failure.message
    assert failure.stage == "load"
    assert "PluginImportDenied" in message and "plugin 'summit-allowed'" in message
    assert f"may not import {module!r}" in message and "allowedModules (json, typing" in message


async def test_a_disallowed_top_level_import_fails_the_import_stage(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [entry("den", "summit-denied")]))
    failure = failure_of(engine, "den")
    assert failure.kind == "import-error"
    assert "plugin 'summit-denied' (instance 'den') may not import 'csv'" in failure.message


async def test_the_guard_is_per_namespace_not_global(engine: Engine, workspace: Workspace) -> None:
    import builtins

    original = builtins.__import__
    await engine.apply(write(workspace, [entry("ok", "summit-allowed")]))
    assert builtins.__import__ is original
    import csv  # the test's own imports are unaffected

    assert csv is not None
    await asyncio.sleep(0)
