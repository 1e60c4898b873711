"""What the engine's registries hold for an isolated instance's registrations: objects with the
registries' Protocols whose methods cross the pipe (grambot.isolation.calls).

The registrar wraps them in the same guards as in process objects (grambot.containment.guards), so
deadlines, the instance's unload cancelling a call, and error results work as they do in
process. Quick sync methods (`parameters()`, `models()`) answer from what the child sent with
the registration, without a round trip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from grambot.containment.forward import ConnectorForwarder
from grambot.registries.images import GeneratedImage
from grambot.registries.inference import InferenceRequest, InferenceResponse
from grambot.registries.tools import ToolContext, ToolResult

__all__ = ["Caller", "RemoteConnector", "RemoteImageProvider", "RemoteProvider", "RemoteTool"]


class Caller(Protocol):
    """The instance's side of the pipe: `call(kind, key, method, *args, **kwargs)`."""

    def __call__(
        self, kind: str, key: str, method: str, *args: Any, **kwargs: Any
    ) -> Awaitable[Any]: ...


class RemoteTool:
    def __init__(self, key: str, meta: dict[str, Any], call: Caller) -> None:
        self.key = key
        self.name: str = meta["name"]
        self.description: str = meta["description"]
        self._parameters: Any = meta.get("parameters")
        self._parameters_error: str | None = meta.get("parametersError")
        self._call = call

    def parameters(self) -> dict[str, Any]:
        if self._parameters_error is not None:
            raise TypeError(self._parameters_error)
        return self._parameters  # type: ignore[no-any-return]  # checked by GuardedTool

    async def execute(self, args: dict[str, Any], context: ToolContext) -> ToolResult:
        result: ToolResult = await self._call("tools", self.key, "execute", args, context)
        return result


class RemoteProvider:
    def __init__(self, key: str, meta: dict[str, Any], call: Caller) -> None:
        self.key = key
        self.id: str = meta["id"]
        self.label: str = meta["label"]
        self._models: list[str] = list(meta["models"])
        self._call = call

    def models(self) -> Sequence[str]:
        return list(self._models)

    async def complete(self, request: InferenceRequest) -> InferenceResponse:
        response: InferenceResponse = await self._call("inference", self.key, "complete", request)
        return response


class RemoteImageProvider:
    def __init__(self, key: str, meta: dict[str, Any], call: Caller) -> None:
        self.key = key
        self.id: str = meta["id"]
        self._call = call

    async def generate(
        self, prompt: str, *, size: str | None = None, count: int = 1, model: str | None = None
    ) -> Sequence[GeneratedImage]:
        images: list[GeneratedImage] = await self._call(
            "images", self.key, "generate", prompt, size=size, count=count, model=model
        )
        return images


class RemoteConnector(ConnectorForwarder):
    """A connector in the child. `start` runs as the child's stage (the child stops what it
    started at its teardown); `stop` only when asked through the registry entry."""

    def __init__(self, key: str, call: Caller, start: Callable[[str], Awaitable[None]]) -> None:
        self.key = key
        self._call = call
        self._start = start

    async def start(self) -> None:
        await self._start(self.key)

    async def stop(self) -> None:
        await self._forward("stop")

    async def _forward(self, method: str, *args: Any, **kwargs: Any) -> None:
        await self._call("connectors", self.key, method, *args, **kwargs)
