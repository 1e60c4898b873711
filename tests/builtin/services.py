"""What the built-ins that call an outside service (anthropic, openai-codex, gpt-image,
nanobanana, brave-search) share in their tests: the failure table every one of them must pass,
and what a clear failure means."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import pytest

from grambot import ServiceError
from tests.builtin.conftest import Harness

# A row of a service built-in's failure table: (the fake's script, the error kind, the words
# the message must hold); see FakeServer.play.
Failure = tuple[dict[str, Any], str, list[str]]

# Two 429s that say "Retry-After: 0.1" (the standard header), then an answer: as the SDKs see it.
RETRY_AFTER: Failure = (
    {"status": 429, "headers": {"retry-after": "0.1"}, "times": 2},
    "rate-limit",
    ["429", "0.1 s"],
)


def service_failures(
    instance_id: str,
    *,
    rate_limits: list[Failure],
    malformed: list[Failure],
    auth: list[Failure] | None = None,
    bad_request: int = 400,
    hang: float = 3.0,
) -> pytest.MarkDecorator:
    """The failures every service built-in must report clearly (with a 0.3 s timeout), in one
    order: auth, the service's rate limits, a 500, a bad request, a hang, its malformed bodies;
    parametrises a test over `script`, `kind` and `words`."""
    if auth is None:
        auth = [({"status": 401}, "auth", ["401", f"grambot secrets set {instance_id} apiKey"])]
    cases = [
        *auth,
        *rate_limits,
        ({"status": 500, "times": 2}, "server", ["500"]),
        ({"status": bad_request}, "bad-request", [str(bad_request)]),
        ({"hang": hang}, "timeout", ["within 0.3 s"]),
        *malformed,
    ]
    return pytest.mark.parametrize(("script", "kind", "words"), cases)


def assert_clear_failure(
    h: Harness, instance_id: str, message: str, words: list[str], secret: str
) -> None:
    """A failure's message holds each of `words` and never the secret, and the instance (and the
    event engine) stay up."""
    for word in words:
        assert word in message, message
    assert secret not in message
    assert h.loaded(instance_id) and h.engine.event_engine.running


async def raises_clearly(
    h: Harness,
    call: Awaitable[object],
    expected: tuple[str, str, str],
    words: list[str],
    secret: str,
) -> ServiceError:
    """The ServiceError awaiting `call` raises: soon (the tests' timeout is 0.3 s), with the
    `expected` kind, instance id and service, and clear (see assert_clear_failure)."""
    started = time.monotonic()
    with pytest.raises(ServiceError) as caught:
        await call
    assert time.monotonic() - started < 5
    error = caught.value
    assert (error.kind, error.instance_id, error.service) == expected
    assert_clear_failure(h, expected[1], str(error), words, secret)
    return error
