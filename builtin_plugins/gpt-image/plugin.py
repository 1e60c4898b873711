"""The gpt-image built-in: an ImageProvider on the openai SDK's `images.generate`.

Secrets: `apiKey`. Images are saved under `<data dir>/images/`. The SDK is imported when an
instance loads and given the key and base URL explicitly (OPENAI_* variables are ignored).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from grambot.kit.connection import OpenAISettings
from grambot.kit.provider import provider_plugin

SECRETS = ("apiKey",)

SIZE_PATTERN = r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$"


class Settings(OpenAISettings):
    base_url: str = Field("https://api.openai.com/v1", description="API base URL, with the /v1.")
    timeout: float = Field(
        180.0, gt=0, description="Seconds to wait for one HTTP answer (images are slow)."
    )
    deadline: float = Field(
        600.0, gt=0, description="Upper bound in seconds on one generate() call, retries included."
    )
    model: str = Field("gpt-image-1", min_length=1, description="Image model to use by default.")
    size: str = Field(
        "1024x1024",
        pattern=SIZE_PATTERN,
        description="Default size, `WIDTHxHEIGHT` (e.g. 1024x1024, 1536x1024, 1024x1536) or "
        "`auto`.",
    )
    quality: str = Field(
        "auto",
        description="`low`, `medium`, `high` or `auto` for gpt-image models; `standard` or `hd` "
        "for dall-e-3.",
    )
    output_format: Literal["png", "jpeg", "webp"] = Field(
        "png", description="File format of gpt-image results."
    )
    background: Literal["auto", "transparent", "opaque"] | None = Field(
        None, description="Background of gpt-image results; the API default when unset."
    )
    max_count: int = Field(4, ge=1, le=10, description="Most images one call may ask for.")


def _provider() -> Any:
    from .provider import GptImageProvider

    return GptImageProvider


plugin = provider_plugin(Settings, _provider)
