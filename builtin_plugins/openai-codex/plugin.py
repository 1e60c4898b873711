"""The openai-codex built-in: an InferenceProvider on the openai SDK.

Secrets: `apiKey`. Uses the Responses API (what the Codex models speak) or, with
`"api": "chat"`, Chat Completions (OpenAI-compatible servers). The SDK is imported when an
instance loads and is given the key, base URL, organization and project explicitly, so OPENAI_*
environment variables are never consulted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from grambot.kit.connection import OpenAISettings
from grambot.kit.provider import provider_plugin

SECRETS = ("apiKey",)


class Settings(OpenAISettings):
    base_url: str = Field(
        "https://api.openai.com/v1",
        description="API base URL, including the /v1 (a proxy, a compatible server, a fake).",
    )
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
    max_tokens: int = Field(
        4096,
        gt=0,
        description="Largest answer, in tokens, when a request sets none "
        "(max_output_tokens / max_completion_tokens).",
    )
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = Field(
        None, description="Reasoning effort for reasoning models; the API default when unset."
    )


def _provider() -> Any:
    from .provider import OpenAIProvider

    return OpenAIProvider


plugin = provider_plugin(Settings, _provider)
