"""Live credential checks of every built-in, on the fake servers: a good and a bad key each.

`Engine.check(instance_id, secrets=...)` loads the entry in a throwaway generation (own namespace,
scratch registries, the real or candidate secrets), runs create + load (never start) and the
plugin's `check(api)` hook, and unloads: nothing is registered and nothing runs afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.builtin.conftest import Harness
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeServer
from tests.fakes.brave_api import FakeBrave
from tests.fakes.gemini_api import FakeGemini
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import entry

GOOD = {
    "telegram": "123456:AAH-good-token-for-checks",
    "anthropic": "sk-ant-good-key-0123456789",
    "openai-codex": "sk-proj-good-key-0123456789",
    "brave-search": "BSA-good-key-0123456789",
    "gpt-image": "sk-proj-good-image-key-0123",
    "nanobanana": "AIza-good-gemini-key-012345",
}
BAD = "the-wrong-key-for-this-service"

# plugin id -> (make the fake, settings pointing at it, secret key)
Setup = tuple[Callable[[], FakeServer], Callable[[Any], dict[str, Any]], str]


def _api_key(make: Callable[[str], FakeServer], plugin_id: str, path: str = "") -> Setup:
    """A service checked with its `apiKey` secret, its `baseUrl` the fake's URL + `path`."""
    return (
        lambda: make(GOOD[plugin_id]),
        lambda f: {"baseUrl": f"{f.url}{path}", "maxRetries": 0},
        "apiKey",
    )


SETUPS: dict[str, Setup] = {
    "telegram": (
        lambda: _telegram(),
        lambda f: {"baseUrl": f.base_url, "baseFileUrl": f.base_file_url, "maxRetries": 0},
        "botToken",
    ),
    "anthropic": _api_key(FakeAnthropic, "anthropic"),
    "openai-codex": _api_key(FakeOpenAI, "openai-codex", "/v1"),
    "brave-search": _api_key(FakeBrave, "brave-search"),
    "gpt-image": _api_key(FakeOpenAI, "gpt-image", "/v1"),
    "nanobanana": _api_key(FakeGemini, "nanobanana", "/v1beta"),
}


def _telegram() -> FakeTelegram:
    fake = FakeTelegram()
    fake.add_bot(GOOD["telegram"], username="checked_bot")
    return fake


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeServer]]:
    with ExitStack() as stack:
        yield {pid: stack.enter_context(make()) for pid, (make, _, _) in SETUPS.items()}


@pytest.mark.parametrize("plugin_id", sorted(SETUPS))
async def test_a_good_key_passes_and_a_bad_one_fails_with_auth(
    harness: Harness, fakes: dict[str, FakeServer], plugin_id: str
) -> None:
    _, settings, key = SETUPS[plugin_id]
    fake = fakes[plugin_id]
    harness.secret("c", key, GOOD[plugin_id])
    await harness.engine.apply(
        harness.workspace.write([entry("c", plugin_id, enabled=False, **settings(fake))])
    )
    good = await harness.engine.check("c")
    assert good.ok, good
    bad = await harness.engine.check("c", secrets={key: BAD})
    assert not bad.ok and bad.reason == "auth", bad
    assert BAD not in bad.message and GOOD[plugin_id] not in bad.message
    # nothing registered, nothing running, the entry (disabled) untouched
    registries = harness.engine.registries
    assert not any(len(r) for r in (registries.connectors, registries.inference))
    assert not any(len(r) for r in (registries.tools, registries.images))
    assert str(harness.engine.state_of("c")) == "disabled"


async def test_check_never_starts_a_connector(
    harness: Harness, fakes: dict[str, FakeServer]
) -> None:
    fake = fakes["telegram"]
    assert isinstance(fake, FakeTelegram)
    _, settings, _ = SETUPS["telegram"]
    candidate = "777777:CCH-a-candidate-token-value"
    fake.add_bot(candidate, username="candidate_bot")
    harness.secret("tg", "botToken", GOOD["telegram"])
    await harness.engine.apply(harness.workspace.write([entry("tg", "telegram", **settings(fake))]))
    result = await harness.engine.check("tg", secrets={"botToken": candidate})
    assert result.ok and "candidate_bot" in result.message, result
    assert f"/bot{candidate}/getMe" in fake.paths()  # the check asked Telegram
    assert fake.bots[candidate].offsets == []  # and never polled: the running one owns updates
    assert str(harness.engine.state_of("tg")) == "loaded"  # the running instance untouched
    assert harness.engine.secrets.get("tg", "botToken") == GOOD["telegram"]  # nothing saved


async def test_a_network_failure_is_typed_network(harness: Harness) -> None:
    from tests.builtin.conftest import closed_port_url

    harness.secret("a", "apiKey", GOOD["anthropic"])
    await harness.engine.apply(
        harness.workspace.write(
            [entry("a", "anthropic", enabled=False, baseUrl=closed_port_url(), maxRetries=0)]
        )
    )
    result = await harness.engine.check("a")
    assert not result.ok and result.reason == "network", result
