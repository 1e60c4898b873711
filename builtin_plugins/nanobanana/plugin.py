"""The nanobanana built-in: an ImageProvider on Gemini's `generateContent` (image output as
`inlineData` parts), spoken directly over httpx.

Secrets: `apiKey` (sent as `x-goog-api-key`, never in the URL). httpx is imported when an
instance loads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from grambot.kit.connection import ServiceSettings
from grambot.kit.provider import provider_plugin

SECRETS = ("apiKey",)

AspectRatio = Literal["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]


class Settings(ServiceSettings):
    base_url: str = Field(
        "https://generativelanguage.googleapis.com/v1beta",
        description="API base URL; requests go to <baseUrl>/models/<model>:generateContent.",
    )
    max_retry_after: float = Field(
        30.0,
        ge=0,
        description="Longest wait a 429 may ask for before a retry; longer fails at once.",
    )
    model: str = Field(
        "gemini-2.5-flash-image", min_length=1, description="Gemini image model to use by default."
    )
    endpoint: str | None = Field(
        None,
        description="Full generateContent URL overriding baseUrl (a proxy, another region); "
        "`{model}` in it is replaced by the model.",
    )
    aspect_ratio: AspectRatio | None = Field(
        None, description="Default aspect ratio; the model's default (square) when unset."
    )
    response_modalities: list[Literal["TEXT", "IMAGE"]] = Field(
        default_factory=lambda: ["TEXT", "IMAGE"],
        description="What the model may answer with; must include IMAGE.",
    )
    max_count: int = Field(4, ge=1, le=8, description="Most images one call may ask for.")

    @field_validator("response_modalities")
    @classmethod
    def _wants_images(cls, value: list[str]) -> list[str]:
        if "IMAGE" not in value:
            raise ValueError("must include IMAGE")
        return value


def _provider() -> Any:
    from .provider import NanoBananaProvider

    return NanoBananaProvider


plugin = provider_plugin(Settings, _provider)
