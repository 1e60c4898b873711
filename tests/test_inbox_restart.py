"""No message is lost across a graceful restart: the real telegram built-in on the
fake Bot API, the scripted model, two engines one after the other on one workspace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from grambot.bot import attach_bot
from grambot.engine import Engine
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import Workspace, entry, eventually_async

TOKEN = "123456:AAH-secret-token-for-restarts"
OWNER = 111


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        server.add_bot(TOKEN)
        yield server


def plugins(fake: FakeTelegram) -> list[dict[str, Any]]:
    telegram = fake.plugin_settings(OWNER, requestTimeout=3.0, backoffInitial=0.05, backoffMax=0.2)
    return [entry("tg", "telegram", **telegram), entry("brain", "scripted")]


async def start(workspace: Workspace, fake: FakeTelegram) -> Engine:
    engine = Engine(workspace.root, entry_points=False)
    attach_bot(engine)
    engine.secrets.set("tg", "botToken", TOKEN)
    await engine.event_engine.start()
    await engine.apply(workspace.write(plugins(fake), agent={"inference": "brain"}))
    return engine


def replies(fake: FakeTelegram) -> list[str]:
    return [str(s["text"]) for s in fake.sent(TOKEN, "sendMessage")]


async def test_a_graceful_restart_during_a_model_call_loses_no_message(
    workspace: Workspace, fake: FakeTelegram
) -> None:
    """The message being answered when the engine stops, and those queued behind it in its chat,
    are answered by the next engine, each exactly once."""
    engine = await start(workspace, fake)
    try:
        fake.push_message(TOKEN, "nap 3", user_id=OWNER)
        fake.push_message(TOKEN, "second", user_id=OWNER)
        fake.push_message(TOKEN, "third", user_id=OWNER)
        # all three fetched by the poller (the next getUpdates confirms them upstream)
        await eventually_async(
            lambda: len(fake.bots[TOKEN].offsets) >= 2 and not fake.bots[TOKEN].pending
        )
        await asyncio.sleep(0.3)  # the model is thinking about "nap 3"
    finally:
        await engine.stop(drain_deadline=0.2)
    assert replies(fake) == []

    engine = await start(workspace, fake)
    try:
        await eventually_async(lambda: len(replies(fake)) >= 3)
        await asyncio.sleep(0.3)  # nothing more comes
        assert replies(fake) == ["ok: nap 3", "ok: second", "ok: third"]
    finally:
        await engine.stop(drain_deadline=1.0)


async def test_a_restart_after_the_replies_sends_nothing_again(
    workspace: Workspace, fake: FakeTelegram
) -> None:
    engine = await start(workspace, fake)
    try:
        for n in range(5):
            fake.push_message(TOKEN, f"m{n}", user_id=OWNER)
        await eventually_async(lambda: len(replies(fake)) >= 5)
    finally:
        await engine.stop(drain_deadline=1.0)
    engine = await start(workspace, fake)
    try:
        fake.push_message(TOKEN, "after", user_id=OWNER)
        await eventually_async(lambda: len(replies(fake)) >= 6)
        await asyncio.sleep(0.3)
        assert replies(fake) == [*(f"ok: m{n}" for n in range(5)), "ok: after"]
    finally:
        await engine.stop(drain_deadline=1.0)
