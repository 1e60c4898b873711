"""A status that never lies: heartbeat, liveness vs readiness, stalls, connector health.

`grambot status --check` is liveness (0 alive with a fresh heartbeat, 3 no engine, 4 stale);
`grambot status` is readiness (0 all enabled instances loaded and healthy, 1 degraded, 3, 4).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from grambot.engine import Engine
from tests.helpers import Workspace, entry, eventually
from tests.runproc import EngineProcess, cli, running, workspace_with

HEARTBEAT = "0.2"  # seconds between heartbeats in these tests (stale after 3 of them)


def _status(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(ws, "status", *args)


def _instance(engine: EngineProcess, instance_id: str) -> dict[str, object]:
    status = engine.status() or {"instances": []}
    return next(i for i in status["instances"] if i["instanceId"] == instance_id)


def test_the_heartbeat_is_written_from_the_loop_and_a_frozen_loop_looks_stale(
    tmp_path: Path,
) -> None:
    ws = workspace_with(tmp_path, [entry("s", "stubborn", mode="stall-once", block=2.5)])
    with running(ws, "--heartbeat", HEARTBEAT) as engine:
        first = (engine.status() or {})["updatedAt"]
        eventually(lambda: (engine.status() or {}).get("updatedAt") != first, what="a heartbeat")
        # the plugin blocks the loop for 2.5 s from 0.3 s after load: the heartbeat stops
        eventually(lambda: _status(ws, "--check").returncode == 4, what="a stale heartbeat")
        stale = _status(ws)
        assert stale.returncode == 4 and "stale" in stale.stderr, stale.stderr
        eventually(lambda: _status(ws, "--check").returncode == 0, what="fresh again")
    gone = _status(ws, "--check")
    assert gone.returncode == 3


def test_a_stall_names_the_instance_in_the_log_and_in_status(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("st", "stubborn", mode="stall-once", block=1.5)])
    with running(ws) as engine:
        engine.wait_for_log("event loop blocked", timeout=10)
        line = next(x for x in engine.output.splitlines() if "event loop blocked" in x)
        assert "instance st" in line, line
        eventually(lambda: _instance(engine, "st").get("stalls") == 1, what="stalls: 1")
        assert "time.sleep" in engine.output or "plugin.py" in engine.output  # the stack


def test_readiness_says_degraded_and_liveness_says_alive(tmp_path: Path) -> None:
    ws = workspace_with(
        tmp_path,
        [entry("ok", "marker"), entry("bad", "nope")],
        retry={"initialDelay": 60, "maxDelay": 60},
    )
    with running(ws, "--heartbeat", HEARTBEAT) as engine:
        assert _status(ws, "--check").returncode == 0
        degraded = _status(ws)
        assert degraded.returncode == 1, degraded.stdout + degraded.stderr
        assert _status(ws, "--json").returncode == 1
        engine.write([entry("ok", "marker")])
        engine.wait_states({"ok": "loaded"})
        ready = _status(ws)
        assert ready.returncode == 0, ready.stdout + ready.stderr
        # a held edit is degraded too: what runs is not what the file says
        engine.write([entry("ok", "nope")])
        eventually(lambda: _instance(engine, "ok").get("held"), what="held")
        assert _status(ws).returncode == 1
        # an ignored edit as well
        engine.settings_file.write_text("{ not json")
        eventually(lambda: (engine.status() or {}).get("ignoredEdit"), what="ignored edit")
        assert _status(ws).returncode == 1


def test_starting_while_the_lock_is_held_without_status_json(tmp_path: Path) -> None:
    from grambot.app.lock import EngineLock

    ws = workspace_with(tmp_path, [])
    lock = EngineLock(ws)  # what an engine holds from its first moment
    lock.acquire()
    try:
        starting = _status(ws)
        assert starting.returncode == 1, starting.stdout + starting.stderr
        assert "starting" in starting.stdout + starting.stderr
        assert _status(ws, "--check").returncode == 0
    finally:
        lock.release()


def test_a_crashed_polling_task_makes_the_instance_unhealthy_and_status_exit_1(
    tmp_path: Path,
) -> None:
    ws = workspace_with(tmp_path, [entry("p", "stubborn", mode="crash-poller")])
    with running(ws, "--heartbeat", HEARTBEAT) as engine:
        eventually(
            lambda: (_instance(engine, "p").get("health") or {}).get("healthy") is False,
            what="unhealthy",
        )
        item = _instance(engine, "p")
        assert item["state"] == "loaded"
        assert "poller crashed" in json.dumps(item["health"])
        result = _status(ws)
        assert result.returncode == 1 and "unhealthy" in result.stdout, result.stdout


async def test_api_health_records_ok_and_errors(engine: Engine, workspace: Workspace) -> None:
    await engine.apply(workspace.write([entry("h", "stubborn", mode="health")]))
    instance = engine.instance("h")
    assert instance is not None and instance.generation is not None
    status = instance.to_status()["health"]
    assert status["healthy"] is True and status["lastOk"]["what"] == "poll"
    api = instance.generation.plugin_object.api
    api.health.error(ConnectionError("chat service unreachable"))
    status = instance.to_status()["health"]
    assert status["healthy"] is False
    assert "chat service unreachable" in status["lastError"]["message"]
    api.health.ok("poll")
    assert instance.to_status()["health"]["healthy"] is True


async def test_a_load_that_blocked_past_its_deadline_is_a_timeout_not_loaded(
    engine: Engine, workspace: Workspace
) -> None:
    started = time.monotonic()
    await engine.apply(
        workspace.write(
            [entry("b", "stubborn", mode="block-load", block=1.2)], timeouts={"load": 0.5}
        )
    )
    assert time.monotonic() - started >= 1.2
    instance = engine.instance("b")
    assert instance is not None and str(instance.state) == "failed", instance
    assert instance.failure is not None and instance.failure.kind == "timeout"
