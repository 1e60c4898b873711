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

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grambot import (
    ChatMessage,
    InferenceRequest,
    InferenceResponse,
    ToolCall,
    ToolDefinition,
    Usage,
)
from grambot.kit.checks import model_ids
from grambot.kit.provider import InferenceBase, split_system
from grambot.kit.sdk_provider import SdkProvider

if TYPE_CHECKING:
    from .plugin import Settings


class AnthropicProvider(InferenceBase, SdkProvider):
    """A `grambot.InferenceProvider`; registered under its instance id."""

    service = "anthropic"
    sdk = "anthropic"
    client_class = "AsyncAnthropic"
    needed_by = "the anthropic built-in"
    settings: Settings

    async def check(self) -> str:
        """List (a few of) the models: the key is checked and nothing is generated."""
        return model_ids(await self.call(self.client.models.list(limit=5), "model list"))

    async def complete(self, request: InferenceRequest) -> InferenceResponse:
        client = self.client
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
        message = await self.call(client.messages.create(**params), "complete answer")
        try:
            return from_anthropic_message(message)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise self.bad_response(f"not a Messages API reply ({exc})") from None


def to_anthropic_messages(
    messages: Sequence[ChatMessage],
) -> tuple[str, list[dict[str, Any]]]:
    system, turns = split_system(messages)
    out: list[dict[str, Any]] = []
    for message in turns:
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
    return system, out


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
