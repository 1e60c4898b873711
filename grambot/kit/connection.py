"""The connection settings the provider built-ins share, as pydantic base models.

A provider's `Settings` subclasses one and adds its own fields. Keys are the camelCase of the
Python names (`base_url` is `baseUrl` in settings.json; the Python name is accepted too), a
misspelt key is an error, and the validated settings are frozen. `base_url` has no default
here: each provider declares it again with its service's URL.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["OpenAISettings", "SdkSettings", "ServiceSettings"]


class ServiceSettings(BaseModel):
    """A keyed web API: where it is, how long to wait, how often to retry."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    base_url: str = Field(description="API base URL (a proxy, a fake).")
    timeout: float = Field(120.0, gt=0, description="Seconds to wait for one HTTP answer.")
    max_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries after a connection error, a timeout, 429 or 5xx (with backoff, "
        "honouring retry-after).",
    )


class SdkSettings(ServiceSettings):
    """An API spoken through a vendor SDK (anthropic, openai), which retries by itself."""

    connect_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for a connection (`timeout` is for the rest)."
    )
    deadline: float = Field(
        300.0,
        gt=0,
        description="Upper bound in seconds on one call (complete, generate), retries and "
        "waits included.",
    )


class OpenAISettings(SdkSettings):
    """The openai SDK's own headers, never taken from OPENAI_* environment variables."""

    organization: str | None = Field(
        None, description="OpenAI-Organization header; none when unset (OPENAI_ORG_ID is ignored)."
    )
    project: str | None = Field(
        None, description="OpenAI-Project header; none when unset (OPENAI_PROJECT_ID is ignored)."
    )
