"""AnthropicProvider: grambot's InferenceRequest ⇄ Anthropic's Messages API.

Mapping:
* `system` turns → the `system` parameter (joined by blank lines);
* `user` turns → user messages; `assistant` turns → text + `tool_use` blocks;
* `tool` turns → `tool_result` blocks in a user message (consecutive ones merged, as the API
  wants every result of one assistant turn in the next user message);
* tools → `{name, description, input_schema}`;
* the answer's text blocks → `text`, its `tool_use` blocks → `tool_calls`, plus usage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grambot import (
    ChatMessage,
    InferenceRequest,
    InferenceResponse,
    PluginApi,
    ServiceError,
    ToolCall,
    ToolDefinition,
    Usage,
)
from grambot.kit.checks import model_ids
from grambot.kit.sdk import import_sdk
from grambot.kit.sdk_errors import call_sdk, scrub

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

    from .plugin import Settings

SERVICE = "anthropic"


class AnthropicProvider:
    """A `grambot.InferenceProvider`; registered under its instance id."""

    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.settings: Settings = api.settings
        self.id = api.instance.instance_id
        self.label = self.settings.label
        self._client: AsyncAnthropic | None = None
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
        # ~1 s to import: do it off the event loop so other instances keep loading.
        self._sdk = await asyncio.to_thread(
            import_sdk, "anthropic", needed_by="the anthropic built-in"
        )
        s = self.settings
        self._client = self._sdk.AsyncAnthropic(
            api_key=self._key,  # explicit: ANTHROPIC_API_KEY / profiles are never read
            base_url=s.base_url,  # explicit: ANTHROPIC_BASE_URL is never read
            timeout=self._sdk.Timeout(s.timeout, connect=s.connect_timeout),
            max_retries=s.max_retries,
        )

    async def check(self) -> str:
        """List the models: the key is checked and nothing is generated."""
        assert self._client is not None
        s = self.settings
        page = await call_sdk(
            self._client.models.list(limit=5),
            self._sdk,
            deadline=s.deadline,
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
        system, messages = to_anthropic_messages(request.messages)
        params: dict[str, Any] = {
            "model": request.model or s.model,
            "max_tokens": request.max_tokens or s.max_tokens,
            "messages": messages,
        }
        if system:
            params["system"] = system
        if request.tools:
            params["tools"] = [to_anthropic_tool(t) for t in request.tools]
        if s.temperature is not None:
            params["temperature"] = s.temperature
        message = await call_sdk(
            client.messages.create(**params),
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
            return from_anthropic_message(message)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise self._error(
                "bad-response",
                f"unexpected answer from {s.base_url}: not a Messages API reply ({exc})",
            ) from None

    def _error(self, kind: str, text: str) -> ServiceError:
        return ServiceError(scrub(text, self._key), instance_id=self.id, service=SERVICE, kind=kind)


def to_anthropic_messages(
    messages: Sequence[ChatMessage],
) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            if message.content:
                system.append(message.content)
            continue
        blocks: list[dict[str, Any]] = []
        if message.role == "tool":
            role = "user"
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id or "",
                    "content": message.content,
                    "is_error": message.is_error,
                }
            )
        else:
            role = message.role
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            if message.role == "assistant":
                blocks.extend(
                    {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                    for c in message.tool_calls
                )
        if not blocks:
            continue  # the API refuses empty turns
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


def to_anthropic_tool(tool: ToolDefinition) -> dict[str, Any]:
    schema = dict(tool.parameters) or {"type": "object", "properties": {}}
    schema.setdefault("type", "object")
    return {"name": tool.name, "description": tool.description, "input_schema": schema}


def from_anthropic_message(message: Any) -> InferenceResponse:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            arguments = block.input if isinstance(block.input, dict) else {}
            calls.append(ToolCall(id=block.id, name=block.name, arguments=dict(arguments)))
    usage = message.usage
    return InferenceResponse(
        text="".join(texts),
        tool_calls=tuple(calls),
        usage=Usage(
            input_tokens=int(usage.input_tokens or 0), output_tokens=int(usage.output_tokens or 0)
        ),
        model=message.model,
        stop_reason=message.stop_reason,
    )
