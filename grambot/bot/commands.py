"""The bot's commands: `/help`, `/reset`, `/forget`, `/image`, and the reminder commands of
grambot.bot.reminders."""

from __future__ import annotations

import re
from typing import Protocol

from grambot.bot.reminders import Reminders
from grambot.bot.reply import Reply, apology
from grambot.config.settings import AgentSettings
from grambot.errors import TurnFailed
from grambot.registries.connectors import Attachment, IncomingMessage
from grambot.storage.base import ConversationStore, InboxEntry

__all__ = ["CommandContext", "Commands", "ImageMaker", "ModelInfo"]

_COMMAND = re.compile(r"^/([A-Za-z][A-Za-z0-9_]*)(?:@\w+)?$")

HELP = {
    "help": "this message",
    "reset": "forget this chat's conversation",
    "forget": "forget this chat's conversation, reminders and time zone",
    "image": "<prompt> - generate an image",
}


class CommandContext(Protocol):
    """What the commands read (grambot.bot.context.BotContext)."""

    @property
    def conversations(self) -> ConversationStore: ...

    def agent(self) -> AgentSettings: ...


class ImageMaker(Protocol):
    """`/image` (grambot.bot.images.Images)."""

    async def generate(self, agent: AgentSettings, prompt: str) -> list[Attachment]: ...


class ModelInfo(Protocol):
    """What `/help` says of the model (grambot.bot.turn.ModelTurn)."""

    def describe_model(self, agent: AgentSettings) -> tuple[str, list[str]]: ...


class Commands:
    def __init__(
        self,
        context: CommandContext,
        images: ImageMaker,
        reminders: Reminders,
        model: ModelInfo,
    ) -> None:
        self._context = context
        self._images = images
        self._model = model
        self.reminders = reminders

    def help_lines(self) -> dict[str, str]:
        return {**HELP, **self.reminders.help_lines()}

    async def run(self, message: IncomingMessage, entry: InboxEntry | None) -> Reply | None:
        """The reply to a command, or None when the message is not one."""
        if not message.text.lstrip().startswith("/"):
            return None
        word, _, argument = message.text.strip().partition(" ")
        match = _COMMAND.match(word)
        if match is None:
            return None
        name, argument = match.group(1).lower(), argument.strip()
        chat = (message.connector_id, message.chat_id)
        agent = self._context.agent()
        if name == "help":
            return Reply(self._help(agent))
        if name == "reset":
            await self._context.conversations.forget(*chat)
            return Reply("Conversation forgotten.")
        if name == "forget":
            await self._context.conversations.forget(*chat)
            removed = await self.reminders.forget(chat)
            return Reply(f"Forgot this chat's conversation and {removed} reminder(s).")
        if name == "image":
            if not argument:
                return Reply("Usage: /image <prompt>")
            try:
                files = await self._images.generate(agent, argument)
            except TurnFailed as exc:
                return Reply(apology(exc))
            return Reply(f"Here is your image for: {argument}", files)
        handled = await self.reminders.command(name, argument, message, entry)
        if handled is not None:
            return Reply(handled)
        known = ", ".join(f"/{n}" for n in self.help_lines())
        return Reply(f"Unknown command /{name}. Commands: {known}.")

    def _help(self, agent: AgentSettings) -> str:
        who, tools = self._model.describe_model(agent)
        lines = [f"/{n} - {what}" for n, what in self.help_lines().items()]
        which = f", which may use the tools: {', '.join(tools)}" if tools else ""
        return "Commands:\n" + "\n".join(lines) + f"\nAnything else goes to {who}{which}."
