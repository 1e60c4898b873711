"""`"isolation": "process"` (docs/isolation.md): an instance in a child process forked
from the zygote, with the same plugin API over a pipe; what it does to itself stays there."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from grambot.bot import Bot
from grambot.engine import Engine
from grambot.errors import ProcessLost
from grambot.isolation import landlock
from grambot.registries.tools import ToolContext, ToolResult
from tests.helpers import (
    FIXTURE_PLUGINS,
    Workspace,
    entry,
    eventually,
    eventually_async,
    started_engine,
    status_of,
)
from tests.runproc import EngineProcess, workspace_with

ISOLATION_FIXTURES = Path(__file__).parent / "fixtures" / "isolation"
DIRS = [str(FIXTURE_PLUGINS), str(ISOLATION_FIXTURES)]
FAST_RETRY = {"initialDelay": 0.05, "maxDelay": 0.1}
needs_landlock = pytest.mark.skipif(landlock.abi() < 1, reason="Landlock is not available")


def rogue(instance_id: str = "r", **settings: Any) -> dict[str, Any]:
    return {**entry(instance_id, "rogue-proc", **settings), "isolation": "process"}


def write(ws: Workspace, plugins: list[dict[str, Any]], **keys: Any) -> Any:
    return ws.write(plugins, pluginDirs=DIRS, retry=FAST_RETRY, **keys)


@pytest.fixture
async def engine(workspace: Workspace) -> AsyncIterator[Engine]:
    async with started_engine(workspace, retries=True) as eng:
        eng.isolation.heartbeat_interval = 0.2
        eng.isolation.unresponsive_after = 1.0
        yield eng


async def call(engine: Engine, tool: str, **args: Any) -> ToolResult:
    found = engine.registries.tools.get(tool)
    assert found is not None, f"tool {tool!r} is not registered"
    result: ToolResult = await found.execute(args, ToolContext())
    return result


def isolation(engine: Engine, instance_id: str) -> dict[str, Any]:
    return status_of(engine, instance_id, "isolation")


# -- the choice -----------------------------------------------------------------------------


async def test_a_process_instance_answers_from_its_own_process(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [rogue(label="one")]))
    assert str(engine.state_of("r")) == "loaded"
    answer = await call(engine, "rogue", do="pid")
    status = isolation(engine, "r")
    assert int(answer.text) == status["pid"] != os.getpid()
    assert status["mode"] == "process" and status["rssBytes"] > 1_000_000
    assert status["restarts"] == 0 and status["memoryMb"] == 1024
    assert (await call(engine, "rogue", do="echo", text="hé")).text == "hé"
    json.dumps(engine.instance("r").to_status())  # type: ignore[union-attr]


async def test_changing_the_isolation_reloads_the_instance(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [rogue()]))
    child = int((await call(engine, "rogue", do="pid")).text)
    in_process = {**rogue(), "isolation": "inprocess"}
    await engine.apply(write(workspace, [in_process]))
    assert isolation(engine, "r") == {"mode": "inprocess"}
    assert int((await call(engine, "rogue", do="pid")).text) == os.getpid()
    await eventually_async(
        lambda: not os.path.exists(f"/proc/{child}"), what="the old child to exit"
    )
    default = entry("r", "rogue-proc")
    await engine.apply(write(workspace, [default], isolation={"default": "process"}))
    assert isolation(engine, "r")["mode"] == "process"


async def test_a_manifest_that_requires_a_process_refuses_in_process(
    engine: Engine, workspace: Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "plugins" / "strict"
    folder.mkdir(parents=True)
    source = (ISOLATION_FIXTURES / "rogue" / "plugin.py").read_text()
    (folder / "plugin.py").write_text(source)
    manifest = {"id": "strict", "entry": "plugin.py", "isolation": "process"}
    (folder / "plugin.json").write_text(json.dumps(manifest))
    dirs = [*DIRS, str(folder.parent)]
    plugins = [
        {**entry("s", "strict", tool="s"), "isolation": "inprocess"},
        entry("t", "strict", tool="t"),
    ]
    await engine.apply(workspace.write(plugins, pluginDirs=dirs))
    refused = engine.instance("s")
    assert refused is not None and refused.failure is not None
    assert refused.failure.kind == "isolation-required" and str(refused.state) == "failed"
    assert "plugins[0].isolation" in refused.failure.message
    assert isolation(engine, "t")["mode"] == "process"  # not said: the manifest decides
    assert isolation(engine, "t")["sandbox"].startswith("landlock") or landlock.abi() < 1


async def test_events_and_logs_cross_masked(
    engine: Engine, workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    engine.secrets.set("r", "token", "sk-very-secret-value-123")
    seen: list[Any] = []
    engine.event_engine.register("rogue.loaded", lambda event: seen.append(event.payload))
    await engine.apply(write(workspace, [rogue(label="sk-very-secret-value-123")]))
    await eventually_async(lambda: seen, what="the child's event")
    assert seen[0]["label"] == "sk-very-secret-value-123"  # events carry data as emitted
    lines = [r.getMessage() for r in caplog.records if r.name == "grambot.plugin.r"]
    assert any("loaded in pid" in line for line in lines), lines
    assert not any("sk-very-secret" in line for line in lines), lines


# -- containment ----------------------------------------------------------------------------


async def test_os_exit_in_a_tool_call_fails_the_instance_and_it_restarts(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [rogue()]))
    first = isolation(engine, "r")["pid"]
    with pytest.raises(ProcessLost):
        await call(engine, "rogue", do="exit")
    assert "rogue" not in engine.registries.tools  # its proxies go at once
    instance = engine.instance("r")
    assert instance is not None
    await eventually_async(lambda: instance.failure is not None, what="the failure")
    assert instance.failure is not None and instance.failure.kind == "crashed"
    assert "exited with code 3" in instance.failure.message
    await eventually_async(lambda: str(instance.state) == "loaded", what="the restart")
    status = isolation(engine, "r")
    assert status["restarts"] == 1 and status["lastExit"]["reason"] == "crashed"
    assert status["pid"] != first
    assert (await call(engine, "rogue", do="echo", text="back")).text == "back"


async def test_a_segfault_is_a_crash(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(write(workspace, [rogue()]))
    with pytest.raises(ProcessLost) as lost:
        await call(engine, "rogue", do="segfault")
    assert lost.value.reason == "crashed"
    await eventually_async(lambda: isolation(engine, "r")["lastExit"] is not None)
    assert isolation(engine, "r")["lastExit"]["reason"] == "crashed"


@needs_landlock
async def test_the_sandbox_keeps_secrets_and_other_instances_out(
    engine: Engine, workspace: Workspace
) -> None:
    engine.secrets.set("other", "key", "x")
    workspace.data_dir("other").mkdir(parents=True)
    (workspace.data_dir("other") / "notes").write_text("private")
    await engine.apply(write(workspace, [rogue()]))
    forbidden = [
        workspace.scout / "secrets.json",
        workspace.scout / "settings.json",
        workspace.data_dir("other") / "notes",
        Path("/etc/shadow"),
        Path(f"/proc/{os.getpid()}/environ"),
    ]
    for path in forbidden:
        assert path.exists()
        with pytest.raises(Exception, match=r"Permission denied|Errno 13"):
            await call(engine, "rogue", do="read", path=str(path))
    for path in (workspace.root / "outside.txt", workspace.data_dir("other") / "x"):
        with pytest.raises(Exception, match=r"Permission denied|Errno 13"):
            await call(engine, "rogue", do="write", path=str(path))
        assert not path.exists()
    own = workspace.data_dir("r") / "mine.txt"
    assert (await call(engine, "rogue", do="write", path=str(own))).text == f"wrote {own}"
    assert own.read_text() == "written"
    assert str(engine.state_of("r")) == "loaded"


@needs_landlock
async def test_it_cannot_kill_its_parent(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(write(workspace, [rogue()]))
    zygote = engine.isolation.forkserver.pid
    with pytest.raises(Exception, match="Operation not permitted"):
        await call(engine, "rogue", do="kill-parent")
    assert zygote is not None and os.path.exists(f"/proc/{zygote}")
    assert (await call(engine, "rogue", do="echo", text="alive")).text == "alive"


async def test_a_big_allocation_hits_the_memory_limit(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(write(workspace, [{**rogue(), "memoryMb": 256}]))
    with pytest.raises(ProcessLost) as lost:
        await call(engine, "rogue", do="allocate")
    assert lost.value.reason == "memory-limit"
    await eventually_async(lambda: isolation(engine, "r")["lastExit"] is not None)
    assert isolation(engine, "r")["lastExit"]["reason"] == "memory-limit"


async def test_a_busy_loop_in_async_load_is_unresponsive(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [rogue(load_does="spin")]))
    instance = engine.instance("r")
    assert instance is not None and instance.failure is not None
    assert instance.failure.kind == "unresponsive", instance.failure
    assert str(instance.state) == "retrying"


async def test_a_call_that_ignores_its_cancellation_kills_the_child(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [rogue()], timeouts={"overrideMs": 300}))
    started = time.monotonic()
    with pytest.raises(Exception, match="timed out"):
        await call(engine, "rogue", do="sleep")  # time.sleep blocks the child's loop
    await eventually_async(lambda: isolation(engine, "r")["lastExit"] is not None, timeout=5)
    assert time.monotonic() - started < 3.0
    assert isolation(engine, "r")["lastExit"]["reason"] == "unresponsive"


async def test_a_hung_sync_unload_ends_with_its_process(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [rogue(load_does="hang-unload")], timeouts={"unload": 0.3}))
    pid = isolation(engine, "r")["pid"]
    started = time.monotonic()
    await engine.apply(write(workspace, []))
    assert time.monotonic() - started < 5.0
    await eventually_async(lambda: not os.path.exists(f"/proc/{pid}"), what="the child to end")


async def test_a_result_over_the_pipe_cap_is_a_typed_error(
    engine: Engine, workspace: Workspace
) -> None:
    plugins = [{**entry("p", "probe", tool_name="echo"), "isolation": "process"}]
    await engine.apply(write(workspace, plugins))
    with pytest.raises(Exception, match=r"FrameTooLarge|16 MiB"):
        await call(engine, "echo", text="big:20000000")
    assert (await call(engine, "echo", text="small")).text == "small"


@asynccontextmanager
async def neighbour_answers(engine: Engine) -> AsyncIterator[list[float]]:
    """The in-process instance `healthy` keeps answering its tool calls throughout (p99 ≤ 100 ms,
    max ≤ 500 ms), whatever its process-isolated neighbour does."""
    latencies: list[float] = []
    stop = asyncio.Event()

    async def keep_calling() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            assert (await call(engine, "echo", text="ok")).text == "ok"
            latencies.append(time.perf_counter() - began)
            await asyncio.sleep(0.005)

    caller = asyncio.ensure_future(keep_calling())
    try:
        yield latencies
    finally:
        stop.set()
        await caller
    assert len(latencies) > 20
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert p99 <= 0.1 and max(latencies) <= 0.5, (p99, max(latencies))


async def test_a_healthy_in_process_instance_keeps_answering(
    engine: Engine, workspace: Workspace
) -> None:
    plugins = [
        entry("healthy", "probe", tool_name="echo"),
        rogue("a", tool="a"),
        rogue("b", tool="b"),
    ]
    await engine.apply(write(workspace, plugins, timeouts={"overrideMs": 300}))
    async with neighbour_answers(engine):
        began = time.monotonic()
        for tool, what in (("a", "exit"), ("b", "segfault"), ("a", "allocate"), ("b", "sleep")):
            await eventually_async(lambda t=tool: t in engine.registries.tools, what=f"tool {tool}")
            with pytest.raises(Exception):  # noqa: B017
                await call(engine, tool, do=what)
        await eventually_async(lambda: str(engine.state_of("a")) == "loaded", what="a restarted")
        await eventually_async(lambda: str(engine.state_of("b")) == "loaded", what="b restarted")
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))


# -- a real `grambot run` -------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone
    except FileNotFoundError:
        return False


def _children_of(status: dict[str, Any]) -> list[int]:
    return [
        i["isolation"]["pid"]
        for i in status["instances"]
        if i["isolation"]["mode"] == "process" and i["isolation"]["pid"]
    ]


def test_no_child_outlives_a_sigkilled_engine(tmp_path: Path) -> None:
    root = workspace_with(tmp_path, [rogue("a", tool="a"), rogue("b", tool="b")], pluginDirs=DIRS)
    engine = EngineProcess(root)
    try:
        engine.wait_ready()
        pids = eventually(
            lambda: (
                len(_children_of(engine.status() or {"instances": []})) == 2
                and _children_of(engine.status() or {})
            ),
            what="two children in status.json",
        )
        assert all(_alive(pid) for pid in pids)
    finally:
        engine.kill()  # SIGKILL: the engine cannot tidy anything
    eventually(lambda: not any(_alive(pid) for pid in pids), timeout=5, what="no orphans")


def test_a_stopping_engine_stops_its_children(tmp_path: Path) -> None:
    plugins = [rogue("a", tool="a", load_does="hang-unload")]
    root = workspace_with(tmp_path, plugins, pluginDirs=DIRS, timeouts={"unload": 0.5})
    engine = EngineProcess(root, "--shutdown-timeout", "10")
    engine.wait_ready()
    pids = eventually(lambda: _children_of(engine.status() or {"instances": []}), what="child")
    started = time.monotonic()
    assert engine.stop() == 0, engine.output
    assert time.monotonic() - started < 10
    assert not any(_alive(pid) for pid in pids)


# -- settings -------------------------------------------------------------------------------


def test_bad_isolation_keys_are_named(tmp_path: Path) -> None:
    from grambot.config.settings import parse_settings
    from grambot.errors import SettingsError

    path = tmp_path / "settings.json"
    bad_entry = {**entry("a", "probe"), "isolation": "proc", "memoryMb": 8, "sandbox": "maybe"}
    parsed = parse_settings(json.dumps({"plugins": [bad_entry]}), path=path, workspace=tmp_path)
    problems = {p.json_path: p.message for p in parsed.problems}
    assert problems == {
        "plugins[0].isolation": "isolation must be one of 'inprocess' or 'process'",
        "plugins[0].memoryMb": "memoryMb must be at least 32",
        "plugins[0].sandbox": "sandbox must be one of 'required' or 'best-effort'",
    }
    assert parsed.held == {"a": tuple(str(p) for p in parsed.problems)}
    with pytest.raises(SettingsError, match=r"isolation\.default"):
        parse_settings(
            '{"plugins": [], "isolation": {"default": "x"}}', path=path, workspace=tmp_path
        )


def test_an_isolation_change_is_a_change_of_the_entry() -> None:
    from dataclasses import replace

    from grambot.config.settings import InstanceConfig
    from grambot.core.plan import differs

    config = InstanceConfig("a", "probe", True, {}, "plugins[0]")
    assert differs(config, replace(config, isolation="process"))
    assert differs(config, replace(config, isolation_default="process"))
    assert differs(
        replace(config, isolation="process"), replace(config, isolation="process", memory_mb=64)
    )
    # "inprocess" said or not: the same mode, but no longer the manifest's to decide
    assert differs(config, replace(config, isolation="inprocess"))
    assert not differs(replace(config, isolation="process"), replace(config, isolation="process"))


async def test_a_connector_and_secrets_work_across(
    engine: Engine, bot: Bot, workspace: Workspace
) -> None:
    engine.secrets.set("r", "token", "tok-123456789")
    engine.secrets.set("other", "token", "not-yours")
    await engine.apply(write(workspace, [rogue(connector=True)]))
    assert engine.registries.connectors.keys() == ["r"]
    outbox = workspace.data_dir("r") / "outbox.log"
    assert outbox.read_text().split("\n")[0] == "start"  # started as the child's stage
    await bot.sender.send("r", "chat-1", "hello there")
    assert (await call(engine, "rogue", do="secret")).text == "tok-123456789"
    assert (await call(engine, "rogue", do="store")).text == "None"
    env = (await call(engine, "rogue", do="env")).text.split(",")
    assert "TMPDIR" in env and not [name for name in env if "GRAMBOT" in name or "PYTEST" in name]
    await engine.apply(write(workspace, []))
    assert outbox.read_text().split("\n")[1:] == ["chat-1: hello there", "stop", ""]


async def test_durable_state_is_the_engines(engine: Engine, workspace: Workspace) -> None:
    """api.store, api.inbox and api.schedule in a child: the state is the engine's, in the
    instance's own namespace, and a job's handler runs in the child."""
    ticks: list[Any] = []
    engine.event_engine.register("rogue.tick", lambda event: ticks.append(event.payload))
    await engine.apply(write(workspace, [rogue()]))
    report = json.loads((await call(engine, "rogue", do="durable")).text)
    assert report["a"] == {"n": 1} and report["short"] == "gone"
    assert report["cas"] == [True, False, True, "third"]
    assert report["keys"] == ["a", "c"] and report["items"] == {"a": {"n": 1}}
    assert report["bad"].startswith("ValueError: store ttl must be")
    assert report["removed"] is False and report["outstanding"] == 0
    assert report["job"] == ["tick", "every"] and report["jobs"] == ["tick"]
    child = isolation(engine, "r")["pid"]
    await eventually_async(lambda: len(ticks) >= 2, what="the job to run twice")
    assert ticks[0] == {"name": "tick", "payload": {"p": 1}, "pid": child}
    durable = engine.instance("r").generation.durable  # type: ignore[union-attr]
    assert durable is not None
    assert await durable.store.get("a") == {"n": 1}  # the engine's store, the instance's namespace
    assert await durable.store.get("ticks") >= 2
    inprocess = {**rogue(), "isolation": "inprocess"}
    await engine.apply(write(workspace, [inprocess]))  # the same state in process
    assert (await call(engine, "rogue", do="store")).text == "None"  # "x" was never set
    again = engine.instance("r").generation.durable  # type: ignore[union-attr]
    assert again is not None and await again.store.get("c") == "third"


async def test_reconfigure_crosses_the_pipe(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(write(workspace, [rogue(label="one")]))
    child = isolation(engine, "r")["pid"]
    await engine.apply(write(workspace, [rogue(label="two")]))  # accepted in place
    assert isolation(engine, "r")["pid"] == child
    assert (await call(engine, "rogue", do="label")).text == "two"
    assert engine.instance("r").config.settings["label"] == "two"  # type: ignore[union-attr]
    await engine.apply(write(workspace, [rogue(label="two", path="/x")]))  # refused: reloaded
    assert isolation(engine, "r")["pid"] != child
    assert (await call(engine, "rogue", do="label")).text == "two"
    assert str(engine.state_of("r")) == "loaded"


async def test_check_runs_in_a_child(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(write(workspace, [rogue(label="fine")]))
    result = await engine.check("r")
    assert result.ok, result
    pid = int(result.message.split("pid ")[1].split(":")[0])
    assert pid not in (os.getpid(), isolation(engine, "r")["pid"]), result.message
    assert result.message.endswith(": fine")
    from grambot.config.settings import InstanceConfig

    bad = InstanceConfig(
        "r", "rogue-proc", True, {"label": "bad"}, "plugins[0]", isolation="process"
    )
    failed = await engine.check("r", config=bad)
    assert not failed.ok and "the label is bad" in failed.message, failed
    assert isolation(engine, "r")["restarts"] == 0


@needs_landlock
async def test_names_resolve_and_an_https_client_builds_in_the_sandbox(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [rogue()]))
    answer = (await call(engine, "rogue", do="network")).text
    assert "127.0.0.1" in answer and answer.endswith("CERT_REQUIRED"), answer
    assert isolation(engine, "r")["sandbox"].startswith("landlock")


async def test_a_stopped_child_is_unresponsive_and_restarted(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [rogue()]))
    pid = isolation(engine, "r")["pid"]
    os.kill(pid, signal.SIGSTOP)  # idle, no call in flight: only the heartbeat notices
    await eventually_async(lambda: isolation(engine, "r")["lastExit"] is not None, timeout=5)
    assert isolation(engine, "r")["lastExit"]["reason"] == "unresponsive"
    await eventually_async(
        lambda: str(engine.state_of("r")) == "loaded" and isolation(engine, "r")["pid"]
    )
    assert isolation(engine, "r")["pid"] != pid and not _alive(pid)
    assert (await call(engine, "rogue", do="echo", text="back")).text == "back"


async def test_the_zygote_dying_loses_the_instances_and_they_restart(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [rogue("a", tool="a"), rogue("b", tool="b")]))
    zygote = engine.isolation.forkserver.pid
    children = [isolation(engine, i)["pid"] for i in ("a", "b")]
    assert zygote is not None
    os.kill(zygote, signal.SIGKILL)
    for instance_id in ("a", "b"):
        await eventually_async(
            lambda i=instance_id: isolation(engine, i)["restarts"] == 1, timeout=5
        )
        await eventually_async(
            lambda i=instance_id: str(engine.state_of(i)) == "loaded", timeout=10
        )
    assert engine.isolation.forkserver.pid not in (None, zygote)
    assert not any(_alive(pid) for pid in children)
    assert (await call(engine, "a", do="echo", text="a")).text == "a"
    assert (await call(engine, "b", do="echo", text="b")).text == "b"
