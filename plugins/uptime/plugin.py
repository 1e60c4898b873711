"""An example of durable state (docs/state.md): api.store and api.schedule.

Counts its loads and a tick every `tickSeconds` in api.store (kept across restarts), writes a
daily summary at `summaryCron` in `timeZone`, and offers the model an `uptime` tool.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from grambot import Plugin, PluginApi, ToolContext, ToolResult


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    tick_seconds: float = Field(300, alias="tickSeconds", ge=1, description="Seconds per tick.")
    summary_cron: str = Field("0 8 * * *", alias="summaryCron", description="When to sum up.")
    time_zone: str = Field("UTC", alias="timeZone", description="Zone of summaryCron.")


class UptimeTool:
    name = "uptime"
    description = "How long this bot has been ticking: loads, ticks and the last daily summary."

    def __init__(self, api: PluginApi) -> None:
        self.api = api

    def parameters(self) -> dict[str, Any]:
        return {"type": "object", "properties": {}}

    async def execute(self, args: dict[str, Any], context: ToolContext) -> ToolResult:
        stats = await self.api.store.items()
        return ToolResult(text=", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "none")


class Uptime:
    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.settings: Settings = api.settings

    async def load(self) -> None:
        store, schedule = self.api.store, self.api.schedule
        # compare-and-set: safe even if two loads overlapped
        while True:
            loads = await store.get("loads", 0)
            if await store.compare_and_set("loads", loads if loads else store.MISSING, loads + 1):
                break
        # Registered again at every load; a job already stored keeps its next run.
        await schedule.every("tick", self.settings.tick_seconds, self.tick)
        await schedule.cron(
            "daily-summary",
            self.settings.summary_cron,
            self.summary,
            tz=self.settings.time_zone,
            missed="skip",  # a summary missed while the bot was down is not worth sending late
        )
        self.api.registrar.register_tool(UptimeTool(self.api))

    async def tick(self, run: Any) -> None:
        await self.api.store.set("ticks", await self.api.store.get("ticks", 0) + 1)

    async def summary(self, run: Any) -> None:
        ticks = await self.api.store.get("ticks", 0)
        await self.api.store.set("lastSummary", {"due": run.due, "ticks": ticks})
        self.api.logger.info("daily summary: %d ticks so far", ticks)


plugin = Plugin(settings_schema=Settings, create=Uptime)
