"""How long a service asks to wait: one parser for `Retry-After` (seconds or an HTTP date),
`retry-after-ms`, Telegram's `retry_after`; garbage is ignored, never raised."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import httpx
import pytest

from grambot.kit.http import retry_after as kit_retry_after
from grambot.kit.http import send
from grambot.retry import RetryPolicy, retry_after, retry_after_header


async def test_a_garbage_retry_after_header_is_ignored_not_raised() -> None:
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": "soon, maybe"}), httpx.Response(200)]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        response = await send(
            httpx,
            client,
            "GET",
            "https://service.test/",
            max_retries=2,
            max_retry_after=60,
            timeout=5,
            backoff=0.001,
        )
    assert response.status_code == 200


NOW = dt.datetime(2026, 12, 7, 12, 0, 0, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        (b"3", 3.0),
        (4, 4.0),
        (dt.timedelta(seconds=9), 9.0),
        ("Mon, 07 Dec 2026 12:00:30 GMT", 30.0),
        ("Mon, 07 Dec 2026 12:00:30 -0000", 30.0),  # no zone: HTTP dates are UTC
        ("Mon, 07 Dec 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("-5", 0.0),
        ("1e12", 86_400.0),  # capped
        ("inf", 86_400.0),
    ],
)
def test_seconds_and_dates_are_read_and_capped(value: Any, seconds: float) -> None:
    assert retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    "garbage",
    [None, "", "soon", "nan", "Mon, 99 Foo 2026", "1 2 3 4 5", "\x00", b"\xff\xfe", True, [], {}],
)
def test_garbage_is_none_never_an_exception(garbage: Any) -> None:
    assert retry_after(garbage, now=NOW) is None


def test_the_headers_milliseconds_win_then_seconds() -> None:
    assert retry_after_header(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after_header(httpx.Headers({"retry-after-ms": "x", "retry-after": "9"})) == 9.0
    assert retry_after_header(httpx.Headers({"Retry-After": "later"})) is None
    assert retry_after_header({}) is None
    assert retry_after_header(object()) is None  # not headers at all


def test_brave_reset_is_read_when_retry_after_is_not() -> None:
    assert kit_retry_after(httpx.Headers({"x-ratelimit-reset": "1, 1000"})) == 1.0
    assert kit_retry_after(httpx.Headers({"retry-after": "x", "x-ratelimit-reset": "4"})) == 4.0
    assert kit_retry_after(httpx.Headers({"x-ratelimit-reset": "never"})) is None


def test_unjittered_backoff_is_exact_doubling() -> None:
    uncapped = RetryPolicy(initial=0.5, cap=math.inf, jitter=0.0)
    assert [uncapped.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    capped = RetryPolicy(initial=1.0, cap=30.0, jitter=0.0)
    assert [capped.delay(n) for n in (1, 2, 5, 6, 100)] == [1.0, 2.0, 16.0, 30.0, 30.0]
