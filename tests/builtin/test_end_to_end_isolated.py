"""The built-ins end to end with each one in a process of its own (`"isolation": "process"`,
docs/isolation.md): the same conversation as test_end_to_end, on the real SDKs against the
fakes; Telegram accepts into the engine's inbox from its child, Claude and Brave answer from
theirs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from grambot.engine import Engine
from tests.builtin.conftest import Harness
from tests.builtin.test_end_to_end import OWNER, TOKEN, Fakes, fakes  # noqa: F401 (fixture)
from tests.fakes.telegram_api import PNG_1PX
from tests.helpers import Workspace, entry, eventually_async

pytest.importorskip("grambot.bot", reason="the engine has no bot routing here")


def isolated(instance_id: str, plugin_id: str, **settings: Any) -> dict[str, Any]:
    return {**entry(instance_id, plugin_id, **settings), "isolation": "process"}


@pytest.fixture
async def running(workspace: Workspace, fakes: Fakes) -> AsyncIterator[Harness]:  # noqa: F811
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
        isolated(
            "tg",
            "telegram",
            baseUrl=fakes.telegram.base_url,
            baseFileUrl=fakes.telegram.base_file_url,
            allowedUserIds=[OWNER],
            pollTimeout=1,
        ),
        isolated("claude", "anthropic", baseUrl=fakes.anthropic.url, maxRetries=0),
        isolated("search", "brave-search", baseUrl=fakes.brave.url, maxRetries=0),
        isolated("images", "gpt-image", baseUrl=f"{fakes.openai.url}/v1", maxRetries=0),
    ]
    await engine.event_engine.start()
    await engine.apply(workspace.write(plugins, agent={"inference": "claude"}))
    harness = Harness(engine, workspace)
    try:
        for instance_id in ("tg", "claude", "search", "images"):
            assert harness.loaded(instance_id), harness.failure(instance_id)
            status = engine.instance(instance_id).to_status()["isolation"]  # type: ignore[union-attr]
            assert status["mode"] == "process" and status["pid"], status
        yield harness
    finally:
        await engine.stop(drain_deadline=2.0)


async def test_a_message_is_answered_with_the_help_of_a_tool(
    running: Harness,
    fakes: Fakes,  # noqa: F811
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


async def test_an_image_command_sends_a_photo(running: Harness, fakes: Fakes) -> None:  # noqa: F811
    fakes.telegram.push_message(TOKEN, "/image a red square", user_id=OWNER)
    (photo,) = await eventually_async(lambda: fakes.telegram.sent(TOKEN, "sendPhoto"), timeout=10)
    assert photo["photo"] == PNG_1PX
    assert photo["caption"] == "Here is your image for: a red square"


async def test_a_failing_model_gets_an_apology_not_a_secret(
    running: Harness,
    fakes: Fakes,  # noqa: F811
) -> None:
    fakes.anthropic.fail(401, message=f"invalid x-api-key: {fakes.anthropic.api_key}")
    fakes.telegram.push_message(TOKEN, "hello?", user_id=OWNER)
    (reply,) = await eventually_async(lambda: fakes.telegram.sent(TOKEN, "sendMessage"), timeout=10)
    assert reply["text"].startswith("Sorry,")
    assert fakes.anthropic.api_key not in reply["text"]
    assert running.loaded("claude") and running.loaded("tg")
