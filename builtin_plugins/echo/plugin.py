"""The echo inference provider: deterministic answers with no network and no key.

* `hello there` → `hello there` (mode `repeat`) or `ereht olleh` (mode `reverse`);
* `!<tool> <argument>` → a call of that tool (the argument becomes its first parameter, or
  JSON arguments: `!hello {"name": "Ada"}`); when the result comes back, the answer quotes it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from grambot import (
    InferenceRequest,
    InferenceResponse,
    Plugin,
    PluginApi,
    ToolCall,
    ToolDefinition,
    Usage,
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["repeat", "reverse"] = Field("repeat", description="How to answer plain text.")
    label: str = Field("Echo", description="Name shown in /help.")


class Echo:
    def __init__(self, api: PluginApi) -> None:
        settings: Settings = api.settings
        self.api = api
        self.id = api.instance.instance_id
        self.label = settings.label
        self.mode = settings.mode
        self._call_ids = itertools.count(1)

    def models(self) -> Sequence[str]:
        return ["echo-1"]

    async def complete(self, request: InferenceRequest) -> InferenceResponse:
        messages = list(request.messages)
        last = messages[-1] if messages else None
        if last is None:
            return InferenceResponse(text="(nothing to echo)", model="echo-1")
        if last.role == "tool":
            results = []
            for message in reversed(messages):
                if message.role != "tool":
                    break
                results.append(message.content)
            text = "The tool said: " + " | ".join(reversed(results))
            return self._answer(text, request)
        call = self._tool_call(last.content, request.tools)
        if call is not None:
            return InferenceResponse(tool_calls=(call,), model="echo-1", stop_reason="tool_use")
        text = last.content if self.mode == "repeat" else last.content[::-1]
        return self._answer(text, request)

    def _answer(self, text: str, request: InferenceRequest) -> InferenceResponse:
        words_in = sum(len(m.content.split()) for m in request.messages)
        usage = Usage(input_tokens=words_in, output_tokens=len(text.split()))
        return InferenceResponse(text=text, usage=usage, model="echo-1", stop_reason="end_turn")

    def _tool_call(self, text: str, tools: Sequence[ToolDefinition]) -> ToolCall | None:
        if not text.startswith("!"):
            return None
        name, _, argument = text[1:].partition(" ")
        tool = next((t for t in tools if t.name == name), None)
        if tool is None:
            return None
        return ToolCall(f"echo-call-{next(self._call_ids)}", name, _arguments(tool, argument))

    async def load(self) -> None:
        self.api.registrar.register_inference_provider(self)


def _arguments(tool: ToolDefinition, argument: str) -> dict[str, Any]:
    argument = argument.strip()
    if argument.startswith("{"):
        try:
            parsed = json.loads(argument)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    schema = tool.parameters or {}
    required = schema.get("required") or []
    properties = list((schema.get("properties") or {}).keys())
    key = required[0] if required else (properties[0] if properties else "input")
    return {key: argument}


plugin = Plugin(settings_schema=Settings, create=Echo)
