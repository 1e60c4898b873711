"""anthropic / openai SDK exceptions → grambot.ServiceError, the key scrubbed from every text.

Both SDKs share one exception design (APIStatusError with status_code/body/response,
APIConnectionError, APITimeoutError); the caller passes the SDK module in. Used by
kit.sdk_provider (the anthropic, openai-codex and gpt-image built-ins).
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from grambot.errors import ServiceError
from grambot.kit.http import status_text
from grambot.registries.errors import kind_for_status
from grambot.retry import retry_after_header

MASK = "<apiKey>"


def scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, MASK)
    return text


def server_message(body: Any) -> str:
    """The `error.message` of the error envelope (Anthropic's and OpenAI's), else the body."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    text = "" if body is None else str(body)
    return text[:300] + ("..." if len(text) > 300 else "")


def to_service_error(
    exc: BaseException,
    sdk: ModuleType,
    *,
    instance_id: str,
    service: str,
    secret: str | None,
    base_url: str,
    timeout: float,
    retries: int,
) -> ServiceError | None:
    """The ServiceError for an SDK exception, or None when `exc` is not the SDK's."""
    status: int | None = None
    wait: float | None = None
    if isinstance(exc, sdk.APITimeoutError):
        kind, text = "timeout", f"no answer from {base_url} within {timeout:g} s"
    elif isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        reason = f"{type(cause).__name__}: {cause}" if cause else str(exc)
        kind, text = "network", f"cannot reach {base_url} ({reason})"
    elif isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        kind = kind_for_status(status)
        said = server_message(exc.body)
        if status == 401:
            text = (
                f"the API key was rejected (401: {said}); "
                f"set it with `grambot secrets set {instance_id} apiKey`"
            )
        else:
            if kind == "rate-limit":
                wait = retry_after_header(exc.response.headers)
            text = status_text(kind, status, said, retries, wait, retried_429=True)
    elif isinstance(exc, sdk.APIResponseValidationError | sdk.APIError):
        kind, text = "bad-response", f"unexpected answer from {base_url}: {exc}"
    elif isinstance(exc, json.JSONDecodeError):  # the SDK lets a broken body through as is
        kind, text = "bad-response", f"unexpected answer from {base_url}: not JSON ({exc})"
    else:
        return None
    return ServiceError(
        scrub(text, secret),
        instance_id=instance_id,
        service=service,
        kind=kind,
        status=status,
        retry_after=wait,
    )
