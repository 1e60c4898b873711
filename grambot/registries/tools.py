"""Tools: functions the model may call, keyed by tool name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from grambot.registries.base import Registry


@dataclass(frozen=True)
class ToolContext:
    """Who is calling: lets a tool scope its work to a chat."""

    connector_id: str | None = None
    chat_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolResult:
    text: str
    data: Any = None
    is_error: bool = False


@runtime_checkable
class Tool(Protocol):
    """A function the model may call. Invalid arguments and failures of the service behind
    the tool come back as `ToolResult(is_error=True)` with a sentence the model can act on,
    never as exceptions."""

    name: str
    description: str

    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the arguments (typically a pydantic model's json schema)."""
        ...

    async def execute(self, args: dict[str, Any], context: ToolContext) -> ToolResult: ...


class ToolRegistry(Registry[Tool]):
    kind = "tool"
