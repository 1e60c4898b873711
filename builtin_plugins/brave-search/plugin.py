"""The brave-search built-in: a Tool that searches the web with the Brave Search API.

Secrets: `apiKey` (sent as `X-Subscription-Token`). httpx is imported when an instance loads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from grambot import Plugin, PluginApi

SECRETS = ("apiKey",)

SafeSearch = Literal["off", "moderate", "strict"]


class Settings(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    tool_name: str = Field(
        "web_search",
        alias="toolName",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Name the model calls the tool by (unique among all tools).",
    )
    description: str = Field(
        "Search the web (Brave Search). Returns titles, URLs and short snippets of the top "
        "results; use it for current events and facts you are unsure of.",
        description="What the model is told the tool does.",
    )
    base_url: str = Field(
        "https://api.search.brave.com",
        alias="baseUrl",
        description="API base URL; the tool calls <baseUrl>/res/v1/web/search.",
    )
    count: int = Field(5, ge=1, le=20, description="Results per search, unless the call says.")
    country: str | None = Field(
        None, pattern=r"^[A-Za-z]{2}$", description="Country to search from (e.g. `US`)."
    )
    search_lang: str | None = Field(
        None, alias="searchLang", description="Language of results (e.g. `en`)."
    )
    safe_search: SafeSearch = Field(
        "moderate", alias="safeSearch", description="Adult content filter: off, moderate, strict."
    )
    timeout: float = Field(10.0, gt=0, description="Seconds to wait for an answer.")
    max_retries: int = Field(
        1,
        ge=0,
        le=5,
        alias="maxRetries",
        description="Retries after a timeout, a network error, 429 or 5xx.",
    )
    max_retry_after: float = Field(
        5.0,
        ge=0,
        alias="maxRetryAfter",
        description="Longest wait a 429 may ask for before a retry; longer fails at once.",
    )
    max_snippet_chars: int = Field(
        300, ge=20, alias="maxSnippetChars", description="Snippets are cut to this length."
    )


def create(api: PluginApi) -> Any:
    from .tool import BraveSearchTool

    return BraveSearchTool(api)


async def check(api: PluginApi) -> str:
    """A live check (`grambot check`): one cheap request with this instance's credentials."""
    from grambot.kit.checks import run_check

    from .tool import BraveSearchTool

    return await run_check(BraveSearchTool(api))


plugin = Plugin(settings_schema=Settings, create=create, check=check)
