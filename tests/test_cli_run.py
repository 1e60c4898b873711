"""`grambot run` as a real subprocess on a temporary workspace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import entry, eventually
from tests.isolation import shipped_example
from tests.runproc import workspace_with


def _settled(scout: Path) -> bool:
    """status.json shows every instance settled (written before "grambot ready" is logged)."""
    try:
        states = {i["state"] for i in json.loads((scout / "status.json").read_text())["instances"]}
    except (OSError, ValueError, KeyError):
        states = set()
    return bool(states) and not states & {"loading", "unloading"}


def _start(workspace: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "grambot", "run", "--workspace", str(workspace)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_run_loads_then_unloads_on_sigterm_and_exits_zero(tmp_path: Path) -> None:
    workspace_with(tmp_path, [entry("m1", "marker"), entry("broken", "probe", fail_in="load")])
    scout = tmp_path / ".scout"
    proc = _start(tmp_path)
    try:
        eventually((scout / "plugins" / "m1" / "loaded").exists, 15, what="m1 loaded")
        eventually(lambda: _settled(scout), 15, what="both instances reported settled")
        assert not (scout / "plugins" / "m1" / "unloaded").exists()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert (scout / "plugins" / "m1" / "unloaded").exists()
    assert "instance broken (plugin probe) failed at load" in output
    assert "grambot ready" in output


def test_run_on_the_shipped_example_workspace(tmp_path: Path) -> None:
    workspace = shipped_example(tmp_path)
    data = json.loads((workspace / ".scout" / "settings.json").read_text())
    assert {p["instanceId"] for p in data["plugins"] if p["enabled"]} >= {"console", "echo"}
    proc = _start(workspace)
    try:
        deadline = time.monotonic() + 15
        seen = ""
        assert proc.stdout is not None
        while time.monotonic() < deadline and "grambot ready" not in seen:
            seen += proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert "grambot ready" in seen, seen
    assert proc.returncode == 0, seen + rest
