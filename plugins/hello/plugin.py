"""A complete, minimal grambot plugin: settings, a tool, an event, load and unload."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from grambot import Plugin, PluginApi, ToolContext, ToolResult


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    greeting: str = Field("Hello", description="How to greet.")


class HelloTool:
    name = "hello"
    description = "Greets someone by name."

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    def parameters(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}

    async def execute(self, args: dict[str, Any], context: ToolContext) -> ToolResult:
        return ToolResult(text=f"{self.greeting}, {args.get('name', 'world')}!")


class Hello:
    def __init__(self, api: PluginApi) -> None:
        self.api = api

    async def load(self) -> None:
        settings: Settings = self.api.settings
        self.api.registrar.register_tool(HelloTool(settings.greeting))
        self.api.events.emit("hello.loaded", {"greeting": settings.greeting})
        self.api.logger.info("%s from instance %s", settings.greeting, self.api.instance.instance_id)

    async def unload(self) -> None:
        self.api.logger.info("goodbye")  # registrations are removed by the engine


plugin = Plugin(settings_schema=Settings, create=Hello)
