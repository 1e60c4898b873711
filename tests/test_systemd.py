"""grambot under systemd: the unit file, and the notify protocol spoken by a
real `grambot run` to a fake NOTIFY_SOCKET (a real AF_UNIX datagram socket, as systemd's)."""

from __future__ import annotations

import configparser
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import entry, eventually
from tests.runproc import EngineProcess, running, workspace_with

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "grambot.service"
WATCHDOG_USEC = 200_000  # pings every 0.1 s in these tests


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: every datagram with the time it arrived."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.received: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.received.append((time.monotonic(), data.decode()))

    def states(self, name: str) -> list[float]:
        """When a datagram holding the line `name` (e.g. "READY=1") arrived."""
        with self._lock:
            return [at for at, text in self.received if name in text.splitlines()]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _run(
    tmp_path: Path, address: str, plugins: list[dict[str, object]], **env: str
) -> tuple[EngineProcess, FakeSystemd]:
    fake = FakeSystemd(address)
    ws = workspace_with(tmp_path / "ws", plugins)
    environ = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(WATCHDOG_USEC), **env}
    return EngineProcess(ws, env=environ), fake


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_watchdog_and_stopping_reach_the_notify_socket(
    tmp_path: Path, abstract: bool
) -> None:
    address = f"@grambot-test-{uuid.uuid4().hex}" if abstract else str(tmp_path / "notify")
    engine, fake = _run(tmp_path, address, [entry("m", "marker")])
    try:
        engine.wait_ready()
        eventually(lambda: fake.states("READY=1"), what="READY=1")
        eventually(lambda: len(fake.states("WATCHDOG=1")) >= 5, what="5 watchdog pings")
        assert not fake.states("STOPPING=1")
        assert engine.stop() == 0, engine.output
        eventually(lambda: fake.states("STOPPING=1"), what="STOPPING=1")
        assert fake.states("READY=1")[0] < fake.states("STOPPING=1")[0]
        ready = fake.states("READY=1")[0]
        pings = [at for at in fake.states("WATCHDOG=1") if at > ready]
        gaps = sorted(b - a for a, b in itertools.pairwise(pings))
        # every WatchdogSec/2 (0.1 s here) on an idle engine (a loaded machine may delay one)
        assert 0.08 < gaps[len(gaps) // 2] < 0.2, gaps
    finally:
        engine.kill()
        fake.close()


def test_a_blocked_event_loop_stops_the_watchdog_pings(tmp_path: Path) -> None:
    # the plugin blocks the loop for 1.5 s, 0.3 s after it loaded (time.sleep in a task)
    plugins = [entry("s", "stubborn", mode="stall-once", block=1.5)]
    engine, fake = _run(tmp_path, str(tmp_path / "notify"), plugins)
    try:
        engine.wait_ready()
        engine.wait_for_log("event loop unblocked", timeout=10)
        eventually(lambda: len(fake.states("WATCHDOG=1")) >= 3, what="pings after the stall")
        pings = fake.states("WATCHDOG=1")
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) >= 1.3, f"pings went on while the loop was blocked: {gaps}"
    finally:
        assert engine.stop() == 0, engine.output
        fake.close()


def test_no_watchdog_pings_when_systemd_watches_another_process(tmp_path: Path) -> None:
    engine, fake = _run(tmp_path, str(tmp_path / "notify"), [], WATCHDOG_PID="1")
    try:
        engine.wait_ready()
        eventually(lambda: fake.states("READY=1"), what="READY=1")
        time.sleep(0.3)
        assert not fake.states("WATCHDOG=1")
    finally:
        assert engine.stop() == 0, engine.output
        fake.close()


def test_an_unreachable_notify_socket_is_reported_once_and_changes_nothing(
    tmp_path: Path,
) -> None:
    ws = workspace_with(tmp_path / "ws", [entry("m", "marker")])
    env = {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens"), "WATCHDOG_USEC": "100000"}
    with running(ws, env=env) as engine:
        time.sleep(0.3)  # a few failed pings
    assert engine.output.count("cannot notify systemd") == 1, engine.output


# -- the unit file ----------------------------------------------------------------------------


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value.strip())
    assert match, f"unexpected time span {value!r}"
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_the_unit_is_type_notify_with_a_watchdog_restarts_and_a_stop_timeout() -> None:
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert _seconds(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    shutdown = re.search(r"--shutdown-timeout[ =](\d+)", service["ExecStart"])
    assert shutdown, service["ExecStart"]
    assert _seconds(service["TimeoutStopSec"]) == float(shutdown.group(1)) + 15
    assert service["User"] not in ("", "root")
    assert re.search(r"\bgrambot run\b", service["ExecStart"])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    grambot = Path(sys.executable).parent / "grambot"
    if not os.access(grambot, os.X_OK):
        pytest.skip(f"no grambot script beside {sys.executable} to stand in for ExecStart")
    unit = tmp_path / "grambot.service"
    # ExecStart must name an existing executable: the installed /opt/grambot is not here
    unit.write_text(UNIT.read_text().replace("/opt/grambot/bin/grambot", str(grambot)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0 and "Failed to" in done.stderr and "grambot" not in done.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert "grambot.service" not in done.stderr, done.stderr  # e.g. "Unknown key", ignored
