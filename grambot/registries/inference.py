"""Inference providers: language models that answer a conversation, optionally with tool calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from grambot.registries.base import Registry

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    """One turn. `tool_calls` on assistant turns; `tool_call_id` on tool results."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False


@dataclass(frozen=True)
class ToolDefinition:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class InferenceRequest:
    messages: Sequence[ChatMessage]
    model: str | None = None
    tools: Sequence[ToolDefinition] = ()
    max_tokens: int | None = None


@dataclass(frozen=True)
class InferenceResponse:
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    stop_reason: str | None = None


@runtime_checkable
class InferenceProvider(Protocol):
    """A model behind an API. `complete` maps the request to the provider's wire format (tool
    definitions, assistant tool calls and `tool` results both ways) and raises
    `grambot.ServiceError` when the service fails; `models()` lists the default model first."""

    id: str
    label: str

    def models(self) -> Sequence[str]: ...

    async def complete(self, request: InferenceRequest) -> InferenceResponse: ...


class InferenceRegistry(Registry[InferenceProvider]):
    kind = "inference provider"
