"""The bot on the durable inbox, through a real engine and a real `.scout/state.db`: what it
asks of the database per message, and what it cleans up."""

from __future__ import annotations

import asyncio
from typing import Any

from grambot import CONNECTOR_MESSAGE
from grambot.engine import Engine
from tests.helpers import Workspace, entry, eventually_async

PLUGINS = [entry("chat", "fakechat"), entry("brain", "scripted")]


async def test_the_bots_own_status_refresh_does_not_rescan_the_inbox(
    engine: Engine, workspace: Workspace
) -> None:
    """Refreshed inbox counts go to status.json through the engine's change listeners; the bot
    listens there too (for connectors coming back). Its own news must not make it scan the
    whole inbox for waiting chats again, over and over while messages flow."""
    await engine.apply(workspace.write(PLUGINS, agent={"inference": "brain"}))
    scans = 0
    inbox = engine.storage.inbox
    pending_chats = inbox.pending_chats

    def counted() -> Any:
        nonlocal scans
        scans += 1
        return pending_chats()

    inbox.pending_chats = counted  # type: ignore[method-assign]
    connector = engine.registries.connectors.get("chat")
    assert connector is not None
    for n in range(60):
        payload = {"chatId": f"c{n % 3}", "text": f"m{n}", "messageId": f"m{n}"}
        engine.queue.emit("fakechat", "chat", CONNECTOR_MESSAGE, payload)
        await asyncio.sleep(0.01)  # a steady trickle: the counts change all along
    await eventually_async(lambda: len(connector.sent) == 60)
    await asyncio.sleep(0.6)  # two refresh periods after the last reply
    assert scans == 0


async def test_a_message_costs_four_operations_on_the_database(
    engine: Engine, workspace: Workspace
) -> None:
    """accept; claim + history; sending; done + conversation + the next claim: each one
    operation (grambot.storage.ChatTurns), so a lone message costs four hand-offs to the
    database's thread, and a message in a busy chat three."""
    await engine.apply(workspace.write(PLUGINS, agent={"inference": "brain"}))
    connector = engine.registries.connectors.get("chat")
    assert connector is not None
    db = engine.storage.db
    refreshes = 0  # inbox and job counts for status.json (two operations, every 0.25 s)
    counts = engine.storage.inbox.counts

    def counted(connector_id: str | None = None) -> Any:
        nonlocal refreshes
        refreshes += 1
        return counts(connector_id)

    engine.storage.inbox.counts = counted  # type: ignore[method-assign]
    await eventually_async(lambda: engine.retention.passes >= 1)  # the start's own work is over
    await asyncio.sleep(0.05)
    await db.run(lambda conn: None)
    before = db.ops
    for n in range(10):
        payload = {"chatId": "c", "text": f"m{n}", "messageId": f"m{n}"}
        engine.queue.emit("fakechat", "chat", CONNECTOR_MESSAGE, payload)
        await eventually_async(lambda n=n: len(connector.sent) == n + 1)
        await asyncio.sleep(0.02)  # its done is recorded right after the send
    await db.run(lambda conn: None)
    used = db.ops - before - 1 - 2 * refreshes  # less the barrier and the refreshes
    assert used == 40, (used, refreshes)
