"""The isolation benchmark's plugin: tool `echo` answers its `text`; with `burst: N` it emits
N `bench.burst` events first (then one `bench.burst.end`)."""

from pydantic import BaseModel

from grambot import Plugin, ToolResult


class Settings(BaseModel):
    tool: str = "echo"


class Echo:
    description = "echo"

    def __init__(self, api) -> None:  # type: ignore[no-untyped-def]
        self.api = api
        self.name = api.settings.tool

    def parameters(self) -> dict[str, object]:
        return {"type": "object"}

    async def execute(self, args, context):  # type: ignore[no-untyped-def]
        burst = int(args.get("burst", 0))
        emit = self.api.events.emit
        for i in range(burst):
            emit("bench.burst", i)
        if burst:
            emit("bench.burst.end", burst)
        return ToolResult(text=str(args.get("text", "")))


class Probe:
    def __init__(self, api) -> None:  # type: ignore[no-untyped-def]
        self.api = api

    def load(self) -> None:
        self.api.registrar.register_tool(Echo(self.api))


plugin = Plugin(settings_schema=Settings, create=Probe)
