"""The anthropic built-in: an InferenceProvider on the anthropic SDK (Messages API).

Secrets: `apiKey`. The SDK is imported when an instance loads, and is given the key and base URL
explicitly, so ANTHROPIC_* environment variables and profile files are never consulted.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from grambot import Plugin, PluginApi

SECRETS = ("apiKey",)


class Settings(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    model: str = Field(
        "claude-sonnet-4-6", min_length=1, description="Model used when a request names none."
    )
    models: list[str] = Field(
        default_factory=list,
        description="Other models this instance offers (models() lists `model` first).",
    )
    label: str = Field("Anthropic Claude", description="Name shown to people choosing a model.")
    base_url: str = Field(
        "https://api.anthropic.com", alias="baseUrl", description="API base URL (a proxy, a fake)."
    )
    max_tokens: int = Field(
        4096,
        gt=0,
        alias="maxTokens",
        description="Largest answer, in tokens, when a request sets none.",
    )
    temperature: float | None = Field(
        None, ge=0, le=1, description="Sampling temperature; the API default when unset."
    )
    timeout: float = Field(
        120.0, gt=0, description="Seconds to wait for one HTTP answer (read/write/pool)."
    )
    connect_timeout: float = Field(
        10.0, gt=0, alias="connectTimeout", description="Seconds to wait for a connection."
    )
    max_retries: int = Field(
        2,
        ge=0,
        le=10,
        alias="maxRetries",
        description="SDK retries on connection errors, 408/409/429 and 5xx (with backoff, "
        "honouring retry-after).",
    )
    deadline: float = Field(
        300.0,
        gt=0,
        description="Upper bound in seconds on one complete() call, retries and waits included.",
    )


def create(api: PluginApi) -> Any:
    from .provider import AnthropicProvider

    return AnthropicProvider(api)


async def check(api: PluginApi) -> str:
    """A live check (`grambot check`): one cheap request with this instance's credentials."""
    from grambot.kit.checks import run_check

    from .provider import AnthropicProvider

    return await run_check(AnthropicProvider(api))


plugin = Plugin(settings_schema=Settings, create=create, check=check)
