"""What the two model-provider built-ins (anthropic, openai-codex) must both do, each against its
own fake API: honour a 429's retry delay, report an unreachable service as a network error, and
keep the key out of debug logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from grambot import InferenceProvider, ServiceError
from tests.builtin import test_anthropic, test_openai_codex
from tests.builtin.conftest import Harness, ask, closed_port_url
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeServer
from tests.fakes.openai_api import FakeOpenAI


@dataclass(frozen=True)
class Provider:
    """A model-provider built-in and how its service differs on the wire."""

    instance_id: str
    plugin_id: str
    key: str
    make_fake: Callable[[str], FakeServer]
    load: Callable[..., Awaitable[InferenceProvider]]
    retry_after: dict[str, str]  # a 0.3 s delay in the service's own header
    bad_key: str  # the service's 401 message, holding the key


PROVIDERS = [
    Provider(
        "claude",
        "anthropic",
        test_anthropic.KEY,
        FakeAnthropic,
        test_anthropic.load,
        {"retry-after": "0.3"},
        f"bad key {test_anthropic.KEY}",
    ),
    Provider(
        "codex",
        "openai-codex",
        test_openai_codex.KEY,
        FakeOpenAI,
        test_openai_codex.load,
        {"retry-after-ms": "300"},
        f"Incorrect API key provided: {test_openai_codex.KEY}",
    ),
]


@pytest.fixture(params=PROVIDERS, ids=lambda p: p.plugin_id)
def provider(request: pytest.FixtureRequest) -> Provider:
    chosen: Provider = request.param
    return chosen


@pytest.fixture
def fake(provider: Provider) -> Iterator[FakeServer]:
    with provider.make_fake(provider.key) as server:
        yield server


async def test_a_429_with_retry_after_is_retried(
    harness: Harness, fake: Any, provider: Provider
) -> None:
    model = await provider.load(harness, fake)
    fake.fail(429, headers=provider.retry_after)
    started = time.monotonic()
    answer = await model.complete(ask("again"))
    assert answer.text == "echo: again"
    assert time.monotonic() - started >= 0.25
    assert len(fake.requests) == 2


async def test_an_unreachable_service_is_a_network_error(
    harness: Harness, provider: Provider
) -> None:
    url = closed_port_url()
    await harness.load(
        provider.instance_id,
        provider.plugin_id,
        secrets={"apiKey": provider.key},
        baseUrl=url,
        maxRetries=0,
    )
    model = harness.engine.registries.inference.get(provider.instance_id)
    assert model is not None
    with pytest.raises(ServiceError) as caught:
        await model.complete(ask("anyone?"))
    assert caught.value.kind == "network" and f"cannot reach {url}" in str(caught.value)
    assert harness.loaded(provider.instance_id)


async def test_the_key_stays_out_of_debug_logs(
    harness: Harness, fake: Any, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model = await provider.load(harness, fake)
    await model.complete(ask("hi"))
    fake.fail(401, message=provider.bad_key)
    with pytest.raises(ServiceError):
        await model.complete(ask("hi"))
    await harness.remove(provider.instance_id)
    assert caplog.records
    assert not [r for r in caplog.records if provider.key in r.getMessage()]
