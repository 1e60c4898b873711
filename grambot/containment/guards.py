"""What the registries hold: each registered object wrapped so that every call into it is
contained (DESIGN §5.4).

The registrar wraps what an instance registers; the bot, the engine and embedding code only
ever call the wrapper, so the rules hold however a plugin is called:

* async methods (`execute`, `complete`, `generate`, `send_message`) run as tasks in the
  instance's context (`stages.call_plugin` / `run_stage`): the instance's unload cancels a call
  in flight (the caller gets `CallCancelled`, not a stray CancelledError), and any BaseException
  the plugin raises comes out as `PluginCrash`;
* quick sync methods (`parameters()`, `models()`) are called inline, their BaseExceptions
  contained the same way;
* a tool's `execute` runs under its instance's tool deadline, and a result that is not a
  `ToolResult` becomes an error result naming what came back.

`wrapped` is the plugin's own object; other attributes read through to it.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from grambot.containment.boundary import crash
from grambot.containment.forward import ConnectorForwarder
from grambot.containment.limits import Deadline, Limit
from grambot.containment.stages import StagePool, call_plugin, run_stage
from grambot.containment.tracking import run_marked
from grambot.registries.images import GeneratedImage
from grambot.registries.inference import InferenceRequest, InferenceResponse
from grambot.registries.tools import ToolContext, ToolResult

__all__ = ["GuardedConnector", "GuardedImageProvider", "GuardedProvider", "GuardedTool"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _inline(instance_id: str, fn: Callable[[], T]) -> T:
    """A quick sync plugin call on the loop (marked for the watchdog), its BaseExceptions made
    ordinary (PluginCrash)."""
    try:
        return run_marked(instance_id, fn)
    except Exception:
        raise
    except BaseException as exc:
        raise crash(exc) from None


class _Guard:
    """The common part: the plugin's object, its instance and that instance's context."""

    __slots__ = ("_context", "_instance_id", "wrapped")

    def __init__(self, wrapped: Any, instance_id: str, context: contextvars.Context) -> None:
        self.wrapped = wrapped
        self._instance_id = instance_id
        self._context = context

    @property
    def instance_id(self) -> str:
        return self._instance_id

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def bound() -> Any:
            return fn(*args, **kwargs)

        # a copy: one Context cannot be entered by two calls at once
        return await call_plugin(
            bound, instance_id=self._instance_id, what=what, context=self._context.copy()
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(instance={self._instance_id!r})"


class GuardedTool(_Guard):
    """A registered tool; each call runs under a deadline `limit` (its instance's tool limit)
    from when it is made, a sync `execute` in one of `pool`'s workers."""

    __slots__ = ("_limit", "_pool", "description", "name")

    def __init__(
        self,
        tool: Any,
        instance_id: str,
        limit: Limit,
        context: contextvars.Context,
        pool: StagePool,
    ) -> None:
        super().__init__(tool, instance_id, context)
        self._limit = limit
        self._pool = pool
        self.name: str = tool.name
        self.description: str = tool.description

    @property
    def limit(self) -> Limit:
        return self._limit

    def parameters(self) -> dict[str, Any]:
        schema = _inline(self._instance_id, self.wrapped.parameters)
        if not isinstance(schema, dict):
            raise TypeError(
                f"tool {self.name!r} (instance {self._instance_id!r}): parameters() returned a "
                f"{type(schema).__name__}, not a JSON schema dict"
            )
        return schema

    async def execute(self, args: dict[str, Any], context: ToolContext) -> ToolResult:
        result = await run_stage(
            self.wrapped.execute,
            args,
            context,
            pool=self._pool,
            instance_id=self._instance_id,
            stage=f"tool {self.name!r}",
            deadline=Deadline.after(self._limit),
            context=self._context.copy(),
        )
        if isinstance(result, ToolResult):
            return result
        logger.error(
            "instance %s: tool %r returned a %s, not a ToolResult",
            self._instance_id,
            self.name,
            type(result).__name__,
        )
        return ToolResult(
            text=f"tool {self.name!r} returned a {type(result).__name__}, not a ToolResult",
            is_error=True,
        )


class GuardedProvider(_Guard):
    """A registered inference provider."""

    __slots__ = ("id", "label")

    def __init__(self, provider: Any, instance_id: str, context: contextvars.Context) -> None:
        super().__init__(provider, instance_id, context)
        self.id: str = provider.id
        self.label: str = provider.label

    def models(self) -> Sequence[str]:
        return _inline(self._instance_id, self.wrapped.models)

    async def complete(self, request: InferenceRequest) -> InferenceResponse:
        response = await self._call("model call", self.wrapped.complete, request)
        if not isinstance(response, InferenceResponse):
            raise TypeError(
                f"inference provider {self.id!r} returned a {type(response).__name__}, "
                "not an InferenceResponse"
            )
        return response


class GuardedImageProvider(_Guard):
    """A registered image provider."""

    __slots__ = ("id",)

    def __init__(self, provider: Any, instance_id: str, context: contextvars.Context) -> None:
        super().__init__(provider, instance_id, context)
        self.id: str = provider.id

    async def generate(
        self, prompt: str, *, size: str | None = None, count: int = 1, model: str | None = None
    ) -> Sequence[GeneratedImage]:
        images = await self._call(
            "image generation", self.wrapped.generate, prompt, size=size, count=count, model=model
        )
        return list(images)


class GuardedConnector(_Guard, ConnectorForwarder):
    """A registered connector. The engine starts and stops the plugin's object itself (under
    the stage deadlines); `start`/`stop` here are for code that holds the registry entry."""

    __slots__ = ()

    async def start(self) -> None:
        await self._call("connector start", self.wrapped.start)

    async def stop(self) -> None:
        await self._call("connector stop", self.wrapped.stop)

    async def _forward(self, method: str, *args: Any, **kwargs: Any) -> None:
        await self._call(method, getattr(self.wrapped, method), *args, **kwargs)
