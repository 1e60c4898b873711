"""A whole conversation through the engine's bot, every built-in on its real SDK against the fakes:
a Telegram update → the bot → Claude (which calls web_search on Brave) → the reply on Telegram;
`/image` → gpt-image → a photo on Telegram. Runs where the engine has bot routing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from grambot.engine import Engine
from tests.builtin.conftest import Harness
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.brave_api import FakeBrave
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import PNG_1PX, FakeTelegram
from tests.helpers import Workspace, entry, eventually_async

pytest.importorskip("grambot.bot", reason="the engine has no bot routing here")

TOKEN = "777:end-to-end-token"
OWNER = 111


class Fakes:
    def __init__(self) -> None:
        self.telegram = FakeTelegram()
        self.telegram.add_bot(TOKEN)
        self.anthropic = FakeAnthropic("ant-key-e2e")
        self.brave = FakeBrave("brave-key-e2e")
        self.openai = FakeOpenAI("openai-key-e2e")
        self.all = (self.telegram, self.anthropic, self.brave, self.openai)


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    servers = Fakes()
    for server in servers.all:
        server.start()
    try:
        yield servers
    finally:
        for server in servers.all:
            server.stop()


@pytest.fixture
async def running(workspace: Workspace, fakes: Fakes) -> AsyncIterator[Harness]:
    engine = Engine(workspace.root, entry_points=False)  # with the bot
    secrets = {
        ("tg", "botToken"): TOKEN,
        ("claude", "apiKey"): fakes.anthropic.api_key,
        ("search", "apiKey"): fakes.brave.token,
        ("images", "apiKey"): fakes.openai.api_key,
    }
    for (instance_id, key), value in secrets.items():
        engine.secrets.set(instance_id, key, value)
    plugins: list[dict[str, Any]] = [
        entry(
            "tg",
            "telegram",
            baseUrl=fakes.telegram.base_url,
            baseFileUrl=fakes.telegram.base_file_url,
            allowedUserIds=[OWNER],
            pollTimeout=1,
        ),
        entry("claude", "anthropic", baseUrl=fakes.anthropic.url, maxRetries=0),
        entry("search", "brave-search", baseUrl=fakes.brave.url, maxRetries=0),
        entry("images", "gpt-image", baseUrl=f"{fakes.openai.url}/v1", maxRetries=0),
    ]
    await engine.event_engine.start()
    await engine.apply(workspace.write(plugins, agent={"inference": "claude"}))
    harness = Harness(engine, workspace)
    try:
        for instance_id in ("tg", "claude", "search", "images"):
            assert harness.loaded(instance_id), harness.failure(instance_id)
        yield harness
    finally:
        await engine.stop(drain_deadline=2.0)


async def test_a_message_is_answered_with_the_help_of_a_tool(
    running: Harness, fakes: Fakes
) -> None:
    fakes.anthropic.reply_tool_use("web_search", {"query": "grambot", "count": 1})
    fakes.telegram.push_message(TOKEN, "what is grambot?", user_id=OWNER)
    sent = await eventually_async(lambda: fakes.telegram.sent(TOKEN, "sendMessage"), timeout=10)
    reply = sent[0]
    assert reply["text"].startswith("echo: tool result Web results for 'grambot':")
    assert json.loads(reply["reply_parameters"])["message_id"]
    assert fakes.brave.requests[-1].query["q"] == "grambot"
    second = fakes.anthropic.bodies[-1]
    assert {t["name"] for t in second["tools"]} >= {"web_search", "image_generate"}


async def test_an_image_command_sends_a_photo(running: Harness, fakes: Fakes) -> None:
    fakes.telegram.push_message(TOKEN, "/image a red square", user_id=OWNER)
    (photo,) = await eventually_async(lambda: fakes.telegram.sent(TOKEN, "sendPhoto"), timeout=10)
    assert photo["photo"] == PNG_1PX
    assert photo["caption"] == "Here is your image for: a red square"


async def test_a_failing_model_gets_an_apology_not_a_secret(running: Harness, fakes: Fakes) -> None:
    fakes.anthropic.fail(401, message=f"invalid x-api-key: {fakes.anthropic.api_key}")
    fakes.telegram.push_message(TOKEN, "hello?", user_id=OWNER)
    (reply,) = await eventually_async(lambda: fakes.telegram.sent(TOKEN, "sendMessage"), timeout=10)
    assert reply["text"].startswith("Sorry,")
    assert fakes.anthropic.api_key not in reply["text"]
    assert running.loaded("claude") and running.loaded("tg")
