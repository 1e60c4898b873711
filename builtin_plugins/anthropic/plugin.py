"""The anthropic built-in: an InferenceProvider on the anthropic SDK (Messages API).

Secrets: `apiKey`. The SDK is imported when an instance loads, and is given the key and base URL
explicitly, so ANTHROPIC_* environment variables and profile files are never consulted.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from grambot.kit.connection import SdkSettings
from grambot.kit.provider import provider_plugin

SECRETS = ("apiKey",)


class Settings(SdkSettings):
    base_url: str = Field(
        "https://api.anthropic.com", description="API base URL (a proxy, a fake)."
    )
    model: str = Field(
        "claude-sonnet-4-6", min_length=1, description="Model used when a request names none."
    )
    models: list[str] = Field(
        default_factory=list,
        description="Other models this instance offers (models() lists `model` first).",
    )
    label: str = Field("Anthropic Claude", description="Name shown to people choosing a model.")
    max_tokens: int = Field(
        4096, gt=0, description="Largest answer, in tokens, when a request sets none."
    )
    temperature: float | None = Field(
        None, ge=0, le=1, description="Sampling temperature; the API default when unset."
    )


def _provider() -> Any:
    from .provider import AnthropicProvider

    return AnthropicProvider


plugin = provider_plugin(Settings, _provider)
