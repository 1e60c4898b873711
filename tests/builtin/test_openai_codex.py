"""The openai-codex built-in, driven through the engine against a fake OpenAI API (the real openai
SDK on the wire), over both the Responses API and Chat Completions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from grambot import (
    ChatMessage,
    InferenceProvider,
    InferenceRequest,
    ServiceError,
    ToolCall,
)
from tests.builtin.conftest import POISON, WEATHER, Harness, ask
from tests.builtin.services import RETRY_AFTER, raises_clearly, service_failures
from tests.fakes.base import fake_fixture
from tests.fakes.openai_api import FakeOpenAI

KEY = "sk-proj-test-key-abcdefghijkl"
APIS = ["responses", "chat"]
PATHS = {"responses": "/v1/responses", "chat": "/v1/chat/completions"}


fake = fake_fixture(lambda: FakeOpenAI(KEY))


async def load(h: Harness, fake: FakeOpenAI, **extra: Any) -> InferenceProvider:
    provider: InferenceProvider = await h.load_service(
        "codex", "openai-codex", "inference", KEY, **{"baseUrl": f"{fake.url}/v1", **extra}
    )
    return provider


@pytest.mark.parametrize("api", APIS)
async def test_a_completion_goes_through_the_sdk(
    harness: Harness, fake: FakeOpenAI, api: str
) -> None:
    provider = await load(harness, fake, api=api, model="gpt-test")
    assert list(provider.models()) == ["gpt-test"] and provider.label == "OpenAI Codex"
    answer = await provider.complete(
        InferenceRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "hello")])
    )
    assert answer.text == "echo: hello" and answer.tool_calls == ()
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (21, 9)
    assert answer.model == "gpt-test"
    assert fake.requests[-1].path == PATHS[api]
    assert fake.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    body = fake.bodies[-1]
    if api == "responses":
        assert body["instructions"] == "Be brief." and body["store"] is False
        assert body["max_output_tokens"] == 4096
        assert body["input"] == [{"role": "user", "content": "hello"}]
    else:
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["max_completion_tokens"] == 4096


@pytest.mark.parametrize("api", APIS)
async def test_tool_calls_are_mapped_both_ways(
    harness: Harness, fake: FakeOpenAI, api: str
) -> None:
    provider = await load(harness, fake, api=api)
    call_id = fake.reply_tool_call("weather", {"city": "Oslo"})
    first = await provider.complete(ask("Weather in Oslo?", tools=[WEATHER]))
    assert first.tool_calls == (ToolCall(call_id, "weather", {"city": "Oslo"}),)
    assert first.stop_reason == "tool_calls"
    tools = fake.bodies[-1]["tools"]
    if api == "responses":
        assert tools == [
            {
                "type": "function",
                "name": "weather",
                "description": "Weather for a city.",
                "parameters": WEATHER.parameters,
                "strict": False,
            }
        ]
    else:
        assert tools == [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Weather for a city.",
                    "parameters": WEATHER.parameters,
                },
            }
        ]

    second = await provider.complete(
        InferenceRequest(
            [
                ChatMessage("user", "Weather in Oslo?"),
                ChatMessage("assistant", "", tool_calls=first.tool_calls),
                ChatMessage("tool", "-3 C", tool_call_id=call_id),
            ],
            tools=[WEATHER],
        )
    )
    assert second.text == "echo: tool result -3 C"
    body = fake.bodies[-1]
    if api == "responses":
        assert body["input"][1:] == [
            {
                "type": "function_call",
                "call_id": call_id,
                "name": "weather",
                "arguments": json.dumps({"city": "Oslo"}),
            },
            {"type": "function_call_output", "call_id": call_id, "output": "-3 C"},
        ]
    else:
        assert body["messages"][1]["tool_calls"][0]["id"] == call_id
        assert body["messages"][2] == {"role": "tool", "tool_call_id": call_id, "content": "-3 C"}


@pytest.mark.parametrize("api", APIS)
async def test_garbled_tool_arguments_are_kept_for_the_tool_to_report(
    harness: Harness, fake: FakeOpenAI, api: str
) -> None:
    provider = await load(harness, fake, api=api)
    call_id = fake.reply_tool_call("weather", '{"city": "Os')
    answer = await provider.complete(ask("x", tools=[WEATHER]))
    assert answer.tool_calls == (ToolCall(call_id, "weather", {"_unparsed": '{"city": "Os'}),)


async def test_environment_credentials_are_ignored(
    harness: Harness, fake: FakeOpenAI, poisoned_env: str
) -> None:
    provider = await load(harness, fake)
    assert (await provider.complete(ask("hi"))).text == "echo: hi"
    headers = fake.requests[-1].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert "openai-organization" not in headers and "openai-project" not in headers
    assert POISON not in " ".join(headers.values())


async def test_organization_and_project_come_from_settings(
    harness: Harness, fake: FakeOpenAI, poisoned_env: str
) -> None:
    provider = await load(harness, fake, organization="org-mine", project="proj-mine")
    await provider.complete(ask("hi"))
    headers = fake.requests[-1].headers
    assert headers["openai-organization"] == "org-mine"
    assert headers["openai-project"] == "proj-mine"


@pytest.mark.parametrize("api", APIS)
@service_failures(
    "codex",
    rate_limits=[RETRY_AFTER],
    bad_request=404,
    malformed=[
        ({"malformed": b'{"id": "x", "output": [tru'}, "bad-response", ["unexpected answer"]),
        ({"malformed": b'{"unexpected": true}'}, "bad-response", ["unexpected answer"]),
    ],
)
async def test_failures_are_clear_and_leave_the_instance_loaded(
    harness: Harness,
    fake: FakeOpenAI,
    api: str,
    script: dict[str, Any],
    kind: str,
    words: list[str],
) -> None:
    provider = await load(harness, fake, api=api, timeout=0.3)
    fake.play(script, secret_message=f"Incorrect API key provided: {KEY}")
    await raises_clearly(
        harness, provider.complete(ask("hello")), (kind, "codex", "openai"), words, KEY
    )
    assert (await provider.complete(ask("later"))).text == "echo: later"


async def test_the_deadline_bounds_a_whole_call(harness: Harness, fake: FakeOpenAI) -> None:
    provider = await load(harness, fake, deadline=0.3, timeout=5.0)
    fake.hang(2.0)
    with pytest.raises(ServiceError) as caught:
        await provider.complete(ask("slow"))
    assert caught.value.kind == "timeout" and "deadline of 0.3 s" in str(caught.value)
