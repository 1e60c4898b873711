"""The openai-codex built-in: an InferenceProvider on the openai SDK.

Secrets: `apiKey`. Uses the Responses API (what the Codex models speak) or, with
`"api": "chat"`, Chat Completions (OpenAI-compatible servers). The SDK is imported when an
instance loads and is given the key, base URL, organization and project explicitly, so OPENAI_*
environment variables are never consulted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from grambot import Plugin, PluginApi

SECRETS = ("apiKey",)


class Settings(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    api: Literal["responses", "chat"] = Field(
        "responses",
        description="`responses` (/v1/responses, needed by Codex models) or `chat` "
        "(/v1/chat/completions, for OpenAI-compatible servers).",
    )
    model: str = Field(
        "gpt-5.1-codex", min_length=1, description="Model used when a request names none."
    )
    models: list[str] = Field(
        default_factory=list,
        description="Other models this instance offers (models() lists `model` first).",
    )
    label: str = Field("OpenAI Codex", description="Name shown to people choosing a model.")
    base_url: str = Field(
        "https://api.openai.com/v1",
        alias="baseUrl",
        description="API base URL, including the /v1 (a proxy, a compatible server, a fake).",
    )
    organization: str | None = Field(
        None, description="OpenAI-Organization header; none when unset (OPENAI_ORG_ID is ignored)."
    )
    project: str | None = Field(
        None, description="OpenAI-Project header; none when unset (OPENAI_PROJECT_ID is ignored)."
    )
    max_tokens: int = Field(
        4096,
        gt=0,
        alias="maxTokens",
        description="Largest answer, in tokens, when a request sets none "
        "(max_output_tokens / max_completion_tokens).",
    )
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = Field(
        None,
        alias="reasoningEffort",
        description="Reasoning effort for reasoning models; the API default when unset.",
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
    from .provider import OpenAIProvider

    return OpenAIProvider(api)


async def check(api: PluginApi) -> str:
    """A live check (`grambot check`): one cheap request with this instance's credentials."""
    from grambot.kit.checks import run_check

    from .provider import OpenAIProvider

    return await run_check(OpenAIProvider(api))


plugin = Plugin(settings_schema=Settings, create=create, check=check)
