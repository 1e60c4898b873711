"""The anthropic built-in, driven through the engine against a fake Messages API (the real
anthropic SDK on the wire)."""

from __future__ import annotations

from typing import Any

from grambot import (
    ChatMessage,
    InferenceProvider,
    InferenceRequest,
    ToolCall,
)
from tests.builtin.conftest import POISON, WEATHER, Harness, ask
from tests.builtin.services import RETRY_AFTER, raises_clearly, service_failures
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import fake_fixture

KEY = "sk-ant-test-key-0123456789"


fake = fake_fixture(lambda: FakeAnthropic(KEY))


async def load(h: Harness, fake: FakeAnthropic, **extra: Any) -> InferenceProvider:
    provider: InferenceProvider = await h.load_service(
        "claude", "anthropic", "inference", KEY, **{"baseUrl": fake.url, **extra}
    )
    return provider


async def test_a_completion_goes_through_the_sdk(harness: Harness, fake: FakeAnthropic) -> None:
    provider = await load(harness, fake, model="claude-test", models=["claude-other"])
    assert provider.id == "claude" and provider.label == "Anthropic Claude"
    assert list(provider.models()) == ["claude-test", "claude-other"]
    answer = await provider.complete(ask("hello"))
    assert answer.text == "echo: hello"
    assert answer.tool_calls == () and answer.stop_reason == "end_turn"
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (12, 7)
    body = fake.bodies[-1]
    assert body["model"] == "claude-test" and body["max_tokens"] == 4096
    request = fake.requests[-1]
    assert KEY in (request.headers.get("x-api-key", "") + request.headers.get("authorization", ""))


async def test_tool_calls_are_mapped_both_ways(harness: Harness, fake: FakeAnthropic) -> None:
    provider = await load(harness, fake)
    call_id = fake.reply_tool_use("weather", {"city": "Oslo"}, text="Let me check.")
    first = await provider.complete(
        InferenceRequest(
            messages=[ChatMessage("system", "Be brief."), ChatMessage("user", "Weather in Oslo?")],
            tools=[WEATHER],
            model="claude-x",
            max_tokens=100,
        )
    )
    assert first.text == "Let me check." and first.stop_reason == "tool_use"
    assert first.tool_calls == (ToolCall(call_id, "weather", {"city": "Oslo"}),)
    sent = fake.bodies[-1]
    assert sent["system"] == "Be brief." and sent["max_tokens"] == 100
    assert sent["tools"] == [
        {
            "name": "weather",
            "description": "Weather for a city.",
            "input_schema": WEATHER.parameters,
        }
    ]

    second = await provider.complete(
        InferenceRequest(
            messages=[
                ChatMessage("user", "Weather in Oslo?"),
                ChatMessage("assistant", first.text, tool_calls=first.tool_calls),
                ChatMessage("tool", "-3 C, snow", tool_call_id=call_id),
            ],
            tools=[WEATHER],
        )
    )
    assert second.text == "echo: tool result -3 C, snow"
    messages = fake.bodies[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][1] == {
        "type": "tool_use",
        "id": call_id,
        "name": "weather",
        "input": {"city": "Oslo"},
    }
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": call_id, "content": "-3 C, snow", "is_error": False}
    ]


async def test_environment_credentials_are_ignored(
    harness: Harness, fake: FakeAnthropic, poisoned_env: str
) -> None:
    provider = await load(harness, fake)
    assert (await provider.complete(ask("hi"))).text == "echo: hi"
    headers = fake.requests[-1].headers
    assert POISON not in " ".join(headers.values())
    assert fake.url.startswith("http://127.0.0.1")  # the request reached the fake, not the env URL


@service_failures(
    "claude",
    rate_limits=[RETRY_AFTER],
    malformed=[
        (
            {"malformed": b'{"id": "msg_1", "content": [tru'},
            "bad-response",
            ["unexpected answer"],
        ),
        ({"malformed": b'{"unexpected": true}'}, "bad-response", ["unexpected answer"]),
        (
            {"malformed": b"<html>502</html>", "type": "text/html"},
            "bad-response",
            ["unexpected answer"],
        ),
    ],
)
async def test_failures_are_clear_and_leave_the_instance_loaded(
    harness: Harness, fake: FakeAnthropic, script: dict[str, Any], kind: str, words: list[str]
) -> None:
    provider = await load(harness, fake, timeout=0.3)
    fake.play(script, secret_message=f"bad key {KEY}")
    error = await raises_clearly(
        harness, provider.complete(ask("hello")), (kind, "claude", "anthropic"), words, KEY
    )
    assert KEY not in repr(error.args)
    assert error.__cause__ is None and error.__suppress_context__
    assert (await provider.complete(ask("later"))).text == "echo: later"


async def test_a_missing_key_fails_the_load_with_the_fix(
    harness: Harness, fake: FakeAnthropic
) -> None:
    await harness.load("claude", "anthropic", baseUrl=fake.url)
    assert not harness.loaded("claude")
    assert "grambot secrets set claude apiKey" in harness.failure("claude")


async def test_bad_settings_are_rejected_with_their_json_path(harness: Harness) -> None:
    await harness.load("claude", "anthropic", maxTokens=0, secrets={"apiKey": KEY})
    assert "maxTokens" in harness.failure("claude")
