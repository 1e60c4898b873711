"""The nanobanana built-in: an ImageProvider on Gemini's `generateContent` (image output as
`inlineData` parts), spoken directly over httpx.

Secrets: `apiKey` (sent as `x-goog-api-key`, never in the URL). httpx is imported when an
instance loads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from grambot import Plugin, PluginApi

SECRETS = ("apiKey",)

AspectRatio = Literal["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]


class Settings(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    model: str = Field(
        "gemini-2.5-flash-image", min_length=1, description="Gemini image model to use by default."
    )
    base_url: str = Field(
        "https://generativelanguage.googleapis.com/v1beta",
        alias="baseUrl",
        description="API base URL; requests go to <baseUrl>/models/<model>:generateContent.",
    )
    endpoint: str | None = Field(
        None,
        description="Full generateContent URL overriding baseUrl (a proxy, another region); "
        "`{model}` in it is replaced by the model.",
    )
    aspect_ratio: AspectRatio | None = Field(
        None,
        alias="aspectRatio",
        description="Default aspect ratio; the model's default (square) when unset.",
    )
    response_modalities: list[Literal["TEXT", "IMAGE"]] = Field(
        default_factory=lambda: ["TEXT", "IMAGE"],
        alias="responseModalities",
        description="What the model may answer with; must include IMAGE.",
    )
    max_count: int = Field(
        4, ge=1, le=8, alias="maxCount", description="Most images one call may ask for."
    )
    timeout: float = Field(120.0, gt=0, description="Seconds to wait for one answer.")
    max_retries: int = Field(
        2,
        ge=0,
        le=10,
        alias="maxRetries",
        description="Retries after a timeout, a network error, 429 or 5xx.",
    )
    max_retry_after: float = Field(
        30.0,
        ge=0,
        alias="maxRetryAfter",
        description="Longest wait a 429 may ask for before a retry; longer fails at once.",
    )

    @field_validator("response_modalities")
    @classmethod
    def _wants_images(cls, value: list[str]) -> list[str]:
        if "IMAGE" not in value:
            raise ValueError("must include IMAGE")
        return value


def create(api: PluginApi) -> Any:
    from .provider import NanoBananaProvider

    return NanoBananaProvider(api)


async def check(api: PluginApi) -> str:
    """A live check (`grambot check`): one cheap request with this instance's credentials."""
    from grambot.kit.checks import run_check

    from .provider import NanoBananaProvider

    return await run_check(NanoBananaProvider(api))


plugin = Plugin(settings_schema=Settings, create=create, check=check)
