"""7. Process isolation (issue 18): what `"isolation": "process"` costs, beside in process and
beside the raw transport, measured in the same run.

* spawn to `loaded`: one apply that loads one instance of `bench/plugins/isoprobe` (a tool,
  a sync `load`), median over rounds, each unloaded after; baseline: the same instance loaded
  in process. Target: <= 60 ms median.
* a tool call's round trip through the proxy (engine guard -> pipe -> child guard -> tool ->
  back), p50; baseline: a raw asyncio socketpair echo of a small length-prefixed frame between
  this process and a forked one, in alternating blocks. Target: <= 2x the raw echo and <= 1 ms.
  The same call in process is in `details`.
* memory of a trivial sandboxed instance: USS (what only it holds), with RSS and PSS in
  `details` (/proc/<pid>/smaps_rollup). Target: <= 10 MB USS.
* events emitted in the child, received by a handler in the engine: events per second over a
  burst; baseline: the same burst emitted in process. Target: >= 50k/s.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_PLUGINS, Result, median, percentile, ratio
from grambot.config.settings import load_settings
from grambot.engine import Engine
from grambot.registries.tools import ToolContext

GROUP = "isolation"
_HEADER = struct.Struct(">I")


def _write(root: Path, isolation: str | None, instance_id: str = "p") -> None:
    entry: dict[str, Any] = {"instanceId": instance_id, "pluginId": "isoprobe", "settings": {}}
    if isolation is not None:
        entry["isolation"] = isolation
    plugins = [entry] if isolation is not None else []
    data = {"pluginDirs": [str(BENCH_PLUGINS)], "plugins": plugins}
    (root / ".scout" / "settings.json").write_text(json.dumps(data))


async def _load_times(engine: Engine, root: Path, mode: str, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        _write(root, mode)
        settings = load_settings(root)
        started = time.perf_counter()
        await engine.apply(settings)
        times.append(time.perf_counter() - started)
        assert str(engine.state_of("p")) == "loaded", engine.instance("p")
        _write(root, None)
        await engine.apply(load_settings(root))
    return times


# the raw transport: an asyncio echo of length-prefixed frames in a fresh interpreter
_ECHO = """
import asyncio, socket, sys

async def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    while True:
        try:
            header = await reader.readexactly(4)
            body = await reader.readexactly(int.from_bytes(header, "big"))
        except asyncio.IncompleteReadError:
            return
        writer.write(header + body)

