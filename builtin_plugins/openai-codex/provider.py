"""OpenAIProvider: grambot's InferenceRequest over the openai SDK (see mapping.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grambot import InferenceRequest, InferenceResponse, PluginApi, ServiceError
from grambot.kit.checks import model_ids
from grambot.kit.sdk import import_sdk
from grambot.kit.sdk_errors import call_sdk, scrub

from .mapping import (
    from_chat_completion,
    from_response,
    to_chat_messages,
    to_chat_tool,
    to_responses_input,
    to_responses_tool,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from .plugin import Settings

SERVICE = "openai"


class OpenAIProvider:
    """A `grambot.InferenceProvider`; registered under its instance id."""

    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.settings: Settings = api.settings
        self.id = api.instance.instance_id
        self.label = self.settings.label
        self._client: AsyncOpenAI | None = None
        self._key: str | None = None
        self._sdk: Any = None

    def models(self) -> Sequence[str]:
        return list(dict.fromkeys([self.settings.model, *self.settings.models]))

    async def load(self) -> None:
        await self.connect()
        self.api.registrar.register_inference_provider(self)

    async def connect(self) -> None:
        """Read the key and make the SDK client (no request is sent)."""
        self._key = self.api.secrets.require("apiKey")
        self._sdk = await asyncio.to_thread(
            import_sdk, "openai", needed_by="the openai-codex built-in"
        )
        s = self.settings
        client = self._sdk.AsyncOpenAI(
            api_key=self._key,  # explicit: OPENAI_API_KEY is never read
            base_url=s.base_url,  # explicit: OPENAI_BASE_URL is never read
            organization=s.organization,
            project=s.project,
            timeout=self._sdk.Timeout(s.timeout, connect=s.connect_timeout),
            max_retries=s.max_retries,
        )
        # Unset organization/project would be filled from OPENAI_ORG_ID / OPENAI_PROJECT_ID:
        # settle them to this instance's settings.
        client.organization = s.organization
        client.project = s.project
        self._client = client

    async def check(self) -> str:
        """List the models: the key is checked and nothing is generated."""
        assert self._client is not None
        s = self.settings
        page = await call_sdk(
            self._client.models.list(),
            self._sdk,
            deadline=s.timeout,
            what="model list",
            instance_id=self.id,
            service=SERVICE,
            secret=self._key,
            base_url=s.base_url,
            timeout=s.timeout,
            retries=s.max_retries,
        )
        return model_ids(page)

    async def unload(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def complete(self, request: InferenceRequest) -> InferenceResponse:
        client = self._client
        if client is None:
            raise self._error("unavailable", "the provider is not loaded")
        s = self.settings
        call = (
            client.responses.create(**self._responses_params(request))
            if s.api == "responses"
            else client.chat.completions.create(**self._chat_params(request))
        )
        raw = await call_sdk(
            call,
            self._sdk,
            deadline=s.deadline,
            what="complete answer",
            instance_id=self.id,
            service=SERVICE,
            secret=self._key,
            base_url=s.base_url,
            timeout=s.timeout,
            retries=s.max_retries,
        )
        try:
            return from_response(raw) if s.api == "responses" else from_chat_completion(raw)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
            api = "Responses API" if s.api == "responses" else "Chat Completions"
            raise self._error(
                "bad-response", f"unexpected answer from {s.base_url}: not a {api} reply ({exc})"
            ) from None

    def _responses_params(self, request: InferenceRequest) -> dict[str, Any]:
        s = self.settings
        instructions, items = to_responses_input(request.messages)
        params: dict[str, Any] = {
            "model": request.model or s.model,
            "input": items,
            "max_output_tokens": request.max_tokens or s.max_tokens,
            "store": False,  # the whole conversation is sent each time; keep nothing server-side
        }
        if instructions:
            params["instructions"] = instructions
        if request.tools:
            params["tools"] = [to_responses_tool(t) for t in request.tools]
        if s.reasoning_effort:
            params["reasoning"] = {"effort": s.reasoning_effort}
        return params

    def _chat_params(self, request: InferenceRequest) -> dict[str, Any]:
        s = self.settings
        params: dict[str, Any] = {
            "model": request.model or s.model,
            "messages": to_chat_messages(request.messages),
            "max_completion_tokens": request.max_tokens or s.max_tokens,
        }
        if request.tools:
            params["tools"] = [to_chat_tool(t) for t in request.tools]
        if s.reasoning_effort:
            params["reasoning_effort"] = s.reasoning_effort
        return params

    def _error(self, kind: str, text: str) -> ServiceError:
        return ServiceError(scrub(text, self._key), instance_id=self.id, service=SERVICE, kind=kind)
