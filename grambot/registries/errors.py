"""The error an extension point raises when the outside service it wraps fails.

Connectors, inference providers, image providers (and tools, when they do not answer with a
`ToolResult(is_error=True)`) raise `ServiceError` for failures of the service behind them: the
caller catches one type, whatever the plugin and its SDK, and can act on `kind`. The message names
the instance and the service and never carries a secret.
"""

from __future__ import annotations

from typing import Final

from grambot.errors import GrambotError

#: What went wrong, as a caller can act on it.
SERVICE_ERROR_KINDS: Final = (
    "auth",  # the credentials were refused (401/403): fix the secret
    "rate-limit",  # 429 / flood control, still failing after the allowed retries
    "timeout",  # no answer within the configured time
    "network",  # cannot connect, connection dropped
    "server",  # 5xx from the service
    "bad-request",  # the service refused the request as invalid (4xx other than above)
    "bad-response",  # an answer the plugin cannot understand (malformed body, missing fields)
    "refused",  # the service answered but declined the work (safety block, empty result)
    "unavailable",  # the instance is not running (stopped, not loaded yet)
)

_RETRYABLE: Final = frozenset({"rate-limit", "timeout", "network", "server"})


class ServiceError(GrambotError):
    """A call to an outside service failed; `kind` is one of `SERVICE_ERROR_KINDS`."""

    def __init__(
        self,
        message: str,
        *,
        instance_id: str,
        service: str,
        kind: str,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.service = service
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.detail = message
        self._retryable = retryable
        super().__init__(f"{service} (instance {instance_id!r}): {message}")

    @property
    def retryable(self) -> bool:
        """True when trying again later may succeed: the plugin's `retryable=` when it gave
        one, else by kind (rate limit, timeout, network, 5xx; never `auth`)."""
        if self._retryable is not None:
            return self._retryable
        return self.kind in _RETRYABLE


def kind_for_status(status: int) -> str:
    """The `ServiceError.kind` of an HTTP error status."""
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate-limit"
    if status in (408, 504):
        return "timeout"
    if status >= 500:
        return "server"
    return "bad-request"
