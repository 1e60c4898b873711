"""What keeps a long-running bot small and responsive: idle chat workers end, a huge tool
result does not stall later turns, history is trimmed by size, unknown commands are answered."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from grambot import CONNECTOR_MESSAGE
from grambot.engine import Engine
from tests.helpers import Workspace, entry, eventually_async

BOT_PLUGINS = [
    entry("chat", "fakechat"),
    entry("brain", "scripted"),
    entry("probe-tool", "probe", tool_name="echo_tool"),
]


async def _bot(engine: Engine, workspace: Workspace, **agent: Any) -> None:
    await engine.apply(workspace.write(BOT_PLUGINS, agent={"inference": "brain", **agent}))


async def _say(engine: Engine, text: str, chat: str = "c1", timeout: float = 10.0) -> str:
    connector = engine.registries.connectors.get("chat")
    assert connector is not None
    before = len([s for s in connector.sent if s[0] == chat])
    engine.queue.emit("fakechat", "chat", CONNECTOR_MESSAGE, {"chatId": chat, "text": text})

    def reply() -> str:
        mine = [s for s in connector.sent if s[0] == chat]
        return str(mine[before][1]) if len(mine) > before else ""

    return await eventually_async(reply, timeout, what=f"a reply to {text!r}")


def _chat_workers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("bot:")]


async def test_idle_chat_workers_end_and_come_back(engine: Engine, workspace: Workspace) -> None:
    await _bot(engine, workspace, chatIdleSeconds=0.2)
    for n in range(30):
        assert await _say(engine, f"hi {n}", chat=f"chat{n}") == f"ok: hi {n}"
    await eventually_async(lambda: not _chat_workers(), timeout=4)
    assert _chat_workers() == []
    assert await _say(engine, "back again", chat="chat3") == "ok: back again"


async def test_a_huge_tool_result_is_stored_capped_and_never_stalls_the_loop(
    engine: Engine, workspace: Workspace
) -> None:
    await _bot(engine, workspace)
    first = await _say(engine, "!echo_tool big:30000000", timeout=30)
    assert first.startswith("tool result of "), first
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        for _ in range(3):
            await _say(engine, "count")
        tail = await _say(engine, "tooltail")
    finally:
        stop.set()
        await task
    assert max(gaps) < 0.1, f"the loop stalled {max(gaps):.3f} s on a later turn"
    length, _, end = tail.partition("|")
    assert int(length) <= 20_000, "the tool result went back to the model uncut"
    assert "cut" in end and "30000000" in end, end  # the model is told it was cut, and how


async def test_history_is_trimmed_by_size_as_well_as_count(
    engine: Engine, workspace: Workspace
) -> None:
    await _bot(engine, workspace, maxHistoryChars=3000, maxHistory=100)
    for n in range(20):
        await _say(engine, f"{n:02d} " + "y" * 400)
    # "count" sees only the user turns that fit in 3000 characters (each turn ~ 2 x 404)
    reply = await _say(engine, "count")
    users = int(reply.split()[0])
    assert 2 <= users <= 5, reply


async def test_an_unknown_command_is_answered_with_the_list(
    engine: Engine, workspace: Workspace
) -> None:
    await _bot(engine, workspace)
    reply = await _say(engine, "/frobnicate now")
    assert reply.startswith("Unknown command /frobnicate."), reply
    assert "/help" in reply and "/reset" in reply
    assert await _say(engine, "/help") != reply
