"""Retention on a real `.scout/state.db`: a running engine deletes what is kept only for a while
(agent.historyDays, done inbox entries, expired store values) when it starts and on schedule."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from grambot.bot import attach_bot
from grambot.engine import Engine
from grambot.registries.connectors import IncomingMessage
from grambot.registries.inference import ChatMessage
from grambot.storage import DONE_KEPT_DAYS, SqliteStorage
from tests.helpers import Workspace, entry, eventually_async

DAY = 86400.0


async def _seed(path: Path, tag: str, age_days: float) -> None:
    """Write, as if `age_days` ago: two conversation messages, a done inbox entry and a store
    value with a one-second TTL; through a connection of its own (the engine may run)."""
    state = SqliteStorage(path)
    then = time.time() - age_days * DAY
    for store in (state.conversations, state.inbox, state.kv):
        store.clock = lambda: then
    try:
        said = [ChatMessage("user", f"{tag}?"), ChatMessage("assistant", f"{tag}!")]
        await state.conversations.append("chat", tag, said, keep=100)
        await state.inbox.accept(IncomingMessage("chat", tag, "ada", f"{tag}?", f"{tag}-1"))
        entry = await state.inbox.claim_next("chat", tag)
        assert entry is not None
        await state.inbox.mark_sending(entry.id)
        await state.inbox.mark_done(entry.id)
        await state.kv.set("ns", tag, 1, ttl=1)
    finally:
        await state.close()


def _rows(path: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        return {
            "conversation": [r[0] for r in conn.execute("SELECT chat FROM conversation")],
            "inbox": [r[0] for r in conn.execute("SELECT chat FROM inbox")],
            "kv": [r[0] for r in conn.execute("SELECT key FROM kv")],
        }
    finally:
        conn.close()


async def test_old_rows_are_deleted_at_start_and_on_schedule(workspace: Workspace) -> None:
    path = workspace.scout / "state.db"
    await _seed(path, "fresh", 0)
    await _seed(path, "old", DONE_KEPT_DAYS + 1)  # beyond every retention period
    settings = workspace.write(
        [entry("chat", "fakechat"), entry("brain", "scripted")],
        agent={"inference": "brain", "historyDays": 2},
    )
    engine = Engine(workspace.root, builtin_dir=None, entry_points=False)
    attach_bot(engine)
    engine.retention.interval = 0.2
    await engine.event_engine.start()
    try:
        await engine.apply(settings)
        await eventually_async(lambda: engine.retention.passes >= 1)
        rows = _rows(path)
        assert rows["conversation"] == ["fresh", "fresh"]  # both messages of the old chat gone
        assert rows["inbox"] == ["fresh"]
        assert "old" not in rows["kv"]  # (fresh expires a second after it was written)

        await _seed(path, "later", 3)  # older than historyDays, younger than the inbox's days
        passes = engine.retention.passes
        await eventually_async(lambda: engine.retention.passes >= passes + 2)
        rows = _rows(path)
        assert "later" not in rows["conversation"]
        assert rows["inbox"] == ["fresh", "later"]  # done entries are kept DONE_KEPT_DAYS
        assert "later" not in rows["kv"]
    finally:
        await engine.stop()


async def test_without_history_days_conversations_are_kept(workspace: Workspace) -> None:
    path = workspace.scout / "state.db"
    await _seed(path, "old", 400)
    settings = workspace.write(
        [entry("chat", "fakechat"), entry("brain", "scripted")], agent={"inference": "brain"}
    )
    engine = Engine(workspace.root, builtin_dir=None, entry_points=False)
    attach_bot(engine)
    await engine.event_engine.start()
    try:
        await engine.apply(settings)
        await eventually_async(lambda: engine.retention.passes >= 1)
    finally:
        await engine.stop()
    rows = _rows(path)
    assert rows["conversation"] == ["old", "old"] and rows["inbox"] == [] and rows["kv"] == []
