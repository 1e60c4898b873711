"""A workspace as a grambot from before `.scout/state.db` left it, started by this one: the
conversations it kept as JSON files under `.scout/bot/conversations/` become the chats'
histories (once; the files are kept aside), and the telegram built-in resumes polling after
the update its old offset file names. The real file tree, the real telegram built-in on the
fake Bot API, the real SQLite file."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from grambot import CONNECTOR_MESSAGE
from grambot.bot import attach_bot
from grambot.engine import Engine
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import Workspace, entry, eventually_async

TOKEN = "123456:AAH-secret-token-for-legacy"
BOT_ID = 123456
OWNER = 111
MAIL_CHAT = "ada@example.com"  # unsafe in a path: the old store hashed it
LAST_HANDLED = 500  # the old offset file's lastUpdateId


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        server.add_bot(TOKEN)
        yield server


def _old_conversation(*pairs: tuple[str, str]) -> dict[str, Any]:
    """The old file store's format: dataclasses.asdict of each ChatMessage."""
    messages = []
    for question, answer in pairs:
        for role, content in (("user", question), ("assistant", answer)):
            messages.append(
                {
                    "role": role,
                    "content": content,
                    "tool_calls": [],
                    "tool_call_id": None,
                    "is_error": False,
                }
            )
    return {"messages": messages}


def _hashed(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _old_tree(workspace: Workspace) -> Path:
    """What the old grambot left: two conversation files (one under hashed names) and the
    telegram instance's polling position."""
    folder = workspace.scout / "bot" / "conversations"
    (folder / "tg").mkdir(parents=True)
    (folder / "tg" / f"{OWNER}.json").write_text(
        json.dumps(_old_conversation(("hi", "hello"), ("how are you?", "fine")), indent=1)
    )
    (folder / "chat").mkdir()
    (folder / "chat" / f"{_hashed(MAIL_CHAT)}.json").write_text(
        json.dumps(_old_conversation(("remember me", "sure")), indent=1)
    )
    offsets = workspace.data_dir("tg")
    offsets.mkdir(parents=True, exist_ok=True)
    (offsets / "telegram-state.json").write_text(
        json.dumps({"botId": BOT_ID, "lastUpdateId": LAST_HANDLED})
    )
    return folder


async def _start(workspace: Workspace, fake: FakeTelegram) -> Engine:
    telegram = fake.plugin_settings(OWNER, requestTimeout=3.0)
    plugins = [entry("tg", "telegram", **telegram), entry("chat", "fakechat")]
    plugins.append(entry("brain", "scripted"))
    engine = Engine(workspace.root, entry_points=False)
    attach_bot(engine)
    engine.secrets.set("tg", "botToken", TOKEN)
    await engine.event_engine.start()
    await engine.apply(workspace.write(plugins, agent={"inference": "brain"}))
    return engine


def _telegram_replies(fake: FakeTelegram) -> list[str]:
    return [str(s["text"]) for s in fake.sent(TOKEN, "sendMessage")]


async def _ask_mail_chat(engine: Engine) -> str:
    connector = engine.registries.connectors.get("chat")
    assert connector is not None
    before = len(connector.sent)
    payload = {"chatId": MAIL_CHAT, "text": "count", "messageId": f"m{before}"}
    engine.queue.emit("fakechat", "chat", CONNECTOR_MESSAGE, payload)
    await eventually_async(lambda: len(connector.sent) > before)
    return str(connector.sent[-1][1])


async def test_an_old_workspace_keeps_its_conversations_and_polling_position(
    workspace: Workspace, fake: FakeTelegram
) -> None:
    folder = _old_tree(workspace)
    assert not (workspace.scout / "state.db").exists()
    fake.ignore_offset = True  # the server sends again what the old grambot had handled
    fake.push_message(TOKEN, "already answered by the old grambot", update_id=LAST_HANDLED - 1)
    fake.push_message(TOKEN, "count", user_id=OWNER, update_id=LAST_HANDLED + 1)

    engine = await _start(workspace, fake)
    try:
        await eventually_async(lambda: len(_telegram_replies(fake)) >= 1)
        fake.ignore_offset = False  # both were handed out; from now on polls say where they are
        polls = len(fake.bots[TOKEN].offsets)  # (a poll made before hands out updates once)
        await eventually_async(lambda: len(fake.bots[TOKEN].offsets) > polls)
        assert await _ask_mail_chat(engine) == "2 user messages"  # under its real ids now
        await asyncio.sleep(0.3)  # nothing else is answered
        assert _telegram_replies(fake) == ["3 user messages"]  # 2 imported + this one
    finally:
        await engine.stop(drain_deadline=1.0)
    assert not folder.exists()
    kept = workspace.scout / "bot" / "conversations.imported"
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*.json")) == [
        f"chat/{_hashed(MAIL_CHAT)}.json",
        f"tg/{OWNER}.json",
    ]
    position = json.loads((workspace.data_dir("tg") / "telegram-state.json").read_text())
    assert position == {"botId": BOT_ID, "lastUpdateId": LAST_HANDLED + 1}

    # the next start imports nothing again; the histories go on from where they were
    fake.push_message(TOKEN, "count", user_id=OWNER, update_id=LAST_HANDLED + 2)
    engine = await _start(workspace, fake)
    try:
        await eventually_async(lambda: len(_telegram_replies(fake)) >= 2)
        assert _telegram_replies(fake)[1] == "4 user messages"
        assert await _ask_mail_chat(engine) == "3 user messages"
    finally:
        await engine.stop(drain_deadline=1.0)
    assert not (workspace.scout / "bot" / "conversations.imported.1").exists()
