"""Durable state (issue 16): the inbox path and api.store, each beside a baseline of the same run.

Inbox: a real Engine on a temporary workspace with `bench/plugins/chatloop` (a connector whose
replies resolve waiters or count, and a model that answers at once). A message goes
`api.inbox.accept` → the bot's chat worker (claim + history, model, mark_sending) → the
connector → done + conversation (with the chat's next claim: one operation). Latency: one
message at a time, from the accept call to its `done` being committed (a no-op queued to the
database after the reply is a barrier behind the bot's step). Baseline: one raw `INSERT` +
`COMMIT` of the same row on a sqlite3 connection with the same settings (WAL,
synchronous=NORMAL), timed alike. Throughput: messages accepted across
100 chats at once until every one is done (group commit shares transactions between chats);
baseline: raw INSERT + COMMIT per row, as fast as one thread goes.

api.store: `await set` then `await get` of distinct keys, 1000 at a time concurrently (group
commit) and one at a time, beside `api.cache` (in memory) doing the same.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_PLUGINS, Result, bounded, percentile
from grambot.bot import attach_bot
from grambot.engine import Engine
from grambot.registries.connectors import IncomingMessage

GROUP = "state"


def _workspace(root: Path) -> None:
    scout = root / ".scout"
    scout.mkdir(parents=True)
    settings = {
        "pluginDirs": [str(BENCH_PLUGINS)],
        "plugins": [{"instanceId": "loop", "pluginId": "bench-chatloop", "settings": {}}],
        "agent": {"inference": "loop", "maxHistory": 10},
    }
    (scout / "settings.json").write_text(json.dumps(settings))


async def _engine(root: Path) -> tuple[Engine, Any]:
    engine = Engine(root, builtin_dir=None, entry_points=False)
    attach_bot(engine)  # the bot answers what the loop connector accepts
    await engine.event_engine.start()
    await engine.apply(engine.read_settings())
    connector = engine.registries.connectors.get("loop")
    assert connector is not None, "the bench plugin did not load"
    return engine, getattr(connector, "wrapped", connector)


async def _done_barrier(engine: Engine) -> None:
    for _ in range(3):
        await asyncio.sleep(0)  # the bot submits mark_done right after the send returns
    await engine.storage.db.run(lambda conn: None)


async def _latency(root: Path, n: int) -> list[float]:
    engine, loop_plugin = await _engine(root)
    loop = asyncio.get_running_loop()
    out = []
    try:
        for i in range(n):
            waiter: asyncio.Future[float] = loop.create_future()
            loop_plugin.waiters[f"c0/m{i}"] = waiter
            start = time.perf_counter()
            await loop_plugin.api.inbox.accept(IncomingMessage("loop", "c0", "u", "hi", f"m{i}"))
            await waiter
            await _done_barrier(engine)
            out.append(time.perf_counter() - start)
        assert loop_plugin.sent == n and not await engine.storage.inbox.counts()  # all done
    finally:
        await engine.stop(drain_deadline=1.0)
    return out


async def _throughput(root: Path, n: int, chats: int = 100) -> tuple[float, float]:
    engine, loop_plugin = await _engine(root)
    try:
        loop_plugin.sent, loop_plugin.expected = 0, n
        loop_plugin.all_sent = asyncio.Event()
        batches0, ops0 = engine.storage.db.batches, engine.storage.db.ops
        start = time.perf_counter()
        accept = loop_plugin.api.inbox.accept
        for lo in range(0, n, 500):  # a connector's burst: accepts in flight together
            await asyncio.gather(
                *(
                    accept(IncomingMessage("loop", f"c{i % chats}", "u", "hi", f"t{i}"))
                    for i in range(lo, min(n, lo + 500))
                )
            )
        await loop_plugin.all_sent.wait()
        await _done_barrier(engine)
        elapsed = time.perf_counter() - start
        assert loop_plugin.sent == n and not await engine.storage.inbox.counts()  # all done
        per_commit = (engine.storage.db.ops - ops0) / max(1, engine.storage.db.batches - batches0)
    finally:
        await engine.stop(drain_deadline=1.0)
    return n / elapsed, per_commit


def _raw(path: Path, n: int) -> list[float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, connector TEXT,"
        " chat TEXT, message_key TEXT, state TEXT, message TEXT, accepted_at REAL,"
        " updated_at REAL)"
    )
    data = json.dumps({"connector_id": "loop", "chat_id": "c0", "text": "hi"})
    out = []
    try:
        for i in range(n):
            start = time.perf_counter()
            conn.execute("BEGIN")
            conn.execute(
                "INSERT INTO inbox (connector, chat, message_key, state, message, accepted_at,"
                " updated_at) VALUES ('loop', 'c0', ?, 'accepted', ?, 0, 0)",
                (f"m{i}", data),
            )
            conn.execute("COMMIT")
            out.append(time.perf_counter() - start)
    finally:
        conn.close()
    return out


async def _store_ops(root: Path, n: int) -> dict[str, float]:
    engine, loop_plugin = await _engine(root)
    api = loop_plugin.api
    rates: dict[str, float] = {}
    try:
        start = time.perf_counter()
        for lo in range(0, n, 1000):
            await asyncio.gather(*(api.store.set(f"k{i}", i) for i in range(lo, min(n, lo + 1000))))
        rates["store_set_concurrent"] = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for lo in range(0, n, 1000):
            await asyncio.gather(*(api.store.get(f"k{i}") for i in range(lo, min(n, lo + 1000))))
        rates["store_get_concurrent"] = n / (time.perf_counter() - start)
        few = max(1, n // 10)
        start = time.perf_counter()
        for i in range(few):
            await api.store.set(f"s{i}", i)
        rates["store_set_sequential"] = few / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(few):
            await api.store.get(f"s{i}")
        rates["store_get_sequential"] = few / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(n):
            api.cache.set(f"k{i}", i)
        rates["cache_set"] = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(n):
            api.cache.get(f"k{i}")
        rates["cache_get"] = n / (time.perf_counter() - start)
    finally:
        await engine.stop(drain_deadline=1.0)
    return rates


def _fresh(tmp: Path, name: str) -> Path:
    root = tmp / name
    _workspace(root)
    return root


def run(quick: bool) -> list[Result]:
    n_lat = 200 if quick else 2000
    n_tp = 500 if quick else 10_000
    n_store = 2000 if quick else 20_000
    with tempfile.TemporaryDirectory(prefix="grambot-bench-state-") as tmp_name:
        tmp = Path(tmp_name)
        raw_lat = _raw(tmp / "raw-lat.db", n_lat)
        lat = asyncio.run(_latency(_fresh(tmp, "lat"), n_lat))
        raw_lat += _raw(tmp / "raw-lat2.db", n_lat)  # before and after: the same conditions
        raw_tp_runs = _raw(tmp / "raw-tp.db", n_tp)
        raw_tp = n_tp / sum(raw_tp_runs)
        tp, per_commit = asyncio.run(_throughput(_fresh(tmp, "tp"), n_tp))
        rates = asyncio.run(_store_ops(_fresh(tmp, "store"), n_store))
    results = []
    for p, limit in ((50, 1.0), (99, 10.0)):
        value = percentile(lat, p) * 1000
        baseline = percentile(raw_lat, p) * 1000
        results.append(
            bounded(
                f"inbox accept→done p{p}, trivial model (vs a raw sqlite INSERT+COMMIT)",
                value,
                baseline,
                limit=limit,
                unit="ms",
                digits=3,
                notes=f"{n_lat} messages one at a time: accept; claim + history; model; "
                "mark_sending; send; done + conversation + the next claim (4 operations on the "
                "database, each a hand-off to its thread and a commit)",
                group=GROUP,
            )
        )
    results.append(
        bounded(
            "inbox throughput, 100 chats, trivial model, group commit "
            "(vs raw sqlite INSERT+COMMIT per row)",
            tp,
            raw_tp,
            limit=5000,
            unit="messages/s",
            digits=None,
            at_least=True,
            notes=f"{n_tp} messages accepted in bursts of 500; {per_commit:.1f} operations "
            "per commit on average",
            group=GROUP,
            details={"ops_per_commit": round(per_commit, 1)},
        )
    )
    for op in ("set", "get"):
        value = rates[f"store_{op}_concurrent"]
        baseline = rates[f"cache_{op}"]
        results.append(
            bounded(
                f"api.store {op}, 1000 concurrent (vs api.cache {op}, in memory)",
                value,
                baseline,
                limit=10_000,
                unit="ops/s",
                digits=None,
                at_least=True,
                notes=f"{n_store} keys; one at a time: "
                f"{rates[f'store_{op}_sequential']:,.0f} ops/s (a thread hand-off each)",
                group=GROUP,
                details={k: round(v) for k, v in rates.items()},
            )
        )
    return results
