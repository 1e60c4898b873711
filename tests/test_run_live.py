"""`grambot run` follows edits of settings.json: real subprocesses on temporary workspaces."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import FIXTURE_PLUGINS, entry, eventually
from tests.runproc import (
    STATUS_KEYS,
    EngineProcess,
    cli,
    running,
    workspace_with,
    write_json_atomic,
)


def _marker(ws: Path, instance_id: str, what: str) -> Path:
    return ws / ".scout" / "plugins" / instance_id / what


def test_enable_by_edit_loads_and_disable_unloads(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    with running(ws) as engine:
        engine.write([entry("m1", "marker")])
        eventually(_marker(ws, "m1", "loaded").exists, what="m1 loaded")
        engine.write([entry("m1", "marker", enabled=False)])
        eventually(_marker(ws, "m1", "unloaded").exists, what="m1 unloaded")
        engine.wait_states({"m1": "disabled"})
        engine.write([])
        engine.wait_states({})


def test_a_bad_edit_keeps_the_running_set_and_names_the_culprit(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("m1", "marker")])
    with running(ws) as engine:
        engine.settings_file.write_text('{"plugins": [\n  {"instanceId": "m1",,}\n]}')
        engine.wait_for_log("settings.json: invalid JSON at line 2, column 23")
        engine.write([entry("m1", "marker")], pluginDirs=5)
        engine.wait_for_log("settings.json: pluginDirs: pluginDirs must be a list (got 5)")
        # an invalid entry is reported with its JSON path; the valid ones still apply
        engine.write([entry("m1", "marker"), {"instanceId": "a/b", "pluginId": "marker"}])
        engine.wait_for_log("plugins[1].instanceId: instanceId must match")
        assert engine.states() == {"m1": "loaded"}
        assert not _marker(ws, "m1", "unloaded").exists()
        assert engine.output.count("invalid JSON at line 2") == 1, "one error per bad edit"
        # the next valid edit applies
        engine.write([entry("m2", "marker")])
        engine.wait_states({"m2": "loaded"})
        assert _marker(ws, "m1", "unloaded").exists()


def test_missing_or_empty_file_while_running_is_transient(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("m1", "marker")])
    with running(ws) as engine:
        engine.settings_file.write_text("")
        engine.wait_for_log("settings.json is empty; keeping the 1 running instance(s)")
        engine.settings_file.unlink()
        engine.wait_for_log("settings.json is missing; keeping the 1 running instance(s)")
        # re-read while missing, never treated as "no instances"
        engine.wait_for_log("re-reading", count=1)
        assert engine.states() == {"m1": "loaded"}
        assert not _marker(ws, "m1", "unloaded").exists()
        engine.write([entry("m1", "marker"), entry("m2", "marker")])
        engine.wait_states({"m1": "loaded", "m2": "loaded"})
        assert not _marker(ws, "m1", "unloaded").exists()


def test_truncated_half_written_file_then_completed_ends_in_the_full_state(
    tmp_path: Path,
) -> None:
    ws = workspace_with(tmp_path, [])
    with running(ws) as engine:
        full = json.dumps(
            {"pluginDirs": [str(FIXTURE_PLUGINS)], "plugins": [entry("m1", "marker")]}
        )
        with engine.settings_file.open("w") as handle:  # an in-place save, in two writes
            handle.write(full[: len(full) // 2])
            handle.flush()
            time.sleep(0.02)
            handle.write(full[len(full) // 2 :])
        engine.wait_states({"m1": "loaded"})


def test_rename_saves_and_a_burst_of_20_edits_end_in_the_last_state(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    with running(ws) as engine:
        data = {"pluginDirs": [str(FIXTURE_PLUGINS)], "plugins": [entry("r", "marker")]}
        write_json_atomic(engine.settings_file, data)
        engine.wait_states({"r": "loaded"})
        data["plugins"] = [entry("r", "marker", enabled=False)]
        write_json_atomic(engine.settings_file, data)  # the second rename-save is seen too
        engine.wait_states({"r": "disabled"})

        for n in range(20):
            ids = [f"b{k}" for k in range(n % 7, n % 7 + 3)]
            plugins = [entry(i, "probe", label=str(n)) for i in ids]
            if n % 2:
                write_json_atomic(
                    engine.settings_file, {"pluginDirs": [str(FIXTURE_PLUGINS)], "plugins": plugins}
                )
            else:
                engine.settings_file.write_text(
                    json.dumps({"pluginDirs": [str(FIXTURE_PLUGINS)], "plugins": plugins})
                )
        last = {f"b{k}": "loaded" for k in range(19 % 7, 19 % 7 + 3)}
        engine.wait_states(last)
        status = engine.status()
        assert status is not None
        # the loaded instances carry the last file's settings
        for i in last:
            calls = (ws / ".scout" / "plugins" / i / "calls.log").read_text().split()
            assert calls[-1] == "load", (i, calls)


def test_retry_with_backoff_until_the_load_passes(tmp_path: Path) -> None:
    ws = workspace_with(
        tmp_path,
        [entry("f", "flaky", failures=3)],
        retry={"initialDelay": 0.05, "maxDelay": 0.2},
    )
    with running(ws) as engine:
        engine.wait_states({"f": "loaded"})
        assert _marker(ws, "f", "loaded").read_text() == "4"
        assert "instance f (plugin flaky) loaded after 3 retries" in engine.output
        assert engine.output.count("Traceback") == 1, "later failures are one line each"


def test_retrying_instance_is_fixed_at_once_by_an_edit(tmp_path: Path) -> None:
    ws = workspace_with(
        tmp_path,
        [entry("p", "probe", fail_in="load")],
        retry={"initialDelay": 30, "maxDelay": 60},
    )
    with running(ws) as engine:
        engine.wait_states({"p": "retrying"})
        status = engine.status()
        assert status is not None
        (item,) = status["instances"]
        assert item["attempt"] == 1 and item["nextAttemptAt"] is not None
        assert "probe asked to fail in load" in item["error"]
        started = time.monotonic()
        engine.write([entry("p", "probe")], retry={"initialDelay": 30, "maxDelay": 60})
        engine.wait_states({"p": "loaded"})
        assert time.monotonic() - started < 5, "the edit applies at once, not at the next retry"
        (item,) = (engine.status() or {})["instances"]
        assert item["attempt"] == 0 and item["nextAttemptAt"] is None


def test_unknown_plugin_waits_and_loads_when_its_folder_appears(tmp_path: Path) -> None:
    plugins = tmp_path / "myplugins"
    plugins.mkdir()
    ws = workspace_with(
        tmp_path,
        [entry("late", "latecomer")],
        pluginDirs=[str(plugins)],
        retry={"initialDelay": 0.05, "maxDelay": 0.1},
    )
    with running(ws) as engine:
        engine.wait_states({"late": "failed"})  # not retried: waiting cannot fix it
        (item,) = (engine.status() or {})["instances"]
        assert item["attempt"] == 0 and "latecomer" in item["error"]
        staging = tmp_path / "staging"
        shutil.copytree(FIXTURE_PLUGINS / "marker", staging)
        descriptor = json.loads((staging / "plugin.json").read_text())
        (staging / "plugin.json").write_text(json.dumps({**descriptor, "id": "latecomer"}))
        staging.rename(plugins / "latecomer")
        engine.wait_states({"late": "loaded"})


def test_plugin_dirs_edit_rescans_the_catalog(tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(FIXTURE_PLUGINS / "marker", other / "marker2")
    descriptor = json.loads((other / "marker2" / "plugin.json").read_text())
    (other / "marker2" / "plugin.json").write_text(json.dumps({**descriptor, "id": "marker2"}))
    ws = workspace_with(tmp_path, [entry("x", "marker2")])
    with running(ws) as engine:
        engine.wait_states({"x": "failed"})
        engine.write([entry("x", "marker2")], pluginDirs=[str(FIXTURE_PLUGINS), str(other)])
        engine.wait_states({"x": "loaded"})


def test_second_run_on_the_same_workspace_is_refused(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("m1", "marker")])
    with running(ws) as engine:
        second = subprocess.run(
            [sys.executable, "-m", "grambot", "run", "--workspace", str(ws)],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert second.returncode == 1
        assert f"another grambot engine (pid {engine.proc.pid}) is already running" in (
            second.stderr
        )
        assert "grambot ready" not in second.stderr
        assert engine.states() == {"m1": "loaded"}


def _exit_after(engine: EngineProcess, signum: int) -> tuple[int, float]:
    """Send `signum` and wait (up to 10 s) for the engine to exit: its code, the seconds taken."""
    started = time.monotonic()
    engine.signal(signum)
    code = engine.proc.wait(10)
    return code, time.monotonic() - started


def test_sigterm_with_a_hanging_unload_exits_zero_within_the_deadline(tmp_path: Path) -> None:
    ws = workspace_with(
        tmp_path,
        [
            entry("m1", "marker"),
            entry("h", "probe", hang_in="unload"),
            entry("hs", "probe", hang_in="unload", sync_stages=True),
        ],
        timeouts={"unload": 0.5},
    )
    engine = EngineProcess(ws)
    try:
        engine.wait_ready()
        engine.wait_states({"m1": "loaded", "h": "loaded", "hs": "loaded"})
        code, elapsed = _exit_after(engine, signal.SIGTERM)
    finally:
        engine.kill()
    output = engine.output
    assert code == 0, output
    assert elapsed < 5, elapsed
    assert "instance h: unload failed" in output and "timed out" in output
    assert _marker(ws, "m1", "unloaded").exists()

    # reverse load order
    def order(what: str) -> list[str]:
        return [
            line.split("instance ")[1].split()[0]
            for line in output.splitlines()
            if line.endswith(f") {what}")
        ]

    assert order("unloaded") == order("loaded")[::-1] and len(order("loaded")) == 3, output
    assert not (ws / ".scout" / "status.json").exists()


def test_second_signal_exits_at_once_with_a_nonzero_code(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("h", "probe", hang_in="unload")], timeouts={"unload": 60})
    engine = EngineProcess(ws)
    try:
        engine.wait_ready()
        engine.signal(signal.SIGTERM)
        engine.wait_for_log("SIGTERM received: shutting down")
        code, elapsed = _exit_after(engine, signal.SIGINT)
        assert elapsed < 3
    finally:
        engine.kill()
    assert code == 130, engine.output
    assert "second SIGINT: exiting now" in engine.output


def test_reload_plugins_picks_up_an_edited_helper_module(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    folder = plugins / "helped"
    folder.mkdir(parents=True)
    (folder / "plugin.json").write_text(
        json.dumps({"id": "helped", "name": "Helped", "description": "d", "entry": "plugin.py"})
    )
    (folder / "helper.py").write_text("VALUE = 'one'\n")
    (folder / "plugin.py").write_text(
        "from grambot import Plugin\n"
        "from .helper import VALUE\n\n"
        "class P:\n"
        "    def __init__(self, api):\n"
        "        self.api = api\n"
        "    def load(self):\n"
        "        (self.api.data_dir / 'value').write_text(VALUE)\n\n"
        "plugin = Plugin(create=P)\n"
    )
    ws = workspace_with(
        tmp_path,
        [entry("a", "helped"), entry("b", "helped"), entry("m", "marker")],
        pluginDirs=[str(plugins), str(FIXTURE_PLUGINS)],
    )
    with running(ws, "--reload-plugins") as engine:
        for i in ("a", "b"):
            assert _marker(ws, i, "value").read_text() == "one"
        (folder / "helper.py").write_text("VALUE = 'two'\n")
        for i in ("a", "b"):
            eventually(lambda i=i: _marker(ws, i, "value").read_text() == "two", what=i)
        engine.wait_for_log("plugin helped changed: reloading a, b")
        assert not _marker(ws, "m", "unloaded").exists(), "other plugins are left alone"
        engine.wait_states({"a": "loaded", "b": "loaded", "m": "loaded"})


def test_without_reload_plugins_code_edits_do_not_reload(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    shutil.copytree(FIXTURE_PLUGINS / "probe", plugins / "probe")
    ws = workspace_with(tmp_path, [entry("p", "probe")], pluginDirs=[str(plugins)])
    with running(ws) as engine:
        source = plugins / "probe" / "plugin.py"
        source.write_text(source.read_text() + "\n# edited\n")
        # a settings edit after the code edit proves the engine saw and ignored the code edit
        engine.write(
            [entry("p", "probe"), entry("m", "marker")],
            pluginDirs=[str(plugins), str(FIXTURE_PLUGINS)],
        )
        engine.wait_states({"p": "loaded", "m": "loaded"})
        assert (ws / ".scout" / "plugins" / "p" / "calls.log").read_text().split() == [
            "create",
            "load",
        ]


def test_edit_to_loaded_latency_is_well_under_a_second(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    with running(ws) as engine:
        worst = 0.0
        for n in range(5):
            started = time.monotonic()
            engine.write([entry(f"l{n}", "marker")])
            eventually(_marker(ws, f"l{n}", "loaded").exists, what=f"l{n}")
            worst = max(worst, time.monotonic() - started)
        assert worst < 0.5, worst


def test_status_json_matches_the_schema(tmp_path: Path) -> None:
    ws = workspace_with(
        tmp_path,
        [
            entry("t", "probe", tool_name="echo"),
            entry("off", "marker", enabled=False),
            entry("bad", "nope"),
        ],
    )
    with running(ws) as engine:
        engine.wait_states({"t": "loaded", "off": "disabled", "bad": "failed"})
        status = engine.status()
        assert status is not None
        assert set(status) == STATUS_KEYS
        assert status["pid"] == engine.proc.pid and status["ignoredEdit"] is None
        assert set(status["inbox"]) == {
            "accepted",
            "handling",
            "pending",
            "sending",
            "uncertain",
            "uncertainAtStart",
            "activeChats",
        }
        assert status["schedule"] == {"jobs": 0, "active": 0}
        keys = {
            "instanceId",
            "pluginId",
            "state",
            "reason",
            "error",
            "since",
            "registrations",
            "attempt",
            "nextAttemptAt",
            "held",
            "health",
            "stalls",
            "migrated",
            "settingsDigest",
            "ignoredSettings",
            "isolation",
        }
        by_id = {i["instanceId"]: i for i in status["instances"]}
        for item in by_id.values():
            assert set(item) == keys
            assert set(item["registrations"]) == {"connectors", "inference", "tools", "images"}
        assert by_id["t"]["registrations"]["tools"] == ["echo"]
        assert by_id["t"]["error"] is None and by_id["off"]["state"] == "disabled"
        assert "nope" in by_id["bad"]["error"] and by_id["bad"]["reason"] == "plugin-not-found"
        assert not any(p.name.endswith(".tmp") for p in (ws / ".scout").iterdir())
    assert os.path.exists(ws / ".scout" / "engine.lock")


def test_management_commands_apply_to_the_running_engine(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("m1", "marker")])
    engine = EngineProcess(ws, "--log-level", "warning")

    def grambot(*args: str) -> None:
        done = cli(ws, *args, timeout=20)
        assert done.returncode == 0, done.stderr

    try:
        eventually(lambda: engine.states() == {"m1": "loaded"}, what="m1 loaded")
        grambot("enable", "probe", "--instance", "p", "--set", "tool_name=t", "--no-input")
        engine.wait_states({"m1": "loaded", "p": "loaded"})
        grambot("disable", "m1")
        engine.wait_states({"m1": "disabled", "p": "loaded"})
        grambot("remove", "p")
        engine.wait_states({"m1": "disabled"})
    finally:
        assert engine.stop() == 0, engine.output
    assert "INFO" not in engine.output and "grambot ready" not in engine.output


def test_a_signal_during_a_hanging_first_load_stops_promptly(tmp_path: Path) -> None:
    ws = workspace_with(
        tmp_path,
        [entry("h", "probe", hang_in="load"), entry("m", "marker")],
        timeouts={"load": 60},
    )
    engine = EngineProcess(ws)
    try:
        eventually(
            lambda: (
                "load" in (ws / ".scout/plugins/h/calls.log").read_text()
                if (ws / ".scout/plugins/h/calls.log").exists()
                else False
            ),
            what="h loading",
        )
        code, elapsed = _exit_after(engine, signal.SIGTERM)
        assert elapsed < 5
    finally:
        engine.kill()
    assert code == 0, engine.output
    assert "grambot stopped" in engine.output
