"""The brave-search built-in, driven through the engine against a fake Brave Search API."""

from __future__ import annotations

import time
from typing import Any

import pytest

from grambot import Tool, ToolContext
from tests.builtin.conftest import Harness, closed_port_url
from tests.builtin.services import assert_clear_failure, service_failures
from tests.fakes.base import fake_fixture
from tests.fakes.brave_api import FakeBrave

KEY = "BSA-test-subscription-token-42"
CTX = ToolContext(connector_id="tg", chat_id="1")


fake = fake_fixture(lambda: FakeBrave(KEY))


async def load(h: Harness, fake: FakeBrave, **extra: Any) -> Tool:
    settings = {"baseUrl": fake.url, "timeout": 2.0, **extra}
    await h.load("search", "brave-search", secrets={"apiKey": KEY}, **settings)
    assert h.loaded("search"), h.failure("search")
    tool = h.engine.registries.tools.get(extra.get("toolName", "web_search"))
    assert tool is not None
    return tool


async def test_a_search_returns_compact_text(harness: Harness, fake: FakeBrave) -> None:
    tool = await load(harness, fake, country="de", searchLang="de", safeSearch="strict")
    assert tool.name == "web_search" and "Brave" in tool.description
    schema = tool.parameters()
    assert schema["required"] == ["query"] and "count" in schema["properties"]
    result = await tool.execute({"query": "grambot", "count": 2}, CTX)
    assert not result.is_error
    assert result.text == (
        "Web results for 'grambot':\n"
        "1. grambot result 1 (2 days ago)\n   https://example.com/1\n"
        "   All about grambot, part 1.\n"
        "2. grambot result 2 (2 days ago)\n   https://example.com/2\n"
        "   All about grambot, part 2."
    )
    assert [r["url"] for r in result.data["results"]] == [
        "https://example.com/1",
        "https://example.com/2",
    ]
    request = fake.requests[-1]
    assert request.headers["x-subscription-token"] == KEY
    assert request.query == {
        "q": "grambot",
        "count": "2",
        "safesearch": "strict",
        "text_decorations": "false",
        "country": "DE",
        "search_lang": "de",
    }


async def test_call_arguments_override_settings(harness: Harness, fake: FakeBrave) -> None:
    tool = await load(harness, fake, count=3)
    await tool.execute({"query": "q"}, CTX)
    assert fake.requests[-1].query["count"] == "3"
    await tool.execute(
        {"query": "q", "count": 7, "country": "fr", "language": "fr", "safesearch": "off"}, CTX
    )
    query = fake.requests[-1].query
    assert (query["count"], query["country"], query["search_lang"], query["safesearch"]) == (
        "7",
        "FR",
        "fr",
        "off",
    )


async def test_the_tool_name_comes_from_settings(harness: Harness, fake: FakeBrave) -> None:
    await load(harness, fake, toolName="brave")
    assert "brave" in harness.engine.registries.tools
    assert "web_search" not in harness.engine.registries.tools


async def test_no_results_is_not_an_error(harness: Harness, fake: FakeBrave) -> None:
    tool = await load(harness, fake)
    fake.results = []
    result = await tool.execute({"query": "zzqx"}, CTX)
    assert not result.is_error and result.text == "No web results for 'zzqx'."


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({}, ["query: Field required"]),
        ({"query": ""}, ["query: String should have at least 1 character"]),
        ({"query": "x", "count": 50}, ["count: Input should be less than or equal to 20"]),
        ({"query": "x", "country": "Germany"}, ["country"]),
        ({"query": "x", "bogus": 1}, ["bogus: Extra inputs are not permitted"]),
        ({"query": 42}, ["query: Input should be a valid string"]),
    ],
)
async def test_bad_arguments_come_back_as_tool_errors(
    harness: Harness, fake: FakeBrave, args: dict[str, Any], words: list[str]
) -> None:
    tool = await load(harness, fake)
    result = await tool.execute(args, CTX)
    assert result.is_error and result.text.startswith("web_search: invalid arguments: ")
    for word in words:
        assert word in result.text, result.text
    assert fake.requests == []


async def test_a_429_with_retry_after_is_retried(harness: Harness, fake: FakeBrave) -> None:
    tool = await load(harness, fake)
    fake.fail(429, headers={"Retry-After": "0.3"})
    started = time.monotonic()
    result = await tool.execute({"query": "again"}, CTX)
    assert not result.is_error and time.monotonic() - started >= 0.25
    assert len(fake.requests) == 2


@service_failures(
    "search",
    rate_limits=[
        (
            {"status": 429, "headers": {"X-RateLimit-Reset": "1, 86400"}, "times": 2},
            "rate-limit",
            ["429", "wait 1 s"],
        ),
        ({"status": 429, "headers": {"Retry-After": "60"}}, "rate-limit", ["wait 60 s"]),
    ],
    bad_request=422,
    hang=2.0,
    malformed=[
        ({"malformed": b"{not json"}, "bad-response", ["unexpected answer"]),
        ({"malformed": b'{"web": {"results": 3}}'}, "bad-response", ["unexpected answer"]),
    ],
)
async def test_failures_are_clear_tool_errors_and_the_instance_stays_loaded(
    harness: Harness, fake: FakeBrave, script: dict[str, Any], kind: str, words: list[str]
) -> None:
    tool = await load(harness, fake, timeout=0.3)
    fake.play(script, secret_message=f"token {KEY} is invalid")
    started = time.monotonic()
    result = await tool.execute({"query": "hello"}, CTX)
    assert time.monotonic() - started < 5
    assert result.is_error and result.data["kind"] == kind
    assert result.text.startswith("web_search failed: ")
    assert_clear_failure(harness, "search", result.text, words, KEY)
    assert not (await tool.execute({"query": "later"}, CTX)).is_error


async def test_two_instances_cannot_share_a_tool_name(harness: Harness, fake: FakeBrave) -> None:
    await load(harness, fake)
    await harness.load("search2", "brave-search", secrets={"apiKey": KEY}, baseUrl=fake.url)
    assert not harness.loaded("search2")
    assert "web_search" in harness.failure("search2") and "search" in harness.failure("search2")
    assert harness.loaded("search")


async def test_an_unreachable_service_is_a_network_error(harness: Harness) -> None:
    await harness.load(
        "search", "brave-search", secrets={"apiKey": KEY}, baseUrl=closed_port_url(), maxRetries=0
    )
    tool = harness.engine.registries.tools.get("web_search")
    assert tool is not None
    result = await tool.execute({"query": "x"}, CTX)
    assert result.is_error and result.data["kind"] == "network"
    assert "cannot reach" in result.text
