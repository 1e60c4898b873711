"""Every shutdown ends within `--shutdown-timeout`, whatever plugins leave behind.

Real `grambot run` processes with the `stubborn` fixture plugin: an unload that swallows
cancellation, a task that does, a pending `asyncio.to_thread`, a non-daemon thread, a loop
blocked in Python code (the first signal still arms the deadline; the process exits within the
timeout + 2 s), and the second signal (exit 130 at once, even while the loop is blocked).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import entry, eventually
from tests.runproc import EngineProcess, workspace_with

TIMEOUT = 1.5  # --shutdown-timeout of these tests
SLACK = 2.0  # the promise: exit within the timeout + 2 s


def _engine(tmp_path: Path, mode: str, **settings: Any) -> EngineProcess:
    ws = workspace_with(
        tmp_path,
        [entry("s", "stubborn", mode=mode, **settings), entry("m", "marker")],
        timeouts={"unload": 30, "load": 30},
    )
    return EngineProcess(ws, "--shutdown-timeout", str(TIMEOUT))


def _stop_within(engine: EngineProcess, limit: float, signum: int = signal.SIGTERM) -> int:
    started = time.monotonic()
    engine.signal(signum)
    try:
        code = engine.proc.wait(limit + 5)
    finally:
        engine.kill()
    took = time.monotonic() - started
    assert took <= limit, f"exited after {took:.1f} s (limit {limit} s)\n{engine.output}"
    assert not (engine.scout / "status.json").exists(), "status.json left behind"
    return code


@pytest.mark.parametrize(
    "mode", ["unload-swallows", "task-swallows", "to-thread", "non-daemon-thread"]
)
def test_shutdown_ends_within_the_timeout_whatever_a_plugin_leaves(
    tmp_path: Path, mode: str
) -> None:
    engine = _engine(tmp_path, mode)
    engine.wait_ready()
    code = _stop_within(engine, TIMEOUT + SLACK)
    assert code in (0, 1), engine.output
    assert "grambot stopped" in engine.output or "did not finish within" in engine.output


def test_a_signal_while_the_loop_is_blocked_still_ends_within_the_timeout(
    tmp_path: Path,
) -> None:
    engine = _engine(tmp_path, "block-load", block=30)
    eventually(lambda: (engine.scout / "plugins" / "s" / "calls.log").exists(), what="load")
    time.sleep(0.3)  # the loop is now blocked in the plugin's time.sleep(30)
    code = _stop_within(engine, TIMEOUT + SLACK)
    assert code != 0, engine.output  # the orderly shutdown could not run: the deadline ended it
    assert "Thread" in engine.output or "File" in engine.output  # every thread's stack, logged


def test_the_second_signal_exits_at_once_even_while_the_loop_is_blocked(
    tmp_path: Path,
) -> None:
    engine = _engine(tmp_path, "block-unload", block=30)
    engine.wait_ready()
    engine.signal(signal.SIGTERM)
    eventually(lambda: "unload" in (engine.scout / "plugins" / "s" / "calls.log").read_text())
    time.sleep(0.2)  # the loop is now blocked in the plugin's unload
    code = _stop_within(engine, 1.0)
    assert code == 130, engine.output
