"""3. Edit-to-loaded latency: from a settings.json write to the instance loaded in `grambot run`.

Each edit is a rename-save of .scout/settings.json (write a temporary file, `os.replace` it)
that changes the `seq` setting of one bench-ping instance; its load() sends `grambot <seq>` over
UDP. At the same time a separate process watching the same folder with raw watchfiles (small
debounce and step) sends `floor` when it is notified: the physical floor, measured the same way
and on the very same edits. The load itself is measured in-process (a reconcile that reloads the
bench-ping instance).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_PLUGINS, PYTHON, Result, child_env, median, percentile, ratio
from bench.startup import _grambot_argv
from grambot.app import watcher
from grambot.config.settings import load_settings
from grambot.engine import Engine

GROUP = "edit"
# The floor watches with grambot's own watchfiles parameters, so the ratio is grambot's overhead.
STEP_MS = watcher.STEP_MS
DEBOUNCE_MS = watcher.DEBOUNCE_MS
PICKUP_TIMEOUT = 5.0  # seconds an edit may take before we call it "not picked up"

_FLOOR_WATCHER = f"""
import socket, sys, watchfiles
folder, port = sys.argv[1], int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
only_settings = lambda change, path: path.endswith("settings.json")  # as grambot filters
for _ in watchfiles.watch(
    folder, debounce={DEBOUNCE_MS}, step={STEP_MS}, recursive=False, watch_filter=only_settings
):
    sock.sendto(b"floor", ("127.0.0.1", port))
"""


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.scout = root / ".scout"
        self.scout.mkdir(parents=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seq = 0
        self.pickup_timeout = PICKUP_TIMEOUT

    def write(self, seq: int) -> float:
        """Rename-save settings.json with `seq`; returns the perf_counter before the write."""
        data = {
            "pluginDirs": [str(BENCH_PLUGINS)],
            "plugins": [
                {
                    "instanceId": "ping",
                    "pluginId": "bench-ping",
                    "settings": {"port": self.port, "seq": seq},
                }
            ],
        }
        text = json.dumps(data, indent=2)
        tmp = self.scout / "settings.json.tmp"
        start = time.perf_counter()
        tmp.write_text(text)
        os.replace(tmp, self.scout / "settings.json")
        return start

    def receive(self, timeout: float) -> tuple[str, float] | None:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        data = self.sock.recv(256)
        return data.decode(), time.perf_counter()

    def drain(self) -> None:
        while self.receive(0) is not None:
            pass

    def edit(self, want_grambot: bool) -> tuple[float | None, float | None]:
        """One edit; seconds to the floor's and to grambot's notification (None: not seen)."""
        self.seq += 1
        start = self.write(self.seq)
        floor = grambot = None
        deadline = start + self.pickup_timeout
        while (floor is None or (want_grambot and grambot is None)) and (
            left := deadline - time.perf_counter()
        ) > 0:
            got = self.receive(left)
            if got is None:
                break
            text, at = got
            if text == "floor" and floor is None:
                floor = at - start
            elif text == f"grambot {self.seq}":
                grambot = at - start
        return floor, grambot


def _load_itself(root: Path, port: int, times: int) -> float:
    """Median seconds of a reconcile that reloads the bench-ping instance (in-process)."""
    ws = root / "inproc"
    (ws / ".scout").mkdir(parents=True)

    def settings(seq: int) -> Any:
        data = {
            "pluginDirs": [str(BENCH_PLUGINS)],
            "plugins": [
                {
                    "instanceId": "ping",
                    "pluginId": "bench-ping",
                    "settings": {"port": port, "seq": seq},
                }
            ],
        }
        (ws / ".scout" / "settings.json").write_text(json.dumps(data))
        return load_settings(ws)

    async def go() -> list[float]:
        engine = Engine(ws, builtin_dir=None, entry_points=False)
        await engine.event_engine.start()
        out = []
        try:
            for seq in range(times + 1):
                s = settings(seq)
                start = time.perf_counter()
                await engine.apply(s)
                out.append(time.perf_counter() - start)
        finally:
            await engine.stop(drain_deadline=1.0)
        return out[1:]

    return median(asyncio.run(go()))


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def run(quick: bool) -> list[Result]:
    edits = 3 if quick else 25
    env = child_env()
    with tempfile.TemporaryDirectory(prefix="grambot-bench-") as tmp:
        bench = Bench(Path(tmp) / "ws")
        if quick:
            bench.pickup_timeout = 2.0
        bench.write(0)
        floor_proc = subprocess.Popen(
            [PYTHON, "-c", _FLOOR_WATCHER, str(bench.scout), str(bench.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        gb_proc = subprocess.Popen(
            [*_grambot_argv(), "run", "--workspace", str(bench.root), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # initial load of seq 0 by grambot; then edits until the floor watcher is live
            grambot_up = False  # the initial load of seq 0 (other messages are skipped)
            until = time.perf_counter() + 30.0
            while not grambot_up and (left := until - time.perf_counter()) > 0:
                got = bench.receive(left)
                if got is None:
                    break
                grambot_up = got[0] == "grambot 0"
            for _ in range(40):
                floor, _ = bench.edit(want_grambot=False)
                if floor is not None:
                    break
            else:
                raise RuntimeError("the raw watchfiles process never reported an edit")
            time.sleep(0.2)
            bench.drain()
            floors: list[float] = []
            grambots: list[float] = []
            picked_up = grambot_up
            for i in range(edits):
                floor, grambot = bench.edit(want_grambot=picked_up)
                if floor is not None:
                    floors.append(floor)
                if grambot is not None:
                    grambots.append(grambot)
                elif i == 0:
                    picked_up = False  # a broken watcher: do not wait PICKUP_TIMEOUT per edit
                time.sleep(0.15)
                bench.drain()
        finally:
            _stop(gb_proc)
            _stop(floor_proc)
            bench.sock.close()
        load = _load_itself(Path(tmp), bench.port, 5 if quick else 15)

    results: list[Result] = []
    for label, p in (("median", 50.0), ("p95", 95.0)):
        base = percentile(floors, p) * 1000
        target = f"value <= 1.5 x baseline + load ({load * 1000:.2f} ms)"
        name = f"edit-to-loaded latency {label} (vs raw watchfiles notification)"
        if not picked_up or len(grambots) < max(1, edits // 2):
            results.append(
                Result(
                    name=name,
                    value=None,
                    baseline=round(base, 2),
                    ratio=None,
                    target=target,
                    unit="ms",
                    meets=False,
                    group=GROUP,
                    notes=f"not available: grambot run loaded only {len(grambots)} of {edits} "
                    f"edits within {bench.pickup_timeout:g} s each (is its settings watcher "
                    f"broken?); floor over {len(floors)} edits, watchfiles step={STEP_MS} ms "
                    f"debounce={DEBOUNCE_MS} ms",
                )
            )
            continue
        value = percentile(grambots, p) * 1000
        limit = 1.5 * base + load * 1000
        results.append(
            Result(
                name=name,
                value=round(value, 2),
                baseline=round(base, 2),
                ratio=ratio(value, base),
                target=target,
                unit="ms",
                meets=value <= limit and len(grambots) == edits,  # a missed edit fails it
                notes=f"{len(grambots)} of {edits} edits seen by grambot (rename-saves); floor: a "
                f"raw watchfiles process, step={STEP_MS} ms debounce={DEBOUNCE_MS} ms, on the same "
                "edits",
                group=GROUP,
                details={"grambot_s": grambots, "floor_s": floors},
            )
        )
    return results
