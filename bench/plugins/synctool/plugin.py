"""A tool with a sync `execute` (run in a worker thread by the engine), steered by its args:
`{"do": "quick"}` returns at once; `{"do": "sleep", "seconds": s}` sleeps; `{"do": "spin",
"seconds": s}` burns the CPU (holding the GIL but for the interpreter's switches)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from grambot import Plugin, ToolResult


class Settings(BaseModel):
    tool_name: str = "sync"


class Tool:
    description = "A sync tool."

    def __init__(self, name: str) -> None:
        self.name = name

    def parameters(self) -> dict[str, Any]:
        return {"type": "object"}

    def execute(self, args: dict[str, Any], context: Any) -> ToolResult:
        do = args.get("do", "quick")
        if do == "sleep":
            time.sleep(float(args["seconds"]))
        elif do == "spin":
            end = time.perf_counter() + float(args["seconds"])
            n = 0
            while time.perf_counter() < end:
                n += 1
        return ToolResult(text=do)


class SyncTool:
    def __init__(self, api):  # type: ignore[no-untyped-def]
        self.api = api

    def load(self) -> None:
        self.api.registrar.register_tool(Tool(self.api.settings.tool_name))


plugin = Plugin(settings_schema=Settings, create=SyncTool)
