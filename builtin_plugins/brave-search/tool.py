"""BraveSearchTool: arguments validated by a pydantic model, results as compact text.

Every failure (bad arguments, the service refusing, timeouts) comes back as
`ToolResult(is_error=True)` with a sentence the model can act on; `data` carries the details
(`kind`, `status`) for code. The key never appears in a result or a log line.
"""

from __future__ import annotations

import asyncio
import html
import importlib
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grambot import PluginApi, ServiceError, ToolContext, ToolResult
from grambot.errors import HttpFailure
from grambot.kit.http import retry_after, send, status_failure

if TYPE_CHECKING:
    from .plugin import Settings

SEARCH_PATH = "/res/v1/web/search"
_TAG = re.compile(r"<[^>]+>")
MASK = "<apiKey>"


class SearchArgs(BaseModel):
    """The arguments the model passes."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=400, description="What to search for.")
    count: int | None = Field(None, ge=1, le=20, description="How many results (1-20).")
    country: str | None = Field(
        None, pattern=r"^[A-Za-z]{2}$", description="Two-letter country code, e.g. US."
    )
    language: str | None = Field(
        None, min_length=2, max_length=7, description="Language of results, e.g. en."
    )
    safesearch: Literal["off", "moderate", "strict"] | None = Field(
        None, description="Adult content filter."
    )


class BraveSearchTool:
    """A `grambot.Tool`, registered under its `toolName`."""

    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.settings: Settings = api.settings
        self.name = self.settings.tool_name
        self.description = self.settings.description
        self._key: str | None = None
        self._client: Any = None
        self._httpx: Any = None

    def parameters(self) -> dict[str, Any]:
        return SearchArgs.model_json_schema()

    async def load(self) -> None:
        await self.connect()
        self.api.registrar.register_tool(self)

    async def connect(self) -> None:
        """Read the key and make the HTTP client (no request is sent)."""
        self._key = self.api.secrets.require("apiKey")
        self._httpx = await asyncio.to_thread(importlib.import_module, "httpx")
        self._client = self._httpx.AsyncClient(
            base_url=self.settings.base_url,
            timeout=self.settings.timeout,
            headers={"Accept": "application/json", "X-Subscription-Token": self._key},
        )

    async def check(self) -> str:
        """One real query (the cheapest question Brave answers)."""
        try:
            results = await self._search(SearchArgs(query="grambot", count=1))
        except HttpFailure as failure:
            raise ServiceError(
                self._scrub(failure.text),
                instance_id=self.api.instance.instance_id,
                service="brave-search",
                kind=failure.kind,
                status=failure.status,
            ) from None
        return f"the key works: a test search returned {len(results)} result(s)"

    async def unload(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def execute(self, args: dict[str, Any], context: ToolContext) -> ToolResult:
        try:
            call = SearchArgs.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            return ToolResult(
                text=f"{self.name}: invalid arguments: {problems}",
                data={"kind": "invalid-arguments"},
                is_error=True,
            )
        if self._client is None:
            return self._failed(HttpFailure("unavailable", "the search tool is not loaded"))
        try:
            results = await self._search(call)
        except HttpFailure as failure:
            self.api.logger.warning("search failed: %s", self._scrub(failure.text))
            return self._failed(failure)
        if not results:
            return ToolResult(text=f"No web results for {call.query!r}.", data={"results": []})
        return ToolResult(text=self._format(call.query, results), data={"results": results})

    async def _search(self, call: SearchArgs) -> list[dict[str, str]]:
        s = self.settings
        params: dict[str, Any] = {
            "q": call.query,
            "count": call.count or s.count,
            "safesearch": call.safesearch or s.safe_search,
            "text_decorations": "false",
        }
        country = call.country or s.country
        if country:
            params["country"] = country.upper()
        language = call.language or s.search_lang
        if language:
            params["search_lang"] = language
        response = await send(
            self._httpx,
            self._client,
            "GET",
            SEARCH_PATH,
            params=params,
            max_retries=s.max_retries,
            max_retry_after=s.max_retry_after,
            timeout=s.timeout,
        )
        if response.status_code != 200:
            said = _error_detail(response)
            if response.status_code in (401, 403):
                raise HttpFailure(
                    "auth",
                    f"the API key was rejected ({response.status_code}: {said}); set it with "
                    f"`grambot secrets set {self.api.instance.instance_id} apiKey`",
                    status=response.status_code,
                )
            wait = retry_after(response.headers) if response.status_code == 429 else None
            raise status_failure(response.status_code, said, s.max_retries, wait)
        try:
            data = response.json()
            raw = data.get("web", {}).get("results", []) if isinstance(data, dict) else None
            if not isinstance(raw, list):
                raise ValueError("no web.results list")
            return [
                {
                    "title": _clean(str(item.get("title", ""))),
                    "url": str(item.get("url", "")),
                    "snippet": _clean(str(item.get("description", ""))),
                    "age": str(item.get("age", "")),
                }
                for item in raw
                if isinstance(item, dict) and item.get("url")
            ]
        except (ValueError, AttributeError) as exc:
            raise HttpFailure(
                "bad-response", f"unexpected answer from Brave Search: {exc}"
            ) from None

    def _format(self, query: str, results: list[dict[str, str]]) -> str:
        limit = self.settings.max_snippet_chars
        lines = [f"Web results for {query!r}:"]
        for n, item in enumerate(results, 1):
            snippet = item["snippet"]
            if len(snippet) > limit:
                snippet = snippet[: limit - 1].rstrip() + "…"
            age = f" ({item['age']})" if item["age"] else ""
            lines.append(f"{n}. {item['title']}{age}\n   {item['url']}\n   {snippet}")
        return "\n".join(lines)

    def _failed(self, failure: HttpFailure) -> ToolResult:
        return ToolResult(
            text=self._scrub(f"{self.name} failed: {failure.text}"),
            data={
                "kind": failure.kind,
                "status": failure.status,
                "retryAfter": failure.retry_after,
            },
            is_error=True,
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, MASK) if self._key else text


def _clean(text: str) -> str:
    return " ".join(html.unescape(_TAG.sub("", text)).split())


def _error_detail(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("detail") or error.get("message") or error.get("code"))
    return str(body)[:200]
