"""OpenAIProvider: grambot's InferenceRequest over the openai SDK (see mapping.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grambot import InferenceRequest, InferenceResponse
from grambot.kit.provider import InferenceBase
from grambot.kit.sdk_provider import OpenAISdkProvider

from .mapping import (
    from_chat_completion,
    from_response,
    to_chat_messages,
    to_chat_tool,
    to_responses_input,
    to_responses_tool,
)

if TYPE_CHECKING:
    from .plugin import Settings


class OpenAIProvider(InferenceBase, OpenAISdkProvider):
    """A `grambot.InferenceProvider`; registered under its instance id."""

    service = "openai"
    needed_by = "the openai-codex built-in"
    settings: Settings

    async def complete(self, request: InferenceRequest) -> InferenceResponse:
        client = self.client
        s = self.settings
        call = (
            client.responses.create(**self._responses_params(request))
            if s.api == "responses"
            else client.chat.completions.create(**self._chat_params(request))
        )
        raw = await self.call(call, "complete answer")
        try:
            return from_response(raw) if s.api == "responses" else from_chat_completion(raw)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
            api = "Responses API" if s.api == "responses" else "Chat Completions"
            raise self.bad_response(f"not a {api} reply ({exc})") from None

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