asyncio.run(main())
"""


async def _raw_echo(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, n: int
) -> list[float]:
    frame = _HEADER.pack(40) + b"x" * 40
    times = []
    for _ in range(n):
        started = time.perf_counter()
        writer.write(frame)
        header = await reader.readexactly(4)
        await reader.readexactly(_HEADER.unpack(header)[0])
        times.append(time.perf_counter() - started)
    return times


async def _tool_calls(engine: Engine, n: int) -> list[float]:
    tool = engine.registries.tools.get("echo")
    assert tool is not None
    context = ToolContext()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await tool.execute({"text": "hello"}, context)
        times.append(time.perf_counter() - started)
    return times


async def _events_per_second(engine: Engine, burst: int) -> float:
    done = asyncio.Event()
    count = 0

    def counted(event: Any) -> None:
        nonlocal count
        count += 1

    remove = engine.event_engine.register("bench.burst", counted)
    remove_end = engine.event_engine.register("bench.burst.end", lambda event: done.set())
    try:
        tool = engine.registries.tools.get("echo")
        assert tool is not None
        started = time.perf_counter()
        await tool.execute({"burst": burst}, ToolContext())
        await asyncio.wait_for(done.wait(), 60)
        elapsed = time.perf_counter() - started
    finally:
        remove()
        remove_end()
    assert count == burst, (count, burst)
    return burst / elapsed


def _memory(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
        for line in rollup:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0), "uss": uss}


async def _measure(root: Path, quick: bool) -> dict[str, Any]:
    rounds, calls, blocks = (3, 200, 2) if quick else (15, 2000, 5)
    burst = 5_000 if quick else 100_000
    engine = Engine(root, builtin_dir=None, entry_points=False)
    await engine.event_engine.start()
    try:
        await _load_times(engine, root, "process", 1)  # the zygote starts: not measured
        spawn = await _load_times(engine, root, "process", rounds)
        inproc = await _load_times(engine, root, "inprocess", rounds)

        _write(root, "inprocess")
        await engine.apply(load_settings(root))
        call_inproc = await _tool_calls(engine, calls)
        events_inproc = await _events_per_second(engine, burst)

        _write(root, "process")
        await engine.apply(load_settings(root))
        pid = engine.instance("p").to_status()["isolation"]["pid"]  # type: ignore[union-attr]
        await asyncio.sleep(0.2)
        memory = _memory(pid)

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        echo = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _ECHO, str(theirs.fileno()), pass_fds=[theirs.fileno()]
        )
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        call_proc: list[float] = []
        raw: list[float] = []
        for _ in range(blocks):  # alternating blocks: the machine's noise hits both
            call_proc += await _tool_calls(engine, calls // blocks)
            raw += await _raw_echo(writer, reader, calls // blocks)
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(echo.wait(), 10)
        events_proc = await _events_per_second(engine, burst)
    finally:
        await engine.stop(drain_deadline=1.0)
    return {
        "spawn": spawn,
        "inproc": inproc,
        "call_proc": call_proc,
        "call_inproc": call_inproc,
        "raw": raw,
        "memory": memory,
        "events_proc": events_proc,
        "events_inproc": events_inproc,
    }


def run(quick: bool) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="grambot-bench-isolation-") as tmp:
        root = Path(tmp)
        (root / ".scout").mkdir()
        m = asyncio.run(_measure(root, quick))
    spawn, inproc = median(m["spawn"]) * 1000, median(m["inproc"]) * 1000
    call = percentile(m["call_proc"], 50) * 1000
    raw = percentile(m["raw"], 50) * 1000
    call_inproc = percentile(m["call_inproc"], 50) * 1000
    memory = m["memory"]
    uss_mb = memory["uss"] / 1024 / 1024
    return [
        Result(
            "isolation: spawn to loaded (median)",
            spawn,
            inproc,
            ratio(spawn, inproc),
            "<= 60 ms",
            "ms",
            spawn <= 60,
            notes="baseline: the same instance loaded in process",
            group=GROUP,
            details={"process_ms": m["spawn"], "inprocess_ms": m["inproc"]},
        ),
        Result(
            "isolation: tool call round trip (p50)",
            call,
            raw,
            ratio(call, raw),
            "<= 2x a raw socketpair echo and <= 1 ms",
            "ms",
            call <= 2 * raw and call <= 1.0,
            notes=f"baseline: a raw asyncio socketpair echo; in process {call_inproc:.3f} ms",
            group=GROUP,
            details={
                "p99_ms": percentile(m["call_proc"], 99) * 1000,
                "raw_p99_ms": percentile(m["raw"], 99) * 1000,
                "inprocess_p50_ms": call_inproc,
            },
        ),
        Result(
            "isolation: USS of a trivial sandboxed instance",
            uss_mb,
            None,
            None,
            "<= 10 MB",
            "MB",
            uss_mb <= 10,
            notes=f"RSS {memory['rss'] / 2**20:.1f} MB, PSS {memory['pss'] / 2**20:.1f} MB",
            group=GROUP,
            details=memory,
        ),
        Result(
            "isolation: events emitted in the child",
            m["events_proc"],
            m["events_inproc"],
            ratio(m["events_proc"], m["events_inproc"]),
            ">= 50,000 events/s",
            "events/s",
            m["events_proc"] >= 50_000,
            notes="baseline: the same burst emitted in process",
            group=GROUP,
        ),
    ]
