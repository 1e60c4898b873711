"""The error an extension point raises when the outside service it wraps fails.

Connectors, inference providers, image providers (and tools, when they do not answer with a
`ToolResult(is_error=True)`) raise `ServiceError` for failures of the service behind them: the
caller catches one type, whatever the plugin and its SDK, and can act on `kind`. The message names
the instance and the service and never carries a secret.
"""

from __future__ import annotations

from grambot.errors import SERVICE_ERROR_KINDS as SERVICE_ERROR_KINDS


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
