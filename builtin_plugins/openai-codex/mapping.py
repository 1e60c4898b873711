"""grambot's chat turns ⇄ OpenAI's Responses API and Chat Completions.

Responses API: `system` turns → `instructions`; user/assistant text → input messages; an
assistant's tool calls → `function_call` items; `tool` turns → `function_call_output` items.
Chat Completions: the classic `messages` with `tool_calls` and `role: tool`.
Tool arguments travel as JSON text both ways; arguments a model garbled come back as
`{"_unparsed": "<text>"}` so the tool can report the problem instead of the call vanishing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grambot import ChatMessage, InferenceResponse, ToolCall, ToolDefinition, Usage
from grambot.kit.provider import split_system


def parse_arguments(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"_unparsed": text}
    return value if isinstance(value, dict) else {"_unparsed": text}


# -- Responses API ------------------------------------------------------------------------------


def to_responses_input(messages: Sequence[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    instructions, turns = split_system(messages)
    items: list[dict[str, Any]] = []
    for message in turns:
        if message.role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.tool_call_id or "",
                    "output": message.content,
                }
            )
        else:
            if message.content or message.role == "user":
                items.append({"role": message.role, "content": message.content})
            for call in message.tool_calls:
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.id,
                        "name": call.name,
                        "arguments": json.dumps(call.arguments),
                    }
                )
    return instructions, items


def to_responses_tool(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": dict(tool.parameters) or {"type": "object", "properties": {}},
        "strict": False,
    }


def from_response(response: Any) -> InferenceResponse:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for item in response.output:
        if item.type == "message":
            texts.extend(c.text for c in item.content if c.type == "output_text")
        elif item.type == "function_call":
            calls.append(ToolCall(item.call_id, item.name, parse_arguments(item.arguments)))
    usage = response.usage
    incomplete = getattr(response, "incomplete_details", None)
    if calls:
        stop = "tool_calls"
    elif incomplete is not None and getattr(incomplete, "reason", None):
        stop = str(incomplete.reason)
    else:
        stop = str(response.status or "completed")
    return InferenceResponse(
        text="".join(texts),
        tool_calls=tuple(calls),
        usage=Usage(
            input_tokens=int(usage.input_tokens or 0) if usage else 0,
            output_tokens=int(usage.output_tokens or 0) if usage else 0,
        ),
        model=response.model,
        stop_reason=stop,
    )


# -- Chat Completions ---------------------------------------------------------------------------


def to_chat_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": message.tool_call_id or "",
                    "content": message.content,
                }
            )
        elif message.role == "assistant" and message.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": json.dumps(call.arguments),
                            },
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": message.role, "content": message.content})
    return out


def to_chat_tool(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters) or {"type": "object", "properties": {}},
        },
    }


def from_chat_completion(completion: Any) -> InferenceResponse:
    choice = completion.choices[0]
    message = choice.message
    calls = tuple(
        ToolCall(c.id, c.function.name, parse_arguments(c.function.arguments))
        for c in (message.tool_calls or ())
        if getattr(c, "type", "function") == "function"
    )
    usage = completion.usage
    return InferenceResponse(
        text=message.content or "",
        tool_calls=calls,
        usage=Usage(
            input_tokens=int(usage.prompt_tokens or 0) if usage else 0,
            output_tokens=int(usage.completion_tokens or 0) if usage else 0,
        ),
        model=completion.model,
        stop_reason=choice.finish_reason,
    )
