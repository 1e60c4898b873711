"""The bot's commands (`/help`, `/reset`, `/forget`, `/image`, and the reminder commands of
grambot.bot.reminders), its built-in tools, and the system prompt it sends."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from grambot.config.settings import AgentSettings
from grambot.registries.connectors import IncomingMessage
from grambot.registries.inference import ToolDefinition
from grambot.registries.tools import ToolContext, ToolResult
from grambot.storage.base import InboxEntry

if TYPE_CHECKING:
    from grambot.bot.router import Bot, Reply

__all__ = ["BuiltinTool", "Commands"]

_COMMAND = re.compile(r"^/([A-Za-z][A-Za-z0-9_]*)(?:@\w+)?$")

HELP = {
    "help": "this message",
    "reset": "forget this chat's conversation",
    "forget": "forget this chat's conversation, reminders and time zone",
    "image": "<prompt> - generate an image",
}


class BuiltinTool(Protocol):
    name: str

    def definition(self) -> ToolDefinition: ...

    async def execute(self, args: dict[str, Any], context: ToolContext) -> ToolResult: ...


class Commands:
    def __init__(self, bot: Bot) -> None:
        from grambot.bot.reminders import Reminders

        self.bot = bot
        self.reminders = Reminders(bot)
        self._prompts: dict[tuple[str, str], tuple[int, str]] = {}  # (prompt, zone): (minute, text)

    async def resume(self) -> None:
        await self.reminders.resume()

    async def stop(self) -> None:
        await self.reminders.stop()

    def tools(self) -> list[BuiltinTool]:
        return list(self.reminders.tools())

    def tool(self, name: str) -> BuiltinTool | None:
        return next((t for t in self.tools() if t.name == name), None)

    def help_lines(self) -> dict[str, str]:
        return {**HELP, **self.reminders.help_lines()}

    async def run(self, message: IncomingMessage, entry: InboxEntry | None) -> Reply | None:
        """The reply to a command, or None when the message is not one."""
        if not message.text.lstrip().startswith("/"):
            return None
        from grambot.bot.router import Reply, TurnFailed

        word, _, argument = message.text.strip().partition(" ")
        match = _COMMAND.match(word)
        if match is None:
            return None
        name, argument = match.group(1).lower(), argument.strip()
        chat = (message.connector_id, message.chat_id)
        agent = self.bot._agent()
        if name == "help":
            return Reply(self._help(agent))
        if name == "reset":
            await self.bot.conversations.forget(*chat)
            return Reply("Conversation forgotten.")
        if name == "forget":
            await self.bot.conversations.forget(*chat)
            removed = await self.reminders.forget(chat)
            return Reply(f"Forgot this chat's conversation and {removed} reminder(s).")
        if name == "image":
            if not argument:
                return Reply("Usage: /image <prompt>")
            try:
                files = await self.bot.generate_images(agent, argument)
            except TurnFailed as exc:
                return Reply(f"Sorry, {exc}")
            return Reply(f"Here is your image for: {argument}", files)
        handled = await self.reminders.command(name, argument, message, entry)
        if handled is not None:
            return Reply(handled)
        known = ", ".join(f"/{n}" for n in self.help_lines())
        return Reply(f"Unknown command /{name}. Commands: {known}.")

    def _help(self, agent: AgentSettings) -> str:
        who, tools = self.bot.describe_model(agent)
        lines = [f"/{n} - {what}" for n, what in self.help_lines().items()]
        which = f", which may use the tools: {', '.join(tools)}" if tools else ""
        return "Commands:\n" + "\n".join(lines) + f"\nAnything else goes to {who}{which}."

    def system_prompt(self, chat: tuple[str, str], agent: AgentSettings) -> str:
        """The configured prompt, with the current time in the chat's zone (so the model can
        work out "8 tomorrow"); made once a minute per zone."""
        tz = self.reminders.zone_of(chat, agent)
        clock = self.bot.clock()
        minute = int(clock // 60)
        key = (agent.system_prompt, tz.key)
        made = self._prompts.get(key)
        if made is not None and made[0] == minute:
            return made[1]
        now = datetime.fromtimestamp(clock, tz)
        prompt = (
            f"{agent.system_prompt}\n\nCurrent time: {now.isoformat(timespec='minutes')} "
            f"({tz.key}, {now.strftime('%A')})."
        )
        if len(self._prompts) >= 64:  # zones in use are few; never let it grow unbounded
            self._prompts.clear()
        self._prompts[key] = (minute, prompt)
        return prompt
