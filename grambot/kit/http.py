"""One HTTP request with bounded retries (timeouts, network errors, 429 + retry-after, 5xx).

Failures come out as `HttpFailure(kind, text, status, retry_after)`; kinds are those of
grambot.ServiceError. httpx is passed in (imported by the caller at load time). Used by the
brave-search and nanobanana built-ins.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from grambot.errors import HttpFailure
from grambot.registries.errors import kind_for_status
from grambot.retry import RetryPolicy, retry_after_header
from grambot.retry import retry_after as parse_retry_after

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def retry_after(headers: Any) -> float | None:
    """Seconds from `Retry-After` (seconds or an HTTP date) or Brave's `X-RateLimit-Reset`
    (`"1, 1000"`: the first window's), None when neither is readable."""
    asked = retry_after_header(headers)
    if asked is not None:
        return asked
    reset = headers.get("x-ratelimit-reset")
    return parse_retry_after(reset.split(",")[0]) if isinstance(reset, str) else None


async def send(
    httpx: Any,
    client: Any,
    method: str,
    url: str,
    *,
    max_retries: int,
    max_retry_after: float,
    timeout: float,
    backoff: float = 0.5,
    retry_after_of: Callable[[Any], float | None] | None = None,
    **kwargs: Any,
) -> Any:
    """The response (any status once retries are spent), or HttpFailure for timeouts/network.

    `retry_after_of(response)` reads how long the service asks to wait (default: headers).
    """
    wait_asked = retry_after_of or (lambda response: retry_after(response.headers))
    backoffs = RetryPolicy(initial=backoff, cap=math.inf, jitter=0.0)
    attempt = 0
    while True:
        wait = backoffs.delay(attempt + 1)
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            if attempt >= max_retries:
                raise HttpFailure("timeout", f"no answer within {timeout:g} s") from None
        except httpx.TransportError as exc:
            if attempt >= max_retries:
                raise HttpFailure(
                    "network", f"cannot reach the service ({type(exc).__name__}: {exc})"
                ) from None
        else:
            if response.status_code not in RETRY_STATUSES or attempt >= max_retries:
                return response
            asked = wait_asked(response)
            if asked is not None:
                if asked > max_retry_after:
                    return response
                wait = asked
        attempt += 1
        await asyncio.sleep(wait)


def status_failure(
    status: int, said: str, retries: int, wait: float | None = None, kind: str | None = None
) -> HttpFailure:
    kind = kind or kind_for_status(status)
    text = status_text(kind, status, said, retries, wait)
    return HttpFailure(kind, text, status=status, retry_after=wait)


def status_text(
    kind: str,
    status: int,
    said: str,
    retries: int,
    wait: float | None,
    *,
    retried_429: bool = False,
) -> str:
    """What a failed status says: `retried_429` where a 429 is always retried (the SDKs);
    send() answers one asking for a longer wait than allowed at once, without retries."""
    if kind == "rate-limit":
        tried = f" after {retries} retries" if retried_429 else ""
        after = f"; the service asks to wait {wait:g} s" if wait is not None else ""
        return f"rate limited (429: {said}){tried}{after}"
    if kind == "server":
        return f"server error {status} ({said}) after {retries} retries"
    return f"HTTP {status}: {said}"
